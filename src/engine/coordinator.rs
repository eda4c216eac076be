//! The coordinator of `loopscale run`: registers a sweep's runs, then keeps up to `jobs` worker
//! processes busy, largest runs first, until every run is finished or the user stops it.
//! Workers write their runs' shards; the coordinator seeds them, merges them into the database
//! while they run and when they end, and is the only writer of the database.

use std::collections::{HashMap, VecDeque};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;

use super::lock::SweepLock;
use super::progress::Progress;
use crate::store::{NewRun, RunRow, RunStatus, Store};
use crate::sweep::Sweep;
use crate::train::{Budget, checkpoint};

/// How `loopscale run` executes.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub db: PathBuf,
    /// Worker processes at once.
    pub jobs: usize,
    /// Extra attempts for a run that fails (crash or error); diverged runs are never retried.
    pub retries: u32,
    /// Force plain progress lines even on a terminal.
    pub plain: bool,
}

/// What a `run` invocation did.
#[derive(Debug)]
pub struct SweepSummary {
    pub registered_new: usize,
    pub trained: usize,
    pub interrupted: bool,
    pub runs: Vec<RunRow>,
}

/// The sweep's runs with their sizes, ready to register.
pub fn plan_runs(sweep: &Sweep) -> Vec<NewRun> {
    sweep
        .runs
        .iter()
        .map(|run| {
            let budget = Budget::of(&run.config);
            NewRun {
                key: run.key.clone(),
                variant: run.variant.clone(),
                config: run.config.clone(),
                params: budget.params,
                non_embedding_params: budget.non_embedding_params,
                tokens: budget.tokens,
                flops: budget.flops,
            }
        })
        .collect()
}

/// Threads each worker may use so that workers × threads ≤ cores.
fn threads_per_worker(jobs: usize) -> usize {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    (cores / jobs.max(1)).max(1)
}

struct Active {
    key: String,
    child: Child,
    log: PathBuf,
    /// Length of the log when this attempt began: what follows is this attempt's.
    log_start: u64,
}

/// Warnings a worker wrote to its log since `start` (a damaged checkpoint it skipped, ...).
fn log_warnings(path: &Path, start: u64) -> Vec<String> {
    let text = std::fs::read(path).unwrap_or_default();
    let tail = text.get(start as usize..).unwrap_or_default();
    String::from_utf8_lossy(tail)
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .map(String::from)
        .collect()
}

/// Last lines of a log, to record with a failure.
fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Trains every run of `sweep` that is not finished in the store.
pub fn run_sweep(sweep: &Sweep, options: &RunOptions) -> anyhow::Result<SweepSummary> {
    let _lock = SweepLock::acquire(&options.db)?;
    let mut store = Store::open(&options.db)?;
    let spec_text = std::fs::read_to_string(&sweep.path).unwrap_or_default();
    let planned = plan_runs(sweep);
    let registered_new = store.register_sweep(
        &sweep.name,
        &sweep.description,
        &sweep.path.display().to_string(),
        &spec_text,
        &planned,
    )?;
    let stale = store.release_stale_runs(&sweep.name)?;
    if stale > 0 {
        eprintln!("{stale} run(s) were left running by an earlier coordinator; they start again");
    }

    // Every unfinished run gets its shard now; a shard a dead worker left `running` is released.
    for run in &planned {
        let status = store.run(&run.key)?.map(|r| r.status);
        if !matches!(status, Some(RunStatus::Done | RunStatus::Diverged)) {
            super::shards::prepare(&mut store, &options.db, &sweep.name, &run.key)?;
        }
    }

    let flops: HashMap<String, f64> = planned.iter().map(|r| (r.key.clone(), r.flops)).collect();
    let tokens: HashMap<String, u64> = planned.iter().map(|r| (r.key.clone(), r.tokens)).collect();
    let rows: HashMap<String, RunRow> = store
        .runs(&sweep.name)?
        .into_iter()
        .map(|r| (r.key.clone(), r))
        .collect();
    let mut todo: Vec<&NewRun> = planned
        .iter()
        .filter(|r| {
            matches!(
                rows.get(&r.key).map(|row| row.status),
                Some(
                    RunStatus::Pending
                        | RunStatus::Interrupted
                        | RunStatus::Failed
                        | RunStatus::Running
                )
            )
        })
        .collect();
    // Largest first, so the sweep's last minutes are not one big run alone.
    todo.sort_by(|a, b| b.flops.total_cmp(&a.flops));
    let mut queue: VecDeque<String> = todo.iter().map(|r| r.key.clone()).collect();

    let total_flops: f64 = planned.iter().map(|r| r.flops).sum();
    let done_flops: f64 = planned
        .iter()
        .filter(|r| rows.get(&r.key).map(|row| row.status) == Some(RunStatus::Done))
        .map(|r| r.flops)
        .sum();
    let mut progress = Progress::new(
        planned.len(),
        planned.len() - queue.len(),
        total_flops,
        done_flops,
        options.plain,
    );
    for run in &todo {
        let steps = Budget::of(&run.config).steps.max(1);
        if let Some(ckpt) = checkpoint::list(&super::run_dir(&options.db, &run.key)).first() {
            progress.resumable(
                &run.key,
                run.flops,
                run.tokens,
                ckpt.step * (run.tokens / steps),
            );
        }
    }

    let interrupts = Arc::new(AtomicUsize::new(0));
    {
        let interrupts = interrupts.clone();
        ctrlc::set_handler(move || {
            interrupts.fetch_add(1, Ordering::SeqCst);
        })
        .context("cannot install the Ctrl-C handler")?;
    }

    let log_dir = super::logs_dir(&options.db);
    std::fs::create_dir_all(&log_dir)
        .with_context(|| format!("{}: cannot create the log directory", log_dir.display()))?;
    let threads = threads_per_worker(options.jobs);
    let exe =
        std::env::current_exe().context("cannot find the loopscale executable to start workers")?;
    let mut attempts: HashMap<String, u32> = HashMap::new();
    let mut active: Vec<Active> = Vec::new();
    let mut trained = 0;
    let mut signalled = 0;
    let mut polls = 0u64;

    loop {
        let stopping = interrupts.load(Ordering::SeqCst);
        if stopping > signalled {
            signalled = stopping;
            if stopping == 1 {
                progress.message("stopping: workers finish their step and record it (Ctrl-C again to stop at once)");
                for a in &active {
                    // SAFETY: plain kill(2) on a child we spawned and have not yet reaped.
                    unsafe { libc::kill(a.child.id() as i32, libc::SIGINT) };
                }
            } else {
                for a in &mut active {
                    let _ = a.child.kill();
                }
            }
        }
        while stopping == 0 && active.len() < options.jobs {
            let Some(key) = queue.pop_front() else { break };
            *attempts.entry(key.clone()).or_default() += 1;
            let log = log_dir.join(format!("{key}.log"));
            let file = OpenOptions::new().create(true).append(true).open(&log)?;
            let log_start = file.metadata().map(|m| m.len()).unwrap_or(0);
            let child = Command::new(&exe)
                .arg("worker")
                .arg("--db")
                .arg(&options.db)
                .arg("--run")
                .arg(&key)
                .arg("--base-dir")
                .arg(&sweep.base_dir)
                .arg("--log")
                .arg(&log)
                .env("RAYON_NUM_THREADS", threads.to_string())
                .env("CANDLE_NUM_THREADS", threads.to_string())
                .stdin(Stdio::null())
                .stdout(file.try_clone()?)
                .stderr(file)
                .spawn()
                .with_context(|| format!("cannot start a worker ({})", exe.display()))?;
            progress.started(&key, flops[&key], tokens[&key]);
            active.push(Active {
                key,
                child,
                log,
                log_start,
            });
        }
        if active.is_empty() {
            break;
        }

        std::thread::sleep(Duration::from_millis(250));
        polls += 1;
        let mut i = 0;
        while i < active.len() {
            match active[i].child.try_wait()? {
                None => {
                    // Merge the running shards about once a second: the database (and the
                    // progress shown from it) is never more than a second or two behind.
                    if polls.is_multiple_of(4) {
                        let shard = super::shards::shard_path(&options.db, &active[i].key);
                        store.merge_shard(&active[i].key, &shard)?;
                    }
                    if let Ok(Some(p)) = store.progress(&active[i].key) {
                        progress.update(&active[i].key, &p);
                    }
                    i += 1;
                }
                Some(exit) => {
                    let a = active.swap_remove(i);
                    store.merge_shard(&a.key, &super::shards::shard_path(&options.db, &a.key))?;
                    let row = store.run(&a.key)?.context("run vanished from the store")?;
                    let status = if row.status == RunStatus::Running {
                        // The worker died without recording an end: a crash or a kill.
                        if interrupts.load(Ordering::SeqCst) > 1 {
                            // Killed on request: it resumes from its last checkpoint next time.
                            super::shards::interrupt(
                                &mut store,
                                &options.db,
                                &a.key,
                                "stopped by a second Ctrl-C",
                            )?;
                            RunStatus::Interrupted
                        } else {
                            let why = format!(
                                "worker exited with {exit}; log tail:\n{}",
                                log_tail(&a.log, 20)
                            );
                            super::shards::fail(&mut store, &options.db, &a.key, &why)?;
                            RunStatus::Failed
                        }
                    } else {
                        row.status
                    };
                    if status == RunStatus::Done {
                        trained += 1;
                    }
                    let retry = status == RunStatus::Failed
                        && attempts[&a.key] <= options.retries
                        && interrupts.load(Ordering::SeqCst) == 0;
                    for warning in log_warnings(&a.log, a.log_start) {
                        progress.message(&format!("run {}: {warning}", a.key));
                    }
                    progress.finished(&a.key, flops[&a.key], status, row.final_val_loss, retry);
                    if retry {
                        queue.push_back(a.key);
                    }
                }
            }
        }
    }
    progress.finish();

    let keys: std::collections::HashSet<&str> = planned.iter().map(|r| r.key.as_str()).collect();
    let runs = store
        .runs(&sweep.name)?
        .into_iter()
        .filter(|r| keys.contains(r.key.as_str()))
        .collect();
    Ok(SweepSummary {
        registered_new,
        trained,
        interrupted: interrupts.load(Ordering::SeqCst) > 0,
        runs,
    })
}
