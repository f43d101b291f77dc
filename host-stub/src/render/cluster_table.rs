//! `balloon-host simulate --hosts`'s output: the balancing comparison as a
//! text table or as JSON.

use crate::render::sim_table::{consolidation_cell, gib};
use crate::render::text_table;
use crate::sim::cluster::{ClusterComparison, HostSummary};
use crate::sim::simulate::{CONSOLIDATION_MAX_HARD_LOW_PCT, CONSOLIDATION_RANGE};
use crate::{Error, Result};

/// Column groups of the table: (group title, [(header, width)]).
const COLUMNS: [(&str, &[&str]); 4] = [
    ("", &["balancing", "consol."]),
    (
        "time in state, % of host-ticks",
        &[
            "high", "clear", "soft", "hard", "low", "h+l", "worst", "soft+",
        ],
    ),
    ("migrations", &["count", "GiB", "VM-min"]),
    (
        "guest pain",
        &["squeeze", "cache", "refault z/s", "oom", "over"],
    ),
];

/// A host list: "0: 40 VMs 150.0 GiB (h+l 3.2 %), 1: ...".
fn hosts_line(hosts: &[HostSummary], end: bool) -> String {
    hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let (vms, mib) = if end {
                (h.vms_end, h.configured_end_mib)
            } else {
                (h.vms_start, h.configured_start_mib)
            };
            format!(
                "{i}: {vms} VMs {} GiB, h+l {:.1} %",
                gib(mib as f64),
                h.hard_low_pct
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A text table of a comparison: a header naming the run, one
/// row per mode, the hosts before and after, and a legend.
pub fn render_table(c: &ClusterComparison) -> String {
    use std::fmt::Write;
    let cfg = &c.config;
    let sim = &cfg.sim;
    let b = &cfg.balance;
    let minutes = |ticks: u32| f64::from(ticks) * sim.tick_secs / 60.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} VMs, {} GiB configured on {} hosts of {} GiB (overcommit {:.2}), {} h at {} s ticks, \
         seed {}, policy {} on every host, minFree {} MiB per host",
        sim.vms,
        gib(c.configured_mib as f64),
        cfg.hosts,
        gib(c.host_capacity_mib as f64),
        sim.overcommit,
        sim.hours,
        sim.tick_secs,
        sim.seed,
        sim.policy.kind.name(),
        c.unbalanced.min_free_mib
    );
    let _ = writeln!(
        out,
        "balancer: move after {} ticks ({} min) in soft or worse; cooldown {} ticks ({} min); \
         link {} MiB/s; at most {} in flight; destination keeps {} % of capacity beyond leaving soft",
        b.sustain_ticks,
        minutes(b.sustain_ticks),
        b.cooldown_ticks,
        minutes(b.cooldown_ticks),
        b.link_mib_s,
        b.max_concurrent,
        b.dest_margin_pct
    );
    let _ = writeln!(out, "placement: {}", cfg.placement.name());
    let _ = writeln!(
        out,
        "  without balancing: {}",
        hosts_line(&c.unbalanced.hosts, false)
    );
    let _ = writeln!(
        out,
        "  with, at the end:  {}",
        hosts_line(&c.balanced.hosts, true)
    );
    let _ = writeln!(out);
    let mut table = text_table::grouped(&COLUMNS);
    for (name, r) in [("none", &c.unbalanced), ("drs", &c.balanced)] {
        let s = &r.states;
        let p = &r.pain;
        let pct = |v: f64| format!("{v:.1}");
        let cells = [
            name.to_string(),
            consolidation_cell(r.consolidation),
            pct(s.high),
            pct(s.clear),
            pct(s.soft),
            pct(s.hard),
            pct(s.low),
            pct(r.hard_low_pct),
            pct(r.worst_host_hard_low_pct),
            pct(r.soft_plus_pct),
            r.migrations.to_string(),
            gib(r.migrated_mib),
            format!("{:.1}", r.migrating_vm_s / 60.0),
            gib(p.squeeze_mib_h),
            gib(p.cache_short_mib_h),
            format!("{}/{}", gib(p.refault_zswap_mib), gib(p.refault_swap_mib)),
            p.oom_deflates.to_string(),
            gib(p.overflow.mean_mib),
        ];
        table.add_row(cells.to_vec());
    }
    out.push_str(&table.render());
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "consol.: highest overcommit with the cluster in hard+low <= {CONSOLIDATION_MAX_HARD_LOW_PCT} % \
         of host-ticks (searched in {:.2}..{:.2}, same placement); worst: the worst host's h+l",
        CONSOLIDATION_RANGE.0, CONSOLIDATION_RANGE.1
    );
    let _ = writeln!(
        out,
        "migrations: count, GiB copied, VM-minutes under migration (guest slowed); squeeze: GiB-h \
         guests spent below their own floor; cache: GiB-h of page cache lost to the balloon; \
         refault: GiB read back from zswap/swap; oom: OOM deflations; over: mean GiB consumed \
         above capacity, summed over hosts"
    );
    out
}

/// The comparison as pretty-printed JSON.
pub fn render_json(c: &ClusterComparison) -> Result<String> {
    serde_json::to_string_pretty(c).map_err(|e| Error::Invalid(format!("cluster: JSON: {e}")))
}
