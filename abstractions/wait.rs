// SPDX-License-Identifier: GPL-2.0

//! A wait queue to sleep on until a condition holds (`wait_event()` in C).
//!
//! C header: [`include/linux/wait.h`].
//!
//! The kernel crate's `CondVar` releases a lock while it sleeps; waiting for
//! the host's ack must keep the balloon lock held (as C's `tell_host()` does),
//! so this is the plain `wait_event()` loop.

use kernel::{bindings, prelude::*, str::CStr, sync::LockClassKey, types::Opaque};

/// The C `lock_class_key` behind a [`LockClassKey`].
///
/// `LockClassKey` is `repr(transparent)` over the C struct; its own
/// `as_ptr()` is private to the kernel crate. Lockdep only uses the key
/// through its own locking, so handing out `*mut` is what C does.
pub(crate) fn lock_class_ptr(key: &'static LockClassKey) -> *mut bindings::lock_class_key {
    core::ptr::from_ref(key).cast_mut().cast()
}

/// A `wait_queue_head`.
///
/// # Invariants
///
/// `inner` is initialised by `__init_waitqueue_head` and pinned.
#[pin_data]
pub(crate) struct WaitQueue {
    #[pin]
    inner: Opaque<bindings::wait_queue_head>,
}

// SAFETY: A wait queue head is protected by its own spinlock and may be used
// from any thread, including interrupt context for wake-ups.
unsafe impl Send for WaitQueue {}
// SAFETY: As above.
unsafe impl Sync for WaitQueue {}

impl WaitQueue {
    /// Creates a wait queue; `name` and `key` are for lockdep.
    pub(crate) fn new(name: &'static CStr, key: &'static LockClassKey) -> impl PinInit<Self> {
        // `LockClassKey` is `repr(transparent)` over the C `lock_class_key`;
        // its own `as_ptr()` is private to the kernel crate.
        let key = core::ptr::from_ref(key)
            .cast_mut()
            .cast::<bindings::lock_class_key>();
        pin_init!(Self {
            // SAFETY: `slot` is valid for writes; the name and key are static,
            // and lockdep only ever uses the key through its own locking.
            inner <- Opaque::ffi_init(|slot| unsafe {
                bindings::__init_waitqueue_head(slot, name.as_char_ptr(), key)
            }),
        })
    }

    /// Wakes the tasks sleeping in [`WaitQueue::wait_until`]. Callable from
    /// interrupt context.
    pub(crate) fn wake_up(&self) {
        // SAFETY: By the type invariant the head is initialised.
        unsafe {
            bindings::__wake_up(
                self.inner.get(),
                bindings::TASK_NORMAL,
                1,
                core::ptr::null_mut(),
            )
        };
    }

    /// Sleeps (uninterruptibly) until `cond` returns true; `cond` is checked
    /// after every wake-up.
    pub(crate) fn wait_until(&self, mut cond: impl FnMut() -> bool) {
        if cond() {
            return;
        }
        let entry = Opaque::<bindings::wait_queue_entry>::uninit();
        // SAFETY: `entry` is valid for writes and lives on this stack frame
        // until `finish_wait` below removed it from the queue.
        unsafe { bindings::init_wait_entry(entry.get(), 0) };
        loop {
            // SAFETY: The head is initialised (type invariant) and `entry` was
            // initialised above.
            unsafe {
                bindings::prepare_to_wait_event(
                    self.inner.get(),
                    entry.get(),
                    bindings::TASK_UNINTERRUPTIBLE as i32,
                )
            };
            if cond() {
                break;
            }
            // SAFETY: Sleeping is allowed here: the caller is in process context.
            unsafe { bindings::schedule() };
        }
        // SAFETY: `entry` was queued by `prepare_to_wait_event` on this head.
        unsafe { bindings::finish_wait(self.inner.get(), entry.get()) };
    }
}
