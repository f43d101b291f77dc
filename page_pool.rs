// SPDX-License-Identifier: GPL-2.0

//! The balloon's pages: the kernel's balloon page list, which keeps them
//! movable for compaction, and the batches, one host request each, in which
//! pages enter and leave it.
//!
//! C: the page handling of `fill_balloon()` and `leak_balloon()` in
//! [`drivers/virtio/virtio_balloon.c`].

use crate::{
    balloon_compaction::{BalloonDevInfo, BalloonPage, Migrate},
    fault_inject::FaultAttr,
    policy::PFNS_PER_BATCH,
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

    /// Allocates up to `allowed` pages into `batch` from its start, until
    /// the first failure (real, or injected by `fail`); returns how many.
    pub(crate) fn alloc_batch(batch: &mut Batch, allowed: u64, fail: &FaultAttr) -> usize {
        let mut count = 0usize;
        for slot in batch.iter_mut() {
            if count as u64 >= allowed {
                break;
            }
            let Some(page) = (!fail.should_fail()).then(BalloonPage::alloc).flatten() else {
                break;
            };
            *slot = Some(page);
            count += 1;
        }
        count
    }

    /// Puts every page of `batch` in the balloon (movable from now on);
    /// without deflate-on-OOM (`adjust_managed`) they leave MemTotal.
    pub(crate) fn enqueue_batch(&self, batch: &mut Batch, adjust_managed: bool) {
        for page in batch.iter_mut().filter_map(Option::take) {
            self.info.enqueue(page, adjust_managed);
        }
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
        for page in batch.iter_mut().filter_map(Option::take) {
            page.release(adjust_managed);
        }
    }

    /// Gives every page back to the allocator without telling anyone (the
    /// device is broken or gone); returns how many.
    pub(crate) fn release_all(&self, adjust_managed: bool) -> u64 {
        self.info.release_all(adjust_managed)
    }
}
