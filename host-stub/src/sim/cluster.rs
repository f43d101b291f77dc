//! Balancing across hosts: a cluster of simulated hosts, each the host of
//! [`crate::sim::simulate`] (same fleet, traces, host model and policy engine,
//! [`crate::engine::policy::decide`] every tick), with an initial placement and a
//! DRS-like balancer that live-migrates VMs away from hosts that stay under
//! pressure. [`compare_balancing`] runs the same cluster on the same traces
//! without and with balancing and compares time in the hard and low
//! states, migrations, guest pain and consolidation.
//!
//! All sizes are MiB unless a name says otherwise.
//!
//! # Cluster
//!
//! `hosts` hosts of equal capacity: the fleet's configured memory over the
//! overcommit, split evenly (`configured / overcommit / hosts`, rounded).
//! Every host runs the same policy (`sim.policy.kind`, balloon_rs's by
//! default) with its own minFree (from its capacity, as in `simulate`), its
//! own KSM (pages are shared only within a host) and its own state.
//!
//! # Placement
//!
//! First-fit-decreasing by configured size ([`Placement::FirstFitDecreasing`]):
//! VMs, largest first (fleet order among equals), go to the first host whose
//! share of the configured memory (`configured / hosts`) they still fit, or
//! if none, to the host with the most of its share left. Hosts end up with
//! (nearly) the same configured memory, but not the same demand: the large
//! VMs land together on the first hosts, the small ones on the last.
//! [`Placement::Uneven`] gives the first host a larger share, as after a
//! host came back from maintenance and the others took its VMs.
//!
//! # Balancing (DRS-like), after every tick
//!
//! 1. **Sustained pressure.** A host is a source when it has been in soft
//!    or worse for [`Balance::sustain_ticks`] ticks in a row.
//! 2. **Destination.** The host with the most free memory among those in
//!    high or clear that take part in no migration. A destination must keep,
//!    after the VM arrives, the free memory at which a host leaves soft
//!    (clear threshold plus the hysteresis margin) plus
//!    [`Balance::dest_margin_pct`] of its capacity: it never crosses into
//!    soft because of the move.
//! 3. **VM.** Among the source's VMs that fit the destination and are not
//!    in their cooldown: the one that copies the least while freeing enough
//!    to bring the source back out of soft; if none frees enough, the one
//!    that frees the most. A VM frees its resident memory minus its merged
//!    pages plus its zswap pool; it brings everything it has touched.
//! 4. **Limits.** At most [`Balance::max_concurrent`] migrations in flight
//!    in the cluster and one per host (as source or destination: each host
//!    has one migration link); hosts whose migration just ended wait a tick
//!    so that their memory is measured again; worst host (least free) first.
//!
//! # Migration cost
//!
//! A migration copies the VM's touched memory (resident, and what is in
//! zswap or the swap file, which the copy reads back) over a link of
//! [`Balance::link_mib_s`]; pages dirtied during the copy are not sent
//! again. It lasts `touched / link` seconds rounded up to whole ticks (at
//! least one): during that time the VM keeps running on the source, which
//! still holds its memory, and the destination reserves the copy (counted
//! in its consumed memory, so its policy sees it). The guest runs slower
//! while it is migrated; this is counted as VM-time under migration. On
//! arrival all of the VM's touched memory is resident on the destination,
//! unmerged (KSM there has to find it again), with no cgroup limit; its
//! balloon target and guest state move with it.
//!
//! # No ping-pong
//!
//! A VM that arrived on a host stays there at least
//! [`Balance::cooldown_ticks`] ticks, and destinations keep enough room not
//! to become sources because of the move.
//!
//! # Metrics
//!
//! Per mode ([`ClusterResult`]): time in each state as a percentage of
//! host-ticks (and the worst host's hard+low), migrations, MiB copied,
//! VM-time under migration, guest pain summed over the hosts as `simulate`
//! measures it (overflow: summed over hosts per tick), and consolidation:
//! the highest overcommit at which the cluster is in hard or low at most
//! [`CONSOLIDATION_MAX_HARD_LOW_PCT`] % of host-ticks, by the same bisection
//! as `simulate` over [`simulate::CONSOLIDATION_RANGE`] with the same placement.

use crate::engine::balance;
use crate::engine::policy::HostState;
use crate::sim::simulate::{
    self, round1, round2, Consolidation, MeanPeak, Pain, Sim, SimConfig, StateTimes,
    CONSOLIDATION_MAX_HARD_LOW_PCT, HOUR, ZSWAP_RATIO,
};
use crate::sim::vm::{TickPain, Vm};
use crate::sim::workload::{self, VmSpec};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Most hosts in one cluster.
pub const MAX_HOSTS: usize = 1024;
/// Most points kept per series (for charts); longer runs are averaged.
pub const SERIES_POINTS: u64 = 300;

/// How VMs are first placed on hosts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// First-fit-decreasing by configured size, every host taking an equal
    /// share of the configured memory.
    #[default]
    FirstFitDecreasing,
    /// First-fit-decreasing, the first host taking `first_host_pct` % of the
    /// configured memory and the others sharing the rest evenly.
    Uneven {
        /// The first host's share of the configured memory, percent
        /// (above 0, at most 100).
        first_host_pct: f64,
    },
}

impl Placement {
    /// Name as in reports.
    pub fn name(&self) -> String {
        match self {
            Placement::FirstFitDecreasing => "first-fit-decreasing".into(),
            Placement::Uneven { first_host_pct } => {
                format!("uneven (first host {first_host_pct} % of the configured memory)")
            }
        }
    }
}

/// The DRS-like balancer's tunables.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Balance {
    /// A host must have been in soft or worse this many ticks in a row
    /// before a VM moves away from it (1..=100000).
    pub sustain_ticks: u32,
    /// A VM stays at least this many ticks on the host it arrived on
    /// (0..=1000000): no ping-pong.
    pub cooldown_ticks: u32,
    /// Migration link per host, MiB/s: a VM's touched memory is copied at
    /// this rate (above 0, at most 1000000).
    pub link_mib_s: f64,
    /// Most migrations in flight in the cluster (1..=[`MAX_HOSTS`]).
    pub max_concurrent: usize,
    /// Free memory a destination keeps after the move beyond the level at
    /// which a host leaves soft, percent of its capacity (0..=50).
    pub dest_margin_pct: f64,
}

impl Default for Balance {
    fn default() -> Self {
        Self {
            sustain_ticks: 5,
            cooldown_ticks: 60,
            // About half a 10 GbE link, the rest left to the guests.
            link_mib_s: 500.0,
            max_concurrent: 2,
            dest_margin_pct: 5.0,
        }
    }
}

/// What to simulate: the cluster, its fleet and its balancer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Number of hosts (1..=[`MAX_HOSTS`]).
    pub hosts: usize,
    /// The fleet, time, ticks, seed, policy and tiers as in `simulate`;
    /// `overcommit` is the cluster's (configured memory over the capacity of
    /// all hosts), `policy.kind` is every host's policy and
    /// `consolidation_steps` the bisection steps of each mode (0: skip).
    pub sim: SimConfig,
    /// Initial placement.
    pub placement: Placement,
    /// The balancer (used by the balancing run).
    pub balance: Balance,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            hosts: 4,
            sim: SimConfig {
                vms: 200,
                hours: 24.0,
                tick_secs: 60.0,
                consolidation_steps: 4,
                ..SimConfig::default()
            },
            placement: Placement::default(),
            balance: Balance::default(),
        }
    }
}

impl ClusterConfig {
    /// Checks every field; the error names the field, its value and the
    /// accepted range.
    pub fn validate(&self) -> Result<()> {
        self.sim.validate()?;
        let bad = |msg: String| Err(Error::Invalid(format!("cluster: {msg}")));
        if !(1..=MAX_HOSTS).contains(&self.hosts) {
            return bad(format!(
                "hosts {}: must be between 1 and {MAX_HOSTS}",
                self.hosts
            ));
        }
        if let Placement::Uneven { first_host_pct: p } = self.placement {
            if !(p.is_finite() && p > 0.0 && p <= 100.0) {
                return bad(format!(
                    "placement first_host_pct {p}: must be above 0 and at most 100"
                ));
            }
        }
        let b = &self.balance;
        if !(1..=100_000).contains(&b.sustain_ticks) {
            return bad(format!(
                "balance.sustain_ticks {}: must be between 1 and 100000",
                b.sustain_ticks
            ));
        }
        if b.cooldown_ticks > 1_000_000 {
            return bad(format!(
                "balance.cooldown_ticks {}: at most 1000000",
                b.cooldown_ticks
            ));
        }
        if !(b.link_mib_s.is_finite() && b.link_mib_s > 0.0 && b.link_mib_s <= 1e6) {
            return bad(format!(
                "balance.link_mib_s {}: must be above 0 and at most 1000000",
                b.link_mib_s
            ));
        }
        if !(1..=MAX_HOSTS).contains(&b.max_concurrent) {
            return bad(format!(
                "balance.max_concurrent {}: must be between 1 and {MAX_HOSTS}",
                b.max_concurrent
            ));
        }
        if !(b.dest_margin_pct.is_finite() && (0.0..=50.0).contains(&b.dest_margin_pct)) {
            return bad(format!(
                "balance.dest_margin_pct {}: must be between 0 and 50",
                b.dest_margin_pct
            ));
        }
        Ok(())
    }
}

/// One live migration.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Migration {
    /// The VM (index in the fleet).
    pub vm: usize,
    /// Source host.
    pub from: usize,
    /// Destination host.
    pub to: usize,
    /// The tick after which it was decided; the copy runs during the
    /// following ticks.
    pub start_tick: u64,
    /// The tick at the end of which the VM landed: it runs on `to` from the
    /// next tick.
    pub end_tick: u64,
    /// MiB copied (the VM's touched memory at the start).
    pub mib: f64,
    /// Seconds the copy took (`mib / link_mib_s`).
    pub secs: f64,
}

/// One host's share of the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostSummary {
    /// VMs placed on it.
    pub vms_start: usize,
    /// Their configured memory, MiB.
    pub configured_start_mib: u64,
    /// VMs on it at the end.
    pub vms_end: usize,
    /// Their configured memory, MiB.
    pub configured_end_mib: u64,
    /// Time this host spent in hard or low, percent.
    pub hard_low_pct: f64,
    /// Time this host spent in soft, hard or low, percent.
    pub soft_plus_pct: f64,
}

/// Per-host series over time, averaged to at most [`SERIES_POINTS`] points.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterSeries {
    /// End of each point's ticks, hours.
    pub t_h: Vec<f64>,
    /// Per host, per point: free memory (capacity - consumed, with incoming
    /// migrations), mean over the point's ticks, MiB.
    pub free_mib: Vec<Vec<f64>>,
    /// Per host, per point: the worst state in the point's ticks.
    pub state: Vec<Vec<HostState>>,
}

/// One run of the cluster: with or without balancing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterResult {
    /// Whether the balancer ran.
    pub balancing: bool,
    /// Overcommit of the run (configured over the cluster's capacity).
    pub overcommit: f64,
    /// Capacity of each host, MiB.
    pub host_capacity_mib: u64,
    /// minFree of each host, MiB.
    pub min_free_mib: u64,
    /// Ticks simulated.
    pub ticks: u64,
    /// Time per state, percent of host-ticks.
    pub states: StateTimes,
    /// Time in hard or low, percent of host-ticks.
    pub hard_low_pct: f64,
    /// Time in soft, hard or low, percent of host-ticks.
    pub soft_plus_pct: f64,
    /// The largest time in hard or low of one host, percent.
    pub worst_host_hard_low_pct: f64,
    /// Migrations started.
    pub migrations: u64,
    /// MiB copied by them.
    pub migrated_mib: f64,
    /// Seconds VMs spent being migrated (guests slowed), summed over VMs.
    pub migrating_vm_s: f64,
    /// Guest pain, summed over hosts.
    pub pain: Pain,
    /// Per host.
    pub hosts: Vec<HostSummary>,
    /// Consolidation search (None when `consolidation_steps` is 0).
    pub consolidation: Option<Consolidation>,
    /// Every migration, in start order.
    pub log: Vec<Migration>,
    /// Free memory and state per host over time.
    pub series: ClusterSeries,
}

/// The cluster without and with balancing, on the same fleet, placement and
/// traces.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterComparison {
    /// The configuration.
    pub config: ClusterConfig,
    /// Sum of the VMs' configured memory, MiB.
    pub configured_mib: u64,
    /// Capacity of each host at the configured overcommit, MiB.
    pub host_capacity_mib: u64,
    /// Without balancing.
    pub unbalanced: ClusterResult,
    /// With the DRS-like balancer.
    pub balanced: ClusterResult,
}

/// The host of each VM (fleet order) under `placement`: first-fit-
/// decreasing by configured size into per-host shares of the configured
/// memory.
fn place(fleet: &[VmSpec], hosts: usize, placement: Placement) -> Vec<usize> {
    let total = fleet.iter().map(|v| v.configured).sum::<u64>() as f64;
    let shares: Vec<f64> = match placement {
        Placement::Uneven { first_host_pct } if hosts > 1 => {
            let first = total * first_host_pct / 100.0;
            let rest = (total - first) / (hosts - 1) as f64;
            std::iter::once(first)
                .chain(std::iter::repeat_n(rest, hosts - 1))
                .collect()
        }
        _ => vec![total / hosts as f64; hosts],
    };
    let mut order: Vec<usize> = (0..fleet.len()).collect();
    order.sort_by(|&a, &b| {
        fleet[b]
            .configured
            .cmp(&fleet[a].configured)
            .then(a.cmp(&b))
    });
    let mut load = vec![0.0f64; hosts];
    let mut host_of = vec![0; fleet.len()];
    for i in order {
        let size = fleet[i].configured as f64;
        let fits = (0..hosts).find(|&h| load[h] + size <= shares[h] + 1e-6);
        let h = fits.unwrap_or_else(|| {
            // Most of its share left; the lowest index among equals.
            (0..hosts)
                .max_by(|&a, &b| {
                    (shares[a] - load[a])
                        .total_cmp(&(shares[b] - load[b]))
                        .then(b.cmp(&a))
                })
                .unwrap_or(0)
        });
        load[h] += size;
        host_of[i] = h;
    }
    host_of
}

/// Capacity of each host for `fleet` at the cluster's `overcommit`.
fn host_capacity(fleet: &[VmSpec], hosts: usize, overcommit: f64) -> u64 {
    let configured = fleet.iter().map(|v| v.configured).sum::<u64>() as f64;
    ((configured / overcommit / hosts as f64).round() as u64).max(1)
}

/// A migration in flight.
#[derive(Clone, Copy, Debug)]
struct Flight {
    vm: usize,
    from: usize,
    to: usize,
    /// MiB the destination reserves.
    mib: f64,
    ticks_left: u64,
    /// Its entry in the log.
    log: usize,
}

/// Builds [`ClusterSeries`]: means of free memory and worst states over
/// buckets of ticks.
struct SeriesBuilder {
    every: u64,
    tick_h: f64,
    n: u64,
    sum: Vec<f64>,
    worst: Vec<HostState>,
    out: ClusterSeries,
}

impl SeriesBuilder {
    fn new(hosts: usize, ticks: u64, tick_secs: f64) -> Self {
        Self {
            every: ticks.div_ceil(SERIES_POINTS).max(1),
            tick_h: tick_secs / HOUR,
            n: 0,
            sum: vec![0.0; hosts],
            worst: vec![HostState::High; hosts],
            out: ClusterSeries {
                t_h: Vec::new(),
                free_mib: vec![Vec::new(); hosts],
                state: vec![Vec::new(); hosts],
            },
        }
    }

    fn add(&mut self, tick: u64, hosts: &[Sim]) {
        for (h, sim) in hosts.iter().enumerate() {
            self.sum[h] += sim.capacity as f64 - sim.consumed_now;
            self.worst[h] = self.worst[h].max(sim.state.host_state);
        }
        self.n += 1;
        if self.n == self.every {
            self.flush(tick);
        }
    }

    fn flush(&mut self, tick: u64) {
        if self.n == 0 {
            return;
        }
        self.out
            .t_h
            .push((tick as f64 * self.tick_h * 1e4).round() / 1e4);
        for h in 0..self.sum.len() {
            self.out.free_mib[h].push(round1(self.sum[h] / self.n as f64));
            self.out.state[h].push(self.worst[h]);
            self.sum[h] = 0.0;
            self.worst[h] = HostState::High;
        }
        self.n = 0;
    }
}

/// The cluster during one run.
struct Cluster<'a> {
    cfg: &'a ClusterConfig,
    fleet: &'a [VmSpec],
    balancing: bool,
    hosts: Vec<Sim<'a>>,
    /// Fleet index of each VM, parallel to each host's `vms`.
    ids: Vec<Vec<usize>>,
    /// The tick each VM last landed on a host, if it ever moved.
    landed: Vec<Option<u64>>,
    flights: Vec<Flight>,
    /// Ticks in a row each host has been in soft or worse.
    sustain: Vec<u32>,
    tick: u64,
    /// Free memory at which a host leaves soft: clear plus hysteresis.
    leave_soft_mib: f64,
    /// Free memory a destination keeps after a move.
    dest_keep_mib: f64,
    // Metrics.
    start: Vec<(usize, u64)>,
    host_states: Vec<[u64; 5]>,
    overflow_sum: f64,
    overflow_peak: f64,
    log: Vec<Migration>,
    series: SeriesBuilder,
}

impl<'a> Cluster<'a> {
    fn new(
        cfg: &'a ClusterConfig,
        fleet: &'a [VmSpec],
        host_of: &[usize],
        capacity: u64,
        balancing: bool,
    ) -> Self {
        let ids: Vec<Vec<usize>> = (0..cfg.hosts)
            .map(|h| (0..fleet.len()).filter(|&i| host_of[i] == h).collect())
            .collect();
        let hosts: Vec<Sim<'a>> = ids
            .iter()
            .map(|ids| {
                let vms: Vec<Vm> = ids.iter().map(|&i| Vm::new(&fleet[i])).collect();
                Sim::on_host(&cfg.sim, vms, cfg.sim.policy.kind, capacity)
            })
            .collect();
        let min_free = hosts.first().map_or(0, |h| h.policy.min_free_mib) as f64;
        let th = &cfg.sim.policy.thresholds;
        let leave_soft_mib = balance::leave_soft_mib(th, min_free);
        let start = ids
            .iter()
            .map(|ids| (ids.len(), ids.iter().map(|&i| fleet[i].configured).sum()))
            .collect();
        Self {
            cfg,
            fleet,
            balancing,
            landed: vec![None; fleet.len()],
            flights: Vec::new(),
            sustain: vec![0; cfg.hosts],
            tick: 0,
            leave_soft_mib,
            dest_keep_mib: leave_soft_mib + cfg.balance.dest_margin_pct / 100.0 * capacity as f64,
            start,
            host_states: vec![[0; 5]; cfg.hosts],
            overflow_sum: 0.0,
            overflow_peak: 0.0,
            log: Vec::new(),
            series: SeriesBuilder::new(cfg.hosts, cfg.sim.ticks(), cfg.sim.tick_secs),
            hosts,
            ids,
        }
    }

    /// One tick: every host steps (incoming migrations reserved), then
    /// migrations advance and land, then the balancer decides.
    fn step(&mut self) {
        self.tick += 1;
        for sim in &mut self.hosts {
            sim.reserved = 0.0;
        }
        for f in &self.flights {
            self.hosts[f.to].reserved += f.mib;
        }
        let mut overflow = 0.0;
        for (h, sim) in self.hosts.iter_mut().enumerate() {
            sim.step();
            let state = sim.state.host_state;
            self.host_states[h][state as usize] += 1;
            overflow += (sim.consumed_now - sim.capacity as f64).max(0.0);
            self.sustain[h] = if state >= HostState::Soft {
                self.sustain[h].saturating_add(1)
            } else {
                0
            };
        }
        self.overflow_sum += overflow;
        self.overflow_peak = self.overflow_peak.max(overflow);
        self.series.add(self.tick, &self.hosts);
        let settled = self.land();
        if self.balancing {
            self.balance(&settled);
        }
    }

    /// Advances the migrations in flight; those done move their VM. Returns
    /// the hosts a landing involved.
    fn land(&mut self) -> Vec<bool> {
        let mut involved = vec![false; self.hosts.len()];
        let mut i = 0;
        while i < self.flights.len() {
            let f = &mut self.flights[i];
            f.ticks_left = f.ticks_left.saturating_sub(1);
            if f.ticks_left > 0 {
                i += 1;
                continue;
            }
            let f = self.flights.remove(i);
            involved[f.from] = true;
            involved[f.to] = true;
            if let Some(pos) = self.ids[f.from].iter().position(|&id| id == f.vm) {
                self.ids[f.from].remove(pos);
                let mut vm = self.hosts[f.from].vms.remove(pos);
                // Everything the copy read is resident on the destination,
                // unmerged and in a fresh cgroup.
                vm.ram = vm.touched();
                vm.zswap = 0.0;
                vm.swap = 0.0;
                vm.merged = 0.0;
                vm.limit = None;
                self.hosts[f.to].vms.push(vm);
                self.ids[f.to].push(f.vm);
                self.landed[f.vm] = Some(self.tick);
            }
            if let Some(m) = self.log.get_mut(f.log) {
                m.end_tick = self.tick;
            }
        }
        involved
    }

    /// The DRS-like pass ([`balance::plan`], the real loop's balancer):
    /// starts migrations away from hosts under sustained pressure.
    /// `settled` hosts (a migration just landed) wait a tick.
    fn balance(&mut self, settled: &[bool]) {
        let b = &self.cfg.balance;
        let mut busy = settled.to_vec();
        for f in &self.flights {
            busy[f.from] = true;
            busy[f.to] = true;
        }
        let hosts: Vec<balance::Host> = self
            .hosts
            .iter()
            .enumerate()
            .map(|(h, s)| balance::Host {
                state: s.state.host_state,
                pressured: self.sustain[h],
                free: s.capacity as f64 - s.consumed_now,
                leave_soft: self.leave_soft_mib,
                keep: self.dest_keep_mib,
                busy: busy[h],
            })
            .collect();
        // Every VM, with where it is: (host, position on it).
        let cooldown = u64::from(b.cooldown_ticks);
        let mut at = Vec::new();
        let mut vms = Vec::new();
        for (h, sim) in self.hosts.iter().enumerate() {
            for (pos, (vm, &id)) in sim.vms.iter().zip(&self.ids[h]).enumerate() {
                at.push((h, pos));
                vms.push(balance::Vm {
                    host: h,
                    copy: vm.touched(),
                    frees: vm.ram - vm.merged + vm.zswap / ZSWAP_RATIO,
                    may_move: self.landed[id].is_none_or(|t| self.tick - t >= cooldown),
                });
            }
        }
        let rules = balance::Rules {
            sustain_ticks: b.sustain_ticks,
            max_in_flight: b.max_concurrent,
        };
        for m in balance::plan(&rules, &hosts, &vms, self.flights.len()) {
            let (src, pos) = at[m.vm];
            let vm = self.ids[src][pos];
            let mib = vms[m.vm].copy;
            let secs = mib / b.link_mib_s;
            let ticks = ((secs / self.cfg.sim.tick_secs).ceil() as u64).max(1);
            self.flights.push(Flight {
                vm,
                from: src,
                to: m.to,
                mib,
                ticks_left: ticks,
                log: self.log.len(),
            });
            self.log.push(Migration {
                vm,
                from: src,
                to: m.to,
                start_tick: self.tick,
                end_tick: self.tick + ticks,
                mib,
                secs,
            });
        }
    }

    fn result(mut self, overcommit: f64) -> ClusterResult {
        self.series.flush(self.tick);
        let ticks = self.tick;
        let host_ticks = ticks * self.hosts.len() as u64;
        let pct = |c: u64, of: u64| round2(100.0 * c as f64 / of.max(1) as f64);
        let mut counts = [0u64; 5];
        for c in &self.host_states {
            for (sum, v) in counts.iter_mut().zip(c) {
                *sum += v;
            }
        }
        let times = |c: &[u64; 5], of: u64| StateTimes {
            high: pct(c[HostState::High as usize], of),
            clear: pct(c[HostState::Clear as usize], of),
            soft: pct(c[HostState::Soft as usize], of),
            hard: pct(c[HostState::Hard as usize], of),
            low: pct(c[HostState::Low as usize], of),
        };
        // As `simulate`: sums of the rounded percentages.
        let hard_low = |t: &StateTimes| t.hard_low();
        let soft_plus = |t: &StateTimes| round2(t.soft + t.hard + t.low);
        let states = times(&counts, host_ticks);
        let hosts: Vec<HostSummary> = self
            .host_states
            .iter()
            .zip(&self.ids)
            .zip(&self.start)
            .map(|((c, ids), &(vms_start, configured_start_mib))| {
                let t = times(c, ticks);
                HostSummary {
                    vms_start,
                    configured_start_mib,
                    vms_end: ids.len(),
                    configured_end_mib: ids.iter().map(|&i| self.fleet[i].configured).sum(),
                    hard_low_pct: hard_low(&t),
                    soft_plus_pct: soft_plus(&t),
                }
            })
            .collect();
        let mut pain = TickPain::default();
        for sim in &self.hosts {
            pain.squeeze += sim.pain.squeeze;
            pain.cache_short += sim.pain.cache_short;
            pain.refault_zswap += sim.pain.refault_zswap;
            pain.refault_swap += sim.pain.refault_swap;
            pain.oom += sim.pain.oom;
        }
        ClusterResult {
            balancing: self.balancing,
            overcommit,
            host_capacity_mib: self.hosts.first().map_or(0, |s| s.capacity),
            min_free_mib: self.hosts.first().map_or(0, |s| s.policy.min_free_mib),
            ticks,
            hard_low_pct: hard_low(&states),
            soft_plus_pct: soft_plus(&states),
            worst_host_hard_low_pct: hosts.iter().map(|h| h.hard_low_pct).fold(0.0, f64::max),
            states,
            migrations: self.log.len() as u64,
            migrated_mib: round1(self.log.iter().fold(0.0, |sum, m| sum + m.mib)),
            migrating_vm_s: round1(self.log.iter().fold(0.0, |sum, m| sum + m.secs)),
            pain: Pain {
                squeeze_mib_h: round1(pain.squeeze / HOUR),
                cache_short_mib_h: round1(pain.cache_short / HOUR),
                refault_zswap_mib: round1(pain.refault_zswap),
                refault_swap_mib: round1(pain.refault_swap),
                oom_deflates: pain.oom,
                overflow: MeanPeak {
                    mean_mib: round1(self.overflow_sum / ticks.max(1) as f64),
                    peak_mib: round1(self.overflow_peak),
                },
            },
            hosts,
            consolidation: None,
            log: self
                .log
                .iter()
                .map(|m| Migration {
                    mib: round1(m.mib),
                    secs: round1(m.secs),
                    ..*m
                })
                .collect(),
            series: self.series.out,
        }
    }
}

/// One run of the cluster at `overcommit`.
fn run_once(
    cfg: &ClusterConfig,
    fleet: &[VmSpec],
    host_of: &[usize],
    balancing: bool,
    overcommit: f64,
) -> ClusterResult {
    let capacity = host_capacity(fleet, cfg.hosts, overcommit);
    let mut c = Cluster::new(cfg, fleet, host_of, capacity, balancing);
    for _ in 0..cfg.sim.ticks() {
        c.step();
    }
    c.result(overcommit)
}

/// Whether a run keeps the cluster out of hard and low long enough.
fn passes(r: &ClusterResult) -> bool {
    r.hard_low_pct <= CONSOLIDATION_MAX_HARD_LOW_PCT
}

/// Bisection for the highest passing overcommit in [`CONSOLIDATION_RANGE`],
/// starting from the main run, as `simulate` searches a single host.
fn consolidation(
    cfg: &ClusterConfig,
    fleet: &[VmSpec],
    host_of: &[usize],
    main: &ClusterResult,
) -> Consolidation {
    simulate::bisect_consolidation(
        cfg.sim.consolidation_steps,
        (main.overcommit, passes(main).then_some(main.pain)),
        |oc| {
            let r = run_once(cfg, fleet, host_of, main.balancing, oc);
            passes(&r).then_some(r.pain)
        },
    )
}

/// One mode: the main run and, if configured, the consolidation search.
fn run_mode(
    cfg: &ClusterConfig,
    fleet: &[VmSpec],
    host_of: &[usize],
    balancing: bool,
) -> ClusterResult {
    let mut r = run_once(cfg, fleet, host_of, balancing, cfg.sim.overcommit);
    if cfg.sim.consolidation_steps > 0 {
        r.consolidation = Some(consolidation(cfg, fleet, host_of, &r));
    }
    r
}

/// Runs the cluster of `cfg` without and with balancing on the same fleet,
/// placement and traces (one thread per mode), with the consolidation
/// search of each if `cfg.sim.consolidation_steps` > 0.
///
/// An invalid configuration is [`Error::Invalid`].
pub fn compare_balancing(cfg: &ClusterConfig) -> Result<ClusterComparison> {
    cfg.validate()?;
    let fleet = workload::fleet(&cfg.sim);
    let host_of = place(&fleet, cfg.hosts, cfg.placement);
    let (unbalanced, balanced) = std::thread::scope(|s| {
        let (fleet, host_of) = (&fleet, &host_of);
        let with = s.spawn(move || run_mode(cfg, fleet, host_of, true));
        let without = run_mode(cfg, fleet, host_of, false);
        let with = with
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (without, with)
    });
    Ok(ClusterComparison {
        config: cfg.clone(),
        configured_mib: fleet.iter().map(|v| v.configured).sum(),
        host_capacity_mib: host_capacity(&fleet, cfg.hosts, cfg.sim.overcommit),
        unbalanced,
        balanced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::policy::PolicyKind;
    use crate::render::cluster_chart::render_chart;
    use crate::render::cluster_table::{render_json, render_table};
    use std::collections::BTreeMap;

    /// 40 VMs on 4 hosts for `hours`, 60 s ticks, no consolidation search.
    fn small(hours: f64) -> ClusterConfig {
        ClusterConfig {
            hosts: 4,
            sim: SimConfig {
                vms: 40,
                hours,
                tick_secs: 60.0,
                consolidation_steps: 0,
                ..SimConfig::default()
            },
            ..ClusterConfig::default()
        }
    }

    /// The first host takes `pct` % of the configured memory (at 40 %,
    /// 2.4x at a cluster overcommit of 1.5), the others share the rest.
    fn uneven(pct: f64, hours: f64) -> ClusterConfig {
        ClusterConfig {
            placement: Placement::Uneven {
                first_host_pct: pct,
            },
            ..small(hours)
        }
    }

    /// Per VM that moved more than once: ticks from landing to the next
    /// start, and whether it went back to the host it came from.
    fn regaps(log: &[Migration]) -> Vec<(usize, u64, bool)> {
        let mut last: BTreeMap<usize, &Migration> = BTreeMap::new();
        let mut gaps = Vec::new();
        for m in log {
            if let Some(prev) = last.get(&m.vm) {
                assert!(m.start_tick >= prev.end_tick, "{prev:?} then {m:?}");
                assert_eq!(m.from, prev.to, "{prev:?} then {m:?}");
                gaps.push((m.vm, m.start_tick - prev.end_tick, m.to == prev.from));
            }
            last.insert(m.vm, m);
        }
        gaps
    }

    /// Sanity of one result: states sum to 100, the log and the counters
    /// agree, VMs are conserved, and the concurrency limits hold.
    fn check(cfg: &ClusterConfig, r: &ClusterResult) {
        let s = &r.states;
        let sum = s.high + s.clear + s.soft + s.hard + s.low;
        assert!((sum - 100.0).abs() < 0.05, "states sum to {sum}");
        assert_eq!(r.ticks, cfg.sim.ticks());
        assert_eq!(r.migrations, r.log.len() as u64);
        let mib: f64 = r.log.iter().map(|m| m.mib).sum();
        assert!((r.migrated_mib - mib).abs() < 0.1 * r.log.len() as f64 + 0.1);
        assert_eq!(r.hosts.len(), cfg.hosts);
        let vms_start: usize = r.hosts.iter().map(|h| h.vms_start).sum();
        let vms_end: usize = r.hosts.iter().map(|h| h.vms_end).sum();
        assert_eq!((vms_start, vms_end), (cfg.sim.vms, cfg.sim.vms));
        let conf_start: u64 = r.hosts.iter().map(|h| h.configured_start_mib).sum();
        let conf_end: u64 = r.hosts.iter().map(|h| h.configured_end_mib).sum();
        assert_eq!(conf_start, conf_end);
        let worst = r.hosts.iter().map(|h| h.hard_low_pct).fold(0.0, f64::max);
        assert_eq!(r.worst_host_hard_low_pct, worst);
        assert!(r.hard_low_pct <= worst + 0.01 && r.hard_low_pct <= r.soft_plus_pct);
        // Migrations in flight during each tick: at most max_concurrent, at
        // most one per host.
        for t in 1..=r.ticks {
            let flying: Vec<&Migration> = r
                .log
                .iter()
                .filter(|m| m.start_tick < t && t <= m.end_tick)
                .collect();
            assert!(flying.len() <= cfg.balance.max_concurrent, "tick {t}");
            let mut hosts: Vec<usize> = flying.iter().flat_map(|m| [m.from, m.to]).collect();
            hosts.sort_unstable();
            let n = hosts.len();
            hosts.dedup();
            assert_eq!(hosts.len(), n, "tick {t}: a host in two migrations");
        }
        for m in &r.log {
            assert_ne!(m.from, m.to);
            assert!(m.mib > 0.0 && m.end_tick > m.start_tick, "{m:?}");
            // The copy lasts its seconds in whole ticks (at least one); the
            // log's seconds are rounded to 0.1 s, which can move them across
            // a tick boundary: one tick either way.
            let ticks = (m.secs / cfg.sim.tick_secs).ceil().max(1.0) as u64;
            assert!((m.end_tick - m.start_tick).abs_diff(ticks) <= 1, "{m:?}");
        }
        let points = r.series.t_h.len();
        assert!(points > 0 && points as u64 <= SERIES_POINTS);
        assert!(r.series.free_mib.iter().all(|f| f.len() == points));
        assert!(r.series.state.iter().all(|s| s.len() == points));
    }

    #[test]
    fn same_config_same_result_other_seed_differs() {
        let cfg = uneven(40.0, 4.0);
        let a = compare_balancing(&cfg).unwrap();
        let b = compare_balancing(&cfg).unwrap();
        assert_eq!(a, b);
        let mut other = cfg.clone();
        other.sim.seed = 2;
        let c = compare_balancing(&other).unwrap();
        assert_ne!(a.unbalanced.series, c.unbalanced.series);
        assert_ne!(a.configured_mib, 0);
    }

    /// One host without balancing is exactly `simulate`'s host.
    #[test]
    fn one_host_is_the_simulated_host() {
        let cfg = ClusterConfig {
            hosts: 1,
            sim: SimConfig {
                vms: 30,
                hours: 24.0,
                tick_secs: 120.0,
                overcommit: 2.2,
                consolidation_steps: 0,
                ..SimConfig::default()
            },
            ..ClusterConfig::default()
        };
        let c = compare_balancing(&cfg).unwrap();
        let single = simulate::run_policy(&cfg.sim, PolicyKind::BalloonRs).unwrap();
        for r in [&c.unbalanced, &c.balanced] {
            check(&cfg, r);
            assert_eq!(r.host_capacity_mib, single.capacity_mib);
            assert_eq!(r.min_free_mib, single.min_free_mib);
            assert_eq!(r.states, single.states);
            assert_eq!(r.hard_low_pct, single.hard_low_pct);
            assert_eq!(r.pain, single.pain);
            assert_eq!(r.migrations, 0, "nowhere to go");
        }
        assert!(single.hard_low_pct > 0.0, "the premise: pressure");
    }

    #[test]
    fn placement_is_first_fit_decreasing() {
        let cfg = small(1.0);
        let fleet = workload::fleet(&cfg.sim);
        let total: u64 = fleet.iter().map(|v| v.configured).sum();
        let largest = fleet.iter().map(|v| v.configured).max().unwrap();
        let host_of = place(&fleet, 4, Placement::FirstFitDecreasing);
        let load = |h: usize| -> u64 {
            (0..fleet.len())
                .filter(|&i| host_of[i] == h)
                .map(|i| fleet[i].configured)
                .sum()
        };
        // Within one VM of its share: a host takes VMs while they fit its
        // share, so it misses it by less than the VM that did not fit, and
        // goes over only by the one VM that fitted nowhere.
        for h in 0..4 {
            let share = total as f64 / 4.0;
            assert!(
                (load(h) as f64 - share).abs() <= largest as f64,
                "host {h}: {} of {share}",
                load(h)
            );
        }
        // Largest first: the large VMs fill the first host, the small ones
        // the last.
        let vms = |h: usize| host_of.iter().filter(|&&x| x == h).count() as u64;
        assert!(
            load(0) / vms(0) > 2 * load(3) / vms(3),
            "{} {}",
            vms(0),
            vms(3)
        );
        assert!((0..fleet.len()).all(|i| fleet[i].configured < largest || host_of[i] < 2));
        // Uneven: the first host takes about its share.
        let host_of = place(
            &fleet,
            4,
            Placement::Uneven {
                first_host_pct: 40.0,
            },
        );
        let first: u64 = (0..fleet.len())
            .filter(|&i| host_of[i] == 0)
            .map(|i| fleet[i].configured)
            .sum();
        assert!(
            (first as f64 - 0.4 * total as f64).abs() <= largest as f64,
            "{first}"
        );
        // One host takes everything.
        assert!(place(
            &fleet,
            1,
            Placement::Uneven {
                first_host_pct: 10.0
            }
        )
        .iter()
        .all(|&h| h == 0));
    }

    /// On an uneven placement balancing clearly helps: less time in hard
    /// and low (in the cluster and on the worst host), less swapping.
    #[test]
    fn balancing_relieves_an_overloaded_host() {
        let cfg = uneven(40.0, 6.0);
        let c = compare_balancing(&cfg).unwrap();
        let (none, drs) = (&c.unbalanced, &c.balanced);
        check(&cfg, none);
        check(&cfg, drs);
        assert!(
            none.hard_low_pct >= 2.0,
            "premise: host 0 under pressure, {}",
            none.hard_low_pct
        );
        assert!(
            drs.hard_low_pct <= none.hard_low_pct - 1.5,
            "{} vs {}",
            drs.hard_low_pct,
            none.hard_low_pct
        );
        assert!(drs.worst_host_hard_low_pct <= none.worst_host_hard_low_pct / 2.0);
        assert!(drs.soft_plus_pct < none.soft_plus_pct);
        assert_eq!(none.migrations, 0);
        assert!(none.log.is_empty() && none.migrated_mib == 0.0);
        assert!(drs.migrations > 0 && drs.migrated_mib > 0.0 && drs.migrating_vm_s > 0.0);
        // VMs left the overloaded host, none went to it.
        assert!(drs.log.iter().any(|m| m.from == 0));
        assert!(drs.log.iter().all(|m| m.to != 0));
        assert!(drs.hosts[0].configured_end_mib < drs.hosts[0].configured_start_mib);
        // Over a day, balancing also ends the overloaded host's swapping.
        let day = compare_balancing(&uneven(40.0, 24.0)).unwrap();
        let refaults = |r: &ClusterResult| r.pain.refault_zswap_mib + r.pain.refault_swap_mib;
        assert!(refaults(&day.unbalanced) > 10_000.0);
        assert!(refaults(&day.balanced) < refaults(&day.unbalanced) / 10.0);
        assert!(day.balanced.hard_low_pct < day.unbalanced.hard_low_pct);
    }

    /// Balancing lets the uneven cluster run at a higher overcommit.
    #[test]
    fn balancing_consolidates_more() {
        let mut cfg = uneven(40.0, 6.0);
        cfg.sim.consolidation_steps = 2;
        let c = compare_balancing(&cfg).unwrap();
        let none = c.unbalanced.consolidation.unwrap();
        let drs = c.balanced.consolidation.unwrap();
        let (n, d) = (none.max_overcommit.unwrap(), drs.max_overcommit.unwrap());
        assert!(d > n, "{drs:?} vs {none:?}");
        // Both searches bracket the threshold: one run for the other end of
        // the range, then one per step.
        let runs = cfg.sim.consolidation_steps + 1;
        assert!(none.runs == runs && drs.runs == runs, "{drs:?} vs {none:?}");
        assert!(drs.pain_at_max.is_some());
        // Bracketed: the first failing overcommit is above the passing one.
        assert!(drs.first_failing.unwrap() > d && none.first_failing.unwrap() > n);
    }

    /// No VM moves again within its cooldown; without one the same cluster
    /// moves a VM straight back.
    #[test]
    fn cooldown_stops_ping_pong() {
        let mut cfg = uneven(50.0, 24.0);
        cfg.sim.overcommit = 1.8;
        cfg.balance.cooldown_ticks = 0;
        let free = compare_balancing(&cfg).unwrap().balanced;
        check(&cfg, &free);
        // Cooldowns longer than the quickest move back without one, so each
        // of them has something to hold back; the last one outlasts the run.
        let (binding, forever) = ([80u32, 100], 1_000_000u32);
        let gaps = regaps(&free.log);
        assert!(
            gaps.iter()
                .any(|&(_, gap, back)| gap < u64::from(binding[0]) && back),
            "premise: a move back within {} ticks without a cooldown, {gaps:?}",
            binding[0]
        );
        for cooldown in binding.into_iter().chain([forever]) {
            cfg.balance.cooldown_ticks = cooldown;
            let r = compare_balancing(&cfg).unwrap().balanced;
            check(&cfg, &r);
            assert!(r.migrations > 0);
            let gaps = regaps(&r.log);
            for &(vm, gap, _) in &gaps {
                assert!(
                    gap >= u64::from(cooldown),
                    "vm {vm} moved after {gap} ticks"
                );
            }
            if cooldown == forever {
                assert!(gaps.is_empty(), "{gaps:?}");
            } else {
                // The pressure outlasts the cooldown: the VM does move again,
                // after it, so the check above is not vacuous.
                assert!(!gaps.is_empty(), "cooldown {cooldown}: no VM moved twice");
            }
        }
    }

    #[test]
    fn at_most_max_concurrent_and_a_slow_link_holds_memory_longer() {
        // Six hosts, first-fit-decreasing at 1.8: several hosts come under
        // pressure together (with one host per migration, four hosts are
        // too few for two migrations at once).
        let mut cfg = small(6.0);
        cfg.hosts = 6;
        cfg.sim.vms = 60;
        cfg.sim.overcommit = 1.8;
        cfg.balance.link_mib_s = 5.0;
        let in_flight = |r: &ClusterResult| {
            (1..=r.ticks)
                .map(|t| {
                    r.log
                        .iter()
                        .filter(|m| m.start_tick < t && t <= m.end_tick)
                        .count()
                })
                .max()
                .unwrap_or(0)
        };
        // The control: allowed two, the balancer does run two at once.
        cfg.balance.max_concurrent = 2;
        let two = compare_balancing(&cfg).unwrap().balanced;
        check(&cfg, &two);
        assert_eq!(in_flight(&two), 2, "premise: {:?}", two.log);
        cfg.balance.max_concurrent = 1;
        let r = compare_balancing(&cfg).unwrap().balanced;
        check(&cfg, &r);
        assert_eq!(in_flight(&r), 1, "{:?}", r.log);
        assert!(r.migrations >= 2, "one at a time needs two: {:?}", r.log);
        for w in r.log.windows(2) {
            assert!(w[1].start_tick >= w[0].end_tick, "one at a time: {w:?}");
        }
        // At 5 MiB/s a GiB takes over 3 minutes: several ticks; at the
        // default link (8 GiB, the largest VM, in 16 s) every copy fits in
        // one tick.
        assert!(
            r.log.iter().any(|m| m.end_tick - m.start_tick >= 3),
            "{:?}",
            r.log
        );
        for m in &r.log {
            // mib and secs are each rounded to 0.1: 0.1 covers both.
            assert!((m.secs - m.mib / 5.0).abs() < 0.1, "{m:?}");
        }
        cfg.balance.link_mib_s = Balance::default().link_mib_s;
        let fast = compare_balancing(&cfg).unwrap().balanced;
        check(&cfg, &fast);
        assert!(fast.migrations > 0);
        assert!(
            fast.log.iter().all(|m| m.end_tick - m.start_tick == 1),
            "{:?}",
            fast.log
        );
    }

    #[test]
    fn invalid_configs_are_errors() {
        let ok = small(1.0);
        let with = |f: &dyn Fn(&mut ClusterConfig)| {
            let mut c = ok.clone();
            f(&mut c);
            c
        };
        let cases: Vec<(ClusterConfig, &str)> = vec![
            (with(&|c| c.hosts = 0), "hosts 0"),
            (with(&|c| c.hosts = MAX_HOSTS + 1), "hosts 1025"),
            (with(&|c| c.sim.vms = 0), "vms 0"),
            (with(&|c| c.sim.overcommit = f64::NAN), "overcommit NaN"),
            (with(&|c| c.balance.sustain_ticks = 0), "sustain_ticks 0"),
            (
                with(&|c| c.balance.cooldown_ticks = 1_000_001),
                "cooldown_ticks 1000001",
            ),
            (with(&|c| c.balance.link_mib_s = 0.0), "link_mib_s 0"),
            (with(&|c| c.balance.link_mib_s = f64::NAN), "link_mib_s NaN"),
            (
                with(&|c| c.balance.link_mib_s = f64::INFINITY),
                "link_mib_s inf",
            ),
            (with(&|c| c.balance.max_concurrent = 0), "max_concurrent 0"),
            (
                with(&|c| c.balance.dest_margin_pct = -1.0),
                "dest_margin_pct -1",
            ),
            (
                with(&|c| c.balance.dest_margin_pct = f64::NAN),
                "dest_margin_pct NaN",
            ),
            (
                with(&|c| {
                    c.placement = Placement::Uneven {
                        first_host_pct: 0.0,
                    }
                }),
                "first_host_pct 0",
            ),
            (
                with(&|c| {
                    c.placement = Placement::Uneven {
                        first_host_pct: 100.5,
                    }
                }),
                "first_host_pct 100.5",
            ),
            (
                with(&|c| {
                    c.placement = Placement::Uneven {
                        first_host_pct: f64::NAN,
                    }
                }),
                "first_host_pct NaN",
            ),
        ];
        for (cfg, needle) in cases {
            match compare_balancing(&cfg) {
                Err(Error::Invalid(m)) => assert!(m.contains(needle), "{m:?} lacks {needle:?}"),
                other => panic!("{needle}: {other:?}"),
            }
        }
        assert!(ok.validate().is_ok());
        assert!(ClusterConfig::default().validate().is_ok());
        let d = ClusterConfig::default();
        assert_eq!((d.hosts, d.sim.vms, d.sim.hours), (4, 200, 24.0));
        assert_eq!(d.sim.policy.kind, PolicyKind::BalloonRs);
    }

    #[test]
    fn table_json_and_chart() {
        let cfg = uneven(40.0, 3.0);
        let c = compare_balancing(&cfg).unwrap();
        let table = render_table(&c);
        let lines: Vec<&str> = table.lines().collect();
        let header = lines
            .iter()
            .position(|l| l.starts_with("balancing"))
            .unwrap();
        let width = lines[header].len();
        assert_eq!(lines[header + 1], "-".repeat(width));
        assert!(lines[header + 2].starts_with("none "), "{table}");
        assert!(lines[header + 3].starts_with("drs "), "{table}");
        for row in &lines[header + 2..header + 4] {
            assert_eq!(row.len(), width, "fixed width:\n{table}");
        }
        assert!(
            table.contains("40 VMs") && table.contains("4 hosts"),
            "{table}"
        );
        let json = render_json(&c).unwrap();
        let back: ClusterComparison = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        assert!(json.contains("\"uneven\"") && json.contains("\"soft_plus_pct\""));

        let dir = std::env::temp_dir();
        let name =
            |ext: &str| dir.join(format!("balloon-cluster-test-{}.{ext}", std::process::id()));
        let (svg, png) = (name("svg"), name("png"));
        render_chart(&c, &svg, &png).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        for needle in [
            "host 0",
            "host 3",
            "No balancing",
            "DRS-like",
            "migration",
            "soft threshold",
        ] {
            assert!(text.contains(needle), "{needle} missing from the SVG");
        }
        let bytes = std::fs::read(&png).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert!(bytes.len() > 10 * 1024, "PNG of {} bytes", bytes.len());
        std::fs::remove_file(svg).unwrap();
        std::fs::remove_file(png).unwrap();

        let mut empty = c.clone();
        empty.balanced.series = ClusterSeries::default();
        let e = render_chart(&empty, &name("x.svg"), &name("x.png")).unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{e:?}");
        let missing = dir.join(format!("balloon-cluster-missing-{}", std::process::id()));
        let e = render_chart(&c, &missing.join("a.svg"), &missing.join("a.png")).unwrap_err();
        assert!(
            matches!(e, Error::Host(ref m) if m.contains("a.svg")),
            "{e:?}"
        );
    }

    /// The table (and chart) of the default configuration: 200 VMs on 4
    /// hosts for a day, with the consolidation search. A debug build runs a
    /// small cluster instead; `cargo test --release ... -- --nocapture`
    /// prints the real one.
    #[test]
    fn default_config_table() {
        let cfg = if cfg!(debug_assertions) {
            ClusterConfig {
                sim: SimConfig {
                    consolidation_steps: 2,
                    ..small(24.0).sim
                },
                ..small(24.0)
            }
        } else {
            ClusterConfig::default()
        };
        let c = compare_balancing(&cfg).unwrap();
        println!("{}", render_table(&c));
        check(&cfg, &c.unbalanced);
        check(&cfg, &c.balanced);
        let (none, drs) = (&c.unbalanced, &c.balanced);
        assert!(drs.migrations > 0 && none.migrations == 0);
        // Premise: the cluster without balancing does reach hard or low, so
        // the comparison below is not 0 <= 0.
        assert!(none.hard_low_pct > 0.0, "premise: pressure");
        assert!(
            drs.hard_low_pct <= none.hard_low_pct,
            "{} vs {}",
            drs.hard_low_pct,
            none.hard_low_pct
        );
        let consol = |r: &ClusterResult| r.consolidation.and_then(|c| c.max_overcommit).unwrap();
        assert!(consol(drs) >= consol(none));
        let dir = std::env::temp_dir();
        let (svg, png) = (
            dir.join("balloon-cluster-balancing.svg"),
            dir.join("balloon-cluster-balancing.png"),
        );
        render_chart(&c, &svg, &png).unwrap();
        assert!(std::fs::metadata(&png).unwrap().len() > 10 * 1024);
        println!("chart: {} and {}", svg.display(), png.display());
    }
}
