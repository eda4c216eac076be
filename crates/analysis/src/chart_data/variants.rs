//! The same grid run several ways (two backends, say): each configuration's final loss under
//! every other variant against the first, from the same pivot as the report's table
//! ([`super::loss_pivot`]).

use super::loss_pivot::LossPivot;
use super::shared::{Built, extent};
use crate::frames::Frames;
use crate::pivot::variants_crossed;
use loopscale_chart::{Figure, Kind, Panel, Series};

/// The same grid run several ways (two backends, say): each configuration's final loss under
/// every other variant against the first, with the line of agreement. Two independent
/// implementations of one configuration should sit on the line; the title gives the largest gap.
pub fn variant_parity(frames: &Frames) -> Built {
    if !variants_crossed(&frames.runs)? {
        return Ok(Err(
            "The sweep's variants are not one grid run several ways (every configuration under every \
             variant), so there is no side-by-side comparison of variants."
                .into(),
        ));
    }
    let table = LossPivot::of(&frames.runs, "variant")?;
    let names = &table.columns;
    let first = table.column(0);
    // Pivot columns read `variant=torch`; the chart names the variant alone.
    let shown = |n: &str| n.trim_start_matches("variant=").to_string();
    let mut series = Vec::new();
    let mut all: Vec<f64> = Vec::new();
    let mut largest = 0.0f64;
    for (j, other) in names.iter().enumerate().skip(1) {
        let ys = table.column(j);
        let pts: Vec<(f64, f64)> = first
            .iter()
            .zip(&ys)
            .filter_map(|(x, y)| Some((((*x)?), (*y)?)))
            .collect();
        for &(x, y) in &pts {
            all.extend([x, y]);
            largest = largest.max((y - x).abs());
        }
        series.push(Series::new(
            Some(format!("{} (one marker per configuration)", shown(other))),
            j,
            Kind::Markers,
            pts,
        ));
    }
    if all.is_empty() {
        return Ok(Err(
            "No configuration finished under two variants, so there is nothing to compare.".into(),
        ));
    }
    let (lo, hi) = extent(all.iter().copied());
    let pad = 0.05 * (hi - lo).max(1e-3);
    series.insert(
        0,
        Series::new(
            Some("agreement (y = x)".into()),
            6,
            Kind::Dashed,
            vec![(lo - pad, lo - pad), (hi + pad, hi + pad)],
        ),
    );
    Ok(Ok(Figure::single(Panel {
        title: format!(
            "Final loss per configuration, each variant against {} (largest gap {largest:.4} nats/token)",
            shown(&names[0])
        ),
        x_label: format!(
            "final validation loss under {} (nats/token)",
            shown(&names[0])
        ),
        y_label: "final validation loss under the other variant (nats/token)".into(),
        log_x: false,
        log_y: false,
        series,
        zero_line: false,
    })))
}
