//! The run's chart: memory per tier over time, the way a hypervisor's
//! performance charts show it, drawn from the timeline into an SVG and a PNG.
//!
//! Three rows share the time axis:
//! - the host: memory reclaimed per tier, stacked (balloon, shared,
//!   compressed, swapped), with the host's consumed memory and capacity;
//! - a strip with the host state (high, clear, soft, hard, low);
//! - the guests: each one's resident memory (solid) and size (`actual`,
//!   configured - balloon; dashed), so it shows which guest was ballooned
//!   when.

use crate::engine::policy::HostState;
use crate::record::timeline::{Sample, VmSample};
use crate::{Error, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::ops::Range;
use std::path::Path;

/// Image size, pixels.
const SIZE: (u32, u32) = (1200, 760);
/// Width of the y label area, so the three rows line up.
const Y_LABELS: u32 = 80;
/// Right margin of every row: the legends' column.
const RIGHT: u32 = 190;
/// Where legends start below the top of their row.
const LEGEND_TOP: i32 = 40;
/// Height of the host state strip.
const STRIP: u32 = 34;
/// Font family (DejaVu Sans via fontconfig).
const FONT: &str = "sans-serif";

/// Reclaim tiers in stacking order, with their colours.
const TIERS: [(&str, RGBColor); 4] = [
    ("balloon", RGBColor(66, 133, 244)),
    ("shared (KSM)", RGBColor(52, 168, 83)),
    ("compressed (zswap)", RGBColor(171, 71, 188)),
    ("swapped", RGBColor(234, 67, 53)),
];

/// One colour per guest (per host in the balancing chart), cycled.
pub(crate) const VM_COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

pub(crate) type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;
pub(crate) type DrawResult<DB> =
    std::result::Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// Draws the chart of `samples` into `svg` and `png` (1200x760).
///
/// An empty timeline is [`Error::Invalid`]; a drawing or file error is
/// [`Error::Host`] naming the file.
pub fn render(samples: &[Sample], title: &str, svg: &Path, png: &Path) -> Result<()> {
    if samples.is_empty() {
        return Err(Error::Invalid(format!(
            "chart {title:?}: the timeline has no samples"
        )));
    }
    draw_to(SVGBackend::new(svg, SIZE), samples, title, svg)?;
    draw_to(BitMapBackend::new(png, SIZE), samples, title, png)
}

/// Draws into one backend and writes its file.
fn draw_to<DB: DrawingBackend>(
    backend: DB,
    samples: &[Sample],
    title: &str,
    path: &Path,
) -> Result<()> {
    let root = backend.into_drawing_area();
    draw(&root, samples, title)
        .and_then(|()| root.present())
        .map_err(|e| Error::Host(format!("drawing the chart {}: {e}", path.display())))
}

/// The whole chart on one drawing area.
fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    samples: &[Sample],
    title: &str,
) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let body = root.titled(title, (FONT, 26))?;
    let (_, h) = body.dim_in_pixel();
    let (host, rest) = body.split_vertically(h * 52 / 100);
    let (strip, guests) = rest.split_vertically(STRIP);
    let x = span(samples.iter().map(|s| s.t), 1.0);
    draw_host(&host, samples, x.clone())?;
    draw_states(&strip, samples, x.clone())?;
    draw_guests(&guests, samples, x)
}

/// Host-wide memory reclaimed per tier at one tick, MiB, in [`TIERS`] order.
fn tiers(s: &Sample) -> [f64; 4] {
    let sum = |f: fn(&VmSample) -> f64| s.vms.iter().map(f).sum::<f64>();
    [
        sum(|v| v.balloon as f64),
        sum(|v| v.shared),
        sum(|v| v.compressed),
        sum(|v| v.swapped),
    ]
}

/// `min..max` of the finite values, at least `min_width` wide.
fn span(values: impl Iterator<Item = f64>, min_width: f64) -> Range<f64> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return 0.0..min_width;
    }
    lo..hi.max(lo + min_width)
}

/// A y range from 0 to a little above the largest value.
fn y_range(values: impl Iterator<Item = f64>) -> Range<f64> {
    0.0..span(values.chain([0.0]), 64.0).end * 1.08
}

/// How a legend entry is marked.
#[derive(Clone, Copy)]
pub(crate) enum Key {
    /// A filled area.
    Band(RGBAColor),
    /// A solid line.
    Line(ShapeStyle),
    /// A dashed line.
    Dashed(ShapeStyle),
    /// A triangle.
    Mark(RGBColor),
}

/// Where a legend goes: the width of the right margin it fills, and the
/// height of one entry (pixels).
#[derive(Clone, Copy)]
pub(crate) struct LegendLayout {
    pub(crate) right: u32,
    pub(crate) row: i32,
}

/// This chart's legends.
const LEGEND: LegendLayout = LegendLayout {
    right: RIGHT,
    row: 20,
};

/// A legend in the right margin of an area, from `top` pixels down;
/// entries that do not fit are summed up as "+N more".
pub(crate) fn legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    layout: LegendLayout,
    top: i32,
    entries: &[(String, Key)],
) -> DrawResult<DB> {
    let row = layout.row;
    let (w, h) = area.dim_in_pixel();
    let x = w as i32 - layout.right as i32 + 16;
    let font = TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    let rows = ((h as i32 - top) / row).max(1) as usize;
    let shown = if entries.len() > rows {
        rows - 1
    } else {
        entries.len()
    };
    for (i, (label, key)) in entries[..shown].iter().enumerate() {
        let y = top + row * i as i32;
        let line = |from: i32, to: i32, style: ShapeStyle| {
            PathElement::new(vec![(x + from, y), (x + to, y)], style)
        };
        match *key {
            Key::Band(color) => area.draw(&Rectangle::new(
                [(x, y - 6), (x + 24, y + 6)],
                color.filled(),
            ))?,
            Key::Line(style) => area.draw(&line(0, 24, style))?,
            Key::Dashed(style) => {
                area.draw(&line(0, 9, style))?;
                area.draw(&line(15, 24, style))?;
            }
            Key::Mark(color) => area.draw(&TriangleMarker::new((x + 12, y), 6, color.filled()))?,
        }
        area.draw(&Text::new(label.as_str(), (x + 32, y), font.clone()))?;
    }
    if shown < entries.len() {
        let more = format!("+{} more", entries.len() - shown);
        area.draw(&Text::new(more, (x + 32, top + row * shown as i32), font))?;
    }
    Ok(())
}

/// Mesh and axis labels of a time/MiB panel.
fn mesh<'a, DB: DrawingBackend + 'a>(chart: &mut Chart<'a, DB>, x_desc: &str) -> DrawResult<DB> {
    let x = chart.x_range();
    // Enough decimals that ticks of short runs stay distinct.
    let decimals = match x.end - x.start {
        w if w >= 20.0 => 0,
        w if w >= 2.0 => 1,
        _ => 2,
    };
    let x_label = move |v: &f64| format!("{v:.decimals$}");
    chart
        .configure_mesh()
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.08))
        .x_desc(x_desc)
        .y_desc("memory (MiB)")
        .x_label_formatter(&x_label)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .draw()
}

/// Top row: stacked reclaim per tier, consumed memory and capacity.
fn draw_host<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    samples: &[Sample],
    x: Range<f64>,
) -> DrawResult<DB> {
    let stacks: Vec<[f64; 4]> = samples.iter().map(tiers).collect();
    let y = y_range(samples.iter().zip(&stacks).flat_map(|(s, st)| {
        [
            s.host.capacity as f64,
            s.host.consumed as f64,
            st.iter().sum(),
        ]
    }));
    let mut chart = ChartBuilder::on(area)
        .caption(
            "Host: memory reclaimed per tier (stacked), consumed and capacity",
            (FONT, 16),
        )
        .margin_right(RIGHT)
        .x_label_area_size(24)
        .y_label_area_size(Y_LABELS)
        .build_cartesian_2d(x, y)?;
    mesh(&mut chart, "")?;
    let mut keys = Vec::new();
    let cumulative = |st: &[f64; 4], k: usize| st[..k].iter().sum::<f64>();
    for (k, (name, color)) in TIERS.iter().enumerate() {
        let upper = samples
            .iter()
            .zip(&stacks)
            .map(|(s, st)| (s.t, cumulative(st, k + 1)));
        let lower = samples
            .iter()
            .zip(&stacks)
            .rev()
            .map(|(s, st)| (s.t, cumulative(st, k)));
        let fill = color.mix(0.6);
        chart.draw_series([Polygon::new(
            upper.chain(lower).collect::<Vec<_>>(),
            fill.filled(),
        )])?;
        keys.push((name.to_string(), Key::Band(fill)));
    }
    let consumed = BLACK.stroke_width(2);
    chart.draw_series(LineSeries::new(
        samples.iter().map(|s| (s.t, s.host.consumed as f64)),
        consumed,
    ))?;
    keys.push(("consumed".into(), Key::Line(consumed)));
    let capacity = RGBColor(200, 0, 0).stroke_width(2);
    let points = samples.iter().map(|s| (s.t, s.host.capacity as f64));
    chart.draw_series(DashedLineSeries::new(points, 10, 6, capacity))?;
    keys.push(("capacity".into(), Key::Dashed(capacity)));
    legend(area, LEGEND, LEGEND_TOP, &keys)
}

/// The colour of a host state.
pub(crate) fn state_color(s: HostState) -> RGBColor {
    match s {
        HostState::High => RGBColor(129, 199, 132),
        HostState::Clear => RGBColor(144, 202, 249),
        HostState::Soft => RGBColor(255, 224, 130),
        HostState::Hard => RGBColor(255, 167, 38),
        HostState::Low => RGBColor(229, 57, 53),
    }
}

/// Runs of equal host state: (state, from, to) in seconds; a sample's
/// state lasts until the next sample, the last one's until `end`.
fn state_runs(samples: &[Sample], end: f64) -> Vec<(HostState, f64, f64)> {
    let mut runs: Vec<(HostState, f64, f64)> = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        let end = samples.get(i + 1).map_or(end, |n| n.t);
        match runs.last_mut() {
            Some(run) if run.0 == s.host.state => run.2 = end,
            _ => runs.push((s.host.state, s.t, end)),
        }
    }
    runs
}

/// Middle row: the host state over time, named where there is room.
fn draw_states<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    samples: &[Sample],
    x: Range<f64>,
) -> DrawResult<DB> {
    let (width, end) = (x.end - x.start, x.end);
    let mut chart = ChartBuilder::on(area)
        .margin_right(RIGHT)
        .margin_top(4)
        .margin_bottom(4)
        .y_label_area_size(Y_LABELS)
        .build_cartesian_2d(x, 0.0..1.0)?;
    let runs = state_runs(samples, end);
    chart.draw_series(
        runs.iter().map(|&(s, from, to)| {
            Rectangle::new([(from, 0.0), (to, 1.0)], state_color(s).filled())
        }),
    )?;
    let px_per_s = f64::from(chart.plotting_area().dim_in_pixel().0) / width;
    let centered =
        TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
    chart.draw_series(
        runs.iter()
            .filter(|(_, from, to)| (to - from) * px_per_s >= 44.0)
            .map(|&(s, from, to)| Text::new(s.name(), ((from + to) / 2.0, 0.5), centered.clone())),
    )?;
    let left = TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
    let (_, h) = area.dim_in_pixel();
    area.draw(&Text::new(
        "host state",
        (Y_LABELS as i32 - 6, h as i32 / 2),
        left,
    ))
}

/// Guests in order of first appearance.
fn vm_names(samples: &[Sample]) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    for v in samples.iter().flat_map(|s| &s.vms) {
        if !names.contains(&v.name.as_str()) {
            names.push(&v.name);
        }
    }
    names
}

/// One guest's value over time, where it has a sample.
fn vm_points<'a>(
    samples: &'a [Sample],
    name: &'a str,
    value: fn(&VmSample) -> u64,
) -> impl Iterator<Item = (f64, f64)> + Clone + 'a {
    samples.iter().filter_map(move |s| {
        s.vms
            .iter()
            .find(|v| v.name == name)
            .map(|v| (s.t, value(v) as f64))
    })
}

/// Bottom row: each guest's resident memory and size.
fn draw_guests<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    samples: &[Sample],
    x: Range<f64>,
) -> DrawResult<DB> {
    let vms = samples.iter().flat_map(|s| &s.vms);
    let y = y_range(vms.flat_map(|v| [v.resident as f64, v.actual as f64]));
    let mut chart = ChartBuilder::on(area)
        .caption(
            "Guests: resident memory (solid) and size after ballooning (dashed)",
            (FONT, 16),
        )
        .margin_right(RIGHT)
        .margin_bottom(6)
        .x_label_area_size(44)
        .y_label_area_size(Y_LABELS)
        .build_cartesian_2d(x, y)?;
    mesh(&mut chart, "time (s)")?;
    let grey = RGBColor(110, 110, 110).stroke_width(2);
    let mut keys = vec![
        ("resident".to_string(), Key::Line(grey)),
        ("size".to_string(), Key::Dashed(grey)),
    ];
    for (i, name) in vm_names(samples).into_iter().enumerate() {
        let color = VM_COLORS[i % VM_COLORS.len()];
        let solid = color.stroke_width(2);
        chart.draw_series(LineSeries::new(
            vm_points(samples, name, |v| v.resident),
            solid,
        ))?;
        let dashed = color.mix(0.6).stroke_width(2);
        chart.draw_series(DashedLineSeries::new(
            vm_points(samples, name, |v| v.actual),
            8,
            5,
            dashed,
        ))?;
        keys.push((name.to_string(), Key::Line(solid)));
    }
    legend(area, LEGEND, LEGEND_TOP, &keys)
}

/// Right-sizing chart: one panel per VM of `report` with the guest's
/// memory in use over time (total − available; the timelines one after
/// the other), its size after ballooning, its configured size and the
/// recommended size. Written to `svg` and `png` (1200 wide, 300 per row of
/// two panels).
///
/// A report without VMs or timelines without samples is
/// [`Error::Invalid`]; a drawing or file error is [`Error::Host`].
pub fn render_report(
    timelines: &[Vec<Sample>],
    report: &crate::record::report::Report,
    svg: &Path,
    png: &Path,
) -> Result<()> {
    // The timelines end to end: each starts where the previous ended.
    let mut samples: Vec<Sample> = Vec::new();
    for tl in timelines {
        let (first, offset) = match (tl.first(), samples.last()) {
            (Some(f), Some(l)) => (f.t, l.t + 1.0),
            (Some(f), None) => (f.t, 0.0),
            (None, _) => continue,
        };
        samples.extend(tl.iter().map(|s| Sample {
            t: s.t - first + offset,
            ..s.clone()
        }));
    }
    if samples.is_empty() || report.vms.is_empty() {
        return Err(Error::Invalid("report chart: no samples or no VMs".into()));
    }
    let rows = report.vms.len().div_ceil(2) as u32;
    let size = (SIZE.0, 60 + 300 * rows);
    report_to(SVGBackend::new(svg, size), &samples, report, svg)?;
    report_to(BitMapBackend::new(png, size), &samples, report, png)
}

/// Draws the right-sizing chart into one backend and writes its file.
fn report_to<DB: DrawingBackend>(
    backend: DB,
    samples: &[Sample],
    report: &crate::record::report::Report,
    path: &Path,
) -> Result<()> {
    let root = backend.into_drawing_area();
    draw_report(&root, samples, report)
        .and_then(|()| root.present())
        .map_err(|e| Error::Host(format!("drawing the chart {}: {e}", path.display())))
}

fn draw_report<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    samples: &[Sample],
    report: &crate::record::report::Report,
) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let body = root.titled(
        "Right-sizing: guest memory in use against configured and recommended size",
        (FONT, 22),
    )?;
    let rows = report.vms.len().div_ceil(2);
    let panels = body.split_evenly((rows, 2));
    let x = span(samples.iter().map(|s| s.t), 1.0);
    for (vm, area) in report.vms.iter().zip(panels.iter()) {
        let used: Vec<(f64, f64)> = samples
            .iter()
            .filter_map(|s| {
                let v = s.vms.iter().find(|v| v.name == vm.name)?;
                Some((s.t, crate::record::report::used_mib(v)?))
            })
            .collect();
        let y = y_range(used.iter().map(|p| p.1).chain([vm.configured as f64]));
        let caption = match vm.recommended {
            Some(r) => format!(
                "{}: configured {} MiB, recommended {r} MiB",
                vm.name, vm.configured
            ),
            None => format!(
                "{}: configured {} MiB, no guest statistics",
                vm.name, vm.configured
            ),
        };
        let mut chart = ChartBuilder::on(area)
            .caption(caption, (FONT, 15))
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(x.clone(), y)?;
        mesh(&mut chart, "time (s)")?;
        let blue = VM_COLORS[0];
        chart
            .draw_series(LineSeries::new(used, blue.stroke_width(2)))?
            .label("in use")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], blue.stroke_width(2))
            });
        let grey = RGBColor(120, 120, 120);
        chart
            .draw_series(DashedLineSeries::new(
                vm_points(samples, &vm.name, |v| v.actual),
                6,
                4,
                grey.stroke_width(1),
            ))?
            .label("size after ballooning")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], grey.stroke_width(1))
            });
        let flat = |v: f64| [(x.start, v), (x.end, v)];
        let black = BLACK.stroke_width(2);
        chart
            .draw_series(LineSeries::new(flat(vm.configured as f64), black))?
            .label("configured")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], black));
        if let Some(r) = vm.recommended {
            let green = RGBColor(44, 160, 44).stroke_width(2);
            chart
                .draw_series(DashedLineSeries::new(flat(r as f64), 10, 5, green))?
                .label("recommended")
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], green));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::MiddleRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font((FONT, 12))
            .draw()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::timeline::{HostSample, VmStatus};
    use std::collections::BTreeMap;

    /// 60 ticks of 3 guests on a 4 GiB host going high -> clear -> soft ->
    /// hard -> low and back.
    fn timeline() -> Vec<Sample> {
        (0..60)
            .map(|i| {
                let t = i as f64 * 2.0;
                let pressure = (i as f64 / 59.0 * std::f64::consts::PI).sin();
                let state = match (pressure * 5.0) as usize {
                    0 => HostState::High,
                    1 => HostState::Clear,
                    2 => HostState::Soft,
                    3 => HostState::Hard,
                    _ => HostState::Low,
                };
                let vms: Vec<VmSample> = (0..3u64)
                    .map(|k| {
                        let configured = 1024 + 512 * k;
                        let balloon = (pressure * 300.0 * (3 - k) as f64) as u64;
                        let actual = configured - balloon;
                        VmSample {
                            name: format!("vm{}", k + 1),
                            status: VmStatus::Running,
                            configured,
                            resident: actual * (6 + k) / 10 + (pressure * 200.0) as u64,
                            balloon,
                            target: actual,
                            actual,
                            shared: 40.0 * pressure + 10.0,
                            compressed: if state >= HostState::Hard {
                                120.0 * pressure
                            } else {
                                0.0
                            },
                            swapped: if state == HostState::Low { 80.0 } else { 0.0 },
                            cgroup_limit: None,
                            guest: BTreeMap::new(),
                        }
                    })
                    .collect();
                let consumed = vms.iter().map(|v| v.resident).sum::<u64>();
                Sample {
                    t,
                    host: HostSample {
                        capacity: 4096,
                        consumed,
                        free: 4096.0 - consumed as f64,
                        state,
                        ksm: None,
                        zswap_pool: None,
                        zswapped: None,
                    },
                    vms,
                    events: Vec::new(),
                    alerts: Vec::new(),
                    second_host: None,
                }
            })
            .collect()
    }

    fn temp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("balloon-chart-{}-{name}", std::process::id()))
    }

    #[test]
    fn renders_svg_and_png() {
        let (svg, png) = (temp("test.svg"), temp("test.png"));
        render(&timeline(), "three guests under pressure", &svg, &png).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        for needle in [
            "three guests under pressure",
            "balloon",
            "swapped",
            "capacity",
            "vm3",
            "soft",
            "host state",
        ] {
            assert!(text.contains(needle), "{needle} missing from the SVG");
        }
        let bytes = std::fs::read(&png).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert!(bytes.len() > 10 * 1024, "PNG of {} bytes", bytes.len());
        std::fs::remove_file(svg).unwrap();
        std::fs::remove_file(png).unwrap();
    }

    #[test]
    fn one_sample_with_many_guests_renders() {
        let mut one = timeline().swap_remove(30);
        let vm = one.vms[0].clone();
        one.vms = (0..40)
            .map(|i| VmSample {
                name: format!("guest{i}"),
                ..vm.clone()
            })
            .collect();
        let (svg, png) = (temp("one.svg"), temp("one.png"));
        render(&[one], "one tick", &svg, &png).unwrap();
        assert!(std::fs::read_to_string(&svg).unwrap().contains("more"));
        std::fs::remove_file(svg).unwrap();
        std::fs::remove_file(png).unwrap();
    }

    #[test]
    fn report_chart_has_a_panel_per_vm() {
        let mut tl = timeline();
        for v in tl.iter_mut().flat_map(|s| &mut s.vms) {
            let free = v.configured.saturating_sub(v.resident) as f64;
            v.guest.insert("available".into(), v.configured as f64);
            v.guest.insert("usable".into(), free);
        }
        let both = [tl.clone(), tl];
        let r = crate::record::report::build(&both).unwrap();
        let (svg, png) = (temp("report.svg"), temp("report.png"));
        render_report(&both, &r, &svg, &png).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        for vm in &r.vms {
            let caption = format!(
                "{}: configured {} MiB, recommended {} MiB",
                vm.name,
                vm.configured,
                vm.recommended.unwrap()
            );
            assert!(text.contains(&caption), "{caption} missing");
        }
        assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));
        let e = render_report(&[], &r, &svg, &png).unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{e:?}");
        std::fs::remove_file(svg).unwrap();
        std::fs::remove_file(png).unwrap();
    }

    #[test]
    fn empty_timeline_is_invalid() {
        let e = render(&[], "empty", &temp("empty.svg"), &temp("empty.png")).unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{e:?}");
        assert!(!temp("empty.svg").exists());
    }

    #[test]
    fn unwritable_path_is_an_error() {
        let dir = temp("missing-dir");
        let e = render(&timeline(), "x", &dir.join("a.svg"), &dir.join("a.png")).unwrap_err();
        assert!(
            matches!(e, Error::Host(ref m) if m.contains("a.svg")),
            "{e:?}"
        );
    }
}
