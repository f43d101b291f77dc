//! The command line of `balloon-host` (parsed by clap) and what each
//! command does; `main` only calls [`main`].

use crate::backend::{self, AttachTo};
use crate::control::{self, RunOptions};
use crate::engine::policy::Tiers;
use crate::mechanisms;
use crate::record::summary::Summary;
use crate::render::{cluster_chart, cluster_table, sim_table, text_table};
use crate::scenario::{GuestDriver, GuestSpec, Scenario};
use crate::sim::simulate;
use crate::{size, Error, Result};
use clap::{Parser, Subcommand};
use qemu_ctl::guest::BALLOON_ID;
use qemu_ctl::qmp::Qmp;
use qemu_ctl::MIB;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A host memory manager for QEMU guests running balloon_rs: page sharing,
/// ballooning, compression and swapping, least disruptive first.
#[derive(Debug, Parser)]
#[command(name = "balloon-host", version)]
pub struct Cli {
    /// More log lines on stderr: -v debug, -vv trace (BALLOON_HOST_LOG, an
    /// env-filter, overrides).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Fewer: warnings and errors only.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The log filter the flags ask for: info from balloon-host itself by
    /// default, warnings from the libraries.
    pub fn log_filter(&self) -> &'static str {
        match (self.quiet, self.verbose) {
            (true, _) => "warn",
            (false, 0) => "warn,host_stub=info,balloon_host=info",
            (false, 1) => "info,host_stub=debug,balloon_host=debug",
            (false, _) => "debug,host_stub=trace,balloon_host=trace",
        }
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Launch a scenario's guests and manage them for its duration (or
    /// until Ctrl-C); writes out/<name>/timeline.jsonl, memory.svg/.png and
    /// summary.json.
    Run {
        /// The scenario file (TOML).
        scenario: PathBuf,
        /// Output directory (default out/<scenario name>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the table as lines instead of redrawing it.
        #[arg(long)]
        no_live: bool,
        /// Serve Prometheus metrics at ADDR (e.g. 127.0.0.1:9187).
        #[arg(long, value_name = "ADDR")]
        metrics: Option<std::net::SocketAddr>,
    },
    /// Manage QEMU guests that are already running, by their QMP sockets
    /// or libvirt domains; with --config, as a daemon from a config file
    /// (re-read on SIGHUP).
    Attach {
        /// A config file: a scenario file whose guests have `qmp = PATH`
        /// (or `libvirt = URI` at the top); runs until stopped unless it
        /// sets a duration.
        #[arg(
            long,
            conflicts_with_all = ["guests", "libvirt", "capacity", "min_free", "tiers", "duration", "tick"]
        )]
        config: Option<PathBuf>,
        /// NAME=QMP_SOCKET for each guest (its balloon device must have
        /// id=balloon0); with --libvirt, domain names.
        #[arg(required_unless_present = "config")]
        guests: Vec<String>,
        /// Manage libvirt domains on this connection (e.g. qemu:///system)
        /// through libvirt's balloon and memory-stats calls.
        #[arg(long, value_name = "URI")]
        libvirt: Option<String>,
        /// The host's memory for these guests: 2G, 1536M, or MiB.
        #[arg(long, value_parser = size::arg_mib, required_unless_present = "config")]
        capacity: Option<u64>,
        /// minFree: 128M, 1G, or MiB (default 6 % of capacity).
        #[arg(long, value_parser = size::arg_mib)]
        min_free: Option<u64>,
        /// Seconds to run (default: until Ctrl-C, at most a week).
        #[arg(long, default_value_t = 7.0 * 86400.0)]
        duration: f64,
        /// Seconds between ticks.
        #[arg(long, default_value_t = 2.0)]
        tick: f64,
        /// Tiers to use, comma-separated (sharing,ballooning,compression,swapping).
        #[arg(long, default_value = "sharing,ballooning")]
        tiers: String,
        /// Output directory.
        #[arg(long, default_value = "out/attach")]
        out: PathBuf,
        /// Print the table as lines instead of redrawing it.
        #[arg(long)]
        no_live: bool,
        /// Serve Prometheus metrics at ADDR (e.g. 127.0.0.1:9187).
        #[arg(long, value_name = "ADDR")]
        metrics: Option<std::net::SocketAddr>,
    },
    /// One-shot table of running guests by their QMP sockets.
    Status {
        /// QMP sockets; with --libvirt, domain names.
        #[arg(required = true, value_name = "SOCKET|DOMAIN")]
        guests: Vec<String>,
        /// Show libvirt domains on this connection (e.g. qemu:///system).
        #[arg(long, value_name = "URI")]
        libvirt: Option<String>,
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Set a guest's balloon target: the memory size it should have.
    Set {
        /// QMP socket; with --libvirt, a domain name.
        #[arg(value_name = "SOCKET|DOMAIN")]
        socket: PathBuf,
        /// Set a libvirt domain's size on this connection (e.g.
        /// qemu:///system), as `virsh setmem --live` does.
        #[arg(long, value_name = "URI")]
        libvirt: Option<String>,
        /// Size: 256M, 1.5G or a number of MiB.
        #[arg(value_parser = size::arg_mib)]
        size: u64,
        /// Wait until the guest reaches it (seconds, 0: don't wait).
        #[arg(long, default_value_t = 0)]
        wait: u64,
    },
    /// Compare policies on a simulated host with many VMs; with `--hosts`,
    /// compare a cluster with and without DRS-like balancing.
    Simulate(SimulateArgs),
    /// Re-draw the chart and summary of a timeline.
    Chart {
        /// timeline.jsonl
        timeline: PathBuf,
    },
    /// Right-sizing from history: per VM use, ballooning, reclaimed memory
    /// and a recommended size, from one or more timelines.
    Report {
        /// timeline.jsonl files.
        #[arg(required = true)]
        timelines: Vec<PathBuf>,
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// Also draw each VM's use against its configured and recommended
        /// size (report.svg and report.png) into this directory.
        #[arg(long)]
        chart: Option<PathBuf>,
    },
    /// Put back host settings left changed by a run that was killed.
    Restore,
}

fn parse_tiers(s: &str) -> Result<Tiers> {
    let mut t = Tiers {
        sharing: false,
        ballooning: false,
        compression: false,
        swapping: false,
    };
    for name in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
        match name {
            "sharing" => t.sharing = true,
            "ballooning" => t.ballooning = true,
            "compression" => t.compression = true,
            "swapping" => t.swapping = true,
            other => {
                return Err(Error::Invalid(format!(
                    "unknown tier {other:?} (sharing, ballooning, compression, swapping)"
                )))
            }
        }
    }
    Ok(t)
}

fn connect(socket: &Path) -> Result<Qmp> {
    Ok(Qmp::connect(socket, Duration::from_secs(5), BALLOON_ID)?)
}

/// The guest's configured RAM, MiB (`query-memory-size-summary`).
fn configured_mib(qmp: &mut Qmp) -> Result<u64> {
    let s = qmp.execute(&qapi::qmp::query_memory_size_summary {})?;
    Ok(s.base_memory / MIB)
}

/// One guest in `status`'s table and JSON.
#[derive(Debug, serde::Serialize)]
struct StatusRow {
    /// QMP socket or libvirt domain name.
    name: String,
    /// Configured RAM, MiB.
    configured_mib: u64,
    /// Its size now, MiB.
    actual_mib: u64,
    /// QEMU's resident memory, MiB (None: its process was not found).
    rss_mib: Option<f64>,
    /// Guest statistics with dommemstat names (memory in MiB).
    guest: std::collections::BTreeMap<String, f64>,
    /// Age of the statistics, seconds (None: polling off or no driver).
    stats_age_s: Option<i64>,
}

impl StatusRow {
    fn new(
        name: String,
        configured_mib: u64,
        actual_mib: u64,
        pid: Result<u32>,
        guest: std::collections::BTreeMap<String, f64>,
        last_update: i64,
    ) -> Self {
        let rss_mib = pid
            .ok()
            .and_then(|pid| mechanisms::process_mem(pid).ok())
            .map(|(m, _)| m);
        Self {
            name,
            configured_mib,
            actual_mib,
            rss_mib,
            guest,
            stats_age_s: stats_age(last_update),
        }
    }
}

/// `status`'s table: `what` names the first column.
fn status_table(what: &str, rows: &[StatusRow]) -> String {
    let mut t = text_table::new(&[
        what, "config", "actual", "balloon", "rss", "free", "avail", "stats",
    ]);
    text_table::left(&mut t, 7);
    let mib = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.0}"));
    for r in rows {
        t.add_row([
            r.name.clone(),
            r.configured_mib.to_string(),
            r.actual_mib.to_string(),
            r.configured_mib.saturating_sub(r.actual_mib).to_string(),
            mib(r.rss_mib),
            mib(r.guest.get("unused").copied()),
            mib(r.guest.get("usable").copied()),
            r.stats_age_s
                .map_or("none (polling off or no driver)".into(), |a| {
                    format!("{a} s old")
                }),
        ]);
    }
    text_table::render(&t)
}

fn status(sockets: &[String]) -> Result<Vec<StatusRow>> {
    let mut rows = Vec::new();
    for sock in sockets {
        let path = Path::new(sock);
        let mut q = connect(path)?;
        let stats = q.guest_stats()?;
        rows.push(StatusRow::new(
            sock.clone(),
            configured_mib(&mut q)?,
            q.guest_size()? / MIB,
            backend::qemu_pid_for_socket(path),
            backend::dommemstat(&stats.stats),
            stats.last_update,
        ));
    }
    Ok(rows)
}

/// `status --libvirt URI DOMAIN...`: the same rows from libvirt's calls.
fn status_libvirt(uri: &str, domains: &[String]) -> Result<Vec<StatusRow>> {
    let mut rows = Vec::new();
    for d in domains {
        let dom = backend::LibvirtDomain::open(uri, d)?;
        let configured = dom.configured_mib()?;
        let mut guest = dom.stats()?;
        let actual = guest
            .remove("actual")
            .map_or(configured, |a| a.round() as u64);
        let last_update = guest.remove("last_update").map_or(0, |t| t as i64);
        rows.push(StatusRow::new(
            dom.name().to_string(),
            configured,
            actual,
            dom.pid(),
            guest,
            last_update,
        ));
    }
    Ok(rows)
}

/// How old statistics updated at `last_update` (s since the epoch) are;
/// None when there are none.
fn stats_age(last_update: i64) -> Option<i64> {
    (last_update > 0).then(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        now - last_update
    })
}

/// Prints `value` as pretty JSON.
fn print_json(value: &impl serde::Serialize) -> Result<()> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| Error::Invalid(format!("JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

fn finish(report: control::RunReport) -> Result<()> {
    let sum = Summary::from_samples(&report.samples, &report.unavailable, &report.lost);
    println!("\n{}", sum.render());
    for f in &report.files {
        println!("wrote {}", f.display());
    }
    if !report.restore_failures.is_empty() {
        return Err(Error::Host(format!(
            "could not restore host settings: {}",
            report.restore_failures.join("; ")
        )));
    }
    if !report.lost.is_empty() {
        return Err(Error::Lost(format!(
            "{} guest(s) lost: {}",
            report.lost.len(),
            report.lost.join("; ")
        )));
    }
    Ok(())
}

/// The guest `set` sizes: by its QMP socket or as a libvirt domain.
enum SetTarget {
    Qmp(Box<Qmp>),
    Libvirt(Box<backend::LibvirtDomain>),
}

impl SetTarget {
    fn open(socket: &Path, libvirt: Option<&str>) -> Result<Self> {
        Ok(match libvirt {
            Some(uri) => Self::Libvirt(Box::new(backend::LibvirtDomain::open(
                uri,
                &socket.display().to_string(),
            )?)),
            None => Self::Qmp(Box::new(connect(socket)?)),
        })
    }

    fn configured_mib(&mut self) -> Result<u64> {
        match self {
            Self::Qmp(q) => configured_mib(q),
            Self::Libvirt(d) => d.configured_mib(),
        }
    }

    fn set_mib(&mut self, mib: u64) -> Result<()> {
        match self {
            Self::Qmp(q) => Ok(q.set_guest_size(mib * MIB)?),
            Self::Libvirt(d) => d.set_size_mib(mib),
        }
    }

    /// The guest's size now (`actual`), MiB.
    fn actual_mib(&mut self) -> Result<u64> {
        match self {
            Self::Qmp(q) => Ok(q.guest_size()? / MIB),
            Self::Libvirt(d) => {
                let configured = d.configured_mib()?;
                Ok(d.stats()?
                    .get("actual")
                    .map_or(configured, |a| a.round() as u64))
            }
        }
    }
}

/// A running guest's configured memory, MiB, through the way it is
/// reached.
fn guest_size(spec: &GuestSpec, to: &AttachTo) -> Result<u64> {
    match to {
        AttachTo::Qmp(sock) => configured_mib(&mut connect(sock)?),
        AttachTo::Libvirt { uri } => {
            backend::LibvirtDomain::open(uri, &spec.name)?.configured_mib()
        }
    }
}

fn attach_scenario(
    guests: &[String],
    libvirt: Option<&str>,
    capacity: u64,
    min_free: Option<u64>,
    duration: f64,
    tick: f64,
    tiers: &str,
) -> Result<(Scenario, Vec<(String, AttachTo)>)> {
    let mut specs = Vec::new();
    let mut sockets = Vec::new();
    for g in guests {
        let (name, mem, to) = match libvirt {
            Some(uri) => {
                let dom = backend::LibvirtDomain::open(uri, g)?;
                let to = AttachTo::Libvirt {
                    uri: uri.to_string(),
                };
                (g.as_str(), dom.configured_mib()?, to)
            }
            None => {
                let (name, sock) = g
                    .split_once('=')
                    .ok_or_else(|| Error::Invalid(format!("{g:?}: expected NAME=QMP_SOCKET")))?;
                let mut q = connect(Path::new(sock))?;
                (
                    name,
                    configured_mib(&mut q)?,
                    AttachTo::Qmp(PathBuf::from(sock)),
                )
            }
        };
        specs.push(GuestSpec {
            name: name.to_string(),
            memory_mib: mem,
            reservation_mib: 0,
            limit_mib: None,
            shares: 1000,
            driver: GuestDriver::BalloonRs,
            free_page_reporting: false,
            deflate_on_oom: false,
            cpus: 1,
            host: "a".into(),
            workload: Vec::new(),
            qmp: None,
        });
        sockets.push((name.to_string(), to));
    }
    // Built as TOML and parsed, so attach gets the same validation.
    let mut text = format!(
        "name = \"attach\"\nduration = {duration:?}\ntick = {tick:?}\n[host]\ncapacity_mib = {capacity}\n"
    );
    if let Some(m) = min_free {
        text.push_str(&format!("min_free_mib = {m}\n"));
    }
    let t = parse_tiers(tiers)?;
    text.push_str(&format!(
        "[tiers]\nsharing = {}\nballooning = {}\ncompression = {}\nswapping = {}\n",
        t.sharing, t.ballooning, t.compression, t.swapping
    ));
    for s in &specs {
        text.push_str(&format!(
            "[[guest]]\nname = {:?}\nmemory_mib = {}\n",
            s.name, s.memory_mib
        ));
    }
    let sc = Scenario::parse(&text, Path::new("attach arguments"))?;
    Ok((sc, sockets))
}

/// Runs a parsed command line.
pub fn main(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run {
            scenario,
            out,
            no_live,
            metrics,
        } => {
            let sc = Scenario::load(&scenario)?;
            if sc.libvirt.is_some() || sc.guests().any(|g| g.qmp.is_some()) {
                return Err(Error::Scenario {
                    path: scenario,
                    message: "qmp and libvirt name running guests: use `balloon-host attach --config` for such a file".into(),
                });
            }
            let stop = control::interrupt_flag()?;
            let mut opts = RunOptions::for_scenario(&sc.name);
            if let Some(o) = out {
                opts.out_dir = o;
            }
            opts.live &= !no_live;
            opts.metrics = metrics;
            finish(control::run(&sc, &opts, &stop)?)
        }
        Command::Attach {
            config,
            guests,
            libvirt,
            capacity,
            min_free,
            duration,
            tick,
            tiers,
            out,
            no_live,
            metrics,
        } => {
            let stop = control::interrupt_flag()?;
            let (sc, sockets, reload) = match config {
                Some(path) => {
                    let (sc, sockets) = crate::control::daemon::load(&path, guest_size)?;
                    let reload = control::Reload {
                        flag: control::hangup_flag()?,
                        path,
                    };
                    (sc, sockets, Some(reload))
                }
                None => {
                    let capacity = capacity.ok_or_else(|| {
                        Error::Invalid("attach needs --capacity (or --config)".into())
                    })?;
                    let (sc, sockets) = attach_scenario(
                        &guests,
                        libvirt.as_deref(),
                        capacity,
                        min_free,
                        duration,
                        tick,
                        &tiers,
                    )?;
                    (sc, sockets, None)
                }
            };
            let mut opts = RunOptions::for_scenario(&sc.name);
            opts.out_dir = out;
            opts.live &= !no_live;
            // A daemon's stdout is the journal: the table only on a terminal.
            opts.table = reload.is_none() || opts.live;
            opts.metrics = metrics;
            opts.reload = reload;
            finish(control::attach(&sc, &sockets, &opts, &stop)?)
        }
        Command::Status {
            guests,
            libvirt,
            json,
        } => {
            let (what, rows) = match libvirt {
                Some(uri) => ("libvirt domain", status_libvirt(&uri, &guests)?),
                None => ("QMP socket", status(&guests)?),
            };
            if json {
                print_json(&rows)
            } else {
                print!("{}", status_table(what, &rows));
                Ok(())
            }
        }
        Command::Set {
            socket,
            libvirt,
            size,
            wait,
        } => {
            let mib = size;
            if mib == 0 {
                return Err(Error::Invalid("size 0: a guest needs memory".into()));
            }
            let mut guest = SetTarget::open(&socket, libvirt.as_deref())?;
            let configured = guest.configured_mib()?;
            if mib > configured {
                return Err(Error::Invalid(format!(
                    "{mib} MiB is more than the guest's {configured} MiB"
                )));
            }
            guest.set_mib(mib)?;
            if wait > 0 {
                let deadline = std::time::Instant::now() + Duration::from_secs(wait);
                let mut actual = guest.actual_mib()?;
                while actual != mib && std::time::Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(200));
                    actual = guest.actual_mib()?;
                }
                let ok = actual == mib;
                println!(
                    "actual {actual} MiB{}",
                    if ok { "" } else { " (target not reached)" }
                );
                if !ok {
                    return Err(Error::Invalid(format!(
                        "guest at {actual} MiB after {wait} s, target {mib} MiB"
                    )));
                }
            } else {
                println!("target {mib} MiB set");
            }
            Ok(())
        }
        Command::Simulate(a) => {
            if a.hosts > 1 {
                return simulate_cluster(a);
            }
            let SimulateArgs {
                vms,
                first_host_pct,
                chart,
                hours,
                overcommit,
                seed,
                consolidation_steps,
                json,
                ..
            } = a;
            if first_host_pct.is_some() || chart.is_some() {
                return Err(Error::Invalid(
                    "--first-host-pct and --chart need a cluster (--hosts 2 or more)".into(),
                ));
            }
            let cfg = simulate::SimConfig {
                vms: vms.unwrap_or(simulate::SimConfig::default().vms),
                hours,
                overcommit,
                seed,
                consolidation_steps,
                ..simulate::SimConfig::default()
            };
            let c = simulate::compare(&cfg)?;
            if json {
                print_json(&c)?;
            } else {
                print!("{}", sim_table::render_table(&c));
            }
            Ok(())
        }
        Command::Chart { timeline } => {
            let samples = crate::record::timeline::read(&timeline)?;
            let dir = timeline.parent().unwrap_or(Path::new("."));
            let (svg, png) = (dir.join("memory.svg"), dir.join("memory.png"));
            crate::render::chart::render(&samples, "balloon-host", &svg, &png)?;
            print!("{}", Summary::from_samples(&samples, &[], &[]).render());
            println!("wrote {} and {}", svg.display(), png.display());
            Ok(())
        }
        Command::Report {
            timelines,
            json,
            chart,
        } => {
            let all = timelines
                .iter()
                .map(|t| crate::record::timeline::read(t))
                .collect::<Result<Vec<_>>>()?;
            let r = crate::record::report::build(&all)?;
            if json {
                print_json(&r)?;
            } else {
                print!("{}", r.render());
            }
            if let Some(dir) = chart {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| Error::Host(format!("creating {}: {e}", dir.display())))?;
                let (svg, png) = (dir.join("report.svg"), dir.join("report.png"));
                crate::render::chart::render_report(&all, &r, &svg, &png)?;
                eprintln!("wrote {} and {}", svg.display(), png.display());
            }
            Ok(())
        }
        Command::Restore => {
            let j = Path::new(mechanisms::JOURNAL);
            if !j.exists() {
                println!("nothing to restore ({} does not exist)", j.display());
                return Ok(());
            }
            let n = mechanisms::HostSettings::restore_journal(j)?;
            println!("restored {n} host setting(s)");
            Ok(())
        }
    }
}

/// `simulate`'s options.
#[derive(clap::Args, Debug)]
pub struct SimulateArgs {
    /// VMs (default 500 on one host, 200 in a cluster).
    #[arg(long)]
    vms: Option<usize>,
    /// Hosts: more than 1 simulates a cluster, without and with
    /// live-migration balancing.
    #[arg(long, default_value_t = 1)]
    hosts: usize,
    /// Cluster: the first host's share of the configured memory, percent
    /// (default: every host an equal share).
    #[arg(long)]
    first_host_pct: Option<f64>,
    /// Cluster: write the balancing chart (cluster.svg and cluster.png)
    /// into this directory.
    #[arg(long)]
    chart: Option<PathBuf>,
    /// Simulated hours.
    #[arg(long, default_value_t = 24.0)]
    hours: f64,
    /// Configured VM memory over host capacity.
    #[arg(long, default_value_t = 1.5)]
    overcommit: f64,
    /// Seed of the workload traces.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Bisection steps of the consolidation search (0: skip it; each step
    /// is one more simulated day per policy or mode).
    #[arg(long, default_value_t = simulate::SimConfig::default().consolidation_steps)]
    consolidation_steps: u32,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
}

/// `simulate --hosts N` (N > 1).
fn simulate_cluster(a: SimulateArgs) -> Result<()> {
    use crate::sim::cluster;
    let base = cluster::ClusterConfig::default();
    let cfg = cluster::ClusterConfig {
        hosts: a.hosts,
        sim: simulate::SimConfig {
            vms: a.vms.unwrap_or(base.sim.vms),
            hours: a.hours,
            overcommit: a.overcommit,
            seed: a.seed,
            consolidation_steps: a.consolidation_steps,
            ..base.sim.clone()
        },
        placement: match a.first_host_pct {
            Some(first_host_pct) => cluster::Placement::Uneven { first_host_pct },
            None => cluster::Placement::FirstFitDecreasing,
        },
        ..base
    };
    eprintln!(
        "simulating {} VMs on {} hosts for {} h, without and with balancing ...",
        cfg.sim.vms, cfg.hosts, cfg.sim.hours
    );
    let c = cluster::compare_balancing(&cfg)?;
    if a.json {
        println!("{}", cluster_table::render_json(&c)?);
    } else {
        print!("{}", cluster_table::render_table(&c));
    }
    if let Some(dir) = a.chart {
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Host(format!("creating {}: {e}", dir.display())))?;
        let (svg, png) = (dir.join("cluster.svg"), dir.join("cluster.png"));
        cluster_chart::render_chart(&c, &svg, &png)?;
        eprintln!("wrote {} and {}", svg.display(), png.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers() {
        let t = parse_tiers("sharing,ballooning").unwrap();
        assert!(t.sharing && t.ballooning && !t.compression && !t.swapping);
        assert!(parse_tiers("sharing,magic").is_err());
    }

    #[test]
    fn cli_parses() {
        assert!(Cli::try_parse_from(["balloon-host", "run", "s.toml"]).is_ok());
        assert!(
            Cli::try_parse_from(["balloon-host", "attach", "--capacity", "1024", "a=/tmp/q"])
                .is_ok()
        );
        let c = Cli::try_parse_from([
            "balloon-host",
            "attach",
            "--capacity",
            "1.5G",
            "--min-free",
            "96M",
            "a=/tmp/q",
        ])
        .unwrap();
        assert!(
            matches!(
                c.command,
                Command::Attach {
                    capacity: Some(1536),
                    min_free: Some(96),
                    ..
                }
            ),
            "{c:?}"
        );
        let e = Cli::try_parse_from(["balloon-host", "attach", "--capacity", "1.3G", "a=/tmp/q"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("whole number of MiB"), "{e}");
        assert!(Cli::try_parse_from(["balloon-host", "attach", "a=/tmp/q"]).is_err());
        assert!(Cli::try_parse_from(["balloon-host", "frobnicate"]).is_err());
    }
}
