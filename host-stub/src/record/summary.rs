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
