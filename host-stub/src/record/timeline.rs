//! The run's timeline: one JSON object per tick in
//! `out/<scenario>/timeline.jsonl`, read back by the chart and the summary.
//!
//! Sizes are MiB. Guest statistics use libvirt's `dommemstat` names where
//! they overlap (`unused`, `available`, `usable`, `disk_caches`, ...).

use crate::engine::policy::HostState;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;

/// A guest's life in the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VmStatus {
    /// Booting, not yet managed.
    Booting,
    /// Managed.
    Running,
    /// Its QEMU exited or its QMP connection dropped.
    Lost,
}

/// One guest at one tick.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VmSample {
    /// Scenario name of the guest.
    pub name: String,
    /// Its status.
    pub status: VmStatus,
    /// Configured RAM.
    pub configured: u64,
    /// QEMU's resident memory (VmRSS).
    pub resident: u64,
    /// Balloon size: configured - actual.
    pub balloon: u64,
    /// The guest size last asked for.
    pub target: u64,
    /// The guest size now (`query-balloon` actual).
    pub actual: u64,
    /// Pages KSM merged in this process (`/proc/PID/ksm_merging_pages`).
    pub shared: f64,
    /// Swapped pages held compressed by zswap (this process's share of
    /// `Zswapped`, by its share of all swapped guest memory).
    pub compressed: f64,
    /// Swapped pages not in zswap (VmSwap - compressed).
    pub swapped: f64,
    /// The memory cgroup limit in force.
    pub cgroup_limit: Option<u64>,
    /// Guest statistics by dommemstat name (MiB; fault and swap counters
    /// as counts), absent until the driver sent some.
    pub guest: BTreeMap<String, f64>,
}

/// KSM's host-wide counters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KsmSample {
    /// `run`.
    pub run: u32,
    /// `pages_to_scan`.
    pub pages_to_scan: u32,
    /// `pages_sharing` in MiB: memory saved.
    pub sharing: f64,
    /// `pages_shared` in MiB: the merged copies kept.
    pub shared: f64,
}

/// The host at one tick.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostSample {
    /// Memory for guests (the scenario's).
    pub capacity: u64,
    /// Consumed by the guests.
    pub consumed: u64,
    /// capacity - consumed (negative when overcommitted).
    pub free: f64,
    /// The state the policy put the host in.
    pub state: HostState,
    /// KSM, when the sharing tier is on.
    pub ksm: Option<KsmSample>,
    /// zswap pool size (`Zswap` in /proc/meminfo), when compression is on.
    pub zswap_pool: Option<f64>,
    /// Pages held in zswap (`Zswapped`).
    pub zswapped: Option<f64>,
}

/// One tick.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the run started.
    pub t: f64,
    /// The host.
    pub host: HostSample,
    /// The guests, in scenario order.
    pub vms: Vec<VmSample>,
    /// What happened this tick (targets set, workloads started, tiers
    /// unavailable, guests lost), human-readable.
    pub events: Vec<String>,
    /// Alerts raised this tick.
    #[serde(default)]
    pub alerts: Vec<Alert>,
    /// The second host ("b") of a two-host scenario; `host` is then "a".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_host: Option<SecondHostSample>,
}

/// The second host of a two-host scenario at one tick.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SecondHostSample {
    /// Its memory, as for the first host.
    pub host: HostSample,
    /// The guests running on it (the others are on "a").
    pub vms: Vec<String>,
}

/// Writes samples as JSON lines.
pub struct Writer {
    file: std::io::BufWriter<std::fs::File>,
}

impl Writer {
    /// Creates (truncates) `path`, making its directory; then writes in
    /// append mode, so that a log rotation truncating the file under a
    /// daemon (`copytruncate`) leaves no hole before the next line.
    pub fn create(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(Error::io(format!("creating {}", dir.display())))?;
        }
        std::fs::File::create(path).map_err(Error::io(format!("creating {}", path.display())))?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(Error::io(format!("opening {}", path.display())))?;
        Ok(Self {
            file: std::io::BufWriter::new(file),
        })
    }

    /// Appends one sample and flushes, so the file is complete after a crash.
    pub fn write(&mut self, sample: &Sample) -> Result<()> {
        let line =
            serde_json::to_string(sample).map_err(|e| Error::Invalid(format!("timeline: {e}")))?;
        writeln!(self.file, "{line}")
            .and_then(|_| self.file.flush())
            .map_err(Error::io("writing the timeline"))
    }
}

/// Reads a timeline; a malformed line is an error naming its number.
pub fn read(path: &Path) -> Result<Vec<Sample>> {
    let file =
        std::fs::File::open(path).map_err(Error::io(format!("opening {}", path.display())))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(Error::io(format!("reading {}", path.display())))?;
        if line.trim().is_empty() {
            continue;
        }
        let s: Sample = serde_json::from_str(&line)
            .map_err(|e| Error::Invalid(format!("{}:{}: {e}", path.display(), i + 1)))?;
        out.push(s);
    }
    Ok(out)
}

/// What kind of warning sign.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertKind {
    /// Ballooned beyond the configured time.
    SustainedBallooning,
    /// The host compressed some of the VM's memory.
    Compression,
    /// The host swapped some of the VM's memory to disk.
    Swapping,
    /// Target set, `actual` unchanged, or statistics never updated.
    BalloonNotResponding,
    /// The guest stops short of its target while it answers.
    HeldAtFloor,
    /// The host is in hard or low state.
    HostPressure,
}

impl AlertKind {
    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            AlertKind::SustainedBallooning => "sustained-ballooning",
            AlertKind::Compression => "compression",
            AlertKind::Swapping => "swapping",
            AlertKind::BalloonNotResponding => "balloon-not-responding",
            AlertKind::HeldAtFloor => "held-at-floor",
            AlertKind::HostPressure => "host-pressure",
        }
    }
}

/// One alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// What.
    pub kind: AlertKind,
    /// Which VM (None: the host).
    pub vm: Option<String>,
    /// Seconds into the run when it was raised.
    pub at: f64,
    /// What was seen.
    pub evidence: String,
    /// What to do.
    pub advice: String,
}

impl std::fmt::Display for Alert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ALERT {} {}at {:.0} s: {}. {}",
            self.kind.name(),
            self.vm
                .as_deref()
                .map(|v| format!("[{v}] "))
                .unwrap_or_default(),
            self.at,
            self.evidence,
            self.advice
        )
    }
}

/// Samples for other modules' tests: a 1 GiB host with 900 MiB consumed,
/// and 512 MiB guests; tests override what they look at.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// A running 512 MiB guest, not ballooned, 200 MiB resident.
    pub(crate) fn vm(name: &str) -> VmSample {
        VmSample {
            name: name.into(),
            status: VmStatus::Running,
            configured: 512,
            resident: 200,
            balloon: 0,
            target: 512,
            actual: 512,
            shared: 0.0,
            compressed: 0.0,
            swapped: 0.0,
            cgroup_limit: None,
            guest: BTreeMap::new(),
        }
    }

    /// A tick at `t` s of a host in `state` with `vms`.
    pub(crate) fn sample(t: f64, state: HostState, vms: Vec<VmSample>) -> Sample {
        Sample {
            t,
            host: HostSample {
                capacity: 1024,
                consumed: 900,
                free: 124.0,
                state,
                ksm: None,
                zswap_pool: None,
                zswapped: None,
            },
            vms,
            events: vec![],
            alerts: vec![],
            second_host: None,
        }
    }
}
