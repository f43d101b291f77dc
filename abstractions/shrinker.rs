// SPDX-License-Identifier: GPL-2.0

//! Shrinkers: memory reclaim asks the owner how many objects it could free
//! (`count_objects`), then asks it to free some (`scan_objects`).
//!
//! The 6.12 kernel crate has no shrinker abstraction. This one has the shape
//! of the posted one ("rust: shrinker: add shrinker abstraction", for
//! Binder): a [`Shrinker`] trait whose callbacks get a borrow of the owner's
//! [`ForeignOwnable`] pointer and a [`ShrinkControl`], [`CountObjects`] and
//! [`ScanObjects`] return types that keep the C sentinels out of the
//! counts, and a [`ShrinkerBuilder`] that allocates, is tuned, and registers
//! into a [`ShrinkerRegistration`], which unregisters on drop.
//!
//! C header: [`include/linux/shrinker.h`].

use core::{marker::PhantomData, ptr::NonNull};
use kernel::{alloc::AllocError, bindings, str::CStr, types::ForeignOwnable};

/// What a shrinker asks of its owner. Both callbacks run in reclaim
/// context and must not allocate with reclaim.
pub(crate) trait Shrinker {
    /// The owner's pointer, given to the shrinker at registration and
    /// dropped after it is unregistered.
    type Ptr: ForeignOwnable + Send + Sync;

    /// How many objects could be freed now.
    fn count_objects(
        me: <Self::Ptr as ForeignOwnable>::Borrowed<'_>,
        sc: ShrinkControl<'_>,
    ) -> CountObjects;

    /// Frees up to `sc.nr_to_scan()` objects; returns how many it freed.
    fn scan_objects(
        me: <Self::Ptr as ForeignOwnable>::Borrowed<'_>,
        sc: ShrinkControl<'_>,
    ) -> ScanObjects;
}

/// The reclaim request a callback is called with.
pub(crate) struct ShrinkControl<'a> {
    ptr: NonNull<bindings::shrink_control>,
    _ref: PhantomData<&'a mut bindings::shrink_control>,
}

impl ShrinkControl<'_> {
    /// The request of one callback, `None` without one.
    fn of_call(sc: *mut bindings::shrink_control) -> Option<Self> {
        NonNull::new(sc).map(|ptr| Self {
            ptr,
            _ref: PhantomData,
        })
    }

    /// How many objects reclaim asks to free in this call.
    pub(crate) fn nr_to_scan(&self) -> usize {
        // SAFETY: `ptr` is valid for the callback's duration (`'_`).
        unsafe { (*self.ptr.as_ptr()).nr_to_scan }
    }
}

/// The answer of [`Shrinker::count_objects`].
#[derive(Clone, Copy)]
pub(crate) struct CountObjects(usize);

impl CountObjects {
    /// The largest count, below the C sentinels.
    pub(crate) const MAX: Self = Self(usize::MAX / 2);

    /// `count` objects could be freed (0: unknown, as in C).
    pub(crate) fn new(count: usize) -> Self {
        Self(count.min(Self::MAX.0))
    }
}

/// The answer of [`Shrinker::scan_objects`].
#[derive(Clone, Copy)]
pub(crate) struct ScanObjects(usize);

impl ScanObjects {
    /// No progress can be made now (`SHRINK_STOP`).
    pub(crate) const STOP: Self = Self(bindings::SHRINK_STOP as usize);
    /// The largest count, below `SHRINK_STOP`.
    pub(crate) const MAX: Self = Self(bindings::SHRINK_STOP as usize - 1);

    /// `count` objects were freed.
    pub(crate) fn from_count(count: usize) -> Self {
        Self(count.min(Self::MAX.0))
    }
}

/// An allocated shrinker, not yet registered (freed on drop). Upstream's
/// builder also sets `seeks` and `batch`; C's balloon keeps the defaults,
/// so this one has no setters.
///
/// # Invariants
///
/// `ptr` is a shrinker from `shrinker_alloc`, owned and not registered.
pub(crate) struct ShrinkerBuilder {
    ptr: NonNull<bindings::shrinker>,
}

impl ShrinkerBuilder {
    /// Allocates a shrinker named `name` (seen in debugfs and tracepoints).
    pub(crate) fn new(name: &'static CStr) -> Result<Self, AllocError> {
        // SAFETY: The format is "%s" with one C string argument.
        let raw = unsafe { bindings::shrinker_alloc(0, c"%s".as_ptr().cast(), name.as_char_ptr()) };
        // INVARIANT: Allocated above, not registered.
        NonNull::new(raw).map(|ptr| Self { ptr }).ok_or(AllocError)
    }

    /// Registers the shrinker calling `T` with `data`; it is live until
    /// the returned registration is dropped.
    pub(crate) fn register<T: Shrinker>(self, data: T::Ptr) -> ShrinkerRegistration<T> {
        let ptr = core::mem::ManuallyDrop::new(self).ptr;
        let s = ptr.as_ptr();
        // SAFETY: By the type invariant `s` is ours and not registered yet;
        // `private_data` holds `data` until the registration frees the
        // shrinker, after which it is taken back with `from_foreign`.
        unsafe {
            (*s).count_objects = Some(count_objects_fn::<T>);
            (*s).scan_objects = Some(scan_objects_fn::<T>);
            (*s).private_data = data.into_foreign().cast_mut();
            bindings::shrinker_register(s);
        }
        // INVARIANT: Registered above with `data` as private data.
        ShrinkerRegistration {
            ptr,
            _owner: PhantomData,
        }
    }
}

impl Drop for ShrinkerBuilder {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the shrinker is ours and was never
        // registered; freeing an unregistered shrinker is allowed.
        unsafe { bindings::shrinker_free(self.ptr.as_ptr()) };
    }
}

/// A registered shrinker calling `T`; unregistered and freed on drop.
///
/// # Invariants
///
/// `ptr` is a registered shrinker whose callbacks are `T`'s and whose
/// `private_data` came from `T::Ptr::into_foreign`, owned by this value.
pub(crate) struct ShrinkerRegistration<T: Shrinker> {
    ptr: NonNull<bindings::shrinker>,
    _owner: PhantomData<T::Ptr>,
}

// SAFETY: The shrinker core serialises its own use of the struct; the owner
// pointer is `Send + Sync` (trait bound), so it may be dropped elsewhere and
// used from the callbacks on any CPU.
unsafe impl<T: Shrinker> Send for ShrinkerRegistration<T> {}
// SAFETY: `&ShrinkerRegistration` allows nothing.
unsafe impl<T: Shrinker> Sync for ShrinkerRegistration<T> {}

impl<T: Shrinker> Drop for ShrinkerRegistration<T> {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the shrinker is ours and registered.
        let data = unsafe { (*self.ptr.as_ptr()).private_data };
        // SAFETY: As above; this unregisters it and waits for running
        // callbacks, after which nothing uses `data`.
        unsafe { bindings::shrinker_free(self.ptr.as_ptr()) };
        // SAFETY: `data` came from `T::Ptr::into_foreign` (type invariant)
        // and the freed shrinker no longer holds it.
        drop(unsafe { T::Ptr::from_foreign(data) });
    }
}

/// # Safety
///
/// Called by the shrinker core for a shrinker registered by
/// [`ShrinkerBuilder::register::<T>`], with a valid `shrink_control`.
unsafe extern "C" fn count_objects_fn<T: Shrinker>(
    s: *mut bindings::shrinker,
    sc: *mut bindings::shrink_control,
) -> usize {
    // SAFETY: `private_data` came from `T::Ptr::into_foreign` and is not
    // taken back before the shrinker is freed, which waits for us.
    let me = unsafe { T::Ptr::borrow((*s).private_data) };
    ShrinkControl::of_call(sc).map_or(0, |sc| T::count_objects(me, sc).0)
}

/// # Safety
///
/// As [`count_objects_fn`].
unsafe extern "C" fn scan_objects_fn<T: Shrinker>(
    s: *mut bindings::shrinker,
    sc: *mut bindings::shrink_control,
) -> usize {
    // SAFETY: As in `count_objects_fn`.
    let me = unsafe { T::Ptr::borrow((*s).private_data) };
    ShrinkControl::of_call(sc).map_or(ScanObjects::STOP.0, |sc| T::scan_objects(me, sc).0)
}
