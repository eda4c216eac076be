//! Where a fit's points come from: a sweep database (finished runs, or test-time curves) or
//! any CSV file with named columns.

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::csv::{read_points, CsvColumns};
use super::points::Points;
use crate::store::Store;

/// Which parameter count stands for N.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
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
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && &head == b"SQLite format 3\0"
}

/// One point per finished run: N, D = training tokens, C = training FLOPs, loss = final
/// validation loss, loops = mean training recurrence (looped runs), curve = run key.
pub fn run_points(store: &Store, sweep: Option<&str>, n: ParamCount) -> Result<Points> {
    let runs = store.run_points(sweep)?;
    if runs.is_empty() {
        bail!(
            "{}: no finished runs{} to fit; train some with `loopscale run`",
            store.path().display(),
            sweep.map(|s| format!(" in sweep `{s}`")).unwrap_or_default()
        );
    }
    let looped = runs.iter().all(|r| r.mean_recurrence.is_some());
    Ok(Points {
        n: Some(runs.iter().map(|r| if n == ParamCount::Total { r.params } else { r.non_embedding_params }).collect()),
        d: Some(runs.iter().map(|r| r.tokens).collect()),
        c: Some(runs.iter().map(|r| r.flops).collect()),
        loss: runs.iter().map(|r| r.final_val_loss).collect(),
        loops: looped.then(|| runs.iter().map(|r| r.mean_recurrence.unwrap_or(1.0)).collect()),
        test_loops: None,
        group: None,
        curve: Some(runs.iter().map(|r| r.run_key.clone()).collect()),
    })
}

/// Test-time curves: validation loss at each evaluated loop count T, one curve per run.
pub fn test_time_points(store: &Store, sweep: Option<&str>) -> Result<Points> {
    let rows = store.test_time_points(sweep)?;
    if rows.is_empty() {
        bail!(
            "{}: no test-time evaluations (evals with test_loops) in finished runs; \
             train looped runs with model.test_loops set",
            store.path().display()
        );
    }
    Ok(Points {
        loss: rows.iter().map(|r| r.val_loss).collect(),
        test_loops: Some(rows.iter().map(|r| r.test_loops).collect()),
        loops: Some(rows.iter().map(|r| r.mean_recurrence.unwrap_or(1.0)).collect()),
        curve: Some(rows.iter().map(|r| r.run_key.clone()).collect()),
        ..Points::default()
    })
}

/// Points from a CSV file, with a readable error if it can't be read.
pub fn csv_points(path: &Path, columns: &CsvColumns) -> Result<Points> {
    read_points(path, columns).with_context(|| format!("reading points from {}", path.display()))
}
