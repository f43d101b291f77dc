// SPDX-License-Identifier: GPL-2.0

//! An owned block of `2^order` contiguous pages (the 6.12 kernel crate's
//! `Page` has order 0 only), freed on drop.
//!
//! C header: [`include/linux/gfp.h`].

use core::ptr::NonNull;
use kernel::bindings;

/// `2^order` contiguous pages from `alloc_pages`.
///
/// # Invariants
///
/// `page` is the first page of a block of `order` from `alloc_pages`,
/// owned by this value.
pub(crate) struct Pages {
    page: NonNull<bindings::page>,
    order: u32,
}

// SAFETY: Pages may be freed on any thread.
unsafe impl Send for Pages {}
// SAFETY: `&Pages` only reads the block's addresses.
unsafe impl Sync for Pages {}

impl Pages {
    /// Allocates a block of `order` with the allocation flags `gfp` (the
    /// kernel crate's `Flags` has no constructor from raw flags in 6.12);
    /// `None` if the allocator has none. `__GFP_HIGHMEM` is refused: the
    /// block must stay in the direct map.
    pub(crate) fn alloc(gfp: bindings::gfp_t, order: u32) -> Option<Self> {
        if order > bindings::MAX_PAGE_ORDER || gfp & bindings::__GFP_HIGHMEM != 0 {
            return None;
        }
        // SAFETY: Always safe to call; returns null on failure.
        let p = unsafe { bindings::alloc_pages(gfp, order) };
        // INVARIANT: A fresh block of `order`, ours.
        NonNull::new(p).map(|page| Self { page, order })
    }

    /// The block's size in bytes.
    pub(crate) fn len(&self) -> usize {
        1 << (self.order + bindings::PAGE_SHIFT)
    }

    /// The block's kernel address.
    pub(crate) fn addr(&self) -> *mut u8 {
        // SAFETY: By the type invariant the page is valid; a block without
        // `__GFP_HIGHMEM` is in the direct map.
        unsafe { bindings::page_address(self.page.as_ptr()).cast() }
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        // SAFETY: By the type invariant we own the block of this order.
        unsafe { bindings::__free_pages(self.page.as_ptr(), self.order) };
    }
}
