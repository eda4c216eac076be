//! Iso-FLOP charts: loss against loops or tokens per FLOP budget with the fitted parabolas and
//! their minima, and the optimal loops and tokens against FLOPs with x* = G·C^a.

use super::seeds::{barred, sweep_has_seeds};
use super::shared::{Built, extent};
use crate::fits::{IsoflopFit, ReportFits};
use crate::frames::Frames;
use crate::group_points::{GroupCurve, group_curves};
use crate::groups::replicate_groups;
use loopscale_chart::{Figure, Kind, Panel, Series, tick};
use loopscale_fit::IsoflopAxis;
use loopscale_fit::isoflop::Location;

pub fn axis_words(axis: IsoflopAxis) -> (&'static str, &'static str) {
    match axis {
        IsoflopAxis::Loops => ("mean training loops μ", "loops"),
        IsoflopAxis::Tokens => ("training tokens", "tokens"),
        IsoflopAxis::Params => ("parameters", "parameters"),
    }
}

/// Loss against loops or tokens, one colour per FLOP budget, with fitted parabolas in log x
/// and their minima. With seeds, a budget's runs at one x are drawn as their mean with a ±1 SE
/// bar, the seeds pale behind.
pub fn isoflop_curves(frames: &Frames, fit: &Result<IsoflopFit, String>) -> Built {
    let fit = match fit {
        Ok(f) => f,
        Err(why) => return Ok(Err(why.clone())),
    };
    let (x_label, word) = axis_words(fit.axis);
    let seeded = sweep_has_seeds(&replicate_groups(frames)?);
    let mut series = Vec::new();
    let mut most = 1;
    for (i, b) in fit.budgets.iter().enumerate() {
        let name = Some(format!("C = {} FLOPs", tick(b.flops)));
        let points: Vec<(f64, f64)> = b.x.iter().copied().zip(b.loss.iter().copied()).collect();
        if seeded {
            let at_x = seeds_at_each_x(&points);
            most = at_x.points.iter().map(|p| p.n).fold(most, usize::max);
            series.extend(barred(&at_x, i, name));
        } else {
            series.push(Series::new(name, i, Kind::Markers, points));
        }
        let star = tick(b.x_star);
        match b.location {
            Location::Inside => {
                // The parabola only where it was fitted: near the lowest loss.
                let (lo, hi) = b.window;
                let curve: Vec<(f64, f64)> = (0..=30)
                    .map(|k| (lo.ln() + (hi.ln() - lo.ln()) * k as f64 / 30.0).exp())
                    .map(|x| (x, b.predict(x)))
                    .filter(|(_, y)| y.is_finite())
                    .collect();
                series.push(Series::new(None, i, Kind::Dashed, curve));
                series.push(Series::new(
                    Some(format!("  minimum: {word}* = {star}")),
                    i,
                    Kind::Star,
                    vec![(b.x_star, b.loss_star)],
                ));
            }
            edge => {
                // A convex curve lowest at an edge has its minimum past the edge's neighbour.
                let bound = if edge == Location::AtUpperEdge {
                    format!("> {}", tick(b.window.0))
                } else {
                    format!("< {}", tick(b.window.1))
                };
                series.push(Series::new(
                    Some(format!(
                        "  lowest at the edge ({star}): {word}* {bound}, not located"
                    )),
                    i,
                    Kind::Star,
                    vec![(b.x_star, b.loss_star)],
                ));
            }
        }
        if let Some(gpt) = b.gpt_loss {
            // The fixed-depth model at the same budget, across the sampled range.
            let (lo, hi) = extent(b.x.iter().copied());
            series.push(Series::new(
                Some(format!("  GPT at this budget: {gpt:.4}")),
                i,
                Kind::Dashed,
                vec![(lo, gpt), (hi, gpt)],
            ));
        }
    }
    Ok(Ok(Figure::single(Panel {
        title: if seeded {
            format!(
                "Iso-FLOP curves: final loss vs {word} per FLOP budget (mean ± 1 SE over {most} seeds)"
            )
        } else {
            format!("Iso-FLOP curves: final loss vs {word} per FLOP budget")
        },
        x_label: x_label.into(),
        y_label: "final validation loss (nats/token)".into(),
        log_x: true,
        log_y: false,
        series,
        zero_line: false,
    })))
}

/// A budget's (x, loss) gathered at each x: the runs there are one configuration's seeds (a
/// budget fixes the rest), so their mean and standard error.
fn seeds_at_each_x(points: &[(f64, f64)]) -> GroupCurve {
    let rows: Vec<(String, f64, f64)> =
        points.iter().map(|&(x, y)| (String::new(), x, y)).collect();
    group_curves(&[], &rows, |_| String::new())
        .pop()
        .unwrap_or(GroupCurve {
            label: String::new(),
            run_keys: Vec::new(),
            n: 0,
            points: Vec::new(),
        })
}

/// The optimal loops and tokens of each budget against its FLOPs, with x* = G·C^a.
pub fn isoflop_optima(fits: &ReportFits) -> Built {
    let mut panels = Vec::new();
    let mut why = Vec::new();
    for fit in [&fits.isoflop_loops, &fits.isoflop_tokens] {
        let fit = match fit {
            Ok(f) => f,
            Err(_) => continue, // its own chart above says why
        };
        let report = match &fit.power_law {
            Ok(r) => r,
            Err(w) => {
                why.push(w.clone());
                continue;
            }
        };
        let (x_label, word) = axis_words(fit.axis);
        let g = report.value("G").unwrap_or(f64::NAN);
        let a = report.value("a").unwrap_or(f64::NAN);
        let interval = report
            .param("a")
            .and_then(|p| Some(format!(" [{}, {}]", tick(p.lo?), tick(p.hi?))))
            .unwrap_or_default();
        let (lo, hi) = extent(fit.budgets.iter().map(|b| b.flops));
        let line: Vec<(f64, f64)> = (0..=20)
            .map(|k| (lo.ln() + (hi.ln() - lo.ln()) * k as f64 / 20.0).exp())
            .map(|x| (x, g * x.powf(a)))
            .collect();
        let at = |inside: bool| -> Vec<(f64, f64)> {
            fit.budgets
                .iter()
                .filter(|b| (b.location == Location::Inside) == inside)
                .map(|b| (b.flops, b.x_star))
                .collect()
        };
        let mut series = vec![
            Series::new(
                Some(format!("{word}* = {}·C^{a:.3}{interval}", tick(g))),
                0,
                Kind::Dashed,
                line,
            ),
            Series::new(
                Some("optimum inside the samples".into()),
                1,
                Kind::Markers,
                at(true),
            ),
        ];
        let edges = at(false);
        if !edges.is_empty() {
            series.push(Series::new(
                Some("at an edge of the samples (a bound; not fitted)".into()),
                3,
                Kind::Star,
                edges,
            ));
        }
        panels.push(Panel {
            title: format!("Optimal {word} vs FLOP budget"),
            x_label: "training FLOPs per budget".into(),
            y_label: format!("optimal {x_label}"),
            log_x: true,
            log_y: true,
            series,
            zero_line: false,
        });
    }
    if panels.is_empty() {
        if why.is_empty() {
            return Ok(Err(
                "There are no iso-FLOP parabolas over loops or tokens (see above), so there are no \
                           optimal loops or tokens to set against FLOPs."
                    .into(),
            ));
        }
        return Ok(Err(why.join(" ")));
    }
    Ok(Ok(Figure::row(panels)))
}
