//! Charts over training: loss against tokens or FLOPs per run, and the looped runs' recurrent
//! state and injection norms.

use super::shared::{Built, per_run};
use crate::columns::{f64s, opt_f64s};
use crate::frames::Frames;
use loopscale_chart::{Figure, Kind, Panel, Series};

/// Training loss against tokens (`x = "tokens"`) or FLOPs (`x = "flops"`), one line per run;
/// validation losses as markers of the same colour.
pub fn training_curves(frames: &Frames, x: &str) -> Built {
    if frames.steps.height() == 0 {
        return Ok(Err(
            "No finished run has logged training steps, so there are no training curves.".into(),
        ));
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
