//! The training loop of one run: build the model from its seed, step the optimizer (AdamW, or
//! Muon with AdamW) along the learning rate schedule on seeded random windows, report metrics
//! and validation loss to the observer, and stop early on divergence or when asked to.
//!
//! Looped models also draw each step's per-sequence depths and initial state from a seeded
//! stream of their own (so a seed fixes the whole run), report the recurrent state's norm and
//! the injection's spectral norm at every logged step, and after training are evaluated at
//! every `test_loops` depth (a LoopFormer model along each named schedule at each budget).
//! Under `train.shortcut_consistency` a step also runs one short trajectory, drawn from the
//! step's forward stream after the initial state.
//!
//! A run on a synthetic task (`data.task`, [`super::tasks`]) draws its examples instead of
//! text windows, scores only the answers, and measures accuracy (exact answers) at every
//! evaluation; a regression run also reports its in-context error by prompt length, with the
//! reference estimators on the same prompts, once training is done.
//!
//! Every random draw of a step (its training windows, a looped model's depths and initial
//! state) comes from an RNG indexed by the step, so a run resumed from a checkpoint (see
//! [`super::checkpoint`]) continues exactly as the uninterrupted run would have.

use std::collections::VecDeque;
use std::time::Instant;

use super::batch::{Batch, indexed_rng};
use super::checkpoint::{Checkpointing, TrainerState};
use super::data::{BatchSampler, text_passes};
use super::dataset::Data;
use super::decoding::{DECODE_EVAL_TOKENS, measure_decoding};
use super::divergence::DivergenceWatch;
use super::objectives;
use super::optimizer::Optimizer;
use super::schedule::learning_rate;
use super::tasks::{self, TaskSet};
use super::{
    EvalMetrics, ExitEvalMetrics, IclError, RunEnd, RunObserver, RunOutcome, StepMetrics, TimeSplit,
};
use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use loopscale_config::RunConfig;
use loopscale_model::conditioning::Trajectory;
use loopscale_model::grad::no_grad;
use loopscale_model::{
    Arch, CausalLm, Gpt, Io, Looped, Precision, autocast, bf16_available, lm_loss,
};

/// Training runs in f32; gradient checks use f64.
pub const TRAIN_DTYPE: DType = DType::F32;

/// A step's loss above `SPIKE_FACTOR` × the mean of the previous `SPIKE_WINDOW` losses (once
/// that many have been seen) counts as a loss spike.
pub const SPIKE_FACTOR: f64 = 1.5;
pub const SPIKE_WINDOW: usize = 20;

/// Optimizer steps of a run: `ceil(tokens / (batch_size · seq_len))`, at least 1.
pub fn total_steps(cfg: &RunConfig) -> u64 {
    let per_step = (cfg.train.batch_size * cfg.data.seq_len) as u64;
    cfg.train.tokens.div_ceil(per_step).max(1)
}

/// The seed of the training-window sampler, derived from the run seed so that it differs
/// from the initialisation stream.
fn sampler_seed(seed: u64) -> u64 {
    seed ^ 0x9e37_79b9_7f4a_7c15
}

/// The seed of the stream a model's random forward pass draws from in training (a looped
/// model's depths and initial states): a third stream, independent of init and data order,
/// indexed by step like the sampler's.
fn forward_seed(seed: u64) -> u64 {
    seed ^ 0xd1b5_4a32_d192_ed03
}

/// Loss spikes in a sequence of training losses, by the rule [`SpikeCounter`] applies while
/// training (for runs trained by another program, whose losses arrive as rows).
pub fn count_loss_spikes(losses: impl IntoIterator<Item = f64>) -> u32 {
    let mut spikes = SpikeCounter::default();
    losses.into_iter().for_each(|l| spikes.observe(l));
    spikes.count
}

/// Counts loss spikes: losses above `SPIKE_FACTOR` × the mean of the previous `SPIKE_WINDOW`.
#[derive(Default)]
struct SpikeCounter {
    recent: VecDeque<f64>,
    count: u32,
}

impl SpikeCounter {
    fn observe(&mut self, loss: f64) {
        if self.recent.len() == SPIKE_WINDOW {
            let mean = self.recent.iter().sum::<f64>() / SPIKE_WINDOW as f64;
            if loss > SPIKE_FACTOR * mean {
                self.count += 1;
            }
            self.recent.pop_front();
        }
        self.recent.push_back(loss);
    }
}

/// The network `cfg.model` describes with ends `io` (a vocabulary size, or [`Io::Vectors`]),
/// initialised from `cfg.seed`, in the training dtype.
pub fn build_model(
    cfg: &RunConfig,
    io: impl Into<Io>,
    device: &Device,
) -> anyhow::Result<Box<dyn CausalLm>> {
    let io = io.into();
    match cfg.model.arch {
        Arch::Gpt => Ok(Box::new(Gpt::new(
            &cfg.model,
            io,
            cfg.data.seq_len,
            cfg.seed,
            TRAIN_DTYPE,
            device,
        )?)),
        Arch::Looped => Ok(Box::new(Looped::new(
            &cfg.model,
            io,
            cfg.data.seq_len,
            cfg.seed,
            TRAIN_DTYPE,
            device,
        )?)),
    }
}

/// Builds the model of `cfg` and trains it on `data` (a `&Corpus`, `&TaskSet` or
/// `&Dataset`); see [`train_model`].
pub fn train<'a>(
    cfg: &RunConfig,
    data: impl Into<Data<'a>>,
    device: &Device,
    observer: &mut dyn RunObserver,
) -> anyhow::Result<RunOutcome> {
    train_resumable(cfg, data, device, observer, None)
}

/// Builds the model of `cfg` and trains it, checkpointing and resuming as `checkpoints` says;
/// see [`train_model_resumable`].
pub fn train_resumable<'a>(
    cfg: &RunConfig,
    data: impl Into<Data<'a>>,
    device: &Device,
    observer: &mut dyn RunObserver,
    checkpoints: Option<&Checkpointing>,
) -> anyhow::Result<RunOutcome> {
    let data = data.into();
    let model = build_model(cfg, data.io(), device)?;
    train_model_resumable(model.as_ref(), cfg, data, device, observer, checkpoints)
}

/// Mean validation loss (nats per token) of `model` over `batches`, at the training depth.
pub fn evaluate(model: &dyn CausalLm, batches: &[Batch]) -> anyhow::Result<f64> {
    Ok(measure(batches, |x| model.logits(x))?.loss)
}

/// Mean validation loss of a looped model run for `loops` loops on every sequence.
pub fn evaluate_at_loops(model: &Looped, batches: &[Batch], loops: usize) -> anyhow::Result<f64> {
    Ok(measure(batches, |x| model.logits_with_loops(x, loops))?.loss)
}

/// Mean validation loss of a conditioned looped model (LoopFormer) along the schedule `steps`.
pub fn evaluate_with_steps(
    model: &Looped,
    batches: &[Batch],
    steps: &[f64],
) -> anyhow::Result<f64> {
    Ok(measure(batches, |x| model.logits_with_steps(x, steps.to_vec()))?.loss)
}

/// What one pass over the validation batches measured.
struct Measured {
    /// Mean loss over the scored positions (every token of a text).
    loss: f64,
    /// Token targets: the fraction of sequences whose answer positions are all predicted
    /// exactly (meaningful for tasks; the trainer reports it only for them).
    accuracy: Option<f64>,
    /// Token targets: the fraction of scored positions predicted exactly.
    position_accuracy: Option<f64>,
    /// Real targets (regression): squared-error sums and counts by example index.
    squared_errors: Vec<(f64, usize)>,
}

/// Loss (weighted by scored positions), exact-answer accuracy and regression errors of the
/// outputs `logits` gives for each batch; forward only, without a graph.
fn measure(
    batches: &[Batch],
    logits: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> anyhow::Result<Measured> {
    let (mut total, mut count) = (0.0, 0usize);
    let (mut right, mut answered) = (0usize, 0usize);
    let (mut right_positions, mut positions) = (0usize, 0usize);
    let mut squared_errors: Vec<(f64, usize)> = Vec::new();
    for batch in batches {
        let out = no_grad(|| logits(&batch.inputs))?;
        let loss = no_grad(|| lm_loss(&out, &batch.targets))?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?;
        total += loss * batch.scored as f64;
        count += batch.scored;
        if batch.has_token_targets() {
            let answers = batch.answers.as_ref().unwrap_or(&batch.targets);
            let (r, a) = tasks::exact_answers(&out, answers)?;
            (right, answered) = (right + r, answered + a);
            let (r, n) = tasks::right_positions(&out, &batch.targets)?;
            (right_positions, positions) = (right_positions + r, positions + n);
        } else {
            for (k, (sum, n)) in tasks::squared_errors_by_example(&out, &batch.targets)?
                .into_iter()
                .enumerate()
            {
                if squared_errors.len() <= k {
                    squared_errors.resize(k + 1, (0.0, 0));
                }
                squared_errors[k].0 += sum;
                squared_errors[k].1 += n;
            }
        }
    }
    anyhow::ensure!(count > 0, "evaluate: no validation tokens");
    Ok(Measured {
        loss: total / count as f64,
        accuracy: (answered > 0).then(|| right as f64 / answered as f64),
        position_accuracy: (positions > 0).then(|| right_positions as f64 / positions as f64),
        squared_errors,
    })
}

/// Early exit of a looped model with a confidence head at `threshold`, up to `max_loops`:
/// `(mean validation loss, mean loops per token)`, token-weighted over `batches`.
pub fn evaluate_exit(
    model: &Looped,
    batches: &[Batch],
    max_loops: usize,
    threshold: f64,
) -> anyhow::Result<(f64, f64)> {
    let (mut loss, mut loops, mut count) = (0.0, 0.0, 0usize);
    for b in batches {
        let (l, m) = no_grad(|| {
            objectives::early_exit_loss(model, &b.inputs, &b.targets, max_loops, threshold)
        })?;
        let n = b.targets.elem_count();
        (loss, loops, count) = (loss + l * n as f64, loops + m * n as f64, count + n);
    }
    anyhow::ensure!(count > 0, "evaluate_exit: no validation tokens");
    Ok((loss / count as f64, loops / count as f64))
}

/// A bf16 run on a CPU needs AVX512-BF16; say so before any step rather than fall back to
/// fp32 silently (the run's key says bf16).
fn check_precision(precision: Precision, device: &Device) -> anyhow::Result<()> {
    if precision == Precision::Bf16 && device.is_cpu() && !bf16_available() {
        anyhow::bail!(
            "train.precision = \"bf16\" needs a CPU with AVX512-BF16 (the avx512_bf16 flag in \
             /proc/cpuinfo: AMD Zen 4 and later, Intel Cooper Lake and Sapphire Rapids and later), \
             and this one has none; set train.precision = \"fp32\", or train on a GPU (--features cuda)"
        );
    }
    Ok(())
}

/// Trains an already built `model` as `cfg` says. Step numbers in the metrics count completed
/// optimizer steps (the first logged step is 1).
pub fn train_model<'a>(
    model: &dyn CausalLm,
    cfg: &RunConfig,
    data: impl Into<Data<'a>>,
    device: &Device,
    observer: &mut dyn RunObserver,
) -> anyhow::Result<RunOutcome> {
    train_model_resumable(model, cfg, data, device, observer, None)
}

/// [`train_model`], resuming from the newest good checkpoint in `checkpoints` (if any), saving
/// one every `checkpoints.every` steps and one when stopped early. The observer is told where
/// training resumes ([`RunObserver::on_resume`]) and asked to make its rows durable before
/// each checkpoint ([`RunObserver::before_checkpoint`]).
pub fn train_model_resumable<'a>(
    model: &dyn CausalLm,
    cfg: &RunConfig,
    data: impl Into<Data<'a>>,
    device: &Device,
    observer: &mut dyn RunObserver,
    checkpoints: Option<&Checkpointing>,
) -> anyhow::Result<RunOutcome> {
    super::keep_freed_memory();
    let mut trainer = Trainer::new(model, cfg, data.into(), device, observer, checkpoints)?;
    let mut state = trainer.resume()?;
    let mut end = RunEnd::Done;
    let mut last_checkpoint = state.done_steps;
    for step in state.done_steps..trainer.steps {
        if trainer.observer.should_stop() {
            end = RunEnd::Interrupted;
            if state.done_steps > last_checkpoint {
                trainer.save_checkpoint(&mut state)?;
            }
            break;
        }
        let t0 = Instant::now();
        let stepped = trainer.step(step, &mut state)?;
        state.time.steps += t0.elapsed().as_secs_f64();
        if let Some(diverged) = stepped {
            end = diverged;
            break;
        }
        let done = state.done_steps;
        let is_last = done == trainer.steps;
        let t = &cfg.train;
        if is_last || (t.log_every > 0 && done.is_multiple_of(t.log_every as u64)) {
            trainer.log_step(&mut state)?;
        }
        let eval_due = is_last || (t.eval_every > 0 && done.is_multiple_of(t.eval_every as u64));
        if eval_due && let Some(diverged) = trainer.evaluate(&mut state)? {
            end = diverged;
            break;
        }
        // The last step needs no checkpoint (the run is over), unless one is kept for runs
        // built on this one (a trunk's last branch point).
        let kept = trainer.checkpoints.is_some_and(|c| c.keep.contains(&done));
        if (!is_last && trainer.checkpoint_due(done)) || kept {
            trainer.save_checkpoint(&mut state)?;
            last_checkpoint = done;
        }
    }
    let wall_seconds = state.elapsed();
    // Test-time depth: a finished looped run is evaluated at every `test_loops` loop count.
    if end == RunEnd::Done {
        let t0 = Instant::now();
        trainer.evaluate_test_loops(&state)?;
        trainer.evaluate_exits(&state)?;
        trainer.report_icl_errors()?;
        state.time.test_evals += t0.elapsed().as_secs_f64();
        let t0 = Instant::now();
        trainer.evaluate_decoding(&state)?;
        state.time.decode_evals += t0.elapsed().as_secs_f64();
        // The finished model, for sampling (the last step writes no checkpoint).
        if let Some(ck) = trainer.checkpoints {
            let t0 = Instant::now();
            let path = super::checkpoint::save_final_weights(&ck.dir, trainer.model.params())?;
            state.time.checkpoints += t0.elapsed().as_secs_f64();
            trainer
                .observer
                .note(&format!("final weights: {}", path.display()));
        }
    }
    state.time.total = state.started.elapsed().as_secs_f64();
    Ok(trainer.outcome(state, end, wall_seconds))
}

/// Everything a run has done so far: the one state the training loop advances, and what a
/// checkpoint saves of it (with the optimizer's) and restores.
struct RunState {
    /// Completed optimizer steps.
    done_steps: u64,
    first_loss: Option<f64>,
    last_loss: Option<f64>,
    /// The loss and `lr`, gradient norm and state norm of the latest step, for its metrics row.
    last_step: Option<StepMeasured>,
    spikes: SpikeCounter,
    divergence: DivergenceWatch,
    final_val_loss: Option<f64>,
    final_val_bpb: Option<f64>,
    /// Seconds trained by earlier attempts of this run (before a resume).
    elapsed_before: f64,
    started: Instant,
    /// Where this attempt's time went.
    time: TimeSplit,
}

/// What one step measured, beyond its loss.
struct StepMeasured {
    lr: f64,
    grad_norm: f64,
    state_norm: Option<f64>,
}

impl RunState {
    fn new(resumed: Option<TrainerState>, divergence: DivergenceWatch) -> Self {
        let mut state = RunState {
            done_steps: 0,
            first_loss: None,
            last_loss: None,
            last_step: None,
            spikes: SpikeCounter::default(),
            divergence,
            final_val_loss: None,
            final_val_bpb: None,
            elapsed_before: 0.0,
            started: Instant::now(),
            time: TimeSplit::default(),
        };
        if let Some(saved) = resumed {
            state.done_steps = saved.step;
            (state.first_loss, state.last_loss) = (saved.first_loss, saved.last_loss);
            (state.final_val_loss, state.final_val_bpb) =
                (saved.final_val_loss, saved.final_val_bpb);
            state.spikes.recent = saved.spike_window.into_iter().collect();
            state.spikes.count = saved.spike_count;
            state.divergence = state
                .divergence
                .resumed(saved.divergence_window, saved.divergence_level);
            state.elapsed_before = saved.elapsed_seconds;
        }
        state
    }

    /// Seconds of training, this run's earlier attempts included.
    fn elapsed(&self) -> f64 {
        self.elapsed_before + self.started.elapsed().as_secs_f64()
    }

    /// The scalar state for a checkpoint.
    fn saved(&self, optimizer: &Optimizer) -> TrainerState {
        let (divergence_window, divergence_level) = self.divergence.state();
        TrainerState {
            step: self.done_steps,
            adam_steps: optimizer.updates() as i32,
            first_loss: self.first_loss,
            last_loss: self.last_loss,
            spike_window: self.spikes.recent.iter().copied().collect(),
            spike_count: self.spikes.count,
            divergence_window,
            divergence_level,
            final_val_loss: self.final_val_loss,
            final_val_bpb: self.final_val_bpb,
            elapsed_seconds: self.elapsed(),
        }
    }
}

/// The fixed parts of one run's training: the model, its optimizer and data, and where
/// measurements go.
struct Trainer<'a> {
    model: &'a dyn CausalLm,
    cfg: &'a RunConfig,
    data: Data<'a>,
    device: &'a Device,
    observer: &'a mut dyn RunObserver,
    checkpoints: Option<&'a Checkpointing>,
    optimizer: Optimizer,
    sampler: BatchSampler,
    val_batches: Vec<Batch>,
    steps: u64,
    tokens_per_step: u64,
    flops_per_token: f64,
    /// Text bytes per validation target token (text runs), measured once on the windows
    /// evaluated; what puts runs of every tokenizer on one bits-per-byte axis.
    bytes_per_token: Option<f64>,
}

impl<'a> Trainer<'a> {
    fn new(
        model: &'a dyn CausalLm,
        cfg: &'a RunConfig,
        data: Data<'a>,
        device: &'a Device,
        observer: &'a mut dyn RunObserver,
        checkpoints: Option<&'a Checkpointing>,
    ) -> anyhow::Result<Self> {
        let t = &cfg.train;
        let seq_len = cfg.data.seq_len;
        check_precision(t.precision, device)?;
        let optimizer = Optimizer::new(model.params(), t, total_steps(cfg))?;
        let val_batches = match data {
            Data::Text(corpus) => {
                corpus.validation_batches(seq_len, t.batch_size, t.eval_tokens, device)?
            }
            Data::Task(task) => task.eval_batches(t.batch_size, device)?,
        };
        let bytes_per_token = match data {
            Data::Text(corpus) => Some(corpus.eval_bytes_per_token(seq_len, t.eval_tokens)?),
            Data::Task(_) => None,
        }
        .filter(|b| *b > 0.0);
        Ok(Trainer {
            model,
            cfg,
            data,
            device,
            observer,
            checkpoints,
            optimizer,
            sampler: BatchSampler::new(
                sampler_seed(cfg.seed),
                t.batch_size,
                seq_len,
                cfg.data.order,
            ),
            val_batches,
            steps: total_steps(cfg),
            tokens_per_step: (t.batch_size * seq_len) as u64,
            flops_per_token: cfg.train_flops_per_token(),
            bytes_per_token,
        })
    }

    /// The state to start from: the newest good checkpoint's, else a fresh one. Damaged
    /// checkpoints are reported to the observer as warnings.
    fn resume(&mut self) -> anyhow::Result<RunState> {
        let mut resumed = None;
        if let Some(ck) = self.checkpoints {
            let mut warnings = Vec::new();
            resumed = ck.load_latest(
                self.steps,
                self.model.params(),
                &mut self.optimizer,
                &mut |w| warnings.push(w),
            )?;
            for w in warnings {
                self.observer.note(&format!("warning: {w}"));
            }
            if let Some(saved) = &resumed {
                self.observer.note(&format!(
                    "resuming from the checkpoint at step {}/{}",
                    saved.step, self.steps
                ));
            }
        }
        let watch =
            DivergenceWatch::new(self.cfg.train.divergence_factor, self.data.trivial_loss());
        let state = RunState::new(resumed, watch);
        self.sampler.seek(state.done_steps);
        self.observer
            .on_resume(state.done_steps)
            .context("observer.on_resume")?;
        Ok(state)
    }

    /// One optimizer step (0-based `step`): forward on this step's windows, divergence checks,
    /// backward, update. Returns how the run ended if it diverged.
    fn step(&mut self, step: u64, state: &mut RunState) -> anyhow::Result<Option<RunEnd>> {
        let batch = match self.data {
            Data::Text(corpus) => self.sampler.sample(corpus.train_tokens(), self.device)?,
            Data::Task(task) => task.train_batch(
                sampler_seed(self.cfg.seed),
                step,
                self.steps,
                self.cfg.train.batch_size,
                self.device,
            )?,
        };
        let mut forward_rng = indexed_rng(forward_seed(self.cfg.seed), step);
        // Under bf16 the step's matrix products round their operands (forward here; each op's
        // backward follows the precision it ran at). Evaluation stays fp32.
        let forward = autocast(self.cfg.train.precision, || {
            objectives::train_loss(
                self.model,
                &batch.inputs,
                &batch.targets,
                &self.cfg.train,
                (step, self.steps),
                &mut forward_rng,
            )
        })?;
        let loss = match forward.reported {
            Some(reported) => reported,
            None => forward.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?,
        };
        state.first_loss.get_or_insert(loss);
        if let Some(why) = state.divergence.observe(step + 1, loss) {
            return Ok(Some(RunEnd::Diverged(why)));
        }
        state.spikes.observe(loss);
        let grads = forward.loss.backward()?;
        let t = &self.cfg.train;
        let lr = learning_rate(t, step, self.steps);
        let grad_norm = self.optimizer.step(&grads, lr, t.grad_clip)?;
        state.done_steps = step + 1;
        state.last_loss = Some(loss);
        state.last_step = Some(StepMeasured {
            lr,
            grad_norm,
            state_norm: forward.state_norm,
        });
        Ok(None)
    }

    fn tokens(&self, state: &RunState) -> u64 {
        state.done_steps * self.tokens_per_step
    }

    /// Reports the latest step's metrics row.
    fn log_step(&mut self, state: &mut RunState) -> anyhow::Result<()> {
        let (Some(measured), Some(train_loss)) = (&state.last_step, state.last_loss) else {
            return Ok(());
        };
        let tokens = self.tokens(state);
        let metrics = StepMetrics {
            step: state.done_steps,
            tokens,
            flops: self.flops_per_token * tokens as f64,
            train_loss,
            lr: measured.lr,
            grad_norm: measured.grad_norm,
            elapsed_seconds: state.elapsed(),
            state_norm: measured.state_norm,
            injection_norm: self
                .model
                .as_looped()
                .map(|l| l.injection().spectral_norm())
                .transpose()?,
        };
        let t0 = Instant::now();
        self.observer
            .on_step(&metrics)
            .context("observer.on_step")?;
        state.time.records += t0.elapsed().as_secs_f64();
        Ok(())
    }

    /// Bits per byte of a validation loss: text only (a task's loss is not over bytes).
    fn bpb(&self, val_loss: f64) -> f64 {
        match self.bytes_per_token {
            Some(bpt) => val_loss / std::f64::consts::LN_2 / bpt,
            None => f64::NAN,
        }
    }

    /// The task being trained, if any.
    fn task(&self) -> Option<&'a TaskSet> {
        match self.data {
            Data::Task(task) => Some(task),
            Data::Text(_) => None,
        }
    }

    /// An evaluation row of `measured`: accuracy only for tasks that have one.
    fn eval_row(
        &self,
        state: &RunState,
        measured: &Measured,
        test_loops: Option<usize>,
        schedule: Option<String>,
    ) -> EvalMetrics {
        let tokens = self.tokens(state);
        EvalMetrics {
            step: state.done_steps,
            tokens,
            flops: self.flops_per_token * tokens as f64,
            val_loss: measured.loss,
            val_bpb: self.bpb(measured.loss),
            test_loops,
            schedule,
            accuracy: measured
                .accuracy
                .filter(|_| self.task().is_some_and(TaskSet::has_accuracy)),
            position_accuracy: measured
                .position_accuracy
                .filter(|_| self.task().is_some_and(TaskSet::has_accuracy)),
        }
    }

    /// Validation loss at the training depth, reported and kept as the run's latest; returns
    /// how the run ended if it is not finite.
    fn evaluate(&mut self, state: &mut RunState) -> anyhow::Result<Option<RunEnd>> {
        let model = self.model;
        let t0 = Instant::now();
        let measured = measure(&self.val_batches, |x| model.logits(x))?;
        state.time.evals += t0.elapsed().as_secs_f64();
        let eval = self.eval_row(state, &measured, None, None);
        let t0 = Instant::now();
        self.observer.on_eval(&eval).context("observer.on_eval")?;
        state.time.records += t0.elapsed().as_secs_f64();
        let val_loss = measured.loss;
        (state.final_val_loss, state.final_val_bpb) = (Some(val_loss), Some(eval.val_bpb));
        Ok((!val_loss.is_finite()).then(|| {
            RunEnd::Diverged(format!(
                "validation loss is {val_loss} at step {}",
                state.done_steps
            ))
        }))
    }

    /// A finished looped model's validation loss (and accuracy) at every `test_loops` loop
    /// count; a conditioned model (LoopFormer) at every budget `M` along each named schedule.
    fn evaluate_test_loops(&mut self, state: &RunState) -> anyhow::Result<()> {
        let Some(looped) = self.model.as_looped() else {
            return Ok(());
        };
        let trained = looped.config().mean_recurrence;
        for &loops in &looped.config().test_loops {
            let evaluated: Vec<(Option<&'static str>, Measured)> = if looped.is_conditioned() {
                Trajectory::ALL
                    .iter()
                    .map(|s| {
                        let steps = s.steps(loops, trained);
                        Ok((
                            Some(s.name()),
                            measure(&self.val_batches, |x| {
                                looped.logits_with_steps(x, steps.clone())
                            })?,
                        ))
                    })
                    .collect::<anyhow::Result<_>>()?
            } else {
                vec![(
                    None,
                    measure(&self.val_batches, |x| looped.logits_with_loops(x, loops))?,
                )]
            };
            for (schedule, measured) in evaluated {
                let eval =
                    self.eval_row(state, &measured, Some(loops), schedule.map(str::to_string));
                self.observer.on_eval(&eval).context("observer.on_eval")?;
            }
        }
        Ok(())
    }

    /// Decoding through the KV cache (text runs): the first validation sequence's first
    /// [`DECODE_EVAL_TOKENS`] tokens a token at a time, a GPT once, a looped (or MELT) model at
    /// every `test_loops` count.
    fn evaluate_decoding(&mut self, state: &RunState) -> anyhow::Result<()> {
        if !matches!(self.data, Data::Text(_)) {
            return Ok(());
        }
        let Some(batch) = self.val_batches.first() else {
            return Ok(());
        };
        let t = batch.inputs.dim(1)?.min(DECODE_EVAL_TOKENS);
        let (inputs, targets) = (
            batch.inputs.narrow(0, 0, 1)?.narrow(1, 0, t)?,
            batch.targets.narrow(0, 0, 1)?.narrow(1, 0, t)?,
        );
        let counts: Vec<Option<usize>> = match self.model.as_looped() {
            Some(l) if !l.config().test_loops.is_empty() => {
                l.config().test_loops.iter().map(|&n| Some(n)).collect()
            }
            Some(l) => vec![Some(l.config().mean_recurrence)],
            None => vec![None],
        };
        for loops in counts {
            let mut eval = measure_decoding(self.model, &inputs, &targets, loops)?;
            eval.step = state.done_steps;
            self.observer
                .on_decode_eval(&eval)
                .context("observer.on_decode_eval")?;
        }
        Ok(())
    }

    /// Early exit at every `exit_thresholds` value (LoopUS), capped at the training depth and,
    /// where `test_loops` goes deeper, at the largest of them: past the trained depth a looped
    /// model's loss rises, so the deeper cap alone would charge early exit for loops the model
    /// was never trained to run.
    fn evaluate_exits(&mut self, state: &RunState) -> anyhow::Result<()> {
        let Some(looped) = self.model.as_looped().filter(|l| l.has_exit_head()) else {
            return Ok(());
        };
        let l = looped.config();
        let deepest = l.test_loops.iter().copied().max().unwrap_or(0);
        let mut caps = vec![l.mean_recurrence];
        if deepest > l.mean_recurrence {
            caps.push(deepest);
        }
        for (max_loops, &threshold) in caps
            .iter()
            .flat_map(|&c| l.exit_thresholds.iter().map(move |t| (c, t)))
        {
            let (val_loss, mean_loops) =
                evaluate_exit(looped, &self.val_batches, max_loops, threshold)?;
            let eval = ExitEvalMetrics {
                step: state.done_steps,
                threshold,
                max_loops,
                mean_loops,
                val_loss,
            };
            self.observer
                .on_exit_eval(&eval)
                .context("observer.on_exit_eval")?;
        }
        Ok(())
    }

    /// A finished regression run's mean squared error / d by number of in-context examples: the
    /// model's (a looped model's at every `test_loops` count), then each reference estimator's
    /// on the same prompts.
    fn report_icl_errors(&mut self) -> anyhow::Result<()> {
        let Some(task) = self.task() else {
            return Ok(());
        };
        let Some(dims) = task.regression_dims() else {
            return Ok(());
        };
        let model = self.model;
        let depths: Vec<Option<usize>> = match model.as_looped() {
            Some(looped) => looped
                .config()
                .test_loops
                .iter()
                .map(|&t| Some(t))
                .collect(),
            None => vec![None],
        };
        let mut rows = Vec::new();
        for test_loops in depths {
            let measured = match (test_loops, model.as_looped()) {
                (Some(t), Some(looped)) => {
                    measure(&self.val_batches, |x| looped.logits_with_loops(x, t))?
                }
                _ => measure(&self.val_batches, |x| model.logits(x))?,
            };
            rows.extend(
                measured
                    .squared_errors
                    .iter()
                    .enumerate()
                    .map(|(k, (sum, n))| IclError {
                        estimator: "model".into(),
                        test_loops,
                        n_examples: k,
                        error: sum / (*n).max(1) as f64 / dims as f64,
                    }),
            );
        }
        for (estimator, errors) in task.baseline_errors() {
            rows.extend(errors.iter().enumerate().map(|(k, &error)| IclError {
                estimator: estimator.name().into(),
                test_loops: None,
                n_examples: k,
                error,
            }));
        }
        self.observer
            .on_icl_errors(&rows)
            .context("observer.on_icl_errors")
    }

    /// Whether a periodic checkpoint is due after `done` steps.
    fn checkpoint_due(&self, done: u64) -> bool {
        let Some(ck) = self.checkpoints else {
            return false;
        };
        (ck.every > 0 && done.is_multiple_of(ck.every)) || ck.keep.contains(&done)
    }

    /// Makes the observer's rows durable, then writes the checkpoint of `state` (when the run
    /// checkpoints at all).
    fn save_checkpoint(&mut self, state: &mut RunState) -> anyhow::Result<()> {
        let Some(ck) = self.checkpoints else {
            return Ok(());
        };
        let saved_state = state.saved(&self.optimizer);
        let t0 = Instant::now();
        self.observer
            .before_checkpoint(saved_state.step)
            .context("observer.before_checkpoint")?;
        state.time.records += t0.elapsed().as_secs_f64();
        let t0 = Instant::now();
        let saved = ck.save(
            &saved_state,
            self.steps,
            self.model.params(),
            &self.optimizer,
        )?;
        self.observer.note(&format!(
            "checkpoint at step {}: {} ({} bytes, {:.1} ms)",
            saved_state.step,
            saved.path.display(),
            saved.bytes,
            saved.seconds * 1e3
        ));
        state.time.checkpoints += t0.elapsed().as_secs_f64();
        Ok(())
    }

    fn outcome(&self, state: RunState, end: RunEnd, wall_seconds: f64) -> RunOutcome {
        let tokens = self.tokens(&state);
        RunOutcome {
            end,
            steps: state.done_steps,
            tokens,
            flops: self.flops_per_token * tokens as f64,
            final_val_loss: state.final_val_loss,
            final_val_bpb: state.final_val_bpb,
            bytes_per_token: self.bytes_per_token,
            peak_rss_bytes: super::memory::peak_rss_bytes(),
            text_passes: match self.data {
                Data::Text(corpus) => Some(text_passes(
                    corpus.train_tokens(),
                    self.cfg.data.seq_len,
                    self.cfg.train.batch_size,
                    state.done_steps,
                    self.cfg.data.order,
                )),
                Data::Task(_) => None,
            },
            final_train_loss: state.last_loss,
            wall_seconds,
            tokens_per_second: if wall_seconds > 0.0 {
                tokens as f64 / wall_seconds
            } else {
                0.0
            },
            loss_spikes: state.spikes.count,
            time: state.time,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spikes_are_losses_well_above_the_recent_mean() {
        let mut spikes = SpikeCounter::default();
        // The first SPIKE_WINDOW steps only fill the window, however high they are.
        for i in 0..SPIKE_WINDOW {
            spikes.observe(if i == 3 { 50.0 } else { 2.0 });
        }
        assert_eq!(spikes.count, 0);
        spikes.observe(2.0);
        spikes.observe(5.0); // the window still holds the 50: mean ≈ 4.4, 5 < 6.6
        assert_eq!(spikes.count, 0);
        for _ in 0..SPIKE_WINDOW {
            spikes.observe(2.0);
        }
        spikes.observe(2.9); // mean ≈ 2, threshold 3
        assert_eq!(spikes.count, 0);
        spikes.observe(3.5);
        assert_eq!(spikes.count, 1);
        spikes.observe(f64::INFINITY);
        assert_eq!(spikes.count, 2);
    }
}
