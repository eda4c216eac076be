//! Parcae's laws and the sweep's written laws drawn as predicted against measured loss, with
//! their residuals against FLOPs and their parameters in the legend.

use super::shared::{Built, extent};
use crate::fits::{ParcaeFit, ReportFits};
use loopscale_chart::{Figure, HEIGHT, INK, Kind, Panel, Series, tick};

/// Parcae's laws over the looped runs, one row of two panels each: predicted against measured
/// final loss (on the diagonal when the law holds) and the residuals against FLOPs, with the
/// fitted parameters and the held-out rollout's error in the legend. The training law
/// L(μ, D) = E + X·N(μ)^(−x) + Y·D^(−y) has a point per run; the unified law, with the term
/// Z·e^(−z·T/μ) added, a point per test-time evaluation.
pub fn parcae_law(fits: &ReportFits) -> Built {
    let mut panels = Vec::new();
    for (name, fit, unified) in [
        ("Parcae's law", &fits.parcae, false),
        ("Parcae's unified law", &fits.parcae_unified, true),
    ] {
        let fit = match fit {
            Ok(f) => f,
            // The training law is the chart; without it there is nothing to draw.
            Err(why) if !unified => return Ok(Err(why.clone())),
            Err(_) => continue,
        };
        let names: &[&str] = if unified {
            &["E", "X", "x", "Y", "y", "Z", "z"]
        } else {
            &["E", "X", "x", "Y", "y"]
        };
        panels.extend(law_panels(name, fit, names, unified));
    }
    let rows = panels.len().div_ceil(2) as u32;
    let mut fig = Figure::row(panels);
    fig.height = HEIGHT * rows;
    Ok(Ok(fig))
}

/// The laws the sweep file writes as expressions, each as Parcae's law is drawn: predicted
/// against measured final loss, and the residuals against FLOPs.
pub fn written_laws(fits: &ReportFits) -> Built {
    if fits.written.is_empty() {
        return Ok(Err(
            "The sweep file writes no law of its own ([analysis.laws.NAME]).".into(),
        ));
    }
    let mut panels = Vec::new();
    let mut why = Vec::new();
    for (name, fit) in &fits.written {
        match fit {
            Ok(f) => {
                let names: Vec<&str> = f.report.params.iter().map(|p| p.name.as_str()).collect();
                panels.extend(law_panels(&format!("law {name}"), f, &names, false));
            }
            Err(e) => why.push(e.clone()),
        }
    }
    if panels.is_empty() {
        return Ok(Err(why.join(" ")));
    }
    let rows = panels.len().div_ceil(2) as u32;
    let mut fig = Figure::row(panels);
    fig.height = HEIGHT * rows;
    Ok(Ok(fig))
}

/// Measured against predicted loss and the residuals against FLOPs of a law fitted per run (or
/// per evaluation, `many`: no legend entry per point), its parameters `names` in the legend.
fn law_panels(name: &str, fit: &ParcaeFit, names: &[&str], many: bool) -> Vec<Panel> {
    let unified = many;
    let r = &fit.report;
    let v = |n: &str| r.value(n).unwrap_or(f64::NAN);
    let (lo, hi) = extent(fit.runs.iter().flat_map(|p| [p.measured, p.predicted]));
    // Parameters the data do not determine are named as such, never quoted as findings.
    let mut law = names
        .iter()
        .map(|&n| match r.identified(n) {
            false => format!("{n} not identified"),
            true if n.chars().all(|c| c.is_lowercase()) || n == "E" => {
                format!("{n} = {:.3}", v(n))
            }
            true => format!("{n} = {}", tick(v(n))),
        })
        .collect::<Vec<_>>()
        .join(", ");
    if let Some(h) = &r.heldout {
        law.push_str(&format!(
            "; largest budget held out: {:.2}% mean error",
            100.0 * h.mean_abs_rel_error
        ));
    }
    let mut left = vec![Series::new(
        Some(law),
        INK,
        Kind::Dashed,
        vec![(lo, lo), (hi, hi)],
    )];
    if let Some(note) = r.notes.first() {
        left.push(Series::new(
            Some(format!("note: {}", note.split(':').next().unwrap_or(note))),
            INK,
            Kind::Markers,
            vec![],
        ));
    }
    let mut right = Vec::new();
    for (i, p) in fit.runs.iter().enumerate() {
        // A legend entry per run for the training law; the unified law's points are many.
        let label = (!unified).then(|| p.label.clone());
        left.push(Series::new(
            label,
            i,
            Kind::Markers,
            vec![(p.predicted, p.measured)],
        ));
        right.push(Series::new(
            None,
            i,
            Kind::Markers,
            vec![(p.flops, p.measured - p.predicted)],
        ));
    }
    vec![
        Panel {
            title: format!("{name}: measured vs predicted loss"),
            x_label: "predicted loss (nats/token)".into(),
            y_label: "measured loss (nats/token)".into(),
            series: left,
            ..Panel::default()
        },
        Panel {
            title: format!("{name}: residuals"),
            x_label: "training FLOPs".into(),
            y_label: "measured − predicted loss (nats/token)".into(),
            log_x: true,
            series: right,
            zero_line: true,
            ..Panel::default()
        },
    ]
}
