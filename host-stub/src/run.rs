//! The real policy loop: guests launched from a scenario (`run`) or found by
//! their QMP sockets (`attach`), observed every tick, managed through the
//! tiers, with a live table, a timeline, a chart and a summary.

use crate::host::{self, CgroupFs, HostSettings, VmCgroup};
use crate::libvirt::LibvirtDomain;
use crate::policy::{
    self, CgroupAction, GuestMem, GuestView, HostState, HostView, PolicyState, Tiers,
};
use crate::scenario::{GuestDriver, GuestSpec, Scenario, Workload};
use crate::timeline::{self, HostSample, KsmSample, Sample, SecondHostSample, VmSample, VmStatus};
use crate::{balance, chart, summary, table, Error, Result};
use qemu_ctl::guest::{Guest, GuestConfig, BALLOON_ID};
use qemu_ctl::qmp::Qmp;
use qemu_ctl::{Driver, MIB};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
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
            journal: Some(PathBuf::from(host::JOURNAL)),
            swap_file: PathBuf::from(format!("/var/tmp/balloon-host-{}.swap", std::process::id())),
            ksm_dir: PathBuf::from(host::KSM),
            zswap_dir: PathBuf::from(host::ZSWAP),
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

/// A guest's balloon and statistics at one moment.
struct BalloonNow {
    /// Its size (`actual`), MiB.
    actual: u64,
    /// Its statistics with dommemstat names (memory in MiB).
    guest: BTreeMap<String, f64>,
    /// When they were updated, s since the epoch (0: never).
    last_update: i64,
    /// BALLOON_CHANGE events (bytes) since the last call (QMP only).
    changes: Vec<i64>,
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

/// A managed QEMU.
enum Conn {
    /// Launched by us: the harness's guest (agent, console log).
    Owned(Box<Guest>),
    /// Found by its QMP socket.
    Attached { qmp: Box<Qmp>, pid: u32 },
    /// A libvirt domain, through libvirt's API.
    Libvirt { dom: Box<LibvirtDomain>, pid: u32 },
}

impl Conn {
    /// The QMP connection (an error where libvirt owns the monitor).
    fn qmp(&mut self) -> Result<&mut Qmp> {
        match self {
            Conn::Owned(g) => Ok(g.qmp()),
            Conn::Attached { qmp, .. } => Ok(qmp),
            Conn::Libvirt { dom, .. } => Err(Error::Invalid(format!(
                "libvirt owns the QMP monitor of {}",
                dom.name()
            ))),
        }
    }

    fn pid(&self) -> u32 {
        match self {
            Conn::Owned(g) => g.pid(),
            Conn::Attached { pid, .. } | Conn::Libvirt { pid, .. } => *pid,
        }
    }

    fn alive(&mut self) -> Result<()> {
        match self {
            Conn::Owned(g) => Ok(g.check_alive("being managed")?),
            Conn::Attached { pid, .. } | Conn::Libvirt { pid, .. } => {
                if Path::new(&format!("/proc/{pid}")).exists() {
                    Ok(())
                } else {
                    Err(Error::Lost(format!("QEMU pid {pid} exited")))
                }
            }
        }
    }

    /// Sets the balloon target: the guest's size, MiB.
    fn set_size_mib(&mut self, mib: u64) -> Result<()> {
        match self {
            Conn::Libvirt { dom, .. } => dom.set_size_mib(mib),
            c => Ok(c.qmp()?.set_guest_size(mib * MIB)?),
        }
    }

    /// Asks QEMU to poll the guest's statistics every `secs` seconds.
    fn set_stats_interval(&mut self, secs: u32) -> Result<()> {
        match self {
            Conn::Libvirt { dom, .. } => dom.set_stats_period(secs as i32),
            c => Ok(c.qmp()?.set_stats_interval(secs)?),
        }
    }

    /// The balloon and the guest's statistics now.
    fn balloon(&mut self) -> Result<BalloonNow> {
        match self {
            Conn::Libvirt { dom, .. } => {
                let mut st = dom.stats()?;
                let actual = st.remove("actual").ok_or_else(|| {
                    Error::Lost(format!(
                        "libvirt reports no balloon size for {}",
                        dom.name()
                    ))
                })?;
                let last_update = st.remove("last_update").unwrap_or(0.0) as i64;
                st.remove("rss");
                Ok(BalloonNow {
                    actual: actual.round() as u64,
                    guest: st,
                    last_update,
                    changes: Vec::new(),
                })
            }
            c => {
                let q = c.qmp()?;
                let actual = q.guest_size()? / MIB;
                let stats = q.guest_stats()?;
                Ok(BalloonNow {
                    actual,
                    guest: dommemstat(&stats.stats),
                    last_update: stats.last_update,
                    changes: std::mem::take(&mut q.balloon_changes),
                })
            }
        }
    }
}

struct Vm {
    spec: GuestSpec,
    /// The host it runs on: 0 ("a") or 1 ("b").
    host: usize,
    conn: Option<Conn>,
    status: VmStatus,
    /// Guest size asked for, MiB.
    target: u64,
    cgroup: Option<VmCgroup>,
    cgroup_limit: Option<u64>,
    workloads: Vec<Workload>,
    next_workload: usize,
    seed: u64,
}

/// The mechanisms this host could give the run.
struct Mechanisms {
    tiers: Tiers,
    cgroups: Option<CgroupFs>,
    unavailable: Vec<String>,
}

fn setup_mechanisms(
    settings: &mut HostSettings,
    scenario: &Scenario,
    opts: &RunOptions,
) -> Mechanisms {
    let want = scenario.tiers;
    let mut m = Mechanisms {
        tiers: want,
        cgroups: None,
        unavailable: Vec::new(),
    };
    let off = |m: &mut Mechanisms, tier: &str, why: String| {
        let msg = format!("tier {tier} unavailable: {why}; continuing without it");
        tracing::warn!("{msg}");
        m.unavailable.push(msg);
    };
    let cfg = scenario.policy_config();
    if want.sharing {
        let k = &opts.ksm_dir;
        let r = host::ksm_available(k).and_then(|_| {
            settings.set(&k.join("pages_to_scan"), &cfg.ksm_min_pages.to_string())?;
            settings.set(&k.join("sleep_millisecs"), &cfg.ksm_sleep_ms.to_string())?;
            settings.ksm_run(k, false)
        });
        if let Err(e) = r {
            m.tiers.sharing = false;
            off(&mut m, "sharing (KSM)", e.to_string());
        }
    }
    if want.compression || want.swapping {
        let r = CgroupFs::detect().and_then(|fs| {
            settings.swap_file(&opts.swap_file, scenario.host.swap_file_mib)?;
            Ok(fs)
        });
        match r {
            Ok(fs) => m.cgroups = Some(fs),
            Err(e) => {
                m.tiers.compression = false;
                m.tiers.swapping = false;
                off(&mut m, "compression and swapping", e.to_string());
            }
        }
    }
    if m.tiers.compression {
        let r = host::zswap_available(&opts.zswap_dir)
            .and_then(|_| settings.set(&opts.zswap_dir.join("enabled"), "Y"));
        if let Err(e) = r {
            m.tiers.compression = false;
            off(&mut m, "compression (zswap)", e.to_string());
        }
    }
    m
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

/// Re-reads a daemon's config: the new scenario if it can be applied to
/// the running one, with what changed; the running guests' sizes fill those
/// the file leaves out.
fn reload(path: &Path, running: &Scenario) -> std::result::Result<(Scenario, Vec<String>), String> {
    let sizes: BTreeMap<&str, u64> = running
        .guests()
        .map(|g| (g.name.as_str(), g.memory_mib))
        .collect();
    let (new, _) = crate::daemon::load(path, |g, _| {
        sizes
            .get(g.name.as_str())
            .copied()
            .ok_or_else(|| Error::Invalid(format!("guest {} is not running here", g.name)))
    })
    .map_err(|e| e.to_string())?;
    let changes = crate::daemon::reload_changes(running, &new)?;
    Ok((new, changes))
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

fn boot_guest(spec: &GuestSpec, cgroup: Option<&VmCgroup>) -> Result<Guest> {
    let mut cfg = GuestConfig::new(&spec.name)?;
    cfg.mem_mib = spec.memory_mib;
    cfg.cpus = spec.cpus;
    if spec.free_page_reporting {
        cfg.balloon_props.push("free-page-reporting=on".into());
    }
    if spec.deflate_on_oom {
        cfg.balloon_props.push("deflate-on-oom=on".into());
    }
    cfg.cgroup_procs = cgroup.map(VmCgroup::procs);
    let mut g = Guest::boot(cfg)?;
    match spec.driver {
        GuestDriver::BalloonRs => g.load(Driver::BalloonRs)?,
        GuestDriver::C => g.load(Driver::C)?,
        GuestDriver::None => {}
    }
    Ok(g)
}

/// Launches the scenario's guests and runs the policy loop.
pub fn run(scenario: &Scenario, opts: &RunOptions, stop: &AtomicBool) -> Result<RunReport> {
    let mut settings = HostSettings::new(opts.journal.as_deref())?;
    let report = run_with(scenario, opts, stop, &mut settings, None);
    // Guests are gone (dropped inside run_with); now the host goes back.
    let failures = settings.restore();
    let mut report = report?;
    report.restore_failures = failures;
    Ok(report)
}

/// Manages running QEMUs by their QMP sockets or libvirt domains, in the
/// scenario's guest order.
pub fn attach(
    scenario: &Scenario,
    sockets: &[(String, AttachTo)],
    opts: &RunOptions,
    stop: &AtomicBool,
) -> Result<RunReport> {
    let mut settings = HostSettings::new(opts.journal.as_deref())?;
    let report = run_with(scenario, opts, stop, &mut settings, Some(sockets));
    let failures = settings.restore();
    let mut report = report?;
    report.restore_failures = failures;
    Ok(report)
}

/// The pid of the QEMU whose command line names `socket`.
pub fn qemu_pid_for_socket(socket: &Path) -> Result<u32> {
    let want = socket.display().to_string();
    let dir = std::fs::read_dir("/proc").map_err(Error::io("reading /proc"))?;
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd);
            if cmd.contains("qemu-system") && cmd.split('\0').any(|a| a.contains(&want)) {
                return Ok(pid);
            }
        }
    }
    Err(Error::Invalid(format!(
        "no QEMU process has {want} on its command line"
    )))
}

fn run_with(
    scenario: &Scenario,
    opts: &RunOptions,
    stop: &AtomicBool,
    settings: &mut HostSettings,
    attach_to: Option<&[(String, AttachTo)]>,
) -> Result<RunReport> {
    // A daemon's reload replaces it.
    let mut scenario = std::borrow::Cow::Borrowed(scenario);
    let mech = setup_mechanisms(settings, &scenario, opts);
    let mut vms: Vec<Vm> = Vec::new();
    for (i, spec) in scenario.guests().enumerate() {
        let cgroup = match &mech.cgroups {
            Some(fs) => Some(VmCgroup::create(settings, fs, &spec.name)?),
            None => None,
        };
        let mut workloads: Vec<Workload> =
            spec.workload.iter().map(|w| w.get_ref().clone()).collect();
        workloads.sort_by(|a, b| a.at.total_cmp(&b.at));
        vms.push(Vm {
            spec: spec.clone(),
            host: usize::from(spec.host == "b"),
            conn: None,
            status: VmStatus::Booting,
            target: spec.limit(),
            cgroup,
            cgroup_limit: None,
            workloads,
            next_workload: 0,
            seed: i as u64 + 1,
        });
    }
    // Connect or boot (in parallel: TCG boots take a while).
    match attach_to {
        Some(sockets) => {
            for (vm, (name, to)) in vms.iter_mut().zip(sockets) {
                let conn = match to {
                    AttachTo::Qmp(sock) => Conn::Attached {
                        pid: qemu_pid_for_socket(sock)?,
                        qmp: Box::new(Qmp::connect(sock, Duration::from_secs(5), BALLOON_ID)?),
                    },
                    AttachTo::Libvirt { uri } => {
                        let dom = LibvirtDomain::open(uri, name)?;
                        Conn::Libvirt {
                            pid: dom.pid()?,
                            dom: Box::new(dom),
                        }
                    }
                };
                if let Some(cg) = &vm.cgroup {
                    cg.add(settings, conn.pid())?;
                }
                vm.conn = Some(conn);
            }
        }
        None => {
            // One after the other, from this thread: QEMU dies with the
            // thread that started it (PR_SET_PDEATHSIG), and a TCG boot to
            // the agent takes only a few seconds.
            for vm in vms.iter_mut() {
                if stop.load(Ordering::Relaxed) {
                    return Err(Error::Interrupted);
                }
                tracing::info!(
                    "booting {} ({} MiB, {:?} driver)",
                    vm.spec.name,
                    vm.spec.memory_mib,
                    vm.spec.driver
                );
                vm.conn = Some(Conn::Owned(Box::new(boot_guest(
                    &vm.spec,
                    vm.cgroup.as_ref(),
                )?)));
            }
        }
    }
    let tick = Duration::from_secs_f64(scenario.tick);
    for vm in vms.iter_mut() {
        vm.status = VmStatus::Running;
        if let Some(c) = vm.conn.as_mut() {
            // Stats every second whatever the tick: the policy should see
            // the guest as it is now, not as it was a tick ago.
            c.set_stats_interval(1)?;
            // Start from the limit (a guest above it is brought down now).
            let actual = c.balloon()?.actual;
            vm.target = actual.min(vm.spec.limit());
            if actual != vm.target {
                c.set_size_mib(vm.target)?;
            }
        }
    }
    std::fs::create_dir_all(&opts.out_dir)
        .map_err(Error::io(format!("creating {}", opts.out_dir.display())))?;
    let latest: crate::metrics::Latest = Default::default();
    if let Some(addr) = opts.metrics {
        let bound = crate::metrics::serve(addr, latest.clone())?;
        tracing::info!("metrics on http://{bound}/metrics");
    }
    let timeline_path = opts.out_dir.join("timeline.jsonl");
    let mut writer = timeline::Writer::create(&timeline_path)?;
    let mut hosts = scenario.hosts();
    let mut states: Vec<PolicyState> = hosts
        .iter()
        .map(|(_, _, cfg)| PolicyState::initial(cfg))
        .collect();
    let mut balancer = Balancer::default();
    let mut ksm_on = false;
    let mut samples = Vec::new();
    let mut lost = Vec::new();
    let start = Instant::now();
    let mut first = true;
    let mut ticks: u64 = 0;
    let mut alerts = crate::alerts::Alerts::new(scenario.alerts.clone());
    loop {
        let t = start.elapsed().as_secs_f64();
        let mut events: Vec<String> = Vec::new();
        if first {
            events.extend(mech.unavailable.iter().cloned());
            first = false;
        }
        // SIGHUP: the daemon's config again, applied between two ticks.
        if let Some(r) = opts
            .reload
            .as_ref()
            .filter(|r| r.flag.swap(false, Ordering::Relaxed))
        {
            match reload(&r.path, &scenario) {
                Ok((new, changes)) => {
                    let msg = if changes.is_empty() {
                        format!("reloaded {}: nothing changed", r.path.display())
                    } else {
                        format!("reloaded {}: {}", r.path.display(), changes.join(", "))
                    };
                    tracing::info!("{msg}");
                    events.push(msg);
                    for (vm, spec) in vms.iter_mut().zip(new.guests()) {
                        vm.spec = spec.clone();
                    }
                    if new.alerts != scenario.alerts {
                        alerts = crate::alerts::Alerts::new(new.alerts.clone());
                    }
                    hosts = new.hosts();
                    scenario = std::borrow::Cow::Owned(new);
                }
                Err(e) => {
                    let msg = format!(
                        "reload of {} refused, the running configuration stays: {e}",
                        r.path.display()
                    );
                    tracing::warn!("{msg}");
                    events.push(msg);
                }
            }
        }
        // Observe.
        let mut obs: Vec<Option<Observed>> = Vec::new();
        for vm in vms.iter_mut() {
            let o = match vm.conn.as_mut() {
                Some(c) => match observe(c) {
                    Ok(o) => Some(o),
                    Err(e) => {
                        let msg = format!("guest {} lost: {e}", vm.spec.name);
                        tracing::warn!("{msg}");
                        events.push(msg.clone());
                        lost.push(msg);
                        vm.conn = None; // kills an owned QEMU
                        vm.status = VmStatus::Lost;
                        None
                    }
                },
                None => None,
            };
            if let Some((n, a)) = o.as_ref().and_then(|o| o.changes) {
                events.push(format!(
                    "{}: BALLOON_CHANGE x{n}, now {a} MiB",
                    vm.spec.name
                ));
            }
            obs.push(o);
        }
        let ksm = if mech.tiers.sharing {
            host::ksm_counters(&opts.ksm_dir).ok()
        } else {
            None
        };
        let zswap = if mech.tiers.compression || mech.tiers.swapping {
            host::zswap_meminfo().ok()
        } else {
            None
        };
        let merging: Vec<f64> = obs
            .iter()
            .map(|o| o.as_ref().map_or(0.0, |o| o.merging))
            .collect();
        let shared = match &ksm {
            Some(k) => host::attribute_sharing(&merging, k.sharing, k.shared),
            None => vec![0.0; vms.len()],
        };
        let swaps: Vec<f64> = obs
            .iter()
            .map(|o| o.as_ref().map_or(0.0, |o| o.swap))
            .collect();
        let split = host::attribute_swap(&swaps, zswap.map_or(0.0, |z| z.1));
        let pool = zswap.map_or(0.0, |z| z.0);
        // What each guest costs its host: resident minus shared, plus its
        // part of the zswap pool (by what it has compressed).
        let compressed_total: f64 = split.iter().map(|c| c.0).sum();
        let cost: Vec<f64> = (0..vms.len())
            .map(|i| {
                let pool_part = if compressed_total > 0.0 {
                    pool * split[i].0 / compressed_total
                } else if i == 0 {
                    pool
                } else {
                    0.0
                };
                obs[i].as_ref().map_or(0.0, |o| o.rss - shared[i]) + pool_part
            })
            .collect();
        // Decide and act, host by host, for the guests running there.
        let mut views: Vec<HostView> = Vec::new();
        let mut ksm_want: Option<policy::Ksm> = None;
        for (h, (name, capacity, cfg)) in hosts.iter().enumerate() {
            let members: Vec<usize> = (0..vms.len())
                .filter(|&i| obs[i].is_some() && vms[i].host == h)
                .collect();
            let consumed: f64 = members.iter().map(|&i| cost[i]).sum();
            let view = HostView {
                capacity: *capacity,
                consumed: consumed.max(0.0).round() as u64,
            };
            let guests: Vec<GuestView> = members
                .iter()
                .filter_map(|&i| obs[i].as_ref().map(|o| guest_view(&vms[i], o)))
                .collect();
            let d = policy::decide(cfg, &mech.tiers, &view, &guests, &states[h]);
            if d.state.host_state != states[h].host_state {
                let which = if hosts.len() > 1 {
                    format!("host {name}")
                } else {
                    "host".into()
                };
                events.push(format!(
                    "{which} {} -> {}",
                    states[h].host_state, d.state.host_state
                ));
            }
            states[h] = d.state;
            act(&mut vms, &members, &d, &mut events);
            ksm_want = Some(match ksm_want {
                None => d.ksm,
                Some(k) => policy::Ksm {
                    run: k.run || d.ksm.run,
                    pages_to_scan: k.pages_to_scan.max(d.ksm.pages_to_scan),
                    sleep_ms: k.sleep_ms.min(d.ksm.sleep_ms),
                },
            });
            views.push(view);
        }
        if let (true, Some(ksm_d)) = (mech.tiers.sharing, ksm_want) {
            let k = &opts.ksm_dir;
            let r = settings
                .set(&k.join("pages_to_scan"), &ksm_d.pages_to_scan.to_string())
                .and_then(|_| {
                    if ksm_d.run != ksm_on {
                        settings.ksm_run(k, ksm_d.run)?;
                    }
                    Ok(())
                });
            match r {
                Ok(()) => {
                    if ksm_d.run != ksm_on {
                        events.push(format!(
                            "KSM {}",
                            if ksm_d.run { "scanning" } else { "paused" }
                        ));
                    }
                    ksm_on = ksm_d.run;
                }
                Err(e) => events.push(format!("KSM: {e}")),
            }
        }
        // Workloads due.
        for vm in vms.iter_mut() {
            while let Some(w) = vm.workloads.get(vm.next_workload).cloned() {
                if w.at > t {
                    break;
                }
                vm.next_workload += 1;
                if let Some(Conn::Owned(g)) = vm.conn.as_mut() {
                    let cmd = format!(
                        "balloon-guest workload --mib {} --content {} --hold {} --seed {} >/dev/null 2>&1 &",
                        w.mib,
                        w.content.arg(),
                        w.hold.ceil() as u64,
                        vm.seed
                    );
                    match g.run_timeout(&cmd, Duration::from_secs(10)) {
                        Ok(_) => events.push(format!(
                            "{}: workload {} MiB {} for {} s",
                            vm.spec.name,
                            w.mib,
                            w.content.arg(),
                            w.hold
                        )),
                        Err(e) => {
                            events.push(format!("{}: workload not started: {e}", vm.spec.name))
                        }
                    }
                }
            }
        }
        // Two hosts: move a guest off a host that stays under pressure.
        if let Some(b) = &scenario.second_host {
            if let Some((i, from, to)) = balancer.pick(b, &hosts, &states, &views, &vms, &cost) {
                events.push(migrate(&mut vms[i], hosts[from].0, (to, hosts[to].0)));
                balancer.migrated();
            }
        }
        // Record and show.
        let host_sample = |h: usize| HostSample {
            capacity: hosts[h].1,
            consumed: views[h].consumed,
            free: views[h].free(),
            state: states[h].host_state,
            ksm: ksm.as_ref().map(|k| KsmSample {
                run: k.run,
                pages_to_scan: k.pages_to_scan,
                sharing: k.sharing,
                shared: k.shared,
            }),
            zswap_pool: zswap.map(|z| z.0),
            zswapped: zswap.map(|z| z.1),
        };
        let mut sample = Sample {
            t,
            second_host: (hosts.len() > 1).then(|| SecondHostSample {
                host: host_sample(1),
                vms: vms
                    .iter()
                    .filter(|v| v.host == 1)
                    .map(|v| v.spec.name.clone())
                    .collect(),
            }),
            host: host_sample(0),
            vms: vms
                .iter()
                .enumerate()
                .map(|(i, vm)| vm_sample(vm, obs[i].as_ref(), shared[i], split[i]))
                .collect(),
            events,
            alerts: Vec::new(),
        };
        sample.alerts = alerts.update(&sample);
        for a in &sample.alerts {
            tracing::warn!("{a}");
        }
        writer.write(&sample)?;
        if let Ok(mut l) = latest.lock() {
            *l = Some(sample.clone());
        }
        if opts.table {
            table::show(&sample, &scenario.name, opts.live);
        }
        samples.push(sample);
        ticks += 1;
        if scenario.duration.is_infinite() && samples.len() > KEEP_SAMPLES {
            samples.drain(..samples.len() - KEEP_SAMPLES);
        }
        if vms.iter().all(|v| v.status == VmStatus::Lost) {
            tracing::warn!("every guest is lost; stopping");
            break;
        }
        let next = Duration::from_secs_f64(scenario.tick * ticks as f64);
        if start.elapsed().as_secs_f64() >= scenario.duration {
            break;
        }
        if !sleep_unless(stop, next.saturating_sub(start.elapsed()).max(tick / 10)) {
            tracing::info!(
                "interrupted at {:.0} s; stopping the guests and putting the host back",
                start.elapsed().as_secs_f64()
            );
            break;
        }
    }
    // Guests go (owned ones are shut down and their logs checked).
    for vm in vms.iter_mut() {
        if let Some(Conn::Owned(g)) = vm.conn.take() {
            if let Err(e) = g.shutdown() {
                let msg = format!("guest {}: {e}", vm.spec.name);
                tracing::warn!("{msg}");
                lost.push(msg);
            }
        }
    }
    let mut files = vec![timeline_path];
    let svg = opts.out_dir.join("memory.svg");
    let png = opts.out_dir.join("memory.png");
    match chart::render(
        &samples,
        &format!("balloon-host: {}", scenario.name),
        &svg,
        &png,
    ) {
        Ok(()) => files.extend([svg, png]),
        Err(e) => tracing::warn!("chart not drawn: {e}"),
    }
    let sum = summary::Summary::from_samples(&samples, &mech.unavailable, &lost);
    let raised = alerts.raised.len();
    tracing::info!(raised, "alerts");
    let sum_path = opts.out_dir.join("summary.json");
    std::fs::write(
        &sum_path,
        serde_json::to_string_pretty(&sum).map_err(|e| Error::Invalid(e.to_string()))?,
    )
    .map_err(Error::io(format!("writing {}", sum_path.display())))?;
    files.push(sum_path);
    Ok(RunReport {
        samples,
        unavailable: mech.unavailable,
        lost,
        files,
        restore_failures: Vec::new(),
    })
}

/// The policy's view of one running guest.
fn guest_view(vm: &Vm, o: &Observed) -> GuestView {
    GuestView {
        configured: vm.spec.memory_mib,
        reservation: vm.spec.reservation_mib,
        limit: vm.spec.limit(),
        shares: vm.spec.shares,
        target: vm.target,
        actual: o.actual,
        resident: o.rss.round() as u64,
        mem: o.mem.filter(|_| o.fresh),
        cgroup_limit: vm.cgroup_limit,
    }
}

/// Applies one host's decision to its guests (`members`, in the order the
/// policy saw them).
fn act(vms: &mut [Vm], members: &[usize], d: &policy::Decision, events: &mut Vec<String>) {
    for (k, &i) in members.iter().enumerate() {
        let vm = &mut vms[i];
        if let Some(t) = d.targets[k] {
            if let Some(c) = vm.conn.as_mut() {
                match c.set_size_mib(t) {
                    Ok(()) => {
                        events.push(format!("{}: target {} -> {t} MiB", vm.spec.name, vm.target));
                        vm.target = t;
                    }
                    Err(e) => events.push(format!("{}: balloon command failed: {e}", vm.spec.name)),
                }
            }
        }
        if let (Some(a), Some(cg)) = (d.cgroups[k], vm.cgroup.as_ref()) {
            let limit = match a {
                CgroupAction::Limit(m) => Some(m),
                CgroupAction::Unlimited => None,
            };
            if limit != vm.cgroup_limit {
                match cg.set_limit(limit) {
                    Ok(()) => {
                        events.push(match limit {
                            Some(m) => format!("{}: memory cgroup limit {m} MiB", vm.spec.name),
                            None => format!("{}: memory cgroup limit lifted", vm.spec.name),
                        });
                        vm.cgroup_limit = limit;
                    }
                    Err(e) => events.push(format!("{}: cgroup limit failed: {e}", vm.spec.name)),
                }
            }
        }
    }
}

/// Two-host balancing state: how long each host has been under pressure,
/// and when the last migration ended.
#[derive(Default)]
struct Balancer {
    pressured: [u32; 2],
    last: Option<Instant>,
}

impl Balancer {
    /// Counts this tick's pressure and picks a migration ([`balance::plan`],
    /// the simulator's balancer) unless one ended within the cooldown.
    fn pick(
        &mut self,
        b: &crate::scenario::SecondHost,
        hosts: &[(&str, u64, policy::PolicyConfig)],
        states: &[PolicyState],
        views: &[HostView],
        vms: &[Vm],
        cost: &[f64],
    ) -> Option<(usize, usize, usize)> {
        if hosts.len() != 2 || states.len() != 2 || views.len() != 2 {
            return None;
        }
        for (p, s) in self.pressured.iter_mut().zip(states) {
            *p = if s.host_state >= HostState::Soft {
                *p + 1
            } else {
                0
            };
        }
        if self
            .last
            .is_some_and(|t| t.elapsed().as_secs_f64() < b.cooldown_s)
        {
            return None;
        }
        // The scenario's hosts keep no margin beyond leaving soft, and
        // the destination must not itself be pushed back into soft.
        let host = |h: usize| {
            let leave_soft =
                balance::leave_soft_mib(&hosts[h].2.thresholds, hosts[h].2.min_free_mib as f64);
            balance::Host {
                state: states[h].host_state,
                pressured: self.pressured[h],
                free: views[h].free(),
                leave_soft,
                keep: leave_soft,
                busy: false,
            }
        };
        // Only guests this run launched can be migrated (it owns their
        // QEMU); a guest costs its host what it takes, and takes as much on
        // the other.
        let guests: Vec<balance::Vm> = vms
            .iter()
            .zip(cost)
            .map(|(v, c)| balance::Vm {
                host: v.host,
                copy: *c,
                frees: *c,
                may_move: v.status == VmStatus::Running && matches!(v.conn, Some(Conn::Owned(_))),
            })
            .collect();
        let rules = balance::Rules {
            sustain_ticks: b.sustain_ticks,
            max_in_flight: 1,
        };
        balance::plan(&rules, &[host(0), host(1)], &guests, 0)
            .first()
            .map(|m| (m.vm, m.from, m.to))
    }

    fn migrated(&mut self) {
        self.last = Some(Instant::now());
        self.pressured = [0; 2];
    }
}

/// Live-migrates a guest this run launched from host `from` to host `to`
/// (index, name): QEMU's own migration over loopback into a new QEMU in the
/// guest's cgroup. Returns the event; a failed migration leaves the guest
/// where it was.
fn migrate(vm: &mut Vm, from: &str, (to, to_name): (usize, &str)) -> String {
    let name = vm.spec.name.clone();
    let Some(Conn::Owned(g)) = vm.conn.as_mut() else {
        return format!("{name}: not migrated (a guest this run did not launch)");
    };
    // Source and destination are charged to the same cgroup while both
    // exist: no limit during the move (the next tick decides again).
    if let (Some(_), Some(cg)) = (vm.cgroup_limit, vm.cgroup.as_ref()) {
        if cg.set_limit(None).is_ok() {
            vm.cgroup_limit = None;
        }
    }
    tracing::info!("live-migrating {name} from host {from} to host {to_name}");
    let t0 = Instant::now();
    match g.migrate_local(vm.cgroup.as_ref().map(VmCgroup::procs), MIGRATION_TIMEOUT) {
        Ok(()) => {
            vm.host = to;
            // Stats polling belongs to the QEMU, not to the guest.
            let stats = match g.qmp().set_stats_interval(1) {
                Ok(()) => String::new(),
                Err(e) => format!(" (statistics polling not set: {e})"),
            };
            format!(
                "{name}: live-migrated from host {from} to host {to_name} in {:.1} s{stats}",
                t0.elapsed().as_secs_f64()
            )
        }
        Err(e) => format!(
            "{name}: migration from host {from} to host {to_name} failed, the guest stays: {e}"
        ),
    }
}

/// Longest a live migration may take.
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(300);

/// One guest's measurements at one tick.
struct Observed {
    /// Guest size, MiB.
    actual: u64,
    rss: f64,
    swap: f64,
    merging: f64,
    mem: Option<GuestMem>,
    /// Stats updated within the last few seconds.
    fresh: bool,
    /// `BALLOON_CHANGE` events since the last tick: (count, last actual MiB).
    changes: Option<(usize, u64)>,
    guest: BTreeMap<String, f64>,
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

fn observe(c: &mut Conn) -> Result<Observed> {
    c.alive()?;
    let BalloonNow {
        actual,
        guest,
        last_update,
        changes: events,
    } = c.balloon()?;
    let changes = events
        .last()
        .map(|&a| (events.len(), a.max(0) as u64 / MIB));
    let (rss, swap) = host::process_mem(c.pid())?;
    let merging = host::ksm_merging_mib(c.pid()).unwrap_or(0.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let fresh = last_update > 0 && now - last_update <= 10;
    let mem = match (
        guest.get("available"),
        guest.get("unused"),
        guest.get("usable"),
    ) {
        (Some(&total), Some(&free), Some(&avail)) => Some(GuestMem {
            total: total as u64,
            free: free as u64,
            available: avail as u64,
        }),
        _ => None,
    };
    Ok(Observed {
        actual,
        rss,
        swap,
        merging,
        mem,
        fresh,
        changes,
        guest,
    })
}

fn vm_sample(
    vm: &Vm,
    o: Option<&Observed>,
    shared: f64,
    (compressed, swapped): (f64, f64),
) -> VmSample {
    let configured = vm.spec.memory_mib;
    match o {
        Some(o) => VmSample {
            name: vm.spec.name.clone(),
            status: vm.status,
            configured,
            resident: o.rss.round() as u64,
            balloon: configured.saturating_sub(o.actual),
            target: vm.target,
            actual: o.actual,
            shared,
            compressed,
            swapped,
            cgroup_limit: vm.cgroup_limit,
            guest: o.guest.clone(),
        },
        None => VmSample {
            name: vm.spec.name.clone(),
            status: vm.status,
            configured,
            resident: 0,
            balloon: 0,
            target: vm.target,
            actual: 0,
            shared: 0.0,
            compressed: 0.0,
            swapped: 0.0,
            cgroup_limit: None,
            guest: BTreeMap::new(),
        },
    }
}

/// Host states a run spent time in, for callers that only need that.
pub fn states_seen(samples: &[Sample]) -> Vec<HostState> {
    let mut v: Vec<HostState> = samples.iter().map(|s| s.host.state).collect();
    v.sort();
    v.dedup();
    v
}
