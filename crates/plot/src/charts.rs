//! The report's charts, each built as a [`Figure`] from the analysis frames and fits, or the
//! sentence saying why its data is missing.

use anyhow::Result;

use super::figure::{Figure, INK, Kind, Panel, Series};
use loopscale_analysis::fits::{IsoflopFit, ParcaeFit, ReportFits, compute_residuals};
use loopscale_analysis::group_points::{
    GroupCurve, GroupPoint, final_loss_vs_flops, se_caption, seeds_measured, test_time_curves,
};
use loopscale_analysis::groups::replicate_groups;
use loopscale_analysis::pivot::{loss_by, variants_crossed};
use loopscale_analysis::{Frames, f64s, opt_f64s, strs};
use loopscale_fit::IsoflopAxis;
use loopscale_fit::isoflop::Location;

/// What a chart function returns: the figure, or why there is none.
pub type Built = Result<Result<Figure, String>>;

pub const WIDTH: u32 = 960;
pub const HEIGHT: u32 = 600;
/// Two panels side by side.
pub const WIDE: u32 = 1500;

pub(crate) fn single(panel: Panel) -> Figure {
    Figure {
        panels: vec![panel],
        columns: 1,
        width: WIDTH,
        height: HEIGHT,
    }
}

pub(crate) fn row(panels: Vec<Panel>) -> Figure {
    let n = panels.len().max(1);
    Figure {
        columns: n.min(2),
        width: if n > 1 { WIDE } else { WIDTH },
        height: HEIGHT * n.div_ceil(2) as u32,
        panels,
    }
}

/// The smallest and largest of `values` (∞ and −∞ when there are none).
pub(crate) fn extent(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    values
        .into_iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        })
}

/// The colour of run `key`: its position in the runs frame, so a run has one colour in every
/// chart.
fn run_colour(frames: &Frames, key: &str) -> Result<usize> {
    Ok(frames
        .run_keys()?
        .iter()
        .position(|k| k == key)
        .unwrap_or(0))
}

/// Per run: its label, colour and the rows of `df` that are its.
fn per_run(
    frames: &Frames,
    df: &polars::prelude::DataFrame,
) -> Result<Vec<(String, usize, Vec<usize>)>> {
    let keys = frames.run_keys()?;
    let labels = strs(&frames.runs, "label")?;
    let rows = strs(df, "run_key")?;
    Ok(keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            (
                labels[i].clone(),
                i,
                (0..rows.len())
                    .filter(|&r| rows[r] == *k)
                    .collect::<Vec<_>>(),
            )
        })
        .filter(|(_, _, r)| !r.is_empty())
        .collect())
}

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
    Ok(Ok(single(Panel {
        title: format!("Training loss vs {what} (lines: train, dots: validation)"),
        x_label: x_label.into(),
        y_label: "loss (nats/token)".into(),
        log_x: true,
        log_y: false,
        series,
        zero_line: false,
    })))
}

/// Final validation bits per byte against training FLOPs, one series per tokenizer (and data
/// source): a loss per token is not comparable across vocabularies, a loss per byte of the same
/// text is. Each run's bits per byte = nats per token / ln 2 / its measured bytes per token
/// (`runs.bytes_per_token`). Drawn when the runs use more than one tokenizer.
pub fn bits_per_byte(frames: &Frames) -> Built {
    let keys = frames.run_keys()?;
    let c = f64s(&frames.runs, "flops")?;
    let bpb = opt_f64s(&frames.runs, "final_val_bpb")?;
    let (cfg_keys, cfg_json) = (
        strs(&frames.configs, "run_key")?,
        strs(&frames.configs, "config_json")?,
    );
    // Each run's tokenizer, with "shards" when it trained on pre-tokenized files.
    let tokenizer_of = |key: &str| -> String {
        let Some(i) = cfg_keys.iter().position(|k| k == key) else {
            return "?".into();
        };
        let v: serde_json::Value = serde_json::from_str(&cfg_json[i]).unwrap_or_default();
        let name = v["data"]["tokenizer"]
            .as_str()
            .unwrap_or("bytes")
            .to_string();
        if v["data"]["tokens"].is_string() {
            format!("{name} (shards)")
        } else {
            name
        }
    };
    let mut groups: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let Some(b) = bpb[i].filter(|b| b.is_finite()) else {
            continue;
        };
        let name = tokenizer_of(key);
        match groups.iter_mut().find(|(n, _)| *n == name) {
            Some((_, pts)) => pts.push((c[i], b)),
            None => groups.push((name, vec![(c[i], b)])),
        }
    }
    let tokenizers: std::collections::BTreeSet<&str> = groups
        .iter()
        .map(|(n, _)| n.split(' ').next().unwrap_or(""))
        .collect();
    if tokenizers.len() < 2 {
        return Ok(Err(format!(
            "The runs use one tokenizer ({}), so the loss charts already compare them; bits per \
             byte is drawn when runs of different tokenizers share a report.",
            tokenizers.iter().next().copied().unwrap_or("none")
        )));
    }
    let series = groups
        .into_iter()
        .enumerate()
        .map(|(i, (name, mut pts))| {
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series::new(Some(name), i, Kind::Markers, pts)
        })
        .collect();
    Ok(Ok(single(Panel {
        title: "Validation bits per byte vs FLOPs, by tokenizer".into(),
        x_label: "training FLOPs".into(),
        y_label: "bits per byte of validation text".into(),
        log_x: true,
        log_y: false,
        series,
        zero_line: false,
    })))
}

/// Final validation loss against training FLOPs, with L(C) = E + A·C^(−α) and its band.
pub fn compute_law(frames: &Frames, fits: &ReportFits) -> Built {
    let fit = match &fits.compute {
        Ok(f) => f,
        Err(why) => return Ok(Err(why.clone())),
    };
    let c = f64s(&frames.runs, "flops")?;
    let l = f64s(&frames.runs, "final_val_loss")?;
    let labels = strs(&frames.runs, "label")?;
    let fc = f64s(&frames.frontier, "flops")?;
    let fl = f64s(&frames.frontier, "final_val_loss")?;
    let v = |n: &str| fit.report.param(n).map(|p| p.value).unwrap_or(f64::NAN);
    let alpha = fit.report.param("alpha");
    let interval = alpha
        .and_then(|a| {
            Some(format!(
                " [{}, {}]",
                super::figure::tick(a.lo?),
                super::figure::tick(a.hi?)
            ))
        })
        .unwrap_or_default();
    let mut series = vec![Series::new(
        Some("95% band of the fit".into()),
        6,
        Kind::Band(fit.band.clone()),
        vec![],
    )];
    // Parameters the data do not determine are named as such, never quoted as findings.
    let r = &fit.report;
    let legend = if r.not_identified.is_empty() {
        format!(
            "L = {:.3} + {}·C^-{:.3}{interval}",
            v("E"),
            super::figure::tick(v("A")),
            v("alpha")
        )
    } else {
        let shown: Vec<String> = ["E", "A", "alpha"]
            .iter()
            .map(|n| match r.identified(n) {
                true if *n == "alpha" => format!("α = {:.3}{interval}", v(n)),
                true => format!("{n} = {}", super::figure::tick(v(n))),
                false => format!("{} not identified", if *n == "alpha" { "α" } else { n }),
            })
            .collect();
        format!("L = E + A·C^-α: {}", shown.join(", "))
    };
    series.push(Series::new(
        Some(legend),
        INK,
        Kind::Dashed,
        fit.band
            .iter()
            .map(|&(x, _, _)| (x, fit.predict(x)))
            .collect(),
    ));
    let groups = final_loss_vs_flops(frames)?;
    let seeded = seeds_measured(&groups);
    if seeded {
        group_series(&groups, &mut series);
    } else {
        // One seed per configuration: each run as before, no bars.
        for (i, label) in labels.iter().enumerate() {
            series.push(Series::new(
                Some(label.clone()),
                i,
                Kind::Markers,
                vec![(c[i], l[i])],
            ));
        }
    }
    series.push(Series::new(
        Some("compute frontier".into()),
        INK,
        Kind::Star,
        fc.iter().copied().zip(fl.iter().copied()).collect(),
    ));
    Ok(Ok(single(Panel {
        title: format!(
            "Final validation loss vs training compute, with the fitted compute law ({})",
            noise_words(&groups)
        ),
        x_label: "training FLOPs".into(),
        y_label: "final validation loss (nats/token)".into(),
        log_x: true,
        log_y: true,
        series,
        zero_line: false,
    })))
}

/// Each replicate group's points as its mean with a ±1 SE bar (none for a single seed) and its
/// seeds pale behind, one colour per group; the numbers are the analysis's
/// ([`loopscale_analysis::group_points`]).
fn group_series(groups: &[GroupCurve], series: &mut Vec<Series>) {
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
fn noise_words(groups: &[GroupCurve]) -> String {
    if seeds_measured(groups) {
        se_caption(groups)
    } else {
        "one seed per configuration: noise unmeasured".into()
    }
}

fn axis_words(axis: IsoflopAxis) -> (&'static str, &'static str) {
    match axis {
        IsoflopAxis::Loops => ("mean training loops μ", "loops"),
        IsoflopAxis::Tokens => ("training tokens", "tokens"),
        IsoflopAxis::Params => ("parameters", "parameters"),
    }
}

/// Loss against loops or tokens, one colour per FLOP budget, with fitted parabolas in log x
/// and their minima.
pub fn isoflop_curves(fit: &Result<IsoflopFit, String>) -> Built {
    let fit = match fit {
        Ok(f) => f,
        Err(why) => return Ok(Err(why.clone())),
    };
    let (x_label, word) = axis_words(fit.axis);
    let mut series = Vec::new();
    for (i, b) in fit.budgets.iter().enumerate() {
        series.push(Series::new(
            Some(format!("C = {} FLOPs", super::figure::tick(b.flops))),
            i,
            Kind::Markers,
            b.x.iter().copied().zip(b.loss.iter().copied()).collect(),
        ));
        let tick = super::figure::tick(b.x_star);
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
                    Some(format!("  minimum: {word}* = {tick}")),
                    i,
                    Kind::Star,
                    vec![(b.x_star, b.loss_star)],
                ));
            }
            edge => {
                // A convex curve lowest at an edge has its minimum past the edge's neighbour.
                let bound = if edge == Location::AtUpperEdge {
                    format!("> {}", super::figure::tick(b.window.0))
                } else {
                    format!("< {}", super::figure::tick(b.window.1))
                };
                series.push(Series::new(
                    Some(format!(
                        "  lowest at the edge ({tick}): {word}* {bound}, not located"
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
    Ok(Ok(single(Panel {
        title: format!("Iso-FLOP curves: final loss vs {word} per FLOP budget"),
        x_label: x_label.into(),
        y_label: "final validation loss (nats/token)".into(),
        log_x: true,
        log_y: false,
        series,
        zero_line: false,
    })))
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
            .and_then(|p| {
                Some(format!(
                    " [{}, {}]",
                    super::figure::tick(p.lo?),
                    super::figure::tick(p.hi?)
                ))
            })
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
                Some(format!(
                    "{word}* = {}·C^{a:.3}{interval}",
                    super::figure::tick(g)
                )),
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
    Ok(Ok(row(panels)))
}

/// Validation loss against test-time loops per model, with L(T) = L∞ + A·e^(−kT).
pub fn test_time(frames: &Frames, fits: &ReportFits) -> Built {
    let fits = match &fits.test_time {
        Ok(f) => f,
        Err(why) => return Ok(Err(why.clone())),
    };
    let keys = strs(&frames.test_time, "run_key")?;
    let t = f64s(&frames.test_time, "test_loops")?;
    let l = f64s(&frames.test_time, "val_loss")?;
    let groups = test_time_curves(frames)?;
    let seeded = seeds_measured(&groups);
    let mut series = Vec::new();
    if seeded {
        group_series(&groups, &mut series);
    }
    for fit in fits {
        // With seeds, a run's fit takes its group's colour and, beside its seeds, no legend line.
        let group = groups
            .iter()
            .position(|g| g.run_keys.contains(&fit.run_key));
        let (i, alone) = match group {
            Some(g) if seeded => (g, groups[g].n == 1),
            _ => (run_colour(frames, &fit.run_key)?, true),
        };
        let rows: Vec<usize> = (0..keys.len())
            .filter(|&r| keys[r] == fit.run_key)
            .collect();
        let t_max = rows.iter().map(|&r| t[r]).fold(1.0, f64::max);
        if !seeded {
            series.push(Series::new(
                Some(fit.label.clone()),
                i,
                Kind::Markers,
                rows.iter().map(|&r| (t[r], l[r])).collect(),
            ));
        }
        let k = fit.report.value("k").unwrap_or(f64::NAN);
        let l_inf = fit.report.value("L_inf").unwrap_or(f64::NAN);
        // A curve without a saturating gain says so instead of quoting an asymptote.
        let legend = match fit.verdict() {
            Some(v) if v.starts_with("no saturating gain") => {
                format!("  fit: {v} (level ≈ {l_inf:.3})")
            }
            Some(v) if v.starts_with("not identified") => format!(
                "  fit: {} not identified, gain {:.3}",
                fit.report.not_identified.join(", "),
                fit.report.value("gain").unwrap_or(f64::NAN)
            ),
            Some(v) => format!("  fit: {v}"),
            None => format!("  fit: L∞ = {l_inf:.3}, k = {}", super::figure::tick(k)),
        };
        series.push(Series::new(
            alone.then_some(legend),
            i,
            Kind::Dashed,
            (0..=60)
                .map(|j| 1.0 + (t_max - 1.0) * j as f64 / 60.0)
                .map(|x| (x, fit.predict(x)))
                .collect(),
        ));
    }
    Ok(Ok(single(Panel {
        title: format!(
            "Test-time depth: validation loss vs loops at evaluation ({})",
            noise_words(&groups)
        ),
        x_label: "test-time loops T".into(),
        y_label: "validation loss (nats/token)".into(),
        log_x: true,
        log_y: false,
        series,
        zero_line: false,
    })))
}

/// Elastic depth: validation loss against the loop budget M, one line per looped run and
/// schedule (a LoopFormer run along each named schedule; a fixed-depth looped run simply run
/// for M loops), each GPT's final loss as a horizontal line. Drawn when some run followed a
/// named schedule (a time-conditioned run).
pub fn budget(frames: &Frames) -> Built {
    let schedules = strs(&frames.budget, "schedule")?;
    if !schedules.iter().any(|s| s != "fixed") {
        return Ok(Err(
            "No run was evaluated along a loop schedule (time-conditioned looped runs, \
             model.loop_conditioning = \"time_step\"), so there is no loss-vs-budget chart."
                .into(),
        ));
    }
    let m = f64s(&frames.budget, "test_loops")?;
    let l = f64s(&frames.budget, "val_loss")?;
    let (m_min, m_max) = extent(m.iter().copied());
    let mut series = Vec::new();
    for (label, c, rows) in per_run(frames, &frames.budget)? {
        let mut names: Vec<&str> = rows.iter().map(|&r| schedules[r].as_str()).collect();
        names.dedup();
        for (k, name) in names.iter().enumerate() {
            let pts: Vec<(f64, f64)> = rows
                .iter()
                .filter(|&&r| schedules[r] == *name)
                .map(|&r| (m[r], l[r]))
                .collect();
            let kind = if k == 0 { Kind::Line } else { Kind::Dashed };
            series.push(Series::new(Some(format!("{label} · {name}")), c, kind, pts));
        }
    }
    let arch = strs(&frames.runs, "arch")?;
    let finals = f64s(&frames.runs, "final_val_loss")?;
    let labels = strs(&frames.runs, "label")?;
    for (i, a) in arch.iter().enumerate() {
        if a == "gpt" {
            series.push(Series::new(
                Some(format!("{} · GPT (one depth)", labels[i])),
                i,
                Kind::Dashed,
                vec![(m_min, finals[i]), (m_max, finals[i])],
            ));
        }
    }
    Ok(Ok(single(Panel {
        title: "Elastic depth: validation loss vs loop budget M".into(),
        x_label: "loop budget M (loops at evaluation)".into(),
        y_label: "validation loss (nats/token)".into(),
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
    Ok(Ok(row(panels)))
}

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
                    Some(format!("C = {} FLOPs", super::figure::tick(b.flops))),
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
    Ok(Ok(row(panels)))
}

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
    let mut fig = row(panels);
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
    let mut fig = row(panels);
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
            true => format!("{n} = {}", super::figure::tick(v(n))),
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
    let table = loss_by(&frames.runs, "variant")?;
    let names: Vec<String> = table
        .get_column_names()
        .iter()
        .skip(1)
        .map(|s| s.to_string())
        .collect();
    let first = opt_f64s(&table, &names[0])?;
    // Pivot columns read `variant=torch`; the chart names the variant alone.
    let shown = |n: &str| n.trim_start_matches("variant=").to_string();
    let mut series = Vec::new();
    let mut all: Vec<f64> = Vec::new();
    let mut largest = 0.0f64;
    for (j, other) in names.iter().enumerate().skip(1) {
        let ys = opt_f64s(&table, other)?;
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
    Ok(Ok(single(Panel {
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
        let name = loopscale_analysis::envelope::column_of(&h.key);
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
                    .and_then(|p| {
                        Some(format!(
                            " [{}, {}]",
                            super::figure::tick(p.lo?),
                            super::figure::tick(p.hi?)
                        ))
                    })
                    .unwrap_or_default();
                let legend = if r.identified("b") && r.identified("a") {
                    format!("{name}* = {}·C^{b:.3}{interval}", super::figure::tick(a))
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
    Ok(Ok(row(panels)))
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
    Ok(Ok(single(Panel {
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
