//! Replicate groups drawn as chart series: each group's mean with ±1 SE bars and its seeds pale
//! behind (the numbers are [`crate::group_points`]'s), the caption's words for the noise, and
//! the seed-groups chart of final loss per configuration.

use super::shared::Built;
use crate::frames::Frames;
use crate::group_points::{GroupCurve, GroupPoint, se_caption, seeds_measured};
use crate::groups::replicate_groups;
use loopscale_chart::{Figure, Kind, Panel, Series};

/// Each replicate group's points as its mean with a ±1 SE bar (none for a single seed) and its
/// seeds pale behind, one colour per group; the numbers are the analysis's
/// ([`crate::group_points`]).
pub fn group_series(groups: &[GroupCurve], series: &mut Vec<Series>) {
    for (i, g) in groups.iter().enumerate() {
        series.push(Series::new(
            None,
            i,
            Kind::Faint,
            g.points.iter().flat_map(|p| p.seeds.clone()).collect(),
        ));
        series.push(Series::new(
            Some(format!("{} (n = {})", g.label, g.n)),
            i,
            Kind::ErrorBars(g.points.iter().filter_map(GroupPoint::bar).collect()),
            g.points.iter().map(|p| (p.x, p.mean)).collect(),
        ));
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
