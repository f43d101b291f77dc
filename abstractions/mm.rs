// SPDX-License-Identifier: GPL-2.0

//! Safe views of the memory-management counters the balloon reads, and the
//! few scheduler/time calls it needs.
//!
//! C headers: [`include/linux/mm.h`], [`include/linux/vmstat.h`].

use kernel::bindings;

/// Guest page size as a shift.
pub(crate) const PAGE_SHIFT: u32 = bindings::PAGE_SHIFT;

/// Number of VM event counters (`NR_VM_EVENT_ITEMS`).
pub(crate) const NR_VM_EVENTS: usize = bindings::vm_event_item_NR_VM_EVENT_ITEMS as usize;

/// A snapshot of the memory totals, in guest pages.
#[derive(Clone, Copy, Default)]
pub(crate) struct MemSnapshot {
    /// Managed pages (MemTotal).
    pub(crate) total: u64,
    /// Free pages (MemFree).
    pub(crate) free: u64,
    /// Estimate of pages available without swapping (MemAvailable).
    pub(crate) available: u64,
    /// File-backed pages (page cache, shmem).
    pub(crate) file: u64,
}

/// Reads the memory totals as C's `update_balloon_stats()` does.
pub(crate) fn mem_snapshot() -> MemSnapshot {
    let mut info = core::mem::MaybeUninit::<bindings::sysinfo>::zeroed();
    // SAFETY: `info` is valid for writes.
    unsafe { bindings::si_meminfo(info.as_mut_ptr()) };
    // SAFETY: `si_meminfo` filled it; all-zero was valid anyway.
    let info = unsafe { info.assume_init() };
    // SAFETY: Always safe to call.
    let available = unsafe { bindings::si_mem_available() }.max(0) as u64;
    // SAFETY: Always safe to call with a valid item.
    let file =
        unsafe { bindings::global_node_page_state(bindings::node_stat_item_NR_FILE_PAGES) } as u64;
    MemSnapshot {
        total: info.totalram as u64,
        free: info.freeram as u64,
        available,
        file,
    }
}

/// Pages a balloon can size its floor from: what the kernel itself sizes
/// `min_free_kbytes` from (lowmem free buffer pages).
pub(crate) fn free_buffer_pages() -> u64 {
    // SAFETY: Always safe to call.
    unsafe { bindings::nr_free_buffer_pages() as u64 }
}

/// Sums every CPU's VM event counters into `out` (`all_vm_events()`).
pub(crate) fn vm_events(out: &mut [kernel::ffi::c_ulong; NR_VM_EVENTS]) {
    // SAFETY: `out` has room for `NR_VM_EVENT_ITEMS` counters.
    unsafe { bindings::all_vm_events(out.as_mut_ptr()) };
}

/// Sleeps for at least `ms` milliseconds (process context).
pub(crate) fn msleep(ms: u32) {
    // SAFETY: Always safe to call from process context, which every caller
    // (work items) is.
    unsafe { bindings::msleep(ms) };
}

/// Monotonic time in milliseconds.
pub(crate) fn now_ms() -> u64 {
    kernel::time::Ktime::ktime_get().to_ms().max(0) as u64
}

/// Microseconds since boot (monotonic).
pub(crate) fn now_us() -> u64 {
    (kernel::time::Ktime::ktime_get().to_ns().max(0) as u64) / 1000
}

/// Nanoseconds since boot (monotonic).
pub(crate) fn now_ns() -> u64 {
    kernel::time::Ktime::ktime_get().to_ns().max(0) as u64
}

/// Whether freed pages are zeroed (`init_on_free=1`).
pub(crate) fn want_init_on_free() -> bool {
    // SAFETY: Always safe to call.
    unsafe { bindings::want_init_on_free() }
}

/// Whether freed pages are poisoned (`page_poison=1`).
pub(crate) fn page_poisoning_enabled() -> bool {
    // SAFETY: Always safe to call.
    unsafe { bindings::page_poisoning_enabled_static() }
}
