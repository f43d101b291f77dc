// SPDX-License-Identifier: GPL-2.0

//! The stats queue: the device asks, the driver answers with its memory
//! statistics (all 16 tags of 6.12, computed as C's `update_balloon_stats()`
//! computes them).
//!
//! Protocol (virtio spec, 5.5.6.3): one buffer is posted at start-up; each
//! time the device uses it, the driver refills it with the same set of tags
//! and posts it again. At most one buffer is outstanding.

use crate::mm::{self, NR_VM_EVENTS};
use crate::virtio::{Device, DeviceBufs, Reset, Virtqueue};
use kernel::{bindings as b, prelude::*};

/// Number of statistics sent (`VIRTIO_BALLOON_S_NR`).
pub(crate) const NR_STATS: usize = b::VIRTIO_BALLOON_S_NR as usize;

/// Names of the tags, indexed by tag, as debugfs shows them (libvirt's
/// `dommemstat` names where they exist).
pub(crate) const TAG_NAMES: [&str; NR_STATS] = [
    "swap_in",
    "swap_out",
    "major_fault",
    "minor_fault",
    "free",
    "total",
    "available",
    "disk_caches",
    "hugetlb_pgalloc",
    "hugetlb_pgfail",
    "oom_kill",
    "alloc_stall",
    "async_scan",
    "direct_scan",
    "async_reclaim",
    "direct_reclaim",
];

/// One statistic, in CPU byte order.
#[derive(Clone, Copy, Default)]
pub(crate) struct Stat {
    pub(crate) tag: u16,
    pub(crate) val: u64,
}

fn pages_to_bytes(pages: u64) -> u64 {
    pages << mm::PAGE_SHIFT
}

/// Collects every statistic, in C's order: the VM events first, then the
/// meminfo ones. `events` is scratch space (too large for the stack).
pub(crate) fn collect(events: &mut [kernel::ffi::c_ulong; NR_VM_EVENTS]) -> [Stat; NR_STATS] {
    mm::vm_events(events);
    let ev = |item: u32| events[item as usize] as u64;
    let stall: u64 = (0..b::MAX_NR_ZONES)
        .map(|zid| ev(b::vm_event_item_ALLOCSTALL_NORMAL - b::zone_type_ZONE_NORMAL + zid))
        .sum();
    let m = mm::mem_snapshot();
    let s = |tag: u32, val: u64| Stat {
        tag: tag as u16,
        val,
    };
    [
        s(
            b::VIRTIO_BALLOON_S_SWAP_IN,
            pages_to_bytes(ev(b::vm_event_item_PSWPIN)),
        ),
        s(
            b::VIRTIO_BALLOON_S_SWAP_OUT,
            pages_to_bytes(ev(b::vm_event_item_PSWPOUT)),
        ),
        s(b::VIRTIO_BALLOON_S_MAJFLT, ev(b::vm_event_item_PGMAJFAULT)),
        s(b::VIRTIO_BALLOON_S_MINFLT, ev(b::vm_event_item_PGFAULT)),
        s(b::VIRTIO_BALLOON_S_OOM_KILL, ev(b::vm_event_item_OOM_KILL)),
        s(b::VIRTIO_BALLOON_S_ALLOC_STALL, stall),
        s(
            b::VIRTIO_BALLOON_S_ASYNC_SCAN,
            pages_to_bytes(ev(b::vm_event_item_PGSCAN_KSWAPD)),
        ),
        s(
            b::VIRTIO_BALLOON_S_DIRECT_SCAN,
            pages_to_bytes(ev(b::vm_event_item_PGSCAN_DIRECT)),
        ),
        s(
            b::VIRTIO_BALLOON_S_ASYNC_RECLAIM,
            pages_to_bytes(ev(b::vm_event_item_PGSTEAL_KSWAPD)),
        ),
        s(
            b::VIRTIO_BALLOON_S_DIRECT_RECLAIM,
            pages_to_bytes(ev(b::vm_event_item_PGSTEAL_DIRECT)),
        ),
        s(
            b::VIRTIO_BALLOON_S_HTLB_PGALLOC,
            ev(b::vm_event_item_HTLB_BUDDY_PGALLOC),
        ),
        s(
            b::VIRTIO_BALLOON_S_HTLB_PGFAIL,
            ev(b::vm_event_item_HTLB_BUDDY_PGALLOC_FAIL),
        ),
        s(b::VIRTIO_BALLOON_S_MEMFREE, pages_to_bytes(m.free)),
        s(b::VIRTIO_BALLOON_S_MEMTOT, pages_to_bytes(m.total)),
        s(b::VIRTIO_BALLOON_S_AVAIL, pages_to_bytes(m.available)),
        s(b::VIRTIO_BALLOON_S_CACHES, pages_to_bytes(m.file)),
    ]
}

/// The stats virtqueue with its one buffer.
pub(crate) struct StatsQueue {
    vq: Virtqueue,
    buf: DeviceBufs<[b::virtio_balloon_stat; NR_STATS], 1>,
}

impl StatsQueue {
    /// Wraps the stats queue; nothing is posted yet.
    pub(crate) fn new(vq: Virtqueue) -> Result<Self> {
        Ok(Self {
            vq,
            buf: DeviceBufs::new([[b::virtio_balloon_stat::default(); NR_STATS]])?,
        })
    }

    /// Fills the buffer with `stats` and posts it. The first call primes the
    /// queue; later calls answer a request ([`StatsQueue::take_request`]).
    pub(crate) fn post(&mut self, dev: &Device, stats: &[Stat; NR_STATS]) -> Result {
        let buf = self.buf.get_mut(0).ok_or(EBUSY)?;
        for (slot, s) in buf.iter_mut().zip(stats.iter()) {
            *slot = b::virtio_balloon_stat {
                tag: dev.cpu_to_virtio16(s.tag),
                val: dev.cpu_to_virtio64(s.val),
            };
        }
        let len = core::mem::size_of::<[b::virtio_balloon_stat; NR_STATS]>();
        self.buf.add(&mut self.vq, 0, len)?;
        self.vq.kick();
        Ok(())
    }

    /// Takes back the buffer if the device used it (its request for fresh
    /// statistics). False for a spurious interrupt.
    pub(crate) fn take_request(&mut self) -> bool {
        if !self.buf.is_busy(0) {
            return false;
        }
        self.vq
            .get_buf_token()
            .is_some_and(|token| self.buf.give_back(token))
    }

    /// Frees the buffer and returns the queue, once the device is reset.
    pub(crate) fn release(mut self, reset: &Reset<'_>) -> Virtqueue {
        self.buf.device_reset(reset);
        self.vq
    }
}
