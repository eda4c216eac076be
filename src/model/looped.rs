//! The looped (recurrent-depth) model: the GPT with its middle blocks applied T times.
//!
//! ```text
//! tokens → embedding → prelude blocks → prelude norm = e           (once)
//! h ← h0                                                            (random or zero, width r)
//! repeat T times:  h ← inject(h, e);  h ← core blocks(h)            (the recurrence)
//! x ← h · C  → coda blocks → final norm → tied LM head               (once)
//! ```
//!
//! Three injections mix `e` into the state each loop (see [`Injection`]):
//! - `diagonal` (Parcae): `h ← Ā ⊙ h + Δ ⊙ (B e)` with `Ā = exp(-(Δ·A + ε))`, `A = exp(A_log)`,
//!   `Δ = softplus(dt_bias)`. Every entry of `Ā` lies in `[0, exp(-ε)]`, so the map `h ↦ Ā ⊙ h`
//!   has spectral norm < 1 for *any* parameter values. `ε = MIN_DECAY_RATE` is our addition: it
//!   keeps `Ā < 1` in floating point too (without it `exp(-1e-9)` rounds to 1 in f32), and
//!   `A_log` is clamped to ±30 before `exp` so that `Δ·A` is never `0·∞`.
//!   Defaults: `A_log = 0`, `B = I`, `dt_bias` solved so that `Ā = 0.447` on every channel.
//! - `add`: `h ← h + e`; when the recurrent width `r` differs from `d_model`, `e` is first
//!   projected by a learned `B` (`d × r`, identity-shaped init).
//! - `linear` (Huginn-style concat adapter): `h ← W [h; e] = W_h h + W_e e`, `W` of shape
//!   `(r + d, r)`. Initialised to `[I; I]` plus N(0, 0.02²) noise, i.e. it starts as the additive
//!   injection and is free to learn anything, its spectral norm included.
//!
//! - `none` (LoopFormer): no injection; the state starts as `e` (`B e` when `r ≠ d`).
//!
//! With `loop_conditioning = "time_step"` (LoopFormer, [`super::conditioning`]) the core's
//! blocks run under an adaptive norm of `c = TimeEmb(t) + StepEmb(Δt)`, computed per sequence
//! and loop: a [`LoopPlan`] either gives every sequence one schedule of step sizes
//! ([`LoopPlan::with_steps`]) or lets sequence `i` take `n_i` steps of `1/n_i`.
//! [`Looped::shortcut_loss`] is LoopFormer's training objective.
//!
//! The loop-invariant part of every injection (`Δ ⊙ B e`, `W_e e`, `B e`) is computed once per
//! forward pass, not once per loop; `counts.rs` counts it once too.
//!
//! # Depth per sequence and truncated backprop
//!
//! In training each sequence `i` of a batch draws its own depth `n_i` (Poisson(μ) clamped ≥ 1,
//! or fixed = μ) and gets gradients through its last `k_i = min(n_i, backprop_depth)` loops. The
//! batch runs `N = max n_i` loops with sequences *aligned at their end*: sequence `i` is active
//! in loops `j ≥ N − n_i` (0-based) and keeps its state unchanged (`h ← where(active, core(..), h)`)
//! before that, so it sees exactly `n_i` injections and core passes. Because every sequence ends
//! at loop `N − 1`, "the last `k_i` loops" of sequence `i` are loops `j ≥ N − k_i`, and the loops
//! that *no* sequence needs a gradient through are exactly `j < N − K` with
//! `K = max k_i = min(N, backprop_depth)`. Those run and then `detach()` the state, so no graph
//! survives them. Inside the graph region `j ≥ N − K`, a sequence with `k_i < K` has
//! `k_i = n_i` (its depth is below the backprop depth) and is inactive before `N − n_i`: its
//! masked-out loops pass its state through unchanged (gradient identity onto a state that is
//! still `h0`, a constant) and contribute exactly zero gradient to the core. So each sequence's
//! gradient is the one it would get alone with depth `n_i` truncated to `k_i` — which
//! `tests/model_looped.rs` checks against per-sequence runs.
//!
//! Evaluation runs the same number of loops `T` on every sequence (`T = mean_recurrence`, or a
//! test-time value), from an initial state drawn from a fixed seed, so it is deterministic.
//!
//! # Tied embeddings and the init (what used to stall)
//!
//! With `init = "gpt2"` (N(0, 0.02²) everywhere, `C = I`) a small tied model behind the prelude
//! norm stalls at the unigram loss (d = 32, 1+1+1 blocks, μ = 3, 200 steps, lr 1e-2: val 3.14
//! nats, the unigram entropy; untied 2.50). The cause: 0.02 is far below the width-scaled
//! √(2/(5d)) (0.11 at d = 32) for both the token embedding and the blocks' input projections,
//! so at init the blocks barely act and the only working path is embedding → prelude norm →
//! state → `C = I` → the tied head, i.e. the same embedding: every position predicts its own
//! input token. The next-token gradient then pulls each token's row towards its
//! predecessor's, the shared table collapses onto one direction (effective rank 1.9 over the
//! 40 most frequent bytes after 100 steps, against 15 with scaled-zero and 8 untied), and the
//! prelude norm strips the magnitudes that are left. Width-scaled embedding *and* input
//! projections together remove the stall (2.27 even with `C = I`; either alone: 3.06, 3.14);
//! an orthogonal `C` removes the self-prediction path (2.94 alone, 2.33 with the scaled
//! embedding). `init = "scaled-zero"` (the reference's) has all of these and trains tied
//! better than untied (2.29 vs 2.32). docs/recipe.md has the measurements.

use candle_core::{D, DType, Device, Result, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Poisson};

use super::conditioning::{AdaptiveNorm, Modulation, TimeStepEmbedding, sample_short_trajectory};
use super::config::{
    Arch, DepthSampling, Init, Injection, LoopConditioning, LoopGate, LoopedConfig, ModelConfig,
    StateInit,
};
use super::counts::head_dim;
use super::grad::param;
use super::io::{Io, ReadIn};
use super::layers::{BlockInit, BlockStack, LmHead, RmsNorm, Rope, init_std, project};
use super::loopus::{ExitHead, LoopStep, SelectiveGate, draw_supervised_loops, exits};
use super::params::{ParamRole, ParamStore, truncated_normal};
use super::{CausalLm, TrainLoss, lm_loss};

/// The diagonal injection's initial per-channel decay `Ā` (Parcae's default).
pub const DEFAULT_DECAY: f64 = 0.447;
/// Floor on the decay rate `Δ·A`, so `Ā ≤ exp(-1e-4) < 1` even in f32.
pub const MIN_DECAY_RATE: f64 = 1e-4;
/// `A_log` is clamped to this range before `exp`: `e^±30` is already far past any useful decay.
const A_LOG_LIMIT: f64 = 30.0;

/// How many loops each sequence of a batch runs, and through how many gradients flow.
#[derive(Clone, Debug, PartialEq)]
pub struct LoopPlan {
    depths: Vec<usize>,
    backprop_depth: usize,
    /// A schedule every sequence follows (conditioned models): `depths[i] = steps.len()` and
    /// loop `j` has step size `steps[j]`. `None`: sequence `i` takes `n_i` steps of `1/n_i`.
    steps: Option<Vec<f64>>,
}

impl LoopPlan {
    /// Sequence `i` runs `depths[i] ≥ 1` loops, the last `min(depths[i], backprop_depth)` with
    /// gradient.
    pub fn new(depths: Vec<usize>, backprop_depth: usize) -> Self {
        assert!(
            !depths.is_empty() && depths.iter().all(|&n| n >= 1),
            "loop depths must be ≥ 1: {depths:?}"
        );
        assert!(backprop_depth >= 1, "backprop_depth must be ≥ 1");
        LoopPlan {
            depths,
            backprop_depth,
            steps: None,
        }
    }

    /// Every sequence follows the schedule `steps` (one loop per step), the last
    /// `min(steps.len(), backprop_depth)` loops with gradient.
    pub fn with_steps(batch: usize, steps: Vec<f64>, backprop_depth: usize) -> Self {
        let mut plan = LoopPlan::new(vec![steps.len(); batch], backprop_depth);
        plan.steps = Some(steps);
        plan
    }

    /// Each sequence's `(t, Δt)` in loop `j` (see [`LoopPlan::with_steps`]); a sequence not yet
    /// active in loop `j` gets `(0, Δt of its first loop)`, which its mask discards.
    pub fn times_at(&self, j: usize) -> (Vec<f64>, Vec<f64>) {
        if let Some(steps) = &self.steps {
            let t: f64 = steps[..j].iter().sum();
            let n = self.depths.len();
            return (vec![t; n], vec![steps[j]; n]);
        }
        let total = self.total_loops();
        self.depths
            .iter()
            .map(|&d| {
                let local = (j + d).saturating_sub(total);
                (local as f64 / d as f64, 1.0 / d as f64)
            })
            .unzip()
    }

    /// Every sequence runs `loops` loops, all with gradient (evaluation, gradient checks).
    pub fn uniform(batch: usize, loops: usize) -> Self {
        LoopPlan::new(vec![loops; batch], loops.max(1))
    }

    /// Training depths for a batch, drawn from `rng` as `cfg.depth_sampling` says.
    pub fn sample(cfg: &LoopedConfig, batch: usize, rng: &mut StdRng) -> Result<Self> {
        let depths = match cfg.depth_sampling {
            DepthSampling::Fixed => vec![cfg.mean_recurrence; batch],
            DepthSampling::Poisson => {
                let poisson =
                    Poisson::new(cfg.mean_recurrence as f64).map_err(candle_core::Error::wrap)?;
                (0..batch)
                    .map(|_| (poisson.sample(rng) as usize).max(1))
                    .collect()
            }
        };
        Ok(LoopPlan::new(depths, cfg.backprop_depth()))
    }

    pub fn depths(&self) -> &[usize] {
        &self.depths
    }

    /// `N = max n_i`: loops the batch runs.
    pub fn total_loops(&self) -> usize {
        *self.depths.iter().max().expect("non-empty")
    }

    /// `N − K`, `K = min(N, backprop_depth)`: loops before this one run without a graph.
    pub fn first_graph_loop(&self) -> usize {
        let n = self.total_loops();
        n - n.min(self.backprop_depth)
    }

    /// `(batch, 1, 1)` u8 mask of the sequences active in loop `j`, or `None` when all are.
    fn active_mask(&self, j: usize, device: &Device) -> Result<Option<Tensor>> {
        let n = self.total_loops();
        if self.depths.iter().all(|&d| j >= n - d) {
            return Ok(None);
        }
        let mask: Vec<u8> = self.depths.iter().map(|&d| u8::from(j >= n - d)).collect();
        Ok(Some(Tensor::from_vec(
            mask,
            (self.depths.len(), 1, 1),
            device,
        )?))
    }
}

/// The injection's parameters.
enum InjectionLayer {
    /// `(r,)`, `(r,)`, `(d, r)`.
    Diagonal {
        a_log: Tensor,
        dt_bias: Tensor,
        b: Tensor,
    },
    /// `B` `(d, r)` only when `r ≠ d`.
    Add { b: Option<Tensor> },
    /// `W` `(r + d, r)`: rows `0..r` act on `h`, rows `r..r+d` on `e`.
    Linear { w: Tensor, r: usize },
    /// No injection: the state starts as `e` (`B e`, `B` `(d, r)`, only when `r ≠ d`).
    None { b: Option<Tensor> },
}

/// An injection with its loop-invariant part computed: `h ← state_map(h) + drive`; or, for
/// `injection = "none"`, the state's start `drive` and nothing per loop.
pub struct Injected {
    drive: Tensor,
    state_map: StateMap,
    per_loop: bool,
}

enum StateMap {
    Identity,
    /// Per-channel `Ā`, `(r,)`.
    Decay(Tensor),
    /// `W_h`, `(r, r)`.
    Matrix(Tensor),
}

impl Injected {
    fn apply(&self, h: &Tensor) -> Result<Tensor> {
        if !self.per_loop {
            return Ok(h.clone());
        }
        let mapped = match &self.state_map {
            StateMap::Identity => h.clone(),
            StateMap::Decay(decay) => h.broadcast_mul(decay)?,
            StateMap::Matrix(w_h) => project(h, w_h)?,
        };
        mapped + &self.drive
    }
}

/// `softplus(x) = log(1 + eˣ)`, from differentiable primitives, stable for large `|x|`.
pub(super) fn softplus(x: &Tensor) -> Result<Tensor> {
    x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
}

/// A `(rows, cols)` matrix with ones on the main diagonal, as row-major values.
fn identity_values(rows: usize, cols: usize) -> Vec<f64> {
    (0..rows * cols)
        .map(|k| f64::from(u8::from(k / cols == k % cols)))
        .collect()
}

impl InjectionLayer {
    /// `noise_std`: the linear injection's noise around `[I; I]`.
    fn new(
        params: &mut ParamStore,
        kind: Injection,
        d: usize,
        r: usize,
        noise_std: f64,
    ) -> Result<Self> {
        Ok(match kind {
            Injection::Diagonal => {
                // Ā = exp(-(softplus(dt)·e⁰ + ε)) = 0.447  ⇒  softplus(dt) = -ln 0.447 - ε.
                let delta = -DEFAULT_DECAY.ln() - MIN_DECAY_RATE;
                let dt0 = delta.exp_m1().ln(); // softplus⁻¹
                InjectionLayer::Diagonal {
                    a_log: params.constant(
                        "injection.A_log",
                        &[r],
                        vec![0.0; r],
                        ParamRole::Recurrent,
                    )?,
                    dt_bias: params.constant(
                        "injection.dt_bias",
                        &[r],
                        vec![dt0; r],
                        ParamRole::Recurrent,
                    )?,
                    b: params.constant(
                        "injection.B",
                        &[d, r],
                        identity_values(d, r),
                        ParamRole::Recurrent,
                    )?,
                }
            }
            Injection::None => InjectionLayer::None {
                b: (r != d)
                    .then(|| {
                        params.constant(
                            "injection.B",
                            &[d, r],
                            identity_values(d, r),
                            ParamRole::Recurrent,
                        )
                    })
                    .transpose()?,
            },
            Injection::Add => InjectionLayer::Add {
                b: (r != d)
                    .then(|| {
                        params.constant(
                            "injection.B",
                            &[d, r],
                            identity_values(d, r),
                            ParamRole::Recurrent,
                        )
                    })
                    .transpose()?,
            },
            Injection::Linear => {
                let mut values = identity_values(r, r);
                values.extend(identity_values(d, r));
                let noise = params.sample_normal(values.len(), noise_std)?;
                let values = values.iter().zip(noise).map(|(v, n)| v + n).collect();
                InjectionLayer::Linear {
                    w: params.constant("injection.W", &[r + d, r], values, ParamRole::Adapter)?,
                    r,
                }
            }
        })
    }

    /// The diagonal injection's `Ā = exp(-(softplus(dt_bias)·exp(A_log) + ε))`, `(r,)`.
    fn decay(a_log: &Tensor, dt_bias: &Tensor) -> Result<Tensor> {
        let a = a_log.clamp(-A_LOG_LIMIT, A_LOG_LIMIT)?.exp()?;
        let rate = ((softplus(dt_bias)? * a)? + MIN_DECAY_RATE)?;
        rate.neg()?.exp()
    }

    /// Precomputes the loop-invariant drive from `e` `(batch, time, d)`.
    fn prepare(&self, e: &Tensor) -> Result<Injected> {
        Ok(match self {
            InjectionLayer::Diagonal { a_log, dt_bias, b } => {
                let (a_log, dt_bias) = (param(a_log), param(dt_bias));
                Injected {
                    drive: project(e, &param(b))?.broadcast_mul(&softplus(&dt_bias)?)?,
                    state_map: StateMap::Decay(Self::decay(&a_log, &dt_bias)?),
                    per_loop: true,
                }
            }
            InjectionLayer::Add { b } | InjectionLayer::None { b } => Injected {
                drive: match b {
                    Some(b) => project(e, &param(b))?,
                    None => e.clone(),
                },
                state_map: StateMap::Identity,
                per_loop: matches!(self, InjectionLayer::Add { .. }),
            },
            InjectionLayer::Linear { w, r } => Injected {
                drive: project(e, &param(w).narrow(0, *r, w.dim(0)? - r)?)?,
                state_map: StateMap::Matrix(param(w).narrow(0, 0, *r)?),
                per_loop: true,
            },
        })
    }
}

/// What a forward pass returns: the logits and the recurrent state after the last loop.
pub struct LoopedOutput {
    /// `(batch, time, vocab)`.
    pub logits: Tensor,
    /// `(batch, time, r)`.
    pub state: Tensor,
    /// The final normalised hidden state the logits are read from, `(batch, time, d)`
    /// (what shortcut consistency aligns).
    pub hidden: Tensor,
}

/// LoopFormer's conditioning of the core: the time/step embedding and one adaptive norm per
/// core block (see [`super::conditioning`]).
struct CoreConditioning {
    embedding: TimeStepEmbedding,
    norms: Vec<AdaptiveNorm>,
}

impl CoreConditioning {
    /// Each core block's modulation in loop `j` of `plan`.
    fn modulations(&self, plan: &LoopPlan, j: usize) -> Result<Vec<Modulation>> {
        let (t, dt) = plan.times_at(j);
        let c = self.embedding.forward(&t, &dt)?;
        self.norms.iter().map(|n| n.forward(&c)).collect()
    }
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

pub struct Looped {
    read_in: ReadIn,
    prelude: BlockStack,
    prelude_norm: Option<RmsNorm>,
    injection: InjectionLayer,
    /// Blocks of width `r`.
    core: BlockStack,
    /// `loop_conditioning = "time_step"`: the core's time/step conditioning.
    conditioning: Option<CoreConditioning>,
    /// `loop_gate = "selective"`: LoopUS's gate between the core's output and the state.
    gate: Option<SelectiveGate>,
    /// `exit_head`: LoopUS's confidence head.
    exit_head: Option<ExitHead>,
    /// `C`, `(r, d)`: identity-shaped at init, so with `r = d` the coda first sees the state as is.
    readout: Tensor,
    coda: BlockStack,
    head: LmHead,
    rope: Rope,
    /// RoPE for the core's head width (`r / n_heads`).
    core_rope: Rope,
    cfg: LoopedConfig,
    recurrent: usize,
    /// σ of the initial state's truncated normal: the token embedding's init std.
    state_std: f64,
    /// Seeds the initial state of every evaluation forward pass (deterministic evals).
    eval_seed: u64,
    params: ParamStore,
}

impl Looped {
    /// Builds a looped model with weights drawn from `seed`, for sequences up to `max_seq_len`;
    /// `io` is a vocabulary size, or [`Io::Vectors`] for a linear read-in and scalar read-out.
    pub fn new(
        cfg: &ModelConfig,
        io: impl Into<Io>,
        max_seq_len: usize,
        seed: u64,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let Some(lc) = cfg.looped.as_ref().filter(|_| cfg.arch == Arch::Looped) else {
            candle_core::bail!(
                "Looped::new needs arch = looped with a LoopedConfig, got {:?}",
                cfg.arch
            )
        };
        if lc.n_core == 0 || lc.mean_recurrence == 0 {
            candle_core::bail!("a looped model needs n_core ≥ 1 and mean_recurrence ≥ 1");
        }
        let (d, r) = (cfg.d_model, lc.recurrent_width(cfg.d_model));
        let core_cfg = ModelConfig {
            d_model: r,
            ..cfg.clone()
        };
        // Residual-branch init scaled by the unrolled depth at the mean recurrence.
        let depth = lc.n_prelude + lc.n_core * lc.mean_recurrence + lc.n_coda;

        let io = io.into();
        let mut params = ParamStore::new(seed, dtype, device);
        let std = init_std(cfg.init, d);
        let read_in = ReadIn::new(&mut params, cfg, io)?;
        let prelude = BlockStack::new(&mut params, "prelude", cfg, lc.n_prelude, depth)?;
        let prelude_norm = lc
            .prelude_norm
            .then(|| RmsNorm::with_eps(&mut params, "prelude_norm", d, cfg.norm_eps))
            .transpose()?;
        let injection = InjectionLayer::new(&mut params, lc.injection, d, r, std)?;
        let conditioned = lc.loop_conditioning == LoopConditioning::TimeStep;
        // A conditioned core's gates start at zero (identity blocks); scaled-zero's zero output
        // projections on top would leave both factors of `g ⊙ W_out(..)` without a gradient, so
        // the conditioned core's output projections start orthogonal at the input scale.
        let core_init = match (conditioned, BlockInit::of(&core_cfg, depth)) {
            (true, init @ BlockInit { out_std: None, .. }) => BlockInit {
                out_std: Some(init.std),
                ..init
            },
            (_, init) => init,
        };
        let core = BlockStack::with_init(&mut params, "core", &core_cfg, lc.n_core, &core_init)?;
        let conditioning = if conditioned {
            Some(CoreConditioning {
                embedding: TimeStepEmbedding::new(&mut params, r, init_std(cfg.init, r))?,
                norms: (0..lc.n_core)
                    .map(|i| AdaptiveNorm::new(&mut params, &format!("core.{i}.ada_norm"), r))
                    .collect::<Result<_>>()?,
            })
        } else {
            None
        };
        let gate = (lc.loop_gate == LoopGate::Selective)
            .then(|| SelectiveGate::new(&mut params, r, init_std(cfg.init, r)))
            .transpose()?;
        let exit_head = lc
            .exit_head
            .then(|| ExitHead::new(&mut params, r, cfg.norm_eps))
            .transpose()?;
        // scaled-zero: orthogonal with the model width's entry scale (× √(2/5) when r = d). An
        // identity C hands the normalised input embedding straight to a tied head, which
        // collapses the shared embedding (see the module docs).
        let readout = match cfg.init {
            Init::ScaledZero => {
                params.orthogonal("readout.C", (r, d), std, ParamRole::Recurrent)?
            }
            Init::Gpt2 => params.constant(
                "readout.C",
                &[r, d],
                identity_values(r, d),
                ParamRole::Recurrent,
            )?,
        };
        let coda = BlockStack::new(&mut params, "coda", cfg, lc.n_coda, depth)?;
        let head = LmHead::new(&mut params, cfg, io)?;
        Ok(Looped {
            read_in,
            prelude,
            prelude_norm,
            injection,
            core,
            conditioning,
            gate,
            exit_head,
            readout,
            coda,
            head,
            rope: Rope::with_base(head_dim(cfg), max_seq_len, cfg.rope_base, dtype, device)?,
            core_rope: Rope::with_base(
                head_dim(&core_cfg),
                max_seq_len,
                cfg.rope_base,
                dtype,
                device,
            )?,
            cfg: lc.clone(),
            recurrent: r,
            state_std: std,
            eval_seed: seed ^ 0x5eed_0fe7_a1a1,
            params,
        })
    }

    pub fn config(&self) -> &LoopedConfig {
        &self.cfg
    }

    /// `h0` `(batch, time, r)`: a truncated normal (±3σ) drawn from `rng`, σ the token
    /// embedding's init std (the reference's "like-init"), or zeros.
    pub fn initial_state(&self, batch: usize, time: usize, rng: &mut StdRng) -> Result<Tensor> {
        let (dtype, device) = (self.params.dtype(), self.params.device());
        let shape = (batch, time, self.recurrent);
        match self.cfg.state_init {
            StateInit::Zero => Tensor::zeros(shape, dtype, device),
            StateInit::Random => {
                let values =
                    truncated_normal(rng, batch * time * self.recurrent, self.state_std, 3.0);
                Tensor::from_vec(values, shape, device)?.to_dtype(dtype)
            }
        }
    }

    /// The whole network on `input_ids` `(batch, time)`, looping as `plan` says from state `h0`.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        plan: &LoopPlan,
        h0: &Tensor,
    ) -> Result<LoopedOutput> {
        Ok(self.forward_traced(input_ids, plan, h0)?.0)
    }

    /// [`Looped::forward`], also returning the last loop's core input and proposal.
    fn forward_traced(
        &self,
        input_ids: &Tensor,
        plan: &LoopPlan,
        h0: &Tensor,
    ) -> Result<(LoopedOutput, LoopStep)> {
        let (b, _) = batch_time(input_ids)?;
        assert_eq!(plan.depths().len(), b, "one loop depth per sequence");
        let injected = self.encode(input_ids)?;
        let (h, last) = self.recur_traced(&injected, plan, h0)?;
        Ok((self.decode(h)?, last))
    }

    /// The training loss along `plan` from `h0`: the LM loss, plus the confidence head's loss
    /// at the last loop when the model has one (then the reported loss is the LM loss alone).
    pub fn supervised_loss(
        &self,
        input_ids: &Tensor,
        targets: &Tensor,
        plan: &LoopPlan,
        h0: &Tensor,
    ) -> Result<TrainLoss> {
        let (out, last) = self.forward_traced(input_ids, plan, h0)?;
        let lm = lm_loss(&out.logits, targets)?;
        let state_norm = Some(state_norm(&out.state)?);
        Ok(match &self.exit_head {
            None => TrainLoss {
                loss: lm,
                state_norm,
                reported: None,
            },
            Some(head) => TrainLoss {
                reported: Some(lm.to_dtype(DType::F64)?.to_scalar::<f64>()?),
                loss: (&lm + head.loss(&last, &out.logits, targets)?)?,
                state_norm,
            },
        })
    }

    /// LoopUS's random deep supervision: one loop count for the whole batch drawn from `rng`
    /// (uniform in `1..=2μ − 1`), then `h0`; the loss is taken after that many loops, with
    /// gradient through the last `min(k, backprop_depth)` (see `model::loopus`).
    pub fn deep_supervision_train_loss(
        &self,
        input_ids: &Tensor,
        targets: &Tensor,
        rng: &mut StdRng,
    ) -> Result<TrainLoss> {
        let (b, t) = input_ids.dims2()?;
        let k = draw_supervised_loops(self.cfg.mean_recurrence, rng);
        let plan = LoopPlan::new(vec![k; b], self.cfg.backprop_depth());
        let h0 = self.initial_state(b, t, rng)?;
        self.supervised_loss(input_ids, targets, &plan, &h0)
    }

    /// Early exit on `input_ids` (LoopUS): up to `max_loops` loops, each token stopping after
    /// the first loop whose confidence exceeds `threshold` (its state frozen from then on), all
    /// read out once at the end. Returns the mean cross-entropy and the mean loops per token;
    /// an error when the model has no confidence head.
    pub fn exit_loss(
        &self,
        input_ids: &Tensor,
        targets: &Tensor,
        max_loops: usize,
        threshold: f64,
    ) -> Result<(f64, f64)> {
        let Some(head) = &self.exit_head else {
            candle_core::bail!("early exit needs a confidence head (model.exit_head = true)")
        };
        let (b, t) = input_ids.dims2()?;
        let h0 = self.initial_state(b, t, &mut StdRng::seed_from_u64(self.eval_seed))?;
        let plan = LoopPlan::uniform(b, max_loops);
        let injected = self.encode(input_ids)?;
        let mut h = Self::start_state(&injected, &h0);
        let device = h.device().clone();
        let mut active = Tensor::ones((b, t), DType::U8, &device)?;
        let mut loops_used = Tensor::zeros((b, t), DType::F64, &device)?;
        for j in 0..max_loops {
            let (next, step) = self.loop_once(&injected, &plan, j, &h)?;
            let keep = active.unsqueeze(D::Minus1)?.broadcast_as(h.shape())?;
            h = keep.where_cond(&next, &h)?;
            loops_used = (loops_used + active.to_dtype(DType::F64)?)?;
            let exiting = exits(&head.confidence(&step)?, threshold)?;
            active = (active.to_dtype(DType::F64)? * (1.0 - exiting.to_dtype(DType::F64)?)?)?
                .to_dtype(DType::U8)?;
        }
        let loss = lm_loss(&self.decode(h)?.logits, targets)?;
        Ok((
            loss.to_dtype(DType::F64)?.to_scalar::<f64>()?,
            loops_used.mean_all()?.to_scalar::<f64>()?,
        ))
    }

    /// Whether the model has a confidence head (`exit_head`).
    pub fn has_exit_head(&self) -> bool {
        self.exit_head.is_some()
    }

    /// Embedding and prelude, once: `e` and the injection's loop-invariant part.
    pub fn encode(&self, input_ids: &Tensor) -> Result<Injected> {
        let x = self.read_in.forward(input_ids)?;
        let x = self.prelude.forward(&x, &self.rope)?;
        let e = match &self.prelude_norm {
            Some(norm) => norm.forward(&x)?,
            None => x,
        };
        self.injection.prepare(&e)
    }

    /// The recurrence from `h0` (or, without an injection, from `e`); see the module docs for
    /// the masking and the detach point.
    pub fn recur(&self, injected: &Injected, plan: &LoopPlan, h0: &Tensor) -> Result<Tensor> {
        Ok(self.recur_traced(injected, plan, h0)?.0)
    }

    /// [`Looped::recur`], also returning the last loop's core input and proposal.
    fn recur_traced(
        &self,
        injected: &Injected,
        plan: &LoopPlan,
        h0: &Tensor,
    ) -> Result<(Tensor, LoopStep)> {
        let mut h = Self::start_state(injected, h0);
        let first_graph_loop = plan.first_graph_loop();
        let mut last = None;
        for j in 0..plan.total_loops() {
            let (stepped, step) = self.loop_once(injected, plan, j, &h)?;
            h = match plan.active_mask(j, h.device())? {
                Some(mask) => mask.broadcast_as(h.shape())?.where_cond(&stepped, &h)?,
                None => stepped,
            };
            if j < first_graph_loop {
                h = h.detach();
            }
            last = Some(step);
        }
        Ok((h, last.expect("a plan runs at least one loop")))
    }

    /// The state before the first loop: `h0`, or `e` itself without a per-loop injection.
    fn start_state(injected: &Injected, h0: &Tensor) -> Tensor {
        if injected.per_loop {
            h0.clone()
        } else {
            injected.drive.clone()
        }
    }

    /// Loop `j` of `plan` on state `h`: inject, run the core, gate. Returns the new state and
    /// the core's input and (ungated) output.
    fn loop_once(
        &self,
        injected: &Injected,
        plan: &LoopPlan,
        j: usize,
        h: &Tensor,
    ) -> Result<(Tensor, LoopStep)> {
        let input = injected.apply(h)?;
        let proposal = match &self.conditioning {
            None => self.core.forward(&input, &self.core_rope)?,
            Some(cond) => {
                self.core
                    .forward_modulated(&input, &self.core_rope, &cond.modulations(plan, j)?)?
            }
        };
        let next = match &self.gate {
            Some(gate) => gate.forward(&input, &proposal)?,
            None => proposal.clone(),
        };
        Ok((next, LoopStep { input, proposal }))
    }

    /// Readout, coda, final norm and head, once, on the state after the last loop.
    pub fn decode(&self, h: Tensor) -> Result<LoopedOutput> {
        let x = self
            .coda
            .forward(&project(&h, &param(&self.readout))?, &self.rope)?;
        let (logits, hidden) = self
            .head
            .forward_with_hidden(&x, self.read_in.tied_table())?;
        Ok(LoopedOutput {
            logits,
            state: h,
            hidden,
        })
    }

    /// Whether the core is conditioned on time and step (LoopFormer).
    pub fn is_conditioned(&self) -> bool {
        self.conditioning.is_some()
    }

    /// Shortcut-consistency training's loss (LoopFormer): the long trajectory (`L =
    /// mean_recurrence` steps of `1/L`) and the `short` one share the prelude and `h0`; the loss
    /// is `CE_long + λ_ce·CE_short + λ_mse·MSE(stopgrad(h_long), h_short)` on the final
    /// normalised hidden state, so the consistency term moves only the short trajectory.
    /// Each trajectory has gradient through its last `backprop_depth` loops.
    #[allow(clippy::too_many_arguments)]
    pub fn shortcut_loss(
        &self,
        input_ids: &Tensor,
        targets: &Tensor,
        h0: &Tensor,
        short: Vec<f64>,
        lambda_ce: f64,
        lambda_mse: f64,
    ) -> Result<ShortcutLoss> {
        let (b, _) = batch_time(input_ids)?;
        let l = self.cfg.mean_recurrence;
        let bwd = self.cfg.backprop_depth();
        let injected = self.encode(input_ids)?;
        let long_plan = LoopPlan::with_steps(b, vec![1.0 / l as f64; l], bwd);
        let long = self.decode(self.recur(&injected, &long_plan, h0)?)?;
        let short =
            self.decode(self.recur(&injected, &LoopPlan::with_steps(b, short, bwd), h0)?)?;
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

    /// [`Looped::shortcut_loss`] with this step's draws from `rng`: `h0`, then the short
    /// trajectory. The reported loss is `CE_long` (comparable with a plain run's), the
    /// differentiated one the whole objective.
    pub fn shortcut_train_loss(
        &self,
        input_ids: &Tensor,
        targets: &Tensor,
        rng: &mut StdRng,
        lambda_ce: f64,
        lambda_mse: f64,
    ) -> Result<TrainLoss> {
        let (b, t) = batch_time(input_ids)?;
        let h0 = self.initial_state(b, t, rng)?;
        let short = sample_short_trajectory(self.cfg.mean_recurrence, rng);
        let out = self.shortcut_loss(input_ids, targets, &h0, short, lambda_ce, lambda_mse)?;
        Ok(TrainLoss {
            reported: Some(out.ce_long.to_dtype(DType::F64)?.to_scalar::<f64>()?),
            loss: out.total,
            state_norm: Some(state_norm(&out.long.state)?),
        })
    }

    /// Yang et al.'s objective: every sequence runs `loops` loops from `h0`; the loss is the mean
    /// of the losses of the outputs after each of the last `last` loops (each decoded). Gradients
    /// flow through the last `max(last, backprop_depth)` loops; the loops before those run
    /// without a graph. (Truncating at the window itself, `backprop_depth = last`, from the first
    /// step stalls the in-context regression model: docs/reasoning-tasks.md.)
    pub fn last_loops_loss(
        &self,
        input_ids: &Tensor,
        targets: &Tensor,
        h0: &Tensor,
        loops: usize,
        last: usize,
    ) -> Result<(Tensor, Tensor)> {
        if last == 0 || last > loops || self.conditioning.is_some() {
            candle_core::bail!("last_loops_loss needs 1 ≤ last ≤ loops and an unconditioned core");
        }
        let injected = self.encode(input_ids)?;
        let mut h = if injected.per_loop {
            h0.clone()
        } else {
            injected.drive.clone()
        };
        let mut losses = Vec::with_capacity(last);
        let graph_loops = self.cfg.backprop_depth().max(last);
        for j in 0..loops {
            h = self.core.forward(&injected.apply(&h)?, &self.core_rope)?;
            if j + graph_loops < loops {
                h = h.detach();
            }
            if j + last >= loops {
                losses.push(lm_loss(&self.decode(h.clone())?.logits, targets)?);
            }
        }
        let total = Tensor::stack(&losses, 0)?.mean_all()?;
        Ok((total, h))
    }

    /// Logits along the schedule `steps` on every sequence, from the evaluation state.
    pub fn logits_with_steps(&self, input_ids: &Tensor, steps: Vec<f64>) -> Result<Tensor> {
        let (b, t) = batch_time(input_ids)?;
        let h0 = self.initial_state(b, t, &mut StdRng::seed_from_u64(self.eval_seed))?;
        let plan = LoopPlan::with_steps(b, steps, self.cfg.backprop_depth());
        Ok(self.forward(input_ids, &plan, &h0)?.logits)
    }

    /// Mean cross-entropy along the schedule `steps`.
    pub fn loss_with_steps(
        &self,
        input_ids: &Tensor,
        targets: &Tensor,
        steps: Vec<f64>,
    ) -> Result<Tensor> {
        lm_loss(&self.logits_with_steps(input_ids, steps)?, targets)
    }

    /// Logits with the core applied `loops` times on every sequence, from the evaluation state.
    pub fn logits_with_loops(&self, input_ids: &Tensor, loops: usize) -> Result<Tensor> {
        let (b, t) = batch_time(input_ids)?;
        let h0 = self.initial_state(b, t, &mut StdRng::seed_from_u64(self.eval_seed))?;
        Ok(self
            .forward(input_ids, &LoopPlan::uniform(b, loops), &h0)?
            .logits)
    }

    /// Mean cross-entropy at `loops` loops.
    pub fn loss_with_loops(
        &self,
        input_ids: &Tensor,
        targets: &Tensor,
        loops: usize,
    ) -> Result<Tensor> {
        lm_loss(&self.logits_with_loops(input_ids, loops)?, targets)
    }

    /// The diagonal injection's per-channel `Ā` `(r,)`; `None` for the other injections.
    pub fn injection_decay(&self) -> Result<Option<Tensor>> {
        match &self.injection {
            InjectionLayer::Diagonal { a_log, dt_bias, .. } => {
                Ok(Some(InjectionLayer::decay(a_log, dt_bias)?))
            }
            _ => Ok(None),
        }
    }

    /// Spectral norm of the injection's map on the state: `max Ā` (diagonal), 1 (add), or the
    /// largest singular value of `W_h` by power iteration (linear).
    pub fn injection_spectral_norm(&self) -> Result<f64> {
        match &self.injection {
            InjectionLayer::Diagonal { a_log, dt_bias, .. } => {
                InjectionLayer::decay(a_log, dt_bias)?
                    .max(0)?
                    .to_dtype(DType::F64)?
                    .to_scalar::<f64>()
            }
            InjectionLayer::Add { .. } | InjectionLayer::None { .. } => Ok(1.0),
            InjectionLayer::Linear { w, r } => {
                let w_h = w.narrow(0, 0, *r)?.to_dtype(DType::F64)?.to_vec2::<f64>()?;
                Ok(largest_singular_value(&w_h))
            }
        }
    }
}

/// `(batch, time)` of an input: token ids `(batch, time)` or vectors `(batch, time, width)`.
fn batch_time(input: &Tensor) -> Result<(usize, usize)> {
    Ok((input.dim(0)?, input.dim(1)?))
}

/// Mean per-token L2 norm of a state `(batch, time, r)`.
pub fn state_norm(h: &Tensor) -> Result<f64> {
    h.detach()
        .sqr()?
        .sum(D::Minus1)?
        .sqrt()?
        .mean_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()
}

/// Largest singular value of a square matrix by power iteration on `MᵀM` (host f64; the
/// matrices here are at most a few hundred wide and this runs only at logged steps).
pub fn largest_singular_value(m: &[Vec<f64>]) -> f64 {
    let n = m.len();
    if n == 0 {
        return 0.0;
    }
    let cols = m[0].len();
    // A fixed, generic start vector: deterministic, and not orthogonal to the top direction
    // except on a set of measure zero.
    let mut v: Vec<f64> = (0..cols).map(|i| 1.0 + 0.01 * i as f64).collect();
    let mut sigma = 0.0;
    for _ in 0..500 {
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm == 0.0 {
            return 0.0;
        }
        v.iter_mut().for_each(|x| *x /= norm);
        let mv: Vec<f64> = m
            .iter()
            .map(|row| row.iter().zip(&v).map(|(a, b)| a * b).sum())
            .collect();
        let next_sigma = mv.iter().map(|x| x * x).sum::<f64>().sqrt();
        v = (0..cols)
            .map(|j| (0..n).map(|i| m[i][j] * mv[i]).sum())
            .collect();
        if (next_sigma - sigma).abs() <= 1e-12 * next_sigma.max(1e-300) {
            return next_sigma;
        }
        sigma = next_sigma;
    }
    sigma
}

impl CausalLm for Looped {
    /// Logits at the training mean depth, `mean_recurrence` loops.
    fn logits(&self, input_ids: &Tensor) -> Result<Tensor> {
        self.logits_with_loops(input_ids, self.cfg.mean_recurrence)
    }

    /// Per-sequence sampled depths and a fresh initial state, both from `rng`.
    fn train_loss(
        &self,
        input_ids: &Tensor,
        targets: &Tensor,
        rng: &mut StdRng,
    ) -> Result<TrainLoss> {
        let (b, t) = batch_time(input_ids)?;
        let plan = LoopPlan::sample(&self.cfg, b, rng)?;
        let h0 = self.initial_state(b, t, rng)?;
        self.supervised_loss(input_ids, targets, &plan, &h0)
    }

    fn as_looped(&self) -> Option<&Looped> {
        Some(self)
    }

    fn params(&self) -> &ParamStore {
        &self.params
    }
}
