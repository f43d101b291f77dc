//! The side-by-side table: one row per observation, balloon_rs's value, the
//! C driver's, and how they compare.

use super::{Kind, Observation, Outcome};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, ContentArrangement, Table};

/// One row of the table.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Row {
    /// The scenario's name.
    pub scenario: String,
    /// What was observed.
    pub what: String,
    /// balloon_rs's value, `—` if it has none.
    pub balloon_rs: String,
    /// The C driver's value, `—` if it has none.
    pub c: String,
    /// `same`, `differs`, a ratio (`1.32×`, balloon_rs / C), or empty.
    pub verdict: String,
}

const NONE: &str = "—";

/// How two values of one observation compare.
fn verdict(kind: Kind, rs: Option<&Observation>, c: Option<&Observation>) -> String {
    let (Some(rs), Some(c)) = (rs, c) else {
        return String::new();
    };
    match kind {
        Kind::Same if rs.value == c.value => "same".into(),
        Kind::Same => "differs".into(),
        Kind::Ratio => match (rs.number, c.number) {
            (Some(a), Some(b)) if b != 0.0 && a.is_finite() && b.is_finite() => {
                format!("{:.2}×", a / b)
            }
            _ => String::new(),
        },
        Kind::Info => String::new(),
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let cut: String = s.chars().take(max - 1).collect();
    format!("{cut}…")
}

/// The rows for one scenario's two outcomes: every observation either driver
/// made, in the order first seen (balloon_rs's first), then kernel reports,
/// the result, and the time taken.
pub fn scenario_rows(rs: &Outcome, c: &Outcome) -> Vec<Row> {
    let mut order: Vec<(&str, Kind)> = Vec::new();
    for o in rs.observations.iter().chain(&c.observations) {
        if !order.iter().any(|(w, _)| *w == o.what) {
            order.push((&o.what, o.kind));
        }
    }
    let find = |out: &'_ Outcome, what: &str| -> Option<Observation> {
        out.observations.iter().find(|o| o.what == what).cloned()
    };
    let mut rows: Vec<Row> = order
        .iter()
        .map(|(what, kind)| {
            let (a, b) = (find(rs, what), find(c, what));
            Row {
                scenario: rs.scenario.to_string(),
                what: what.to_string(),
                balloon_rs: a.as_ref().map_or(NONE.into(), |o| o.value.clone()),
                c: b.as_ref().map_or(NONE.into(), |o| o.value.clone()),
                verdict: verdict(*kind, a.as_ref(), b.as_ref()),
            }
        })
        .collect();
    let reports = |o: &Outcome| match o.kernel_reports.first() {
        None => "0".to_string(),
        Some(first) => format!("{} ({})", o.kernel_reports.len(), shorten(first, 50)),
    };
    let tail = [
        ("kernel reports", reports(rs), reports(c), Kind::Same),
        (
            "result",
            shorten(&rs.result(), 60),
            shorten(&c.result(), 60),
            Kind::Same,
        ),
        (
            "time with boot",
            format!("{:.0} s", rs.secs),
            format!("{:.0} s", c.secs),
            Kind::Info,
        ),
    ];
    for (what, a, b, kind) in tail {
        let same = match kind {
            Kind::Same if a == b => "same",
            Kind::Same => "differs",
            _ => "",
        };
        rows.push(Row {
            scenario: rs.scenario.to_string(),
            what: what.to_string(),
            balloon_rs: a,
            c: b,
            verdict: same.to_string(),
        });
    }
    rows
}

/// The table as text, sized to `width` columns.
pub fn render(rows: &[Row], width: u16) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(width)
        .set_header([
            "scenario",
            "observed",
            "balloon_rs",
            "C (virtio_balloon)",
            "",
        ]);
    let mut last = "";
    for r in rows {
        // The scenario's name on its first row only.
        let name = if r.scenario == last { "" } else { &r.scenario };
        last = &r.scenario;
        t.add_row([
            Cell::new(name),
            Cell::new(&r.what),
            Cell::new(&r.balloon_rs),
            Cell::new(&r.c),
            Cell::new(&r.verdict),
        ]);
    }
    t.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::Observations;

    fn outcome(driver: &str, f: impl FnOnce(&mut Observations)) -> Outcome {
        let mut obs = Observations::default();
        f(&mut obs);
        Outcome {
            scenario: "inflate-deflate",
            driver: driver.into(),
            observations: obs.0,
            kernel_reports: Vec::new(),
            error: None,
            secs: 30.0,
            kept: None,
        }
    }

    #[test]
    fn same_values_say_same_and_different_ones_differs() {
        let rs = outcome("balloon_rs", |o| {
            o.yes_no("reached", true);
            o.same("pages", 65536);
        });
        let c = outcome("virtio_balloon", |o| {
            o.yes_no("reached", true);
            o.same("pages", 65535);
        });
        let rows = scenario_rows(&rs, &c);
        assert_eq!(rows[0].verdict, "same");
        assert_eq!(rows[1].verdict, "differs");
        assert_eq!(
            (rows[1].balloon_rs.as_str(), rows[1].c.as_str()),
            ("65536", "65535")
        );
    }

    #[test]
    fn measurements_show_the_ratio_and_info_nothing() {
        let rs = outcome("balloon_rs", |o| {
            o.measure("inflate rate", 300.0, "MiB/s", 0);
            o.info("actual", "512 → 256 MiB");
        });
        let c = outcome("virtio_balloon", |o| {
            o.measure("inflate rate", 200.0, "MiB/s", 0);
            o.info("actual", "512 → 300 → 256 MiB");
        });
        let rows = scenario_rows(&rs, &c);
        assert_eq!(rows[0].balloon_rs, "300 MiB/s");
        assert_eq!(rows[0].verdict, "1.50×");
        assert_eq!(rows[1].verdict, "");
        // A zero denominator gives no ratio rather than inf.
        let c0 = outcome("virtio_balloon", |o| {
            o.measure("inflate rate", 0.0, "MiB/s", 0)
        });
        assert_eq!(scenario_rows(&rs, &c0)[0].verdict, "");
    }

    #[test]
    fn an_observation_only_one_driver_made_shows_a_dash() {
        let rs = outcome("balloon_rs", |o| o.same("floor holds", 3));
        let c = outcome("virtio_balloon", |_| {});
        let rows = scenario_rows(&rs, &c);
        assert_eq!(rows[0].c, NONE);
        assert_eq!(rows[0].verdict, "");
    }

    #[test]
    fn reports_errors_and_time_end_each_scenario() {
        let rs = outcome("balloon_rs", |_| {});
        let mut c = outcome("virtio_balloon", |_| {});
        c.kernel_reports = vec!["812: WARNING: CPU: 1 PID: 9 at mm/page_alloc.c".into()];
        c.error = Some("QEMU exited unexpectedly (signal 9)\n--- console tail ---".into());
        let rows = scenario_rows(&rs, &c);
        let by = |w: &str| {
            rows.iter()
                .find(|r| r.what == w)
                .cloned()
                .unwrap_or_else(|| panic!("{w}"))
        };
        assert_eq!(by("kernel reports").balloon_rs, "0");
        assert!(by("kernel reports").c.starts_with("1 (812: WARNING"));
        assert_eq!(by("kernel reports").verdict, "differs");
        assert_eq!(by("result").balloon_rs, "ok");
        assert_eq!(by("result").c, "QEMU exited unexpectedly (signal 9)");
        assert_eq!(by("time with boot").balloon_rs, "30 s");
    }

    #[test]
    fn the_table_names_each_scenario_once() {
        let rs = outcome("balloon_rs", |o| {
            o.yes_no("a", true);
            o.yes_no("b", true);
        });
        let c = outcome("virtio_balloon", |o| {
            o.yes_no("a", true);
            o.yes_no("b", false);
        });
        let text = render(&scenario_rows(&rs, &c), 120);
        assert_eq!(text.matches("inflate-deflate").count(), 1, "{text}");
        assert!(text.contains("differs") && text.contains("same"), "{text}");
    }
}
