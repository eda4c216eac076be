//! Where a fit's points come from: a sweep database (finished runs, or test-time curves) or
//! any CSV file with named columns ([`super::csv`]). `crate::fit` only sees the points.

use std::path::Path;

use anyhow::{Context, Result, bail};

use super::columns::{f64s, opt_f64s, strs};
use super::csv::{CsvColumns, read_points};
use super::frames::Frames;
use crate::fit::Points;
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
pub fn run_points(store: &Store, sweep: Option<&str>, n: ParamCount) -> Result<Points> {
    let runs = Frames::load(store, sweep)?.runs;
    if runs.height() == 0 {
        bail!(
            "{}: no finished runs{} to fit; train some with `loopscale run`",
            store.path().display(),
            sweep
                .map(|s| format!(" in sweep `{s}`"))
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

/// Points from a CSV file, with a readable error if it can't be read.
pub fn csv_points(path: &Path, columns: &CsvColumns) -> Result<Points> {
    read_points(path, columns).with_context(|| format!("reading points from {}", path.display()))
}
