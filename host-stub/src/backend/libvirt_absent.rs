//! The libvirt backend when `balloon-host` is built without its `libvirt`
//! feature (no libvirt-dev on the build machine): the same API, and every
//! use of it is an error that says how to get the real one. The QMP
//! backends are unaffected.

use crate::{Error, Result};
use std::collections::BTreeMap;
use std::convert::Infallible;

/// Where libvirt's QEMU driver keeps its pid files (`qemu:///system`).
pub const PID_DIR: &str = "/run/libvirt/qemu";

/// Memory statistics of a domain, as with the feature.
pub type MemStats = BTreeMap<String, f64>;

/// A libvirt domain: none can exist in this build.
pub struct LibvirtDomain {
    never: Infallible,
}

/// What every libvirt call answers in this build.
pub fn unavailable() -> Error {
    Error::Invalid(
        "this balloon-host was built without libvirt support: rebuild with the \
         default features (cargo feature \"libvirt\", needs libvirt-dev)"
            .into(),
    )
}

impl LibvirtDomain {
    /// Fails: this build has no libvirt.
    pub fn open(_uri: &str, _name: &str) -> Result<Self> {
        Err(unavailable())
    }

    /// Fails: this build has no libvirt.
    pub fn open_watching(_uri: &str, _name: &str) -> Result<Self> {
        Err(unavailable())
    }

    /// The domain's name.
    pub fn name(&self) -> &str {
        match self.never {}
    }

    /// Its configured (maximum) memory, MiB.
    pub fn configured_mib(&self) -> Result<u64> {
        match self.never {}
    }

    /// Sets the balloon target, MiB.
    pub fn set_size_mib(&self, _mib: u64) -> Result<()> {
        match self.never {}
    }

    /// Sets how often QEMU asks the guest for statistics, seconds.
    pub fn set_stats_period(&self, _secs: i32) -> Result<()> {
        match self.never {}
    }

    /// The memory statistics.
    pub fn stats(&self) -> Result<MemStats> {
        match self.never {}
    }

    /// The balloon-change events since the last call.
    pub fn take_balloon_changes(&self) -> Vec<i64> {
        match self.never {}
    }

    /// Its QEMU's pid.
    pub fn pid(&self) -> Result<u32> {
        match self.never {}
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_use_says_how_to_get_libvirt() {
        let e = super::LibvirtDomain::open("qemu:///system", "web")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("without libvirt support") && e.contains("libvirt-dev"),
            "{e}"
        );
    }
}
