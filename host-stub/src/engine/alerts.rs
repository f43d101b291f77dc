//! Alerts: when reclaiming memory is a warning sign, with the evidence and
//! the advice an administrator needs.
//!
//! Ballooning now and then is healthy. Sustained ballooning, escalation to
//! compression or swapping, a balloon that does not move when asked, a guest
//! held at its floor and a host in hard or low state are not. [`Alerts`]
//! watches the timeline tick by tick and raises each alert once per episode
//! (it re-arms when the condition clears).

use crate::engine::policy::HostState;
use crate::record::timeline::{Alert, AlertKind, Sample, VmSample, VmStatus};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Thresholds, seconds (the scenario's `[alerts]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertConfig {
    /// A VM ballooned for this long.
    pub sustained_balloon_s: f64,
    /// A target the balloon has not moved toward, or no statistics, for
    /// this long.
    pub unresponsive_s: f64,
    /// A guest that stops short of its target while it reports statistics
    /// (its driver's floor), for this long.
    pub floor_s: f64,
    /// Compressed or swapped memory above this, MiB.
    pub escalation_mib: f64,
}

impl Default for AlertConfig {
    fn default() -> Self {
        Self {
            sustained_balloon_s: 600.0,
            unresponsive_s: 30.0,
            floor_s: 60.0,
            escalation_mib: 1.0,
        }
    }
}

impl AlertConfig {
    /// What is wrong with these thresholds, if anything, as (key, message).
    pub fn problem(&self) -> Option<(&'static str, String)> {
        for (key, v) in [
            ("sustained_balloon_s", self.sustained_balloon_s),
            ("unresponsive_s", self.unresponsive_s),
            ("floor_s", self.floor_s),
            ("escalation_mib", self.escalation_mib),
        ] {
            if !(v.is_finite() && (0.0..=1e7).contains(&v)) {
                return Some((key, format!("{key} {v}: must be between 0 and 10000000")));
            }
        }
        None
    }
}

#[derive(Default, Debug)]
struct Track {
    first_seen: Option<f64>,
    ballooned_since: Option<f64>,
    /// When the current (target, actual) mismatch started, and actual then.
    mismatch_since: Option<(f64, u64)>,
}

/// Watches samples and raises alerts.
#[derive(Debug)]
pub struct Alerts {
    cfg: AlertConfig,
    tracks: BTreeMap<String, Track>,
    active: BTreeSet<(AlertKind, Option<String>)>,
    /// Every alert raised so far.
    pub raised: Vec<Alert>,
}

impl Alerts {
    /// A watcher with these thresholds.
    pub fn new(cfg: AlertConfig) -> Self {
        Self {
            cfg,
            tracks: BTreeMap::new(),
            active: BTreeSet::new(),
            raised: Vec::new(),
        }
    }

    /// Alerts in force now (raised and not cleared).
    pub fn active(&self) -> impl Iterator<Item = &(AlertKind, Option<String>)> {
        self.active.iter()
    }

    fn set(
        &mut self,
        on: bool,
        kind: AlertKind,
        vm: Option<&str>,
        at: f64,
        out: &mut Vec<Alert>,
        why: impl FnOnce() -> (String, String),
    ) {
        let key = (kind, vm.map(str::to_string));
        if !on {
            self.active.remove(&key);
            return;
        }
        if self.active.insert(key) {
            let (evidence, advice) = why();
            let a = Alert {
                kind,
                vm: vm.map(str::to_string),
                at,
                evidence,
                advice,
            };
            self.raised.push(a.clone());
            out.push(a);
        }
    }

    /// Looks at one tick; returns the alerts raised by it.
    pub fn update(&mut self, s: &Sample) -> Vec<Alert> {
        let mut out = Vec::new();
        let t = s.t;
        let h = &s.host;
        let hard = h.state >= HostState::Hard;
        self.set(hard, AlertKind::HostPressure, None, t, &mut out, || {
            (
                format!(
                    "host in {} state: {:.0} MiB free of {} MiB, {} MiB consumed",
                    h.state, h.free, h.capacity, h.consumed
                ),
                "the host is under-provisioned for these guests: add memory, move a VM to another host, \
                 or lower configured sizes (see `balloon-host report`)"
                    .into(),
            )
        });
        for v in &s.vms {
            self.vm(t, v, &mut out);
        }
        out
    }

    fn vm(&mut self, t: f64, v: &VmSample, out: &mut Vec<Alert>) {
        let cfg = self.cfg.clone();
        let name = v.name.as_str();
        let tr = self.tracks.entry(v.name.clone()).or_default();
        if v.status != VmStatus::Running {
            *tr = Track::default();
            return;
        }
        let first = *tr.first_seen.get_or_insert(t);
        // Ballooned, and for how long.
        if v.balloon > 0 {
            tr.ballooned_since.get_or_insert(t);
        } else {
            tr.ballooned_since = None;
        }
        let ballooned_for = tr.ballooned_since.map(|s0| t - s0);
        // A target the guest has not reached, and whether actual moved.
        if v.target != v.actual {
            match tr.mismatch_since {
                Some((_, a0))
                    if a0 != v.actual && v.actual.abs_diff(v.target) < a0.abs_diff(v.target) =>
                {
                    // Moving toward the target: restart the clock.
                    tr.mismatch_since = Some((t, v.actual));
                }
                None => tr.mismatch_since = Some((t, v.actual)),
                _ => {}
            }
        } else {
            tr.mismatch_since = None;
        }
        let stuck_for = tr.mismatch_since.map(|(s0, _)| t - s0).unwrap_or(0.0);
        let no_stats_for = if v.guest.is_empty() { t - first } else { 0.0 };
        let (target, actual) = (v.target, v.actual);
        let unresponsive = (stuck_for >= cfg.unresponsive_s && v.guest.is_empty())
            || no_stats_for >= cfg.unresponsive_s;
        self.set(
            unresponsive,
            AlertKind::BalloonNotResponding,
            Some(name),
            t,
            out,
            || {
                (
                    format!(
                        "target {target} MiB, actual {actual} MiB{}; {}",
                        if stuck_for > 0.0 {
                            format!(" unchanged for {stuck_for:.0} s")
                        } else {
                            String::new()
                        },
                        if v.guest.is_empty() {
                            format!("no memory statistics in {no_stats_for:.0} s")
                        } else {
                            "statistics arrive".into()
                        }
                    ),
                    "balloon driver missing or not responding in this guest: load balloon_rs (or \
                 virtio_balloon) there; until then the host cannot reclaim from it except by \
                 compression and swapping"
                        .into(),
                )
            },
        );
        let held = !v.guest.is_empty() && actual > target && stuck_for >= cfg.floor_s;
        let usable = v.guest.get("usable").copied().unwrap_or(0.0);
        self.set(held, AlertKind::HeldAtFloor, Some(name), t, out, || {
            (
                format!(
                    "asked for {target} MiB, the guest stays at {actual} MiB with {usable:.0} MiB available \
                     for {stuck_for:.0} s"
                ),
                "the guest needs the memory it has (its driver holds a floor): the host is \
                 over-committed for this load; add host memory or move the VM rather than \
                 balloon it further"
                    .into(),
            )
        });
        let sustained = ballooned_for.is_some_and(|d| d >= cfg.sustained_balloon_s);
        let balloon = v.balloon;
        self.set(sustained, AlertKind::SustainedBallooning, Some(name), t, out, || {
            (
                format!(
                    "{balloon} MiB ballooned for {:.0} s (threshold {:.0} s)",
                    ballooned_for.unwrap_or(0.0),
                    cfg.sustained_balloon_s
                ),
                format!(
                    "the VM is oversized or the host under-provisioned: consider configuring it with \
                     about {} MiB plus headroom (see `balloon-host report`)",
                    v.configured.saturating_sub(balloon)
                ),
            )
        });
        let (c, sw) = (v.compressed, v.swapped);
        self.set(
            c > cfg.escalation_mib,
            AlertKind::Compression,
            Some(name),
            t,
            out,
            || {
                (
                format!("{c:.0} MiB of its memory compressed by the host (zswap)"),
                "the host escalated past ballooning: guests pay for every access to compressed \
                 memory; the host needs more memory or fewer VMs"
                    .into(),
            )
            },
        );
        self.set(
            sw > cfg.escalation_mib,
            AlertKind::Swapping,
            Some(name),
            t,
            out,
            || {
                (
                    format!("{sw:.0} MiB of its memory swapped to disk by the host"),
                    "host swapping slows this guest by orders of magnitude on access: relieve the \
                 host now (migrate a VM, add memory)"
                        .into(),
                )
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::timeline::fixtures;

    fn vm(name: &str, target: u64, actual: u64, stats: bool) -> VmSample {
        VmSample {
            balloon: 512 - actual,
            target,
            actual,
            guest: if stats {
                [("usable".to_string(), 40.0)].into_iter().collect()
            } else {
                BTreeMap::new()
            },
            ..fixtures::vm(name)
        }
    }

    fn sample(t: f64, state: HostState, vms: Vec<VmSample>) -> Sample {
        let mut s = fixtures::sample(t, state, vms);
        s.host.consumed = 1000;
        s.host.free = 24.0;
        s
    }

    fn kinds(a: &[Alert]) -> Vec<(AlertKind, Option<String>)> {
        a.iter().map(|a| (a.kind, a.vm.clone())).collect()
    }

    #[test]
    fn missing_driver_is_named_once() {
        let mut al = Alerts::new(AlertConfig::default());
        let mut raised = Vec::new();
        for t in 0..40 {
            raised.extend(al.update(&sample(
                t as f64,
                HostState::Soft,
                vec![vm("nodrv", 400, 512, false), vm("ok", 400, 400, true)],
            )));
        }
        assert_eq!(
            kinds(&raised),
            vec![(AlertKind::BalloonNotResponding, Some("nodrv".into()))]
        );
        assert!(raised[0]
            .advice
            .contains("balloon driver missing or not responding"));
        assert!(
            raised[0]
                .evidence
                .contains("target 400 MiB, actual 512 MiB"),
            "{}",
            raised[0].evidence
        );
        assert_eq!(raised[0].at, 30.0);
    }

    #[test]
    fn a_moving_balloon_is_not_stuck_and_a_floor_is_not_a_missing_driver() {
        let mut al = Alerts::new(AlertConfig::default());
        let mut raised = Vec::new();
        // Moving 5 MiB per tick toward 300: no alert.
        for t in 0..40u64 {
            raised.extend(al.update(&sample(
                t as f64,
                HostState::Soft,
                vec![vm("a", 300, 512 - 5 * t.min(40), true)],
            )));
        }
        assert!(raised.is_empty(), "{raised:?}");
        // Stops at 350 while answering: held at its floor after 60 s.
        for t in 40..110u64 {
            raised.extend(al.update(&sample(
                t as f64,
                HostState::Soft,
                vec![vm("a", 300, 350, true)],
            )));
        }
        assert_eq!(
            kinds(&raised),
            vec![(AlertKind::HeldAtFloor, Some("a".into()))]
        );
    }

    #[test]
    fn sustained_ballooning_escalation_and_host_pressure() {
        let cfg = AlertConfig {
            sustained_balloon_s: 10.0,
            ..AlertConfig::default()
        };
        let mut al = Alerts::new(cfg);
        let mut raised = Vec::new();
        for t in 0..12 {
            let mut v = vm("a", 400, 400, true);
            v.compressed = if t > 5 { 30.0 } else { 0.0 };
            let state = if t == 3 {
                HostState::Hard
            } else {
                HostState::Soft
            };
            raised.extend(al.update(&sample(t as f64, state, vec![v])));
        }
        let k = kinds(&raised);
        assert!(k.contains(&(AlertKind::HostPressure, None)));
        assert!(k.contains(&(AlertKind::Compression, Some("a".into()))));
        assert!(k.contains(&(AlertKind::SustainedBallooning, Some("a".into()))));
        assert_eq!(k.len(), 3, "{k:?}");
        // Host pressure cleared at t=4; it is re-armed and raised again.
        raised = al.update(&sample(12.0, HostState::Low, vec![vm("a", 400, 400, true)]));
        assert_eq!(kinds(&raised), vec![(AlertKind::HostPressure, None)]);
        assert!(raised[0]
            .to_string()
            .starts_with("ALERT host-pressure at 12 s: host in low state"));
    }

    #[test]
    fn bad_thresholds_are_named() {
        let c = AlertConfig {
            floor_s: -1.0,
            ..AlertConfig::default()
        };
        assert_eq!(c.problem().map(|p| p.0), Some("floor_s"));
        assert!(AlertConfig::default().problem().is_none());
    }
}
