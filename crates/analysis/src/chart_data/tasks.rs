//! The task charts (`data.task`): accuracy against effective depth for looped k⊗L and plain
//! kL-layer models with the depth law fitted to each (Saunshi et al.'s Figure 1 shape),
//! accuracy against test-time loops, and in-context regression error against the number of
//! examples per loop count, beside least squares, averaging and 3-NN (Garg et al., Yang et al.).

use super::seeds::{means, sweep_has_seeds};
use super::shared::{Built, extent};
use crate::frames::Frames;
use crate::group_points::{
    GroupCurve, GroupPoint, accuracy_curves, group_curves, se_caption, se_over, seeds_measured,
};
use crate::groups::replicate_groups;
use crate::tasks::{Family, IclPoint, depth_points};
use loopscale_chart::{Figure, INK, Kind, Panel, Series};
use loopscale_fit::depth::depth_line;

/// Accuracy at the training depth against effective depth, one line per family, with the
/// fitted α·ln(depth) + β dashed.
pub fn accuracy_vs_depth(frames: &Frames) -> Built {
    let points = depth_points(&frames.accuracy);
    if points.is_empty() {
        return Ok(Err(
            "No task run with an accuracy (data.task = \"p_hop\" or \"addition\") finished, so \
             there is no accuracy-vs-depth chart."
                .into(),
        ));
    }
    let groups = accuracy_curves(frames, true)?;
    let curves: Vec<GroupCurve> = groups.iter().map(|(_, c)| c.clone()).collect();
    let seeded = seeds_measured(&curves);
    let mut series = Vec::new();
    for (c, family, name) in [
        (0, Family::Looped, "looped k⊗L (one block, L loops)"),
        (1, Family::Gpt, "GPT kL⊗1 (kL layers)"),
    ] {
        let mut pts: Vec<(f64, f64)> = points
            .iter()
            .filter(|(f, _, _)| *f == family)
            .map(|(_, d, a)| (*d, *a))
            .collect();
        if pts.is_empty() {
            continue;
        }
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        // The depth law is fitted to every seed; with replicates the line joins the means.
        let (d, a): (Vec<f64>, Vec<f64>) = pts.iter().copied().unzip();
        if seeded {
            let mine: Vec<&GroupCurve> = groups
                .iter()
                .filter(|(p, _)| p.family == family)
                .map(|(_, g)| g)
                .collect();
            let mut line: Vec<&GroupPoint> = mine.iter().flat_map(|g| &g.points).collect();
            line.sort_by(|a, b| a.x.total_cmp(&b.x));
            let n = extent(mine.iter().map(|g| g.n as f64));
            series.push(Series::new(
                None,
                c,
                Kind::Faint,
                line.iter().flat_map(|p| p.seeds.clone()).collect(),
            ));
            series.push(Series::new(
                Some(format!("{name}, n = {}", seeds_range(n))),
                c,
                Kind::ErrorBars(line.iter().filter_map(|p| p.bar()).collect()),
                line.iter().map(|p| (p.x, p.mean)).collect(),
            ));
            series.push(Series::new(
                None,
                c,
                Kind::Line,
                line.iter().map(|p| (p.x, p.mean)).collect(),
            ));
        } else {
            series.push(Series::new(Some(name.into()), c, Kind::Line, pts.clone()));
            series.push(Series::new(None, c, Kind::Markers, pts));
        }
        if let Some((alpha, beta, _)) = depth_line(&d, &a) {
            let (lo, hi) = (d[0], d[d.len() - 1]);
            series.push(Series::new(
                Some(format!(
                    "  fit: {alpha:.3}·ln(depth) {} {:.3}",
                    if beta < 0.0 { "−" } else { "+" },
                    beta.abs()
                )),
                c,
                Kind::Dashed,
                (0..=40)
                    .map(|j| lo * (hi / lo).powf(j as f64 / 40.0))
                    .map(|x| (x, alpha * x.ln() + beta))
                    .collect(),
            ));
        }
    }
    // k⊗1: the single block, the depth both families start from.
    if let Some(one) = frames
        .accuracy
        .iter()
        .find(|p| p.test_loops.is_none() && p.family == Family::Looped && p.trained_loops == 1)
    {
        series.push(Series::new(
            Some(format!("k⊗1 ({:.3})", one.accuracy)),
            INK,
            Kind::Star,
            vec![(one.effective_depth, one.accuracy)],
        ));
    }
    Ok(Ok(Figure::single(Panel {
        title: if seeded {
            format!("Task accuracy vs effective depth ({})", se_caption(&curves))
        } else {
            "Task accuracy vs effective depth (one seed per configuration: noise unmeasured)".into()
        },
        x_label: "effective depth (blocks a token passes through)".into(),
        y_label: "accuracy (exact answers)".into(),
        log_x: true,
        log_y: false,
        series,
        zero_line: false,
    })))
}

/// A looped run's accuracy at each test-time loop count, one line per run.
pub fn accuracy_vs_loops(frames: &Frames) -> Built {
    let looped: Vec<_> = frames
        .accuracy
        .iter()
        .filter(|p| p.test_loops.is_some())
        .collect();
    if looped.is_empty() {
        return Ok(Err(
            "No looped task run (data.task = \"p_hop\" or \"addition\") was evaluated at \
             test-time loop counts (model.test_loops), so \
             there is no accuracy-vs-loops chart."
                .into(),
        ));
    }
    let groups = accuracy_curves(frames, false)?;
    let curves: Vec<GroupCurve> = groups.iter().map(|(_, c)| c.clone()).collect();
    if seeds_measured(&curves) {
        // Replicates: each configuration's mean accuracy with ±1 SE, its seeds pale behind.
        let mut series = Vec::new();
        for (c, (p, g)) in groups.iter().enumerate() {
            series.push(Series::new(
                None,
                c,
                Kind::Faint,
                g.points.iter().flat_map(|q| q.seeds.clone()).collect(),
            ));
            series.push(Series::new(None, c, Kind::Line, means(g)));
            series.push(Series::new(
                Some(format!(
                    "{}⊗{} (trained at {} loops, n = {})",
                    p.block, p.trained_loops, p.trained_loops, g.n
                )),
                c,
                Kind::ErrorBars(g.points.iter().filter_map(GroupPoint::bar).collect()),
                means(g),
            ));
        }
        return Ok(Ok(loops_figure(&se_caption(&curves), series)));
    }
    let mut keys: Vec<&str> = looped.iter().map(|p| p.run_key.as_str()).collect();
    keys.dedup();
    let series = keys
        .iter()
        .enumerate()
        .map(|(c, key)| {
            let rows: Vec<_> = looped.iter().filter(|p| p.run_key == *key).collect();
            let p = rows[0];
            Series::new(
                Some(format!(
                    "{}⊗{} (trained at {} loops)",
                    p.block, p.trained_loops, p.trained_loops
                )),
                c,
                Kind::Line,
                rows.iter()
                    .map(|p| (p.test_loops.unwrap_or(1) as f64, p.accuracy))
                    .collect(),
            )
        })
        .collect();
    Ok(Ok(loops_figure(
        "one seed per configuration: noise unmeasured",
        series,
    )))
}

/// The test-time depth chart's one panel; `noise` says what the bars are, or that there are none.
fn loops_figure(noise: &str, series: Vec<Series>) -> Figure {
    Figure::single(Panel {
        title: format!("Test-time depth: accuracy vs loops at evaluation ({noise})"),
        x_label: "test-time loops T".into(),
        y_label: "accuracy (exact answers)".into(),
        log_x: true,
        log_y: false,
        series,
        zero_line: false,
    })
}

/// `3`, or `2–3` when groups differ in their seeds.
fn seeds_range((lo, hi): (f64, f64)) -> String {
    if lo == hi {
        format!("{hi}")
    } else {
        format!("{lo}–{hi}")
    }
}

/// Errors below this are drawn at it: least squares is exact (1e-30) once it has d examples,
/// and a log axis down to round-off would flatten every other curve.
const ERROR_FLOOR: f64 = 1e-4;

/// In-context regression error / d against the number of examples: each model (a looped one
/// at each test-time loop count) as a line, the reference estimators dashed. With seeds, each
/// model's line joins its replicate group's means, with ±1 SE bars and its seeds pale behind.
pub fn icl_errors(frames: &Frames) -> Built {
    if frames.icl.is_empty() {
        return Ok(Err(
            "No in-context regression run (data.task = \"linear_regression\") finished, so \
             there is no ICL error chart."
                .into(),
        ));
    }
    let mut curves: Vec<(String, bool)> = Vec::new();
    for p in &frames.icl {
        let name = match (p.estimator.as_str(), p.test_loops) {
            ("model", Some(t)) => format!("{} at {t} loops", p.model),
            ("model", None) => p.model.clone(),
            (est, _) => est.to_string(),
        };
        if !curves.iter().any(|(n, _)| *n == name) {
            curves.push((name, p.estimator != "model"));
        }
    }
    let curve_of = |p: &IclPoint| match (p.estimator.as_str(), p.test_loops) {
        ("model", Some(t)) => format!("{} at {t} loops", p.model),
        ("model", None) => p.model.clone(),
        (est, _) => est.to_string(),
    };
    let groups = replicate_groups(frames)?;
    let seeded = sweep_has_seeds(&groups);
    let mut series = Vec::new();
    let mut grouped: Vec<GroupCurve> = Vec::new();
    for (c, (name, baseline)) in curves.iter().enumerate() {
        if seeded && !*baseline {
            // With seeds, a model's curve is its replicate group's mean with ±1 SE bars.
            let rows: Vec<(String, f64, f64)> = frames
                .icl
                .iter()
                .filter(|p| curve_of(p) == *name)
                .map(|p| (p.run_key.clone(), p.n_examples as f64, p.error))
                .collect();
            for g in group_curves(&groups, &rows, |k| k.to_string()) {
                series.extend(floored_bars(&g, c, format!("{name} (n = {})", g.n)));
                grouped.push(g);
            }
            continue;
        }
        let pts = frames
            .icl
            .iter()
            .filter(|p| curve_of(p) == *name)
            // Baselines are the same for every run of a sweep: the first run's suffice.
            .fold(Vec::<(f64, f64)>::new(), |mut acc, p| {
                if !acc.iter().any(|(k, _)| *k == p.n_examples as f64) {
                    acc.push((p.n_examples as f64, p.error.max(ERROR_FLOOR)));
                }
                acc
            });
        let kind = if *baseline { Kind::Dashed } else { Kind::Line };
        series.push(Series::new(Some(name.clone()), c, kind, pts));
    }
    let title = if seeded {
        format!(
            "In-context regression: error vs examples ({})",
            se_over(&grouped)
        )
    } else {
        "In-context linear regression: error vs examples".to_string()
    };
    Ok(Ok(Figure::single(Panel {
        title,
        x_label: "in-context examples".into(),
        y_label: "squared error / d (below 1e-4 drawn at 1e-4)".into(),
        log_x: false,
        log_y: true,
        series,
        zero_line: false,
    })))
}

/// A model's ICL curve by replicate group: the mean error with ±1 SE bars and a line through the
/// means, its seeds pale behind, all drawn no lower than [`ERROR_FLOOR`].
fn floored_bars(g: &GroupCurve, colour: usize, name: String) -> Vec<Series> {
    let floor = |y: f64| y.max(ERROR_FLOOR);
    let line: Vec<(f64, f64)> = g.points.iter().map(|p| (p.x, floor(p.mean))).collect();
    vec![
        Series::new(
            None,
            colour,
            Kind::Faint,
            g.points
                .iter()
                .flat_map(|p| p.seeds.iter().map(|&(x, y)| (x, floor(y))))
                .collect(),
        ),
        Series::new(None, colour, Kind::Line, line.clone()),
        Series::new(
            Some(name),
            colour,
            Kind::ErrorBars(
                g.points
                    .iter()
                    .filter_map(|p| p.bar())
                    .map(|(x, lo, hi)| (x, floor(lo), floor(hi)))
                    .collect(),
            ),
            line,
        ),
    ]
}
