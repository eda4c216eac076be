//! Where each run store lives, and the coordinator's side of run stores: seed one before a run is
//! handed out, and collect (merge) them into the sweep database.
//!
//! Every worker, local or on a Slurm node, writes only its run store
//! (`results/x.runs/<run_key>/results.sqlite`, beside the run's checkpoints); only the
//! coordinator (`run`, `collect`, `status`) writes the sweep database, which therefore never
//! needs to be on a shared filesystem. See `store::run_store` for the format and why it is safe to
//! merge repeatedly.

use std::path::{Path, PathBuf};

use loopscale_store::{RunStatus, Store};

/// `results/x.sqlite` + run → `results/x.runs/<run_key>/results.sqlite`.
pub fn run_store_path(db: &Path, key: &str) -> PathBuf {
    super::run_dir(db, key).join("results.sqlite")
}

/// Makes sure run `key` has a run store, and that a run store left `running` by a worker that is gone
/// says `interrupted`, so the run is handed out again. Call only when no worker of the run can
/// be alive (the caller holds the sweep lock and has checked the queue).
pub fn prepare(store: &mut Store, db: &Path, sweep: &str, key: &str) -> anyhow::Result<()> {
    store.seed_run_store(key, &run_store_path(db, key))?;
    settle(store, db, sweep, key)
}

/// As `prepare`, for a run that may have no run store (then nothing happens): a run store left
/// `running` becomes `interrupted`, and the run store is merged.
pub fn settle(store: &mut Store, db: &Path, sweep: &str, key: &str) -> anyhow::Result<()> {
    let path = run_store_path(db, key);
    if !path.exists() {
        return Ok(());
    }
    let mut run_store = Store::open(&path)?;
    if run_store
        .run(key)?
        .is_some_and(|r| r.status == RunStatus::Running)
    {
        run_store.release_stale_runs(sweep)?;
    }
    drop(run_store);
    store.merge_run_store(key, &path)?;
    Ok(())
}

/// Records in the run store that its worker died without saying how it ended, then merges.
pub fn fail(store: &mut Store, db: &Path, key: &str, why: &str) -> anyhow::Result<()> {
    let path = run_store_path(db, key);
    Store::open(&path)?.fail_attempt(key, None, why)?;
    store.merge_run_store(key, &path)?;
    Ok(())
}

/// Records in the run store that its worker was stopped on request (it resumes from its last
/// checkpoint next time), then merges.
pub fn interrupt(store: &mut Store, db: &Path, key: &str, why: &str) -> anyhow::Result<()> {
    let path = run_store_path(db, key);
    Store::open(&path)?.interrupt_attempt(key, why)?;
    store.merge_run_store(key, &path)?;
    Ok(())
}

/// Marks run `key` blocked (`why`: which parent, and how it ended) in its run store and merges it
/// (so a later merge of the run store cannot undo it).
pub fn block(store: &mut Store, db: &Path, key: &str, why: &str) -> anyhow::Result<()> {
    change_waiting_run(store, db, key, |s| s.block_run(key, why))
}

/// Undoes [`block`]: the run waits for its parent again.
pub fn unblock(store: &mut Store, db: &Path, key: &str) -> anyhow::Result<()> {
    change_waiting_run(store, db, key, |s| s.unblock_run(key))
}

/// Applies `change` to a run that no worker holds: in its run store, then merged, or in the database
/// itself when the run has no run store yet.
fn change_waiting_run(
    store: &mut Store,
    db: &Path,
    key: &str,
    change: impl Fn(&mut Store) -> Result<(), loopscale_store::StoreError>,
) -> anyhow::Result<()> {
    let path = run_store_path(db, key);
    if path.exists() {
        change(&mut Store::open(&path)?)?;
        store.merge_run_store(key, &path)?;
    } else {
        change(store)?;
    }
    Ok(())
}

/// What `collect` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Collected {
    /// Runs whose run store changed the database.
    pub runs: usize,
    /// Rows inserted, updated or deleted.
    pub rows: usize,
    /// Runs with a run store at all.
    pub run_stores: usize,
}

/// Merges the run stores of `keys` into `store`. Idempotent: a second call with nothing new
/// changes nothing and returns `rows == 0`.
pub fn collect(store: &mut Store, db: &Path, keys: &[String]) -> anyhow::Result<Collected> {
    let mut out = Collected::default();
    for key in keys {
        let path = run_store_path(db, key);
        if !path.exists() {
            continue;
        }
        out.run_stores += 1;
        let n = store.merge_run_store(key, &path)?;
        if n > 0 {
            out.runs += 1;
            out.rows += n;
        }
    }
    Ok(out)
}
