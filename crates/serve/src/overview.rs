//! The sweep overview: one line per run (axes, state, attempts, progress, last loss,
//! throughput, error), the counts per state, the share of the sweep's FLOPs done and its ETA,
//! and the workers; what `/api/overview` returns and the overview page draws.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

use loopscale_engine::progress::FlopProgress;
use loopscale_store::{RunStatus, Store};
use loopscale_train::RunCost;

use crate::source::Source;

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RunLine {
    pub key: String,
    pub label: String,
    pub axes: Vec<String>,
    /// The run's status, or `not registered` for a run of the sweep file no `run` has seen.
    pub status: String,
    pub attempts: u32,
    /// Newest logged step (or steps done) and the run's planned steps.
    pub step: u64,
    pub steps: u64,
    /// Newest logged training loss.
    pub last_loss: Option<f64>,
    /// Final validation loss, or the newest one of a run still training.
    pub val_loss: Option<f64>,
    /// Training tokens per second: the run's own figure once done, else tokens over elapsed
    /// time of the steps logged so far.
    pub tokens_per_second: Option<f64>,
    /// First line of the run's error.
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Overview {
    pub name: String,
    pub db: String,
    pub axes: Vec<String>,
    pub runs: Vec<RunLine>,
    /// Runs per status.
    pub counts: BTreeMap<String, usize>,
    /// Share of the sweep's FLOPs done, 0 to 1.
    pub done_fraction: f64,
    /// Seconds left at the current throughput and workers; `None` before any is measured.
    pub eta_seconds: Option<f64>,
    /// The ETA as a sentence (what `status` prints).
    pub eta: String,
    /// Runs training now, each in its own worker.
    pub workers: usize,
    /// This machine's cores (workers × threads ≤ cores).
    pub cores: usize,
    /// Why there is nothing to show yet, if so.
    pub note: Option<String>,
}

/// Reads the overview. A missing database is not an error: the page says so and keeps waiting.
pub fn read(source: &Source) -> Overview {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let empty = |note: String| Overview {
        name: source.name().to_string(),
        db: source.db().display().to_string(),
        axes: Vec::new(),
        runs: Vec::new(),
        counts: BTreeMap::new(),
        done_fraction: 0.0,
        eta_seconds: None,
        eta: String::new(),
        workers: 0,
        cores,
        note: Some(note),
    };
    match source.open().and_then(|store| lines(source, &store)) {
        Ok(mut o) => {
            o.cores = cores;
            o
        }
        Err(e) => empty(format!("{e:#}")),
    }
}

fn lines(source: &Source, store: &Store) -> Result<Overview> {
    let (axes, listed) = source.list(store)?;
    let mut runs = Vec::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    // FLOPs of the sweep, done so far, and the rate they were done at: the one computation
    // `loopscale status` makes too.
    let mut flops = FlopProgress::default();
    let mut workers = 0;
    let mut latest = store.latest_progress()?;
    let latest_val = store.latest_val_losses()?;
    for run in listed {
        let Some(row) = run.row else {
            *counts.entry("not registered".into()).or_default() += 1;
            runs.push(RunLine {
                key: run.key,
                label: run.label,
                axes: run.axes,
                status: "not registered".into(),
                attempts: 0,
                step: 0,
                steps: 0,
                last_loss: None,
                val_loss: None,
                tokens_per_second: None,
                error: None,
            });
            continue;
        };
        let cost = RunCost::of(&row.config);
        let progress = latest.remove(&row.key);
        let running = row.status == RunStatus::Running;
        if running {
            workers += 1;
        }
        flops.add(
            &cost,
            row.status,
            row.wall_seconds,
            row.steps_done,
            progress.as_ref().filter(|_| running),
        );
        let val_loss = row
            .final_val_loss
            .or_else(|| latest_val.get(&row.key).copied());
        let tokens_per_second = row.tokens_per_second.or_else(|| {
            progress
                .as_ref()
                .filter(|p| p.elapsed_seconds > 0.0)
                .map(|p| p.tokens as f64 / p.elapsed_seconds)
        });
        *counts.entry(row.status.to_string()).or_default() += 1;
        runs.push(RunLine {
            key: run.key,
            label: run.label,
            axes: run.axes,
            status: row.status.to_string(),
            attempts: row.attempts,
            step: progress
                .as_ref()
                .map(|p| p.step)
                .or(row.steps_done)
                .unwrap_or(0),
            steps: cost.steps,
            last_loss: progress
                .as_ref()
                .map(|p| p.train_loss)
                .filter(|l| l.is_finite()),
            val_loss,
            tokens_per_second,
            error: row
                .error
                .as_deref()
                .map(|e| e.lines().next().unwrap_or("").to_string()),
        });
    }
    let (rate, left) = (flops.rate(), flops.left());
    let eta_seconds = flops.eta_seconds(workers);
    let eta = if left == 0.0 {
        "every run has finished".to_string()
    } else {
        match eta_seconds {
            Some(s) => format!(
                "{} left at {} FLOP/s per worker with {} worker{}",
                human_duration(s),
                si(rate),
                workers.max(1),
                if workers > 1 { "s" } else { "" }
            ),
            None => "no throughput measured yet, so no ETA".to_string(),
        }
    };
    Ok(Overview {
        name: source.name().to_string(),
        db: source.db().display().to_string(),
        axes,
        runs,
        counts,
        done_fraction: if flops.total > 0.0 {
            (flops.done / flops.total).clamp(0.0, 1.0)
        } else {
            0.0
        },
        eta_seconds,
        eta,
        workers,
        cores: 0,
        note: None,
    })
}

pub use loopscale_engine::progress::{human_duration, si};
