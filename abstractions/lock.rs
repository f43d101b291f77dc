// SPDX-License-Identifier: GPL-2.0

//! A sleeping mutex with `try_lock`, over C's `struct mutex`.
//!
//! C header: [`include/linux/mutex.h`].
//!
//! The 6.12 kernel crate's `Mutex` has no `try_lock`, which balloon page
//! migration needs: compaction may run inside the balloon's own page
//! allocation, and must then give up (`-EAGAIN`) instead of deadlocking on
//! the lock the allocating thread holds (as C's `virtballoon_migratepage()`).

use core::{
    cell::UnsafeCell,
    marker::{PhantomData, PhantomPinned},
    ops::{Deref, DerefMut},
};
use kernel::{bindings, prelude::*, str::CStr, sync::LockClassKey, types::Opaque};

/// A mutex protecting a `T`.
///
/// # Invariants
///
/// `raw` is initialised by `__mutex_init` and pinned; `data` is only
/// accessed through a [`Guard`], which exists only while `raw` is held.
#[pin_data]
pub(crate) struct Mutex<T> {
    #[pin]
    raw: Opaque<bindings::mutex>,
    data: UnsafeCell<T>,
    #[pin]
    _pin: PhantomPinned,
}

// SAFETY: The mutex gives one thread at a time access to the `T`.
unsafe impl<T: Send> Send for Mutex<T> {}
// SAFETY: As above: `&Mutex<T>` only hands out `T` under the lock.
unsafe impl<T: Send> Sync for Mutex<T> {}

impl<T> Mutex<T> {
    /// Creates a mutex; `name` and `key` are for lockdep.
    pub(crate) fn new(
        data: T,
        name: &'static CStr,
        key: &'static LockClassKey,
    ) -> impl PinInit<Self> {
        let key = crate::wait::lock_class_ptr(key);
        pin_init!(Self {
            data: UnsafeCell::new(data),
            // SAFETY: `slot` is valid for writes; name and key are static.
            raw <- Opaque::ffi_init(|slot| unsafe { bindings::__mutex_init(slot, name.as_char_ptr(), key) }),
            _pin: PhantomPinned,
        })
    }

    /// Takes the lock, sleeping until it is free.
    pub(crate) fn lock(&self) -> Guard<'_, T> {
        // SAFETY: By the type invariant `raw` is initialised.
        unsafe { bindings::mutex_lock(self.raw.get()) };
        // INVARIANT: The lock is held.
        Guard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    /// Takes the lock if it is free.
    pub(crate) fn try_lock(&self) -> Option<Guard<'_, T>> {
        // SAFETY: By the type invariant `raw` is initialised.
        let taken = unsafe { bindings::mutex_trylock(self.raw.get()) } != 0;
        // INVARIANT: The lock is held when `taken`. The guard is built only
        // then: `then_some` would build it either way and drop it, unlocking
        // a mutex another task holds.
        taken.then(|| Guard {
            lock: self,
            _not_send: PhantomData,
        })
    }
}

/// Access to the data of a locked [`Mutex`]; unlocks when dropped.
///
/// # Invariants
///
/// The lock is held while the guard exists. The guard is not `Send`: a mutex
/// must be released by the task that took it.
pub(crate) struct Guard<'a, T> {
    lock: &'a Mutex<T>,
    _not_send: PhantomData<*mut ()>,
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: By the type invariant the lock is held, so no one else
        // accesses the data.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: By the type invariant the lock is held, and `&mut self`
        // makes this the only reference through the guard.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: By the type invariant this task holds the lock.
        unsafe { bindings::mutex_unlock(self.lock.raw.get()) };
    }
}

/// A spinlock taken with interrupts disabled (`spin_lock_irqsave()`),
/// protecting a `T`: for state that interrupt handlers change too. The
/// 6.12 kernel crate's `SpinLock` does not disable interrupts.
///
/// # Invariants
///
/// `raw` is initialised by `__spin_lock_init` and pinned; `data` is only
/// accessed while `raw` is held.
#[pin_data]
pub(crate) struct IrqSpinLock<T> {
    #[pin]
    raw: Opaque<bindings::spinlock_t>,
    data: UnsafeCell<T>,
    #[pin]
    _pin: PhantomPinned,
}

// SAFETY: The lock gives one CPU at a time access to the `T`.
unsafe impl<T: Send> Send for IrqSpinLock<T> {}
// SAFETY: As above.
unsafe impl<T: Send> Sync for IrqSpinLock<T> {}

impl<T> IrqSpinLock<T> {
    /// Creates a lock; `name` and `key` are for lockdep.
    pub(crate) fn new(
        data: T,
        name: &'static CStr,
        key: &'static LockClassKey,
    ) -> impl PinInit<Self> {
        let key = crate::wait::lock_class_ptr(key);
        pin_init!(Self {
            data: UnsafeCell::new(data),
            // SAFETY: `slot` is valid for writes; name and key are static.
            raw <- Opaque::ffi_init(|slot| unsafe { bindings::__spin_lock_init(slot, name.as_char_ptr(), key) }),
            _pin: PhantomPinned,
        })
    }

    /// Runs `f` on the data with the lock held and local interrupts off
    /// (callable from any context, interrupt handlers included). `f` must
    /// not sleep.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        // SAFETY: By the type invariant `raw` is initialised.
        let flags = unsafe { bindings::spin_lock_irqsave(self.raw.get()) };
        // SAFETY: The lock is held, so no one else accesses the data; the
        // reference does not outlive `f`.
        let r = f(unsafe { &mut *self.data.get() });
        // SAFETY: Taken above with these flags, on this CPU.
        unsafe { bindings::spin_unlock_irqrestore(self.raw.get(), flags) };
        r
    }
}
