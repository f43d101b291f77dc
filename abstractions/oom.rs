// SPDX-License-Identifier: GPL-2.0

//! An OOM notifier embedded in a pinned driver struct.
//!
//! C header: [`include/linux/oom.h`]. The OOM killer calls the notifier
//! chain first; if any notifier freed pages, it kills nothing this time.

use super::container::HasField;
use core::{
    marker::PhantomData,
    sync::atomic::{AtomicBool, Ordering},
};
use kernel::{bindings, error::to_result, prelude::*, types::Opaque};

/// What to do when the system is out of memory.
pub(crate) trait OomHandler: HasField<OomNotifier<Self>> + Sync {
    /// Frees what it can; returns the number of (guest) pages freed.
    fn on_oom(&self) -> u64;
}

/// Makes the `OomNotifier<$ty>` field `$field` of `$ty` the one
/// [`OomHandler::on_oom`] is called through.
#[macro_export]
macro_rules! impl_oom_handler {
    ($ty:ty, $field:ident) => {
        $crate::impl_has_field!($ty, $crate::abstractions::oom::OomNotifier<$ty>, 0, $field);
    };
}

/// A `notifier_block` on the OOM chain.
///
/// # Invariants
///
/// `nb` (first, `repr(C)`) is pinned inside a `T` at `T::OFFSET`;
/// `registered` says whether it is on the chain. It is taken off the chain
/// on drop, before the fields declared after it.
#[pin_data(PinnedDrop)]
#[repr(C)]
pub(crate) struct OomNotifier<T> {
    #[pin]
    nb: Opaque<bindings::notifier_block>,
    registered: AtomicBool,
    _t: PhantomData<T>,
}

// SAFETY: The notifier block is only touched by the notifier core under its
// own lock; the handler needs `T: Sync`.
unsafe impl<T: Sync> Send for OomNotifier<T> {}
// SAFETY: As above.
unsafe impl<T: Sync> Sync for OomNotifier<T> {}

impl<T: OomHandler> OomNotifier<T> {
    /// A notifier with `priority` (C's virtio_balloon uses 80).
    pub(crate) fn new(priority: i32) -> impl PinInit<Self> {
        pin_init!(Self {
            nb: Opaque::new(bindings::notifier_block {
                notifier_call: Some(oom_fn::<T>),
                next: core::ptr::null_mut(),
                priority,
            }),
            registered: AtomicBool::new(false),
            _t: PhantomData,
        })
    }

    /// Puts the notifier on the OOM chain.
    pub(crate) fn register(&self) -> Result {
        if self.registered.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // SAFETY: `nb` is initialised and pinned (type invariant).
        let r = to_result(unsafe { bindings::register_oom_notifier(self.nb.get()) });
        if r.is_err() {
            self.registered.store(false, Ordering::Release);
        }
        r
    }
}

// No bound on `T`: the drop below calls it too.
impl<T> OomNotifier<T> {
    /// Takes the notifier off the chain; waits for running calls.
    pub(crate) fn unregister(&self) {
        if self.registered.swap(false, Ordering::AcqRel) {
            // SAFETY: It was registered (type invariant).
            unsafe { bindings::unregister_oom_notifier(self.nb.get()) };
        }
    }
}

#[pinned_drop]
impl<T> PinnedDrop for OomNotifier<T> {
    fn drop(self: Pin<&mut Self>) {
        self.unregister();
    }
}

/// # Safety
///
/// Called by the OOM notifier chain with a block registered by
/// [`OomNotifier::register`] and `parm` pointing to the `unsigned long` count
/// of freed pages.
unsafe extern "C" fn oom_fn<T: OomHandler>(
    nb: *mut bindings::notifier_block,
    _action: kernel::ffi::c_ulong,
    parm: *mut kernel::ffi::c_void,
) -> i32 {
    // SAFETY: By the `OomNotifier` invariant `nb` starts the notifier at
    // `T::OFFSET` in a live `T` (it is unregistered before the `T` goes
    // away).
    let t = unsafe { T::container_of(nb.cast::<OomNotifier<T>>()) };
    let freed = t.on_oom();
    // SAFETY: The OOM core passes a valid `unsigned long *`.
    unsafe { *parm.cast::<kernel::ffi::c_ulong>() += freed as kernel::ffi::c_ulong };
    bindings::NOTIFY_OK as i32
}
