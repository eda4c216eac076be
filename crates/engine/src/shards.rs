//! Where each run's shard lives, and the coordinator's side of shards: seed one before a run is
//! handed out, and collect (merge) them into the sweep database.
//!
//! Every worker, local or on a Slurm node, writes only its run's shard
//! (`results/x.runs/<run_key>/results.sqlite`, beside the run's checkpoints); only the
//! coordinator (`run`, `collect`, `status`) writes the sweep database, which therefore never
//! needs to be on a shared filesystem. See `store::shard` for the format and why it is safe to
//! merge repeatedly.

use std::path::{Path, PathBuf};

use loopscale_store::{RunStatus, Store};

/// `results/x.sqlite` + run → `results/x.runs/<run_key>/results.sqlite`.
pub fn shard_path(db: &Path, key: &str) -> PathBuf {
    super::run_dir(db, key).join("results.sqlite")
}

/// Makes sure run `key` has a shard, and that a shard left `running` by a worker that is gone
/// says `interrupted`, so the run is handed out again. Call only when no worker of the run can
/// be alive (the caller holds the sweep lock and has checked the queue).
pub fn prepare(store: &mut Store, db: &Path, sweep: &str, key: &str) -> anyhow::Result<()> {
    store.seed_shard(key, &shard_path(db, key))?;
    settle(store, db, sweep, key)
}

/// As `prepare`, for a run that may have no shard (then nothing happens): a shard left
/// `running` becomes `interrupted`, and the shard is merged.
pub fn settle(store: &mut Store, db: &Path, sweep: &str, key: &str) -> anyhow::Result<()> {
    let path = shard_path(db, key);
    if !path.exists() {
        return Ok(());
    }
    let mut shard = Store::open(&path)?;
    if shard
        .run(key)?
        .is_some_and(|r| r.status == RunStatus::Running)
    {
        shard.release_stale_runs(sweep)?;
    }
    drop(shard);
    store.merge_shard(key, &path)?;
    Ok(())
}

/// Records in the run's shard that its worker died without saying how it ended, then merges.
pub fn fail(store: &mut Store, db: &Path, key: &str, why: &str) -> anyhow::Result<()> {
    let path = shard_path(db, key);
    Store::open(&path)?.fail_attempt(key, None, why)?;
    store.merge_shard(key, &path)?;
    Ok(())
}

/// Records in the run's shard that its worker was stopped on request (it resumes from its last
/// checkpoint next time), then merges.
pub fn interrupt(store: &mut Store, db: &Path, key: &str, why: &str) -> anyhow::Result<()> {
    let path = shard_path(db, key);
    Store::open(&path)?.interrupt_attempt(key, why)?;
    store.merge_shard(key, &path)?;
    Ok(())
}

/// Marks run `key` blocked (`why`: which parent, and how it ended) in its shard and merges it
/// (so a later merge of the shard cannot undo it).
pub fn block(store: &mut Store, db: &Path, key: &str, why: &str) -> anyhow::Result<()> {
    change_waiting_run(store, db, key, |s| s.block_run(key, why))
}

/// Undoes [`block`]: the run waits for its parent again.
pub fn unblock(store: &mut Store, db: &Path, key: &str) -> anyhow::Result<()> {
    change_waiting_run(store, db, key, |s| s.unblock_run(key))
}

/// Applies `change` to a run that no worker holds: in its shard, then merged, or in the database
/// itself when the run has no shard yet.
fn change_waiting_run(
    store: &mut Store,
    db: &Path,
    key: &str,
    change: impl Fn(&mut Store) -> Result<(), loopscale_store::StoreError>,
) -> anyhow::Result<()> {
    let path = shard_path(db, key);
    if path.exists() {
        change(&mut Store::open(&path)?)?;
        store.merge_shard(key, &path)?;
    } else {
        change(store)?;
    }
    Ok(())
}

/// What `collect` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Collected {
    /// Runs whose shard changed the database.
    pub runs: usize,
    /// Rows inserted, updated or deleted.
    pub rows: usize,
    /// Runs with a shard at all.
    pub shards: usize,
}

/// Merges the shards of `keys` into `store`. Idempotent: a second call with nothing new
/// changes nothing and returns `rows == 0`.
pub fn collect(store: &mut Store, db: &Path, keys: &[String]) -> anyhow::Result<Collected> {
    let mut out = Collected::default();
    for key in keys {
        let path = shard_path(db, key);
        if !path.exists() {
            continue;
        }
        out.shards += 1;
        let n = store.merge_shard(key, &path)?;
        if n > 0 {
            out.runs += 1;
            out.rows += n;
        }
    }
    Ok(out)
}
