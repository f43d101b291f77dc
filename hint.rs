// SPDX-License-Identifier: GPL-2.0

//! Free page hinting blocks: free memory taken out of the allocator in
//! blocks of `MAX_PAGE_ORDER` so the host can skip it during migration.
//!
//! C: `get_free_page_and_send()` and `return_free_pages_to_mm()` in
//! [`drivers/virtio/virtio_balloon.c`].

use core::ptr::NonNull;
use kernel::{bindings, prelude::*};

/// The order of a hint block (C's `VIRTIO_BALLOON_HINT_BLOCK_ORDER`).
pub(crate) const ORDER: u32 = bindings::MAX_PAGE_ORDER;
/// Guest pages in a hint block.
pub(crate) const BLOCK_PAGES: u64 = 1 << ORDER;
/// Bytes in a hint block.
pub(crate) const BLOCK_BYTES: usize = 1 << (ORDER + bindings::PAGE_SHIFT);

/// A block of `BLOCK_PAGES` free pages, freed on drop.
///
/// # Invariants
///
/// `0` is a block of order [`ORDER`] from `alloc_pages`, owned by this value.
pub(crate) struct HintBlock(NonNull<bindings::page>);

// SAFETY: Pages may be freed on any thread.
unsafe impl Send for HintBlock {}

impl HintBlock {
    /// Takes a block out of the allocator without reclaim, retries, emergency
    /// reserves or warnings (C's `VIRTIO_BALLOON_FREE_PAGE_ALLOC_FLAG`):
    /// `None` means no free block is left, which ends a hinting round.
    pub(crate) fn alloc() -> Option<Self> {
        let gfp = bindings::__GFP_NORETRY | bindings::__GFP_NOWARN | bindings::__GFP_NOMEMALLOC;
        // SAFETY: Always safe to call; returns null on failure.
        let p = unsafe { bindings::alloc_pages(gfp, ORDER) };
        // INVARIANT: A fresh block of order `ORDER`, ours.
        NonNull::new(p).map(Self)
    }

    /// The block's kernel address (lowmem: always mapped on x86-64).
    pub(crate) fn addr(&self) -> *mut u8 {
        // SAFETY: By the type invariant the page is valid.
        unsafe { bindings::page_address(self.0.as_ptr()).cast() }
    }
}

impl Drop for HintBlock {
    fn drop(&mut self) {
        // SAFETY: By the type invariant we own the block of this order.
        unsafe { bindings::__free_pages(self.0.as_ptr(), ORDER) };
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
///
/// # Invariants
///
/// While `posted[i]`, the device may read `ids[i]`: it is neither written
/// nor freed (drop leaks the buffers if any is posted).
pub(crate) struct CmdIds {
    ids: core::mem::ManuallyDrop<KBox<[u32; 2]>>,
    posted: [bool; 2],
}

impl CmdIds {
    /// Two unposted buffers.
    pub(crate) fn new() -> Result<Self> {
        Ok(Self {
            ids: core::mem::ManuallyDrop::new(KBox::new([0; 2], GFP_KERNEL)?),
            posted: [false; 2],
        })
    }

    /// Takes back every buffer the device used, noting our command buffers.
    pub(crate) fn drain(&mut self, vq: &mut crate::virtio::Virtqueue) {
        while let Some(token) = vq.get_buf_token() {
            for i in [START, STOP] {
                if core::ptr::eq(token.cast_const(), core::ptr::from_ref(&self.ids[i]).cast()) {
                    self.posted[i] = false;
                }
            }
        }
    }

    /// Posts buffer `which` holding `value` (already in device byte order).
    pub(crate) fn post(
        &mut self,
        vq: &mut crate::virtio::Virtqueue,
        which: usize,
        value: u32,
    ) -> Result {
        if *self.posted.get(which).ok_or(EINVAL)? {
            return Err(EBUSY);
        }
        self.ids[which] = value;
        let p = core::ptr::from_ref(&self.ids[which]).cast::<u8>();
        // SAFETY: The buffer is heap memory owned by `self` and, by the type
        // invariant, not written or freed until the device returns it.
        unsafe { vq.add_outbuf(p, core::mem::size_of::<u32>()) }?;
        // INVARIANT: The device may read it now.
        self.posted[which] = true;
        Ok(())
    }

    /// The device was reset: it reads no buffer any more.
    pub(crate) fn device_reset(&mut self, _reset: &crate::virtio::Reset<'_>) {
        self.posted = [false; 2];
    }
}

impl Drop for CmdIds {
    fn drop(&mut self) {
        if self.posted == [false; 2] {
            // SAFETY: No buffer is posted (type invariant), so the device
            // does not read them; dropped once, here.
            unsafe { core::mem::ManuallyDrop::drop(&mut self.ids) };
        }
    }
}
