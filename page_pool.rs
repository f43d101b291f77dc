// SPDX-License-Identifier: GPL-2.0

//! The balloon's pages: the kernel's balloon page list, which keeps them
//! movable for compaction, and the batches, one host request each, in which
//! pages enter and leave it.
//!
//! C: the page handling of `fill_balloon()` and `leak_balloon()` in
//! [`drivers/virtio/virtio_balloon.c`].

use crate::{
    balloon_compaction::{BalloonDevInfo, BalloonPage, BlockPages, Migrate, PMD_ORDER},
    fault_inject::FaultAttr,
    policy::{self, PFNS_PER_BATCH},
};
use kernel::prelude::*;

/// The pages of one request on their way into or out of the balloon.
pub(crate) type Batch = [Option<BalloonPage>; PFNS_PER_BATCH];

/// An empty batch.
pub(crate) const EMPTY_BATCH: Batch = [const { None }; PFNS_PER_BATCH];

/// The balloon's page list.
#[pin_data]
pub(crate) struct PagePool {
    /// The kernel's list (`impl_migrate!` finds the driver from it).
    #[pin]
    pub(crate) info: BalloonDevInfo,
}

impl PagePool {
    /// An empty pool; pages are not migratable until
    /// [`PagePool::enable_migration`].
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            info <- BalloonDevInfo::new(),
        })
    }

    /// Makes the pool's pages migratable: compaction calls
    /// [`Migrate::migrate`] on the `T` the pool is in.
    pub(crate) fn enable_migration<T: Migrate>(&self) {
        self.info.enable_migration::<T>();
    }

    /// Puts every page of `batch` in the balloon (movable from now on);
    /// without deflate-on-OOM (`adjust_managed`) they leave MemTotal.
    pub(crate) fn enqueue_batch(&self, batch: &mut Batch, adjust_managed: bool) {
        self.info
            .enqueue_all(batch.iter_mut().filter_map(Option::take), adjust_managed);
    }

    /// Takes up to `n` pages off the list into `batch` from its start (not
    /// pages isolated by compaction); returns how many.
    pub(crate) fn dequeue_batch(&self, batch: &mut Batch, n: u64) -> usize {
        let mut count = 0usize;
        for slot in batch.iter_mut() {
            if count as u64 >= n {
                break;
            }
            let Some(page) = self.info.dequeue() else {
                break;
            };
            *slot = Some(page);
            count += 1;
        }
        count
    }

    /// Puts the pages of `batch` back on the list, as they were: the host
    /// was not told they left, so they did not leave MemTotal again.
    pub(crate) fn requeue_batch(&self, batch: &mut Batch) {
        self.enqueue_batch(batch, false);
    }

    /// Gives the pages of `batch` to the page allocator; with
    /// `adjust_managed` they count in MemTotal again.
    pub(crate) fn release_batch(batch: &mut Batch, adjust_managed: bool) {
        BalloonPage::release_all(batch.iter_mut().filter_map(Option::take), adjust_managed);
    }

    /// Gives every page back to the allocator without telling anyone (the
    /// device is broken or gone); returns how many.
    pub(crate) fn release_all(&self, adjust_managed: bool) -> u64 {
        self.info.release_all(adjust_managed)
    }
}

/// Where a batch's pages came from, in guest pages.
#[derive(Clone, Copy, Default)]
pub(crate) struct AllocCounts {
    /// Pages of PMD-order blocks (2 MiB), of [`policy::FALLBACK_ORDER`]
    /// blocks, and single pages, allocated for this batch.
    pub(crate) by_order: [u64; 3],
    /// Block allocations that failed and fell back to a smaller order.
    pub(crate) fallbacks: u64,
}

/// The pages on their way into the balloon: the next batch, and what is
/// left of the last block allocated, which the next batch takes first (a
/// 2 MiB block is two batches of PFNs, sent one after the other).
pub(crate) struct Incoming {
    /// The next batch.
    pub(crate) batch: Batch,
    /// The rest of the last block.
    carry: Option<BlockPages>,
    /// The largest order still worth trying in this inflation.
    max_order: u32,
}

impl Incoming {
    /// Nothing allocated.
    pub(crate) const fn new() -> Self {
        Self {
            batch: EMPTY_BATCH,
            carry: None,
            max_order: PMD_ORDER,
        }
    }

    /// Pages left from the last block.
    pub(crate) fn carried(&self) -> u64 {
        self.carry.as_ref().map_or(0, |b| b.len() as u64)
    }

    /// Fills the batch from its start with up to `batch_want` pages: first
    /// the rest of the last block, then new blocks or single pages, until
    /// the first failure (real, or injected by `fail`). `want` is how many
    /// pages the target still needs in all and `room` how many new ones the
    /// floor allows: a block is allocated only when it fits in both (see
    /// [`policy::next_order`]). Returns how many pages the batch holds, and
    /// what was allocated.
    pub(crate) fn alloc_batch(
        &mut self,
        batch_want: u64,
        want: u64,
        mut room: u64,
        fail: &FaultAttr,
    ) -> (usize, AllocCounts) {
        let mut counts = AllocCounts::default();
        let mut count = 0usize;
        while (count as u64) < batch_want && count < self.batch.len() {
            if let Some(page) = self.carry.as_mut().and_then(Iterator::next) {
                self.batch[count] = Some(page);
                count += 1;
                continue;
            }
            self.carry = None;
            let still = want.saturating_sub(count as u64);
            let order = policy::next_order(still, room, PMD_ORDER, self.max_order);
            if order > 0 {
                match (!fail.should_fail())
                    .then(|| BlockPages::alloc(order))
                    .flatten()
                {
                    Some(block) => {
                        room -= block.len() as u64;
                        counts.by_order[usize::from(order != PMD_ORDER)] += block.len() as u64;
                        self.carry = Some(block);
                    }
                    None => {
                        counts.fallbacks += 1;
                        self.max_order = policy::order_after_failure(order);
                    }
                }
                // The slot is still empty: the next round fills it from the
                // block, or tries a smaller order.
                continue;
            }
            let Some(page) = (!fail.should_fail()).then(BalloonPage::alloc).flatten() else {
                break;
            };
            room = room.saturating_sub(1);
            counts.by_order[2] += 1;
            self.batch[count] = Some(page);
            count += 1;
        }
        (count, counts)
    }

    /// Ends an inflation: the pages left from the last block go back to
    /// the allocator (the target or the floor stopped the inflation within
    /// it), and the next inflation tries the PMD order again.
    pub(crate) fn finish(&mut self) {
        self.carry = None;
        self.max_order = PMD_ORDER;
    }
}
