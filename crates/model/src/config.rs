//! The model's shape: everything a sweep may vary about the network itself.
//!
//! One struct covers the GPT baseline and the looped (Parcae) model; fields that only the looped
//! model reads live in `LoopedConfig`, absent for a GPT, so a GPT run's canonical form (and so its
//! run key) never changes when looped options are added.

use serde::{Deserialize, Serialize};

/// Which network to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// A standard pre-norm GPT of `n_layers` blocks.
    Gpt,
    /// Prelude → recurrent core applied T times → coda (Parcae and prior looped baselines).
    Looped,
}

/// The MLP inside every block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mlp {
    /// `W2 · relu(W1 x)²`, the Parcae / modded-nanoGPT choice.
    Relu2,
    /// `W2 · gelu(W1 x)` (tanh approximation).
    Gelu,
    /// `W2 · (silu(W1 x) ⊙ W3 x)`, hidden width 2/3 of the others' so parameters match.
    Swiglu,
}

/// How the looped model mixes the prelude's output `e` into the recurrent state `h` each loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Injection {
    /// Parcae: `h ← exp(-Δ·A) ⊙ h + Δ ⊙ (B e)`; spectral norm < 1 by construction.
    Diagonal,
    /// `h ← h + e`.
    Add,
    /// Concat adapter `h ← W [h; e]` (Huginn style); spectral norm unconstrained.
    Linear,
    /// No injection (LoopFormer): the state starts as `e` (`B e` when the recurrent width
    /// differs) and each loop only applies the core; `state_init` is not used.
    None,
}

/// What each loop of the core is told about where it is on its trajectory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoopConditioning {
    /// Nothing: every loop applies the same function (Parcae and the other looped baselines).
    #[default]
    None,
    /// LoopFormer: each loop sees its normalised time `t ∈ [0, 1)` and step size `Δt`
    /// (`c = TimeEmb(t) + StepEmb(Δt)`), and every core block scales and gates its two branches
    /// by an adaptive norm of `c` (see `model::conditioning`).
    TimeStep,
}

impl LoopConditioning {
    pub fn is_none(&self) -> bool {
        *self == LoopConditioning::None
    }
}

/// What stands between the core's output and the recurrent state (LoopUS).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoopGate {
    /// The core's output is the new state (Parcae and the other looped models).
    #[default]
    None,
    /// LoopUS's input-dependent selective gate: `h ← ḡ ⊙ core(x) + (1 − ḡ) ⊙ x` with a
    /// per-token, per-channel `ḡ ∈ (0, 1)` computed from the update `core(x) − x` (see
    /// `model::loopus`).
    Selective,
}

impl LoopGate {
    pub fn is_none(&self) -> bool {
        *self == LoopGate::None
    }
}

/// Which blocks of a GPT a recast looped model takes as its core (LoopUS).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RecastSplit {
    /// `"auto"`: `n_core` consecutive blocks chosen from the parent's representation dynamics
    /// on validation data (`model::recast`).
    Auto(AutoSplit),
    /// `[a, b]`: prelude = blocks `[0, a)`, core = `[a, b)`, coda = `[b, n_layers)`.
    Blocks([usize; 2]),
}

/// The one word `"auto"` of [`RecastSplit::Auto`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AutoSplit {
    Auto,
}

/// How many loops each training sequence runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DepthSampling {
    /// Per sequence, total depth `n ~ Poisson(mean_recurrence)`, at least 1.
    Poisson,
    /// Every sequence runs exactly `mean_recurrence` loops.
    Fixed,
}

/// How the recurrent state starts before the first loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateInit {
    /// A fresh truncated normal (±3σ) every forward pass, σ the token embedding's init std (the
    /// reference's "like-init").
    Random,
    /// All zeros.
    Zero,
}

/// How the weights are initialised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Init {
    /// The Parcae reference's "scaled-zero": every matrix, the token embedding included, is a
    /// (truncated) random orthogonal matrix with entry scale σ = √(2/(5·width)); the attention
    /// output and MLP down projections start at zero, so every block is the identity at init;
    /// the looped readout `C` is orthogonal × √(2/5).
    ScaledZero,
    /// GPT-2 style: N(0, 0.02²) everywhere, output projections scaled by 1/√(2·depth), `C = I`.
    /// Far below 1/√d at the widths of these sweeps; tied looped models stall with it (see
    /// the looped model's docs).
    Gpt2,
}

/// How width enters the initialisation, the learning rates and the forward pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parametrization {
    /// The standard parametrization: every parameter at the run's learning rate, attention
    /// logits `q·k/√d_head`, the readout unscaled.
    #[default]
    Standard,
    /// The maximal-update parametrization for Adam (Yang et al. 2022, "Tensor Programs V"),
    /// relative to a base width `model.mup_base_width` at which it equals the standard one.
    /// With `m = d_model / mup_base_width`: hidden matrices (attention, MLP, the recurrence's
    /// `B`, `C` and the linear injection's `W`) init ∝ 1/√fan_in and Adam lr ÷ m; the token
    /// embedding (and an untied head) init at the base width's scale, Adam lr unchanged; the
    /// logits × 1/m (a tied head included: the table keeps its lr, the logits shrink);
    /// attention logits `q·k · √d_head,base / d_head`, i.e. ∝ 1/d_head (see `docs/mup.md`).
    Mup,
}

impl Parametrization {
    pub fn is_standard(&self) -> bool {
        *self == Parametrization::Standard
    }
}

/// Options read only by `arch = "looped"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoopedConfig {
    pub n_prelude: usize,
    pub n_core: usize,
    pub n_coda: usize,
    /// Width of the recurrent state; `None` means `d_model`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recurrent_dim: Option<usize>,
    pub injection: Injection,
    pub mean_recurrence: usize,
    /// Loops with gradient (truncated backprop); `None` means ⌈mean_recurrence / 2⌉.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backprop_depth: Option<usize>,
    pub depth_sampling: DepthSampling,
    pub state_init: StateInit,
    pub prelude_norm: bool,
    /// Loop counts at which validation loss is measured after training.
    pub test_loops: Vec<usize>,
    /// Time and step conditioning of the core (LoopFormer); absent from the canonical form
    /// (and so from run keys) when `none`.
    #[serde(skip_serializing_if = "LoopConditioning::is_none")]
    pub loop_conditioning: LoopConditioning,
    /// LoopUS's selective gate between the core and the state; absent from the canonical form
    /// (and run keys) when `none`.
    #[serde(skip_serializing_if = "LoopGate::is_none")]
    pub loop_gate: LoopGate,
    /// LoopUS's confidence head for early exit (`model::loopus`); absent when off.
    #[serde(skip_serializing_if = "is_false")]
    pub exit_head: bool,
    /// Confidence thresholds at which early exit is evaluated after training (needs
    /// `exit_head`); absent when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exit_thresholds: Vec<f64>,
    /// Where a run recast from a GPT (`recast_from`) splits the parent's blocks; `None` means
    /// `"auto"`. Absent from the canonical form when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recast_split: Option<RecastSplit>,
    /// MELT (a model with `melt_from`): the chunk length of its training forward pass and of
    /// its prefill (`model::melt`); absent: [`DEFAULT_MELT_CHUNK`]. Absent from the canonical
    /// form when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub melt_chunk: Option<usize>,
}

/// MELT's chunk length when `melt_chunk` is unset.
pub const DEFAULT_MELT_CHUNK: usize = 16;

fn is_false(b: &bool) -> bool {
    !*b
}

impl LoopedConfig {
    /// MELT's chunk length: `melt_chunk`, else [`DEFAULT_MELT_CHUNK`].
    pub fn melt_chunk(&self) -> usize {
        self.melt_chunk.unwrap_or(DEFAULT_MELT_CHUNK).max(1)
    }

    /// Loops with gradient per sequence at most: `backprop_depth`, else ⌈mean_recurrence / 2⌉.
    pub fn backprop_depth(&self) -> usize {
        self.backprop_depth
            .unwrap_or(self.mean_recurrence.div_ceil(2))
            .max(1)
    }

    /// The blocks with weights of their own: prelude, core and coda.
    pub fn blocks(&self) -> usize {
        self.n_prelude + self.n_core + self.n_coda
    }

    /// Width of the recurrent state for a model of width `d_model`.
    pub fn recurrent_width(&self, d_model: usize) -> usize {
        self.recurrent_dim.unwrap_or(d_model)
    }
}

impl Default for LoopedConfig {
    fn default() -> Self {
        LoopedConfig {
            n_prelude: 2,
            n_core: 2,
            n_coda: 2,
            recurrent_dim: None,
            injection: Injection::Diagonal,
            mean_recurrence: 4,
            backprop_depth: None,
            depth_sampling: DepthSampling::Poisson,
            state_init: StateInit::Random,
            prelude_norm: true,
            test_loops: vec![1, 2, 4, 8, 16],
            loop_conditioning: LoopConditioning::None,
            loop_gate: LoopGate::None,
            exit_head: false,
            exit_thresholds: Vec::new(),
            recast_split: None,
            melt_chunk: None,
        }
    }
}

/// The `[model]` table of a sweep, fully resolved for one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    pub arch: Arch,
    pub d_model: usize,
    pub n_heads: usize,
    /// Blocks of the GPT (ignored by the looped model, which counts prelude/core/coda).
    pub n_layers: usize,
    pub mlp: Mlp,
    /// Hidden width of the MLP as a multiple of `d_model`.
    pub mlp_ratio: usize,
    pub tie_embeddings: bool,
    pub init: Init,
    /// RoPE's base (wavelength scale); the reference uses 50 000, GPT-NeoX/LLaMA 10 000.
    pub rope_base: f64,
    /// ε of every RMSNorm.
    pub norm_eps: f64,
    /// Whether the QK-norm has learnable per-channel gains (the reference's has none).
    pub qk_norm_gain: bool,
    /// LoopUS recasting (looped runs): start from the finished run of this `[[variants]]` name,
    /// a GPT with the same values on the axes both share, its blocks split into prelude, core
    /// and coda (`model.recast_split`). Absent from the canonical form when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recast_from: Option<String>,
    /// MELT (looped runs): post-train the finished looped run of this `[[variants]]` name (the
    /// same shape, on the axes both share) into one KV cache per core block shared by every
    /// loop (`model::melt`). Absent from the canonical form when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub melt_from: Option<String>,
    /// `"standard"` or `"mup"`; absent from the canonical form (and run keys) when standard.
    #[serde(skip_serializing_if = "Parametrization::is_standard")]
    pub parametrization: Parametrization,
    /// μP's base width: the `d_model` at which μP equals the standard parametrization (its
    /// learning rates are the ones tuned there). Required by, and read only under,
    /// `parametrization = "mup"`; dropped from standard runs, so absent from their run keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mup_base_width: Option<usize>,
    /// Present only for `arch = "looped"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub looped: Option<LoopedConfig>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            arch: Arch::Gpt,
            d_model: 64,
            n_heads: 4,
            n_layers: 2,
            mlp: Mlp::Relu2,
            mlp_ratio: 4,
            tie_embeddings: true,
            init: Init::ScaledZero,
            rope_base: 50_000.0,
            norm_eps: 1e-5,
            qk_norm_gain: false,
            recast_from: None,
            melt_from: None,
            parametrization: Parametrization::Standard,
            mup_base_width: None,
            looped: None,
        }
    }
}

impl ModelConfig {
    /// The blocks with weights of their own, as the store's `runs.n_layers` counts them: a
    /// looped model's prelude, core and coda blocks ([`LoopedConfig::blocks`]), else `n_layers`.
    pub fn distinct_blocks(&self) -> usize {
        match &self.looped {
            Some(l) if self.arch == Arch::Looped => l.blocks(),
            _ => self.n_layers,
        }
    }

    /// μP's width multiplier `m = d_model / mup_base_width`; `None` under the standard
    /// parametrization (and under μP without a base width, which validation refuses).
    /// [`ModelConfig::mup_width_mult`] for building a model: an error for `"mup"` without a
    /// positive base width (which would otherwise build the standard network silently).
    pub fn checked_mup_width_mult(&self) -> Result<Option<f64>, String> {
        match (self.parametrization, self.mup_base_width) {
            (Parametrization::Mup, None | Some(0)) => Err(
                "parametrization = \"mup\" needs mup_base_width ≥ 1 (the width at which μP equals the standard parametrization)".into(),
            ),
            _ => Ok(self.mup_width_mult()),
        }
    }

    pub fn mup_width_mult(&self) -> Option<f64> {
        match (self.parametrization, self.mup_base_width) {
            (Parametrization::Mup, Some(base)) if base > 0 => {
                Some(self.d_model as f64 / base as f64)
            }
            _ => None,
        }
    }
}

/// Width of one attention head.
pub fn head_dim(cfg: &ModelConfig) -> usize {
    cfg.d_model / cfg.n_heads
}

/// Hidden width of one block's MLP.
///
/// SwiGLU has three matrices instead of two, so its width is 2/3 of the others', rounded to
/// the nearest integer, which keeps its parameter count within one row of theirs.
pub fn mlp_hidden_width(cfg: &ModelConfig) -> usize {
    let hidden = cfg.mlp_ratio * cfg.d_model;
    match cfg.mlp {
        Mlp::Relu2 | Mlp::Gelu => hidden,
        Mlp::Swiglu => ((2 * hidden) as f64 / 3.0).round() as usize,
    }
}
