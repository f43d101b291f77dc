//! Right-sizing from history: `balloon-host report TIMELINE...` reads one
//! or more timelines and says, per VM, how much memory the guest really
//! used, how long it was ballooned, what each tier took from it, and what
//! size it should have — plus how much room the host has left.
//!
//! Guest memory in use is total − available from the guest's own statistics
//! (dommemstat `available` − `usable`); ticks without statistics are left
//! out. The recommendation is the 95th percentile of use plus headroom
//! (25 %, at least 64 MiB), rounded up to 64 MiB and never above the
//! configured size; a reservation is justified when even the 5th percentile
//! of use is at least half of the recommendation (steady demand).

use crate::record::timeline::{Sample, VmStatus};
use crate::render::text_table;
use crate::{Error, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Headroom on top of the 95th percentile of use.
pub const HEADROOM_PCT: f64 = 25.0;
/// At least this much headroom, MiB.
pub const HEADROOM_MIN_MIB: f64 = 64.0;

/// Mean, 5th/95th percentile and peak of a series.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stats {
    /// Mean.
    pub mean: f64,
    /// 5th percentile.
    pub p5: f64,
    /// 95th percentile.
    pub p95: f64,
    /// Peak.
    pub peak: f64,
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

impl Stats {
    /// Of `v` (None when empty).
    pub fn of(v: &[f64]) -> Option<Self> {
        if v.is_empty() {
            return None;
        }
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        Some(Self {
            mean: s.iter().sum::<f64>() / s.len() as f64,
            p5: pct(&s, 5.0),
            p95: pct(&s, 95.0),
            peak: s[s.len() - 1],
        })
    }
}

/// The recommended size for a VM: p95 of use plus headroom, rounded up to
/// 64 MiB, never above `configured`.
pub fn recommend(p95_used: f64, configured: u64) -> u64 {
    let want = p95_used + (p95_used * HEADROOM_PCT / 100.0).max(HEADROOM_MIN_MIB);
    ((want / 64.0).ceil() as u64 * 64).min(configured)
}

/// Guest memory in use at one tick, MiB: total − available from the
/// guest's statistics (None without them).
pub fn used_mib(v: &crate::record::timeline::VmSample) -> Option<f64> {
    let (total, usable) = (v.guest.get("available")?, v.guest.get("usable")?);
    Some((total - usable).max(0.0))
}

/// One VM.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VmReport {
    /// Name.
    pub name: String,
    /// Configured RAM.
    pub configured: u64,
    /// Guest memory in use (total − available), MiB.
    pub used: Option<Stats>,
    /// Seconds with statistics.
    pub observed_s: f64,
    /// Seconds with a balloon inflated.
    pub ballooned_s: f64,
    /// Mean reclaimed MiB by tier.
    pub reclaimed_mean: BTreeMap<String, f64>,
    /// Peak reclaimed MiB by tier.
    pub reclaimed_peak: BTreeMap<String, f64>,
    /// Recommended configured size (None without statistics).
    pub recommended: Option<u64>,
    /// Reservation worth setting (None: not justified).
    pub reservation: Option<u64>,
}

/// The host over all timelines.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// Timelines read.
    pub timelines: usize,
    /// Seconds covered (summed over timelines).
    pub seconds: f64,
    /// Host capacity (the largest seen).
    pub capacity: u64,
    /// Per VM, by name (a VM in several timelines is one row).
    pub vms: Vec<VmReport>,
    /// Sum of configured sizes.
    pub configured_total: u64,
    /// Sum of recommended sizes (configured where none).
    pub recommended_total: u64,
    /// capacity − sum of recommended: room for more VMs (negative: the
    /// recommended sizes do not fit).
    pub headroom: i64,
}

#[derive(Default)]
struct Acc {
    configured: u64,
    used: Vec<f64>,
    observed_s: f64,
    ballooned_s: f64,
    sums: BTreeMap<&'static str, f64>,
    peaks: BTreeMap<&'static str, f64>,
    ticks: f64,
}

/// Builds the report from timelines (each a run's samples).
pub fn build(timelines: &[Vec<Sample>]) -> Result<Report> {
    if timelines.iter().all(|t| t.is_empty()) {
        return Err(Error::Invalid(
            "report: the timelines have no samples".into(),
        ));
    }
    let mut accs: BTreeMap<String, Acc> = BTreeMap::new();
    let mut seconds = 0.0;
    let mut capacity = 0;
    for tl in timelines {
        for (i, s) in tl.iter().enumerate() {
            // Each tick stands for the time to the next one.
            let dt = tl.get(i + 1).map_or(0.0, |n| (n.t - s.t).max(0.0));
            seconds += dt;
            capacity = capacity.max(s.host.capacity);
            for v in s.vms.iter().filter(|v| v.status == VmStatus::Running) {
                let a = accs.entry(v.name.clone()).or_default();
                a.configured = a.configured.max(v.configured);
                a.ticks += 1.0;
                if let Some(used) = used_mib(v) {
                    a.used.push(used);
                    a.observed_s += dt;
                }
                if v.balloon > 0 {
                    a.ballooned_s += dt;
                }
                for (tier, x) in [
                    ("balloon", v.balloon as f64),
                    ("shared", v.shared),
                    ("compressed", v.compressed),
                    ("swapped", v.swapped),
                ] {
                    *a.sums.entry(tier).or_default() += x;
                    let p = a.peaks.entry(tier).or_default();
                    *p = p.max(x);
                }
            }
        }
    }
    let vms: Vec<VmReport> = accs
        .into_iter()
        .map(|(name, a)| {
            let used = Stats::of(&a.used);
            let recommended = used.as_ref().map(|u| recommend(u.p95, a.configured));
            let reservation = match (&used, recommended) {
                (Some(u), Some(r)) if u.p5 >= 0.5 * r as f64 => {
                    Some((u.p5 / 64.0).floor() as u64 * 64)
                }
                _ => None,
            };
            VmReport {
                name,
                configured: a.configured,
                used,
                observed_s: a.observed_s,
                ballooned_s: a.ballooned_s,
                reclaimed_mean: a
                    .sums
                    .iter()
                    .map(|(k, v)| (k.to_string(), v / a.ticks.max(1.0)))
                    .collect(),
                reclaimed_peak: a.peaks.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
                recommended,
                reservation: reservation.filter(|r| *r > 0),
            }
        })
        .collect();
    let configured_total = vms.iter().map(|v| v.configured).sum();
    let recommended_total: u64 = vms
        .iter()
        .map(|v| v.recommended.unwrap_or(v.configured))
        .sum();
    Ok(Report {
        timelines: timelines.len(),
        seconds,
        capacity,
        vms,
        configured_total,
        recommended_total,
        headroom: capacity as i64 - recommended_total as i64,
    })
}

impl Report {
    /// As a text table.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "Right-sizing from {} timeline(s), {:.0} s; host capacity {} MiB",
            self.timelines, self.seconds, self.capacity
        );
        let mut t = text_table::grouped(&[
            ("", &["VM", "config"]),
            ("used, MiB", &["mean", "p95", "peak"]),
            ("", &["ballooned"]),
            (
                "reclaimed, mean MiB",
                &["balloon", "shared", "compr", "swap"],
            ),
            ("", &["recommended", "reservation"]),
        ]);
        for v in &self.vms {
            let (m, p95, pk) = v
                .used
                .as_ref()
                .map_or(("-".into(), "-".into(), "-".into()), |u| {
                    (
                        format!("{:.0}", u.mean),
                        format!("{:.0}", u.p95),
                        format!("{:.0}", u.peak),
                    )
                });
            let g = |k: &str| format!("{:.0}", v.reclaimed_mean.get(k).copied().unwrap_or(0.0));
            let ballooned = if self.seconds > 0.0 {
                100.0 * v.ballooned_s / self.seconds
            } else {
                0.0
            };
            t.add_row(vec![
                v.name.clone(),
                v.configured.to_string(),
                m,
                p95,
                pk,
                format!("{ballooned:.0}%"),
                g("balloon"),
                g("shared"),
                g("compressed"),
                g("swapped"),
                v.recommended
                    .map_or("no stats".into(), |r| format!("{r} MiB")),
                v.reservation.map_or("-".into(), |r| format!("{r} MiB")),
            ]);
        }
        o.push_str(&t.render());
        let _ = writeln!(
            o,
            "configured {} MiB, recommended {} MiB on a {} MiB host: {}",
            self.configured_total,
            self.recommended_total,
            self.capacity,
            if self.headroom >= 0 {
                format!("{} MiB of headroom for more VMs", self.headroom)
            } else {
                format!("{} MiB short even at the recommended sizes", -self.headroom)
            }
        );
        let _ = writeln!(
            o,
            "(used: guest total − available, mean/p95/peak; reclaimed: mean MiB per tier; recommended: p95 + {HEADROOM_PCT:.0} % (>= {HEADROOM_MIN_MIB:.0} MiB), rounded up to 64 MiB; reservation: when p5 of use is >= half the recommendation)"
        );
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::policy::HostState;
    use crate::record::timeline::{fixtures, VmSample};

    fn s(t: f64, vms: Vec<VmSample>) -> Sample {
        let mut s = fixtures::sample(t, HostState::Clear, vms);
        s.host.consumed = 0;
        s.host.free = 0.0;
        s
    }

    fn vm(name: &str, used: Option<f64>, balloon: u64) -> VmSample {
        VmSample {
            resident: 0,
            balloon,
            target: 512 - balloon,
            actual: 512 - balloon,
            shared: 10.0,
            guest: match used {
                Some(u) => [
                    ("available".to_string(), 480.0),
                    ("usable".to_string(), 480.0 - u),
                ]
                .into_iter()
                .collect(),
                None => BTreeMap::new(),
            },
            ..fixtures::vm(name)
        }
    }

    #[test]
    fn recommendation_rounds_and_caps() {
        assert_eq!(recommend(100.0, 512), 192); // 100 + 64 -> 164 -> 192
        assert_eq!(recommend(400.0, 2048), 512); // 400 + 100 -> 500 -> 512
        assert_eq!(recommend(480.0, 512), 512); // capped
        assert_eq!(pct(&[1.0, 2.0, 3.0, 4.0], 95.0), 4.0);
        assert_eq!(pct(&[1.0, 2.0, 3.0, 4.0], 5.0), 1.0);
    }

    #[test]
    fn report_over_two_timelines() {
        // "steady" uses 300 MiB all the time; "idle" 50 MiB, ballooned half
        // the time; "blind" never sends statistics.
        let a: Vec<Sample> = (0..10)
            .map(|i| {
                s(
                    i as f64,
                    vec![
                        vm("steady", Some(300.0), 0),
                        vm("idle", Some(50.0), if i < 5 { 128 } else { 0 }),
                        vm("blind", None, 0),
                    ],
                )
            })
            .collect();
        let b: Vec<Sample> = (0..10)
            .map(|i| s(i as f64, vec![vm("steady", Some(320.0), 0)]))
            .collect();
        let r = build(&[a, b]).unwrap();
        assert_eq!(r.timelines, 2);
        assert_eq!(r.seconds, 18.0);
        let by = |n: &str| r.vms.iter().find(|v| v.name == n).unwrap();
        let steady = by("steady");
        assert_eq!(steady.used.as_ref().unwrap().peak, 320.0);
        assert_eq!(steady.recommended, Some(448)); // 320 + 80 = 400 -> 448
        assert_eq!(steady.reservation, Some(256)); // p5 300 >= 224 -> 256 (rounded down)
        let idle = by("idle");
        assert_eq!(idle.recommended, Some(128)); // 50 + 64 -> 128
        assert_eq!(idle.reservation, None); // 50 < 64
        assert_eq!(idle.ballooned_s, 5.0);
        assert_eq!(idle.reclaimed_peak["balloon"], 128.0);
        assert!((idle.reclaimed_mean["balloon"] - 64.0).abs() < 1e-9);
        let blind = by("blind");
        assert_eq!((blind.recommended, blind.used.clone()), (None, None));
        assert_eq!(r.configured_total, 1536);
        assert_eq!(r.recommended_total, 448 + 128 + 512);
        assert_eq!(r.headroom, 1024 - 1088);
        let text = r.render();
        assert!(
            text.contains("64 MiB short") && text.contains("no stats"),
            "{text}"
        );
        assert!(build(&[vec![]]).is_err());
    }
}
