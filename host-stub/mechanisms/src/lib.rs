//! The host's own reclamation mechanisms: KSM, zswap, a swap file and
//! per-VM memory cgroups; and what they report.
//!
//! Every setting the stub changes is recorded in [`HostSettings`] before it
//! is changed, and put back when it is dropped — at the end of a run, after
//! an error, Ctrl-C (the run loop ends normally) or a panic (unwinding).
//! The record is also written to a journal file, so `balloon-host restore`
//! can put things back after the stub was killed with SIGKILL.
//!
//! A crate of its own, used by `balloon-host` (as `host_stub::mechanisms`)
//! and by the test guest's `balloon-guest mechanisms`, which runs the cgroup
//! v2, zswap and swap-file code inside a guest whose kernel has them.

use std::path::Path;

/// KSM's sysfs directory.
pub const KSM: &str = "/sys/kernel/mm/ksm";
/// zswap's module parameters.
pub const ZSWAP: &str = "/sys/module/zswap/parameters";
/// Where the journal of changed settings lives while a run is active.
pub const JOURNAL: &str = "/run/balloon-host/journal.json";

mod cgroup;
mod counters;
mod error;
mod settings;

pub use cgroup::{CgroupEvents, CgroupFs, CgroupMem, VmCgroup};
pub use counters::{
    attribute_sharing, attribute_swap, ksm_available, ksm_counters, ksm_merging_mib, process_mem,
    zswap_available, zswap_meminfo, KsmCounters,
};
pub use error::{Error, Result};
pub use settings::{Change, HostSettings};

/// Reads a sysfs file, trimmed.
pub fn read_trim(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(Error::io(format!("reading {}", path.display())))
}

fn write_file(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(Error::io(format!(
        "writing {value:?} to {}",
        path.display()
    )))
}

fn page_mib() -> f64 {
    4096.0 / (1 << 20) as f64
}

fn read_num(path: &Path) -> Result<u64> {
    let t = read_trim(path)?;
    t.parse()
        .map_err(|e| Error::Host(format!("{}: {t:?}: {e}", path.display())))
}

/// `what` is usable if its control `file` exists and we may write it.
fn controllable(file: &Path, what: &str) -> Result<()> {
    if !file.exists() {
        return Err(Error::Host(format!(
            "no {what} on this host ({} does not exist)",
            file.display()
        )));
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .map(drop)
        .map_err(|e| Error::Host(format!("cannot control {what} ({}): {e}", file.display())))
}
