//! Executing a sweep: a coordinator that hands runs to worker processes, and the worker that
//! trains one run into the store.
//!
//! Each run trains in its own process (`loopscale worker`), so a crash or out-of-memory kill
//! takes down one run, never the sweep. The coordinator holds the sweep lock, starts at most
//! `jobs` workers, shows progress from the store, and forwards Ctrl-C.

mod coordinator;
mod lock;
mod progress;
mod worker;

pub use coordinator::{plan_runs, run_sweep, RunOptions, SweepSummary};
pub use lock::SweepLock;
pub use worker::{run_worker, WorkerArgs};

/// Per-run files of a database live beside it: `results/x.sqlite` → `results/x.logs/`
/// (`<run_key>.log`, every attempt appended, and `<run_key>.lock`, held by its worker).
pub fn logs_dir(db: &std::path::Path) -> std::path::PathBuf {
    db.with_extension("logs")
}
