//! LoopUS's additions to the looped model (Park, Lee, Kim, Bae 2026, "LoopUS: Recasting
//! Pretrained LLMs into Looped Latent Refinement Models", arXiv 2605.11011; read with its
//! reference code, github.com/Thrillcrazyer/LoopUS, `models/modeling_lds.py`): the selective
//! gate against hidden-state drift, the confidence head for early exit, and the draw of random
//! deep supervision. Recasting a GPT into a looped model is [`super::recast`].
//!
//! # Selective gate (`model.loop_gate = "selective"`)
//!
//! With `x` the core's input in a loop and `p = core(x)` its proposal:
//!
//! ```text
//! u = p − x                                          the proposed update
//! Δ = softplus(W_up · (W_down · u) + dt_bias)        (batch, time, r), input-dependent
//! ḡ = exp(−Δ ⊙ exp(A_log))                           ∈ (0, 1) per token and channel
//! h ← ḡ ⊙ p + (1 − ḡ) ⊙ x  =  x + ḡ ⊙ u
//! ```
//!
//! This is the reference code's `SelectiveGate` (a ZOH-discretised, Mamba-style decay whose step
//! `Δ` is a low-rank function of the update, rank `⌈r/16⌉`), applied after the core in every
//! loop. Our initialisation differs: the reference draws `Δ` log-uniform in `[0.001, 0.1]` with
//! `A = 1…r` (so on the later channels `ḡ` starts near 0); here `W_up = 0`, `A_log = 0` and
//! `dt_bias` puts `ḡ = 1 − GATE_INIT_LEAK` on every channel, so a freshly recast model at one
//! loop is its parent GPT up to a leak of 10⁻³ of the core's update (the gate's parameters are
//! AdamW's, whose step size does not shrink with the small gradient there).
//!
//! # Confidence head (`model.exit_head = true`)
//!
//! Per token and loop, a logit `z = w · rmsnorm(u) + s · ½·ln(‖u‖² / ‖x‖²) + b` read from the
//! same update `u` (the reference pools LayerNorm(`u`) of the last token per sequence; per-token
//! exit suits a language model's per-token loss better, and the log relative size of the update
//! is the convergence signal a normalised `u` loses). Confidence = `σ(z)`.
//!
//! Training target: whether the prediction read out at the supervised loop is correct, `y =
//! 1[argmax logits = target]` (the reference's target is the per-sequence token accuracy). The
//! head's loss is the binary cross-entropy `mean(softplus(z) − y·z)`, added to the LM loss with
//! weight 1; its inputs are detached, so it learns to read the loop without changing the model
//! (the reference lets the confidence loss reach the core). Evaluation: a token exits after the
//! first loop whose confidence exceeds the threshold; its state is frozen from then on (later
//! loops' attention still reads it), and every token is read out once, after the last loop.
//!
//! # Random deep supervision (`train.deep_supervision = "random"`)
//!
//! Each step draws one loop count `k` uniform in `1..=2μ − 1` (mean `μ = mean_recurrence`) from
//! the step-keyed forward stream, runs the whole batch for `k` loops with gradient through the
//! last `min(k, backprop_depth)`, and takes the loss there. The reference instead runs several
//! supervision segments per batch, each continuing from the previous one's detached state; one
//! segment of random length per step is the same idea at one forward pass per step.

use candle_core::{D, DType, Result, Tensor};
use rand::Rng;
use rand::rngs::StdRng;

use super::grad::param;
use super::layers::{project, softplus};
use super::ops;
use super::params::{ParamRole, ParamStore};
use super::parts::{ExitPolicy, LoopStep, StateUpdate};

/// `1 − ḡ` at initialisation on every channel: how far a fresh gate is from passing the core's
/// output through unchanged.
pub const GATE_INIT_LEAK: f64 = 1e-3;

/// The width of the gate's low-rank projection of the update: `⌈r/16⌉` (the reference's
/// `dt_rank`).
pub fn gate_rank(r: usize) -> usize {
    r.div_ceil(16)
}

/// LoopUS's selective gate (see the module docs).
pub struct SelectiveGate {
    /// `(r, rank)`, `(rank, r)`, `(r,)`, `(r,)`.
    w_down: Tensor,
    w_up: Tensor,
    dt_bias: Tensor,
    a_log: Tensor,
}

impl SelectiveGate {
    /// A gate of width `r` passing `1 − GATE_INIT_LEAK` of the update; `W_down` ~ N(0, std²).
    pub fn new(params: &mut ParamStore, r: usize, std: f64) -> Result<Self> {
        let role = ParamRole::Recurrent;
        let rank = gate_rank(r);
        // ḡ = exp(−softplus(dt_bias)) with A = 1  ⇒  softplus(dt_bias) = −ln(1 − leak).
        let delta = -(-GATE_INIT_LEAK).ln_1p();
        let dt0 = delta.exp_m1().ln(); // softplus⁻¹
        Ok(SelectiveGate {
            w_down: params.normal("gate.W_down", (r, rank), std, role)?,
            w_up: params.zeros("gate.W_up", (rank, r), role)?,
            dt_bias: params.constant("gate.dt_bias", &[r], vec![dt0; r], role)?,
            a_log: params.constant("gate.A_log", &[r], vec![0.0; r], role)?,
        })
    }

    /// `ḡ` `(batch, time, r)` for the update `u`.
    pub fn keep(&self, update: &Tensor) -> Result<Tensor> {
        let low = project(update, &param(&self.w_down))?;
        let z = project(&low, &param(&self.w_up))?.broadcast_add(&param(&self.dt_bias))?;
        let rate = softplus(&z)?.broadcast_mul(&param(&self.a_log).exp()?)?;
        rate.neg()?.exp()
    }

    /// The new state `x + ḡ ⊙ (p − x)` from the core's input `x` and proposal `p`.
    pub fn forward(&self, x: &Tensor, proposal: &Tensor) -> Result<Tensor> {
        let update = (proposal - x)?;
        x + (self.keep(&update)? * update)?
    }

    /// Trainable scalars of a gate of width `r`.
    pub fn param_count(r: usize) -> u64 {
        let (r, k) = (r as u64, gate_rank(r) as u64);
        2 * r * k + 2 * r
    }
}

impl StateUpdate for SelectiveGate {
    fn update(&self, x: &Tensor, proposal: &Tensor) -> Result<Tensor> {
        self.forward(x, proposal)
    }
}

/// LoopUS's confidence head (see the module docs).
pub struct ExitHead {
    /// `(r, 1)`, `(1,)`, `(1,)`.
    w: Tensor,
    s: Tensor,
    b: Tensor,
    eps: f64,
}

impl ExitHead {
    /// A head of width `r` that starts at confidence ½ everywhere (all parameters zero).
    pub fn new(params: &mut ParamStore, r: usize, eps: f64) -> Result<Self> {
        let role = ParamRole::Recurrent;
        Ok(ExitHead {
            w: params.zeros("exit_head.w", (r, 1), role)?,
            s: params.constant("exit_head.s", &[1], vec![0.0], role)?,
            b: params.constant("exit_head.b", &[1], vec![0.0], role)?,
            eps,
        })
    }

    /// The confidence logit `z` `(batch, time)` of loop `step`; its inputs are detached.
    pub fn logit(&self, step: &LoopStep) -> Result<Tensor> {
        let x = step.input.detach();
        let update = (step.proposal.detach() - &x)?;
        let r = update.dim(D::Minus1)?;
        let ones = Tensor::ones(r, update.dtype(), update.device())?;
        let direction = ops::rms_norm(&update, &ones, self.eps)?;
        let sq = |t: &Tensor| t.sqr()?.sum(D::Minus1)? + self.eps;
        let log_size = ((sq(&update)?.log()? - sq(&x)?.log()?)? * 0.5)?;
        let read = project(&direction, &param(&self.w))?.squeeze(D::Minus1)?;
        let scaled = log_size.broadcast_mul(&param(&self.s))?;
        (read + scaled)?.broadcast_add(&param(&self.b))
    }

    /// `σ(z)` `(batch, time)`.
    pub fn confidence(&self, step: &LoopStep) -> Result<Tensor> {
        (self.logit(step)?.neg()?.exp()? + 1.0)?.recip()
    }

    /// The head's training loss at loop `step` whose read-out gave `logits` `(batch, time,
    /// vocab)` for `targets` `(batch, time)`: binary cross-entropy against correctness.
    pub fn loss(&self, step: &LoopStep, logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
        let z = self.logit(step)?;
        let correct = logits
            .detach()
            .argmax(D::Minus1)?
            .eq(targets)?
            .to_dtype(z.dtype())?;
        bce_with_logits(&z, &correct)
    }

    /// Trainable scalars of a head of width `r`.
    pub fn param_count(r: usize) -> u64 {
        r as u64 + 2
    }
}

impl ExitPolicy for ExitHead {
    fn confidence(&self, step: &LoopStep) -> Result<Tensor> {
        ExitHead::confidence(self, step)
    }

    fn loss(&self, step: &LoopStep, logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
        ExitHead::loss(self, step, logits, targets)
    }
}

/// `mean(softplus(z) − y·z)`: binary cross-entropy of logits `z` against targets `y ∈ [0, 1]`.
pub fn bce_with_logits(z: &Tensor, y: &Tensor) -> Result<Tensor> {
    (softplus(z)? - (z * y)?)?.mean_all()
}

/// This step's supervised loop count under random deep supervision: uniform in `1..=2μ − 1`.
pub fn draw_supervised_loops(mean_recurrence: usize, rng: &mut StdRng) -> usize {
    let top = (2 * mean_recurrence).saturating_sub(1).max(1);
    rng.random_range(1..=top)
}

/// The `(batch, time)` u8 mask of tokens whose `confidence` exceeds `threshold`.
pub fn exits(confidence: &Tensor, threshold: f64) -> Result<Tensor> {
    confidence.to_dtype(DType::F64)?.gt(threshold)
}
