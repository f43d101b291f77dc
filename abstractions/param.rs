// SPDX-License-Identifier: GPL-2.0

//! Module parameters (the 6.12 `module!` macro has none): an `unsigned long`
//! in the `__param` section, readable and writable under
//! `/sys/module/balloon_rs/parameters/`.
//!
//! C header: [`include/linux/moduleparam.h`].

use core::sync::atomic::{AtomicUsize, Ordering};
use kernel::bindings;

/// An `unsigned long` module parameter's value.
///
/// `param_ops_ulong` stores it with a plain C store; the driver reads it with
/// a relaxed atomic load (C would use `READ_ONCE`). `AtomicUsize` has the
/// layout of `unsigned long` on every Linux target.
#[repr(transparent)]
pub(crate) struct ULongParam(AtomicUsize);

impl ULongParam {
    /// A parameter with default `v`.
    pub(crate) const fn new(v: usize) -> Self {
        Self(AtomicUsize::new(v))
    }

    /// The current value.
    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// The pointer `kernel_param.arg` holds.
    pub(crate) const fn as_arg(&'static self) -> *mut core::ffi::c_void {
        self.0.as_ptr().cast()
    }
}

/// A `struct kernel_param` that may live in a `static`.
#[repr(transparent)]
pub(crate) struct KernelParam(pub(crate) bindings::kernel_param);

// SAFETY: The kernel only reads the descriptor; the value it points to is an
// atomic.
unsafe impl Sync for KernelParam {}

/// Declares an `unsigned long` module parameter `$name` (mode `$perm`) whose
/// value lives in the `ULongParam` static `$value`, with a `parm=`
/// description for `modinfo`.
#[macro_export]
macro_rules! module_param_ulong {
    ($name:ident, $value:path, $perm:literal, $desc:literal) => {
        const _: () = {
            // The same declaration the `module!` macro makes; `struct module`
            // is only pointed to, never passed by value.
            #[allow(improper_ctypes)]
            extern "C" {
                static __this_module: kernel::types::Opaque<kernel::bindings::module>;
            }
            #[link_section = "__param"]
            #[used(compiler)]
            static PARAM: $crate::abstractions::param::KernelParam =
                $crate::abstractions::param::KernelParam(kernel::bindings::kernel_param {
                    name: concat!(stringify!($name), "\0").as_ptr().cast(),
                    // Only addresses are taken here, which needs no `unsafe`.
                    mod_: core::ptr::addr_of!(__this_module).cast_mut().cast(),
                    ops: core::ptr::addr_of!(kernel::bindings::param_ops_ulong),
                    perm: $perm,
                    level: -1,
                    flags: 0,
                    __bindgen_anon_1: kernel::bindings::kernel_param__bindgen_ty_1 {
                        arg: $value.as_arg(),
                    },
                });
            #[link_section = ".modinfo"]
            #[used(compiler)]
            static PARMTYPE: [u8; concat!("parmtype=", stringify!($name), ":ulong\0").len()] =
                $crate::abstractions::param::bytes(concat!(
                    "parmtype=",
                    stringify!($name),
                    ":ulong\0"
                ));
            #[link_section = ".modinfo"]
            #[used(compiler)]
            static PARM: [u8; concat!("parm=", stringify!($name), ":", $desc, "\0").len()] =
                $crate::abstractions::param::bytes(concat!(
                    "parm=",
                    stringify!($name),
                    ":",
                    $desc,
                    "\0"
                ));
        };
    };
}

/// A string's bytes as an array (for `.modinfo` statics).
pub(crate) const fn bytes<const N: usize>(s: &str) -> [u8; N] {
    let b = s.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = b[i];
        i += 1;
    }
    out
}
