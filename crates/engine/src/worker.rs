//! `loopscale worker`: trains one run and writes everything it measures into the run store
//! (`engine::run_stores`, the same under every executor), resuming from the run's newest good
//! checkpoint and writing new ones as it goes (rows are committed before each checkpoint, so a
//! resumed run never misses one).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::Interrupts;
use super::command::{CommandRun, train_with_command};
use loopscale_config::{Backend, Role};
use loopscale_model::CausalLm;
use loopscale_store::{RunRow, RunStatus, Store};
use loopscale_train::{
    self as train, Checkpointing, Dataset, DecodeEvalMetrics, EvalMetrics, ExitEvalMetrics,
    IclError, RunObserver, StepMetrics,
};

/// What a worker is told by its coordinator.
#[derive(Clone, Debug)]
pub struct WorkerTask {
    /// The sweep database: locates the run's directory and run store; the worker never opens it.
    pub db: PathBuf,
    pub run_key: String,
    /// Directory relative corpus paths are resolved against (the sweep file's).
    pub base_dir: PathBuf,
    /// Log file of this attempt, recorded with it.
    pub log_path: Option<PathBuf>,
}

/// Buffers measurements and writes them in small transactions, so a busy store costs the
/// training loop almost nothing and a crash loses at most the last couple of seconds.
struct StoreObserver<'a> {
    store: &'a mut Store,
    key: String,
    steps: Vec<StepMetrics>,
    evals: Vec<EvalMetrics>,
    last_flush: Instant,
    interrupts: Interrupts,
    parent: u32,
}

const FLUSH_EVERY: Duration = Duration::from_secs(2);

impl StoreObserver<'_> {
    fn flush(&mut self) -> anyhow::Result<()> {
        self.store.record(&self.key, &self.steps, &self.evals)?;
        self.steps.clear();
        self.evals.clear();
        self.last_flush = Instant::now();
        Ok(())
    }

    fn flush_if_due(&mut self) -> anyhow::Result<()> {
        if self.last_flush.elapsed() >= FLUSH_EVERY {
            self.flush()?;
        }
        Ok(())
    }
}

impl RunObserver for StoreObserver<'_> {
    fn on_step(&mut self, metrics: &StepMetrics) -> anyhow::Result<()> {
        self.steps.push(metrics.clone());
        self.flush_if_due()
    }

    fn on_eval(&mut self, eval: &EvalMetrics) -> anyhow::Result<()> {
        self.evals.push(eval.clone());
        self.flush_if_due()
    }

    fn on_exit_eval(&mut self, eval: &ExitEvalMetrics) -> anyhow::Result<()> {
        // Measured once, after training: written at once.
        self.store
            .record_exit_evals(&self.key, std::slice::from_ref(eval))?;
        Ok(())
    }

    fn on_decode_eval(&mut self, eval: &DecodeEvalMetrics) -> anyhow::Result<()> {
        // Measured once, after training: written at once.
        self.store
            .record_decode_evals(&self.key, std::slice::from_ref(eval))?;
        Ok(())
    }

    fn on_icl_errors(&mut self, errors: &[IclError]) -> anyhow::Result<()> {
        self.store.record_icl_errors(&self.key, errors)?;
        Ok(())
    }

    fn on_resume(&mut self, step: u64) -> anyhow::Result<()> {
        // Rows after the checkpoint were written by an attempt that died; they are trained again.
        self.store.discard_after(&self.key, step)?;
        if step > 0 {
            eprintln!(
                "worker {}: run {} resumes from its checkpoint at step {step}",
                std::process::id(),
                self.key
            );
        }
        Ok(())
    }

    fn before_checkpoint(&mut self, _step: u64) -> anyhow::Result<()> {
        self.flush()
    }

    fn should_stop(&mut self) -> bool {
        // Stop on Ctrl-C, and when the coordinator has died (we were re-parented): an orphaned
        // worker must not keep training a run that the next coordinator will hand out again.
        self.interrupts.count() > 0 || std::os::unix::process::parent_id() != self.parent
    }
}

/// Trains the run `args.run_key` to completion (or divergence, or interruption) and records it.
/// A run already `done` is left alone.
///
/// The first stop request in `interrupts` (the coordinator forwards Ctrl-C) makes the worker
/// finish its step, checkpoint, record the run `interrupted` and return; a second one is the
/// program's to act on at once (the binary exits, and the run resumes from its last checkpoint).
pub fn run_worker(args: &WorkerTask, interrupts: &Interrupts) -> anyhow::Result<RunStatus> {
    // One worker per run, even across coordinators: an orphan of a killed coordinator may still
    // be recording its last step; wait for it to let go before this attempt begins.
    let _run_lock = lock_run(&args.db, &args.run_key)?;
    let mut store = open_run_store(args)?;
    let run = store
        .run(&args.run_key)?
        .with_context(|| format!("{}: no run with key {}", args.db.display(), args.run_key))?;
    if run.status == RunStatus::Done {
        return Ok(RunStatus::Done);
    }
    // A run built on another whose parent has no result cannot be what its key says. (Under
    // Slurm, `afterok` starts it once its parent's task exits cleanly, which a diverged or
    // blocked parent also does.)
    if let Some(why) = unusable_parent(&args.db, &run.config)? {
        store.block_run(&run.key, &why)?;
        eprintln!(
            "worker {}: run {} is blocked: {why}",
            std::process::id(),
            run.key
        );
        return Ok(RunStatus::Blocked);
    }
    let log = args.log_path.as_ref().map(|p| p.display().to_string());
    let attempt = store.start_attempt(&run.key, log.as_deref())?;
    eprintln!(
        "worker {}: run {} attempt {attempt}",
        std::process::id(),
        run.key
    );
    match train_attempt(args, &run, &mut store, attempt, interrupts) {
        Ok(outcome) => Ok(report_outcome(&run.key, &outcome)),
        Err(e) => {
            let message = format!("{e:#}");
            store.fail_attempt(&run.key, Some(attempt), &message)?;
            Err(e)
        }
    }
}

/// Opens the run's own store. The worker writes it only, never the sweep database (which may
/// live on another machine): the coordinator seeded the run store and merges it back.
fn open_run_store(args: &WorkerTask) -> anyhow::Result<Store> {
    let run_store = super::run_stores::run_store_path(&args.db, &args.run_key);
    if !run_store.exists() {
        anyhow::bail!(
            "{}: no run store for run {}; workers are started by `loopscale run`, which creates it",
            run_store.display(),
            args.run_key
        );
    }
    Ok(Store::open(&run_store)?)
}

/// One attempt at the run: checks it fits in memory, trains it with its backend while the
/// observer streams measurements into `store`, then records the attempt's end.
fn train_attempt(
    args: &WorkerTask,
    run: &RunRow,
    store: &mut Store,
    attempt: u32,
    interrupts: &Interrupts,
) -> anyhow::Result<train::RunOutcome> {
    if let Some(machine) = super::resources::machine_memory_bytes() {
        super::resources::check_run_fits(&run.key, &run.config, machine)?;
    }
    let mut observer = StoreObserver {
        store,
        key: run.key.clone(),
        steps: Vec::new(),
        evals: Vec::new(),
        last_flush: Instant::now(),
        interrupts: interrupts.clone(),
        parent: std::os::unix::process::parent_id(),
    };
    let outcome = match run.config.train.backend {
        Backend::Builtin => train_builtin(args, run, &mut observer)?,
        Backend::Command => {
            let command = CommandRun {
                key: &run.key,
                config: &run.config,
                run_dir: super::run_dir(&args.db, &run.key),
                base_dir: args.base_dir.clone(),
                threads: threads(),
            };
            train_with_command(&command, &mut observer)?
        }
    };
    let (steps, evals) = (
        std::mem::take(&mut observer.steps),
        std::mem::take(&mut observer.evals),
    );
    observer
        .store
        .finish_attempt(&run.key, attempt, &steps, &evals, &outcome)?;
    Ok(outcome)
}

/// Checkpointing for the run: in its own directory, keeping what the config asks, and starting
/// from its parent's checkpoint where it has one.
fn run_checkpointing(args: &WorkerTask, run: &RunRow) -> Checkpointing {
    let mut checkpoints = Checkpointing::new(
        super::run_dir(&args.db, &run.key),
        run.config.train.checkpoint_every as u64,
        run.key.clone(),
    );
    checkpoints.keep = run.config.train.keep_checkpoints.clone();
    checkpoints.start_from = parent_checkpoint(&args.db, &run.config);
    checkpoints
}

/// Trains the run with the built-in trainer, from a model made of its parent's weights where
/// it is built on a parent (recast, MELT), else from scratch or its own checkpoint.
fn train_builtin(
    args: &WorkerTask,
    run: &RunRow,
    observer: &mut StoreObserver<'_>,
) -> anyhow::Result<train::RunOutcome> {
    let data = Dataset::load(&run.config, &args.base_dir)?;
    let device = train::default_device()?;
    let checkpoints = run_checkpointing(args, run);
    // A run built on a parent starts from a model made of the parent's weights;
    // a run that stands alone builds (or resumes) its own.
    let from_parent: Option<Box<dyn CausalLm>> = match built_on(&args.db, &run.config)? {
        // LoopUS: the looped model starts from its parent GPT's final weights.
        Some((Role::Recast, parent_cfg, ckpt)) => {
            let train::Dataset::Text(corpus) = &data else {
                anyhow::bail!(
                    "a recast run trains on text (data.task = \"lm\"): its parent is a language model"
                );
            };
            let (model, choice) =
                train::build_recast_model(&run.config, &parent_cfg, &ckpt, corpus, &device)?;
            for line in choice.describe() {
                observer.note(&line);
            }
            Some(Box::new(model))
        }
        // MELT: the student and its teacher from the parent looped model's weights.
        Some((_, parent_cfg, ckpt)) => {
            let train::Dataset::Text(corpus) = &data else {
                anyhow::bail!(
                    "a MELT run trains on text (data.task = \"lm\"): it distils a language model"
                );
            };
            Some(Box::new(train::build_melt_model(
                &run.config,
                &parent_cfg,
                &ckpt,
                corpus.vocab_size(),
                &device,
            )?))
        }
        None => None,
    };
    Ok(match from_parent {
        Some(model) => train::train_model_resumable(
            model.as_ref(),
            &run.config,
            &data,
            &device,
            observer,
            Some(&checkpoints),
        )?,
        None => train::train_resumable(&run.config, &data, &device, observer, Some(&checkpoints))?,
    })
}

/// The run's status after an attempt that ended without error, reported on stderr.
fn report_outcome(key: &str, outcome: &train::RunOutcome) -> RunStatus {
    let status = match outcome.end {
        train::RunEnd::Done => RunStatus::Done,
        train::RunEnd::Diverged(_) => RunStatus::Diverged,
        train::RunEnd::Interrupted => RunStatus::Interrupted,
    };
    eprintln!(
        "worker {}: run {key} {status} after {} steps, val loss {}",
        std::process::id(),
        outcome.steps,
        outcome
            .final_val_loss
            .map(|v| format!("{v:.4}"))
            .unwrap_or("-".into())
    );
    status
}

/// Why the parent of a run built on another can never give it a start (it diverged, or is
/// blocked itself), read from the parent's run store; `None` for a run that stands alone or whose
/// parent may yet (a failed parent may be retried).
fn unusable_parent(
    db: &std::path::Path,
    config: &loopscale_config::RunConfig,
) -> anyhow::Result<Option<String>> {
    let Some(parent) = config.parent() else {
        return Ok(None);
    };
    let run_store = super::run_stores::run_store_path(db, parent);
    if !run_store.exists() {
        return Ok(None);
    }
    let status = Store::open_read_only(&run_store)?
        .run(parent)?
        .map(|r| r.status);
    Ok(match status {
        Some(s @ (RunStatus::Diverged | RunStatus::Blocked)) => {
            Some(format!("its parent run {parent} {s}"))
        }
        _ => None,
    })
}

/// The parent of a run that starts from another's final weights (a recast run's GPT, a MELT
/// run's looped model): its role, the parent's configuration (from its run store) and its final
/// checkpoint.
fn built_on(
    db: &std::path::Path,
    config: &loopscale_config::RunConfig,
) -> anyhow::Result<Option<(Role, loopscale_config::RunConfig, PathBuf)>> {
    let Some(lineage) = config.lineage.as_ref() else {
        return Ok(None);
    };
    let (role @ (Role::Recast | Role::Melt), Some(parent), Some(step)) =
        (lineage.role, &lineage.parent, lineage.parent_step)
    else {
        return Ok(None);
    };
    let what = role.as_str();
    let run_store = super::run_stores::run_store_path(db, parent);
    let row = Store::open_read_only(&run_store)
        .and_then(|s| s.run(parent))
        .with_context(|| format!("reading the parent run {parent} of this {what} run"))?
        .with_context(|| format!("{}: no parent run {parent}", run_store.display()))?;
    let dir = super::run_dir(db, parent);
    if !train::checkpoint::has_complete(&dir, step) {
        anyhow::bail!(
            "this {what} run starts from run {parent}'s final checkpoint (step {step}), which is not in {} \
             (the parent has not finished, or `loopscale gc` removed it: run the parent again)",
            dir.display()
        );
    }
    Ok(Some((
        role,
        row.config,
        train::checkpoint::path_of(&dir, step),
    )))
}

/// The parent checkpoint a run built on another starts from: a WSD branch's trunk at its
/// branch point. (Recast and MELT runs read their parent's weights themselves.)
fn parent_checkpoint(
    db: &std::path::Path,
    config: &loopscale_config::RunConfig,
) -> Option<train::ParentCheckpoint> {
    let lineage = config.lineage.as_ref()?;
    match (lineage.role, &lineage.parent, lineage.parent_step) {
        (loopscale_config::Role::Branch, Some(parent), Some(step)) => {
            Some(train::ParentCheckpoint {
                dir: super::run_dir(db, parent),
                run_key: parent.clone(),
                step,
            })
        }
        _ => None,
    }
}

/// CPU threads this worker may use: its `RAYON_NUM_THREADS` budget (set by the coordinator),
/// else every core.
fn threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Blocks until this process is the only worker of the run; released when the process ends.
fn lock_run(db: &std::path::Path, key: &str) -> anyhow::Result<std::fs::File> {
    let dir = super::logs_dir(db);
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let path = dir.join(format!("{key}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("{}: cannot open the run lock", path.display()))?;
    file.lock()
        .with_context(|| format!("{}: cannot lock", path.display()))?;
    Ok(file)
}
