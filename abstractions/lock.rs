// SPDX-License-Identifier: GPL-2.0

//! A spinlock taken with interrupts disabled (`spin_lock_irqsave()`), as a
//! backend of the kernel crate's generic [`Lock`]: for state that interrupt
//! handlers change too. The 6.12 kernel crate's `SpinLock` leaves interrupts
//! on (upstream later added `SpinLockIrq`).
//!
//! C header: [`include/linux/spinlock.h`].

use kernel::{
    bindings,
    ffi::c_ulong,
    sync::lock::{Backend, Lock},
};

/// A spinlock protecting a `T` that interrupt handlers may take too.
pub(crate) type IrqSpinLock<T> = Lock<T, IrqSaveBackend>;

/// `spin_lock_irqsave()` / `spin_unlock_irqrestore()`; the guard keeps the
/// saved interrupt flags.
pub(crate) struct IrqSaveBackend;

// SAFETY: The lock is a `spinlock_t` initialised by `__spin_lock_init`,
// taken and released with the irqsave variants, the flags saved by `lock`
// given back to `unlock`: one owner at a time, in any context.
unsafe impl Backend for IrqSaveBackend {
    type State = bindings::spinlock_t;
    type GuardState = c_ulong;

    unsafe fn init(
        ptr: *mut Self::State,
        name: *const kernel::ffi::c_char,
        key: *mut bindings::lock_class_key,
    ) {
        // SAFETY: The caller guarantees `ptr` is valid for writes and `name`
        // and `key` valid for reads for ever.
        unsafe { bindings::__spin_lock_init(ptr, name, key) }
    }

    unsafe fn lock(ptr: *mut Self::State) -> Self::GuardState {
        // SAFETY: The caller guarantees `ptr` is an initialised lock.
        unsafe { bindings::spin_lock_irqsave(ptr) }
    }

    unsafe fn try_lock(ptr: *mut Self::State) -> Option<Self::GuardState> {
        let mut flags: c_ulong = 0;
        // SAFETY: The caller guarantees `ptr` is an initialised lock;
        // `flags` is valid for writes.
        let taken = unsafe { bindings::spin_trylock_irqsave(ptr, &mut flags) } != 0;
        taken.then_some(flags)
    }

    unsafe fn unlock(ptr: *mut Self::State, flags: &Self::GuardState) {
        // SAFETY: The caller owns the lock, taken by `lock` or `try_lock`
        // on this CPU with these flags.
        unsafe { bindings::spin_unlock_irqrestore(ptr, *flags) }
    }
}
