// SPDX-License-Identifier: GPL-2.0

//! The balloon's arithmetic and policy, as pure functions: PFN units,
//! target rounding, batch sizes, the guest floor, back-off and rate limits.
//!
//! This file uses `core` only. The kernel module includes it as a module, and
//! the workspace crate `policy-tests` includes the same file so that
//! `cargo test` runs the unit tests below on the host.

/// The balloon protocol counts 4 KiB pages (`VIRTIO_BALLOON_PFN_SHIFT`).
pub(crate) const BALLOON_PFN_SHIFT: u32 = 12;

/// PFNs per request buffer, as in C (`VIRTIO_BALLOON_ARRAY_PFNS_MAX`).
pub(crate) const PFNS_PER_BATCH: usize = 256;

/// Balloon (4 KiB) pages per guest page for a guest `page_shift`.
pub(crate) const fn balloon_pages_per_page(page_shift: u32) -> u32 {
    1 << (page_shift - BALLOON_PFN_SHIFT)
}

/// The target in balloon pages, rounded up to whole guest pages so that the
/// balloon does not oscillate around a target it cannot hit exactly.
pub(crate) const fn round_target(num_pages: u32, page_shift: u32) -> u64 {
    let per = balloon_pages_per_page(page_shift) as u64;
    (num_pages as u64).div_ceil(per) * per
}

/// Size of a balloon holding `pages` balloon pages, in whole MiB (rounded down).
pub(crate) const fn balloon_pages_to_mib(pages: u64) -> u64 {
    pages >> (20 - BALLOON_PFN_SHIFT)
}

/// Smallest default floor, in MiB: what a small guest's init, shell and
/// kernel threads need to stay responsive.
pub(crate) const FLOOR_MIN_MIB: u64 = 32;

/// The kernel's own `min_free_kbytes` for `lowmem_kib` KiB of lowmem
/// (`calculate_min_free_kbytes()`: `sqrt(lowmem_kib * 16)`, clamped to
/// 128 KiB .. 256 MiB).
pub(crate) const fn min_free_kib(lowmem_kib: u64) -> u64 {
    let v = isqrt(lowmem_kib.saturating_mul(16));
    if v < 128 {
        128
    } else if v > 262_144 {
        262_144
    } else {
        v
    }
}

const fn isqrt(n: u64) -> u64 {
    if n < 2 {
        return n;
    }
    // Newton's method from an over-estimate; monotonically decreasing.
    let mut x = n;
    let mut y = x / 2 + x % 2;
    while y < x {
        x = y;
        y = (x + n / x) / 2;
    }
    x
}

/// Default floor in guest pages: the available memory the driver never
/// inflates below. The largest of [`FLOOR_MIN_MIB`], 1/16 of the guest's
/// memory, and four times the high watermark the kernel derives from its
/// lowmem (high = min + 2 * max(min / 4, 0.1 % of memory), as
/// `__setup_per_zone_wmarks()` with the default scale factor).
pub(crate) const fn default_floor_pages(
    guest_pages: u64,
    lowmem_pages: u64,
    page_shift: u32,
) -> u64 {
    let kib_per_page = 1u64 << (page_shift - 10);
    let min_kib = min_free_kib(lowmem_pages * kib_per_page);
    let guest_kib = guest_pages * kib_per_page;
    let gap = if min_kib / 4 > guest_kib / 1000 {
        min_kib / 4
    } else {
        guest_kib / 1000
    };
    let high_kib = min_kib + 2 * gap;
    let mut floor_kib = FLOOR_MIN_MIB * 1024;
    if guest_kib / 16 > floor_kib {
        floor_kib = guest_kib / 16;
    }
    if 4 * high_kib > floor_kib {
        floor_kib = 4 * high_kib;
    }
    floor_kib.div_ceil(kib_per_page)
}

/// Floor in guest pages from the `floor_mib` module parameter, or the
/// default when it is 0. A parameter too large for a page count saturates:
/// a floor above the guest's memory means the balloon never inflates.
pub(crate) const fn floor_pages(
    param_mib: u64,
    guest_pages: u64,
    lowmem_pages: u64,
    page_shift: u32,
) -> u64 {
    if param_mib > 0 {
        param_mib.saturating_mul(1 << (20 - page_shift))
    } else {
        default_floor_pages(guest_pages, lowmem_pages, page_shift)
    }
}

/// How many of `want` guest pages may be inflated now without taking the
/// guest's available memory below `floor` (all in guest pages).
pub(crate) const fn inflate_allowance(available: u64, floor: u64, want: u64) -> u64 {
    let room = available.saturating_sub(floor);
    if room < want {
        room
    } else {
        want
    }
}

/// Guest pages in one inflate or deflate batch for `diff` balloon pages
/// still to move: at most one request buffer's worth of PFNs.
pub(crate) const fn batch_pages(diff: u64, page_shift: u32) -> u64 {
    let per = balloon_pages_per_page(page_shift) as u64;
    let max = PFNS_PER_BATCH as u64;
    (if diff < max { diff } else { max }) / per
}

/// First retry delay after a failed allocation, in ms (C always waits 200).
pub(crate) const BACKOFF_MIN_MS: u32 = 200;
/// Longest retry delay, in ms.
pub(crate) const BACKOFF_MAX_MS: u32 = 3200;

/// Retry delay after `failures` allocation failures in a row: doubling from
/// [`BACKOFF_MIN_MS`] up to [`BACKOFF_MAX_MS`], so a guest short of memory
/// is not asked again five times a second.
pub(crate) const fn backoff_ms(failures: u32) -> u32 {
    if failures == 0 {
        return 0;
    }
    let shift = if failures - 1 > 4 { 4 } else { failures - 1 };
    let d = BACKOFF_MIN_MS << shift;
    if d > BACKOFF_MAX_MS {
        BACKOFF_MAX_MS
    } else {
        d
    }
}

/// Whether an event rate-limited to one per `interval_ms` may happen at
/// `now_ms` when the last one was at `last_ms` (0: never).
pub(crate) const fn rate_limit_ok(now_ms: u64, last_ms: u64, interval_ms: u64) -> bool {
    last_ms == 0 || now_ms.saturating_sub(last_ms) >= interval_ms
}

/// After deflating on OOM, don't re-inflate for this long (ms): the guest
/// just showed it needs the memory (vmw_balloon has a similar hold-off).
pub(crate) const OOM_HOLDOFF_MS: u64 = 10_000;

/// The order tried after the PMD order (2 MiB) fails, before single pages:
/// `PAGE_ALLOC_COSTLY_ORDER`, the largest order the page allocator keeps on
/// its per-cpu lists (32 KiB with 4 KiB pages).
pub(crate) const FALLBACK_ORDER: u32 = 3;

/// The order of the next balloon allocation: the largest of `pmd_order` and
/// [`FALLBACK_ORDER`] that is at most `max_order` (larger ones failed
/// earlier in this inflation) and whose block fits both in the pages still
/// wanted for the target (`want`) and in the floor's allowance for new
/// allocations (`room`), all in guest pages; 0 (a single page) if none fits.
/// A block is never allocated beyond the target or below the floor, so one
/// that is allocated is inflated whole.
pub(crate) const fn next_order(want: u64, room: u64, pmd_order: u32, max_order: u32) -> u32 {
    let fits = if want < room { want } else { room };
    let (large, small) = if pmd_order > FALLBACK_ORDER {
        (pmd_order, FALLBACK_ORDER)
    } else {
        (FALLBACK_ORDER, pmd_order)
    };
    if order_fits(large, max_order, fits) {
        large
    } else if order_fits(small, max_order, fits) {
        small
    } else {
        0
    }
}

const fn order_fits(order: u32, max_order: u32, pages: u64) -> bool {
    order <= max_order && order < 64 && (1u64 << order) <= pages
}

/// The largest order worth trying after an allocation of `order` failed:
/// the allocator had no free block that large, so within this inflation
/// only smaller ones are tried (the next inflation starts again at the PMD
/// order).
pub(crate) const fn order_after_failure(order: u32) -> u32 {
    if order > FALLBACK_ORDER {
        FALLBACK_ORDER
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_k_guest_has_one_balloon_page_per_page() {
        assert_eq!(balloon_pages_per_page(12), 1);
        assert_eq!(balloon_pages_per_page(16), 16);
    }

    #[test]
    fn target_rounds_up_to_whole_guest_pages() {
        assert_eq!(round_target(0, 12), 0);
        assert_eq!(round_target(5, 12), 5);
        assert_eq!(round_target(1, 16), 16);
        assert_eq!(round_target(16, 16), 16);
        assert_eq!(round_target(17, 16), 32);
        // No overflow at the top of the u32 range.
        assert_eq!(round_target(u32::MAX, 16), 1 << 32);
    }

    #[test]
    fn mib_conversion() {
        assert_eq!(balloon_pages_to_mib(256), 1);
        assert_eq!(balloon_pages_to_mib(65536), 256);
        assert_eq!(balloon_pages_to_mib(255), 0);
    }

    #[test]
    fn min_free_matches_the_kernel_formula() {
        // 512 MiB of lowmem: sqrt(524288 * 16) = 2896 KiB.
        assert_eq!(min_free_kib(524_288), 2896);
        assert_eq!(min_free_kib(0), 128);
        assert_eq!(min_free_kib(1 << 40), 262_144);
        assert_eq!(isqrt(15), 3);
        assert_eq!(isqrt(16), 4);
        assert_eq!(isqrt(u64::MAX), 4_294_967_295);
    }

    #[test]
    fn default_floor_scales_with_the_guest() {
        let mib = |m: u64| m * 256; // 4 KiB pages per MiB
                                    // Small guests get the minimum.
        assert_eq!(
            default_floor_pages(mib(256), mib(240), 12),
            mib(FLOOR_MIN_MIB)
        );
        assert_eq!(default_floor_pages(mib(512), mib(490), 12), mib(32));
        // Larger ones 1/16 of their memory.
        assert_eq!(default_floor_pages(mib(4096), mib(4000), 12), mib(256));
        // Watermarks dominate when lowmem is large but the guest is not
        // (not a real layout, but the formula must take the max).
        let w = default_floor_pages(mib(64), mib(1 << 20), 12);
        assert!(w > mib(32), "{w}");
    }

    #[test]
    fn floor_parameter_overrides_the_default() {
        assert_eq!(floor_pages(100, 1 << 20, 1 << 20, 12), 100 * 256);
        assert_eq!(
            floor_pages(0, 131_072, 125_000, 12),
            default_floor_pages(131_072, 125_000, 12)
        );
    }

    #[test]
    fn huge_floor_parameter_saturates_instead_of_wrapping() {
        // 2^56 MiB in 4 KiB pages is 2^64: it used to wrap to a floor of 0.
        assert_eq!(floor_pages(1 << 56, 1 << 20, 1 << 20, 12), u64::MAX);
        assert_eq!(floor_pages(u64::MAX, 1 << 20, 1 << 20, 12), u64::MAX);
        assert_eq!(
            inflate_allowance(1 << 20, floor_pages(1 << 56, 1 << 20, 1 << 20, 12), 256),
            0
        );
    }

    #[test]
    fn allowance_never_crosses_the_floor() {
        assert_eq!(inflate_allowance(10_000, 8_192, 256), 256);
        assert_eq!(inflate_allowance(8_300, 8_192, 256), 108);
        assert_eq!(inflate_allowance(8_192, 8_192, 256), 0);
        assert_eq!(inflate_allowance(100, 8_192, 256), 0);
        for avail in [0u64, 1, 8_191, 8_192, 8_193, 9_000, 1 << 30] {
            let a = inflate_allowance(avail, 8_192, 256);
            assert!(a <= 256);
            assert!(avail < 8_192 || avail - a >= 8_192);
        }
    }

    #[test]
    fn batches_are_one_buffer_of_pfns() {
        assert_eq!(batch_pages(1_000_000, 12), 256);
        assert_eq!(batch_pages(10, 12), 10);
        assert_eq!(batch_pages(0, 12), 0);
        assert_eq!(batch_pages(1_000_000, 16), 16);
        assert_eq!(batch_pages(32, 16), 2);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let v: [u32; 8] = core::array::from_fn(|i| backoff_ms(i as u32));
        assert_eq!(v, [0, 200, 400, 800, 1600, 3200, 3200, 3200]);
        assert_eq!(backoff_ms(u32::MAX), BACKOFF_MAX_MS);
    }

    #[test]
    fn rate_limit() {
        assert!(rate_limit_ok(5, 0, 10_000));
        assert!(!rate_limit_ok(9_999, 1, 10_000));
        assert!(rate_limit_ok(10_001, 1, 10_000));
        assert!(
            !rate_limit_ok(1, 5, 10),
            "clock going back is not a reason to log"
        );
    }

    #[test]
    fn blocks_only_where_the_target_and_the_floor_leave_room() {
        // 2 MiB blocks of 4 KiB pages: order 9, 512 pages.
        assert_eq!(next_order(100_000, 100_000, 9, 9), 9);
        assert_eq!(next_order(512, 512, 9, 9), 9);
        // Not beyond the target, not below the floor: a 32 KiB block, then
        // single pages.
        assert_eq!(next_order(511, 100_000, 9, 9), FALLBACK_ORDER);
        assert_eq!(next_order(100_000, 511, 9, 9), FALLBACK_ORDER);
        assert_eq!(next_order(7, 100_000, 9, 9), 0);
        assert_eq!(next_order(100_000, 7, 9, 9), 0);
        assert_eq!(next_order(0, 0, 9, 9), 0);
        // After failures: only smaller orders.
        assert_eq!(
            next_order(100_000, 100_000, 9, order_after_failure(9)),
            FALLBACK_ORDER
        );
        assert_eq!(
            next_order(100_000, 100_000, 9, order_after_failure(FALLBACK_ORDER)),
            0
        );
        // A PMD order below the fallback one (64 KiB pages: order 5).
        assert_eq!(next_order(100_000, 100_000, 5, 9), 5);
        assert_eq!(next_order(100_000, 100_000, 2, 9), FALLBACK_ORDER);
        // A nonsensical order cannot overflow the shift.
        assert_eq!(next_order(u64::MAX, u64::MAX, 64, 64), FALLBACK_ORDER);
    }

    #[test]
    fn failures_step_down_to_single_pages() {
        assert_eq!(order_after_failure(9), FALLBACK_ORDER);
        assert_eq!(order_after_failure(FALLBACK_ORDER), 0);
        assert_eq!(order_after_failure(0), 0);
    }
}
