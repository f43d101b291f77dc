// SPDX-License-Identifier: GPL-2.0

//! debugfs (the 6.12 kernel crate has no debugfs abstraction): a module's
//! root directory kept in a `static` ([`Root`]), and directories in it that
//! hold one read-only text file rendered from shared state ([`DebugFile`]).
//!
//! A file's data renders itself through [`Writer`], the trait of the debugfs
//! abstraction merged for 6.18 (`kernel::debugfs::Writer`: write into a
//! `fmt::Formatter`), and is served through `seq_file` as upstream's files
//! are: rendered once per open, so a reader that reads in small chunks gets
//! one consistent snapshot. Unlike upstream, whose `Dir`/`File` fail
//! silently and own their data in place, creation here returns an error
//! (the driver says debugfs is unavailable and goes on) and the data is
//! shared (`Arc`) with the driver that updates it; and the root waits for
//! its directories at module exit instead of being kept alive by them.
//!
//! C headers: [`include/linux/debugfs.h`], [`include/linux/seq_file.h`].

use core::{
    fmt,
    marker::PhantomData,
    sync::atomic::{AtomicPtr, AtomicUsize, Ordering},
};
use kernel::{bindings, prelude::*, str::CStr, sync::Arc};

/// Set in [`Root::users`] while the root does not exist or is going away.
const CLOSED: usize = 1 << (usize::BITS - 1);

/// A module's debugfs directory, for a `static` (C's `static struct dentry
/// *root`): created by [`Root::create`] at module init, removed when the
/// returned [`RootGuard`] is dropped at module exit. Directories made in it
/// ([`RootRef`] holders) hold it open; removal waits for them.
///
/// # Invariants
///
/// While `users` is below [`CLOSED`], `dentry` is a live directory and
/// `users` counts the [`RootRef`]s.
pub(crate) struct Root {
    dentry: AtomicPtr<bindings::dentry>,
    users: AtomicUsize,
}

impl Root {
    /// A root that does not exist yet.
    pub(crate) const fn new() -> Self {
        Self {
            dentry: AtomicPtr::new(core::ptr::null_mut()),
            users: AtomicUsize::new(CLOSED),
        }
    }

    /// Creates `/sys/kernel/debug/<name>`. `EBUSY` if it exists already,
    /// `ENODEV` without debugfs.
    pub(crate) fn create(&'static self, name: &CStr) -> Result<RootGuard> {
        if !self.dentry.load(Ordering::Acquire).is_null() {
            return Err(EBUSY);
        }
        // SAFETY: `name` is a valid C string; a null parent means the root.
        let d = unsafe { bindings::debugfs_create_dir(name.as_char_ptr(), core::ptr::null_mut()) };
        if is_err(d) {
            return Err(ENODEV);
        }
        self.dentry.store(d, Ordering::Release);
        // INVARIANT: `dentry` is live; no user yet.
        self.users.store(0, Ordering::Release);
        Ok(RootGuard(self))
    }

    /// Holds the root open, or `None` if it does not exist.
    pub(crate) fn enter(&'static self) -> Option<RootRef> {
        let mut n = self.users.load(Ordering::Acquire);
        loop {
            if n >= CLOSED {
                return None;
            }
            match self
                .users
                .compare_exchange(n, n + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(RootRef(self)),
                Err(now) => n = now,
            }
        }
    }
}

/// Removes its [`Root`] when dropped, after the last [`RootRef`] is gone.
pub(crate) struct RootGuard(&'static Root);

impl Drop for RootGuard {
    fn drop(&mut self) {
        let root = self.0;
        root.users.fetch_or(CLOSED, Ordering::AcqRel);
        while root.users.load(Ordering::Acquire) != CLOSED {
            // SAFETY: Sleeping is allowed: module exit runs in process
            // context.
            unsafe { bindings::msleep(10) };
        }
        let d = root.dentry.swap(core::ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: Closed with no user: nothing else uses the directory,
        // which `create` made.
        unsafe { bindings::debugfs_remove(d) };
    }
}

/// Holds a [`Root`] open.
///
/// # Invariants
///
/// Counted in the root's `users`, so its `dentry` stays live.
pub(crate) struct RootRef(&'static Root);

impl RootRef {
    /// The root's directory, live while `self` is.
    pub(crate) fn dentry(&self) -> *mut bindings::dentry {
        self.0.dentry.load(Ordering::Acquire)
    }
}

impl Drop for RootRef {
    fn drop(&mut self) {
        self.0.users.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Data that renders itself as a file's text (upstream's
/// `kernel::debugfs::Writer`).
pub(crate) trait Writer: Send + Sync + 'static {
    /// Writes the file's contents.
    fn write(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

/// A [`Writer`] as `Display`, to format it.
struct Render<'a, T>(&'a T);

impl<T: Writer> fmt::Display for Render<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.write(f)
    }
}

/// Text written into a `seq_file`.
///
/// # Invariants
///
/// `0` is the `seq_file` of a `show` callback that is running.
struct SeqText(*mut bindings::seq_file);

impl fmt::Write for SeqText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // SAFETY: By the type invariant the seq_file is live; `s` is valid
        // for its length. A full buffer is not an error here: the seq_file
        // core sees it and calls `show` again with a larger one.
        unsafe { bindings::seq_write(self.0, s.as_ptr().cast(), s.len()) };
        Ok(())
    }
}

/// A debugfs directory in a [`Root`] holding one file that shows a `T`.
///
/// # Invariants
///
/// `dir` is a debugfs directory created by `new` in the root `_root` holds
/// open; its file's `i_private` is `data`, a pointer from `Arc::into_raw`
/// that this struct owns. On drop the directory is removed (which waits for
/// running reads) before the `Arc` is released, and then the root.
pub(crate) struct DebugFile<T: Writer> {
    dir: *mut bindings::dentry,
    data: *const T,
    _root: RootRef,
    _t: PhantomData<Arc<T>>,
}

// SAFETY: The dentry is only used to remove it; the data is an `Arc<T>` with
// `T: Send + Sync`.
unsafe impl<T: Writer> Send for DebugFile<T> {}
// SAFETY: `&DebugFile` allows nothing.
unsafe impl<T: Writer> Sync for DebugFile<T> {}

/// Whether a debugfs call returned an error (or nothing) instead of a dentry.
pub(crate) fn is_err(ptr: *mut bindings::dentry) -> bool {
    ptr.is_null() || (ptr as usize) >= (-(bindings::MAX_ERRNO as isize)) as usize
}

impl<T: Writer> DebugFile<T> {
    /// Creates `<root>/<dir>/<file>` (mode 0444) showing `data`.
    pub(crate) fn new(root: &'static Root, dir: &CStr, file: &CStr, data: Arc<T>) -> Result<Self> {
        let root = root.enter().ok_or(ENODEV)?;
        // SAFETY: `dir` is a valid C string; `root` keeps the parent live.
        let d = unsafe { bindings::debugfs_create_dir(dir.as_char_ptr(), root.dentry()) };
        if is_err(d) {
            return Err(ENODEV);
        }
        let raw = Arc::into_raw(data);
        // SAFETY: `d` is a live directory; `file` is a valid C string; the
        // fops are static and `raw` stays valid until `drop` removed the file.
        let f = unsafe {
            bindings::debugfs_create_file(
                file.as_char_ptr(),
                0o444,
                d,
                raw.cast_mut().cast(),
                Fops::<T>::table(),
            )
        };
        if is_err(f) {
            // SAFETY: `d` was created above; `raw` came from `Arc::into_raw`
            // and the file that would have used it does not exist.
            unsafe {
                bindings::debugfs_remove(d);
                drop(Arc::from_raw(raw));
            }
            return Err(ENODEV);
        }
        // INVARIANT: Created above; `raw` is owned by the returned value.
        Ok(Self {
            dir: d,
            data: raw,
            _root: root,
            _t: PhantomData,
        })
    }
}

impl<T: Writer> Drop for DebugFile<T> {
    fn drop(&mut self) {
        // SAFETY: By the type invariant `dir` is ours; removal waits for
        // readers, after which nothing uses `data`, which came from
        // `Arc::into_raw`.
        unsafe {
            bindings::debugfs_remove(self.dir);
            drop(Arc::from_raw(self.data));
        }
    }
}

struct Fops<T>(PhantomData<T>);

impl<T: Writer> Fops<T> {
    const FOPS: bindings::file_operations = {
        // SAFETY: All-zero is a valid `file_operations` (no operations).
        let mut f: bindings::file_operations =
            unsafe { core::mem::MaybeUninit::zeroed().assume_init() };
        f.open = Some(open_fn::<T>);
        f.read = Some(bindings::seq_read);
        f.llseek = Some(bindings::seq_lseek);
        f.release = Some(bindings::single_release);
        f
    };

    fn table() -> &'static bindings::file_operations {
        &Self::FOPS
    }
}

/// # Safety
///
/// Called by the VFS to open a file created by [`DebugFile::new`], whose
/// inode's `i_private` is the `T` it shows.
unsafe extern "C" fn open_fn<T: Writer>(
    inode: *mut bindings::inode,
    file: *mut bindings::file,
) -> kernel::ffi::c_int {
    // SAFETY: `inode` and `file` come from the VFS for this open; the
    // `seq_file` that `single_open` makes keeps `i_private`, a live `T` (see
    // the `DebugFile` invariant), for `show_fn`; `single_release` frees it.
    unsafe { bindings::single_open(file, Some(show_fn::<T>), (*inode).i_private) }
}

/// # Safety
///
/// Called by the seq_file core for a file opened by [`open_fn::<T>`], whose
/// `private` is the `T` it shows.
unsafe extern "C" fn show_fn<T: Writer>(
    m: *mut bindings::seq_file,
    _v: *mut kernel::ffi::c_void,
) -> kernel::ffi::c_int {
    // SAFETY: `private` is the `T` `open_fn` passed, alive while its file
    // exists (the `DebugFile` invariant: removing the file waits for us).
    let t = unsafe { &*(*m).private.cast::<T>() };
    // INVARIANT: `m` is the seq_file of this running `show`.
    let mut out = SeqText(m);
    match fmt::write(&mut out, format_args!("{}", Render(t))) {
        Ok(()) => 0,
        Err(_) => EINVAL.to_errno(),
    }
}
