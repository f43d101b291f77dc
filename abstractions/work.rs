// SPDX-License-Identifier: GPL-2.0

//! Delayed work items embedded in a pinned driver struct (C's
//! `INIT_DELAYED_WORK` + `container_of`) and a workqueue of the driver's
//! own.
//!
//! The shapes are upstream's: [`DelayedWork`], [`new_delayed_work!`] and
//! [`impl_has_delayed_work!`] as in `kernel::workqueue` since delayed work
//! was added there (6.18), [`OwnedQueue`] with [`WqFlags`] as in the posted
//! "rust: workqueue: add OwnedQueue". One difference is kept on purpose:
//! upstream hands a work item an owned pointer (`Arc<T>`) and never
//! cancels; here the item is borrowed (`run(this: &Self)`) because a
//! `DelayedWork` cancels itself and waits for its handler when dropped (C's
//! `cancel_delayed_work_sync`, which the 6.12 crate lacks), so `T` always
//! outlives a running handler — the shape of the posted scoped work items.
//!
//! C header: [`include/linux/workqueue.h`].

use super::container::HasField;
use core::marker::PhantomData;
use kernel::{
    bindings, prelude::*, str::CStr, sync::LockClassKey, time::Jiffies, types::Opaque,
    workqueue::Queue,
};

/// What a work item does when it runs (process context, may sleep); the
/// counterpart of `kernel::workqueue::WorkItem` for borrowed items.
pub(crate) trait WorkItem<const ID: u64>:
    HasField<DelayedWork<Self, ID>, ID> + Sync
{
    /// Runs the work.
    fn run(this: &Self);
}

/// Declares the `DelayedWork<$work_type, $id>` field `$field` of `$self`
/// the one its [`WorkItem::<$id>::run`] is called through, as upstream's
/// `impl_has_delayed_work!`:
/// `impl_has_delayed_work! { impl HasDelayedWork<T, 0> for T { self.work } }`.
#[macro_export]
macro_rules! impl_has_delayed_work {
    ($(impl HasDelayedWork<$work_type:ty, $id:literal> for $self:ty { self.$field:ident })*) => {$(
        $crate::impl_has_field!(
            $self,
            $crate::abstractions::work::DelayedWork<$work_type, $id>,
            $id,
            $field
        );
    )*};
}

/// A [`DelayedWork`] initialiser with a static lock class for the work and
/// one for its timer, named `$name` and `$name` + `"_timer"`, as
/// upstream's `new_delayed_work!`.
#[macro_export]
macro_rules! new_delayed_work {
    ($name:literal) => {
        $crate::abstractions::work::DelayedWork::new(
            kernel::c_str!($name),
            kernel::static_lock_class!(),
            kernel::c_str!(concat!($name, "_timer")),
            kernel::static_lock_class!(),
        )
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
pub(crate) struct DelayedWork<T, const ID: u64> {
    #[pin]
    work: Opaque<bindings::delayed_work>,
    _t: PhantomData<T>,
}

// SAFETY: The work struct is managed by the workqueue core, which serialises
// access to it; `T: Sync` because the handler runs on a worker thread.
unsafe impl<T: Sync, const ID: u64> Send for DelayedWork<T, ID> {}
// SAFETY: As above.
unsafe impl<T: Sync, const ID: u64> Sync for DelayedWork<T, ID> {}

/// The C pointer of a `&Queue` (`Queue` is `repr(transparent)` over the C
/// struct, whose pointer the kernel crate keeps private).
fn raw_queue(queue: &Queue) -> *mut bindings::workqueue_struct {
    core::ptr::from_ref(queue)
        .cast_mut()
        .cast::<bindings::workqueue_struct>()
}

const ANY_CPU: i32 = bindings::wq_misc_consts_WORK_CPU_UNBOUND as i32;

impl<T: WorkItem<ID>, const ID: u64> DelayedWork<T, ID> {
    /// Creates the work item; the names and keys of the work and of its
    /// timer are for lockdep ([`new_delayed_work!`] makes them).
    pub(crate) fn new(
        name: &'static CStr,
        key: &'static LockClassKey,
        timer_name: &'static CStr,
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
                    timer_name.as_char_ptr(),
                    timer_key,
                );
            }),
            _t: PhantomData,
        })
    }

    /// Queues the work on `queue` to run now; false if it was already
    /// pending (due now or later).
    pub(crate) fn enqueue(&self, queue: &Queue) -> bool {
        self.enqueue_delayed(queue, 0)
    }

    /// Queues the work on `queue` to run after `delay` jiffies; false if it
    /// was already pending.
    pub(crate) fn enqueue_delayed(&self, queue: &Queue, delay: Jiffies) -> bool {
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
impl<T, const ID: u64> PinnedDrop for DelayedWork<T, ID> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: `work` is initialised (type invariant); cancelling an idle
        // work is a no-op.
        unsafe { bindings::cancel_delayed_work_sync(self.work.get()) };
    }
}

/// # Safety
///
/// Called by the workqueue core with a `work_struct` initialised by
/// `DelayedWork::<T, ID>::new`, inside a live `T`.
unsafe extern "C" fn work_fn<T: WorkItem<ID>, const ID: u64>(work: *mut bindings::work_struct) {
    // SAFETY: By the `DelayedWork` invariant the work (first in
    // `delayed_work`, first in `DelayedWork`) is at `T::OFFSET` in a `T`
    // alive until the work is cancelled, which waits for us.
    let t = unsafe { T::container_of(work.cast::<DelayedWork<T, ID>>()) };
    T::run(t);
}

/// Flags of a workqueue (C's `WQ_*`).
#[derive(Clone, Copy)]
pub(crate) struct WqFlags(u32);

impl WqFlags {
    /// Frozen with user space for suspend and hibernation.
    pub(crate) const FREEZABLE: Self = Self(bindings::wq_flags_WQ_FREEZABLE);
    /// Its work is CPU-intensive: not counted for concurrency management.
    pub(crate) const CPU_INTENSIVE: Self = Self(bindings::wq_flags_WQ_CPU_INTENSIVE);
}

impl core::ops::BitOr for WqFlags {
    type Output = Self;
    fn bitor(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
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
    /// Allocates a workqueue named `name` (C's `alloc_workqueue`; 0
    /// `max_active` is the default).
    pub(crate) fn new(name: &'static CStr, flags: WqFlags, max_active: i32) -> Result<Self> {
        // SAFETY: The format is "%s" with one C string argument.
        let wq = unsafe {
            bindings::alloc_workqueue(
                c"%s".as_ptr().cast(),
                flags.0,
                max_active,
                name.as_char_ptr(),
            )
        };
        // INVARIANT: Allocated above.
        core::ptr::NonNull::new(wq).map(Self).ok_or(ENOMEM)
    }
}

impl core::ops::Deref for OwnedQueue {
    type Target = Queue;

    fn deref(&self) -> &Queue {
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
