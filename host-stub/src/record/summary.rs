//! The end-of-run summary: per VM what each tier reclaimed, per host how
//! long it spent in each state, and what was unavailable or lost.

use crate::engine::policy::HostState;
use crate::record::timeline::Sample;
use crate::render::text_table;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// One VM over the run (MiB).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct VmSummary {
    /// Name.
    pub name: String,
    /// Configured RAM.
    pub configured: u64,
    /// Largest balloon.
    pub balloon_peak: u64,
    /// Balloon at the end.
    pub balloon_end: u64,
    /// Smallest guest size.
    pub actual_min: u64,
    /// Largest KSM saving attributed.
    pub shared_peak: f64,
    /// Largest compressed amount.
    pub compressed_peak: f64,
    /// Largest swapped amount.
    pub swapped_peak: f64,
    /// Largest resident memory.
    pub resident_peak: u64,
    /// Seconds from the run's start to the first balloon inflation.
    pub first_ballooned_at: Option<f64>,
    /// Lost during the run.
    pub lost: bool,
}

/// How long one tier held memory over the run.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TierTime {
    /// `sharing`, `ballooning`, `compression` or `swapping`.
    pub tier: &'static str,
    /// Seconds during which the VMs together had at least [`TIER_MIB`] in
    /// the tier.
    pub seconds: f64,
    /// When it first and last held that much, s into the run.
    pub first_s: Option<f64>,
    pub last_s: Option<f64>,
    /// The most it held, MiB.
    pub peak_mib: f64,
}

/// What a tier must hold, MiB, to count as engaged (below it: residue of
/// a few pages, not a tier at work).
pub const TIER_MIB: f64 = 8.0;

/// Time each tier held memory, in escalation order: the VMs' KSM saving,
/// balloons, memory in zswap and memory in the swap file, summed over the
/// VMs at each tick; a tick lasts until the next sample (the last one as
/// long as the one before it).
pub fn tier_times(samples: &[Sample]) -> Vec<TierTime> {
    type Amount = fn(&crate::record::timeline::VmSample) -> f64;
    let tiers: [(&'static str, Amount); 4] = [
        ("sharing", |v| v.shared),
        ("ballooning", |v| v.balloon as f64),
        ("compression", |v| v.compressed),
        ("swapping", |v| v.swapped),
    ];
    let dt = |i: usize| match (samples.get(i), samples.get(i + 1)) {
        (Some(a), Some(b)) => b.t - a.t,
        _ if i > 0 => samples[i].t - samples[i - 1].t,
        _ => 0.0,
    };
    tiers
        .iter()
        .map(|(tier, amount)| {
            let mut t = TierTime {
                tier,
                seconds: 0.0,
                first_s: None,
                last_s: None,
                peak_mib: 0.0,
            };
            for (i, s) in samples.iter().enumerate() {
                let held: f64 = s.vms.iter().map(amount).sum();
                t.peak_mib = t.peak_mib.max(held);
                if held >= TIER_MIB {
                    t.seconds += dt(i);
                    t.first_s.get_or_insert(s.t);
                    t.last_s = Some(s.t);
                }
            }
            t
        })
        .collect()
}

/// The whole run.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Summary {
    /// Seconds covered.
    pub seconds: f64,
    /// Share of ticks per host state, percent.
    pub state_pct: BTreeMap<String, f64>,
    /// Peak host consumption.
    pub consumed_peak: u64,
    /// Host consumption at the end.
    pub consumed_end: u64,
    /// Peak KSM saving (pages_sharing).
    pub ksm_saving_peak: f64,
    /// Peak zswap pool.
    pub zswap_pool_peak: f64,
    /// Time each tier held memory, in escalation order.
    pub tiers: Vec<TierTime>,
    /// Per VM.
    pub vms: Vec<VmSummary>,
    /// Tiers that were unavailable.
    pub unavailable: Vec<String>,
    /// Guests lost.
    pub lost: Vec<String>,
    /// Every alert raised.
    pub alerts: Vec<crate::record::timeline::Alert>,
}

fn fmax(it: impl Iterator<Item = f64>) -> f64 {
    it.fold(0.0, f64::max)
}

impl Summary {
    /// Summarises a timeline.
    pub fn from_samples(samples: &[Sample], unavailable: &[String], lost: &[String]) -> Self {
        let n = samples.len().max(1) as f64;
        let state_pct = HostState::ALL
            .iter()
            .map(|st| {
                let c = samples.iter().filter(|s| s.host.state == *st).count() as f64;
                (st.name().to_string(), 100.0 * c / n)
            })
            .collect();
        let names: Vec<String> = samples
            .first()
            .map(|s| s.vms.iter().map(|v| v.name.clone()).collect())
            .unwrap_or_default();
        let vms = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let vs = || samples.iter().filter_map(move |s| s.vms.get(i));
                VmSummary {
                    name: name.clone(),
                    configured: vs().map(|v| v.configured).max().unwrap_or(0),
                    balloon_peak: vs().map(|v| v.balloon).max().unwrap_or(0),
                    balloon_end: samples
                        .iter()
                        .rev()
                        .find_map(|s| s.vms.get(i))
                        .map_or(0, |v| v.balloon),
                    actual_min: vs()
                        .filter(|v| v.actual > 0)
                        .map(|v| v.actual)
                        .min()
                        .unwrap_or(0),
                    shared_peak: fmax(vs().map(|v| v.shared)),
                    compressed_peak: fmax(vs().map(|v| v.compressed)),
                    swapped_peak: fmax(vs().map(|v| v.swapped)),
                    resident_peak: vs().map(|v| v.resident).max().unwrap_or(0),
                    first_ballooned_at: samples
                        .iter()
                        .find(|s| s.vms.get(i).is_some_and(|v| v.target < v.configured))
                        .map(|s| s.t),
                    lost: vs().any(|v| v.status == crate::record::timeline::VmStatus::Lost),
                }
            })
            .collect();
        Summary {
            seconds: samples.last().map_or(0.0, |s| s.t),
            state_pct,
            consumed_peak: samples.iter().map(|s| s.host.consumed).max().unwrap_or(0),
            consumed_end: samples.last().map_or(0, |s| s.host.consumed),
            ksm_saving_peak: fmax(
                samples
                    .iter()
                    .filter_map(|s| s.host.ksm.as_ref().map(|k| k.sharing)),
            ),
            zswap_pool_peak: fmax(samples.iter().filter_map(|s| s.host.zswap_pool)),
            tiers: tier_times(samples),
            vms,
            unavailable: unavailable.to_vec(),
            lost: lost.to_vec(),
            alerts: samples
                .iter()
                .flat_map(|s| s.alerts.iter().cloned())
                .collect(),
        }
    }

    /// Human-readable text.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "Summary ({:.0} s)", self.seconds);
        let states: Vec<String> = self
            .state_pct
            .iter()
            .filter(|(_, p)| **p > 0.0)
            .map(|(s, p)| format!("{s} {p:.0}%"))
            .collect();
        let _ = writeln!(
            o,
            "  host: peak {} MiB consumed, {} MiB at the end; time in states: {}; KSM saved up to {:.0} MiB; zswap pool up to {:.0} MiB",
            self.consumed_peak,
            self.consumed_end,
            states.join(", "),
            self.ksm_saving_peak,
            self.zswap_pool_peak
        );
        let tiers: Vec<String> = self
            .tiers
            .iter()
            .map(|t| match (t.first_s, t.last_s) {
                (Some(a), Some(b)) => format!(
                    "{} {:.0} s ({a:.0}-{b:.0} s, up to {:.0} MiB)",
                    t.tier, t.seconds, t.peak_mib
                ),
                _ => format!("{} never", t.tier),
            })
            .collect();
        let _ = writeln!(
            o,
            "  time each tier held at least {TIER_MIB:.0} MiB: {}",
            tiers.join("; ")
        );
        let mut t = text_table::new(&[
            "VM",
            "config",
            "balloon",
            "at end",
            "min size",
            "shared",
            "compr",
            "swap",
            "first ballooned",
        ]);
        text_table::left(&mut t, 8);
        for v in &self.vms {
            t.add_row([
                v.name.clone(),
                v.configured.to_string(),
                v.balloon_peak.to_string(),
                v.balloon_end.to_string(),
                v.actual_min.to_string(),
                format!("{:.0}", v.shared_peak),
                format!("{:.0}", v.compressed_peak),
                format!("{:.0}", v.swapped_peak),
                format!(
                    "{}{}",
                    v.first_ballooned_at
                        .map_or("never".to_string(), |t| format!("at {t:.0} s")),
                    if v.lost { "  LOST" } else { "" }
                ),
            ]);
        }
        for line in text_table::render(&t).lines() {
            let _ = writeln!(o, "  {line}");
        }
        for a in &self.alerts {
            let _ = writeln!(o, "  {a}");
        }
        for u in &self.unavailable {
            let _ = writeln!(o, "  note: {u}");
        }
        for l in &self.lost {
            let _ = writeln!(o, "  lost: {l}");
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::timeline::{fixtures, VmSample};

    fn sample(t: f64, balloon: u64, compressed: f64, swapped: f64) -> Sample {
        let vm = |name: &str| VmSample {
            balloon,
            target: 512 - balloon,
            actual: 512 - balloon,
            shared: 10.0,
            compressed,
            swapped,
            ..fixtures::vm(name)
        };
        fixtures::sample(t, HostState::Soft, vec![vm("a"), vm("b")])
    }

    #[test]
    fn each_tier_counts_the_ticks_it_held_enough_memory() {
        // Ticks of 2 s; balloons at 4-8 s, compression at 6 s, swap only
        // residue (3 MiB over two VMs is below the 8 MiB bar).
        let s = vec![
            sample(0.0, 0, 0.0, 0.0),
            sample(2.0, 2, 0.0, 0.0),
            sample(4.0, 10, 0.0, 1.5),
            sample(6.0, 20, 30.0, 1.5),
            sample(8.0, 10, 0.0, 0.0),
            sample(10.0, 0, 0.0, 0.0),
        ];
        let t = tier_times(&s);
        let names: Vec<&str> = t.iter().map(|t| t.tier).collect();
        assert_eq!(names, ["sharing", "ballooning", "compression", "swapping"]);
        // Two VMs sharing 10 MiB each, every tick of 2 s, the last too.
        assert_eq!(
            (t[0].seconds, t[0].first_s, t[0].last_s),
            (12.0, Some(0.0), Some(10.0))
        );
        assert_eq!(t[0].peak_mib, 20.0);
        // 2+2 MiB at 2 s is below the bar; 20, 40, 20 MiB at 4, 6, 8 s.
        assert_eq!(
            (t[1].seconds, t[1].first_s, t[1].last_s),
            (6.0, Some(4.0), Some(8.0))
        );
        assert_eq!(t[1].peak_mib, 40.0);
        assert_eq!(
            (t[2].seconds, t[2].first_s, t[2].peak_mib),
            (2.0, Some(6.0), 60.0)
        );
        assert_eq!(
            (t[3].seconds, t[3].first_s, t[3].peak_mib),
            (0.0, None, 3.0)
        );
        let text = Summary::from_samples(&s, &[], &[]).render();
        assert!(
            text.contains("ballooning 6 s (4-8 s, up to 40 MiB)"),
            "{text}"
        );
        assert!(text.contains("swapping never"), "{text}");
    }
}
