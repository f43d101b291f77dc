// SPDX-License-Identifier: GPL-2.0

//! A debugfs directory with one read-only text file, rendered on each read
//! from shared state (the 6.12 kernel crate has no debugfs abstraction).
//!
//! C header: [`include/linux/debugfs.h`].

use core::marker::PhantomData;
use kernel::{bindings, error::from_result, prelude::*, str::CStr, sync::Arc};

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

/// A debugfs directory holding one file that shows a `T`.
///
/// # Invariants
///
/// `dir` is a debugfs directory created by `new`; its file's `i_private` is
/// `data`, a pointer from `Arc::into_raw` that this struct owns. On drop the
/// directory is removed (which waits for running reads) before the `Arc` is
/// released.
pub(crate) struct DebugFile<T: Show> {
    dir: *mut bindings::dentry,
    data: *const T,
    _t: PhantomData<Arc<T>>,
}

// SAFETY: The dentry is only used to remove it; the data is an `Arc<T>` with
// `T: Send + Sync`.
unsafe impl<T: Show> Send for DebugFile<T> {}
// SAFETY: `&DebugFile` allows nothing.
unsafe impl<T: Show> Sync for DebugFile<T> {}

fn is_err(ptr: *mut bindings::dentry) -> bool {
    ptr.is_null() || (ptr as usize) >= (-(bindings::MAX_ERRNO as isize)) as usize
}

impl<T: Show> DebugFile<T> {
    /// Creates `/sys/kernel/debug/<dir>/<file>` (mode 0444) showing `data`.
    pub(crate) fn new(dir: &CStr, file: &CStr, data: Arc<T>) -> Result<Self> {
        // SAFETY: `dir` is a valid C string; a null parent means the root.
        let d = unsafe { bindings::debugfs_create_dir(dir.as_char_ptr(), core::ptr::null_mut()) };
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
