//! The training objectives of the papers loopscale reproduces, each built on the looped model's
//! `encode`, `step`/`recur` and `decode` (`model::looped`), and the one rule that picks a run's:
//! [`train_loss`].
//!
//! | objective | paper | setting |
//! |---|---|---|
//! | [`sampled_depth_loss`]: per-sequence depth, truncated backprop | Parcae | default |
//! | [`shortcut_train_loss`]: long + short trajectory, consistency | LoopFormer | `train.shortcut_consistency` |
//! | [`deep_supervision_loss`]: one random loop count per batch | LoopUS | `train.deep_supervision = "random"` |
//! | [`last_loops_loss`]: mean loss of the last T loops' outputs | Yang et al. 2024 | `train.loss_last_loops` |
//! | [`melt_loss`]: interpolated transition, then attention-aligned distillation | MELT | `model.melt_from` |
//!
//! A model with an exit policy (LoopUS's confidence head) adds the policy's loss at the last
//! loop to the first three ([`supervised_loss`]); [`early_exit_loss`] evaluates it.

use candle_core::{D, DType, Result, Tensor};
use rand::rngs::StdRng;

use loopscale_config::{DeepSupervision, TrainConfig};
use loopscale_model::conditioning::sample_short_trajectory;
use loopscale_model::fused::composed::log_softmax_last_dim;
use loopscale_model::looped::{batch_time, state_norm};
use loopscale_model::loopus::{draw_supervised_loops, exits};
use loopscale_model::{CausalLm, LoopPlan, Looped, LoopedOutput, lm_loss};

/// The loss of one training forward pass, with what it measured on the way.
pub struct TrainLoss {
    pub loss: Tensor,
    /// Looped models: mean per-token L2 norm of the recurrent state after the last loop.
    pub state_norm: Option<f64>,
    /// The loss to report when `loss` is a composite objective (shortcut consistency reports
    /// the long trajectory's cross-entropy); `None`: `loss` itself.
    pub reported: Option<f64>,
}

/// The loss of step `step` (0-based, of `steps`) of `model` under `train`'s objective.
/// Everything random (a looped model's depths, initial state, short trajectory) is drawn from
/// `rng`, so a seeded `rng` makes the step reproducible.
pub fn train_loss(
    model: &dyn CausalLm,
    inputs: &Tensor,
    targets: &Tensor,
    train: &TrainConfig,
    (step, steps): (u64, u64),
    rng: &mut StdRng,
) -> Result<TrainLoss> {
    if let (Some(student), Some(teacher)) = (model.as_looped(), model.melt_teacher()) {
        return melt_loss(student, teacher, inputs, targets, train, (step, steps), rng);
    }
    let Some(looped) = model.as_looped() else {
        return Ok(TrainLoss {
            loss: model.loss(inputs, targets)?,
            state_norm: None,
            reported: None,
        });
    };
    if train.shortcut_consistency {
        shortcut_train_loss(
            looped,
            inputs,
            targets,
            rng,
            train.shortcut_lambda_ce,
            train.shortcut_lambda_mse,
        )
    } else if train.deep_supervision == DeepSupervision::Random {
        deep_supervision_loss(looped, inputs, targets, rng)
    } else if let Some(last) = train.loss_last_loops {
        let (b, t) = batch_time(inputs)?;
        let h0 = looped.initial_state(b, t, rng)?;
        let loops = looped.config().mean_recurrence;
        let (loss, state) = last_loops_loss(looped, inputs, targets, &h0, loops, last)?;
        Ok(TrainLoss {
            loss,
            state_norm: Some(state_norm(&state)?),
            reported: None,
        })
    } else {
        sampled_depth_loss(looped, inputs, targets, rng)
    }
}

/// Steps of MELT's first phase, the interpolated transition: `train.melt_transition_steps`,
/// else half the run's `steps` (at most `steps`).
pub fn melt_transition_steps(train: &TrainConfig, steps: u64) -> u64 {
    train.melt_transition_steps.unwrap_or(steps / 2).min(steps)
}

/// α, the weight of the parent's per-loop keys and values, at step `step` of `steps`: from 1
/// down to 0 over the transition (1 at its first step), then 0.
pub fn melt_alpha(train: &TrainConfig, step: u64, steps: u64) -> f64 {
    let transition = melt_transition_steps(train, steps);
    if step >= transition {
        0.0
    } else {
        1.0 - step as f64 / transition as f64
    }
}

/// MELT's post-training (`model::melt`): a fresh initial state from `rng`, `mean_recurrence`
/// loops, chunk-wise. During the transition the language-model loss at [`melt_alpha`]; then
/// attention-aligned distillation from `teacher` (the parent, α = 1, no gradient): the
/// cross-entropy, plus `melt_kd_weight` · KL(teacher ‖ student) per position, plus
/// `melt_align_weight` · the mean squared error of every core block's attention output in
/// every loop. The reported loss is the cross-entropy.
pub fn melt_loss(
    student: &Looped,
    teacher: &Looped,
    inputs: &Tensor,
    targets: &Tensor,
    train: &TrainConfig,
    (step, steps): (u64, u64),
    rng: &mut StdRng,
) -> Result<TrainLoss> {
    let (b, t) = batch_time(inputs)?;
    let loops = student.config().mean_recurrence;
    let h0 = student.initial_state(b, t, rng)?;
    let alpha = melt_alpha(train, step, steps);
    if alpha > 0.0 {
        let (out, _) = student.forward_shared(inputs, loops, &h0, alpha, false)?;
        return Ok(TrainLoss {
            loss: lm_loss(&out.logits, targets)?,
            state_norm: Some(state_norm(&out.state)?),
            reported: None,
        });
    }
    let (taught, taught_attn) = loopscale_model::grad::no_grad(|| {
        teacher.forward_shared(inputs, loops, &h0.detach(), 1.0, true)
    })?;
    let (out, attn) = student.forward_shared(inputs, loops, &h0, 0.0, true)?;
    let ce = lm_loss(&out.logits, targets)?;
    let log_p = log_softmax_last_dim(&taught.logits.detach())?;
    let log_q = log_softmax_last_dim(&out.logits)?;
    // KL(p ‖ q) = Σ p (log p − log q), averaged over positions.
    let kd = (log_p.exp()? * (&log_p - &log_q)?)?
        .sum(D::Minus1)?
        .mean_all()?;
    let mut align = Vec::with_capacity(attn.len());
    for (s, t) in attn.iter().zip(&taught_attn) {
        align.push((s - t.detach())?.sqr()?.mean_all()?);
    }
    let align = (Tensor::stack(&align, 0)?.mean_all())?;
    let kd_w = train.melt_kd_weight.unwrap_or(1.0);
    let align_w = train.melt_align_weight.unwrap_or(1.0);
    let loss = ((&ce + kd.affine(kd_w, 0.0)?)? + align.affine(align_w, 0.0)?)?;
    Ok(TrainLoss {
        loss,
        state_norm: Some(state_norm(&out.state)?),
        reported: Some(ce.to_dtype(DType::F64)?.to_scalar::<f64>()?),
    })
}

/// Parcae's objective: per-sequence depths sampled from the model's `depth_sampling`, then a
/// fresh initial state, both from `rng`.
pub fn sampled_depth_loss(
    model: &Looped,
    inputs: &Tensor,
    targets: &Tensor,
    rng: &mut StdRng,
) -> Result<TrainLoss> {
    let (b, t) = batch_time(inputs)?;
    let plan = LoopPlan::sample(model.config(), b, rng)?;
    let h0 = model.initial_state(b, t, rng)?;
    supervised_loss(model, inputs, targets, &plan, &h0)
}

/// The LM loss along `plan` from `h0`, plus the exit policy's loss at the last loop when the
/// model has one (then the reported loss is the LM loss alone).
pub fn supervised_loss(
    model: &Looped,
    inputs: &Tensor,
    targets: &Tensor,
    plan: &LoopPlan,
    h0: &Tensor,
) -> Result<TrainLoss> {
    let (out, last) = model.forward_traced(inputs, plan, h0)?;
    let lm = lm_loss(&out.logits, targets)?;
    let state_norm = Some(state_norm(&out.state)?);
    Ok(match model.exit_policy() {
        None => TrainLoss {
            loss: lm,
            state_norm,
            reported: None,
        },
        Some(exit) => TrainLoss {
            reported: Some(lm.to_dtype(DType::F64)?.to_scalar::<f64>()?),
            loss: (&lm + exit.loss(&last, &out.logits, targets)?)?,
            state_norm,
        },
    })
}

/// LoopUS's random deep supervision: one loop count for the whole batch drawn from `rng`
/// (uniform in `1..=2μ − 1`), then `h0`; the loss is taken after that many loops, with
/// gradient through the last `min(k, backprop_depth)` (see `model::loopus`).
pub fn deep_supervision_loss(
    model: &Looped,
    inputs: &Tensor,
    targets: &Tensor,
    rng: &mut StdRng,
) -> Result<TrainLoss> {
    let (b, t) = batch_time(inputs)?;
    let k = draw_supervised_loops(model.config().mean_recurrence, rng);
    let plan = LoopPlan::new(vec![k; b], model.config().backprop_depth());
    let h0 = model.initial_state(b, t, rng)?;
    supervised_loss(model, inputs, targets, &plan, &h0)
}

/// The three parts of shortcut-consistency training's loss, each a scalar tensor.
pub struct ShortcutLoss {
    /// `CE_long + λ_ce·CE_short + λ_mse·MSE(stopgrad(h_long), h_short)`.
    pub total: Tensor,
    pub ce_long: Tensor,
    pub ce_short: Tensor,
    pub mse: Tensor,
    /// The long trajectory's output.
    pub long: LoopedOutput,
}

/// Shortcut-consistency training's loss (LoopFormer): the long trajectory (`L =
/// mean_recurrence` steps of `1/L`) and the `short` one share the prelude and `h0`; the loss
/// is `CE_long + λ_ce·CE_short + λ_mse·MSE(stopgrad(h_long), h_short)` on the final
/// normalised hidden state, so the consistency term moves only the short trajectory.
/// Each trajectory has gradient through its last `backprop_depth` loops.
pub fn shortcut_loss(
    model: &Looped,
    inputs: &Tensor,
    targets: &Tensor,
    h0: &Tensor,
    short: Vec<f64>,
    lambda_ce: f64,
    lambda_mse: f64,
) -> Result<ShortcutLoss> {
    let (b, _) = batch_time(inputs)?;
    let l = model.config().mean_recurrence;
    let bwd = model.config().backprop_depth();
    let injected = model.encode(inputs)?;
    let long_plan = LoopPlan::with_steps(b, vec![1.0 / l as f64; l], bwd);
    let long = model.decode(model.recur(&injected, &long_plan, h0)?)?;
    let short_plan = LoopPlan::with_steps(b, short, bwd);
    let short = model.decode(model.recur(&injected, &short_plan, h0)?)?;
    let ce_long = lm_loss(&long.logits, targets)?;
    let ce_short = lm_loss(&short.logits, targets)?;
    let mse = (long.hidden.detach() - &short.hidden)?.sqr()?.mean_all()?;
    let total = ((&ce_long + (&ce_short * lambda_ce)?)? + (&mse * lambda_mse)?)?;
    Ok(ShortcutLoss {
        total,
        ce_long,
        ce_short,
        mse,
        long,
    })
}

/// [`shortcut_loss`] with this step's draws from `rng`: `h0`, then the short trajectory. The
/// reported loss is `CE_long` (comparable with a plain run's), the differentiated one the whole
/// objective.
pub fn shortcut_train_loss(
    model: &Looped,
    inputs: &Tensor,
    targets: &Tensor,
    rng: &mut StdRng,
    lambda_ce: f64,
    lambda_mse: f64,
) -> Result<TrainLoss> {
    let (b, t) = batch_time(inputs)?;
    let h0 = model.initial_state(b, t, rng)?;
    let short = sample_short_trajectory(model.config().mean_recurrence, rng);
    let out = shortcut_loss(model, inputs, targets, &h0, short, lambda_ce, lambda_mse)?;
    Ok(TrainLoss {
        reported: Some(out.ce_long.to_dtype(DType::F64)?.to_scalar::<f64>()?),
        loss: out.total,
        state_norm: Some(state_norm(&out.long.state)?),
    })
}

/// Yang et al.'s objective: every sequence runs `loops` loops from `h0`; the loss is the mean
/// of the losses of the outputs after each of the last `last` loops (each decoded). Gradients
/// flow through the last `max(last, backprop_depth)` loops; the loops before those run without
/// a graph. (Truncating at the window itself, `backprop_depth = last`, from the first step
/// stalls the in-context regression model: docs/reasoning-tasks.md.) Returns the loss and the
/// final state.
pub fn last_loops_loss(
    model: &Looped,
    inputs: &Tensor,
    targets: &Tensor,
    h0: &Tensor,
    loops: usize,
    last: usize,
) -> Result<(Tensor, Tensor)> {
    if last == 0 || last > loops || model.is_conditioned() {
        candle_core::bail!("last_loops_loss needs 1 ≤ last ≤ loops and an unconditioned core");
    }
    let (b, _) = batch_time(inputs)?;
    let plan = LoopPlan::uniform(b, loops);
    let injected = model.encode(inputs)?;
    let mut h = injected.start(h0);
    let mut losses = Vec::with_capacity(last);
    let graph_loops = model.config().backprop_depth().max(last);
    for j in 0..loops {
        h = model.step(&injected, &plan, j, &h)?.0;
        if j + graph_loops < loops {
            h = h.detach();
        }
        if j + last >= loops {
            losses.push(lm_loss(&model.decode(h.clone())?.logits, targets)?);
        }
    }
    let total = Tensor::stack(&losses, 0)?.mean_all()?;
    Ok((total, h))
}

/// Early exit on `inputs` (LoopUS): up to `max_loops` loops, each token stopping after the
/// first loop whose confidence exceeds `threshold` (its state frozen from then on), all read
/// out once at the end. Returns the mean loss and the mean loops per token; an error when the
/// model has no exit policy.
pub fn early_exit_loss(
    model: &Looped,
    inputs: &Tensor,
    targets: &Tensor,
    max_loops: usize,
    threshold: f64,
) -> Result<(f64, f64)> {
    let (logits, loops_used) = early_exit_logits(model, inputs, max_loops, threshold)?;
    let loss = lm_loss(&logits, targets)?;
    Ok((
        loss.to_dtype(DType::F64)?.to_scalar::<f64>()?,
        loops_used.mean_all()?.to_scalar::<f64>()?,
    ))
}

/// [`early_exit_loss`]'s read-out before the loss: the logits `(batch, time, vocab)` and each
/// token's loops `(batch, time)` (f64), for looking at who exits where.
pub fn early_exit_logits(
    model: &Looped,
    inputs: &Tensor,
    max_loops: usize,
    threshold: f64,
) -> Result<(Tensor, Tensor)> {
    let Some(policy) = model.exit_policy() else {
        candle_core::bail!("early exit needs a confidence head (model.exit_head = true)")
    };
    let (b, t) = batch_time(inputs)?;
    let h0 = model.eval_state(b, t)?;
    let plan = LoopPlan::uniform(b, max_loops);
    let injected = model.encode(inputs)?;
    let mut h = injected.start(&h0);
    let device = h.device().clone();
    let mut active = Tensor::ones((b, t), DType::U8, &device)?;
    let mut loops_used = Tensor::zeros((b, t), DType::F64, &device)?;
    for j in 0..max_loops {
        let (next, step) = model.step(&injected, &plan, j, &h)?;
        let keep = active.unsqueeze(D::Minus1)?.broadcast_as(h.shape())?;
        h = keep.where_cond(&next, &h)?;
        loops_used = (loops_used + active.to_dtype(DType::F64)?)?;
        let exiting = exits(&policy.confidence(&step)?, threshold)?;
        active = (active.to_dtype(DType::F64)? * (1.0 - exiting.to_dtype(DType::F64)?)?)?
            .to_dtype(DType::U8)?;
    }
    Ok((model.decode(h)?.logits, loops_used))
}

/// A model's evaluation at `loops` loops on every sequence: the mean loss.
pub fn loss_with_loops(
    model: &Looped,
    inputs: &Tensor,
    targets: &Tensor,
    loops: usize,
) -> Result<Tensor> {
    lm_loss(&model.logits_with_loops(inputs, loops)?, targets)
}

/// A conditioned model's evaluation along the schedule `steps`: the mean loss.
pub fn loss_with_steps(
    model: &Looped,
    inputs: &Tensor,
    targets: &Tensor,
    steps: Vec<f64>,
) -> Result<Tensor> {
    lm_loss(&model.logits_with_steps(inputs, steps)?, targets)
}
