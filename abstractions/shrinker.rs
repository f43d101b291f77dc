// SPDX-License-Identifier: GPL-2.0

//! A shrinker: memory reclaim asks the driver how many pages it could give
//! back, then asks it to give some (the 6.12 kernel crate has no shrinker
//! abstraction; Binder's `page_range.rs` later wrapped it similarly).
//!
//! C header: [`include/linux/shrinker.h`].

use core::ptr::NonNull;
use kernel::{bindings, prelude::*, str::CStr, sync::Arc};

/// What a shrinker asks of its owner.
pub(crate) trait Shrink: Send + Sync {
    /// Pages that could be freed now.
    fn count(&self) -> u64;
    /// Frees up to `nr` pages; returns the number freed.
    fn scan(&self, nr: u64) -> u64;
}

/// A registered shrinker calling a `T`.
///
/// # Invariants
///
/// `ptr` is a shrinker from `shrinker_alloc`, registered, whose
/// `private_data` is `owner`, a pointer from `Arc::into_raw` that this value
/// owns: the shrinker is freed (which waits for running callbacks) before
/// the `Arc` is released.
pub(crate) struct Shrinker<T: Shrink> {
    ptr: NonNull<bindings::shrinker>,
    owner: *const T,
}

// SAFETY: The shrinker core serialises its own use of the struct; callbacks
// need `T: Sync`, and the owner is an `Arc<T>` (`T: Sync` makes it `Send`).
unsafe impl<T: Shrink> Send for Shrinker<T> {}
// SAFETY: `&Shrinker` allows nothing.
unsafe impl<T: Shrink> Sync for Shrinker<T> {}

impl<T: Shrink> Shrinker<T> {
    /// Allocates and registers a shrinker named `name` calling `owner`.
    pub(crate) fn register(name: &'static CStr, owner: Arc<T>) -> Result<Self> {
        // SAFETY: The format is "%s" with one C string argument.
        let raw = unsafe { bindings::shrinker_alloc(0, c"%s".as_ptr().cast(), name.as_char_ptr()) };
        let ptr = NonNull::new(raw).ok_or(ENOMEM)?;
        let owner = Arc::into_raw(owner);
        // SAFETY: `ptr` is a fresh, unregistered shrinker; `owner` stays
        // valid until `drop` freed the shrinker.
        unsafe {
            let s = ptr.as_ptr();
            (*s).count_objects = Some(count_fn::<T>);
            (*s).scan_objects = Some(scan_fn::<T>);
            (*s).private_data = owner.cast_mut().cast();
            bindings::shrinker_register(s);
        }
        // INVARIANT: Registered above with `owner` as private data.
        Ok(Self { ptr, owner })
    }
}

impl<T: Shrink> Drop for Shrinker<T> {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the shrinker is ours and registered;
        // freeing it waits for running callbacks, after which nothing uses
        // `owner`, which came from `Arc::into_raw`.
        unsafe {
            bindings::shrinker_free(self.ptr.as_ptr());
            drop(Arc::from_raw(self.owner));
        }
    }
}

/// # Safety
///
/// Called by the shrinker core for a shrinker registered by
/// [`Shrinker::register`].
unsafe extern "C" fn count_fn<T: Shrink>(
    s: *mut bindings::shrinker,
    _sc: *mut bindings::shrink_control,
) -> usize {
    // SAFETY: `private_data` is the live `T` (type invariant of `Shrinker`).
    let t = unsafe { &*(*s).private_data.cast::<T>() };
    t.count() as usize
}

/// # Safety
///
/// Called by the shrinker core for a shrinker registered by
/// [`Shrinker::register`], with a valid `shrink_control`.
unsafe extern "C" fn scan_fn<T: Shrink>(
    s: *mut bindings::shrinker,
    sc: *mut bindings::shrink_control,
) -> usize {
    // SAFETY: `private_data` is the live `T` (type invariant of `Shrinker`);
    // `sc` is valid for the call.
    let (t, nr) = unsafe { (&*(*s).private_data.cast::<T>(), (*sc).nr_to_scan) };
    t.scan(nr as u64) as usize
}
