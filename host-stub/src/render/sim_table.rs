//! `balloon-host simulate`'s output: the comparison as a text table (one
//! row per policy, grouped columns, a legend) or as JSON.

use crate::render::text_table;
use crate::sim::simulate::{
    Comparison, Consolidation, CONSOLIDATION_MAX_HARD_LOW_PCT, CONSOLIDATION_RANGE,
};
use crate::{Error, Result};

/// MiB as GiB with one decimal.
pub(crate) fn gib(mib: f64) -> String {
    format!("{:.1}", mib / 1024.0)
}

/// The consolidation column: "2.31", ">=4.00", "<0.50" or "-".
pub(crate) fn consolidation_cell(c: Option<Consolidation>) -> String {
    match c {
        None => "-".into(),
        Some(Consolidation {
            first_failing: None,
            max_overcommit: Some(m),
            ..
        }) => format!(">={m:.2}"),
        Some(Consolidation {
            max_overcommit: Some(m),
            ..
        }) => format!("{m:.2}"),
        Some(Consolidation {
            max_overcommit: None,
            first_failing,
            ..
        }) => format!("<{:.2}", first_failing.unwrap_or(CONSOLIDATION_RANGE.0)),
    }
}

/// Column groups of the table: (group title, [(header, width)]).
const COLUMNS: [(&str, &[&str]); 4] = [
    ("", &["policy", "consol.", "sq@max"]),
    (
        "time in state, %",
        &["high", "clear", "soft", "hard", "low", "h+l"],
    ),
    (
        "reclaimed, mean GiB",
        &["balloon", "shared", "compr", "swap", "total"],
    ),
    ("guest pain", &["squeeze", "cache", "refault z/s", "over"]),
];

/// A text table of a comparison: a header naming the run, one
/// row per policy, and a legend.
pub fn render_table(c: &Comparison) -> String {
    use std::fmt::Write;
    let cfg = &c.config;
    let min_free = c.results.first().map_or(0, |r| r.min_free_mib);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} VMs, {} GiB configured on a {} GiB host (overcommit {:.2}), {} h at {} s ticks, seed {}, minFree {} MiB",
        cfg.vms,
        gib(c.configured_mib as f64),
        gib(c.capacity_mib as f64),
        cfg.overcommit,
        cfg.hours,
        cfg.tick_secs,
        cfg.seed,
        min_free
    );
    let mix: Vec<String> = c
        .mix
        .iter()
        .map(|k| {
            format!(
                "{} {} ({} GiB)",
                k.kind.name(),
                k.vms,
                gib(k.configured_mib as f64)
            )
        })
        .collect();
    let _ = writeln!(out, "mix: {}", mix.join(", "));
    let _ = writeln!(out);
    let mut table = text_table::grouped(&COLUMNS);
    for r in &c.results {
        let s = &r.states;
        let rc = &r.reclaimed;
        let p = &r.pain;
        let pct = |v: f64| format!("{v:.1}");
        let sq_at_max = r
            .consolidation
            .and_then(|c| c.pain_at_max)
            .map_or("-".into(), |p| gib(p.squeeze_mib_h));
        let cells = [
            r.policy.name().to_string(),
            consolidation_cell(r.consolidation),
            sq_at_max,
            pct(s.high),
            pct(s.clear),
            pct(s.soft),
            pct(s.hard),
            pct(s.low),
            pct(r.hard_low_pct),
            gib(rc.balloon.mean_mib),
            gib(rc.shared.mean_mib),
            gib(rc.compressed.mean_mib),
            gib(rc.swapped.mean_mib),
            gib(rc.total.mean_mib),
            gib(p.squeeze_mib_h),
            gib(p.cache_short_mib_h),
            format!("{}/{}", gib(p.refault_zswap_mib), gib(p.refault_swap_mib)),
            gib(p.overflow.mean_mib),
        ];
        table.add_row(cells.to_vec());
    }
    out.push_str(&table.render());
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "consol.: highest overcommit with hard+low <= {CONSOLIDATION_MAX_HARD_LOW_PCT} % of the time \
         (searched in {:.2}..{:.2}); sq@max: squeeze there, GiB-h",
        CONSOLIDATION_RANGE.0, CONSOLIDATION_RANGE.1
    );
    let _ = writeln!(
        out,
        "squeeze: GiB-h guests spent below their own floor; cache: GiB-h of page cache lost to the balloon; \
         refault: GiB read back from zswap/swap; over: mean GiB consumed above capacity"
    );
    out
}

/// The comparison as pretty-printed JSON.
pub fn render_json(c: &Comparison) -> Result<String> {
    serde_json::to_string_pretty(c).map_err(|e| Error::Invalid(format!("simulate: JSON: {e}")))
}
