//! Residuals (observed − fitted) of every fit the report made: the compute law per run, each
//! test-time curve, the iso-FLOP parabolas near their minima.

use super::isoflop::axis_words;
use super::shared::{Built, run_colour};
use crate::columns::{f64s, strs};
use crate::fits::{ReportFits, compute_residuals};
use crate::frames::Frames;
use loopscale_chart::{Figure, Kind, Panel, Series, tick};

/// Residuals (observed − fitted) of every fit the report made.
pub fn residuals(frames: &Frames, fits: &ReportFits) -> Built {
    let mut panels = Vec::new();
    if let Ok(fit) = &fits.compute {
        let labels = strs(&frames.runs, "label")?;
        let res = compute_residuals(&frames.runs, fit)?;
        panels.push(Panel {
            title: "Compute law: residuals".into(),
            x_label: "training FLOPs".into(),
            y_label: "observed − fitted loss (nats/token)".into(),
            log_x: true,
            series: res
                .iter()
                .zip(&labels)
                .enumerate()
                .map(|(i, (&p, l))| Series::new(Some(l.clone()), i, Kind::Markers, vec![p]))
                .collect(),
            zero_line: true,
            ..Panel::default()
        });
    }
    if let Ok(tt) = &fits.test_time {
        let keys = strs(&frames.test_time, "run_key")?;
        let t = f64s(&frames.test_time, "test_loops")?;
        let l = f64s(&frames.test_time, "val_loss")?;
        let mut series = Vec::new();
        for fit in tt {
            let pts = (0..keys.len())
                .filter(|&r| keys[r] == fit.run_key)
                .map(|r| (t[r], l[r] - fit.predict(t[r])));
            series.push(Series::new(
                Some(fit.label.clone()),
                run_colour(frames, &fit.run_key)?,
                Kind::Markers,
                pts.collect(),
            ));
        }
        panels.push(Panel {
            title: "Test-time law: residuals".into(),
            x_label: "test-time loops T".into(),
            y_label: "observed − fitted loss (nats/token)".into(),
            log_x: true,
            series,
            zero_line: true,
            ..Panel::default()
        });
    }
    for fit in [&fits.isoflop_loops, &fits.isoflop_tokens]
        .into_iter()
        .flatten()
    {
        let (x_label, word) = axis_words(fit.axis);
        let series: Vec<Series> = fit
            .budgets
            .iter()
            .enumerate()
            .map(|(i, b)| {
                // Only the points the local parabola was fitted to.
                let pts =
                    b.x.iter()
                        .zip(&b.loss)
                        .filter(|(x, _)| b.in_window(**x))
                        .map(|(&x, &y)| (x, y - b.predict(x)));
                Series::new(
                    Some(format!("C = {} FLOPs", tick(b.flops))),
                    i,
                    Kind::Markers,
                    pts.collect(),
                )
            })
            // A budget whose lowest loss is at an edge has no parabola.
            .filter(|s| !s.points.is_empty())
            .collect();
        if series.is_empty() {
            continue;
        }
        panels.push(Panel {
            title: format!("Iso-FLOP parabolas over {word} (near each minimum): residuals"),
            x_label: x_label.into(),
            y_label: "observed − fitted loss (nats/token)".into(),
            log_x: true,
            series,
            zero_line: true,
            ..Panel::default()
        });
    }
    if panels.is_empty() {
        return Ok(Err(
            "No law could be fitted to this database (see the sentences above), so there are no \
                       residuals to show."
                .into(),
        ));
    }
    Ok(Ok(Figure::row(panels)))
}
