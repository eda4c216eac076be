//! Replicate groups drawn as chart series: each group's mean with ±1 SE bars (or a band, for a
//! curve of many points) and its seeds pale behind (the numbers are [`crate::group_points`]'s),
//! the caption's words for the noise, and the seed-groups chart of final loss per configuration.

use super::shared::Built;
use crate::frames::Frames;
use crate::group_points::{GroupCurve, GroupPoint, se_caption, seeds_measured};
use crate::groups::{ReplicateGroup, replicate_groups};
use loopscale_chart::{Figure, Kind, Panel, Series};

/// Whether some configuration of the sweep has two seeds: only then are a chart's runs drawn as
/// group means with bars (a sweep of single seeds draws its runs as before).
pub fn sweep_has_seeds(groups: &[ReplicateGroup]) -> bool {
    groups.iter().any(|g| g.run_keys.len() >= 2)
}

/// The colour of `curve`: its replicate group's position (so a group has one colour in every
/// panel), or past the groups for a run in none.
pub fn group_colour(groups: &[ReplicateGroup], curve: &GroupCurve, fallback: usize) -> usize {
    groups
        .iter()
        .position(|g| curve.run_keys.iter().any(|k| g.run_keys.contains(k)))
        .unwrap_or(groups.len() + fallback)
}

/// A curve's means, in order of x.
pub fn means(curve: &GroupCurve) -> Vec<(f64, f64)> {
    curve.points.iter().map(|p| (p.x, p.mean)).collect()
}

/// A curve of many points (a training curve) as the line of its means, named `name`, in a
/// band of ±1 SE (zero wide where an x has one seed).
pub fn banded(curve: &GroupCurve, colour: usize, name: Option<String>, kind: Kind) -> Vec<Series> {
    let band = curve
        .points
        .iter()
        .map(|p| {
            let se = p.se.unwrap_or(0.0);
            (p.x, p.mean - se, p.mean + se)
        })
        .collect();
    vec![
        Series::new(None, colour, Kind::Band(band), vec![]),
        Series::new(name, colour, kind, means(curve)),
    ]
}

/// A curve's means with ±1 SE bars, named `name`, its seeds pale behind.
pub fn barred(curve: &GroupCurve, colour: usize, name: Option<String>) -> Vec<Series> {
    vec![
        Series::new(
            None,
            colour,
            Kind::Faint,
            curve.points.iter().flat_map(|p| p.seeds.clone()).collect(),
        ),
        Series::new(
            name,
            colour,
            Kind::ErrorBars(curve.points.iter().filter_map(GroupPoint::bar).collect()),
            means(curve),
        ),
    ]
}

/// Each replicate group's points as its mean with a ±1 SE bar (none for a single seed) and its
/// seeds pale behind, one colour per group; the numbers are the analysis's
/// ([`crate::group_points`]).
pub fn group_series(groups: &[GroupCurve], series: &mut Vec<Series>) {
    for (i, g) in groups.iter().enumerate() {
        series.extend(barred(g, i, Some(format!("{} (n = {})", g.label, g.n))));
    }
}

/// What a chart comparing configurations says about their noise: the bars' meaning, or that a
/// sweep of single seeds leaves it unmeasured.
pub fn noise_words(groups: &[GroupCurve]) -> String {
    if seeds_measured(groups) {
        se_caption(groups)
    } else {
        "one seed per configuration: noise unmeasured".into()
    }
}

/// Final loss of each replicate group against training FLOPs: the group's mean with a bar of
/// ±1 standard error, its single seeds pale behind it. Skipped when no configuration has two
/// seeds (the noise is then unmeasured, which the report's table says).
pub fn seed_groups(frames: &Frames) -> Built {
    let groups = replicate_groups(frames)?;
    if !groups.iter().any(|g| g.stats.n >= 2) {
        return Ok(Err(
            "every configuration has one seed: seed noise is unmeasured (add seeds: [sweep] seeds = [0, 1, 2])".into(),
        ));
    }
    let mut series = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        // Groups at one FLOP budget are set side by side (a few percent apart on the log axis),
        // so their bars do not hide each other.
        let peers: Vec<usize> = (0..groups.len())
            .filter(|&j| (groups[j].flops / g.flops - 1.0).abs() < 0.02)
            .collect();
        let at = peers.iter().position(|&j| j == i).unwrap_or(0) as f64;
        let x = g.flops * (1.0 + 0.04 * (at - (peers.len() as f64 - 1.0) / 2.0));
        series.push(Series::new(
            None,
            i,
            Kind::Faint,
            g.losses.iter().map(|&l| (x, l)).collect(),
        ));
        let se = g.stats.se.unwrap_or(0.0);
        series.push(Series::new(
            Some(format!("{} (n = {})", g.label, g.stats.n)),
            i,
            Kind::ErrorBars(vec![(x, g.stats.mean - se, g.stats.mean + se)]),
            vec![(x, g.stats.mean)],
        ));
    }
    Ok(Ok(Figure::single(Panel {
        title: "Final loss per configuration: mean ± 1 SE over seeds (seeds pale; one budget's side by side)"
            .into(),
        x_label: "training FLOPs".into(),
        y_label: "final validation loss (nats/token)".into(),
        log_x: true,
        log_y: false,
        series,
        zero_line: false,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group_points::group_curves;

    /// Three seeds at x = 1 (1.00, 1.01, 1.02: sd 0.01, SE 0.01/√3) and one at x = 2.
    fn curve() -> GroupCurve {
        let rows: Vec<(String, f64, f64)> = [(1.0, 1.00), (1.0, 1.01), (1.0, 1.02), (2.0, 0.5)]
            .map(|(x, y)| ("run".to_string(), x, y))
            .to_vec();
        group_curves(&[], &rows, |k| k.to_string()).remove(0)
    }

    #[test]
    fn a_band_is_one_standard_error_each_side_and_none_wide_at_one_seed() {
        let series = banded(&curve(), 2, Some("g".into()), Kind::Line);
        let Kind::Band(band) = &series[0].kind else {
            panic!("a band first, under the line")
        };
        let (x, lo, hi) = band[0];
        assert_eq!(x, 1.0);
        assert!(((hi - lo) / 2.0 - 0.01 / 3f64.sqrt()).abs() < 1e-12);
        assert!(((hi + lo) / 2.0 - 1.01).abs() < 1e-12);
        assert_eq!(band[1], (2.0, 0.5, 0.5), "one seed: no width");
        assert_eq!(series[1].points, vec![(1.0, 1.01), (2.0, 0.5)]);
        assert_eq!((series[1].colour, series[1].kind.clone()), (2, Kind::Line));
    }

    #[test]
    fn bars_stand_on_the_means_and_every_seed_is_drawn_pale() {
        let series = barred(&curve(), 0, None);
        assert_eq!(series[0].kind, Kind::Faint);
        assert_eq!(series[0].points.len(), 4, "every seed");
        let Kind::ErrorBars(bars) = &series[1].kind else {
            panic!("bars second")
        };
        assert_eq!(bars.len(), 1, "no bar where one seed was measured");
        let (_, lo, hi) = bars[0];
        assert!(((hi - lo) / 2.0 - 0.01 / 3f64.sqrt()).abs() < 1e-12);
        assert_eq!(series[1].points, means(&curve()));
    }
}
