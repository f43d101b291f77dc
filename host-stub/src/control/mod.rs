//! The real control loop: guests launched from a scenario (`run`) or found
//! running (`attach`), observed every tick, managed through the tiers, with
//! a live table, a timeline, a chart and a summary.
//!
//! [`ControlLoop`] is the loop; its parts are one file each: `setup`
//! (mechanisms, guests), `observe` (measurements and attribution), the
//! engine's decision, `act` (targets, limits, KSM, workloads), `migration`
//! (two hosts), and [`daemon`] (a config file and its reload).

mod act;
mod control_loop;
pub mod daemon;
mod migration;
mod observe;
mod setup;

pub use control_loop::ControlLoop;

use crate::backend::{AttachTo, Backend};
use crate::engine::policy::HostState;
use crate::mechanisms::{self, HostSettings, VmCgroup};
use crate::record::timeline::{Sample, VmStatus};
use crate::scenario::{GuestSpec, Scenario, Workload};
use crate::{Error, Result};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a run is shown and where its files go.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Output directory (`out/<scenario>` by default).
    pub out_dir: PathBuf,
    /// Redraw the live table in place (a terminal); otherwise one line per
    /// tick.
    pub live: bool,
    /// Journal of host changes (None: no journal, for tests).
    pub journal: Option<PathBuf>,
    /// Swap file location for the compression/swapping tiers.
    pub swap_file: PathBuf,
    /// KSM's sysfs directory.
    pub ksm_dir: PathBuf,
    /// zswap's module parameters.
    pub zswap_dir: PathBuf,
    /// Serve Prometheus metrics here while running.
    pub metrics: Option<std::net::SocketAddr>,
    /// Print the table each tick (off for a daemon whose stdout is the
    /// journal).
    pub table: bool,
    /// Re-read this config file when the flag is set (SIGHUP).
    pub reload: Option<Reload>,
}

/// A daemon's config file and the flag SIGHUP sets.
#[derive(Clone, Debug)]
pub struct Reload {
    /// The config file.
    pub path: PathBuf,
    /// Set by SIGHUP; cleared when the file has been re-read.
    pub flag: Arc<AtomicBool>,
}

/// Samples a run that goes on until stopped keeps for its summary and
/// chart (two hours at 2 s ticks); the timeline file has every tick.
pub const KEEP_SAMPLES: usize = 3600;

impl RunOptions {
    /// Defaults for a scenario: `out/<name>`, live if stdout is a terminal.
    pub fn for_scenario(name: &str) -> Self {
        Self {
            out_dir: PathBuf::from("out").join(name),
            live: std::io::IsTerminal::is_terminal(&std::io::stdout()),
            journal: Some(PathBuf::from(mechanisms::JOURNAL)),
            swap_file: PathBuf::from(format!("/var/tmp/balloon-host-{}.swap", std::process::id())),
            ksm_dir: PathBuf::from(mechanisms::KSM),
            zswap_dir: PathBuf::from(mechanisms::ZSWAP),
            metrics: None,
            table: true,
            reload: None,
        }
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct RunReport {
    /// Every tick.
    pub samples: Vec<Sample>,
    /// Tiers that were asked for but could not be used, with why.
    pub unavailable: Vec<String>,
    /// Guests lost during the run, with why.
    pub lost: Vec<String>,
    /// The timeline, chart and summary files.
    pub files: Vec<PathBuf>,
    /// Host settings that could not be restored (should be empty).
    pub restore_failures: Vec<String>,
}

/// A managed guest: its configuration, its connection and what the loop
/// has set.
struct Vm {
    spec: GuestSpec,
    /// The host it runs on: 0 ("a") or 1 ("b").
    host: usize,
    /// None once lost (dropping it kills a QEMU this run launched).
    conn: Option<Box<dyn Backend>>,
    /// This run launched its QEMU (it can run workloads and migrate).
    launched: bool,
    status: VmStatus,
    /// Guest size asked for, MiB.
    target: u64,
    cgroup: Option<VmCgroup>,
    cgroup_limit: Option<u64>,
    /// OOM kills in its cgroup seen so far (cgroup v2 `memory.events`).
    oom_kills: u64,
    workloads: Vec<Workload>,
    next_workload: usize,
    seed: u64,
}

/// Waits `d` unless interrupted; returns false when interrupted.
fn sleep_unless(stop: &AtomicBool, d: Duration) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(100)));
    }
    !stop.load(Ordering::Relaxed)
}

/// Installs a SIGHUP handler that sets the returned flag.
pub fn hangup_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&flag))
        .map_err(Error::io("installing the SIGHUP handler"))?;
    Ok(flag)
}

/// Installs SIGINT/SIGTERM handlers that set the returned flag.
pub fn interrupt_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&flag))
            .map_err(Error::io("installing a signal handler"))?;
    }
    Ok(flag)
}

/// Launches the scenario's guests and runs the control loop.
pub fn run(scenario: &Scenario, opts: &RunOptions, stop: &AtomicBool) -> Result<RunReport> {
    managed(scenario, opts, stop, None)
}

/// Manages running QEMUs by their QMP sockets or libvirt domains, in the
/// scenario's guest order.
pub fn attach(
    scenario: &Scenario,
    to: &[(String, AttachTo)],
    opts: &RunOptions,
    stop: &AtomicBool,
) -> Result<RunReport> {
    managed(scenario, opts, stop, Some(to))
}

/// Runs the loop with a settings journal, and puts the host back after the
/// guests are gone, whatever the loop's outcome.
fn managed(
    scenario: &Scenario,
    opts: &RunOptions,
    stop: &AtomicBool,
    attach_to: Option<&[(String, AttachTo)]>,
) -> Result<RunReport> {
    let mut settings = HostSettings::new(opts.journal.as_deref())?;
    let report = ControlLoop::start(scenario, opts, &mut settings, attach_to, stop)
        .and_then(|l| l.run(stop));
    // The guests are gone (the loop was dropped); now the host goes back.
    let failures = settings.restore();
    let mut report = report?;
    report.restore_failures = failures;
    Ok(report)
}

/// Host states a run spent time in, for callers that only need that.
pub fn states_seen(samples: &[Sample]) -> Vec<HostState> {
    let mut v: Vec<HostState> = samples.iter().map(|s| s.host.state).collect();
    v.sort();
    v.dedup();
    v
}
