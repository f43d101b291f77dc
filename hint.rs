// SPDX-License-Identifier: GPL-2.0

//! Free page hinting blocks: free memory taken out of the allocator in
//! blocks of `MAX_PAGE_ORDER` so the host can skip it during migration.
//!
//! C: `get_free_page_and_send()` and `return_free_pages_to_mm()` in
//! [`drivers/virtio/virtio_balloon.c`].

use crate::{
    page::Pages,
    virtio::{DeviceBufs, Reset, Virtqueue},
};
use kernel::{bindings, prelude::*};

/// The order of a hint block (C's `VIRTIO_BALLOON_HINT_BLOCK_ORDER`).
pub(crate) const ORDER: u32 = bindings::MAX_PAGE_ORDER;
/// Guest pages in a hint block.
pub(crate) const BLOCK_PAGES: u64 = 1 << ORDER;

/// A block of `BLOCK_PAGES` free pages, freed on drop.
pub(crate) struct HintBlock(Pages);

impl HintBlock {
    /// Takes a block out of the allocator without reclaim, retries, emergency
    /// reserves or warnings (C's `VIRTIO_BALLOON_FREE_PAGE_ALLOC_FLAG`):
    /// `None` means no free block is left, which ends a hinting round.
    pub(crate) fn alloc() -> Option<Self> {
        let gfp = bindings::__GFP_NORETRY | bindings::__GFP_NOWARN | bindings::__GFP_NOMEMALLOC;
        Pages::alloc(gfp, ORDER).map(Self)
    }

    /// The block's pages.
    pub(crate) fn pages(&self) -> &Pages {
        &self.0
    }
}

/// The blocks hinted to the host, in a fixed-size stack reserved up front
/// (no allocation while hinting).
pub(crate) struct HintStack {
    slots: KVec<Option<HintBlock>>,
    len: usize,
}

impl HintStack {
    /// Room for `capacity` blocks.
    pub(crate) fn new(capacity: usize) -> Result<Self> {
        let mut slots = KVec::with_capacity(capacity, GFP_KERNEL)?;
        for _ in 0..capacity {
            slots.push(None, GFP_KERNEL)?;
        }
        Ok(Self { slots, len: 0 })
    }

    /// Blocks held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether another block fits.
    pub(crate) fn has_room(&self) -> bool {
        self.len < self.slots.len()
    }

    /// Keeps `b`; gives it back if full.
    pub(crate) fn push(&mut self, b: HintBlock) -> Result<(), HintBlock> {
        match self.slots.as_mut_slice().get_mut(self.len) {
            Some(slot) => {
                *slot = Some(b);
                self.len += 1;
                Ok(())
            }
            None => Err(b),
        }
    }

    /// Takes the most recent block.
    pub(crate) fn pop(&mut self) -> Option<HintBlock> {
        self.len = self.len.checked_sub(1)?;
        self.slots.as_mut_slice().get_mut(self.len)?.take()
    }
}

/// Index of the start buffer in [`CmdIds`].
pub(crate) const START: usize = 0;
/// Index of the stop buffer in [`CmdIds`].
pub(crate) const STOP: usize = 1;

/// The two command-id buffers of a hinting round (start id, STOP), which
/// the device reads from the free page queue.
pub(crate) struct CmdIds {
    ids: DeviceBufs<u32, 2>,
}

impl CmdIds {
    /// Two unposted buffers.
    pub(crate) fn new() -> Result<Self> {
        Ok(Self {
            ids: DeviceBufs::new([0; 2])?,
        })
    }

    /// Takes back every buffer the device used, noting our command buffers.
    pub(crate) fn drain(&mut self, vq: &mut Virtqueue) {
        while let Some(token) = vq.get_buf_token() {
            // Hint blocks come back too: they are the pool's, not ours.
            self.ids.give_back(token);
        }
    }

    /// Posts buffer `which` holding `value` (already in device byte order);
    /// `EBUSY` while the device still has it.
    pub(crate) fn post(&mut self, vq: &mut Virtqueue, which: usize, value: u32) -> Result {
        if which > STOP {
            return Err(EINVAL);
        }
        *self.ids.get_mut(which).ok_or(EBUSY)? = value;
        self.ids.add(vq, which, core::mem::size_of::<u32>())?;
        vq.kick();
        Ok(())
    }

    /// The device was reset: it reads no buffer any more.
    pub(crate) fn device_reset(&mut self, reset: &Reset<'_>) {
        self.ids.device_reset(reset);
    }
}
