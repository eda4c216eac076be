//! The differentiable building blocks of every network's body: RMSNorm, rotary position
//! embeddings, causal self-attention with QK-norm, the three MLPs, the pre-norm residual block
//! (plain, or under a [`Modulation`] of its norms and residual branches) and a stack of blocks,
//! plus softplus and the losses. The two ends (embedding, LM head) are [`super::io`]'s.
//!
//! The element-wise work and attention go through [`super::ops`], which runs our fused kernels
//! on the CPU and candle's compositions elsewhere; everything else is candle primitives with a
//! backward pass. candle-nn's fused `rms_norm`, `softmax_last_dim` and `rope*` (and its
//! `RmsNorm` module) are forward-only and would silently cut the gradient, so none of them is
//! used; the gradient checks in `tests/model_gradcheck.rs` guard this.
//!
//! Shapes: the residual stream is `(batch, time, d_model)`; weight matrices are stored
//! `(in, out)` so a projection is a single `x · W` on the flattened `(batch·time, in)` input.

use std::sync::Arc;

use candle_core::{D, DType, Device, Result, Tensor};

use super::config::{Init, Mlp, ModelConfig, head_dim, mlp_hidden_width};
use super::fused::RopeTables;
use super::fused::composed;
use super::grad::param;
use super::ops::{self, RopeAngles};
use super::params::{ParamRole, ParamStore};

/// Standard deviation of every weight matrix at initialisation under `init = "gpt2"`.
pub const INIT_STD: f64 = 0.02;

/// The entry scale of a width-`width` model's matrices (and token embedding) at init:
/// √(2/(5·width)) for scaled-zero (Le Scao et al.; the Parcae reference), 0.02 for gpt2.
pub fn init_std(init: Init, width: usize) -> f64 {
    match init {
        Init::ScaledZero => (2.0 / (5.0 * width as f64)).sqrt(),
        Init::Gpt2 => INIT_STD,
    }
}

/// The entry scale of a block's hidden matrices for `cfg`: [`init_std`] at `d_model`, which is
/// already ∝ 1/√fan_in under scaled-zero; gpt2's fixed 0.02 becomes 0.02·√(base/d_model)
/// under μP, so it too scales as 1/√fan_in and equals 0.02 at the base width.
pub fn hidden_init_std(cfg: &ModelConfig) -> f64 {
    let std = init_std(cfg.init, cfg.d_model);
    match (cfg.init, cfg.mup_width_mult()) {
        (Init::Gpt2, Some(m)) => std / m.sqrt(),
        _ => std,
    }
}

/// The entry scale of the token embedding (and an untied head, a linear read-in): [`init_std`]
/// at `d_model`, or under μP at the base width, so it does not shrink as the model widens.
pub fn embedding_init_std(cfg: &ModelConfig) -> f64 {
    match (cfg.mup_width_mult(), cfg.mup_base_width) {
        (Some(_), Some(base)) => init_std(cfg.init, base),
        _ => init_std(cfg.init, cfg.d_model),
    }
}

/// The factor on attention logits `q·k`: `1/√d_head`, or under μP `√d_head,base / d_head` with
/// `d_head,base = mup_base_width / n_heads` — ∝ 1/d_head as μP asks, and equal to the standard
/// scale at the base width. With QK-norm (no gains) `|q·k| ≤ d_head`, so the largest logit is
/// √d_head,base at every width instead of shrinking to 1 as a bare 1/d_head would make it.
pub fn attention_scale(cfg: &ModelConfig) -> f64 {
    let hd = head_dim(cfg) as f64;
    match (cfg.mup_width_mult(), cfg.mup_base_width) {
        (Some(_), Some(base)) => (base as f64 / cfg.n_heads as f64).sqrt() / hd,
        _ => 1.0 / hd.sqrt(),
    }
}

/// The factor on the logits: 1, or under μP `1/m = mup_base_width / d_model` (the readout
/// multiplier of `mup`'s MuReadout), so logits stay O(1) as the model widens.
pub fn logit_scale(cfg: &ModelConfig) -> f64 {
    cfg.mup_width_mult().map_or(1.0, |m| 1.0 / m)
}

/// How one block's matrices start: the entry scale of the input-side matrices and the output
/// projections' (`None`: zero, so the block is the identity at init), orthogonal or Gaussian.
#[derive(Clone, Copy, Debug)]
pub struct BlockInit {
    pub std: f64,
    pub out_std: Option<f64>,
    pub orthogonal: bool,
}

impl BlockInit {
    /// The init `cfg.init` prescribes for a block of width `cfg.d_model` in a network of
    /// effective depth `depth` (gpt2 scales output projections by `1/√(2·depth)`, which keeps
    /// the residual stream's variance independent of depth).
    pub fn of(cfg: &ModelConfig, depth: usize) -> Self {
        let std = hidden_init_std(cfg);
        match cfg.init {
            Init::ScaledZero => BlockInit {
                std,
                out_std: None,
                orthogonal: true,
            },
            Init::Gpt2 => BlockInit {
                std,
                out_std: Some(std / (2.0 * depth.max(1) as f64).sqrt()),
                orthogonal: false,
            },
        }
    }

    fn input(&self, params: &mut ParamStore, name: &str, shape: (usize, usize)) -> Result<Tensor> {
        if self.orthogonal {
            params.orthogonal(name, shape, self.std, ParamRole::Matrix)
        } else {
            params.normal(name, shape, self.std, ParamRole::Matrix)
        }
    }

    fn output(&self, params: &mut ParamStore, name: &str, shape: (usize, usize)) -> Result<Tensor> {
        match self.out_std {
            None => params.zeros(name, shape, ParamRole::Matrix),
            Some(std) if self.orthogonal => params.orthogonal(name, shape, std, ParamRole::Matrix),
            Some(std) => params.normal(name, shape, std, ParamRole::Matrix),
        }
    }
}

/// `x · W` for `x` of shape `(…, in)` and `W` of shape `(in, out)`.
pub fn project(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (rows, cols) = (x.elem_count() / x.dim(D::Minus1)?, x.dim(D::Minus1)?);
    let mut out_shape = x.dims().to_vec();
    *out_shape.last_mut().unwrap() = w.dim(1)?;
    ops::matmul(&x.reshape((rows, cols))?, w)?.reshape(out_shape)
}

/// RMSNorm with a gain: `x / sqrt(mean(x²) + ε) ⊙ g` over the last dimension. The gain is
/// learned, or (QK-norm without gains) a constant vector of ones.
pub struct RmsNorm {
    gain: Tensor,
    eps: f64,
}

impl RmsNorm {
    /// ε of [`RmsNorm::new`]; models take theirs from `model.norm_eps`.
    pub const EPS: f64 = 1e-6;

    pub fn new(params: &mut ParamStore, name: &str, dim: usize) -> Result<Self> {
        Self::with_eps(params, name, dim, Self::EPS)
    }

    pub fn with_eps(params: &mut ParamStore, name: &str, dim: usize, eps: f64) -> Result<Self> {
        Ok(RmsNorm {
            gain: params.ones(&format!("{name}.gain"), dim)?,
            eps,
        })
    }

    /// A norm whose gain is fixed at one (no parameter).
    pub fn fixed(params: &ParamStore, dim: usize, eps: f64) -> Result<Self> {
        Ok(RmsNorm {
            gain: Tensor::ones(dim, params.dtype(), params.device())?,
            eps,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::rms_norm(x, &param(&self.gain), self.eps)
    }

    pub fn gain(&self) -> &Tensor {
        &self.gain
    }

    pub fn eps(&self) -> f64 {
        self.eps
    }
}

/// Rotary position embedding tables (rotate-half convention).
pub struct Rope {
    /// `(max_len, head_dim / 2)`.
    cos: Tensor,
    sin: Tensor,
    /// The same tables on the host, for the fused attention-heads kernel.
    tables: Arc<RopeTables>,
}

impl Rope {
    /// The base of [`Rope::new`]; models take theirs from `model.rope_base`.
    pub const BASE: f64 = 10_000.0;

    pub fn new(head_dim: usize, max_len: usize, dtype: DType, device: &Device) -> Result<Self> {
        Self::with_base(head_dim, max_len, Self::BASE, dtype, device)
    }

    pub fn with_base(
        head_dim: usize,
        max_len: usize,
        base: f64,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        assert!(
            head_dim.is_multiple_of(2),
            "RoPE needs an even head dimension, got {head_dim}"
        );
        let half = head_dim / 2;
        let mut angles = Vec::with_capacity(max_len * half);
        for pos in 0..max_len {
            for i in 0..half {
                let inv_freq = base.powf(-((2 * i) as f64) / head_dim as f64);
                angles.push(pos as f64 * inv_freq);
            }
        }
        let tables = Arc::new(RopeTables {
            cos: angles.iter().map(|a| a.cos()).collect(),
            sin: angles.iter().map(|a| a.sin()).collect(),
            half,
        });
        let angles = Tensor::from_vec(angles, (max_len, half), device)?;
        Ok(Rope {
            cos: angles.cos()?.to_dtype(dtype)?,
            sin: angles.sin()?.to_dtype(dtype)?,
            tables,
        })
    }

    /// `(max_len, head_dim / 2)` cosine and sine tables.
    pub fn cos_sin(&self) -> (&Tensor, &Tensor) {
        (&self.cos, &self.sin)
    }

    /// The same tables on the host, as the fused attention-heads kernel takes them.
    pub fn tables(&self) -> &Arc<RopeTables> {
        &self.tables
    }

    fn angles(&self) -> RopeAngles<'_> {
        RopeAngles {
            cos: &self.cos,
            sin: &self.sin,
            host: &self.tables,
        }
    }
}

/// One block's scales and gates, each `(batch, 1, width)` so they broadcast over time: how an
/// adaptive norm (LoopFormer's conditioning, [`super::conditioning`]) modulates a block.
pub struct Modulation {
    pub gate_attn: Tensor,
    pub gate_mlp: Tensor,
    pub scale_attn: Tensor,
    pub scale_mlp: Tensor,
}

/// `softplus(x) = log(1 + eˣ)`, from differentiable primitives, stable for large `|x|`.
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
}

pub use ops::cross_entropy;

/// Multi-head causal self-attention with RMS-normalised queries and keys (QK-norm) and RoPE.
pub struct CausalSelfAttention {
    /// `(d, 3d)`: queries, keys and values in one matmul.
    w_qkv: Tensor,
    /// `(d, d)`.
    w_out: Tensor,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    n_heads: usize,
    /// The factor on `q·k` ([`attention_scale`]).
    scale: f64,
}

impl CausalSelfAttention {
    pub fn new(
        params: &mut ParamStore,
        name: &str,
        cfg: &ModelConfig,
        init: &BlockInit,
    ) -> Result<Self> {
        let d = cfg.d_model;
        assert!(
            d.is_multiple_of(cfg.n_heads),
            "d_model {d} is not a multiple of n_heads {}",
            cfg.n_heads
        );
        let w_qkv = if init.orthogonal {
            // Q, K and V are three matrices in the reference, each orthogonal on its own.
            let blocks: Vec<Vec<f64>> = (0..3)
                .map(|_| params.orthogonal_values((d, d), init.std))
                .collect();
            let values = (0..d * 3 * d)
                .map(|k| {
                    let (i, j) = (k / (3 * d), k % (3 * d));
                    blocks[j / d][i * d + j % d]
                })
                .collect();
            params.constant(
                &format!("{name}.w_qkv"),
                &[d, 3 * d],
                values,
                ParamRole::Matrix,
            )?
        } else {
            init.input(params, &format!("{name}.w_qkv"), (d, 3 * d))?
        };
        let qk_norm = |params: &mut ParamStore, which: &str| {
            if cfg.qk_norm_gain {
                RmsNorm::with_eps(
                    params,
                    &format!("{name}.{which}"),
                    head_dim(cfg),
                    cfg.norm_eps,
                )
            } else {
                RmsNorm::fixed(params, head_dim(cfg), cfg.norm_eps)
            }
        };
        Ok(CausalSelfAttention {
            w_qkv,
            w_out: init.output(params, &format!("{name}.w_out"), (d, d))?,
            q_norm: qk_norm(params, "q_norm")?,
            k_norm: qk_norm(params, "k_norm")?,
            n_heads: cfg.n_heads,
            scale: attention_scale(cfg),
        })
    }

    pub fn forward(&self, x: &Tensor, rope: &Rope) -> Result<Tensor> {
        let d = x.dim(D::Minus1)?;
        let h = self.n_heads;
        // Three projections through column blocks of W_qkv (views, no copy), so that each
        // gradient lands in its own (b, t, d) tensor instead of being padded out to 3d.
        let w_qkv = param(&self.w_qkv);
        let part = |i: usize| project(x, &w_qkv.narrow(1, i * d, d)?);
        let angles = rope.angles();
        let heads = |i: usize, norm: &RmsNorm| {
            ops::norm_rope_heads(&part(i)?, &param(norm.gain()), h, &angles, norm.eps())
        };
        // q, k: (b, h, t, hd); v: (b, t, d)
        let (q, k, v) = (heads(0, &self.q_norm)?, heads(1, &self.k_norm)?, part(2)?);
        let mixed = ops::causal_attention(&q, &k, &v, self.scale)?;
        project(&mixed, &param(&self.w_out))
    }

    /// Attention of the new positions `x` `(batch, t_new, d)` over every position `memory` holds
    /// and themselves (causally), handing their keys and values to `memory`: with a
    /// [`KvCache`], what [`CausalSelfAttention::forward`] computes for the last `t_new`
    /// positions of the whole sequence, one new token at a time. Candle's compositions (with a
    /// backward pass: MELT trains through it, `super::melt`).
    pub fn forward_cached(
        &self,
        x: &Tensor,
        rope: &Rope,
        memory: &mut dyn KvMemory,
    ) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let (h, hd) = (self.n_heads, d / self.n_heads);
        let start = memory.start();
        let (cos, sin) = (rope.cos.narrow(0, start, t)?, rope.sin.narrow(0, start, t)?);
        let w_qkv = param(&self.w_qkv);
        let part = |i: usize| project(x, &w_qkv.narrow(1, i * d, d)?);
        let heads = |i: usize, norm: &RmsNorm| {
            composed::norm_rope_heads(&part(i)?, &param(norm.gain()), h, &cos, &sin, norm.eps())
        };
        let (q, k) = (heads(0, &self.q_norm)?, heads(1, &self.k_norm)?);
        let v = part(2)?.reshape((b, t, h, hd))?.transpose(1, 2)?;
        let (k, v) = memory.attend_over(x, &k, &v)?;
        // New position i (absolute start + i) sees keys 0..=start + i.
        let total = start + t;
        let mask: Vec<f32> = (0..t)
            .flat_map(|i| {
                (0..total).map(move |j| {
                    if j <= start + i {
                        0.0
                    } else {
                        f32::NEG_INFINITY
                    }
                })
            })
            .collect();
        let mask = Tensor::from_vec(mask, (t, total), x.device())?.to_dtype(x.dtype())?;
        let scores = q.contiguous()?.matmul(&k.t()?.contiguous()?)?;
        let scores = scores.affine(self.scale, 0.0)?.broadcast_add(&mask)?;
        let probs = composed::softmax_last_dim(&scores)?;
        let mixed = probs
            .matmul(&v.contiguous()?)?
            .transpose(1, 2)?
            .reshape((b, t, d))?;
        let out = project(&mixed, &param(&self.w_out))?;
        memory.observe(&out);
        Ok(out)
    }
}

/// Where cached attention ([`CausalSelfAttention::forward_cached`]) keeps the keys and values
/// of the positions before the new ones: a [`KvCache`] appends each position's, once per
/// block application; MELT's shared cache (`super::melt`) keeps one gated entry per position
/// for every loop of a block. Which one a looped core's block gets in each loop is the core's
/// cache policy (`super::core_cache`).
pub trait KvMemory {
    /// The absolute position of the first new position (the positions held before it).
    fn start(&self) -> usize;

    /// The keys and values `(batch, heads, start + t_new, head_dim)` the new positions attend
    /// over, given their own `k`, `v` `(batch, heads, t_new, head_dim)` and the attention's
    /// input `x` `(batch, t_new, d)`; remembers what the next call needs.
    fn attend_over(&mut self, x: &Tensor, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)>;

    /// Sees the attention branch's output for the new positions (distillation records it).
    fn observe(&mut self, _out: &Tensor) {}
}

/// The keys and values of every position one attention layer has seen, `(batch, heads, time,
/// head_dim)` each, so that decoding a token costs one position's work instead of the whole
/// prefix's. A looped model keeps one per block *and loop* (each loop attends over its own
/// states); its bytes are what decoding holds in memory per layer application.
#[derive(Default)]
pub struct KvCache {
    k: Option<Tensor>,
    v: Option<Tensor>,
}

impl KvCache {
    /// Positions held.
    pub fn len(&self) -> usize {
        self.k.as_ref().map_or(0, |k| k.dim(2).unwrap_or(0))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held by the keys and values.
    pub fn bytes(&self) -> usize {
        [&self.k, &self.v]
            .into_iter()
            .flatten()
            .map(|t| t.elem_count() * t.dtype().size_in_bytes())
            .sum()
    }

    /// What is held followed by `k`, `v` `(batch, heads, t_new, head_dim)`, holding nothing new.
    pub fn joined(&self, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let joined = |old: &Option<Tensor>, new: &Tensor| match old {
            Some(old) => Tensor::cat(&[old, new], 2),
            None => new.contiguous(),
        };
        Ok((joined(&self.k, k)?, joined(&self.v, v)?))
    }

    /// Appends `k`, `v` `(batch, heads, t_new, head_dim)`; returns everything held.
    pub fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (k, v) = self.joined(k, v)?;
        self.k = Some(k.clone());
        self.v = Some(v.clone());
        Ok((k, v))
    }
}

impl KvMemory for KvCache {
    fn start(&self) -> usize {
        self.len()
    }

    fn attend_over(&mut self, _x: &Tensor, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        self.append(k, v)
    }
}

/// The position-wise MLP: ReLU², GELU (tanh approximation) or SwiGLU.
pub struct MlpBlock {
    kind: Mlp,
    /// `(d, hidden)`.
    w_in: Tensor,
    /// `(d, hidden)`, SwiGLU's linear branch only.
    w_gate: Option<Tensor>,
    /// `(hidden, d)`.
    w_out: Tensor,
}

impl MlpBlock {
    pub fn new(
        params: &mut ParamStore,
        name: &str,
        cfg: &ModelConfig,
        init: &BlockInit,
    ) -> Result<Self> {
        let (d, hidden) = (cfg.d_model, mlp_hidden_width(cfg));
        let w_in = init.input(params, &format!("{name}.w_in"), (d, hidden))?;
        let w_gate = match cfg.mlp {
            Mlp::Swiglu => Some(init.input(params, &format!("{name}.w_gate"), (d, hidden))?),
            Mlp::Relu2 | Mlp::Gelu => None,
        };
        let w_out = init.output(params, &format!("{name}.w_out"), (hidden, d))?;
        Ok(MlpBlock {
            kind: cfg.mlp,
            w_in,
            w_gate,
            w_out,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let pre = project(x, &param(&self.w_in))?;
        let hidden = match (self.kind, &self.w_gate) {
            (Mlp::Relu2, _) => ops::relu_squared(&pre)?,
            (Mlp::Gelu, _) => ops::gelu(&pre)?,
            (Mlp::Swiglu, Some(w_gate)) => (pre.silu()? * project(x, &param(w_gate))?)?,
            (Mlp::Swiglu, None) => unreachable!("SwiGLU is always built with its gate"),
        };
        project(&hidden, &param(&self.w_out))
    }
}

/// A pre-norm residual block: `x + attn(norm(x))`, then `x + mlp(norm(x))`.
pub struct Block {
    attn_norm: RmsNorm,
    attn: CausalSelfAttention,
    mlp_norm: RmsNorm,
    mlp: MlpBlock,
}

impl Block {
    pub fn new(
        params: &mut ParamStore,
        name: &str,
        cfg: &ModelConfig,
        init: &BlockInit,
    ) -> Result<Self> {
        let norm = |params: &mut ParamStore, which: &str| {
            RmsNorm::with_eps(
                params,
                &format!("{name}.{which}"),
                cfg.d_model,
                cfg.norm_eps,
            )
        };
        Ok(Block {
            attn_norm: norm(params, "attn_norm")?,
            attn: CausalSelfAttention::new(params, &format!("{name}.attn"), cfg, init)?,
            mlp_norm: norm(params, "mlp_norm")?,
            mlp: MlpBlock::new(params, &format!("{name}.mlp"), cfg, init)?,
        })
    }

    /// The plain block on the whole sequence: [`Block::run`] without modulation or cache.
    pub fn forward(&self, x: &Tensor, rope: &Rope) -> Result<Tensor> {
        self.run(x, rope, None, None)
    }

    /// The block, every way a network applies it: `x + g₁ ⊙ attn(norm(x) ⊙ (1 + s₁))`, then
    /// `x + g₂ ⊙ mlp(norm(x) ⊙ (1 + s₂))`, where `m` (LoopFormer's adaptive norm, per-sequence
    /// `(batch, 1, d)` scales and gates) gives `s` and `g`, and without it `s = 0`, `g = 1`.
    /// Attention covers the whole sequence `x`, or with `memory` the new positions `x` after
    /// the ones it holds ([`CausalSelfAttention::forward_cached`]: decoding, MELT).
    pub fn run(
        &self,
        x: &Tensor,
        rope: &Rope,
        m: Option<&Modulation>,
        memory: Option<&mut dyn KvMemory>,
    ) -> Result<Tensor> {
        let normed = |norm: &RmsNorm, x: &Tensor, s: Option<&Tensor>| match s {
            Some(s) => norm.forward(x)?.broadcast_mul(&(s + 1.0)?),
            None => norm.forward(x),
        };
        let gated = |y: Tensor, g: Option<&Tensor>| match g {
            Some(g) => y.broadcast_mul(g),
            None => Ok(y),
        };
        let attn_in = normed(&self.attn_norm, x, m.map(|m| &m.scale_attn))?;
        let attn = match memory {
            Some(memory) => self.attn.forward_cached(&attn_in, rope, memory)?,
            None => self.attn.forward(&attn_in, rope)?,
        };
        let x = (x + gated(attn, m.map(|m| &m.gate_attn))?)?;
        let mlp = self
            .mlp
            .forward(&normed(&self.mlp_norm, &x, m.map(|m| &m.scale_mlp))?)?;
        &x + gated(mlp, m.map(|m| &m.gate_mlp))?
    }
}

/// Blocks applied in sequence: a GPT's body, or a looped model's prelude, core or coda.
pub struct BlockStack {
    blocks: Vec<Block>,
}

impl BlockStack {
    /// `n` blocks named `{name}.{i}`; `depth` is the network's effective depth for init scaling.
    pub fn new(
        params: &mut ParamStore,
        name: &str,
        cfg: &ModelConfig,
        n: usize,
        depth: usize,
    ) -> Result<Self> {
        Self::with_init(params, name, cfg, n, &BlockInit::of(cfg, depth))
    }

    /// `n` blocks named `{name}.{i}`, initialised as `init` says.
    pub fn with_init(
        params: &mut ParamStore,
        name: &str,
        cfg: &ModelConfig,
        n: usize,
        init: &BlockInit,
    ) -> Result<Self> {
        let blocks = (0..n)
            .map(|i| Block::new(params, &format!("{name}.{i}"), cfg, init))
            .collect::<Result<_>>()?;
        Ok(BlockStack { blocks })
    }

    /// The plain stack on the whole sequence: [`BlockStack::run`] without modulations or caches.
    pub fn forward(&self, x: &Tensor, rope: &Rope) -> Result<Tensor> {
        self.run(x, rope, None, None::<&mut [KvCache]>)
    }

    /// The stack as a network uses it ([`Block::run`] block after block): block `i` modulated
    /// by `mods[i]` when given (LoopFormer's conditioned core), and on the whole sequence, or
    /// with `caches` (one per block) on new positions after the ones they hold.
    pub fn run(
        &self,
        x: &Tensor,
        rope: &Rope,
        mods: Option<&[Modulation]>,
        mut caches: Option<&mut [impl KvMemory]>,
    ) -> Result<Tensor> {
        let n = self.blocks.len();
        assert!(
            mods.is_none_or(|m| m.len() == n),
            "one modulation per block"
        );
        assert!(
            caches.as_ref().is_none_or(|c| c.len() == n),
            "one cache per block"
        );
        let mut x = x.clone();
        for (i, block) in self.blocks.iter().enumerate() {
            let memory = caches
                .as_deref_mut()
                .map(|c| &mut c[i] as &mut dyn KvMemory);
            x = block.run(&x, rope, mods.map(|m| &m[i]), memory)?;
        }
        Ok(x)
    }

    /// Empty caches, one per block.
    pub fn new_caches(&self) -> Vec<KvCache> {
        self.blocks.iter().map(|_| KvCache::default()).collect()
    }

    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }
}
