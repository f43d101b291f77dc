// SPDX-License-Identifier: GPL-2.0

//! debugfs (the 6.12 kernel crate has no debugfs abstraction): a module's
//! root directory kept in a `static` ([`Root`]), and directories in it that
//! hold one read-only text file rendered on each read from shared state
//! ([`DebugFile`]).
//!
//! C header: [`include/linux/debugfs.h`].

use core::{
    marker::PhantomData,
    sync::atomic::{AtomicPtr, AtomicUsize, Ordering},
};
use kernel::{bindings, error::from_result, prelude::*, str::CStr, sync::Arc};

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

/// Text a [`Show`] writes into.
pub(crate) struct Text(KVec<u8>);

impl core::fmt::Write for Text {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0
            .extend_from_slice(s.as_bytes(), GFP_KERNEL)
            .map_err(|_| core::fmt::Error)
    }
}

/// State that renders itself as the file's text.
pub(crate) trait Show: Send + Sync + 'static {
    /// Writes the file's contents.
    fn show(&self, out: &mut Text) -> core::fmt::Result;
}

/// A debugfs directory in a [`Root`] holding one file that shows a `T`.
///
/// # Invariants
///
/// `dir` is a debugfs directory created by `new` in the root `_root` holds
/// open; its file's `i_private` is `data`, a pointer from `Arc::into_raw`
/// that this struct owns. On drop the directory is removed (which waits for
/// running reads) before the `Arc` is released, and then the root.
pub(crate) struct DebugFile<T: Show> {
    dir: *mut bindings::dentry,
    data: *const T,
    _root: RootRef,
    _t: PhantomData<Arc<T>>,
}

// SAFETY: The dentry is only used to remove it; the data is an `Arc<T>` with
// `T: Send + Sync`.
unsafe impl<T: Show> Send for DebugFile<T> {}
// SAFETY: `&DebugFile` allows nothing.
unsafe impl<T: Show> Sync for DebugFile<T> {}

/// Whether a debugfs call returned an error (or nothing) instead of a dentry.
pub(crate) fn is_err(ptr: *mut bindings::dentry) -> bool {
    ptr.is_null() || (ptr as usize) >= (-(bindings::MAX_ERRNO as isize)) as usize
}

impl<T: Show> DebugFile<T> {
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

impl<T: Show> Drop for DebugFile<T> {
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

impl<T: Show> Fops<T> {
    const FOPS: bindings::file_operations = {
        // SAFETY: All-zero is a valid `file_operations` (no operations).
        let mut f: bindings::file_operations =
            unsafe { core::mem::MaybeUninit::zeroed().assume_init() };
        f.open = Some(bindings::simple_open);
        f.read = Some(read_fn::<T>);
        f.llseek = Some(bindings::default_llseek);
        f
    };

    fn table() -> &'static bindings::file_operations {
        &Self::FOPS
    }
}

/// # Safety
///
/// Called by the VFS for a file created by [`DebugFile::new`], whose
/// `private_data` `simple_open` set to the `T` it shows.
unsafe extern "C" fn read_fn<T: Show>(
    file: *mut bindings::file,
    buf: *mut kernel::ffi::c_char,
    count: usize,
    ppos: *mut bindings::loff_t,
) -> isize {
    from_result(|| {
        // SAFETY: `simple_open` stored the `i_private` pointer, a live `T`
        // (see the `DebugFile` invariant), in `private_data`.
        let t = unsafe { &*(*file).private_data.cast::<T>() };
        let mut text = Text(KVec::new());
        t.show(&mut text).map_err(|_| ENOMEM)?;
        // SAFETY: `buf`/`count`/`ppos` come from the VFS for this read; the
        // source is `text`, valid for its length.
        let n = unsafe {
            bindings::simple_read_from_buffer(
                buf.cast(),
                count,
                ppos,
                text.0.as_ptr().cast(),
                text.0.len(),
            )
        };
        Ok(n)
    })
}
