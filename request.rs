// SPDX-License-Identifier: GPL-2.0

//! The inflate and deflate request buffers (C's `vb->pfns`): two arrays of
//! balloon PFNs, so that the driver fills one while the device reads the
//! other.

use crate::virtio::{DeviceBufs, Reset, Virtqueue};
use kernel::prelude::*;

/// Two request buffers of `N` PFNs, used in turn.
pub(crate) struct OutBufs<const N: usize> {
    bufs: DeviceBufs<[u32; N], 2>,
    next: usize,
}

impl<const N: usize> OutBufs<N> {
    /// Allocates the two buffers.
    pub(crate) fn new() -> Result<Self> {
        Ok(Self {
            bufs: DeviceBufs::new([[0; N]; 2])?,
            next: 0,
        })
    }

    /// The buffer to fill next; `None` while the device still has it.
    pub(crate) fn next_mut(&mut self) -> Option<&mut [u32; N]> {
        self.bufs.get_mut(self.next)
    }

    /// Adds the first `len` PFNs of the next buffer to `vq` without
    /// notifying the device; returns whether the device wants a
    /// notification ([`Virtqueue::notify`]).
    pub(crate) fn submit(&mut self, vq: &mut Virtqueue, len: usize) -> Result<bool> {
        if len > N {
            return Err(EINVAL);
        }
        self.bufs
            .add(vq, self.next, len * core::mem::size_of::<u32>())?;
        self.next = 1 - self.next;
        Ok(vq.kick_prepare())
    }

    /// Takes back one buffer the device used on `vq`; true if one came.
    pub(crate) fn reap(&mut self, vq: &mut Virtqueue) -> bool {
        let Some(token) = vq.get_buf_token() else {
            return false;
        };
        if self.bufs.give_back(token) {
            return true;
        }
        pr_warn!("the device returned a buffer that is not ours\n");
        false
    }

    /// Whether the device has one of the buffers.
    pub(crate) fn in_flight(&self) -> bool {
        self.bufs.in_flight()
    }

    /// The device was reset: it has none of the buffers any more.
    pub(crate) fn device_reset(&mut self, reset: &Reset<'_>) {
        self.bufs.device_reset(reset);
    }
}
