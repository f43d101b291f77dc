//! The balancing chart of `balloon-host simulate --hosts --chart`: per mode
//! (without and with balancing) each host's consumed memory against the
//! state thresholds, and a strip of the hosts' states.

use crate::engine::policy::HostState;
use crate::render::chart::{legend, state_color, Chart, DrawResult, Key, LegendLayout, VM_COLORS};
use crate::render::sim_table::gib;
use crate::sim::cluster::{ClusterComparison, ClusterResult, ClusterSeries};
use crate::sim::simulate::HOUR;
use crate::{Error, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::ops::Range;
use std::path::Path;

// The chart.

/// Image size, pixels.
const CHART_SIZE: (u32, u32) = (1200, 900);
/// Width of the y label area, so the panels line up.
const Y_LABELS: u32 = 70;
/// Right margin of every panel: the legends' column.
const RIGHT: u32 = 210;
/// Font family (DejaVu Sans via fontconfig), as the run's chart.
const FONT: &str = "sans-serif";
/// One colour per host, cycled: the run's chart's guest colours.
const HOST_COLORS: [RGBColor; 8] = VM_COLORS;

/// Draws "the balancing chart" of `c` into `svg` and `png` (1200x900): for
/// each mode, every host's free memory over time with the state thresholds
/// (and, with balancing, a mark per migration in the source host's colour),
/// and a strip per host with its state.
///
/// A comparison without series is [`Error::Invalid`]; a drawing or file
/// error is [`Error::Host`] naming the file.
pub fn render_chart(c: &ClusterComparison, svg: &Path, png: &Path) -> Result<()> {
    if c.unbalanced.series.t_h.is_empty() || c.balanced.series.t_h.is_empty() {
        return Err(Error::Invalid(
            "cluster chart: the comparison has no series".into(),
        ));
    }
    draw_to(SVGBackend::new(svg, CHART_SIZE), c, svg)?;
    draw_to(BitMapBackend::new(png, CHART_SIZE), c, png)
}

/// Draws into one backend and writes its file.
fn draw_to<DB: DrawingBackend>(backend: DB, c: &ClusterComparison, path: &Path) -> Result<()> {
    let root = backend.into_drawing_area();
    draw(&root, c)
        .and_then(|()| root.present())
        .map_err(|e| Error::Host(format!("drawing the chart {}: {e}", path.display())))
}

/// State thresholds of a host in GiB of free memory, best first.
fn thresholds_gib(c: &ClusterComparison, min_free_mib: u64) -> [(&'static str, f64); 4] {
    let th = &c.config.sim.policy.thresholds;
    let at = |pct: f64| pct / 100.0 * min_free_mib as f64 / 1024.0;
    [
        ("high", at(th.high)),
        ("clear", at(th.clear)),
        ("soft", at(th.soft)),
        ("hard", at(th.hard)),
    ]
}

/// The whole chart.
fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    c: &ClusterComparison,
) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let cfg = &c.config;
    let title = format!(
        "Balancing across hosts: {} VMs on {} hosts of {} GiB, overcommit {:.2}, policy {}",
        cfg.sim.vms,
        cfg.hosts,
        gib(c.host_capacity_mib as f64),
        cfg.sim.overcommit,
        cfg.sim.policy.kind.name()
    );
    let body = root.titled(&title, (FONT, 22))?;
    let (_, h) = body.dim_in_pixel();
    let (top, bottom) = body.split_vertically(h / 2);
    let x = 0.0..cfg.sim.hours;
    let free = [&c.unbalanced, &c.balanced]
        .into_iter()
        .flat_map(|r| r.series.free_mib.iter().flatten())
        .map(|m| m / 1024.0);
    let (lo, hi) = free.fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let top_th = thresholds_gib(c, c.unbalanced.min_free_mib)[1].1;
    let y = (lo * 1.05)..(hi.max(top_th) * 1.05).max(lo + 1.0);
    let none = format!(
        "No balancing: free memory per host (hard+low {:.1} % of host-ticks)",
        c.unbalanced.hard_low_pct
    );
    let drs = format!(
        "DRS-like balancing: {} migration{}, {} GiB copied (hard+low {:.1} % of host-ticks)",
        c.balanced.migrations,
        if c.balanced.migrations == 1 { "" } else { "s" },
        gib(c.balanced.migrated_mib),
        c.balanced.hard_low_pct
    );
    draw_mode(&top, c, &c.unbalanced, &none, x.clone(), y.clone())?;
    draw_mode(&bottom, c, &c.balanced, &drs, x, y)
}

/// Mesh and labels of a time/GiB panel.
fn mesh<'a, DB: DrawingBackend + 'a>(chart: &mut Chart<'a, DB>) -> DrawResult<DB> {
    chart
        .configure_mesh()
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.08))
        .y_desc("free memory (GiB)")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .draw()
}

/// One mode: free memory per host with thresholds and migrations, and a
/// state strip per host.
fn draw_mode<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    c: &ClusterComparison,
    r: &ClusterResult,
    caption: &str,
    x: Range<f64>,
    y: Range<f64>,
) -> DrawResult<DB> {
    let s = &r.series;
    let hosts = s.free_mib.len();
    let row = if hosts <= 8 { 12 } else { 4 };
    let strip_h = (hosts as u32 * row).clamp(12, 96) + 40;
    let (_, h) = area.dim_in_pixel();
    let (plot, strip) = area.split_vertically(h.saturating_sub(strip_h));
    let mut chart = ChartBuilder::on(&plot)
        .caption(caption, (FONT, 16))
        .margin_right(RIGHT)
        .margin_top(4)
        .y_label_area_size(Y_LABELS)
        .build_cartesian_2d(x.clone(), y.clone())?;
    mesh(&mut chart)?;
    let mut keys = Vec::new();
    for (name, at) in thresholds_gib(c, r.min_free_mib) {
        if !y.contains(&at) {
            continue;
        }
        let dark = RGBColor(90, 90, 90).mix(0.8).stroke_width(1);
        chart.draw_series(DashedLineSeries::new(
            [(x.start, at), (x.end, at)],
            6,
            4,
            dark,
        ))?;
        let label =
            TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Right, VPos::Bottom));
        chart.draw_series([Text::new(
            format!("{name} threshold"),
            (x.end - (x.end - x.start) * 0.005, at),
            label,
        )])?;
    }
    for (hst, free) in s.free_mib.iter().enumerate() {
        let color = HOST_COLORS[hst % HOST_COLORS.len()];
        let style = color.stroke_width(2);
        chart.draw_series(LineSeries::new(
            s.t_h.iter().zip(free).map(|(t, m)| (*t, m / 1024.0)),
            style,
        ))?;
        keys.push((format!("host {hst}"), Key::Line(style)));
    }
    keys.push((
        "state threshold".into(),
        Key::Dashed(RGBColor(90, 90, 90).stroke_width(1)),
    ));
    if r.balancing {
        let tick_h = c.config.sim.tick_secs / HOUR;
        let base = y.start + (y.end - y.start) * 0.035;
        chart.draw_series(r.log.iter().map(|m| {
            let color = HOST_COLORS[m.from % HOST_COLORS.len()];
            TriangleMarker::new((m.start_tick as f64 * tick_h, base), 5, color.filled())
        }))?;
        keys.push((
            "migration (from host)".into(),
            Key::Mark(RGBColor(90, 90, 90)),
        ));
    }
    for st in HostState::ALL {
        keys.push((
            format!("state {}", st.name()),
            Key::Band(state_color(st).to_rgba()),
        ));
    }
    legend(
        &plot,
        LegendLayout {
            right: RIGHT,
            row: 18,
        },
        30,
        &keys,
    )?;
    draw_strip(&strip, s, x)
}

/// Per host, its state over time.
fn draw_strip<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    s: &ClusterSeries,
    x: Range<f64>,
) -> DrawResult<DB> {
    let hosts = s.state.len().max(1);
    let mut chart = ChartBuilder::on(area)
        .margin_right(RIGHT)
        .margin_bottom(4)
        .x_label_area_size(36)
        .y_label_area_size(Y_LABELS)
        .build_cartesian_2d(x, 0.0..hosts as f64)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(WHITE.mix(0.0))
        .x_desc("time (h)")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .draw()?;
    for (h, states) in s.state.iter().enumerate() {
        // Host 0 on top.
        let (y0, y1) = ((hosts - 1 - h) as f64 + 0.1, (hosts - h) as f64 - 0.1);
        let mut from = 0.0;
        let mut rects = Vec::new();
        for (t, st) in s.t_h.iter().zip(states) {
            rects.push(Rectangle::new(
                [(from, y0), (*t, y1)],
                state_color(*st).filled(),
            ));
            from = *t;
        }
        chart.draw_series(rects)?;
    }
    let left = TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
    // Chart coordinates are the backend's; the labels go in `area`'s.
    let top = area.get_base_pixel().1;
    if hosts <= 8 {
        for h in 0..hosts {
            let py = chart.backend_coord(&(0.0, (hosts - h) as f64 - 0.5)).1 - top;
            area.draw(&Text::new(
                format!("host {h}"),
                (Y_LABELS as i32 - 6, py),
                left.clone(),
            ))?;
        }
    } else {
        let py = chart.backend_coord(&(0.0, hosts as f64 / 2.0)).1 - top;
        area.draw(&Text::new("hosts", (Y_LABELS as i32 - 6, py), left))?;
    }
    Ok(())
}
