//! The libvirt backend: a guest that libvirt owns, managed through
//! libvirt's own balloon and memory-statistics calls (the `virt` crate,
//! libvirt's Rust bindings) instead of raw QMP — for hosts where libvirtd
//! runs QEMU and holds its monitor.
//!
//! The calls are those of `virsh setmem --live`, `virsh dommemstat` and
//! `virsh dommemstat --period`; QEMU's pid, for the host-side figures
//! (resident memory, swap, KSM), comes from libvirt's pid file.

use crate::{Error, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;
use virt::connect::Connect;
use virt::domain::Domain;
use virt::sys;

/// Where libvirt's QEMU driver keeps its pid files (`qemu:///system`).
pub const PID_DIR: &str = "/run/libvirt/qemu";

/// A running libvirt domain.
pub struct LibvirtDomain {
    name: String,
    dom: Domain,
    // Declared after `dom`: the domain reference is released first.
    _conn: Connect,
}

/// libvirt's memory statistic tags, as `virsh dommemstat` names them, and
/// whether the value is memory (KiB; reported here in MiB).
const TAGS: [(u32, &str, bool); 11] = [
    (sys::VIR_DOMAIN_MEMORY_STAT_SWAP_IN, "swap_in", false),
    (sys::VIR_DOMAIN_MEMORY_STAT_SWAP_OUT, "swap_out", false),
    (
        sys::VIR_DOMAIN_MEMORY_STAT_MAJOR_FAULT,
        "major_fault",
        false,
    ),
    (
        sys::VIR_DOMAIN_MEMORY_STAT_MINOR_FAULT,
        "minor_fault",
        false,
    ),
    (sys::VIR_DOMAIN_MEMORY_STAT_UNUSED, "unused", true),
    (sys::VIR_DOMAIN_MEMORY_STAT_AVAILABLE, "available", true),
    (sys::VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON, "actual", true),
    (sys::VIR_DOMAIN_MEMORY_STAT_RSS, "rss", true),
    (sys::VIR_DOMAIN_MEMORY_STAT_USABLE, "usable", true),
    (
        sys::VIR_DOMAIN_MEMORY_STAT_LAST_UPDATE,
        "last_update",
        false,
    ),
    (sys::VIR_DOMAIN_MEMORY_STAT_DISK_CACHES, "disk_caches", true),
];

/// Memory statistics of a domain: dommemstat names to values (memory in
/// MiB, counters as they are, `last_update` in seconds since the epoch).
pub type MemStats = BTreeMap<String, f64>;

/// Converts libvirt's `(tag, value)` pairs; unknown tags are left out.
pub fn mem_stats(raw: impl IntoIterator<Item = (u32, u64)>) -> MemStats {
    raw.into_iter()
        .filter_map(|(tag, val)| {
            let (_, name, mem) = TAGS.iter().find(|(t, _, _)| *t == tag)?;
            let v = if *mem {
                val as f64 / 1024.0
            } else {
                val as f64
            };
            Some((name.to_string(), v))
        })
        .collect()
}

fn err(what: String) -> impl FnOnce(virt::error::Error) -> Error {
    move |e| Error::Host(format!("libvirt: {what}: {e}"))
}

impl LibvirtDomain {
    /// Connects to `uri` (e.g. `qemu:///system`) and finds the running
    /// domain `name`.
    pub fn open(uri: &str, name: &str) -> Result<Self> {
        let conn = Connect::open(Some(uri)).map_err(err(format!("connecting to {uri}")))?;
        let dom = conn
            .lookup_domain_by_name(name)
            .map_err(err(format!("domain {name:?} on {uri}")))?;
        let active = dom
            .is_active()
            .map_err(err(format!("domain {name:?} state")))?;
        if !active {
            return Err(Error::Invalid(format!(
                "libvirt domain {name:?} is not running"
            )));
        }
        Ok(Self {
            name: name.to_string(),
            dom,
            _conn: conn,
        })
    }

    /// The domain's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its configured (maximum) memory, MiB.
    pub fn configured_mib(&self) -> Result<u64> {
        let kib = self
            .dom
            .max_memory()
            .map_err(err(format!("{} max memory", self.name)))?;
        Ok(kib / 1024)
    }

    /// Sets the balloon target (`virsh setmem --live`), MiB.
    pub fn set_size_mib(&self, mib: u64) -> Result<()> {
        self.dom
            .set_memory_flags(mib * 1024, sys::VIR_DOMAIN_MEM_LIVE)
            .map_err(err(format!("{} setmem {mib} MiB", self.name)))
    }

    /// Sets how often QEMU asks the guest for statistics (`virsh
    /// dommemstat --period`), seconds.
    pub fn set_stats_period(&self, secs: i32) -> Result<()> {
        self.dom
            .set_memory_stats_period(secs, sys::VIR_DOMAIN_MEM_LIVE)
            .map_err(err(format!("{} stats period", self.name)))
    }

    /// The memory statistics (`virsh dommemstat`).
    pub fn stats(&self) -> Result<MemStats> {
        let raw = self
            .dom
            .memory_stats(0)
            .map_err(err(format!("{} memory stats", self.name)))?;
        Ok(mem_stats(raw.into_iter().map(|s| (s.tag, s.val))))
    }

    /// Its QEMU's pid, from libvirt's pid file.
    pub fn pid(&self) -> Result<u32> {
        let path = PathBuf::from(PID_DIR).join(format!("{}.pid", self.name));
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::Host(format!("reading {}: {e}", path.display())))?;
        text.trim()
            .parse()
            .map_err(|e| Error::Host(format!("{}: not a pid ({e}): {text:?}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_become_dommemstat_names_in_mib() {
        let s = mem_stats([
            (sys::VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON, 262_144),
            (sys::VIR_DOMAIN_MEMORY_STAT_USABLE, 102_400),
            (sys::VIR_DOMAIN_MEMORY_STAT_MAJOR_FAULT, 7),
            (sys::VIR_DOMAIN_MEMORY_STAT_LAST_UPDATE, 1_700_000_000),
            (99, 5),
        ]);
        assert_eq!(s["actual"], 256.0);
        assert_eq!(s["usable"], 100.0);
        assert_eq!(s["major_fault"], 7.0);
        assert_eq!(s["last_update"], 1_700_000_000.0);
        assert_eq!(s.len(), 4);
    }
}
