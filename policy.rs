// SPDX-License-Identifier: GPL-2.0

//! The balloon's arithmetic, as pure functions: PFN units, target rounding,
//! batch sizes.
//!
//! This file uses `core` only. The kernel module includes it as a module, and
//! the workspace crate `policy-tests` includes the same file so that
//! `cargo test` runs the unit tests below on the host.

/// The balloon protocol counts 4 KiB pages (`VIRTIO_BALLOON_PFN_SHIFT`).
pub const BALLOON_PFN_SHIFT: u32 = 12;

/// PFNs per request buffer, as in C (`VIRTIO_BALLOON_ARRAY_PFNS_MAX`).
pub const PFNS_PER_BATCH: usize = 256;

/// Balloon (4 KiB) pages per guest page for a guest `page_shift`.
pub const fn balloon_pages_per_page(page_shift: u32) -> u32 {
    1 << (page_shift - BALLOON_PFN_SHIFT)
}

/// The target in balloon pages, rounded up to whole guest pages so that the
/// balloon does not oscillate around a target it cannot hit exactly.
pub const fn round_target(num_pages: u32, page_shift: u32) -> u64 {
    let per = balloon_pages_per_page(page_shift) as u64;
    (num_pages as u64).div_ceil(per) * per
}

/// Balloon pages still to move: positive to inflate, negative to deflate.
pub const fn towards_target(num_pages: u32, held: u64, page_shift: u32) -> i64 {
    round_target(num_pages, page_shift) as i64 - held as i64
}

/// Size of a balloon holding `pages` balloon pages, in whole MiB (rounded down).
pub const fn balloon_pages_to_mib(pages: u64) -> u64 {
    pages >> (20 - BALLOON_PFN_SHIFT)
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
    fn towards_target_signs() {
        assert_eq!(towards_target(100, 40, 12), 60);
        assert_eq!(towards_target(10, 40, 12), -30);
        assert_eq!(towards_target(17, 16, 16), 16);
        assert_eq!(towards_target(0, 0, 12), 0);
    }

    #[test]
    fn mib_conversion() {
        assert_eq!(balloon_pages_to_mib(256), 1);
        assert_eq!(balloon_pages_to_mib(65536), 256);
        assert_eq!(balloon_pages_to_mib(255), 0);
    }
}
