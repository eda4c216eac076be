//! The coordinator of `loopscale run`: registers a sweep's runs, then keeps up to `jobs` worker
//! processes busy, largest runs first, until every run is finished or the user stops it.
//! Workers write their run stores; the coordinator seeds them, merges them into the database
//! while they run and when they end, and is the only writer of the database.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context;

use super::Interrupts;
use super::lock::SweepLock;
use super::progress::Progress;
use loopscale_store::{NewRun, RunRow, RunStatus, Store};
use loopscale_sweep::Sweep;
use loopscale_train::{RunCost, checkpoint};

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
    /// Stop requests: the first stops every worker cleanly after its step, the second at once.
    pub interrupts: Interrupts,
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
            let budget = RunCost::of(&run.config);
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

/// Per run, its own FLOPs (`own`) plus those of every run built on it, transitively.
fn subtree_flops(planned: &[NewRun], own: &HashMap<String, f64>) -> HashMap<String, f64> {
    let parent: HashMap<&str, &str> = planned
        .iter()
        .filter_map(|r| Some((r.key.as_str(), r.config.parent()?)))
        .collect();
    let mut weight = own.clone();
    for run in planned {
        let mut at = run.key.as_str();
        // Bounded by the number of runs: a sweep's lineage has no cycles, but never loop forever.
        for _ in 0..planned.len() {
            let Some(&p) = parent.get(at) else { break };
            let Some(w) = weight.get_mut(p) else { break };
            *w += own[&run.key];
            at = p;
        }
    }
    weight
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
    let planned = plan_runs(sweep);
    // Before anything is recorded or created: refuse a run this machine cannot hold in memory.
    let finished = finished_runs(&options.db, &sweep.name);
    let unfinished = planned.iter().filter(|r| !finished.contains(&r.key));
    super::resources::check_fits(unfinished.map(|r| (&r.key, &r.config)), options.jobs)?;

    let _lock = SweepLock::acquire(&options.db)?;
    let mut store = Store::open(&options.db)?;
    let registered_new = register(&mut store, sweep, &options.db, &planned)?;
    let mut pool = WorkerPool::new(store, sweep, options, &planned)?;
    pool.drive()?;
    let (
        SweepOutcome {
            trained,
            interrupted,
        },
        store,
    ) = pool.finish();

    let keys: HashSet<&str> = planned.iter().map(|r| r.key.as_str()).collect();
    let runs = store
        .runs(&sweep.name)?
        .into_iter()
        .filter(|r| keys.contains(r.key.as_str()))
        .collect();
    Ok(SweepSummary {
        registered_new,
        trained,
        interrupted,
        runs,
    })
}

/// Keys of the sweep's runs that are over (`done` or `diverged`) in an existing database; none
/// when there is no database yet.
fn finished_runs(db: &Path, sweep: &str) -> HashSet<String> {
    let Ok(store) = Store::open_read_only(db) else {
        return HashSet::new();
    };
    store
        .runs(sweep)
        .unwrap_or_default()
        .into_iter()
        .filter(|r| matches!(r.status, RunStatus::Done | RunStatus::Diverged))
        .map(|r| r.key)
        .collect()
}

/// Records the sweep and its runs in the store, releases runs an earlier coordinator left
/// `running`, and gives every unfinished run its run store. Returns how many runs are new.
fn register(
    store: &mut Store,
    sweep: &Sweep,
    db: &Path,
    planned: &[NewRun],
) -> anyhow::Result<usize> {
    let spec_text = std::fs::read_to_string(&sweep.path).unwrap_or_default();
    let registered_new = store.register_sweep(
        &sweep.name,
        &sweep.description,
        &sweep.path.display().to_string(),
        &spec_text,
        planned,
    )?;
    let stale = store.release_stale_runs(&sweep.name)?;
    if stale > 0 {
        eprintln!("{stale} run(s) were left running by an earlier coordinator; they start again");
    }

    // Every unfinished run gets its run store now; a run store a dead worker left `running` is released.
    // A run blocked by a parent that failed last time waits for it again: it is retried now.
    let mut unblocked = 0;
    for run in planned {
        let status = store.run(&run.key)?.map(|r| r.status);
        if !matches!(status, Some(RunStatus::Done | RunStatus::Diverged)) {
            super::run_stores::prepare(store, db, &sweep.name, &run.key)?;
            if store.run(&run.key)?.map(|r| r.status) == Some(RunStatus::Blocked) {
                super::run_stores::unblock(store, db, &run.key)?;
                unblocked += 1;
            }
        }
    }
    if unblocked > 0 {
        eprintln!("{unblocked} blocked run(s) wait for their parents' new attempts");
    }
    Ok(registered_new)
}

/// What the pool did, once it is empty.
struct SweepOutcome {
    trained: usize,
    interrupted: bool,
}

/// The one state of a local `run`: the runs waiting, the workers running, and what has happened
/// so far. [`WorkerPool::drive`] loops start → poll → reap until nothing is left.
struct WorkerPool<'a> {
    store: Store,
    options: &'a RunOptions,
    base_dir: PathBuf,
    /// Keys waiting for a worker, largest run first; a run built on another starts only once
    /// its parent has what it needs ([`WorkerPool::ready`]).
    queue: VecDeque<String>,
    /// Each run built on another: its parent's key and the parent's step it starts from
    /// (`None` = the parent's end).
    parents: HashMap<String, (String, Option<u64>)>,
    active: Vec<Active>,
    /// Attempts started per run in this invocation (retries count against `options.retries`).
    attempts: HashMap<String, u32>,
    /// What each run costs; the progress counts each run's own FLOPs (a branch's cooldown).
    costs: HashMap<String, RunCost>,
    progress: Progress,
    log_dir: PathBuf,
    exe: PathBuf,
    threads: usize,
    trained: usize,
    /// Stop requests acted on so far.
    signalled: usize,
    polls: u64,
}

impl<'a> WorkerPool<'a> {
    fn new(
        store: Store,
        sweep: &Sweep,
        options: &'a RunOptions,
        planned: &[NewRun],
    ) -> anyhow::Result<Self> {
        let rows: HashMap<String, RunRow> = store
            .runs(&sweep.name)?
            .into_iter()
            .map(|r| (r.key.clone(), r))
            .collect();
        let status = |key: &str| rows.get(key).map(|row| row.status);
        let mut todo: Vec<&NewRun> = planned
            .iter()
            .filter(|r| {
                matches!(
                    status(&r.key),
                    Some(
                        RunStatus::Pending
                            | RunStatus::Interrupted
                            | RunStatus::Failed
                            | RunStatus::Running
                    )
                )
            })
            .collect();
        // Largest first, so the sweep's last minutes are not one big run alone; a run counts
        // with every run built on it, so a trunk starts before the independent runs its
        // branches would otherwise wait behind.
        // What each run trains itself (a branch: its cooldown, not its trunk's prefix).
        let costs: HashMap<String, RunCost> = planned
            .iter()
            .map(|r| (r.key.clone(), RunCost::of(&r.config)))
            .collect();
        let own: HashMap<String, f64> = costs
            .iter()
            .map(|(key, cost)| (key.clone(), cost.own_flops))
            .collect();
        let weight = subtree_flops(planned, &own);
        todo.sort_by(|a, b| weight[&b.key].total_cmp(&weight[&a.key]));

        let total_flops: f64 = own.values().sum();
        let done_flops: f64 = planned
            .iter()
            .filter(|r| status(&r.key) == Some(RunStatus::Done))
            .map(|r| own[&r.key])
            .sum();
        let mut progress = Progress::new(
            planned.len(),
            planned.len() - todo.len(),
            total_flops,
            done_flops,
            options.plain,
        );
        for run in &todo {
            let cost = costs[&run.key];
            if let Some(ckpt) = checkpoint::list(&super::run_dir(&options.db, &run.key)).first() {
                progress.resumable(&run.key, cost, cost.tokens_at(ckpt.step));
            }
        }

        let log_dir = super::logs_dir(&options.db);
        std::fs::create_dir_all(&log_dir)
            .with_context(|| format!("{}: cannot create the log directory", log_dir.display()))?;
        let exe = std::env::current_exe()
            .context("cannot find the loopscale executable to start workers")?;
        Ok(WorkerPool {
            store,
            options,
            base_dir: sweep.base_dir.clone(),
            queue: todo.iter().map(|r| r.key.clone()).collect(),
            parents: planned
                .iter()
                .filter_map(|r| {
                    let lineage = r.config.lineage.as_ref()?;
                    Some((
                        r.key.clone(),
                        (lineage.parent.clone()?, lineage.parent_step),
                    ))
                })
                .collect(),
            active: Vec::new(),
            attempts: HashMap::new(),
            costs,
            progress,
            log_dir,
            exe,
            threads: threads_per_worker(options.jobs),
            trained: 0,
            signalled: 0,
            polls: 0,
        })
    }

    /// Runs until the queue and the pool are empty (or a stop request has emptied the pool).
    fn drive(&mut self) -> anyhow::Result<()> {
        loop {
            self.forward_interrupts();
            if self.options.interrupts.count() == 0 {
                self.start_ready()?;
            }
            if self.active.is_empty() {
                // Whatever is still queued waits on a parent that will not get further in this
                // invocation (stopped, or failed for good): it stays for the next `run`.
                self.block_orphans()?;
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(250));
            self.polls += 1;
            self.poll()?;
        }
    }

    /// Passes a new stop request on: the first to every worker as SIGINT (finish the step,
    /// checkpoint, record), the second as a kill.
    fn forward_interrupts(&mut self) {
        let stopping = self.options.interrupts.count();
        if stopping <= self.signalled {
            return;
        }
        self.signalled = stopping;
        if stopping == 1 {
            self.progress.message(
                "stopping: workers finish their step and record it (Ctrl-C again to stop at once)",
            );
            for a in &self.active {
                // SAFETY: plain kill(2) on a child we spawned and have not yet reaped.
                unsafe { libc::kill(a.child.id() as i32, libc::SIGINT) };
            }
        } else {
            for a in &mut self.active {
                let _ = a.child.kill();
            }
        }
    }

    /// Whether `key` can start: it stands alone, or its parent is done, or (a WSD branch) the
    /// parent has already written the checkpoint it starts from.
    fn ready(&self, key: &str) -> anyhow::Result<bool> {
        let Some((parent, step)) = self.parents.get(key) else {
            return Ok(true);
        };
        if self.active.iter().any(|a| &a.key == parent) || self.queue.contains(parent) {
            // Still training or waiting: only a checkpoint it has already written will do.
            return Ok(step.is_some_and(|s| {
                checkpoint::has_complete(&super::run_dir(&self.options.db, parent), s)
            }));
        }
        let status = self.store.run(parent)?.map(|r| r.status);
        Ok(status == Some(RunStatus::Done))
    }

    /// Queued runs whose parent ended without a result in this invocation (failed with no
    /// retry left, diverged, blocked itself) are marked `blocked`, with the reason.
    fn block_orphans(&mut self) -> anyhow::Result<()> {
        let queued: Vec<String> = self.queue.iter().cloned().collect();
        for key in queued {
            let Some((parent, _)) = self.parents.get(&key).cloned() else {
                continue;
            };
            let Some(row) = self.store.run(&parent)? else {
                continue;
            };
            if matches!(
                row.status,
                RunStatus::Failed | RunStatus::Diverged | RunStatus::Blocked
            ) {
                self.block_children_of(&parent, row.status)?;
            }
        }
        Ok(())
    }

    /// `parent` ended `status` for good in this invocation: every queued run built on it
    /// (transitively) is blocked and leaves the queue.
    fn block_children_of(&mut self, parent: &str, status: RunStatus) -> anyhow::Result<()> {
        let why = format!("its parent run {parent} {status}");
        let db = self.options.db.clone();
        for key in &self.store.unfinished_descendants(parent)? {
            super::run_stores::block(&mut self.store, &db, key, &why)?;
            if let Some(at) = self.queue.iter().position(|k| k == key) {
                self.queue.remove(at);
                self.progress
                    .message(&format!("run {key} is blocked: {why}"));
                let flops = self.costs[key].own_flops;
                self.progress
                    .finished(key, flops, RunStatus::Blocked, None, false);
            }
        }
        Ok(())
    }

    /// Starts workers for queued runs until `jobs` are running: the first ready run in queue
    /// order each time.
    fn start_ready(&mut self) -> anyhow::Result<()> {
        while self.active.len() < self.options.jobs {
            let mut next = None;
            for (i, key) in self.queue.iter().enumerate() {
                if self.ready(key)? {
                    next = Some(i);
                    break;
                }
            }
            let Some(key) = next.and_then(|i| self.queue.remove(i)) else {
                return Ok(());
            };
            *self.attempts.entry(key.clone()).or_default() += 1;
            let log = self.log_dir.join(format!("{key}.log"));
            let file = OpenOptions::new().create(true).append(true).open(&log)?;
            let log_start = file.metadata().map(|m| m.len()).unwrap_or(0);
            let child = Command::new(&self.exe)
                .arg("worker")
                .arg("--db")
                .arg(&self.options.db)
                .arg("--run")
                .arg(&key)
                .arg("--base-dir")
                .arg(&self.base_dir)
                .arg("--log")
                .arg(&log)
                .env("RAYON_NUM_THREADS", self.threads.to_string())
                .env("CANDLE_NUM_THREADS", self.threads.to_string())
                .stdin(Stdio::null())
                .stdout(file.try_clone()?)
                .stderr(file)
                .spawn()
                .with_context(|| format!("cannot start a worker ({})", self.exe.display()))?;
            self.progress.started(&key, self.costs[&key]);
            self.active.push(Active {
                key,
                child,
                log,
                log_start,
            });
        }
        Ok(())
    }

    /// Merges running workers' run stores into the database and reaps the ones that have ended.
    fn poll(&mut self) -> anyhow::Result<()> {
        let mut i = 0;
        while i < self.active.len() {
            match self.active[i].child.try_wait()? {
                None => {
                    // Merge the running run stores about once a second: the database (and the
                    // progress shown from it) is never more than a second or two behind.
                    let key = &self.active[i].key;
                    if self.polls.is_multiple_of(4) {
                        let run_store = super::run_stores::run_store_path(&self.options.db, key);
                        self.store.merge_run_store(key, &run_store)?;
                    }
                    if let Ok(Some(p)) = self.store.progress(key) {
                        self.progress.update(key, &p);
                    }
                    i += 1;
                }
                Some(exit) => {
                    let ended = self.active.swap_remove(i);
                    self.reap(ended, exit)?;
                }
            }
        }
        Ok(())
    }

    /// Records how a worker's run ended (a worker that died without recording it failed, or
    /// was interrupted if a second Ctrl-C killed it), and queues a retry when one is due.
    fn reap(&mut self, a: Active, exit: ExitStatus) -> anyhow::Result<()> {
        let db = &self.options.db;
        self.store
            .merge_run_store(&a.key, &super::run_stores::run_store_path(db, &a.key))?;
        let row = self
            .store
            .run(&a.key)?
            .context("run vanished from the store")?;
        let stopping = self.options.interrupts.count();
        let status = if row.status != RunStatus::Running {
            row.status
        } else if stopping > 1 {
            // Killed on request: it resumes from its last checkpoint next time.
            super::run_stores::interrupt(
                &mut self.store,
                db,
                &a.key,
                "stopped by a second Ctrl-C",
            )?;
            RunStatus::Interrupted
        } else {
            // The worker died without recording an end: a crash or a kill.
            let why = super::resources::explain_exit(exit, &log_tail(&a.log, 20), &row.config);
            super::run_stores::fail(&mut self.store, db, &a.key, &why)?;
            RunStatus::Failed
        };
        if status == RunStatus::Done {
            self.trained += 1;
        }
        let retry = status == RunStatus::Failed
            && self.attempts[&a.key] <= self.options.retries
            && stopping == 0;
        for warning in log_warnings(&a.log, a.log_start) {
            self.progress.message(&format!("run {}: {warning}", a.key));
        }
        self.progress.finished(
            &a.key,
            self.costs[&a.key].own_flops,
            status,
            row.final_val_loss,
            retry,
        );
        if retry {
            self.queue.push_back(a.key);
        } else if matches!(
            status,
            RunStatus::Failed | RunStatus::Diverged | RunStatus::Blocked
        ) {
            self.block_children_of(&a.key, status)?;
        }
        Ok(())
    }

    /// Closes the progress display; hands back the store.
    fn finish(mut self) -> (SweepOutcome, Store) {
        self.progress.finish();
        let outcome = SweepOutcome {
            trained: self.trained,
            interrupted: self.options.interrupts.count() > 0,
        };
        (outcome, self.store)
    }
}
