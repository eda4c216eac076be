//! Loss curves as the store holds them now: training or validation loss against tokens or
//! FLOPs, one line per run coloured by an axis the user picks, or one line per replicate group
//! (runs that differ only in their seed) with its mean and a ±1 standard deviation band; drawn
//! as SVG on the server, so the page needs no charting library and works offline.
//!
//! Every line is `<g class="series">` with a link to its run (a click opens it) and a `<title>`
//! on the line and on each of its hover points (the run and the values), which is what the
//! browser test counts.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use anyhow::Result;
use serde::Deserialize;

use loopscale_store::Store;

use crate::overview::si;
use crate::source::Source;

/// What to draw (the query string of `/api/curves.svg`).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CurveQuery {
    /// `tokens` (default) or `flops`.
    pub x: Option<String>,
    /// `train` (default) or `val`.
    pub y: Option<String>,
    /// An axis of the sweep to colour by; anything else colours each run on its own.
    pub by: Option<String>,
    /// `1`: one line per replicate group, its mean with a ±1 SD band.
    pub groups: Option<String>,
    /// Only this run (the run page's chart).
    pub run: Option<String>,
}

impl CurveQuery {
    fn flops(&self) -> bool {
        self.x.as_deref() == Some("flops")
    }
    fn val(&self) -> bool {
        self.y.as_deref() == Some("val")
    }
    fn grouped(&self) -> bool {
        matches!(self.groups.as_deref(), Some("1" | "true" | "on"))
    }
}

/// One line of the chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// The run a click opens (a group's first member).
    pub key: String,
    pub label: String,
    /// The value of the colouring axis (the label itself without one).
    pub colour_by: String,
    /// (x, y, lo, hi): lo = hi = y for a single run.
    pub points: Vec<(f64, f64, f64, f64)>,
    /// Runs behind the line (1 for a run, the group's size for a group).
    pub members: usize,
}

/// The lines to draw, with the axis titles.
#[derive(Clone, Debug)]
pub struct Curves {
    pub series: Vec<Series>,
    pub x_title: &'static str,
    pub y_title: &'static str,
    pub legend_title: String,
}

/// At most this many points per line (bucket means beyond): a browser draws a sweep's lines
/// at once, and a pixel holds no more.
const MAX_POINTS: usize = 400;
/// Hover points per line.
const HOVER_POINTS: usize = 40;

/// One run's curve before grouping: key, label, colour value, replicate group (its
/// configuration without the seed), and its points as step → (x, y).
type Line = (String, String, String, String, BTreeMap<u64, (f64, f64)>);

/// Reads every run's curve (or one run's, or each replicate group's).
pub fn read(source: &Source, store: &Store, query: &CurveQuery) -> Result<Curves> {
    let (axes, listed) = source.list(store)?;
    let colour_axis = query
        .by
        .as_deref()
        .and_then(|by| axes.iter().position(|a| a == by));
    let mut lines: Vec<Line> = Vec::new();
    for run in listed {
        let Some(row) = run.row else { continue };
        if query.run.as_deref().is_some_and(|k| k != run.key) {
            continue;
        }
        let mut points = BTreeMap::new();
        if query.val() {
            for p in store.val_points(&run.key)? {
                if let Some(v) = p.val_loss {
                    let x = if query.flops() {
                        p.flops
                    } else {
                        p.tokens as f64
                    };
                    points.insert(p.step, (x, v));
                }
            }
        } else {
            for p in store.train_points(&run.key, 0)? {
                if let Some(v) = p.train_loss {
                    let x = if query.flops() {
                        p.flops
                    } else {
                        p.tokens as f64
                    };
                    points.insert(p.step, (x, v));
                }
            }
        }
        if points.is_empty() {
            continue;
        }
        let mut config = serde_json::to_value(&row.config).unwrap_or_default();
        loopscale_analysis::groups::without_seed(&mut config);
        let colour_by = match colour_axis {
            Some(i) => run.axes.get(i).cloned().unwrap_or_default(),
            None => run.label.clone(),
        };
        lines.push((run.key, run.label, colour_by, config.to_string(), points));
    }
    let mut series = Vec::new();
    if query.grouped() {
        // Replicate groups, in the order of their first member.
        let mut order: Vec<String> = Vec::new();
        let mut members: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, line) in lines.iter().enumerate() {
            members
                .entry(line.3.clone())
                .or_insert_with(|| {
                    order.push(line.3.clone());
                    Vec::new()
                })
                .push(i);
        }
        for group in order {
            let idx = &members[&group];
            let first = &lines[idx[0]];
            let mut steps: BTreeMap<u64, (f64, Vec<f64>)> = BTreeMap::new();
            for &i in idx {
                for (step, (x, y)) in &lines[i].4 {
                    steps.entry(*step).or_insert((*x, Vec::new())).1.push(*y);
                }
            }
            let points = steps
                .values()
                .map(|(x, ys)| {
                    let n = ys.len() as f64;
                    let mean = ys.iter().sum::<f64>() / n;
                    let sd = if ys.len() > 1 {
                        (ys.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
                    } else {
                        0.0
                    };
                    (*x, mean, mean - sd, mean + sd)
                })
                .collect();
            let label = if idx.len() > 1 {
                format!(
                    "{} ({} seeds)",
                    loopscale_analysis::groups::label_without_seed(&first.1),
                    idx.len()
                )
            } else {
                first.1.clone()
            };
            series.push(Series {
                key: first.0.clone(),
                label,
                colour_by: if colour_axis.is_some() {
                    first.2.clone()
                } else {
                    loopscale_analysis::groups::label_without_seed(&first.1)
                },
                points: downsample(points, MAX_POINTS),
                members: idx.len(),
            });
        }
    } else {
        for (key, label, colour_by, _, points) in lines {
            series.push(Series {
                key,
                label,
                colour_by,
                points: downsample(
                    points.values().map(|&(x, y)| (x, y, y, y)).collect(),
                    MAX_POINTS,
                ),
                members: 1,
            });
        }
    }
    Ok(Curves {
        series,
        x_title: if query.flops() {
            "training FLOPs"
        } else {
            "training tokens"
        },
        y_title: if query.val() {
            "validation loss (nats/token)"
        } else {
            "training loss (nats/token)"
        },
        legend_title: match colour_axis {
            Some(i) => axes[i].clone(),
            None if query.grouped() => "replicate group".into(),
            None => "run".into(),
        },
    })
}

/// Bucket means down to at most `max` points (the last point kept as it is).
fn downsample(points: Vec<(f64, f64, f64, f64)>, max: usize) -> Vec<(f64, f64, f64, f64)> {
    if points.len() <= max {
        return points;
    }
    let per = points.len().div_ceil(max);
    let mut out: Vec<(f64, f64, f64, f64)> = points
        .chunks(per)
        .map(|c| {
            let n = c.len() as f64;
            let sum = c
                .iter()
                .fold((0.0, 0.0, 0.0), |s, p| (s.0 + p.1, s.1 + p.2, s.2 + p.3));
            (c[c.len() - 1].0, sum.0 / n, sum.1 / n, sum.2 / n)
        })
        .collect();
    if let (Some(last), Some(end)) = (out.last_mut(), points.last()) {
        *last = *end;
    }
    out
}

/// Colours for up to ten values (Tableau 10), repeated beyond.
const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

/// Escapes text for XML and HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Distinct colour values, numbers in numeric order, then the rest in text order.
fn colour_values(series: &[Series]) -> Vec<String> {
    let mut values: Vec<String> = series.iter().map(|s| s.colour_by.clone()).collect();
    values.sort_by(|a, b| match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.total_cmp(&y),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        _ => a.cmp(b),
    });
    values.dedup();
    values
}

/// The chart as an SVG document (`<svg class="curves" data-series="N">`), or a sentence in an
/// SVG when there is nothing to draw yet.
pub fn svg(curves: &Curves, width: u32, height: u32) -> String {
    let (w, h) = (width as f64, height as f64);
    let (left, right, top, bottom) = (64.0, 220.0, 16.0, 48.0);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="curves" data-series="{}" viewBox="0 0 {w} {h}" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#,
        curves.series.len()
    );
    out.push_str(
        "<style>.pt{fill-opacity:0;stroke:none}.pt:hover{fill-opacity:1}\
         .series path.line:hover{stroke-width:3.5}.grid{stroke:#e5e5e5}</style>",
    );
    let all: Vec<(f64, f64, f64, f64)> = curves
        .series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|p| p.0 > 0.0 && p.1.is_finite())
        .collect();
    if all.is_empty() {
        let _ = write!(
            out,
            r##"<text x="{}" y="{}" text-anchor="middle" fill="#666">No measurements yet: lines appear as runs log their steps.</text></svg>"##,
            w / 2.0,
            h / 2.0
        );
        return out;
    }
    let lx = |x: f64| x.log10();
    let (mut x0, mut x1) = all.iter().fold((f64::MAX, f64::MIN), |(a, b), p| {
        (a.min(lx(p.0)), b.max(lx(p.0)))
    });
    if x1 - x0 < 1e-9 {
        x0 -= 0.5;
        x1 += 0.5;
    }
    let (mut y0, mut y1) = all.iter().fold((f64::MAX, f64::MIN), |(a, b), p| {
        (a.min(p.2.min(p.1)), b.max(p.3.max(p.1)))
    });
    if y1 - y0 < 1e-9 {
        y0 -= 0.5;
        y1 += 0.5;
    }
    let pad = 0.04 * (y1 - y0);
    let (y0, y1) = (y0 - pad, y1 + pad);
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    let px = |x: f64| left + (lx(x) - x0) / (x1 - x0) * plot_w;
    let py = |y: f64| top + (y1 - y) / (y1 - y0) * plot_h;
    // Grid and ticks: decades (and 2, 5 between them when the range is short) on x, five
    // rounded steps on y.
    let decades = x1 - x0;
    let mut k = x0.floor() as i32;
    while (k as f64) <= x1 {
        for m in [1.0, 2.0, 5.0] {
            if m != 1.0 && decades > 2.5 {
                continue;
            }
            let v = m * 10f64.powi(k);
            let l = v.log10();
            if l < x0 - 1e-9 || l > x1 + 1e-9 {
                continue;
            }
            let x = px(v);
            let _ = write!(
                out,
                r##"<line class="grid" x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{:.1}"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="#444">{}</text>"##,
                top + plot_h,
                top + plot_h + 16.0,
                si(v)
            );
        }
        k += 1;
    }
    let step = nice_step((y1 - y0) / 5.0);
    let mut v = (y0 / step).ceil() * step;
    while v <= y1 {
        let y = py(v);
        let _ = write!(
            out,
            r##"<line class="grid" x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#444">{}</text>"##,
            left + plot_w,
            left - 6.0,
            y + 4.0,
            trim_number(v, step)
        );
        v += step;
    }
    let _ = write!(
        out,
        r##"<rect x="{left}" y="{top}" width="{plot_w:.1}" height="{plot_h:.1}" fill="none" stroke="#999"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{} (log scale)</text><text transform="translate(16,{:.1}) rotate(-90)" text-anchor="middle">{}</text>"##,
        left + plot_w / 2.0,
        h - 10.0,
        curves.x_title,
        top + plot_h / 2.0,
        curves.y_title
    );
    let values = colour_values(&curves.series);
    let colour = |value: &str| {
        let i = values.iter().position(|v| v == value).unwrap_or(0);
        PALETTE[i % PALETTE.len()]
    };
    // Ids are unique per chart: a page may hold several (a run's page has two).
    static CHARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let clip = format!(
        "plot{}",
        CHARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let _ = write!(
        out,
        r#"<clipPath id="{clip}"><rect x="{left}" y="{top}" width="{plot_w:.1}" height="{plot_h:.1}"/></clipPath><g clip-path="url(#{clip})">"#
    );
    for s in &curves.series {
        let c = colour(&s.colour_by);
        let pts: Vec<&(f64, f64, f64, f64)> = s
            .points
            .iter()
            .filter(|p| p.0 > 0.0 && p.1.is_finite())
            .collect();
        let _ = write!(
            out,
            r#"<g class="series" data-key="{}" data-members="{}">"#,
            esc(&s.key),
            s.members
        );
        if s.members > 1 {
            let mut d = String::new();
            for (i, p) in pts.iter().enumerate() {
                let _ = write!(
                    d,
                    "{}{:.1},{:.1}",
                    if i == 0 { "M" } else { "L" },
                    px(p.0),
                    py(p.3)
                );
            }
            for p in pts.iter().rev() {
                let _ = write!(d, "L{:.1},{:.1}", px(p.0), py(p.2));
            }
            let _ = write!(
                out,
                r#"<path class="band" d="{d}Z" fill="{c}" fill-opacity="0.18" stroke="none"/>"#
            );
        }
        let mut d = String::new();
        for (i, p) in pts.iter().enumerate() {
            let _ = write!(
                d,
                "{}{:.1},{:.1}",
                if i == 0 { "M" } else { "L" },
                px(p.0),
                py(p.1)
            );
        }
        let _ = write!(
            out,
            r#"<a href="/run/{key}"><path class="line" d="{d}" fill="none" stroke="{c}" stroke-width="1.6"><title>{label}</title></path>"#,
            key = esc(&s.key),
            label = esc(&s.label)
        );
        // A line of one point draws nothing: a dot shows it.
        if let [p] = pts.as_slice() {
            let _ = write!(
                out,
                r#"<circle class="dot" cx="{:.1}" cy="{:.1}" r="3.5" fill="{c}"/>"#,
                px(p.0),
                py(p.1)
            );
        }
        let every = pts.len().div_ceil(HOVER_POINTS).max(1);
        for (i, p) in pts.iter().enumerate() {
            if i % every != 0 && i + 1 != pts.len() {
                continue;
            }
            let band = if s.members > 1 {
                format!(" (±1 SD {:.4}–{:.4})", p.2, p.3)
            } else {
                String::new()
            };
            let _ = write!(
                out,
                r#"<circle class="pt" cx="{:.1}" cy="{:.1}" r="4" fill="{c}"><title>{}&#10;{} {}&#10;loss {:.4}{band}</title></circle>"#,
                px(p.0),
                py(p.1),
                esc(&s.label),
                si(p.0),
                if curves.x_title.contains("FLOP") {
                    "FLOPs"
                } else {
                    "tokens"
                },
                p.1
            );
        }
        out.push_str("</a></g>");
    }
    out.push_str("</g>");
    // Legend: one swatch per colour value.
    let lx0 = left + plot_w + 14.0;
    let _ = write!(
        out,
        r#"<text x="{lx0:.1}" y="{:.1}" font-weight="bold">{}</text>"#,
        top + 10.0,
        esc(&curves.legend_title)
    );
    let room = ((plot_h - 20.0) / 16.0).floor().max(1.0) as usize;
    for (i, v) in values.iter().enumerate().take(room) {
        let y = top + 28.0 + 16.0 * i as f64;
        let text: String = if i + 1 == room && values.len() > room {
            format!("… {} more", values.len() - room + 1)
        } else {
            v.chars().take(30).collect()
        };
        let _ = write!(
            out,
            r#"<line x1="{lx0:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            y - 4.0,
            lx0 + 18.0,
            y - 4.0,
            colour(v),
            lx0 + 24.0,
            y,
            esc(&text)
        );
    }
    out.push_str("</svg>");
    out
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let p = 10f64.powf(raw.max(1e-12).log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p)
}

/// A tick's value with as many decimals as the step needs.
fn trim_number(v: f64, step: f64) -> String {
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    format!("{v:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(key: &str, colour_by: &str, n: usize, members: usize) -> Series {
        Series {
            key: key.into(),
            label: format!("run {key}"),
            colour_by: colour_by.into(),
            points: (1..=n)
                .map(|i| {
                    let y = 3.0 / i as f64 + 1.0;
                    (1000.0 * i as f64, y, y - 0.1, y + 0.1)
                })
                .collect(),
            members,
        }
    }

    #[test]
    fn every_series_is_a_linked_group_with_hover_titles() {
        let curves = Curves {
            series: vec![line("a1", "16", 50, 1), line("b2", "32", 50, 3)],
            x_title: "training tokens",
            y_title: "training loss (nats/token)",
            legend_title: "model.d_model".into(),
        };
        let svg = svg(&curves, 900, 480);
        assert!(svg.contains(r#"data-series="2""#));
        assert_eq!(svg.matches(r#"<g class="series""#).count(), 2);
        assert!(svg.contains(r#"<a href="/run/a1">"#));
        assert_eq!(
            svg.matches(r#"class="band""#).count(),
            1,
            "one group has a band"
        );
        assert!(svg.contains("<title>run b2&#10;"));
        assert!(svg.contains(">model.d_model</text>"));
    }

    #[test]
    fn nothing_to_draw_says_so() {
        let curves = Curves {
            series: Vec::new(),
            x_title: "training tokens",
            y_title: "loss",
            legend_title: "run".into(),
        };
        assert!(svg(&curves, 600, 300).contains("No measurements yet"));
    }

    #[test]
    fn downsampling_keeps_the_ends_and_the_count() {
        let points: Vec<_> = (0..1000).map(|i| (i as f64, i as f64, 0.0, 0.0)).collect();
        let out = downsample(points, 100);
        assert!(out.len() <= 100);
        assert_eq!(out.last().unwrap().0, 999.0);
    }
}
