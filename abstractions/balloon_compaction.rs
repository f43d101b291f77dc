// SPDX-License-Identifier: GPL-2.0

//! The balloon's pages: allocation through the page allocator, and the
//! kernel's `balloon_dev_info` page list, which makes them movable (balloon
//! compaction) without any per-page allocation of the driver's own.
//!
//! C headers: [`include/linux/balloon_compaction.h`], [`mm/balloon_compaction.c`].
//!
//! The pool counts nothing itself: the list is the kernel's, and the driver
//! keeps its count under its balloon lock.

use super::container::HasField;
use core::ptr::NonNull;
use kernel::{bindings, prelude::*, types::Opaque};

/// A guest page the balloon holds outside the pool's list: just allocated,
/// or just dequeued. Owns the page's reference ("balloon reference").
///
/// # Invariants
///
/// `0` is a page with a reference owned by this value, not on any list.
pub(crate) struct BalloonPage(NonNull<bindings::page>);

// SAFETY: A page reference may be dropped on any thread.
unsafe impl Send for BalloonPage {}

impl BalloonPage {
    /// Allocates a page as C's `balloon_page_alloc()` does: movable, no
    /// emergency reserves, no retries, no OOM killer, no warning.
    pub(crate) fn alloc() -> Option<Self> {
        // SAFETY: Always safe to call; returns null on failure.
        let p = unsafe { bindings::balloon_page_alloc() };
        // INVARIANT: A fresh page with one reference, ours.
        NonNull::new(p).map(Self)
    }

    /// The page's frame number (in guest pages).
    pub(crate) fn pfn(&self) -> u64 {
        // SAFETY: By the type invariant the page is valid.
        unsafe { bindings::page_to_pfn(self.0.as_ptr()) as u64 }
    }

    /// Gives the page back to the page allocator; with `adjust_managed` it
    /// is counted in the managed pages (MemTotal) again first.
    pub(crate) fn release(self, adjust_managed: bool) {
        if adjust_managed {
            // SAFETY: The page is valid; it was subtracted when enqueued.
            unsafe { bindings::adjust_managed_page_count(self.0.as_ptr(), 1) };
        }
        // SAFETY: We own this reference (type invariant); it is consumed.
        unsafe { bindings::put_page(self.0.as_ptr()) };
    }
}

/// The balloon's page list (`struct balloon_dev_info`).
///
/// # Invariants
///
/// `info` is initialised by `balloon_devinfo_init` and pinned. Pages on its
/// list are owned by the list (each holds its balloon reference).
#[pin_data(PinnedDrop)]
#[repr(C)]
pub(crate) struct BalloonDevInfo {
    #[pin]
    info: Opaque<bindings::balloon_dev_info>,
}

// SAFETY: The list is protected by `pages_lock` inside the C struct, which
// every C helper used here takes.
unsafe impl Send for BalloonDevInfo {}
// SAFETY: As above.
unsafe impl Sync for BalloonDevInfo {}

impl BalloonDevInfo {
    /// An empty pool; pages are not migratable until
    /// [`BalloonDevInfo::enable_migration`].
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            // SAFETY: `slot` is valid for writes.
            info <- Opaque::ffi_init(|slot| unsafe { bindings::balloon_devinfo_init(slot) }),
        })
    }

    /// Puts `page` on the list (movable from now on) and returns its PFN.
    /// Without deflate-on-OOM (`adjust_managed`) it leaves MemTotal.
    pub(crate) fn enqueue(&self, page: BalloonPage, adjust_managed: bool) -> u64 {
        let pfn = page.pfn();
        let BalloonPage(raw) = page;
        let raw = raw.as_ptr();
        // SAFETY: The pool is initialised (type invariant); the page is ours
        // and on no list; its reference now belongs to the list.
        unsafe { bindings::balloon_page_enqueue(self.info.get(), raw) };
        if adjust_managed {
            // SAFETY: The page is valid.
            unsafe { bindings::adjust_managed_page_count(raw, -1) };
        }
        pfn
    }

    /// Takes a page off the list (not one isolated for migration).
    pub(crate) fn dequeue(&self) -> Option<BalloonPage> {
        // SAFETY: The pool is initialised (type invariant).
        let p = unsafe { bindings::balloon_page_dequeue(self.info.get()) };
        // INVARIANT: `balloon_page_dequeue` took it off the list and
        // finalised it; its balloon reference is now ours.
        NonNull::new(p).map(BalloonPage)
    }

    /// Whether pages are on the list, and how many are isolated for
    /// migration (both under `pages_lock`).
    fn counts(&self) -> (bool, usize) {
        let info = self.info.get();
        // SAFETY: The pool is initialised (type invariant); the list head and
        // the isolated count are read under the lock that guards them.
        unsafe {
            let flags = bindings::spin_lock_irqsave(&raw mut (*info).pages_lock);
            let head = &raw mut (*info).pages;
            let listed = !core::ptr::eq((*head).next, head);
            let isolated = (*info).isolated_pages;
            bindings::spin_unlock_irqrestore(&raw mut (*info).pages_lock, flags);
            (listed, isolated)
        }
    }

    /// Gives every page back to the page allocator without telling anyone
    /// (the device is broken or gone), waiting for pages isolated by
    /// compaction to come back first; returns how many were released. With
    /// `adjust_managed` they count in MemTotal again.
    pub(crate) fn release_all(&self, adjust_managed: bool) -> u64 {
        let mut released = 0;
        loop {
            let (listed, isolated) = self.counts();
            if listed {
                if let Some(page) = self.dequeue() {
                    page.release(adjust_managed);
                    released += 1;
                    continue;
                }
            } else if isolated == 0 {
                return released;
            }
            // A page is locked or isolated by compaction: it is put back (or
            // replaced) within moments.
            super::mm::msleep(10);
        }
    }

    /// Makes the pool's pages migratable: compaction calls
    /// [`Migrate::migrate`] on the `T` this pool is a field of.
    pub(crate) fn enable_migration<T: Migrate>(&self) {
        // SAFETY: The pool is initialised; the callback is set before any
        // page is enqueued, as C does after `balloon_devinfo_init`.
        unsafe { (*self.info.get()).migratepage = Some(migrate_fn::<T>) };
    }
}

// A pool is never freed holding pages: their `page->private` would point at
// freed memory for the next compaction to follow. The driver empties it
// first; if it did not, the pages are released here.
#[pinned_drop]
impl PinnedDrop for BalloonDevInfo {
    fn drop(self: Pin<&mut Self>) {
        if self.counts() != (false, 0) {
            pr_err!("balloon pool dropped with pages on it: releasing them\n");
            let n = self.release_all(false);
            pr_err!("released {} balloon pages without telling the host\n", n);
        }
    }
}

/// What to do when compaction moves a balloon page.
pub(crate) trait Migrate: HasField<BalloonDevInfo> + Sync {
    /// Replaces `m`'s old page by its new one.
    ///
    /// Either refuse before touching the pages (`Err(EAGAIN)`: the old page
    /// stays in the balloon, the core puts it back on the list), or commit
    /// with [`Migration::insert_new`], tell the host, drop the returned
    /// handle and return `Ok`. [`Migration::insert_new`] is the commit
    /// point: an error after it would make the core put back a page that
    /// has already left the balloon.
    fn migrate(&self, m: Migration<'_>) -> Result;
}

/// Makes the `BalloonDevInfo` field (path) `$field` of `$ty` the list
/// whose pages [`Migrate::migrate`] is called for.
#[macro_export]
macro_rules! impl_migrate {
    ($ty:ty, $($field:ident).+) => {
        $crate::impl_has_field!(
            $ty,
            $crate::abstractions::balloon_compaction::BalloonDevInfo,
            0,
            $($field).+
        );
    };
}

/// A balloon page being migrated: `old` is isolated from the list, `new`
/// is a fresh page from compaction; both are locked by the caller.
///
/// # Invariants
///
/// `pool`, `new` and `old` come from `migrate_fn`, called by compaction.
pub(crate) struct Migration<'a> {
    pool: &'a BalloonDevInfo,
    new: NonNull<bindings::page>,
    old: NonNull<bindings::page>,
}

impl<'a> Migration<'a> {
    /// PFN of the page that replaces the old one.
    pub(crate) fn new_pfn(&self) -> u64 {
        // SAFETY: By the type invariant the page is valid.
        unsafe { bindings::page_to_pfn(self.new.as_ptr()) as u64 }
    }

    /// PFN of the page leaving the balloon.
    pub(crate) fn old_pfn(&self) -> u64 {
        // SAFETY: By the type invariant the page is valid.
        unsafe { bindings::page_to_pfn(self.old.as_ptr()) as u64 }
    }

    /// Puts the new page in the balloon (with its balloon reference), fixing
    /// the managed page counts if the zones differ (`adjust_managed`), and
    /// counts a `balloon_migrate` event. The old page is released when the
    /// returned handle is dropped.
    pub(crate) fn insert_new(self, adjust_managed: bool) -> Migrated<'a> {
        let (new, old) = (self.new.as_ptr(), self.old.as_ptr());
        // SAFETY: Both pages are valid and locked (type invariant).
        unsafe {
            bindings::get_page(new);
            if adjust_managed && bindings::page_zone(old) != bindings::page_zone(new) {
                bindings::adjust_managed_page_count(old, 1);
                bindings::adjust_managed_page_count(new, -1);
            }
        }
        let info = self.pool.info.get();
        // SAFETY: The pool is initialised; its lock is taken around the list
        // update as C's `virtballoon_migratepage()` does; the old page was
        // counted in `isolated_pages` by compaction.
        unsafe {
            let flags = bindings::spin_lock_irqsave(&raw mut (*info).pages_lock);
            bindings::balloon_page_insert(info, new);
            (*info).isolated_pages -= 1;
            bindings::count_vm_event(bindings::vm_event_item_BALLOON_MIGRATE);
            bindings::spin_unlock_irqrestore(&raw mut (*info).pages_lock, flags);
        }
        Migrated {
            old: self.old,
            _pool: core::marker::PhantomData,
        }
    }
}

/// A completed migration whose old page is released on drop.
pub(crate) struct Migrated<'a> {
    old: NonNull<bindings::page>,
    _pool: core::marker::PhantomData<&'a BalloonDevInfo>,
}

impl Drop for Migrated<'_> {
    fn drop(&mut self) {
        // SAFETY: The old page is isolated, locked and holds the balloon
        // reference, which is dropped here after it left the balloon.
        unsafe {
            bindings::balloon_page_finalize(self.old.as_ptr());
            bindings::put_page(self.old.as_ptr());
        }
    }
}

/// # Safety
///
/// Called by balloon compaction (`balloon_page_migrate`) with the pool's
/// `balloon_dev_info` and two locked pages.
unsafe extern "C" fn migrate_fn<T: Migrate>(
    info: *mut bindings::balloon_dev_info,
    new: *mut bindings::page,
    old: *mut bindings::page,
    _mode: bindings::migrate_mode,
) -> i32 {
    // SAFETY: `info` is the `info` field of a `BalloonDevInfo` (repr of a single
    // `Opaque`, at offset 0), which sits at `T::OFFSET` in a live `T`: the
    // pool's pages are all released before the `T` is dropped.
    let t = unsafe { T::container_of(info.cast::<BalloonDevInfo>()) };
    // SAFETY: As above: `info` is the pool's `balloon_dev_info`.
    let pool = unsafe { &*info.cast::<BalloonDevInfo>() };
    let (Some(new), Some(old)) = (NonNull::new(new), NonNull::new(old)) else {
        return EINVAL.to_errno();
    };
    match t.migrate(Migration { pool, new, old }) {
        Ok(()) => bindings::MIGRATEPAGE_SUCCESS as i32,
        Err(e) => e.to_errno(),
    }
}
