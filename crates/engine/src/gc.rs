//! `loopscale gc`: frees the disk held by checkpoints of finished runs. A `done` run never
//! trains again, so its checkpoints are dead weight once no unfinished run starts from them
//! (a WSD trunk's are its branches' starting points); every other run keeps them, because they
//! are how it resumes.

use std::path::{Path, PathBuf};

use loopscale_store::{RunStatus, Store};
use loopscale_train::checkpoint;

/// What `gc` removed (or, dry, would remove), and what it kept.
#[derive(Debug, Default)]
pub struct GcReport {
    /// Per finished run with checkpoints: its key, the files and their total bytes.
    pub removed: Vec<(String, Vec<PathBuf>, u64)>,
    /// Unfinished runs whose checkpoints were left alone, with their bytes.
    pub kept: Vec<(String, u64)>,
}

impl GcReport {
    pub fn bytes_removed(&self) -> u64 {
        self.removed.iter().map(|(_, _, b)| b).sum()
    }
}

fn size(files: &[PathBuf]) -> u64 {
    files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum()
}

/// Removes the checkpoint files of every `done` run of `sweep` in `db` (only reports them when
/// `dry_run`), and the run directory too if nothing else is left in it.
pub fn collect_garbage(db: &Path, sweep: &str, dry_run: bool) -> anyhow::Result<GcReport> {
    let store = Store::open_read_only(db)?;
    let mut report = GcReport::default();
    let runs = store.runs(sweep)?;
    // A finished parent keeps its checkpoints while a run built on it has not finished: a WSD
    // branch starts from its trunk's checkpoint.
    let needed: std::collections::HashSet<&str> = runs
        .iter()
        .filter(|r| r.status != RunStatus::Done)
        .filter_map(|r| r.config.parent())
        .collect();
    for run in &runs {
        let dir = super::run_dir(db, &run.key);
        let files = checkpoint::files(&dir);
        if files.is_empty() {
            continue;
        }
        let bytes = size(&files);
        if run.status != RunStatus::Done || needed.contains(run.key.as_str()) {
            report.kept.push((run.key.clone(), bytes));
            continue;
        }
        if !dry_run {
            for f in &files {
                std::fs::remove_file(f)
                    .map_err(|e| anyhow::anyhow!("{}: cannot remove: {e}", f.display()))?;
            }
            // Only if empty: the directory may hold other per-run files.
            let _ = std::fs::remove_dir(&dir);
        }
        report.removed.push((run.key.clone(), files, bytes));
    }
    Ok(report)
}
