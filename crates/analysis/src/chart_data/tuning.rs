//! A tuned sweep's optima: each tuned hyperparameter's optimum against compute, with
//! η*(C) = a·C^b and the configurations whose best value is at an edge of their grid.

use super::shared::{Built, extent};
use crate::fits::ReportFits;
use loopscale_chart::{Figure, INK, Kind, Panel, Series, tick};

/// The tuned optimum of each hyperparameter against compute: each configuration's refined
/// optimum, the configurations whose best value is at an edge of their grid (bounds, drawn as
/// stars and not fitted), and η*(C) = a·C^b with its interval.
pub fn hyper_optima(fits: &ReportFits) -> Built {
    if fits.envelope.is_none() {
        return Ok(Err(
            "No hyperparameter was tuned (give `--tune train.lr` or `[analysis] tune = [\"train.lr\"]` \
             with train.lr on a grid), so there is no optimal value to set against compute."
                .into(),
        ));
    }
    if fits.hyper.is_empty() {
        return Ok(Err(
            "The tuned keys take no positive numeric values on a grid, so there is no optimum to locate."
                .into(),
        ));
    }
    let mut panels = Vec::new();
    for h in &fits.hyper {
        let name = crate::envelope::column_of(&h.key);
        let mut series = Vec::new();
        let xs = h
            .inside
            .iter()
            .map(|p| p.0)
            .chain(h.edges.iter().map(|p| p.0));
        let (lo, hi) = extent(xs);
        match &h.law {
            Ok(r) => {
                let (a, b) = (
                    r.value("a").unwrap_or(f64::NAN),
                    r.value("b").unwrap_or(f64::NAN),
                );
                let interval = r
                    .param("b")
                    .and_then(|p| Some(format!(" [{}, {}]", tick(p.lo?), tick(p.hi?))))
                    .unwrap_or_default();
                let legend = if r.identified("b") && r.identified("a") {
                    format!("{name}* = {}·C^{b:.3}{interval}", tick(a))
                } else if r.identified("b") {
                    format!("{name}* ∝ C^{b:.3}{interval} (a not identified)")
                } else {
                    format!("{name}* = a·C^b: b not identified (two configurations)")
                };
                series.push(Series::new(
                    Some(legend),
                    0,
                    Kind::Dashed,
                    (0..=20)
                        .map(|k| (lo.ln() + (hi.ln() - lo.ln()) * k as f64 / 20.0).exp())
                        .map(|x| (x, a * x.powf(b)))
                        .collect(),
                ));
            }
            Err(why) => series.push(Series::new(
                Some(format!("no law: {}", why.split(':').next().unwrap_or(why))),
                INK,
                Kind::Markers,
                vec![],
            )),
        }
        series.push(Series::new(
            Some("refined optimum (parabola in log value)".into()),
            1,
            Kind::Markers,
            h.inside.iter().map(|p| (p.0, p.1)).collect(),
        ));
        if !h.edges.is_empty() {
            series.push(Series::new(
                Some("best at an edge of its grid (a bound; not fitted)".into()),
                3,
                Kind::Star,
                h.edges.iter().map(|p| (p.0, p.1)).collect(),
            ));
        }
        panels.push(Panel {
            title: format!("Optimal {name} vs compute, one point per configuration"),
            x_label: "training FLOPs".into(),
            y_label: format!("optimal {name}"),
            log_x: true,
            log_y: true,
            series,
            zero_line: false,
        });
    }
    Ok(Ok(Figure::row(panels)))
}
