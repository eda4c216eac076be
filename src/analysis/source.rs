//! Where a fit's points come from: a sweep database (finished runs, or test-time curves) or
//! any CSV file with named columns ([`super::csv`]). `crate::fit` only sees the points.

use std::path::Path;

use anyhow::{Context, Result, bail};

use super::columns::{f64s, filter_rows, opt_f64s, strs};
use super::csv::{CsvColumns, read_points};
use super::frames::Frames;
use crate::fit::{IsoflopAxis, Points};
use crate::model::{ModelConfig, looped_split};
use crate::store::Store;
use polars::prelude::DataFrame;

/// Which parameter count stands for N.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamCount {
    /// Parameters without the token embedding (Kaplan et al.'s convention).
    NonEmbedding,
    /// All unique parameters (Hoffmann et al.'s convention).
    Total,
}

/// True when `path` starts like a SQLite file; anything else is read as CSV.
pub fn is_database(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 16];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head == b"SQLite format 3\0"
}

/// One point per finished run: N, D = training tokens, C = training FLOPs, loss = final
/// validation loss, loops = mean training recurrence (looped runs), curve = run key.
/// Read through the analysis frames, as the report reads them.
/// With `variant`, only that `[[variants]]` name's runs (e.g. a sweep's WSD branches against
/// its independently trained runs).
pub fn run_points(
    store: &Store,
    sweep: Option<&str>,
    variant: Option<&str>,
    n: ParamCount,
) -> Result<Points> {
    let mut runs = Frames::load(store, sweep)?.runs;
    if let Some(v) = variant {
        let mask = polars::prelude::ChunkCompareEq::equal(runs.column("variant")?.str()?, v);
        runs = runs.filter(&mask)?;
    }
    if runs.height() == 0 {
        bail!(
            "{}: no finished runs{}{} to fit; train some with `loopscale run`",
            store.path().display(),
            sweep
                .map(|s| format!(" in sweep `{s}`"))
                .unwrap_or_default(),
            variant
                .map(|v| format!(" of variant `{v}`"))
                .unwrap_or_default()
        );
    }
    run_points_of(&runs, n)
}

/// The points of a `runs` frame ([`Frames::runs`] or a subset of it).
pub fn run_points_of(runs: &DataFrame, n: ParamCount) -> Result<Points> {
    if runs.height() == 0 {
        bail!("no finished runs");
    }
    let loops = opt_f64s(runs, "mean_recurrence")?;
    let looped = loops.iter().all(Option::is_some);
    Ok(Points {
        n: Some(f64s(
            runs,
            if n == ParamCount::Total {
                "params"
            } else {
                "non_embedding_params"
            },
        )?),
        d: Some(f64s(runs, "tokens")?),
        c: Some(f64s(runs, "flops")?),
        loss: f64s(runs, "final_val_loss")?,
        loops: looped.then(|| loops.iter().map(|l| l.unwrap_or(1.0)).collect()),
        test_loops: None,
        group: None,
        curve: Some(strs(runs, "run_key")?),
    })
}

/// The runs an iso-FLOP analysis over `axis` reads, and the GPT runs it leaves out. Over
/// loops: the looped runs (a GPT has no loop count). Over tokens: also the looped runs when there
/// are any, since Parcae's D*(C) is the token count of the best loop count at fixed parameters,
/// and a GPT at the same budget is another model (the report sets it beside them instead). Over
/// parameters, or tokens in a sweep without looped runs: every run.
pub fn isoflop_runs(runs: &DataFrame, axis: IsoflopAxis) -> Result<(DataFrame, DataFrame)> {
    let looped: Vec<bool> = opt_f64s(runs, "mean_recurrence")?
        .iter()
        .map(Option::is_some)
        .collect();
    let only_looped = match axis {
        IsoflopAxis::Loops => true,
        IsoflopAxis::Tokens => looped.contains(&true),
        IsoflopAxis::Params => false,
    };
    if !only_looped {
        return Ok((runs.clone(), runs.clear()));
    }
    let gpt: Vec<bool> = looped.iter().map(|l| !l).collect();
    Ok((filter_rows(runs, &looped)?, filter_rows(runs, &gpt)?))
}

/// Points of an iso-FLOP analysis over `axis` from a database ([`isoflop_runs`]), with the
/// number of GPT runs left out.
pub fn isoflop_points(
    store: &Store,
    sweep: Option<&str>,
    n: ParamCount,
    axis: IsoflopAxis,
) -> Result<(Points, usize)> {
    let (runs, gpt) = isoflop_runs(&Frames::load(store, sweep)?.runs, axis)?;
    if runs.height() == 0 {
        bail!(
            "{}: no finished looped runs{}, so there is no iso-FLOP analysis over loops",
            store.path().display(),
            sweep
                .map(|s| format!(" in sweep `{s}`"))
                .unwrap_or_default()
        );
    }
    Ok((run_points_of(&runs, n)?, gpt.height()))
}

/// Test-time curves: validation loss at each evaluated loop count T, one curve per run.
pub fn test_time_points(store: &Store, sweep: Option<&str>) -> Result<Points> {
    let curves = Frames::load(store, sweep)?.test_time;
    if curves.height() == 0 {
        bail!(
            "{}: no test-time evaluations (evals with test_loops) in finished runs; \
             train looped runs with model.test_loops set",
            store.path().display()
        );
    }
    test_time_points_of(&curves)
}

/// The points of a `test_time` frame ([`Frames::test_time`] or a subset of it).
pub fn test_time_points_of(curves: &DataFrame) -> Result<Points> {
    if curves.height() == 0 {
        bail!("no test-time evaluations");
    }
    Ok(Points {
        loss: f64s(curves, "val_loss")?,
        test_loops: Some(f64s(curves, "test_loops")?),
        loops: Some(
            opt_f64s(curves, "mean_recurrence")?
                .iter()
                .map(|l| l.unwrap_or(1.0))
                .collect(),
        ),
        curve: Some(strs(curves, "run_key")?),
        ..Points::default()
    })
}

/// N(μ), the unrolled parameter count of a looped run trained at mean recurrence μ: the
/// parameters applied once per token (prelude and coda blocks, the prelude and final norms, the
/// injection's loop-invariant matrix, the readout C) plus μ times those applied every loop
/// (the core blocks and the injection's per-loop parameters), as `model::counts` splits them.
/// The token embedding and an untied head are not counted (as in N = non-embedding
/// parameters), unless `n` is [`ParamCount::Total`], which adds them once.
pub fn unrolled_params(model: &ModelConfig, mu: f64, embedding: f64, n: ParamCount) -> f64 {
    let split = looped_split(model);
    // LoopFormer's conditioning acts once per sequence and loop, not per token: counted once.
    let unrolled = split.once as f64 + mu * split.per_loop as f64 + split.conditioning as f64;
    match n {
        ParamCount::NonEmbedding => unrolled,
        ParamCount::Total => unrolled + embedding,
    }
}

/// The model configuration of a run's stored `config_json`. A configuration written by a build
/// with model keys this one does not know is read without them (they are kept out of N(μ)'s
/// count, which is this build's count of the model), rather than not at all.
pub fn model_config(config_json: &str) -> Result<ModelConfig> {
    let value: serde_json::Value =
        serde_json::from_str(config_json).context("its stored configuration is not JSON")?;
    let model = value["model"].clone();
    serde_json::from_value(model.clone())
        .or_else(|e| serde_json::from_value(known_keys_only(model)).map_err(|_| e))
        .context("its stored model configuration does not parse, so N(μ) cannot be counted")
}

/// `model` without the keys `ModelConfig` (and its `looped` table) does not have.
fn known_keys_only(mut model: serde_json::Value) -> serde_json::Value {
    // Every key, optional ones included, from a configuration that sets them all.
    let probe = ModelConfig {
        arch: crate::model::Arch::Looped,
        looped: Some(crate::model::LoopedConfig {
            recurrent_dim: Some(1),
            backprop_depth: Some(1),
            ..Default::default()
        }),
        ..ModelConfig::default()
    };
    let known = serde_json::to_value(&probe).unwrap_or_default();
    if let (Some(m), Some(k)) = (model.as_object_mut(), known.as_object()) {
        m.retain(|key, _| k.contains_key(key));
        if let (Some(l), Some(kl)) = (
            m.get_mut("looped").and_then(|l| l.as_object_mut()),
            k.get("looped").and_then(|l| l.as_object()),
        ) {
            l.retain(|key, _| kl.contains_key(key));
        }
    }
    model
}

/// The looped runs of the frames with their N(μ): (row indices into `frames.runs`, N(μ)), and
/// the number of GPT runs, which the Parcae laws leave out.
pub fn looped_with_unrolled(
    frames: &Frames,
    n: ParamCount,
) -> Result<(Vec<usize>, Vec<f64>, usize)> {
    let runs = &frames.runs;
    let keys = strs(runs, "run_key")?;
    let (u_keys, u_n) = (
        strs(&frames.unrolled, "run_key")?,
        opt_f64s(&frames.unrolled, "unrolled_params")?,
    );
    let params = f64s(runs, "params")?;
    let non_embedding = f64s(runs, "non_embedding_params")?;
    let (mut rows, mut unrolled) = (Vec::new(), Vec::new());
    for (i, key) in keys.iter().enumerate() {
        let Some(j) = u_keys.iter().position(|k| k == key) else {
            continue;
        };
        let Some(nu) = u_n[j] else {
            bail!(
                "run {key}: its stored model configuration could not be read, so N(μ) cannot be counted"
            );
        };
        rows.push(i);
        unrolled.push(match n {
            ParamCount::NonEmbedding => nu,
            ParamCount::Total => nu + params[i] - non_embedding[i],
        });
    }
    let gpt = keys.len() - rows.len();
    Ok((rows, unrolled, gpt))
}

/// Points of Parcae's training law: one per finished looped run, N = N(μ) (see
/// [`unrolled_params`]), D = training tokens, C = training FLOPs, loops = μ, loss = final
/// validation loss. Also returns how many GPT runs were left out.
pub fn parcae_points(store: &Store, sweep: Option<&str>, n: ParamCount) -> Result<(Points, usize)> {
    let frames = Frames::load(store, sweep)?;
    let (points, gpt) = parcae_points_of(&frames, n)?;
    if points.is_empty() {
        bail!(
            "{}: no finished looped runs{} to fit Parcae's law to ({gpt} GPT run(s) are not looped)",
            store.path().display(),
            sweep
                .map(|s| format!(" in sweep `{s}`"))
                .unwrap_or_default()
        );
    }
    Ok((points, gpt))
}

/// The points of Parcae's training law in `frames` (empty without looped runs), and the number
/// of GPT runs left out.
pub fn parcae_points_of(frames: &Frames, n: ParamCount) -> Result<(Points, usize)> {
    let runs = &frames.runs;
    let (rows, unrolled, gpt) = looped_with_unrolled(frames, n)?;
    let pick = |v: Vec<f64>| rows.iter().map(|&i| v[i]).collect::<Vec<_>>();
    let keys = strs(runs, "run_key")?;
    Ok((
        Points {
            n: Some(unrolled),
            d: Some(pick(f64s(runs, "tokens")?)),
            c: Some(pick(f64s(runs, "flops")?)),
            loss: pick(f64s(runs, "final_val_loss")?),
            loops: Some(pick(f64s(runs, "mean_recurrence")?)),
            curve: Some(rows.iter().map(|&i| keys[i].clone()).collect()),
            ..Points::default()
        },
        gpt,
    ))
}

/// Points of Parcae's unified law: one per test-time evaluation of a finished looped run, with
/// the run's N(μ), D, C and μ, T = the evaluated loops, loss = validation loss at T.
pub fn parcae_unified_points(
    store: &Store,
    sweep: Option<&str>,
    n: ParamCount,
) -> Result<(Points, usize)> {
    let frames = Frames::load(store, sweep)?;
    let (p, gpt) = parcae_unified_points_of(&frames, n)?;
    if p.is_empty() {
        bail!(
            "{}: no test-time evaluations of finished looped runs{}; train looped runs with model.test_loops set",
            store.path().display(),
            sweep
                .map(|s| format!(" in sweep `{s}`"))
                .unwrap_or_default()
        );
    }
    Ok((p, gpt))
}

/// The points of Parcae's unified law in `frames` (empty without test-time evaluations of
/// looped runs), and the number of GPT runs left out.
pub fn parcae_unified_points_of(frames: &Frames, n: ParamCount) -> Result<(Points, usize)> {
    let (rows, unrolled, gpt) = looped_with_unrolled(frames, n)?;
    let run_keys = strs(&frames.runs, "run_key")?;
    let (tokens, flops, mu) = (
        f64s(&frames.runs, "tokens")?,
        f64s(&frames.runs, "flops")?,
        f64s(&frames.runs, "mean_recurrence")?,
    );
    let tt = &frames.test_time;
    let (keys, t, loss) = (
        strs(tt, "run_key")?,
        f64s(tt, "test_loops")?,
        f64s(tt, "val_loss")?,
    );
    let mut p = Points {
        n: Some(Vec::new()),
        d: Some(Vec::new()),
        c: Some(Vec::new()),
        loops: Some(Vec::new()),
        test_loops: Some(Vec::new()),
        curve: Some(Vec::new()),
        ..Points::default()
    };
    for (r, key) in keys.iter().enumerate() {
        let Some(k) = rows.iter().position(|&i| run_keys[i] == *key) else {
            continue;
        };
        let i = rows[k];
        p.n.as_mut().unwrap().push(unrolled[k]);
        p.d.as_mut().unwrap().push(tokens[i]);
        p.c.as_mut().unwrap().push(flops[i]);
        p.loops.as_mut().unwrap().push(mu[i]);
        p.test_loops.as_mut().unwrap().push(t[r]);
        p.curve.as_mut().unwrap().push(key.clone());
        p.loss.push(loss[r]);
    }
    Ok((p, gpt))
}

/// Points from a CSV file, with a readable error if it can't be read.
pub fn csv_points(path: &Path, columns: &CsvColumns) -> Result<Points> {
    read_points(path, columns).with_context(|| format!("reading points from {}", path.display()))
}
