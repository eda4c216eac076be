//! Executing a sweep: a coordinator that hands runs to worker processes, and the worker that
//! trains one run into the store.
//!
//! Each run trains in its own process (`loopscale worker`), so a crash or out-of-memory kill
//! takes down one run, never the sweep. The coordinator holds the sweep lock, starts at most
//! `jobs` workers, shows progress from the store, and forwards stop requests ([`Interrupts`];
//! the binary owns the Ctrl-C handler). A worker checkpoints
//! its run into the run's directory ([`run_dir`]) and resumes from there, so a killed run loses
//! at most `train.checkpoint_every` steps; `gc` deletes the checkpoints of finished runs.
//! A worker trains with the built-in trainer or, for `train.backend = "command"`, runs the
//! run's own trainer program and records what it reports (`command`).
//! [`slurm_executor`] hands the same workers to a Slurm cluster as a job array instead; every worker writes
//! only its run store ([`run_stores`]), which the coordinator merges into the database.

mod command;
mod coordinator;
mod gc;
mod interrupts;
mod lock;
pub mod progress;
pub mod resources;
pub mod run_stores;
pub mod slurm_executor;
mod worker;

pub use coordinator::{RunOptions, SweepSummary, plan_runs, run_sweep};
pub use gc::{GcReport, collect_garbage};
pub use interrupts::Interrupts;
pub use lock::SweepLock;
pub use worker::{WorkerTask, run_worker};

/// Logs of a database's runs live beside it: `results/x.sqlite` → `results/x.logs/`
/// (`<run_key>.log`, every attempt appended, and `<run_key>.lock`, held by its worker).
pub fn logs_dir(db: &std::path::Path) -> std::path::PathBuf {
    db.with_extension("logs")
}

/// Each run's own directory: `results/x.sqlite` → `results/x.runs/<run_key>/`, holding its
/// checkpoints (`ckpt-<step>.safetensors` + `.sha256`, see [`loopscale_train::checkpoint`]), its
/// run store (`results.sqlite`, see [`run_stores`]) and whatever else belongs to one run alone.
/// Checkpoints are removed only by `loopscale gc`, for finished runs; run stores never.
pub fn run_dir(db: &std::path::Path, key: &str) -> std::path::PathBuf {
    db.with_extension("runs").join(key)
}
