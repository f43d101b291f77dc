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

    /// Gives `pages` back to the page allocator in one batch
    /// (`put_pages_list`: freed together, not one call each); with
    /// `adjust_managed` they count in MemTotal again first, adjusted once
    /// per run of pages in one zone. Returns how many.
    pub(crate) fn release_all(
        pages: impl Iterator<Item = BalloonPage>,
        adjust_managed: bool,
    ) -> usize {
        with_list(|head| {
            // SAFETY: `head` is initialised and outlives the links.
            let n = unsafe { link(head, pages, adjust_managed.then_some(1)) };
            // SAFETY: Every page on the list holds one reference the list
            // owns; `put_pages_list` drops them and leaves the list empty.
            unsafe { bindings::put_pages_list(head) };
            n
        })
    }
}

/// The order of the host's huge pages in guest pages (`PMD_SHIFT -
/// PAGE_SHIFT`: 2 MiB on x86-64 with 4 KiB pages).
pub(crate) const PMD_ORDER: u32 = bindings::PMD_SHIFT - bindings::PAGE_SHIFT;

const fn gfp(bit: u32) -> bindings::gfp_t {
    1 << bit
}

/// The flags of a balloon block: movable like `balloon_page_alloc()`'s
/// `GFP_HIGHUSER_MOVABLE`, no emergency reserves, no warning, but from the
/// free lists only: without `__GFP_RECLAIM` there is no direct reclaim, no
/// direct compaction, and kswapd is not woken for the order, so a guest
/// without a free block of that size costs one failed attempt, not a stall
/// or a compaction storm.
const BLOCK_GFP: bindings::gfp_t = gfp(bindings::___GFP_IO_BIT)
    | gfp(bindings::___GFP_FS_BIT)
    | gfp(bindings::___GFP_HARDWALL_BIT)
    | gfp(bindings::___GFP_HIGHMEM_BIT)
    | gfp(bindings::___GFP_MOVABLE_BIT)
    | gfp(bindings::___GFP_NOWARN_BIT)
    | gfp(bindings::___GFP_NORETRY_BIT)
    | gfp(bindings::___GFP_NOMEMALLOC_BIT);

/// The base pages of a block of `2^order` contiguous pages, allocated at
/// once and split into order-0 pages (`split_page`), handed out one by one
/// as [`BalloonPage`]s in address order; those never handed out are freed
/// on drop.
///
/// # Invariants
///
/// The `left` pages from `next` on are the rest of one split block, each
/// with one reference owned by this value, on no list.
pub(crate) struct BlockPages {
    next: NonNull<bindings::page>,
    left: usize,
}

// SAFETY: Page references may be dropped on any thread.
unsafe impl Send for BlockPages {}

impl BlockPages {
    /// Allocates a block of `order` (1 ..= `MAX_PAGE_ORDER`) with
    /// [`BLOCK_GFP`]; `None` if the free lists have none.
    pub(crate) fn alloc(order: u32) -> Option<Self> {
        if order == 0 || order > bindings::MAX_PAGE_ORDER {
            return None;
        }
        // SAFETY: Always safe to call; returns null on failure.
        let page = NonNull::new(unsafe { bindings::alloc_pages(BLOCK_GFP, order) })?;
        // SAFETY: A fresh block of `order`, ours, not compound (no
        // `__GFP_COMP`): `split_page` gives each of its pages a reference.
        unsafe { bindings::split_page(page.as_ptr(), order) };
        // INVARIANT: All `2^order` pages are left, one reference each.
        Some(Self {
            next: page,
            left: 1 << order,
        })
    }

    /// Pages not handed out yet.
    pub(crate) fn len(&self) -> usize {
        self.left
    }
}

impl Iterator for BlockPages {
    type Item = BalloonPage;

    fn next(&mut self) -> Option<BalloonPage> {
        if self.left == 0 {
            return None;
        }
        let page = self.next;
        self.left -= 1;
        if self.left > 0 {
            // A buddy block never crosses a memory section (`MAX_PAGE_ORDER`
            // is below the section size): its `struct page`s are contiguous.
            // SAFETY: So the block's next page is `page + 1` (C's `nth_page`).
            self.next = unsafe { NonNull::new_unchecked(page.as_ptr().add(1)) };
        }
        // INVARIANT: The page's reference moves to the `BalloonPage`.
        Some(BalloonPage(page))
    }
}

impl Drop for BlockPages {
    fn drop(&mut self) {
        BalloonPage::release_all(self.by_ref(), false);
    }
}

/// Runs `f` with an empty list head that lives in this call's frame: how
/// the kernel's batch functions (`balloon_page_list_enqueue`,
/// `put_pages_list`) take pages. `f` must leave the list empty.
fn with_list<R>(f: impl FnOnce(*mut bindings::list_head) -> R) -> R {
    let mut head = bindings::list_head {
        next: core::ptr::null_mut(),
        prev: core::ptr::null_mut(),
    };
    let h = &raw mut head;
    // SAFETY: `INIT_LIST_HEAD`: `h` is valid, and `head` is not moved
    // before this function returns.
    unsafe {
        (*h).next = h;
        (*h).prev = h;
    }
    f(h)
}

/// Links `pages` onto the list `head` through their `lru`
/// (`balloon_page_push`), the list taking over their references; with
/// `managed` (+1 or -1 per page) adjusts the managed page counts first,
/// once per run of pages in one zone. Returns how many were linked.
///
/// # Safety
///
/// `head` is an initialised list head that outlives the links.
unsafe fn link(
    head: *mut bindings::list_head,
    pages: impl Iterator<Item = BalloonPage>,
    managed: Option<i64>,
) -> usize {
    // The first page of the current run of pages in one zone, and its length.
    let mut run: Option<(*mut bindings::page, i64)> = None;
    let flush = |run: Option<(*mut bindings::page, i64)>| {
        if let (Some((page, n)), Some(sign)) = (run, managed) {
            // SAFETY: `page` is valid (its reference is on the list) and
            // stands for the `n` pages of its zone linked after it.
            unsafe { bindings::adjust_managed_page_count(page, (sign * n) as _) };
        }
    };
    let mut count = 0;
    for BalloonPage(page) in pages {
        let page = page.as_ptr();
        if managed.is_some() {
            let same_zone = run.is_some_and(|(first, _)| {
                // SAFETY: Both pages are valid: `first` is on the list,
                // `page` is ours.
                unsafe { bindings::page_zone(first) == bindings::page_zone(page) }
            });
            run = match run {
                Some((first, n)) if same_zone => Some((first, n + 1)),
                other => {
                    flush(other);
                    Some((page, 1))
                }
            };
        }
        // SAFETY: The page is ours and on no list (`BalloonPage`'s
        // invariant); `head` is valid (the caller's guarantee).
        unsafe { bindings::balloon_page_push(head, page) };
        count += 1;
    }
    flush(run);
    count
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

    /// Puts `pages` on the list with one acquisition of its lock
    /// (`balloon_page_list_enqueue`), movable from now on; without
    /// deflate-on-OOM (`adjust_managed`) they leave MemTotal, adjusted once
    /// per run of pages in one zone. Returns how many.
    pub(crate) fn enqueue_all(
        &self,
        pages: impl Iterator<Item = BalloonPage>,
        adjust_managed: bool,
    ) -> usize {
        with_list(|head| {
            // SAFETY: `head` is initialised and outlives the links.
            let n = unsafe { link(head, pages, adjust_managed.then_some(-1)) };
            // SAFETY: The pool is initialised (type invariant); every page
            // on `head` is ours, fresh or dequeued, and its reference moves
            // to the pool's list; `head` is left empty.
            unsafe { bindings::balloon_page_list_enqueue(self.info.get(), head) };
            n
        })
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
