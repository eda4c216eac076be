//! Charts over training: loss against tokens or FLOPs per run, and the looped runs' recurrent
//! state and injection norms.

use anyhow::Result;
use polars::prelude::DataFrame;

use super::seeds::{banded, barred, group_colour, sweep_has_seeds};
use super::shared::{Built, per_run};
use crate::columns::{f64s, opt_f64s, strs};
use crate::frames::Frames;
use crate::group_points::{GroupCurve, group_curves, run_labels, se_over};
use crate::groups::{ReplicateGroup, replicate_groups};
use loopscale_chart::{Figure, Kind, Panel, Series};

/// Training loss against tokens (`x = "tokens"`) or FLOPs (`x = "flops"`), one line per run;
/// validation losses as markers of the same colour. With seeds, one line per replicate group:
/// its mean training loss in a ±1 SE band, its mean validation losses with ±1 SE bars.
pub fn training_curves(frames: &Frames, x: &str) -> Built {
    if frames.steps.height() == 0 {
        return Ok(Err(
            "No finished run has logged training steps, so there are no training curves.".into(),
        ));
    }
    let groups = replicate_groups(frames)?;
    if sweep_has_seeds(&groups) {
        return grouped_training_curves(frames, x, &groups);
    }
    let (sx, sy) = (f64s(&frames.steps, x)?, f64s(&frames.steps, "train_loss")?);
    let (ex, ey) = (f64s(&frames.evals, x)?, f64s(&frames.evals, "val_loss")?);
    let mut series = Vec::new();
    for (label, c, rows) in per_run(frames, &frames.steps)? {
        series.push(Series::new(
            Some(label),
            c,
            Kind::Line,
            rows.iter().map(|&r| (sx[r], sy[r])).collect(),
        ));
    }
    for (_, c, rows) in per_run(frames, &frames.evals)? {
        series.push(Series::new(
            None,
            c,
            Kind::Markers,
            rows.iter().map(|&r| (ex[r], ey[r])).collect(),
        ));
    }
    let (x_label, what) = if x == "tokens" {
        ("training tokens", "tokens")
    } else {
        ("training FLOPs", "FLOPs")
    };
    Ok(Ok(Figure::single(Panel {
        title: format!("Training loss vs {what} (lines: train, dots: validation)"),
        x_label: x_label.into(),
        y_label: "loss (nats/token)".into(),
        log_x: true,
        log_y: false,
        series,
        zero_line: false,
    })))
}

/// The training curves of a sweep with seeds: per replicate group, the mean training loss at
/// each step in a ±1 SE band and the mean validation loss at each evaluation with ±1 SE bars.
fn grouped_training_curves(frames: &Frames, x: &str, groups: &[ReplicateGroup]) -> Built {
    let train = curves_of(frames, groups, &frames.steps, x, "train_loss")?;
    let val = curves_of(frames, groups, &frames.evals, x, "val_loss")?;
    let mut series = Vec::new();
    for (j, c) in train.iter().enumerate() {
        let name = Some(format!("{} (n = {})", c.label, c.n));
        series.extend(banded(c, group_colour(groups, c, j), name, Kind::Line));
    }
    for (j, c) in val.iter().enumerate() {
        series.extend(barred(c, group_colour(groups, c, j), None));
    }
    let what = if x == "tokens" { "tokens" } else { "FLOPs" };
    Ok(Ok(Figure::single(Panel {
        title: format!(
            "Training loss vs {what}: {} (band: train, bars: validation)",
            se_over(&train)
        ),
        x_label: format!("training {what}"),
        y_label: "loss (nats/token)".into(),
        log_x: true,
        log_y: false,
        series,
        zero_line: false,
    })))
}

/// Column `y` of `df` against column `x` by replicate group (finite values only).
fn curves_of(
    frames: &Frames,
    groups: &[ReplicateGroup],
    df: &DataFrame,
    x: &str,
    y: &str,
) -> Result<Vec<GroupCurve>> {
    let (keys, xs, ys) = (strs(df, "run_key")?, f64s(df, x)?, f64s(df, y)?);
    let rows: Vec<(String, f64, f64)> = (0..keys.len())
        .filter(|&r| xs[r].is_finite() && ys[r].is_finite())
        .map(|r| (keys[r].clone(), xs[r], ys[r]))
        .collect();
    let label_of = run_labels(frames)?;
    Ok(group_curves(groups, &rows, label_of))
}

/// Recurrent-state norm and the injection's spectral norm over training, per looped run.
pub fn stability(frames: &Frames) -> Built {
    let state = opt_f64s(&frames.steps, "state_norm")?;
    let inj = opt_f64s(&frames.steps, "injection_norm")?;
    if state.iter().chain(&inj).all(Option::is_none) {
        return Ok(Err(
            "No run logged recurrent-state or injection norms (they are measured for looped runs \
                       only), so there is no stability chart."
                .into(),
        ));
    }
    let tokens = f64s(&frames.steps, "tokens")?;
    let mut panels = Vec::new();
    for (values, title, y) in [
        (
            &state,
            "Recurrent state norm over training",
            "mean per-token ‖h‖₂",
        ),
        (
            &inj,
            "Injection spectral norm over training",
            "spectral norm of the state map",
        ),
    ] {
        let mut series = Vec::new();
        for (label, c, rows) in per_run(frames, &frames.steps)? {
            let pts: Vec<(f64, f64)> = rows
                .iter()
                .filter_map(|&r| values[r].map(|v| (tokens[r], v)))
                .collect();
            if !pts.is_empty() {
                series.push(Series::new(Some(label), c, Kind::Line, pts));
            }
        }
        panels.push(Panel {
            title: title.into(),
            x_label: "training tokens".into(),
            y_label: y.into(),
            log_x: true,
            log_y: true,
            series,
            zero_line: false,
        });
    }
    Ok(Ok(Figure::row(panels)))
}
