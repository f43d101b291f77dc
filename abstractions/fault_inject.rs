// SPDX-License-Identifier: GPL-2.0

//! Fault-injection points kept in `static`s, as C's
//! `static DECLARE_FAULT_ATTR(name)` with `fault_create_debugfs_attr()`.
//!
//! C header: [`include/linux/fault-inject.h`]; the control files
//! (`probability`, `interval`, `times`, `space`, `verbose`, ...) are those of
//! `Documentation/fault-injection/fault-injection.rst`.
//!
//! Without `CONFIG_FAULT_INJECTION_DEBUG_FS` a point never fails and
//! [`FaultAttr::register`] creates nothing, as the C stubs.

use super::debugfs::Root;
#[cfg(CONFIG_FAULT_INJECTION_DEBUG_FS)]
use core::sync::atomic::{AtomicU8, Ordering};
#[cfg(CONFIG_FAULT_INJECTION_DEBUG_FS)]
use kernel::{bindings, types::Opaque};
use kernel::{prelude::*, str::CStr};

#[cfg(CONFIG_FAULT_INJECTION_DEBUG_FS)]
const UNSET: u8 = 0;
#[cfg(CONFIG_FAULT_INJECTION_DEBUG_FS)]
const BUSY: u8 = 1;
#[cfg(CONFIG_FAULT_INJECTION_DEBUG_FS)]
const READY: u8 = 2;

/// A fault-injection point.
///
/// # Invariants
///
/// `attr` is initialised (`FAULT_ATTR_INITIALIZER`) once `state` is `READY`
/// and never moves again (it lives in a `static`).
pub(crate) struct FaultAttr {
    #[cfg(CONFIG_FAULT_INJECTION_DEBUG_FS)]
    attr: Opaque<bindings::fault_attr>,
    #[cfg(CONFIG_FAULT_INJECTION_DEBUG_FS)]
    state: AtomicU8,
}

// SAFETY: `should_fail()` may be called from any context at once (its
// counters are atomics or, as in C, deliberately racy statistics); the
// debugfs files write plain integers, as for every C fault attribute.
unsafe impl Sync for FaultAttr {}

impl FaultAttr {
    /// A point that never fails until [`FaultAttr::register`]ed.
    pub(crate) const fn new() -> Self {
        Self {
            #[cfg(CONFIG_FAULT_INJECTION_DEBUG_FS)]
            attr: Opaque::uninit(),
            #[cfg(CONFIG_FAULT_INJECTION_DEBUG_FS)]
            state: AtomicU8::new(UNSET),
        }
    }

    /// Initialises the point and creates its control directory `name` in
    /// `root`. Fails with `EBUSY` if already registered, `ENODEV` without
    /// debugfs or when `root` is not created.
    #[cfg(CONFIG_FAULT_INJECTION_DEBUG_FS)]
    pub(crate) fn register(&'static self, name: &CStr, root: &'static Root) -> Result {
        let dir = root.enter().ok_or(ENODEV)?;
        if self
            .state
            .compare_exchange(UNSET, BUSY, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(EBUSY);
        }
        // SAFETY: `BUSY` makes this the only writer and `should_fail` does
        // not read the attribute before `READY`; the storage is static.
        unsafe { bindings::fault_attr_init(self.attr.get()) };
        // SAFETY: `dir` keeps the parent directory alive for the call; `name`
        // is a valid C string; the attribute is static, so it outlives the
        // files, which go with the parent.
        let d = unsafe {
            bindings::fault_create_debugfs_attr(name.as_char_ptr(), dir.dentry(), self.attr.get())
        };
        if super::debugfs::is_err(d) {
            self.state.store(UNSET, Ordering::Release);
            return Err(ENODEV);
        }
        // INVARIANT: Initialised above.
        self.state.store(READY, Ordering::Release);
        Ok(())
    }

    /// Without fault injection there is nothing to register.
    #[cfg(not(CONFIG_FAULT_INJECTION_DEBUG_FS))]
    pub(crate) fn register(&'static self, _name: &CStr, _root: &'static Root) -> Result {
        Err(ENODEV)
    }

    /// Whether the caller should fail now (C's `should_fail(attr, 1)`).
    #[cfg(CONFIG_FAULT_INJECTION_DEBUG_FS)]
    pub(crate) fn should_fail(&self) -> bool {
        // SAFETY: By the type invariant the attribute is initialised once
        // `READY`.
        self.state.load(Ordering::Acquire) == READY
            && unsafe { bindings::should_fail(self.attr.get(), 1) }
    }

    /// Without fault injection nothing fails.
    #[cfg(not(CONFIG_FAULT_INJECTION_DEBUG_FS))]
    pub(crate) fn should_fail(&self) -> bool {
        false
    }
}
