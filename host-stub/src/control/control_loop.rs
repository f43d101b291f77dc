//! The control loop: every tick it observes the guests and the host,
//! decides with the engine (host by host), acts on what was decided and
//! records the tick; between two ticks a daemon's SIGHUP reloads its config.

use super::observe::{self, Attribution, Observed};
use super::setup::{self, Mechanisms};
use super::{act, daemon, migration, RunOptions, RunReport, Vm, KEEP_SAMPLES};
use crate::backend::AttachTo;
use crate::engine::alerts::Alerts;
use crate::engine::policy::{self, HostView, PolicyConfig, PolicyState};
use crate::mechanisms::{self, HostSettings, KsmCounters};
use crate::record::summary::Summary;
use crate::record::timeline::{self, HostSample, KsmSample, Sample, SecondHostSample, VmStatus};
use crate::render::{chart, metrics, table};
use crate::scenario::Scenario;
use crate::{Error, Result};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// One tick's observation.
struct Observation {
    /// Seconds into the run.
    t: f64,
    /// Per guest (`None`: lost or lost now).
    guests: Vec<Option<Observed>>,
    ksm: Option<KsmCounters>,
    /// zswap's (pool, compressed), MiB.
    zswap: Option<(f64, f64)>,
    attribution: Attribution,
}

/// A host of the scenario: its name, capacity (MiB) and the engine's
/// configuration for it ([`Scenario::hosts`]).
type Host = (&'static str, u64, PolicyConfig);

/// One host's decision for one tick.
struct HostDecision {
    /// The guests running there, in the order the engine saw them.
    members: Vec<usize>,
    view: HostView,
    decision: policy::Decision,
}

/// A run in progress: the guests, the host's mechanisms and settings, the
/// engine's state per host and what has been recorded.
pub struct ControlLoop<'a> {
    scenario: Scenario,
    opts: &'a RunOptions,
    settings: &'a mut HostSettings,
    mech: Mechanisms,
    vms: Vec<Vm>,
    /// The engine's state, per host.
    states: Vec<PolicyState>,
    balancer: migration::Balancer,
    ksm_on: bool,
    alerts: Alerts,
    samples: Vec<Sample>,
    lost: Vec<String>,
    start: Instant,
    ticks: u64,
    timeline_path: PathBuf,
    writer: timeline::Writer,
    latest: metrics::Latest,
}

impl<'a> ControlLoop<'a> {
    /// Sets the host up for the scenario's tiers, boots its guests (or
    /// attaches to the running ones, `attach_to`, in the scenario's order),
    /// brings each to its limit and opens the timeline; serves metrics if
    /// asked.
    pub fn start(
        scenario: &Scenario,
        opts: &'a RunOptions,
        settings: &'a mut HostSettings,
        attach_to: Option<&[(String, AttachTo)]>,
        stop: &AtomicBool,
    ) -> Result<Self> {
        let mech = setup::mechanisms(settings, scenario, opts);
        let mut vms = setup::guests(settings, scenario, mech.cgroups.as_ref())?;
        match attach_to {
            Some(to) => setup::attach(settings, &mut vms, to)?,
            None => setup::boot(&mut vms, stop)?,
        }
        for vm in vms.iter_mut() {
            vm.status = VmStatus::Running;
            if let Some(c) = vm.conn.as_mut() {
                // Stats every second whatever the tick: the policy should
                // see the guest as it is now, not as it was a tick ago.
                c.set_stats_interval(1)?;
                // Start from the limit (a guest above it is brought down
                // now).
                let actual = c.balloon()?.actual;
                vm.target = actual.min(vm.spec.limit());
                if actual != vm.target {
                    c.set_size_mib(vm.target)?;
                }
            }
        }
        std::fs::create_dir_all(&opts.out_dir)
            .map_err(Error::io(format!("creating {}", opts.out_dir.display())))?;
        let latest = metrics::Latest::default();
        if let Some(addr) = opts.metrics {
            let bound = metrics::serve(addr, latest.clone())?;
            tracing::info!("metrics on http://{bound}/metrics");
        }
        let timeline_path = opts.out_dir.join("timeline.jsonl");
        let writer = timeline::Writer::create(&timeline_path)?;
        let states = scenario
            .hosts()
            .iter()
            .map(|(_, _, cfg)| PolicyState::initial(cfg))
            .collect();
        Ok(Self {
            alerts: Alerts::new(scenario.alerts.clone()),
            scenario: scenario.clone(),
            opts,
            settings,
            mech,
            vms,
            states,
            balancer: migration::Balancer::default(),
            ksm_on: false,
            samples: Vec::new(),
            lost: Vec::new(),
            start: Instant::now(),
            ticks: 0,
            timeline_path,
            writer,
            latest,
        })
    }

    /// Ticks until the scenario's duration has passed, every guest is lost
    /// or `stop` is set; then lets the guests go and writes the chart and
    /// the summary.
    pub fn run(mut self, stop: &AtomicBool) -> Result<RunReport> {
        let tick = Duration::from_secs_f64(self.scenario.tick);
        loop {
            self.tick()?;
            if self.vms.iter().all(|v| v.status == VmStatus::Lost) {
                tracing::warn!("every guest is lost; stopping");
                break;
            }
            let next = Duration::from_secs_f64(self.scenario.tick * self.ticks as f64);
            if self.start.elapsed().as_secs_f64() >= self.scenario.duration {
                break;
            }
            let wait = next.saturating_sub(self.start.elapsed()).max(tick / 10);
            if !super::sleep_unless(stop, wait) {
                tracing::info!(
                    "interrupted at {:.0} s; stopping the guests and putting the host back",
                    self.start.elapsed().as_secs_f64()
                );
                break;
            }
        }
        self.finish()
    }

    /// One tick: reload if asked, observe, decide, act, record.
    pub fn tick(&mut self) -> Result<()> {
        let mut events = Vec::new();
        if self.ticks == 0 {
            events.extend(self.mech.unavailable.iter().cloned());
        }
        self.reload_if_asked(&mut events);
        let hosts = self.scenario.hosts();
        let obs = self.observe(&mut events);
        let decisions = self.decide(&hosts, &obs);
        self.act(&hosts, &obs, &decisions, &mut events);
        self.record(&hosts, &obs, &decisions, events)
    }

    /// SIGHUP: the daemon's config again, applied between two ticks.
    fn reload_if_asked(&mut self, events: &mut Vec<String>) {
        let Some(r) = self
            .opts
            .reload
            .as_ref()
            .filter(|r| r.flag.swap(false, Ordering::Relaxed))
        else {
            return;
        };
        match daemon::reload(&r.path, &self.scenario) {
            Ok((new, changes)) => {
                let msg = if changes.is_empty() {
                    format!("reloaded {}: nothing changed", r.path.display())
                } else {
                    format!("reloaded {}: {}", r.path.display(), changes.join(", "))
                };
                tracing::info!("{msg}");
                events.push(msg);
                for (vm, spec) in self.vms.iter_mut().zip(new.guests()) {
                    vm.spec = spec.clone();
                }
                if new.alerts != self.scenario.alerts {
                    self.alerts = Alerts::new(new.alerts.clone());
                }
                self.scenario = new;
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

    /// Measures every guest (a guest that cannot be measured is lost: its
    /// connection is dropped, which kills a QEMU this run launched) and the
    /// host's KSM and zswap counters.
    fn observe(&mut self, events: &mut Vec<String>) -> Observation {
        let t = self.start.elapsed().as_secs_f64();
        let mut guests = Vec::with_capacity(self.vms.len());
        for vm in self.vms.iter_mut() {
            let o = match vm.conn.as_mut() {
                Some(c) => match observe::guest(c.as_mut(), vm.cgroup.as_ref()) {
                    Ok(o) => Some(o),
                    Err(e) => {
                        let msg = format!("guest {} lost: {e}", vm.spec.name);
                        tracing::warn!("{msg}");
                        events.push(msg.clone());
                        self.lost.push(msg);
                        vm.conn = None;
                        vm.status = VmStatus::Lost;
                        None
                    }
                },
                None => None,
            };
            if let Some(k) = o.as_ref().and_then(|o| o.oom_kills) {
                if k > vm.oom_kills {
                    let msg = format!(
                        "{}: the OOM killer killed {} process(es) in its memory cgroup",
                        vm.spec.name,
                        k - vm.oom_kills
                    );
                    tracing::warn!("{msg}");
                    events.push(msg);
                }
                vm.oom_kills = k;
            }
            if let Some((n, a)) = o.as_ref().and_then(|o| o.changes) {
                events.push(format!(
                    "{}: BALLOON_CHANGE x{n}, now {a} MiB",
                    vm.spec.name
                ));
            }
            guests.push(o);
        }
        let tiers = &self.mech.tiers;
        let ksm = tiers
            .sharing
            .then(|| mechanisms::ksm_counters(&self.opts.ksm_dir).ok())
            .flatten();
        let zswap = (tiers.compression || tiers.swapping)
            .then(|| mechanisms::zswap_meminfo().ok())
            .flatten();
        let attribution = observe::attribute(&guests, ksm.as_ref(), zswap);
        Observation {
            t,
            guests,
            ksm,
            zswap,
            attribution,
        }
    }

    /// The engine's decision for each host, for the guests running there.
    fn decide(&self, hosts: &[Host], obs: &Observation) -> Vec<HostDecision> {
        hosts
            .iter()
            .enumerate()
            .map(|(h, (_, capacity, cfg))| {
                let members: Vec<usize> = (0..self.vms.len())
                    .filter(|&i| obs.guests[i].is_some() && self.vms[i].host == h)
                    .collect();
                let consumed: f64 = members.iter().map(|&i| obs.attribution.cost[i]).sum();
                let view = HostView {
                    capacity: *capacity,
                    consumed: consumed.max(0.0).round() as u64,
                };
                let guests: Vec<policy::GuestView> = members
                    .iter()
                    .filter_map(|&i| {
                        obs.guests[i]
                            .as_ref()
                            .map(|o| observe::guest_view(&self.vms[i], o))
                    })
                    .collect();
                let decision =
                    policy::decide(cfg, &self.mech.tiers, &view, &guests, &self.states[h]);
                HostDecision {
                    members,
                    view,
                    decision,
                }
            })
            .collect()
    }

    /// Applies the decisions: each host's new state, the guests' targets
    /// and limits, KSM; then the workloads due and, with two hosts, a
    /// migration.
    fn act(
        &mut self,
        hosts: &[Host],
        obs: &Observation,
        decisions: &[HostDecision],
        events: &mut Vec<String>,
    ) {
        let mut ksm_want = None;
        for (h, d) in decisions.iter().enumerate() {
            let new = d.decision.state.host_state;
            if new != self.states[h].host_state {
                let which = if hosts.len() > 1 {
                    format!("host {}", hosts[h].0)
                } else {
                    "host".into()
                };
                events.push(format!("{which} {} -> {new}", self.states[h].host_state));
            }
            self.states[h] = d.decision.state;
            act::guests(&mut self.vms, &d.members, &d.decision, events);
            ksm_want = Some(act::merge_ksm(ksm_want, d.decision.ksm));
        }
        if let (true, Some(want)) = (self.mech.tiers.sharing, ksm_want) {
            act::ksm(
                self.settings,
                &self.opts.ksm_dir,
                want,
                &mut self.ksm_on,
                events,
            );
        }
        act::workloads(&mut self.vms, obs.t, events);
        if let Some(b) = &self.scenario.second_host {
            let views: Vec<HostView> = decisions.iter().map(|d| d.view).collect();
            if let Some((i, from, to)) = self.balancer.pick(
                b,
                hosts,
                &self.states,
                &views,
                &self.vms,
                &obs.attribution.cost,
            ) {
                events.push(migration::migrate(
                    &mut self.vms[i],
                    hosts[from].0,
                    (to, hosts[to].0),
                ));
                self.balancer.migrated();
            }
        }
    }

    /// Writes the tick to the timeline, raises its alerts, updates the
    /// metrics and shows the table.
    fn record(
        &mut self,
        hosts: &[Host],
        obs: &Observation,
        decisions: &[HostDecision],
        events: Vec<String>,
    ) -> Result<()> {
        let host_sample = |h: usize| HostSample {
            capacity: hosts[h].1,
            consumed: decisions[h].view.consumed,
            free: decisions[h].view.free(),
            state: self.states[h].host_state,
            ksm: obs.ksm.as_ref().map(|k| KsmSample {
                run: k.run,
                pages_to_scan: k.pages_to_scan,
                sharing: k.sharing,
                shared: k.shared,
            }),
            zswap_pool: obs.zswap.map(|z| z.0),
            zswapped: obs.zswap.map(|z| z.1),
        };
        let a = &obs.attribution;
        let mut sample = Sample {
            t: obs.t,
            second_host: (hosts.len() > 1).then(|| SecondHostSample {
                host: host_sample(1),
                vms: self
                    .vms
                    .iter()
                    .filter(|v| v.host == 1)
                    .map(|v| v.spec.name.clone())
                    .collect(),
            }),
            host: host_sample(0),
            vms: self
                .vms
                .iter()
                .enumerate()
                .map(|(i, vm)| {
                    observe::vm_sample(vm, obs.guests[i].as_ref(), a.shared[i], a.split[i])
                })
                .collect(),
            events,
            alerts: Vec::new(),
        };
        sample.alerts = self.alerts.update(&sample);
        for a in &sample.alerts {
            tracing::warn!("{a}");
        }
        self.writer.write(&sample)?;
        if let Ok(mut l) = self.latest.lock() {
            *l = Some(sample.clone());
        }
        if self.opts.table {
            table::show(&sample, &self.scenario.name, self.opts.live);
        }
        self.samples.push(sample);
        self.ticks += 1;
        if self.scenario.duration.is_infinite() && self.samples.len() > KEEP_SAMPLES {
            self.samples.drain(..self.samples.len() - KEEP_SAMPLES);
        }
        Ok(())
    }

    /// Lets every guest go (a launched QEMU is shut down and its console
    /// checked) and writes the chart and the summary.
    fn finish(mut self) -> Result<RunReport> {
        for vm in self.vms.iter_mut() {
            if let Some(c) = vm.conn.take() {
                if let Err(e) = c.release() {
                    let msg = format!("guest {}: {e}", vm.spec.name);
                    tracing::warn!("{msg}");
                    self.lost.push(msg);
                }
            }
        }
        let mut files = vec![self.timeline_path.clone()];
        let out = &self.opts.out_dir;
        let (svg, png) = (out.join("memory.svg"), out.join("memory.png"));
        let title = format!("balloon-host: {}", self.scenario.name);
        match chart::render(&self.samples, &title, &svg, &png) {
            Ok(()) => files.extend([svg, png]),
            Err(e) => tracing::warn!("chart not drawn: {e}"),
        }
        let sum = Summary::from_samples(&self.samples, &self.mech.unavailable, &self.lost);
        tracing::info!(raised = self.alerts.raised.len(), "alerts");
        let sum_path = out.join("summary.json");
        std::fs::write(
            &sum_path,
            serde_json::to_string_pretty(&sum).map_err(|e| Error::Invalid(e.to_string()))?,
        )
        .map_err(Error::io(format!("writing {}", sum_path.display())))?;
        files.push(sum_path);
        Ok(RunReport {
            samples: self.samples,
            unavailable: self.mech.unavailable,
            lost: self.lost,
            files,
            restore_failures: Vec::new(),
        })
    }
}
