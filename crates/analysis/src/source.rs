//! Where a fit's points come from: a sweep database (finished runs, or test-time curves) or
//! any CSV file with named columns ([`super::csv`]). `loopscale_fit` only sees the points.

use std::path::Path;

use anyhow::{Context, Result, bail};

use super::columns::{f64s, filter_rows, opt_f64s, strs};
use super::csv::{CsvColumns, read_points};
use super::envelope::{Envelope, envelope};
use super::frames::Frames;
use super::run_rows::{FinishedRun, RunConfigs, finished_runs};
pub use super::unrolled::{ParamCount, model_config, unrolled_params};
use loopscale_fit::{IsoflopAxis, Points};
use loopscale_store::Store;
use polars::prelude::DataFrame;

/// The frames of a database's finished runs (of `sweep`, or all; of the runs `only` when given:
/// a sweep file's current runs, without those that left it), and, with tuned keys, only the
/// best run of each configuration ([`envelope`]) with the envelope that chose them.
pub fn load_frames(
    store: &Store,
    sweep: Option<&str>,
    tune: &[String],
    only: Option<&[String]>,
) -> Result<(Frames, Option<Envelope>)> {
    load_frames_of(store, sweep, None, tune, only)
}

/// [`load_frames`] keeping, with `variant`, only that `[[variants]]` name's finished runs
/// before tuning (e.g. a sweep's μP variant apart from its standard one).
pub fn load_frames_of(
    store: &Store,
    sweep: Option<&str>,
    variant: Option<&str>,
    tune: &[String],
    only: Option<&[String]>,
) -> Result<(Frames, Option<Envelope>)> {
    let mut frames = Frames::load(store, sweep)?;
    if let Some(keys) = only {
        frames = frames.restrict(keys, &[])?;
    }
    if let Some(v) = variant {
        let mask = polars::prelude::ChunkCompareEq::equal(frames.runs.column("variant")?.str()?, v);
        frames.runs = frames.runs.filter(&mask)?;
        if frames.runs.height() == 0 {
            bail!(
                "{}: no finished runs of variant `{v}`",
                store.path().display()
            );
        }
    }
    if tune.is_empty() {
        return Ok((frames, None));
    }
    let (frames, env) = envelope(&frames, tune)
        .with_context(|| format!("{}: tuning {}", store.path().display(), tune.join(", ")))?;
    Ok((frames, Some(env)))
}

/// The tuned keys the database's sweep files ask for (`[analysis] tune`, of `sweep` or of every
/// sweep in the file), in first-seen order; none when no file says.
pub fn stored_tune(store: &Store, sweep: Option<&str>) -> Result<Vec<String>> {
    let files =
        super::columns::to_frame(store.read_table(loopscale_store::Table::SweepFiles, sweep)?)?;
    let mut keys: Vec<String> = Vec::new();
    for text in strs(&files, "spec_toml")? {
        let Ok(doc) = text.parse::<toml::Table>() else {
            continue; // a file this build cannot read says nothing about tuning
        };
        let tuned = doc
            .get("analysis")
            .and_then(|a| a.get("tune"))
            .and_then(|t| t.as_array())
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str());
        for key in tuned {
            if !keys.iter().any(|k| k == key) {
                keys.push(key.to_string());
            }
        }
    }
    Ok(keys)
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
    frames: &Frames,
    sweep: Option<&str>,
    variant: Option<&str>,
    n: ParamCount,
) -> Result<Points> {
    let mut runs = frames.runs.clone();
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
    let runs = finished_runs(runs)?;
    let looped = runs.iter().all(|r| r.mean_recurrence.is_some());
    let of = |f: fn(&FinishedRun) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
    Ok(Points {
        n: Some(runs.iter().map(|r| r.n(n)).collect()),
        d: Some(of(|r| r.tokens)),
        c: Some(of(|r| r.flops)),
        loss: of(|r| r.loss),
        loops: looped.then(|| of(FinishedRun::loops)),
        test_loops: None,
        group: None,
        curve: Some(runs.iter().map(|r| r.key.clone()).collect()),
    })
}

/// The runs an iso-FLOP analysis over `axis` reads, and the GPT runs it leaves out. Over
/// loops: the looped runs (a GPT has no loop count). Over tokens: also the looped runs when there
/// are any, since Parcae's D*(C) is the token count of the best loop count at fixed parameters,
/// and a GPT at the same budget is another model (the report sets it beside them instead). Over
/// parameters, or tokens in a sweep without looped runs: every run.
pub fn isoflop_runs(runs: &DataFrame, axis: IsoflopAxis) -> Result<(DataFrame, DataFrame)> {
    let looped: Vec<bool> = finished_runs(runs)?
        .iter()
        .map(|r| r.mean_recurrence.is_some())
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
    frames: &Frames,
    sweep: Option<&str>,
    n: ParamCount,
    axis: IsoflopAxis,
) -> Result<(Points, usize)> {
    let (runs, gpt) = isoflop_runs(&frames.runs, axis)?;
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
pub fn test_time_points(store: &Store, frames: &Frames) -> Result<Points> {
    let curves = &frames.test_time;
    if curves.height() == 0 {
        bail!(
            "{}: no test-time evaluations (evals with test_loops) in finished runs; \
             train looped runs with model.test_loops set",
            store.path().display()
        );
    }
    test_time_points_of(curves)
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

/// The looped runs of the frames with their N(μ): (row indices into `frames.runs`, N(μ)), and
/// the number of GPT runs, which the Parcae laws leave out.
pub fn looped_with_unrolled(
    frames: &Frames,
    n: ParamCount,
) -> Result<(Vec<usize>, Vec<f64>, usize)> {
    let runs = finished_runs(&frames.runs)?;
    let (u_keys, u_n) = (
        strs(&frames.unrolled, "run_key")?,
        opt_f64s(&frames.unrolled, "unrolled_params")?,
    );
    let (mut rows, mut unrolled) = (Vec::new(), Vec::new());
    for (i, run) in runs.iter().enumerate() {
        let key = &run.key;
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
            ParamCount::Total => nu + run.params - run.non_embedding_params,
        });
    }
    let gpt = runs.len() - rows.len();
    Ok((rows, unrolled, gpt))
}

/// Points of Parcae's training law: one per finished looped run, N = N(μ) (see
/// [`unrolled_params`]), D = training tokens, C = training FLOPs, loops = μ, loss = final
/// validation loss. Also returns how many GPT runs were left out.
pub fn parcae_points(
    store: &Store,
    frames: &Frames,
    sweep: Option<&str>,
    n: ParamCount,
) -> Result<(Points, usize)> {
    let (points, gpt) = parcae_points_of(frames, n)?;
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
    let runs = finished_runs(&frames.runs)?;
    let (rows, unrolled, gpt) = looped_with_unrolled(frames, n)?;
    let pick = |f: fn(&FinishedRun) -> f64| rows.iter().map(|&i| f(&runs[i])).collect::<Vec<_>>();
    Ok((
        Points {
            n: Some(unrolled),
            d: Some(pick(|r| r.tokens)),
            c: Some(pick(|r| r.flops)),
            loss: pick(|r| r.loss),
            // Every row here is a looped run's.
            loops: Some(pick(|r| r.mean_recurrence.unwrap_or(f64::NAN))),
            curve: Some(rows.iter().map(|&i| runs[i].key.clone()).collect()),
            ..Points::default()
        },
        gpt,
    ))
}

/// Points of Parcae's unified law: one per test-time evaluation of a finished looped run, with
/// the run's N(μ), D, C and μ, T = the evaluated loops, loss = validation loss at T.
pub fn parcae_unified_points(
    store: &Store,
    frames: &Frames,
    sweep: Option<&str>,
    n: ParamCount,
) -> Result<(Points, usize)> {
    let (p, gpt) = parcae_unified_points_of(frames, n)?;
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
    let runs = finished_runs(&frames.runs)?;
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
        let Some(k) = rows.iter().position(|&i| runs[i].key == *key) else {
            continue;
        };
        let run = &runs[rows[k]];
        p.n.as_mut().unwrap().push(unrolled[k]);
        p.d.as_mut().unwrap().push(run.tokens);
        p.c.as_mut().unwrap().push(run.flops);
        p.loops
            .as_mut()
            .unwrap()
            .push(run.mean_recurrence.unwrap_or(f64::NAN));
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

/// A run's parameters applied once (`n_once`) and every loop (`n_rec`), as a written law reads
/// them: a looped run's (`model`) split by `model::looped_split` (LoopFormer's conditioning
/// counted once, the `embedding` added once under [`ParamCount::Total`]); a GPT's N all once.
/// One rule for finished runs ([`run_columns`]) and runs not trained yet.
pub fn once_and_per_loop(
    model: Option<&loopscale_model::ModelConfig>,
    big_n: f64,
    embedding: f64,
    n: ParamCount,
) -> (f64, f64) {
    let Some(model) = model else {
        return (big_n, 0.0);
    };
    let extra = if n == ParamCount::Total {
        embedding
    } else {
        0.0
    };
    let split = loopscale_model::looped_split(model);
    (
        (split.once + split.conditioning) as f64 + extra,
        split.per_loop as f64,
    )
}

/// The columns a law written as an expression may read from a database's finished runs, one
/// value per run: every numeric column of `final_runs` by its own name; `loss` (final validation
/// loss), `N` (parameters as `n` counts them), `D` (tokens), `C` (FLOPs), `r` (mean training
/// recurrence, 1 for a GPT); `n_once` and `n_rec`, the parameters applied once and in each loop
/// (a GPT: all of its N once, none looped; the token embedding counts once under
/// [`ParamCount::Total`]); and each dotted configuration key of `config_keys`
/// (`model.d_model`), read from the run's stored configuration.
pub fn run_columns(
    frames: &Frames,
    n: ParamCount,
    config_keys: &[String],
) -> Result<Vec<(String, Vec<f64>)>> {
    use polars::prelude::DataType;
    let runs = &frames.runs;
    if runs.height() == 0 {
        bail!("no finished runs");
    }
    let mut out: Vec<(String, Vec<f64>)> = Vec::new();
    for col in runs.columns() {
        let numeric = col.dtype().is_primitive_numeric();
        if !numeric || col.null_count() > 0 {
            continue;
        }
        let v = col.cast(&DataType::Float64)?;
        let v: Vec<f64> = v.f64()?.into_no_null_iter().collect();
        out.push((col.name().to_string(), v));
    }
    let rows = finished_runs(runs)?;
    let big_n: Vec<f64> = rows.iter().map(|r| r.n(n)).collect();
    let configs = RunConfigs::of(&frames.configs)?;
    let config = |k: &str| -> Result<serde_json::Value> {
        let text = configs
            .get(k)
            .ok_or_else(|| anyhow::anyhow!("run {k} has no stored configuration"))?;
        serde_json::from_str(text)
            .with_context(|| format!("run {k}: its stored configuration is not JSON"))
    };
    let (mut n_once, mut n_rec) = (Vec::new(), Vec::new());
    for (i, row) in rows.iter().enumerate() {
        let key = &row.key;
        let model = match row.mean_recurrence {
            Some(_) => Some(
                model_config(&config(key)?.to_string())
                    .with_context(|| format!("run {key}: reading its model"))?,
            ),
            None => None,
        };
        let embedding = row.params - row.non_embedding_params;
        let (once, rec) = once_and_per_loop(model.as_ref(), big_n[i], embedding, n);
        n_once.push(once);
        n_rec.push(rec);
    }
    let of = |f: fn(&FinishedRun) -> f64| rows.iter().map(f).collect::<Vec<f64>>();
    let mut named = vec![
        ("loss".to_string(), of(|r| r.loss)),
        ("N".to_string(), big_n),
        ("D".to_string(), of(|r| r.tokens)),
        ("C".to_string(), of(|r| r.flops)),
        ("r".to_string(), of(FinishedRun::loops)),
        ("n_once".to_string(), n_once),
        ("n_rec".to_string(), n_rec),
    ];
    for key in config_keys {
        let mut v = Vec::with_capacity(rows.len());
        for run in rows.iter().map(|r| &r.key) {
            let cfg = config(run)?;
            let x = super::groups::lookup(&cfg, key)
                .and_then(|x| x.as_f64())
                .ok_or_else(|| {
                    anyhow::anyhow!("run {run}: the configuration key `{key}` is not a number")
                })?;
            v.push(x);
        }
        named.push((key.clone(), v));
    }
    // The named columns stand for the law's usual symbols; a numeric column of the same name
    // (none today) would be shadowed by them.
    out.retain(|(c, _)| !named.iter().any(|(m, _)| m == c));
    named.extend(out);
    Ok(named)
}
