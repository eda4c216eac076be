//! Loss against loops at evaluation: test-time curves with L(T) = L∞ + A·e^(−kT) per model, and
//! elastic depth (loss against the loop budget M along each schedule).

use super::seeds::{barred, group_colour, group_series, means, noise_words, sweep_has_seeds};
use super::shared::{Built, extent, per_run, run_colour};
use crate::columns::{f64s, strs};
use crate::fits::ReportFits;
use crate::frames::Frames;
use crate::group_points::{
    GroupCurve, group_curves, run_labels, se_caption, seeds_measured, test_time_curves,
};
use crate::groups::{ReplicateGroup, replicate_groups};
use loopscale_chart::{Figure, Kind, Panel, Series, tick};

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
            None => format!("  fit: L∞ = {l_inf:.3}, k = {}", tick(k)),
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
    Ok(Ok(Figure::single(Panel {
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
    let groups = replicate_groups(frames)?;
    if sweep_has_seeds(&groups) {
        return grouped_budget(frames, &groups, (m_min, m_max));
    }
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
    Ok(Ok(budget_figure(String::new(), series)))
}

/// The elastic-depth chart's one panel; `noise` ("mean ± 1 SE over 3 seeds") follows the title.
fn budget_figure(noise: String, series: Vec<Series>) -> Figure {
    let title = "Elastic depth: validation loss vs loop budget M";
    Figure::single(Panel {
        title: if noise.is_empty() {
            title.into()
        } else {
            format!("{title} ({noise})")
        },
        x_label: "loop budget M (loops at evaluation)".into(),
        y_label: "validation loss (nats/token)".into(),
        log_x: true,
        log_y: false,
        series,
        zero_line: false,
    })
}

/// Elastic depth for a sweep with seeds: per replicate group and schedule, the mean loss at each
/// budget M with ±1 SE bars (its first schedule solid, the others dashed), each GPT group's mean
/// final loss as a level in a ±1 SE band.
fn grouped_budget(frames: &Frames, groups: &[ReplicateGroup], (m_min, m_max): (f64, f64)) -> Built {
    let (keys, schedules) = (
        strs(&frames.budget, "run_key")?,
        strs(&frames.budget, "schedule")?,
    );
    let m = f64s(&frames.budget, "test_loops")?;
    let l = f64s(&frames.budget, "val_loss")?;
    let mut names: Vec<&str> = Vec::new();
    for s in &schedules {
        if !names.contains(&s.as_str()) {
            names.push(s);
        }
    }
    let label_of = run_labels(frames)?;
    let mut series = Vec::new();
    let mut all: Vec<GroupCurve> = Vec::new();
    for name in names {
        let rows: Vec<(String, f64, f64)> = (0..keys.len())
            .filter(|&r| schedules[r] == name && l[r].is_finite())
            .map(|r| (keys[r].clone(), m[r], l[r]))
            .collect();
        for (j, c) in group_curves(groups, &rows, &label_of)
            .into_iter()
            .enumerate()
        {
            let colour = group_colour(groups, &c, j);
            // The group's first schedule is its solid line, as a single run's is.
            let first = (0..keys.len())
                .find(|&r| c.run_keys.contains(&keys[r]))
                .is_some_and(|r| schedules[r] == name);
            let kind = if first { Kind::Line } else { Kind::Dashed };
            series.extend(barred(
                &c,
                colour,
                Some(format!("{} · {name} (n = {})", c.label, c.n)),
            ));
            series.push(Series::new(None, colour, kind, means(&c)));
            all.push(c);
        }
    }
    let (run_keys, arch) = (strs(&frames.runs, "run_key")?, strs(&frames.runs, "arch")?);
    for (i, g) in groups.iter().enumerate() {
        let gpt = g.run_keys.iter().any(|k| {
            run_keys
                .iter()
                .position(|r| r == k)
                .is_some_and(|r| arch[r] == "gpt")
        });
        if !gpt {
            continue;
        }
        let (mean, se) = (g.stats.mean, g.stats.se.unwrap_or(0.0));
        series.push(Series::new(
            None,
            i,
            Kind::Band(vec![
                (m_min, mean - se, mean + se),
                (m_max, mean - se, mean + se),
            ]),
            vec![],
        ));
        series.push(Series::new(
            Some(format!("{} · GPT (one depth, n = {})", g.label, g.stats.n)),
            i,
            Kind::Dashed,
            vec![(m_min, mean), (m_max, mean)],
        ));
    }
    Ok(Ok(budget_figure(se_caption(&all), series)))
}
