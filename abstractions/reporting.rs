// SPDX-License-Identifier: GPL-2.0

//! Free page reporting: the kernel hands the driver batches of free pages
//! (a scatterlist) to report to the host, which may then discard them.
//!
//! C header: [`include/linux/page_reporting.h`].

use super::container::HasField;
use core::{
    marker::PhantomData,
    ptr::NonNull,
    sync::atomic::{AtomicBool, Ordering},
};
use kernel::{bindings, error::to_result, prelude::*, types::Opaque};

/// What to do with a batch of free pages.
pub(crate) trait Reporter: HasField<PageReporting<Self>> + Sync {
    /// Reports the pages; they stay out of the allocator until this returns.
    fn report(&self, list: ReportList<'_>) -> Result;
}

/// Makes the `PageReporting<$ty>` field `$field` of `$ty` the one
/// [`Reporter::report`] is called through.
#[macro_export]
macro_rules! impl_reporter {
    ($ty:ty, $field:ident) => {
        $crate::impl_has_field!(
            $ty,
            $crate::abstractions::reporting::PageReporting<$ty>,
            0,
            $field
        );
    };
}

/// A batch of free pages being reported, valid during the report callback.
///
/// # Invariants
///
/// `sg` is an array of `nents` initialised scatterlist entries describing
/// pages page_reporting keeps isolated until the callback returns.
pub(crate) struct ReportList<'a> {
    pub(crate) sg: NonNull<bindings::scatterlist>,
    pub(crate) nents: u32,
    _callback: PhantomData<&'a ()>,
}

impl ReportList<'_> {
    /// Total bytes in the batch.
    pub(crate) fn bytes(&self) -> u64 {
        (0..self.nents as usize)
            // SAFETY: By the type invariant there are `nents` entries.
            .map(|i| unsafe { (*self.sg.as_ptr().add(i)).length } as u64)
            .sum()
    }
}

/// A `page_reporting_dev_info` embedded in a `T`.
///
/// # Invariants
///
/// `info` is pinned in a `T` at `T::OFFSET`; `registered` says whether the
/// kernel knows it. It is unregistered on drop, before later fields drop.
#[pin_data(PinnedDrop)]
#[repr(C)]
pub(crate) struct PageReporting<T> {
    #[pin]
    info: Opaque<bindings::page_reporting_dev_info>,
    registered: AtomicBool,
    _t: PhantomData<T>,
}

// SAFETY: The C struct is only used by page_reporting under its own lock;
// the callback needs `T: Sync`.
unsafe impl<T: Sync> Send for PageReporting<T> {}
// SAFETY: As above.
unsafe impl<T: Sync> Sync for PageReporting<T> {}

impl<T: Reporter> PageReporting<T> {
    /// Not yet registered; reports at the kernel's default order.
    pub(crate) fn new() -> impl PinInit<Self> {
        // SAFETY: All-zero is a valid `page_reporting_dev_info` (no callback,
        // default order); the callback is set right after.
        let mut info: bindings::page_reporting_dev_info = unsafe { core::mem::zeroed() };
        info.report = Some(report_fn::<T>);
        pin_init!(Self {
            info: Opaque::new(info),
            registered: AtomicBool::new(false),
            _t: PhantomData,
        })
    }

    /// Starts reporting.
    pub(crate) fn register(&self) -> Result {
        if self.registered.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // SAFETY: `info` is initialised and pinned (type invariant).
        let r = to_result(unsafe { bindings::page_reporting_register(self.info.get()) });
        if r.is_err() {
            self.registered.store(false, Ordering::Release);
        }
        r
    }
}

// No bound on `T`: the drop below calls it too.
impl<T> PageReporting<T> {
    /// Stops reporting; waits for a running report.
    pub(crate) fn unregister(&self) {
        if self.registered.swap(false, Ordering::AcqRel) {
            // SAFETY: It was registered (type invariant).
            unsafe { bindings::page_reporting_unregister(self.info.get()) };
        }
    }
}

#[pinned_drop]
impl<T> PinnedDrop for PageReporting<T> {
    fn drop(self: Pin<&mut Self>) {
        self.unregister();
    }
}

/// # Safety
///
/// Called by page_reporting with a registered `info` and `nents` entries.
unsafe extern "C" fn report_fn<T: Reporter>(
    info: *mut bindings::page_reporting_dev_info,
    sg: *mut bindings::scatterlist,
    nents: u32,
) -> i32 {
    // SAFETY: `info` is the `info` field (offset 0, `repr(C)`) of a
    // `PageReporting<T>` at `T::OFFSET` in a live `T`: it is unregistered
    // before the `T` goes away.
    let t = unsafe { T::container_of(info.cast::<PageReporting<T>>()) };
    let Some(sg) = NonNull::new(sg) else {
        return EINVAL.to_errno();
    };
    // INVARIANT: page_reporting passes `nents` initialised entries whose
    // pages stay isolated until we return.
    let list = ReportList {
        sg,
        nents,
        _callback: PhantomData,
    };
    match t.report(list) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}
