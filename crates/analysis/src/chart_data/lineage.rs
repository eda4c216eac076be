//! Charts of runs built on runs: WSD branches drawn as one family against independently
//! trained runs, and LoopUS recast models against their parent GPT and the same looped model
//! trained from scratch (loss vs loops, and early exit's loops used vs loss).

use std::collections::BTreeMap;

use anyhow::Result;

use super::shared::{Built, extent};
use crate::columns::{f64s, strs};
use crate::frames::Frames;
use loopscale_chart::{Figure, Kind, Panel, Series};

/// Runs of `role` in the lineage frame, with their parents: `(run_key, parent_run_key)`.
fn with_role(frames: &Frames, role: &str) -> Result<Vec<(String, String)>> {
    let keys = strs(&frames.lineage, "run_key")?;
    let roles = strs(&frames.lineage, "role")?;
    let parents = strs(&frames.lineage, "parent_run_key")?;
    Ok((0..keys.len())
        .filter(|&i| roles[i] == role)
        .map(|i| (keys[i].clone(), parents[i].clone()))
        .collect())
}

fn short(key: &str) -> &str {
    &key[..key.len().min(8)]
}

/// Validation loss against tokens: each WSD branch's cooldown (its evaluations from the branch
/// point on) and final loss, one colour per family (its trunk); every other finished run's
/// final loss against its tokens, one line per variant, for comparison.
pub fn branches(frames: &Frames) -> Built {
    let branches = with_role(frames, "branch")?;
    if branches.is_empty() {
        return Ok(Err(
            "No WSD branches in this database (runs with train.branch = true), so there is no \
             branch chart."
                .into(),
        ));
    }
    let (eval_keys, eval_tokens, eval_loss) = (
        strs(&frames.evals, "run_key")?,
        f64s(&frames.evals, "tokens")?,
        f64s(&frames.evals, "val_loss")?,
    );
    let (run_keys, run_tokens, run_loss, variants) = (
        strs(&frames.runs, "run_key")?,
        f64s(&frames.runs, "tokens")?,
        f64s(&frames.runs, "final_val_loss")?,
        strs(&frames.runs, "variant")?,
    );
    let mut families: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (key, parent) in &branches {
        families
            .entry(parent.as_str())
            .or_default()
            .push(key.as_str());
    }
    let mut series = Vec::new();
    for (colour, (trunk, members)) in families.iter().enumerate() {
        let mut finals = Vec::new();
        for (n, key) in members.iter().enumerate() {
            let pts: Vec<(f64, f64)> = (0..eval_keys.len())
                .filter(|&r| eval_keys[r] == *key && eval_loss[r].is_finite())
                .map(|r| (eval_tokens[r], eval_loss[r]))
                .collect();
            let name = (n == 0).then(|| format!("branches of trunk {}", short(trunk)));
            series.push(Series::new(name, colour, Kind::Line, pts));
            if let Some(i) = run_keys.iter().position(|k| k == key) {
                finals.push((run_tokens[i], run_loss[i]));
            }
        }
        finals.sort_by(|a, b| a.0.total_cmp(&b.0));
        series.push(Series::new(None, colour, Kind::Markers, finals));
    }
    // Every run that is not a branch, by variant: what the branches stand in for.
    let branch_keys: Vec<&str> = branches.iter().map(|(k, _)| k.as_str()).collect();
    let mut independent: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for i in 0..run_keys.len() {
        if !branch_keys.contains(&run_keys[i].as_str()) {
            independent
                .entry(variants[i].as_str())
                .or_default()
                .push((run_tokens[i], run_loss[i]));
        }
    }
    for (k, (variant, mut pts)) in independent.into_iter().enumerate() {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let name = if variant.is_empty() {
            "independent runs".to_string()
        } else {
            format!("{variant} (trained alone)")
        };
        let colour = families.len() + k;
        series.push(Series::new(Some(name), colour, Kind::Dashed, pts.clone()));
        series.push(Series::new(None, colour, Kind::Markers, pts));
    }
    Ok(Ok(Figure::single(Panel {
        title: "WSD branches: validation loss vs tokens (cooldowns off one trunk)".into(),
        x_label: "training tokens (whole path: trunk prefix + cooldown)".into(),
        y_label: "validation loss (nats/token)".into(),
        log_x: true,
        log_y: false,
        series,
        zero_line: false,
    })))
}

/// LoopUS: each recast run's validation loss against test-time loops beside every other looped
/// run's (from scratch) and its parent GPT's final loss; and, where the run has a confidence
/// head, each exit threshold's mean loops used against the loss it gives.
pub fn recast(frames: &Frames) -> Built {
    let recast = with_role(frames, "recast")?;
    if recast.is_empty() {
        return Ok(Err(
            "No recast runs in this database (model.recast_from), so there is no recasting chart."
                .into(),
        ));
    }
    let (tt_keys, tt_loops, tt_loss) = (
        strs(&frames.test_time, "run_key")?,
        f64s(&frames.test_time, "test_loops")?,
        f64s(&frames.test_time, "val_loss")?,
    );
    let (run_keys, run_loss, labels) = (
        strs(&frames.runs, "run_key")?,
        f64s(&frames.runs, "final_val_loss")?,
        strs(&frames.runs, "label")?,
    );
    let label = |key: &str| -> String {
        run_keys
            .iter()
            .position(|k| k == key)
            .map_or_else(|| short(key).to_string(), |i| labels[i].clone())
    };
    let curve = |key: &str| -> Vec<(f64, f64)> {
        (0..tt_keys.len())
            .filter(|&r| tt_keys[r] == key && tt_loss[r].is_finite())
            .map(|r| (tt_loops[r], tt_loss[r]))
            .collect()
    };
    let (lo, hi) = extent(tt_loops.iter().copied());
    let mut series = Vec::new();
    let mut curves_of: Vec<&str> = Vec::new();
    for (colour, (key, parent)) in recast.iter().enumerate() {
        series.push(Series::new(
            Some(format!("{} (recast)", label(key))),
            colour,
            Kind::Line,
            curve(key),
        ));
        curves_of.push(key);
        if let Some(i) = run_keys.iter().position(|k| k == parent)
            && lo.is_finite()
        {
            series.push(Series::new(
                Some(format!("parent GPT {}", labels[i])),
                colour,
                Kind::Dashed,
                vec![(lo, run_loss[i]), (hi, run_loss[i])],
            ));
        }
    }
    // Other GPTs (the parent's recipe trained longer, say): their final loss as a level.
    let arch = strs(&frames.runs, "arch")?;
    let parents: Vec<&str> = recast.iter().map(|(_, p)| p.as_str()).collect();
    for i in 0..run_keys.len() {
        if arch[i] == "gpt" && !parents.contains(&run_keys[i].as_str()) && lo.is_finite() {
            series.push(Series::new(
                Some(format!("GPT {}", labels[i])),
                recast.len() + run_keys.len() + i,
                Kind::Dashed,
                vec![(lo, run_loss[i]), (hi, run_loss[i])],
            ));
        }
    }
    // The looped runs trained from scratch, for comparison.
    let mut others: Vec<&String> = tt_keys.iter().collect();
    others.dedup();
    for (k, key) in others.into_iter().enumerate() {
        if curves_of.contains(&key.as_str()) {
            continue;
        }
        series.push(Series::new(
            Some(format!("{} (from scratch)", label(key))),
            recast.len() + k,
            Kind::Dashed,
            curve(key),
        ));
    }
    let mut panels = vec![Panel {
        title: "Recast models: validation loss vs loops".into(),
        x_label: "loops at evaluation".into(),
        y_label: "validation loss (nats/token)".into(),
        log_x: false,
        log_y: false,
        series,
        zero_line: false,
    }];
    let (x_keys, thresholds, caps, mean_loops, x_loss) = (
        strs(&frames.exits, "run_key")?,
        f64s(&frames.exits, "threshold")?,
        f64s(&frames.exits, "max_loops")?,
        f64s(&frames.exits, "mean_loops")?,
        f64s(&frames.exits, "val_loss")?,
    );
    let mut exit_series = Vec::new();
    for (colour, (key, _)) in recast.iter().enumerate() {
        let rows: Vec<usize> = (0..x_keys.len()).filter(|&r| x_keys[r] == *key).collect();
        if rows.is_empty() {
            continue;
        }
        // One series per cap on the loops a token may run (the training depth, the deepest
        // test_loops).
        let mut run_caps: Vec<f64> = rows.iter().map(|&r| caps[r]).collect();
        run_caps.sort_by(f64::total_cmp);
        run_caps.dedup();
        for cap in run_caps {
            let at: Vec<usize> = rows.iter().copied().filter(|&r| caps[r] == cap).collect();
            let pts: Vec<(f64, f64)> = at.iter().map(|&r| (mean_loops[r], x_loss[r])).collect();
            let ts: Vec<String> = at.iter().map(|&r| format!("{}", thresholds[r])).collect();
            exit_series.push(Series::new(
                Some(format!(
                    "{}: exit at confidence > {}, at most {cap} loops",
                    label(key),
                    ts.join(", ")
                )),
                colour,
                Kind::Markers,
                pts,
            ));
        }
        exit_series.push(Series::new(
            Some(format!("{}: every token the same loops", label(key))),
            colour,
            Kind::Dashed,
            curve(key),
        ));
    }
    if !exit_series.is_empty() {
        panels.push(Panel {
            title: "Early exit: mean loops used vs loss, per confidence threshold".into(),
            x_label: "mean loops per token".into(),
            y_label: "validation loss (nats/token)".into(),
            log_x: false,
            log_y: false,
            series: exit_series,
            zero_line: false,
        });
    }
    Ok(Ok(Figure::row(panels)))
}
