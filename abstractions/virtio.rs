// SPDX-License-Identifier: GPL-2.0

//! Small safe wrappers over the C virtio API, which the 6.12 `kernel` crate
//! does not abstract: driver registration, the device, its config space and
//! its virtqueues.
//!
//! C header: [`include/linux/virtio.h`], [`include/linux/virtio_config.h`].
//!
//! The driver above this module never touches a raw pointer: it implements
//! [`Driver`], and the trampolines here recover its data from `vdev->priv`.

use super::{page::Pages, reporting::ReportList, wait::WaitQueue};
use core::{marker::PhantomData, ptr::NonNull};
use kernel::{
    bindings,
    error::{code::*, from_result, to_result},
    prelude::*,
    str::CStr,
    types::Opaque,
};

/// A virtio device, as the virtio core hands it to a driver's callbacks.
///
/// # Invariants
///
/// The wrapped `virtio_device` is valid for as long as a reference to this
/// type exists.
#[repr(transparent)]
pub(crate) struct Device(Opaque<bindings::virtio_device>);

// SAFETY: The virtio core serialises probe/remove/config_changed/freeze/restore
// and the device's methods used here may be called from any thread.
unsafe impl Sync for Device {}
// SAFETY: See above; a `Device` is only ever used by reference.
unsafe impl Send for Device {}

impl Device {
    /// Wraps a raw device pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a valid `virtio_device` that stays valid for `'a`.
    unsafe fn from_raw<'a>(ptr: *mut bindings::virtio_device) -> &'a Self {
        // SAFETY: `Device` is `repr(transparent)` over the C struct, and the
        // caller guarantees that it is valid for `'a`.
        unsafe { &*ptr.cast::<Self>() }
    }

    fn as_raw(&self) -> *mut bindings::virtio_device {
        self.0.get()
    }

    /// The device's index (`virtioN` in sysfs).
    pub(crate) fn index(&self) -> i32 {
        // SAFETY: By the type invariant the device is valid; `index` is set
        // before probe and never changes.
        unsafe { (*self.as_raw()).index }
    }

    /// Whether feature bit `fbit` was negotiated.
    pub(crate) fn has_feature(&self, fbit: u32) -> bool {
        // SAFETY: By the type invariant the device is valid.
        unsafe { bindings::virtio_has_feature(self.as_raw(), fbit) }
    }

    /// Whether the device's virtio integers are little-endian.
    pub(crate) fn is_little_endian(&self) -> bool {
        // SAFETY: By the type invariant the device is valid.
        unsafe { bindings::virtio_is_little_endian(self.as_raw()) }
    }

    /// Converts a CPU integer to the device's `__virtio32`.
    pub(crate) fn cpu_to_virtio32(&self, v: u32) -> u32 {
        if self.is_little_endian() {
            v.to_le()
        } else {
            v.to_be()
        }
    }

    /// Converts a CPU integer to the device's `__virtio16`.
    pub(crate) fn cpu_to_virtio16(&self, v: u16) -> u16 {
        if self.is_little_endian() {
            v.to_le()
        } else {
            v.to_be()
        }
    }

    /// Converts a CPU integer to the device's `__virtio64`.
    pub(crate) fn cpu_to_virtio64(&self, v: u64) -> u64 {
        if self.is_little_endian() {
            v.to_le()
        } else {
            v.to_be()
        }
    }

    /// Reads a little-endian `u32` at `offset` of the config space, with one
    /// access as C's `virtio_cread_le()` (the balloon's fields are single
    /// 32-bit values, so no generation check is needed).
    pub(crate) fn read_config_le32(&self, offset: usize) -> u32 {
        let mut bytes = [0u8; 4];
        // SAFETY: By the type invariant the device is valid, and the virtio
        // core sets `config` before probe.
        let get = unsafe { (*(*self.as_raw()).config).get };
        if let Some(get) = get {
            // SAFETY: `get` is the transport's config reader for this device;
            // `bytes` is writable for the length passed.
            unsafe { get(self.as_raw(), offset as u32, bytes.as_mut_ptr().cast(), 4) };
        }
        u32::from_le_bytes(bytes)
    }

    /// Writes a little-endian `u32` at `offset` of the config space.
    pub(crate) fn write_config_le32(&self, offset: usize, value: u32) {
        let bytes = value.to_le_bytes();
        // SAFETY: By the type invariant the device is valid, and the virtio
        // core sets `config` before probe.
        let set = unsafe { (*(*self.as_raw()).config).set };
        if let Some(set) = set {
            // SAFETY: `set` is the transport's config writer for this device;
            // `bytes` is readable for the length passed.
            unsafe { set(self.as_raw(), offset as u32, bytes.as_ptr().cast(), 4) };
        }
    }

    /// Makes the device a wakeup source (`device_set_wakeup_capable`), so
    /// that [`Device::stay_awake`] can hold off system suspend.
    pub(crate) fn set_wakeup_capable(&self) {
        // SAFETY: By the type invariant the device is valid.
        unsafe { bindings::device_set_wakeup_capable(&raw mut (*self.as_raw()).dev, true) }
    }

    /// Keeps the system from suspending while the driver works on an event
    /// (`pm_stay_awake`); a wakeup source does not nest. Any context.
    pub(crate) fn stay_awake(&self) {
        // SAFETY: By the type invariant the device is valid.
        unsafe { bindings::pm_stay_awake(&raw mut (*self.as_raw()).dev) }
    }

    /// Ends [`Device::stay_awake`] (`pm_relax`). Any context.
    pub(crate) fn relax(&self) {
        // SAFETY: By the type invariant the device is valid.
        unsafe { bindings::pm_relax(&raw mut (*self.as_raw()).dev) }
    }

    /// Tells the device the driver is ready (`DRIVER_OK`).
    pub(crate) fn ready(&self) {
        // SAFETY: By the type invariant the device is valid.
        unsafe { bindings::virtio_device_ready(self.as_raw()) }
    }

    /// Resets the device: it stops using every buffer and raises no more
    /// interrupts (the transport waits for running handlers). The returned
    /// token proves it to the code that frees buffers or deletes queues.
    pub(crate) fn reset(&self) -> Reset<'_> {
        // SAFETY: By the type invariant the device is valid.
        unsafe { bindings::virtio_reset_device(self.as_raw()) };
        Reset(self)
    }

    /// Finds the device's virtqueues: one per entry of `infos`; entries with
    /// no name are not set up and yield `None`.
    pub(crate) fn find_vqs<const N: usize>(
        &self,
        infos: &[QueueInfo; N],
    ) -> Result<[Option<Virtqueue>; N]> {
        let mut raw_infos: [bindings::virtqueue_info; N] =
            core::array::from_fn(|i| bindings::virtqueue_info {
                name: infos[i].name.map_or(core::ptr::null(), |n| n.as_char_ptr()),
                callback: infos[i].callback,
                ctx: false,
            });
        let mut vqs = [core::ptr::null_mut::<bindings::virtqueue>(); N];
        // SAFETY: By the type invariant the device is valid; both arrays have
        // `N` entries, and the names are `'static`.
        to_result(unsafe {
            bindings::virtio_find_vqs(
                self.as_raw(),
                N as u32,
                vqs.as_mut_ptr(),
                raw_infos.as_mut_ptr(),
                core::ptr::null_mut(),
            )
        })?;
        Ok(core::array::from_fn(|i| {
            NonNull::new(vqs[i]).map(|ptr| Virtqueue {
                ptr,
                _not_sync: PhantomData,
            })
        }))
    }

    /// Deletes the device's virtqueues once it is reset, consuming their
    /// handles.
    ///
    /// `queues` must be every queue handle of this device; a handle of
    /// another device is refused (and nothing deleted).
    pub(crate) fn delete_queues(
        &self,
        reset: Reset<'_>,
        queues: impl IntoIterator<Item = Virtqueue>,
    ) {
        if !core::ptr::eq(reset.0, self) {
            pr_warn!("refusing to delete queues: the reset token is another device's\n");
            return;
        }
        for vq in queues {
            // SAFETY: By the `Virtqueue` invariant the queue is valid.
            let owner = unsafe { (*vq.ptr.as_ptr()).vdev };
            if owner != self.as_raw() {
                pr_warn!("refusing to delete queues: a queue of another device was passed\n");
                return;
            }
        }
        // SAFETY: By the type invariant the device is valid; it was reset
        // (the token), so it uses no buffer, and the queue handles were
        // consumed above: a `Virtqueue` is not `Clone`, so none is left.
        unsafe { bindings::virtio_del_vqs(self.as_raw()) }
    }
}

/// Proof that a device was reset and uses no buffer any more.
pub(crate) struct Reset<'a>(&'a Device);

/// A handle to the bound device that driver data can keep.
///
/// # Invariants
///
/// Points to a device that stays valid while its driver data exists: the
/// wrapper creates one per probe and the data is dropped in remove, before
/// the device goes away.
pub(crate) struct DeviceHandle(NonNull<bindings::virtio_device>);

// SAFETY: `Device` is `Send` and `Sync`, and this is a reference to one.
unsafe impl Send for DeviceHandle {}
// SAFETY: As above.
unsafe impl Sync for DeviceHandle {}

impl DeviceHandle {
    /// The device.
    pub(crate) fn get(&self) -> &Device {
        // SAFETY: By the type invariant the device is valid while `self` is.
        unsafe { Device::from_raw(self.0.as_ptr()) }
    }
}

/// How to set up one virtqueue.
pub(crate) struct QueueInfo {
    /// The queue's name, `None` to skip it (its feature is not negotiated).
    pub(crate) name: Option<&'static CStr>,
    /// Called in interrupt context when the device used a buffer.
    pub(crate) callback: bindings::vq_callback_t,
}

/// A virtqueue of a bound device.
///
/// # Invariants
///
/// `ptr` is a queue returned by `find_vqs` and not yet deleted; it is the only
/// handle to that queue (queues are deleted only by consuming their handles).
pub(crate) struct Virtqueue {
    ptr: NonNull<bindings::virtqueue>,
    _not_sync: PhantomData<*mut ()>,
}

// SAFETY: A virtqueue may be used from any thread; the methods that change it
// take `&mut self`, so callers serialise them as the C API requires.
unsafe impl Send for Virtqueue {}

impl Virtqueue {
    /// Notifies the device if it asked to be (`virtqueue_kick`), after
    /// buffers were added.
    pub(crate) fn kick(&mut self) {
        // SAFETY: By the type invariant the queue is valid; `&mut self`
        // serialises this with the other queue operations.
        unsafe { bindings::virtqueue_kick(self.ptr.as_ptr()) };
    }

    /// The first half of `virtqueue_kick`: whether the device wants a
    /// notification ([`Virtqueue::notify`]) for the buffers added.
    pub(crate) fn kick_prepare(&mut self) -> bool {
        // SAFETY: By the type invariant the queue is valid; `&mut self`
        // serialises this with the other queue operations.
        unsafe { bindings::virtqueue_kick_prepare(self.ptr.as_ptr()) }
    }

    /// Adds `buf` as a device-readable buffer (its address is the token)
    /// without notifying the device.
    ///
    /// # Safety
    ///
    /// `buf` must stay valid for `len` bytes and unchanged until the device
    /// returns it through [`Virtqueue::get_buf_token`] or is reset.
    unsafe fn add_outbuf_quiet(&mut self, buf: *const u8, len: usize) -> Result {
        let mut sg = core::mem::MaybeUninit::<bindings::scatterlist>::uninit();
        // SAFETY: `sg` is writable; `sg_init_one` initialises it to describe
        // `buf`, which the caller keeps valid.
        unsafe { bindings::sg_init_one(sg.as_mut_ptr(), buf.cast(), len as u32) };
        // SAFETY: By the type invariant the queue is valid; `sg` was
        // initialised above and the token is non-null.
        to_result(unsafe {
            bindings::virtqueue_add_outbuf(
                self.ptr.as_ptr(),
                sg.as_mut_ptr(),
                1,
                buf.cast_mut().cast(),
                bindings::GFP_KERNEL,
            )
        })
    }

    /// Whether the queue is broken (the device was surprise-removed or
    /// misbehaved): no request on it will complete.
    pub(crate) fn is_broken(&self) -> bool {
        // SAFETY: By the type invariant the queue is valid.
        unsafe { bindings::virtqueue_is_broken(self.ptr.as_ptr()) }
    }

    /// Takes one buffer the device has used, returning its token (the
    /// address it was added with).
    pub(crate) fn get_buf_token(&mut self) -> Option<*mut core::ffi::c_void> {
        let mut len = 0u32;
        // SAFETY: By the type invariant the queue is valid; `len` is writable.
        let token = unsafe { bindings::virtqueue_get_buf(self.ptr.as_ptr(), &mut len) };
        (!token.is_null()).then_some(token)
    }

    /// Takes one buffer the device has used, returning the length it wrote.
    pub(crate) fn get_buf(&mut self) -> Option<u32> {
        let mut len = 0u32;
        // SAFETY: By the type invariant the queue is valid; `len` is writable.
        let token = unsafe { bindings::virtqueue_get_buf(self.ptr.as_ptr(), &mut len) };
        (!token.is_null()).then_some(len)
    }
}

impl Virtqueue {
    /// Notifies the device that buffers are available (the second half of
    /// `virtqueue_kick`). Unlike adding or taking buffers it needs no
    /// serialisation, so it takes `&self`: another CPU may notify while the
    /// queue's owner prepares the next buffer. Under an emulator that
    /// handles the notification in the notifying vCPU (QEMU's TCG has no
    /// ioeventfd) this call returns only after the device processed the
    /// queue. False if the queue is broken.
    pub(crate) fn notify(&self) -> bool {
        // SAFETY: By the type invariant the queue is valid; `virtqueue_notify`
        // does not need to be serialised with the other queue operations.
        unsafe { bindings::virtqueue_notify(self.ptr.as_ptr()) }
    }
}

/// `K` buffers of `T` in one allocation, which the driver fills and the
/// device reads (device-readable buffers whose address is their token).
/// Each is either the driver's, reachable through [`DeviceBufs::get_mut`],
/// or on a queue, where no reference to it exists.
///
/// # Invariants
///
/// `ptr` comes from `KBox::into_raw` of a `[T; K]`. While `busy[i]`, buffer
/// `i` is on a queue: the device may read it, so it is neither referenced,
/// written nor freed until [`DeviceBufs::give_back`] or
/// [`DeviceBufs::device_reset`] clears `busy[i]` (drop leaks the allocation
/// while any is busy).
pub(crate) struct DeviceBufs<T, const K: usize> {
    ptr: NonNull<[T; K]>,
    busy: [bool; K],
}

// SAFETY: The buffers are owned like a `KBox<[T; K]>`; the device only reads
// them.
unsafe impl<T: Send, const K: usize> Send for DeviceBufs<T, K> {}

impl<T, const K: usize> DeviceBufs<T, K> {
    /// Allocates the buffers with their first contents; none is busy.
    pub(crate) fn new(init: [T; K]) -> Result<Self> {
        let raw = KBox::into_raw(KBox::new(init, GFP_KERNEL)?);
        // INVARIANT: From `KBox::into_raw`; nothing is busy.
        Ok(Self {
            ptr: NonNull::new(raw).ok_or(ENOMEM)?,
            busy: [false; K],
        })
    }

    /// Buffer `i`'s address (`i < K`), without making a reference.
    fn slot(&self, i: usize) -> *mut T {
        self.ptr.as_ptr().cast::<T>().wrapping_add(i)
    }

    /// Buffer `i` to fill; `None` while the device has it.
    pub(crate) fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        if i >= K || self.busy[i] {
            return None;
        }
        // SAFETY: `i < K`, inside the live allocation; not busy, so the
        // device does not read it (type invariant), and `&mut self` makes
        // this the only reference.
        Some(unsafe { &mut *self.slot(i) })
    }

    /// Whether the device has buffer `i` (true for an `i` out of range).
    pub(crate) fn is_busy(&self, i: usize) -> bool {
        self.busy.get(i).copied().unwrap_or(true)
    }

    /// Whether the device has any of the buffers.
    pub(crate) fn in_flight(&self) -> bool {
        self.busy.iter().any(|b| *b)
    }

    /// Adds the first `len` bytes of buffer `i` to `vq` for the device to
    /// read, without notifying it ([`Virtqueue::kick_prepare`],
    /// [`Virtqueue::notify`]). `EBUSY` if the device has it already.
    pub(crate) fn add(&mut self, vq: &mut Virtqueue, i: usize, len: usize) -> Result {
        if i >= K || len > core::mem::size_of::<T>() {
            return Err(EINVAL);
        }
        if self.busy[i] {
            return Err(EBUSY);
        }
        // SAFETY: `i < K` and `len` within the buffer; not busy, so no
        // reference to it exists, and from here it is busy: not written or
        // freed until the device gave it back or was reset.
        unsafe { vq.add_outbuf_quiet(self.slot(i).cast_const().cast(), len) }?;
        // INVARIANT: On the queue from here.
        self.busy[i] = true;
        Ok(())
    }

    /// Takes back the buffer whose token the device returned; false if the
    /// token is none of ours.
    pub(crate) fn give_back(&mut self, token: *mut core::ffi::c_void) -> bool {
        for i in 0..K {
            if core::ptr::eq(token.cast_const().cast::<T>(), self.slot(i)) {
                // INVARIANT: The device returned it.
                self.busy[i] = false;
                return true;
            }
        }
        false
    }

    /// The device was reset: it reads none of the buffers any more.
    pub(crate) fn device_reset(&mut self, _reset: &Reset<'_>) {
        // INVARIANT: A reset device has no buffer.
        self.busy = [false; K];
    }
}

impl<T, const K: usize> Drop for DeviceBufs<T, K> {
    fn drop(&mut self) {
        if self.in_flight() {
            // The device may still read them: leak rather than free.
            pr_warn!("leaking buffers the device never returned\n");
            return;
        }
        // SAFETY: From `KBox::into_raw` (type invariant); no buffer is on a
        // queue; dropped once, here.
        drop(unsafe { KBox::from_raw(self.ptr.as_ptr()) });
    }
}

impl Virtqueue {
    /// Offers a batch of free pages to the device as device-writable
    /// buffers and sleeps on `acked` until it used them.
    pub(crate) fn report_and_wait(&mut self, list: ReportList<'_>, acked: &WaitQueue) -> Result {
        // SAFETY: By the `ReportList` invariant the scatterlist and its pages
        // stay valid until the report callback returns, which is after the
        // device gave the buffers back; the token is non-null.
        to_result(unsafe {
            bindings::virtqueue_add_inbuf(
                self.ptr.as_ptr(),
                list.sg.as_ptr(),
                list.nents,
                list.sg.as_ptr().cast(),
                bindings::GFP_NOWAIT | bindings::__GFP_NOWARN,
            )
        })?;
        // SAFETY: By the type invariant the queue is valid.
        unsafe { bindings::virtqueue_kick(self.ptr.as_ptr()) };
        acked.wait_until(|| self.get_buf().is_some());
        Ok(())
    }

    /// Free descriptors in the ring.
    pub(crate) fn num_free(&self) -> u32 {
        // SAFETY: By the type invariant the queue is valid; the caller holds
        // `&self`, and `num_free` only changes through `&mut self` methods.
        unsafe { (*self.ptr.as_ptr()).num_free }
    }

    /// Offers `pages` to the device as a free page hint (a device-writable
    /// buffer of the block) and notifies it. The device of a free page hint
    /// never accesses the memory and the driver may reuse it at any time
    /// (virtio 1.2, 5.5.6.6), so the block may be freed while the buffer is
    /// still queued (as C's shrinker does); no other queue may be given
    /// pages this way.
    pub(crate) fn add_free_page_hint(&mut self, pages: &Pages) -> Result {
        let mut sg = core::mem::MaybeUninit::<bindings::scatterlist>::uninit();
        let addr = pages.addr();
        let len = u32::try_from(pages.len()).map_err(|_| EINVAL)?;
        // SAFETY: `sg` is writable; it describes the block's memory.
        unsafe { bindings::sg_init_one(sg.as_mut_ptr(), addr.cast(), len) };
        // SAFETY: The queue is valid (type invariant); `sg` is initialised;
        // the device does not access the block (above).
        to_result(unsafe {
            bindings::virtqueue_add_inbuf(
                self.ptr.as_ptr(),
                sg.as_mut_ptr(),
                1,
                addr.cast(),
                bindings::GFP_KERNEL,
            )
        })?;
        self.kick();
        Ok(())
    }

    /// Number of descriptors in the ring.
    pub(crate) fn size(&self) -> u32 {
        // SAFETY: By the type invariant the queue is valid.
        unsafe { bindings::virtqueue_get_vring_size(self.ptr.as_ptr()) }
    }
}

/// A virtio driver.
pub(crate) trait Driver: Sized + 'static {
    /// Per-device driver data, created in probe and stored in `vdev->priv`.
    type Data: Send + Sync;
    /// The driver's name.
    const NAME: &'static CStr;
    /// The virtio device id it binds (`VIRTIO_ID_*`).
    const DEVICE_ID: u32;
    /// The feature bits it knows.
    const FEATURES: &'static [u32];

    /// Drops offered features before negotiation ends.
    fn validate(_dev: &mut Validation<'_>) -> Result {
        Ok(())
    }
    /// Sets up the device and returns its data (queues found, not yet ready).
    fn probe(dev: DeviceHandle) -> Result<Pin<KBox<Self::Data>>>;
    /// Called once the data is in place; the driver marks the device ready.
    /// On error the wrapper calls [`Driver::remove`] and fails the probe.
    fn ready(data: &Self::Data) -> Result;
    /// The device's config space changed.
    fn config_changed(data: &Self::Data);
    /// A virtqueue callback, with the queue's index in `find_vqs` order.
    fn vq_interrupt(data: &Self::Data, queue: usize);
    /// The device is being unbound; the data is dropped afterwards.
    fn remove(data: Pin<KBox<Self::Data>>);
    /// System sleep: quiesce the device and delete its queues.
    fn freeze(_data: &Self::Data) -> Result {
        Ok(())
    }
    /// Resume from system sleep: recreate queues and mark ready.
    fn restore(_data: &Self::Data) -> Result {
        Ok(())
    }
}

/// The device while features are negotiated (`validate()`).
pub(crate) struct Validation<'a>(&'a Device);

impl Validation<'_> {
    /// Whether the device offered feature bit `fbit` (and the driver knows it).
    pub(crate) fn offered(&self, fbit: u32) -> bool {
        self.0.has_feature(fbit)
    }

    /// Drops feature bit `fbit` from the negotiation.
    pub(crate) fn clear(&mut self, fbit: u32) {
        // SAFETY: The device is valid (type invariant of `Device`); in
        // validate() nothing else reads or writes its feature bits.
        unsafe { bindings::__virtio_clear_bit(self.0.as_raw(), fbit) }
    }
}

/// Returns the callback that forwards queue `Q`'s interrupts to `T`.
pub(crate) fn vq_callback<T: Driver, const Q: usize>() -> bindings::vq_callback_t {
    Some(vq_trampoline::<T, Q>)
}

/// Recovers the driver data of `vdev`.
///
/// # Safety
///
/// `vdev` must be a valid device bound to driver `T`, and the returned
/// reference must not outlive the binding.
unsafe fn data_of<'a, T: Driver>(vdev: *mut bindings::virtio_device) -> Option<&'a T::Data> {
    // SAFETY: The caller guarantees `vdev` is valid; `priv_` is either null or
    // a `KBox<T::Data>` leaked by `probe_callback` and freed only in
    // `remove_callback`.
    unsafe { (*vdev).priv_.cast::<T::Data>().as_ref() }
}

/// # Safety
///
/// Called by the virtio core only, with a valid queue of a device bound to `T`.
unsafe extern "C" fn vq_trampoline<T: Driver, const Q: usize>(vq: *mut bindings::virtqueue) {
    // SAFETY: The virtio core calls this with a valid queue of a device bound
    // to `T`; queues are deleted before the data is freed.
    if let Some(data) = unsafe { data_of::<T>((*vq).vdev) } {
        T::vq_interrupt(data, Q);
    }
}

/// # Safety
///
/// Called by the virtio core only, with a valid device for driver `T`.
unsafe extern "C" fn validate_callback<T: Driver>(vdev: *mut bindings::virtio_device) -> i32 {
    // SAFETY: The virtio core passes a valid device for the whole callback.
    let dev = unsafe { Device::from_raw(vdev) };
    from_result(|| T::validate(&mut Validation(dev)).map(|()| 0))
}

/// # Safety
///
/// Called by the virtio core only, with a valid device for driver `T`.
unsafe extern "C" fn probe_callback<T: Driver>(vdev: *mut bindings::virtio_device) -> i32 {
    from_result(|| {
        // SAFETY: The virtio core passes a valid device pointer that stays valid
        // until remove, when the data holding this handle is dropped.
        let vdev_nn = unsafe { NonNull::new_unchecked(vdev) };
        // SAFETY: As above, `config` is valid for a device being probed.
        if unsafe { (*(*vdev).config).get }.is_none() {
            pr_err!("probe failure: config access disabled\n");
            return Err(EINVAL);
        }
        let data = T::probe(DeviceHandle(vdev_nn))?;
        // SAFETY: The data is pinned in the box; it is only ever turned back
        // into a `Pin<KBox>` by `remove_callback`.
        let raw = KBox::into_raw(unsafe { Pin::into_inner_unchecked(data) });
        // SAFETY: The device is valid; no callback reads `priv_` before the
        // driver posts buffers or marks the device ready, which happens below.
        unsafe { (*vdev).priv_ = raw.cast() };
        // SAFETY: `raw` was just leaked and stays valid until remove.
        if let Err(e) = T::ready(unsafe { &*raw }) {
            // SAFETY: As in `remove_callback`: undo the leak, clear `priv`.
            let data = unsafe {
                (*vdev).priv_ = core::ptr::null_mut();
                Pin::new_unchecked(KBox::from_raw(raw))
            };
            T::remove(data);
            return Err(e);
        }
        Ok(0)
    })
}

/// # Safety
///
/// Called by the virtio core only, with a valid device for driver `T`.
unsafe extern "C" fn remove_callback<T: Driver>(vdev: *mut bindings::virtio_device) {
    // SAFETY: The virtio core passes the valid device that was probed.
    let raw = unsafe { (*vdev).priv_.cast::<T::Data>() };
    if raw.is_null() {
        return;
    }
    // SAFETY: `raw` came from `KBox::into_raw` in `probe_callback`; the data
    // was pinned there and is handed back pinned.
    let data = unsafe { Pin::new_unchecked(KBox::from_raw(raw)) };
    T::remove(data);
    // SAFETY: The device is still valid; the data is gone, so clear the
    // pointer to it.
    unsafe { (*vdev).priv_ = core::ptr::null_mut() };
}

/// # Safety
///
/// Called by the virtio core only, with a valid device for driver `T`.
unsafe extern "C" fn config_changed_callback<T: Driver>(vdev: *mut bindings::virtio_device) {
    // SAFETY: The virtio core passes a valid bound device.
    if let Some(data) = unsafe { data_of::<T>(vdev) } {
        T::config_changed(data);
    }
}

/// # Safety
///
/// Called by the virtio core only, with a valid device for driver `T`.
unsafe extern "C" fn freeze_callback<T: Driver>(vdev: *mut bindings::virtio_device) -> i32 {
    // SAFETY: The virtio core passes a valid bound device.
    match unsafe { data_of::<T>(vdev) } {
        Some(data) => from_result(|| T::freeze(data).map(|()| 0)),
        None => 0,
    }
}

/// # Safety
///
/// Called by the virtio core only, with a valid device for driver `T`.
unsafe extern "C" fn restore_callback<T: Driver>(vdev: *mut bindings::virtio_device) -> i32 {
    // SAFETY: The virtio core passes a valid bound device.
    match unsafe { data_of::<T>(vdev) } {
        Some(data) => from_result(|| T::restore(data).map(|()| 0)),
        None => 0,
    }
}

/// Declares a driver's device table for module autoloading, as C's
/// `MODULE_DEVICE_TABLE(virtio, ...)`: modpost reads the symbol
/// `__mod_virtio__<name>_device_table` and writes `alias: virtio:d...v*`
/// into the module, so udev and `modprobe` bind the driver to its device.
/// `$device` is the `VIRTIO_ID_*` the driver binds, any vendor.
#[macro_export]
macro_rules! module_virtio_device_table {
    ($name:ident, $device:expr) => {
        #[export_name = concat!("__mod_virtio__", stringify!($name), "_device_table")]
        #[used]
        static $name: [kernel::bindings::virtio_device_id; 2] = [
            kernel::bindings::virtio_device_id {
                device: $device,
                vendor: 0xffff_ffff, // VIRTIO_DEV_ANY_ID
            },
            kernel::bindings::virtio_device_id {
                device: 0,
                vendor: 0,
            },
        ];
    };
}

/// What the virtio core keeps a pointer to while the driver is registered.
struct RawDriver {
    drv: Opaque<bindings::virtio_driver>,
    ids: [bindings::virtio_device_id; 2],
}

/// A registered virtio driver; unregistered (unbinding every device) on drop.
///
/// # Invariants
///
/// `raw.drv` is registered with the virtio core and points into `raw`, which
/// does not move (it is boxed) until `drop` has unregistered it.
pub(crate) struct Registration<T: Driver> {
    raw: KBox<RawDriver>,
    _driver: PhantomData<T>,
}

// SAFETY: After registration the C side only reads the driver struct; the
// registration is only dropped, never shared mutably.
unsafe impl<T: Driver> Send for Registration<T> {}
// SAFETY: As above: `&Registration` gives no access to the driver struct.
unsafe impl<T: Driver> Sync for Registration<T> {}

impl<T: Driver> Registration<T> {
    /// Registers driver `T` for `module`.
    pub(crate) fn new(module: &'static ThisModule) -> Result<Self> {
        let raw = KBox::new(
            RawDriver {
                drv: Opaque::uninit(),
                ids: [
                    bindings::virtio_device_id {
                        device: T::DEVICE_ID,
                        vendor: 0xffff_ffff, // VIRTIO_DEV_ANY_ID
                    },
                    bindings::virtio_device_id {
                        device: 0,
                        vendor: 0,
                    },
                ],
            },
            GFP_KERNEL,
        )?;
        let mut drv = bindings::virtio_driver::default();
        drv.driver.name = T::NAME.as_char_ptr();
        drv.id_table = raw.ids.as_ptr();
        drv.feature_table = T::FEATURES.as_ptr();
        drv.feature_table_size = T::FEATURES.len() as u32;
        drv.validate = Some(validate_callback::<T>);
        drv.probe = Some(probe_callback::<T>);
        drv.remove = Some(remove_callback::<T>);
        drv.config_changed = Some(config_changed_callback::<T>);
        drv.freeze = Some(freeze_callback::<T>);
        drv.restore = Some(restore_callback::<T>);
        // SAFETY: `raw.drv` is valid for writes and not yet shared.
        unsafe { raw.drv.get().write(drv) };
        // SAFETY: `raw.drv` is fully initialised and boxed, so it stays at this
        // address until `drop` unregisters it; `module` is this module.
        to_result(unsafe { bindings::__register_virtio_driver(raw.drv.get(), module.as_ptr()) })?;
        // INVARIANT: Registered above; the box is kept in `self`.
        Ok(Self {
            raw,
            _driver: PhantomData,
        })
    }
}

impl<T: Driver> Drop for Registration<T> {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the driver is registered.
        unsafe { bindings::unregister_virtio_driver(self.raw.drv.get()) };
    }
}
