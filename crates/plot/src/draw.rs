//! The one routine that draws a [`Figure`] with plotters on any backend (PNG and SVG come from
//! the same description, so they always agree): the palette, the axes and their ticks, and each
//! [`Kind`] of series. What a figure shows is computed before it gets here
//! (`loopscale_analysis::chart_data`); nothing here reads data.

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::prelude::*;

use loopscale_chart::{Figure, INK, Kind, Panel, tick};

/// Distinct, colour-blind-friendly colours (Okabe–Ito, then Tableau).
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(120, 120, 120),
    RGBColor(140, 86, 75),
    RGBColor(148, 103, 189),
    RGBColor(188, 189, 34),
];

pub fn colour(i: usize) -> RGBColor {
    if i == INK {
        RGBColor(30, 30, 30)
    } else {
        PALETTE[i % PALETTE.len()]
    }
}

/// One axis: linear, or logarithmic (drawn as log10 of the values on a linear coordinate, so
/// ticks can be chosen to suit narrow ranges, where plotters' own log axis labels only powers
/// of ten and often shows none).
#[derive(Clone, Copy, Debug)]
struct Axis {
    log: bool,
    /// Padded range, in drawing coordinates (log10 of the values for a log axis).
    lo: f64,
    hi: f64,
}

impl Axis {
    fn to(&self, v: f64) -> f64 {
        if self.log { v.log10() } else { v }
    }
    fn from(&self, u: f64) -> f64 {
        if self.log { 10f64.powf(u) } else { u }
    }
    fn contains(&self, u: f64) -> bool {
        u >= self.lo - 1e-12 && u <= self.hi + 1e-12
    }
    /// (bold ticks with labels, light grid lines), in drawing coordinates.
    fn ticks(&self) -> (Vec<f64>, Vec<f64>) {
        if !self.log {
            let step = nice_step((self.hi - self.lo) / 6.0);
            let ticks = steps(self.lo, self.hi, step);
            let light = steps(self.lo, self.hi, step / 5.0);
            return (ticks, light);
        }
        let (a, b) = (self.from(self.lo), self.from(self.hi));
        let decade = |mantissas: &[f64]| -> Vec<f64> {
            let mut out = Vec::new();
            for e in (a.log10().floor() as i32 - 1)..=(b.log10().ceil() as i32 + 1) {
                for m in mantissas {
                    let v = m * 10f64.powi(e);
                    if v >= a && v <= b {
                        out.push(v.log10());
                    }
                }
            }
            out
        };
        let all: Vec<f64> = decade(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
        let mut ticks = decade(&[1.0]);
        if ticks.len() < 4 {
            ticks = decade(&[1.0, 2.0, 5.0]);
        }
        if ticks.len() < 4 {
            ticks = all.clone();
        }
        if ticks.len() < 4 {
            // Less than a factor of ~3: linear steps of the values, placed on the log axis.
            let step = nice_step((b - a) / 5.0);
            ticks = steps(a, b, step).into_iter().map(f64::log10).collect();
        }
        (ticks, all)
    }
}

/// 1, 2 or 5 × 10^k nearest above `raw`.
fn nice_step(raw: f64) -> f64 {
    let e = raw.log10().floor();
    let base = 10f64.powf(e);
    let m = raw / base;
    base * if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    }
}

fn steps(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut k = (lo / step).ceil();
    while k * step <= hi && out.len() < 200 {
        out.push(k * step);
        k += 1.0;
    }
    out
}

/// The data range of a panel along one axis, padded; log axes only see positive values.
fn axis(p: &Panel, axis_x: bool) -> Option<Axis> {
    let log = if axis_x { p.log_x } else { p.log_y };
    let mut vals: Vec<f64> = Vec::new();
    for s in &p.series {
        match &s.kind {
            Kind::Band(b) | Kind::ErrorBars(b) => {
                for &(x, lo, hi) in b {
                    if axis_x {
                        vals.push(x)
                    } else {
                        vals.extend([lo, hi])
                    }
                }
            }
            _ => vals.extend(s.points.iter().map(|&(x, y)| if axis_x { x } else { y })),
        }
    }
    let vals: Vec<f64> = vals
        .into_iter()
        .filter(|v| v.is_finite() && (!log || *v > 0.0))
        .map(|v| if log { v.log10() } else { v })
        .collect();
    let lo = vals.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() || !hi.is_finite() {
        return None;
    }
    let span = hi - lo;
    let pad = if span > 0.0 {
        span * 0.06
    } else if log {
        0.05
    } else {
        hi.abs().max(1e-12) * 0.05
    };
    // Headroom for the legend (upper right), so it does not hide the highest points.
    let entries = p.series.iter().filter(|s| s.name.is_some()).count() as f64;
    let room = if axis_x || entries == 0.0 {
        0.0
    } else {
        (span.max(pad) * 0.055 * entries).min(span.max(pad) * 1.2)
    };
    Some(Axis {
        log,
        lo: lo - pad,
        hi: hi + pad + room,
    })
}

/// A linear coordinate with the ticks chosen by [`Axis::ticks`] (labels come from the
/// panel's formatter).
struct Ticked {
    lo: f64,
    hi: f64,
    bold: Vec<f64>,
    light: Vec<f64>,
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;
    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let f = (value - self.lo) / (self.hi - self.lo);
        limit.0 + (f * (limit.1 - limit.0) as f64).round() as i32
    }
    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.light.clone()
        } else {
            self.bold.clone()
        }
    }
    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// Draws `fig` on `root` (a PNG bitmap or an SVG document).
pub fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, fig: &Figure) -> Result<()> {
    root.fill(&WHITE).map_err(|e| anyhow!("drawing: {e:?}"))?;
    let rows = fig.panels.len().div_ceil(fig.columns);
    let areas = root.split_evenly((rows, fig.columns));
    for (p, area) in fig.panels.iter().zip(&areas) {
        let x = axis(p, true).ok_or_else(|| anyhow!("panel `{}` has no data", p.title))?;
        let y = axis(p, false).ok_or_else(|| anyhow!("panel `{}` has no data", p.title))?;
        panel(area, p, x, y)?;
    }
    root.present()
        .map_err(|e| anyhow!("writing the chart: {e:?}"))
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    p: &Panel,
    xa: Axis,
    ya: Axis,
) -> Result<()> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing `{}`: {e:?}", p.title);
    let (xt, xl) = xa.ticks();
    let (yt, yl) = ya.ticks();
    let xr = Ticked {
        lo: xa.lo,
        hi: xa.hi,
        bold: xt,
        light: xl,
    };
    let yr = Ticked {
        lo: ya.lo,
        hi: ya.hi,
        bold: yt,
        light: yl,
    };
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(68)
        .build_cartesian_2d(xr, yr)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(&p.x_label)
        .y_desc(&p.y_label)
        .x_label_formatter(&|u| tick(xa.from(*u)))
        .y_label_formatter(&|u| tick(ya.from(*u)))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .light_line_style(RGBColor(238, 238, 238))
        .bold_line_style(RGBColor(210, 210, 210))
        .draw()
        .map_err(err)?;
    // Into drawing coordinates, dropping what a log axis cannot show.
    let map = |&(x, y): &(f64, f64)| -> Option<(f64, f64)> {
        let ok = x.is_finite() && y.is_finite() && (!xa.log || x > 0.0) && (!ya.log || y > 0.0);
        ok.then(|| (xa.to(x), ya.to(y)))
    };
    let mut legend = false;
    if p.zero_line && ya.contains(0.0) {
        chart
            .draw_series(LineSeries::new(
                [(xa.lo, 0.0), (xa.hi, 0.0)],
                BLACK.stroke_width(1),
            ))
            .map_err(err)?;
    }
    for s in &p.series {
        let c = colour(s.colour);
        let pts: Vec<(f64, f64)> = s.points.iter().filter_map(map).collect();
        let anno = match &s.kind {
            Kind::Line => chart
                .draw_series(LineSeries::new(pts, c.stroke_width(2)))
                .map_err(err)?,
            Kind::Dashed => chart
                .draw_series(DashedLineSeries::new(pts, 7, 5, c.stroke_width(2)))
                .map_err(err)?,
            Kind::Markers => chart
                .draw_series(pts.into_iter().map(|xy| Circle::new(xy, 4, c.filled())))
                .map_err(err)?,
            Kind::Star => chart
                .draw_series(
                    pts.into_iter()
                        .map(|xy| Circle::new(xy, 8, c.stroke_width(3))),
                )
                .map_err(err)?,
            Kind::Faint => chart
                .draw_series(
                    pts.into_iter()
                        .map(|xy| Circle::new(xy, 3, c.mix(0.35).filled())),
                )
                .map_err(err)?,
            Kind::ErrorBars(b) => {
                for &(x, lo, hi) in b {
                    if let (Some(a), Some(z)) = (map(&(x, lo)), map(&(x, hi))) {
                        chart
                            .draw_series(std::iter::once(PathElement::new(
                                vec![a, z],
                                c.stroke_width(2),
                            )))
                            .map_err(err)?;
                    }
                }
                chart
                    .draw_series(pts.into_iter().map(|xy| Circle::new(xy, 5, c.filled())))
                    .map_err(err)?
            }
            Kind::Band(b) => {
                let lo: Vec<(f64, f64)> =
                    b.iter().filter_map(|&(x, lo, _)| map(&(x, lo))).collect();
                let hi: Vec<(f64, f64)> =
                    b.iter().filter_map(|&(x, _, hi)| map(&(x, hi))).collect();
                let poly: Vec<(f64, f64)> = lo.into_iter().chain(hi.into_iter().rev()).collect();
                chart
                    .draw_series(std::iter::once(Polygon::new(poly, c.mix(0.18).filled())))
                    .map_err(err)?
            }
        };
        if let Some(name) = &s.name {
            legend = true;
            let kind = s.kind.clone();
            anno.label(name).legend(move |(x, y)| match &kind {
                Kind::Markers | Kind::Star | Kind::ErrorBars(_) | Kind::Faint => {
                    Circle::new((x + 10, y), 4, c.filled()).into_dyn()
                }
                Kind::Band(_) => {
                    Rectangle::new([(x, y - 5), (x + 20, y + 5)], c.mix(0.25).filled()).into_dyn()
                }
                _ => PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)).into_dyn(),
            });
        }
    }
    if legend {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(err)?;
    }
    Ok(())
}
