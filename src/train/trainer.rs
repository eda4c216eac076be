//! The training loop of one run: build the model from its seed, step the optimizer along the learning
//! rate schedule on seeded random windows, report metrics and validation loss to the observer,
//! and stop early on divergence or when asked to.
//!
//! Looped models also draw each step's per-sequence depths and initial state from a seeded
//! stream of their own (so a seed fixes the whole run), report the recurrent state's norm and
//! the injection's spectral norm at every logged step, and after training are evaluated at
//! every `test_loops` depth.
//!
//! Every random draw of a step (its training windows, a looped model's depths and initial
//! state) comes from an RNG indexed by the step, so a run resumed from a checkpoint (see
//! [`super::checkpoint`]) continues exactly as the uninterrupted run would have.

use std::collections::VecDeque;
use std::time::Instant;

use super::checkpoint::{Checkpointing, TrainerState};
use super::data::{Batch, BatchSampler, Corpus, indexed_rng};
use super::optimizer::Optimizer;
use super::schedule::learning_rate;
use super::{EvalMetrics, RunEnd, RunObserver, RunOutcome, StepMetrics};
use crate::model::grad::no_grad;
use crate::model::{Arch, CausalLm, Gpt, Looped, train_flops_per_token};
use crate::sweep::RunConfig;
use anyhow::Context;
use candle_core::{DType, Device, Tensor};

/// Training runs in f32; gradient checks use f64.
pub const TRAIN_DTYPE: DType = DType::F32;

/// A loss above `DIVERGENCE_FACTOR` × the first step's (and above ln(vocab) + `DIVERGENCE_MARGIN`
/// nats, i.e. clearly worse than a uniform guess) means the run has blown up.
pub const DIVERGENCE_FACTOR: f64 = 3.0;
pub const DIVERGENCE_MARGIN: f64 = 1.0;

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

/// The network `cfg.model` describes, initialised from `cfg.seed`, in the training dtype.
pub fn build_model(
    cfg: &RunConfig,
    vocab_size: usize,
    device: &Device,
) -> anyhow::Result<Box<dyn CausalLm>> {
    match cfg.model.arch {
        Arch::Gpt => Ok(Box::new(Gpt::new(
            &cfg.model,
            vocab_size,
            cfg.data.seq_len,
            cfg.seed,
            TRAIN_DTYPE,
            device,
        )?)),
        Arch::Looped => Ok(Box::new(Looped::new(
            &cfg.model,
            vocab_size,
            cfg.data.seq_len,
            cfg.seed,
            TRAIN_DTYPE,
            device,
        )?)),
    }
}

/// Builds the model of `cfg` and trains it; see [`train_model`].
pub fn train(
    cfg: &RunConfig,
    corpus: &Corpus,
    device: &Device,
    observer: &mut dyn RunObserver,
) -> anyhow::Result<RunOutcome> {
    train_resumable(cfg, corpus, device, observer, None)
}

/// Builds the model of `cfg` and trains it, checkpointing and resuming as `checkpoints` says;
/// see [`train_model_resumable`].
pub fn train_resumable(
    cfg: &RunConfig,
    corpus: &Corpus,
    device: &Device,
    observer: &mut dyn RunObserver,
    checkpoints: Option<&Checkpointing>,
) -> anyhow::Result<RunOutcome> {
    let model = build_model(cfg, corpus.vocab_size(), device)?;
    train_model_resumable(model.as_ref(), cfg, corpus, device, observer, checkpoints)
}

/// Mean validation loss (nats per token) of `model` over `batches`, at the training depth.
pub fn evaluate(model: &dyn CausalLm, batches: &[Batch]) -> anyhow::Result<f64> {
    mean_loss(batches, |b| model.loss(&b.inputs, &b.targets))
}

/// Mean validation loss of a looped model run for `loops` loops on every sequence.
pub fn evaluate_at_loops(model: &Looped, batches: &[Batch], loops: usize) -> anyhow::Result<f64> {
    mean_loss(batches, |b| {
        model.loss_with_loops(&b.inputs, &b.targets, loops)
    })
}

/// Mean of `loss` over `batches`, weighted by tokens; forward only, without a graph.
fn mean_loss(
    batches: &[Batch],
    loss: impl Fn(&Batch) -> candle_core::Result<Tensor>,
) -> anyhow::Result<f64> {
    let (mut total, mut count) = (0.0, 0usize);
    for batch in batches {
        let loss = no_grad(|| loss(batch))?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?;
        let n = batch.targets.elem_count();
        total += loss * n as f64;
        count += n;
    }
    anyhow::ensure!(count > 0, "evaluate: no validation tokens");
    Ok(total / count as f64)
}

/// Trains an already built `model` as `cfg` says. Step numbers in the metrics count completed
/// optimizer steps (the first logged step is 1).
pub fn train_model(
    model: &dyn CausalLm,
    cfg: &RunConfig,
    corpus: &Corpus,
    device: &Device,
    observer: &mut dyn RunObserver,
) -> anyhow::Result<RunOutcome> {
    train_model_resumable(model, cfg, corpus, device, observer, None)
}

/// [`train_model`], resuming from the newest good checkpoint in `checkpoints` (if any), saving
/// one every `checkpoints.every` steps and one when stopped early. The observer is told where
/// training resumes ([`RunObserver::on_resume`]) and asked to make its rows durable before
/// each checkpoint ([`RunObserver::before_checkpoint`]).
pub fn train_model_resumable(
    model: &dyn CausalLm,
    cfg: &RunConfig,
    corpus: &Corpus,
    device: &Device,
    observer: &mut dyn RunObserver,
    checkpoints: Option<&Checkpointing>,
) -> anyhow::Result<RunOutcome> {
    super::keep_freed_memory();
    let t = &cfg.train;
    let seq_len = cfg.data.seq_len;
    let steps = total_steps(cfg);
    let tokens_per_step = (t.batch_size * seq_len) as u64;
    let flops_per_token = train_flops_per_token(&cfg.model, corpus.vocab_size(), seq_len);
    let divergence_floor = (corpus.vocab_size() as f64).ln() + DIVERGENCE_MARGIN;

    let mut optimizer = Optimizer::new(model.params(), t, steps)?;
    let mut sampler = BatchSampler::new(sampler_seed(cfg.seed), t.batch_size, seq_len);
    let mut spikes = SpikeCounter::default();
    let val_batches = corpus.validation_batches(seq_len, t.batch_size, t.eval_tokens, device)?;

    let mut end = RunEnd::Done;
    let (mut done_steps, mut first_loss, mut last_loss) = (0u64, None::<f64>, None::<f64>);
    let (mut final_val_loss, mut final_val_bpb) = (None, None);
    let mut elapsed_before = 0.0;
    if let Some(ck) = checkpoints {
        let mut warnings = Vec::new();
        let resumed = ck.load_latest(steps, model.params(), &mut optimizer, &mut |w| {
            warnings.push(w)
        })?;
        for w in warnings {
            observer.note(&format!("warning: {w}"));
        }
        if let Some(state) = resumed {
            observer.note(&format!(
                "resuming from the checkpoint at step {}/{steps}",
                state.step
            ));
            done_steps = state.step;
            (first_loss, last_loss) = (state.first_loss, state.last_loss);
            (final_val_loss, final_val_bpb) = (state.final_val_loss, state.final_val_bpb);
            spikes.recent = state.spike_window.into_iter().collect();
            spikes.count = state.spike_count;
            elapsed_before = state.elapsed_seconds;
        }
    }
    sampler.seek(done_steps);
    observer
        .on_resume(done_steps)
        .context("observer.on_resume")?;
    let start = Instant::now();
    let elapsed = |start: &Instant| elapsed_before + start.elapsed().as_secs_f64();
    let mut last_checkpoint = done_steps;

    let first_step = done_steps;
    for step in first_step..steps {
        if observer.should_stop() {
            end = RunEnd::Interrupted;
            if checkpoints.is_some() && done_steps > last_checkpoint {
                let state = trainer_state(
                    done_steps,
                    &optimizer,
                    first_loss,
                    last_loss,
                    &spikes,
                    final_val_loss,
                    final_val_bpb,
                    elapsed(&start),
                );
                save_checkpoint(checkpoints, observer, &state, steps, model, &optimizer)?;
            }
            break;
        }
        let batch = sampler.sample(corpus.train_tokens(), device)?;
        let mut forward_rng = indexed_rng(forward_seed(cfg.seed), step);
        let forward = model.train_loss(&batch.inputs, &batch.targets, &mut forward_rng)?;
        let loss = forward.loss;
        let loss_value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let first = *first_loss.get_or_insert(loss_value);
        if !loss_value.is_finite() {
            end = RunEnd::Diverged(format!(
                "training loss is {loss_value} at step {}",
                step + 1
            ));
            break;
        }
        if loss_value > DIVERGENCE_FACTOR * first && loss_value > divergence_floor {
            end = RunEnd::Diverged(format!(
                "training loss {loss_value:.3} at step {} exceeds {DIVERGENCE_FACTOR}× the first step's {first:.3}",
                step + 1
            ));
            break;
        }
        spikes.observe(loss_value);
        let grads = loss.backward()?;
        let lr = learning_rate(t, step, steps);
        let grad_norm = optimizer.step(&grads, lr, t.grad_clip)?;
        done_steps = step + 1;
        last_loss = Some(loss_value);
        let tokens = done_steps * tokens_per_step;
        let flops = flops_per_token * tokens as f64;
        let is_last = done_steps == steps;

        if is_last || (t.log_every > 0 && done_steps % t.log_every as u64 == 0) {
            let metrics = StepMetrics {
                step: done_steps,
                tokens,
                flops,
                train_loss: loss_value,
                lr,
                grad_norm,
                elapsed_seconds: elapsed(&start),
                state_norm: forward.state_norm,
                injection_norm: model
                    .as_looped()
                    .map(Looped::injection_spectral_norm)
                    .transpose()?,
            };
            observer.on_step(&metrics).context("observer.on_step")?;
        }
        if is_last || (t.eval_every > 0 && done_steps % t.eval_every as u64 == 0) {
            let val_loss = evaluate(model, &val_batches)?;
            let val_bpb = val_loss / std::f64::consts::LN_2 / corpus.bytes_per_token();
            let eval = EvalMetrics {
                step: done_steps,
                tokens,
                flops,
                val_loss,
                val_bpb,
                test_loops: None,
            };
            observer.on_eval(&eval).context("observer.on_eval")?;
            (final_val_loss, final_val_bpb) = (Some(val_loss), Some(val_bpb));
            if !val_loss.is_finite() {
                end = RunEnd::Diverged(format!(
                    "validation loss is {val_loss} at step {done_steps}"
                ));
                break;
            }
        }
        let every = checkpoints.map(|c| c.every).unwrap_or(0);
        if !is_last && every > 0 && done_steps % every == 0 {
            let state = trainer_state(
                done_steps,
                &optimizer,
                first_loss,
                last_loss,
                &spikes,
                final_val_loss,
                final_val_bpb,
                elapsed(&start),
            );
            save_checkpoint(checkpoints, observer, &state, steps, model, &optimizer)?;
            last_checkpoint = done_steps;
        }
    }

    let wall_seconds = elapsed(&start);
    let tokens = done_steps * tokens_per_step;

    // Test-time depth: a finished looped run is evaluated at every `test_loops` loop count.
    if let (RunEnd::Done, Some(looped)) = (&end, model.as_looped()) {
        let flops = flops_per_token * tokens as f64;
        for &loops in &looped.config().test_loops {
            let val_loss = evaluate_at_loops(looped, &val_batches, loops)?;
            let eval = EvalMetrics {
                step: done_steps,
                tokens,
                flops,
                val_loss,
                val_bpb: val_loss / std::f64::consts::LN_2 / corpus.bytes_per_token(),
                test_loops: Some(loops),
            };
            observer.on_eval(&eval).context("observer.on_eval")?;
        }
    }

    Ok(RunOutcome {
        end,
        steps: done_steps,
        tokens,
        flops: flops_per_token * tokens as f64,
        final_val_loss,
        final_val_bpb,
        final_train_loss: last_loss,
        wall_seconds,
        tokens_per_second: if wall_seconds > 0.0 {
            tokens as f64 / wall_seconds
        } else {
            0.0
        },
        loss_spikes: spikes.count,
    })
}

/// Makes the observer's rows durable, then writes the checkpoint of `state`.
fn save_checkpoint(
    checkpoints: Option<&Checkpointing>,
    observer: &mut dyn RunObserver,
    state: &TrainerState,
    steps: u64,
    model: &dyn CausalLm,
    optimizer: &Optimizer,
) -> anyhow::Result<()> {
    let Some(ck) = checkpoints else { return Ok(()) };
    observer
        .before_checkpoint(state.step)
        .context("observer.before_checkpoint")?;
    let saved = ck.save(state, steps, model.params(), optimizer)?;
    observer.note(&format!(
        "checkpoint at step {}: {} ({} bytes, {:.1} ms)",
        state.step,
        saved.path.display(),
        saved.bytes,
        saved.seconds * 1e3
    ));
    Ok(())
}

/// The trainer's scalar state after step `step`, for a checkpoint.
#[allow(clippy::too_many_arguments)]
fn trainer_state(
    step: u64,
    optimizer: &Optimizer,
    first_loss: Option<f64>,
    last_loss: Option<f64>,
    spikes: &SpikeCounter,
    final_val_loss: Option<f64>,
    final_val_bpb: Option<f64>,
    elapsed_seconds: f64,
) -> TrainerState {
    TrainerState {
        step,
        adam_steps: optimizer.updates() as i32,
        first_loss,
        last_loss,
        spike_window: spikes.recent.iter().copied().collect(),
        spike_count: spikes.count,
        final_val_loss,
        final_val_bpb,
        elapsed_seconds,
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
