// SPDX-License-Identifier: GPL-2.0

//! Work items embedded in a pinned driver struct (C's `INIT_WORK` +
//! `container_of`), with `cancel_work_sync`, which the 6.12 kernel crate's
//! `workqueue` module lacks.
//!
//! C header: [`include/linux/workqueue.h`].

use super::container::HasField;
use core::marker::PhantomData;
use kernel::{
    bindings, prelude::*, str::CStr, sync::LockClassKey, types::Opaque, workqueue::Queue,
};

/// What a work item does when it runs (process context, may sleep).
pub(crate) trait Worker<const ID: u64>: HasField<RawWork<Self, ID>, ID> + Sync {
    /// Runs the work.
    fn run(&self);
}

/// Makes the `RawWork<$ty, $id>` field `$field` of `$ty` the one
/// [`Worker::<$id>::run`] is called through.
#[macro_export]
macro_rules! impl_worker {
    ($ty:ty, $field:ident, $id:literal) => {
        $crate::impl_has_field!($ty, $crate::abstractions::work::RawWork<$ty, $id>, $id, $field);
    };
}

/// A work item inside a `T` (a `delayed_work`, so that it can also be
/// queued to run later, without a worker sleeping in the meantime).
///
/// # Invariants
///
/// `work` is initialised with `work_fn::<T, ID>` as its function and a
/// `delayed_work_timer_fn` timer, and is pinned inside a `T` at
/// `T::OFFSET`. Dropping it cancels it (timer included) and waits for a
/// running instance, so the handler never sees a freed `T`, as long as the
/// field is declared before the fields the handler uses (fields drop in
/// declaration order).
#[pin_data(PinnedDrop)]
#[repr(C)]
pub(crate) struct RawWork<T, const ID: u64> {
    #[pin]
    work: Opaque<bindings::delayed_work>,
    _t: PhantomData<T>,
}

// SAFETY: The work struct is managed by the workqueue core, which serialises
// access to it; `T: Sync` because the handler runs on a worker thread.
unsafe impl<T: Sync, const ID: u64> Send for RawWork<T, ID> {}
// SAFETY: As above.
unsafe impl<T: Sync, const ID: u64> Sync for RawWork<T, ID> {}

/// The C pointer of a `&Queue` (`Queue` is `repr(transparent)` over the C
/// struct, whose pointer the kernel crate keeps private).
fn raw_queue(queue: &Queue) -> *mut bindings::workqueue_struct {
    core::ptr::from_ref(queue)
        .cast_mut()
        .cast::<bindings::workqueue_struct>()
}

const ANY_CPU: i32 = bindings::wq_misc_consts_WORK_CPU_UNBOUND as i32;

impl<T: Worker<ID>, const ID: u64> RawWork<T, ID> {
    /// Creates the work item; `name`, `key` (the work) and `timer_key` (its
    /// timer) are for lockdep.
    pub(crate) fn new(
        name: &'static CStr,
        key: &'static LockClassKey,
        timer_key: &'static LockClassKey,
    ) -> impl PinInit<Self> {
        let key = super::wait::lock_class_ptr(key);
        let timer_key = super::wait::lock_class_ptr(timer_key);
        pin_init!(Self {
            // SAFETY: `slot` is valid for writes; the functions match the
            // `work_func_t` and timer signatures; names and keys are
            // static. This is C's `INIT_DELAYED_WORK`.
            work <- Opaque::ffi_init(|slot: *mut bindings::delayed_work| unsafe {
                bindings::init_work_with_key(
                    &raw mut (*slot).work,
                    Some(work_fn::<T, ID>),
                    false,
                    name.as_char_ptr(),
                    key,
                );
                bindings::init_timer_key(
                    &raw mut (*slot).timer,
                    Some(bindings::delayed_work_timer_fn),
                    bindings::TIMER_IRQSAFE,
                    name.as_char_ptr(),
                    timer_key,
                );
            }),
            _t: PhantomData,
        })
    }

    /// Queues the work on `queue` to run now; false if it was already
    /// pending (due now or later).
    pub(crate) fn queue(&self, queue: &Queue) -> bool {
        self.queue_after(queue, 0)
    }

    /// Queues the work on `queue` to run in `ms` milliseconds; false if it
    /// was already pending.
    pub(crate) fn queue_after(&self, queue: &Queue, ms: u32) -> bool {
        let delay = kernel::time::msecs_to_jiffies(ms);
        // SAFETY: `work` is initialised (type invariant) and the queue is
        // live (it came from a `&Queue`).
        unsafe {
            bindings::queue_delayed_work_on(ANY_CPU, raw_queue(queue), self.work.get(), delay)
        }
    }

    /// Cancels the work (and its timer) if pending and waits for a running
    /// instance; also stops a work that requeues itself. True if it was
    /// pending.
    pub(crate) fn cancel_sync(&self) -> bool {
        // SAFETY: `work` is initialised (type invariant).
        unsafe { bindings::cancel_delayed_work_sync(self.work.get()) }
    }
}

#[pinned_drop]
impl<T, const ID: u64> PinnedDrop for RawWork<T, ID> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: `work` is initialised (type invariant); cancelling an idle
        // work is a no-op.
        unsafe { bindings::cancel_delayed_work_sync(self.work.get()) };
    }
}

/// # Safety
///
/// Called by the workqueue core with a `work_struct` initialised by
/// `RawWork::<T, ID>::new`, inside a live `T`.
unsafe extern "C" fn work_fn<T: Worker<ID>, const ID: u64>(work: *mut bindings::work_struct) {
    // SAFETY: By the `RawWork` invariant the work (first in `delayed_work`,
    // first in `RawWork`) is at `T::OFFSET` in a `T` alive until the work
    // is cancelled, which waits for us.
    let t = unsafe { T::container_of(work.cast::<RawWork<T, ID>>()) };
    t.run();
}

/// A workqueue of the driver's own, destroyed (after draining) on drop.
///
/// # Invariants
///
/// `0` is a workqueue from `alloc_workqueue`, owned by this value.
pub(crate) struct OwnedQueue(core::ptr::NonNull<bindings::workqueue_struct>);

// SAFETY: A workqueue may be used from any thread.
unsafe impl Send for OwnedQueue {}
// SAFETY: As above.
unsafe impl Sync for OwnedQueue {}

impl OwnedQueue {
    /// A freezable, CPU-intensive queue (C's "balloon-wq").
    pub(crate) fn new_freezable_cpu_intensive(name: &'static CStr) -> Result<Self> {
        let flags = bindings::wq_flags_WQ_FREEZABLE | bindings::wq_flags_WQ_CPU_INTENSIVE;
        // SAFETY: The format is "%s" with one C string argument.
        let wq = unsafe {
            bindings::alloc_workqueue(c"%s".as_ptr().cast(), flags, 0, name.as_char_ptr())
        };
        // INVARIANT: Allocated above.
        core::ptr::NonNull::new(wq).map(Self).ok_or(ENOMEM)
    }

    /// The queue, to queue work on.
    pub(crate) fn get(&self) -> &Queue {
        // SAFETY: By the type invariant the queue lives as long as `self`.
        unsafe { Queue::from_raw(self.0.as_ptr()) }
    }
}

impl Drop for OwnedQueue {
    fn drop(&mut self) {
        // SAFETY: By the type invariant we own the queue; destroying it
        // drains it first.
        unsafe { bindings::destroy_workqueue(self.0.as_ptr()) };
    }
}
