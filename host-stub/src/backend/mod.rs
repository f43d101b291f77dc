//! The guests a run manages, behind one trait: [`Backend`] is what the
//! control loop needs of a guest (its balloon, its statistics, its QEMU's
//! pid), whoever owns the QEMU.
//!
//! - [`OwnedQemu`]: a QEMU this process launched (the harness's guest, with
//!   its serial agent and console log); only it can run workloads and be
//!   live-migrated.
//! - [`QmpSocket`]: a running QEMU found by its QMP socket.
//! - [`LibvirtGuest`]: a running libvirt domain, through libvirt's API.

#[cfg(feature = "libvirt")]
pub mod libvirt;
#[cfg(not(feature = "libvirt"))]
#[path = "libvirt_absent.rs"]
pub mod libvirt;
mod owned;
mod qmp_socket;

pub use libvirt::LibvirtDomain;
pub use owned::OwnedQemu;
pub use qmp_socket::{qemu_pid_for_socket, QmpSocket};

use crate::{Error, Result};
use qemu_ctl::guest::Guest;
use qemu_ctl::qmp::Qmp;
use qemu_ctl::MIB;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A guest's balloon and statistics at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BalloonNow {
    /// Its size (`actual`), MiB.
    pub actual: u64,
    /// Its statistics with dommemstat names (memory in MiB).
    pub guest: BTreeMap<String, f64>,
    /// When they were updated, s since the epoch (0: never).
    pub last_update: i64,
    /// `BALLOON_CHANGE` events (the guest's new size, bytes) since the last
    /// call.
    pub changes: Vec<i64>,
}

/// A guest the control loop manages.
pub trait Backend {
    /// The pid of its QEMU (for its memory in `/proc` and its cgroup).
    fn pid(&self) -> u32;

    /// Fails with [`Error::Lost`] (or the QEMU's own error) once the guest
    /// is gone.
    fn alive(&mut self) -> Result<()>;

    /// Sets the balloon target: the guest's size, MiB.
    fn set_size_mib(&mut self, mib: u64) -> Result<()>;

    /// Asks QEMU to poll the guest's statistics every `secs` seconds.
    fn set_stats_interval(&mut self, secs: u32) -> Result<()>;

    /// The balloon and the guest's statistics now.
    fn balloon(&mut self) -> Result<BalloonNow>;

    /// The QEMU this process launched, for what only it allows (workloads
    /// through its agent, live migration); `None` for a guest found running.
    fn owned(&mut self) -> Option<&mut Guest> {
        None
    }

    /// Lets the guest go: a launched QEMU is shut down and its console
    /// checked for kernel reports; a guest found running keeps running.
    fn release(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

/// A guest to attach to.
#[derive(Clone, Debug)]
pub enum AttachTo {
    /// A QEMU's QMP socket (its balloon device `id=balloon0`).
    Qmp(PathBuf),
    /// A running libvirt domain of this name on the connection `uri`.
    Libvirt {
        /// e.g. `qemu:///system`.
        uri: String,
    },
}

/// Connects to the running guest `name` at `to`.
pub fn attach(name: &str, to: &AttachTo) -> Result<Box<dyn Backend>> {
    Ok(match to {
        AttachTo::Qmp(sock) => Box::new(QmpSocket::connect(sock)?),
        AttachTo::Libvirt { uri } => Box::new(LibvirtGuest::open(uri, name)?),
    })
}

/// A running libvirt domain.
pub struct LibvirtGuest {
    dom: LibvirtDomain,
    pid: u32,
}

impl LibvirtGuest {
    /// Opens the domain `name` on `uri`, watching its balloon changes.
    pub fn open(uri: &str, name: &str) -> Result<Self> {
        let dom = LibvirtDomain::open_watching(uri, name)?;
        Ok(Self {
            pid: dom.pid()?,
            dom,
        })
    }
}

impl Backend for LibvirtGuest {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn alive(&mut self) -> Result<()> {
        pid_alive(self.pid)
    }

    fn set_size_mib(&mut self, mib: u64) -> Result<()> {
        self.dom.set_size_mib(mib)
    }

    fn set_stats_interval(&mut self, secs: u32) -> Result<()> {
        self.dom
            .set_stats_period(i32::try_from(secs).unwrap_or(i32::MAX))
    }

    fn balloon(&mut self) -> Result<BalloonNow> {
        let mut st = self.dom.stats()?;
        let actual = st.remove("actual").ok_or_else(|| {
            Error::Lost(format!(
                "libvirt reports no balloon size for {}",
                self.dom.name()
            ))
        })?;
        let last_update = st.remove("last_update").unwrap_or(0.0) as i64;
        st.remove("rss");
        Ok(BalloonNow {
            actual: actual.round() as u64,
            guest: st,
            last_update,
            changes: self.dom.take_balloon_changes(),
        })
    }
}

/// Fails with [`Error::Lost`] when no process `pid` exists.
fn pid_alive(pid: u32) -> Result<()> {
    if Path::new(&format!("/proc/{pid}")).exists() {
        Ok(())
    } else {
        Err(Error::Lost(format!("QEMU pid {pid} exited")))
    }
}

/// The balloon and statistics through QMP (a launched QEMU or a socket).
fn qmp_balloon(q: &mut Qmp) -> Result<BalloonNow> {
    let actual = q.guest_size()? / MIB;
    let stats = q.guest_stats()?;
    Ok(BalloonNow {
        actual,
        guest: dommemstat(&stats.stats),
        last_update: stats.last_update,
        changes: std::mem::take(&mut q.balloon_changes),
    })
}

/// QEMU's guest-stats names and libvirt's dommemstat names; memory stats
/// are converted to MiB, counters kept as counts.
const DOMMEMSTAT: [(&str, &str, bool); 10] = [
    ("stat-swap-in", "swap_in", false),
    ("stat-swap-out", "swap_out", false),
    ("stat-major-faults", "major_fault", false),
    ("stat-minor-faults", "minor_fault", false),
    ("stat-free-memory", "unused", true),
    ("stat-total-memory", "available", true),
    ("stat-available-memory", "usable", true),
    ("stat-disk-caches", "disk_caches", true),
    ("stat-htlb-pgalloc", "hugetlb_pgalloc", false),
    ("stat-htlb-pgfail", "hugetlb_pgfail", false),
];

/// Renames QEMU's guest stats to dommemstat names (memory in MiB).
pub fn dommemstat(stats: &BTreeMap<String, u64>) -> BTreeMap<String, f64> {
    DOMMEMSTAT
        .iter()
        .filter_map(|(q, l, mem)| {
            let v = *stats.get(*q)? as f64;
            Some((l.to_string(), if *mem { v / MIB as f64 } else { v }))
        })
        .collect()
}
