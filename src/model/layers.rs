//! The differentiable building blocks of every network here: the token embedding and the LM
//! head, RMSNorm, rotary position embeddings, causal self-attention with QK-norm, the three
//! MLPs, the pre-norm residual block and a stack of blocks, plus the cross-entropy loss.
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

use super::config::{Mlp, ModelConfig};
use super::counts::{head_dim, mlp_hidden_width};
use super::fused::RopeTables;
use super::grad::param;
use super::ops::{self, RopeAngles};
use super::params::{DecayGroup, ParamStore};

/// Standard deviation of every weight matrix at initialisation.
pub const INIT_STD: f64 = 0.02;

/// `x · W` for `x` of shape `(…, in)` and `W` of shape `(in, out)`.
pub fn project(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (rows, cols) = (x.elem_count() / x.dim(D::Minus1)?, x.dim(D::Minus1)?);
    let mut out_shape = x.dims().to_vec();
    *out_shape.last_mut().unwrap() = w.dim(1)?;
    x.reshape((rows, cols))?.matmul(w)?.reshape(out_shape)
}

/// RMSNorm with a learned gain: `x / sqrt(mean(x²) + ε) ⊙ g` over the last dimension.
pub struct RmsNorm {
    gain: Tensor,
}

impl RmsNorm {
    pub const EPS: f64 = 1e-6;

    pub fn new(params: &mut ParamStore, name: &str, dim: usize) -> Result<Self> {
        Ok(RmsNorm {
            gain: params.ones(&format!("{name}.gain"), dim)?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::rms_norm(x, &param(&self.gain), Self::EPS)
    }

    pub fn gain(&self) -> &Tensor {
        &self.gain
    }
}

/// Rotary position embedding tables (rotate-half convention, base 10 000).
pub struct Rope {
    /// `(max_len, head_dim / 2)`.
    cos: Tensor,
    sin: Tensor,
    /// The same tables on the host, for the fused attention-heads kernel.
    tables: Arc<RopeTables>,
}

impl Rope {
    pub const BASE: f64 = 10_000.0;

    pub fn new(head_dim: usize, max_len: usize, dtype: DType, device: &Device) -> Result<Self> {
        assert!(
            head_dim.is_multiple_of(2),
            "RoPE needs an even head dimension, got {head_dim}"
        );
        let half = head_dim / 2;
        let mut angles = Vec::with_capacity(max_len * half);
        for pos in 0..max_len {
            for i in 0..half {
                let inv_freq = Self::BASE.powf(-((2 * i) as f64) / head_dim as f64);
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

pub use ops::cross_entropy;

/// The token embedding: a `(vocab, d)` table whose rows are the tokens' vectors.
pub struct TokenEmbedding {
    table: Tensor,
}

impl TokenEmbedding {
    pub fn new(params: &mut ParamStore, vocab_size: usize, d: usize) -> Result<Self> {
        Ok(TokenEmbedding {
            table: params.normal(
                "token_embedding",
                (vocab_size, d),
                INIT_STD,
                DecayGroup::NoDecay,
            )?,
        })
    }

    /// `(batch, time)` u32 token ids → `(batch, time, d)` vectors.
    pub fn forward(&self, input_ids: &Tensor) -> Result<Tensor> {
        let (b, t) = input_ids.dims2()?;
        let d = self.table.dim(1)?;
        param(&self.table)
            .embedding(&input_ids.flatten_all()?)?
            .reshape((b, t, d))
    }
}

/// The output end of every network: final RMSNorm, then the LM head — the transposed token
/// embedding when tied, else its own `(d, vocab)` matrix.
pub struct LmHead {
    final_norm: RmsNorm,
    /// `(d, vocab)` when untied.
    untied: Option<Tensor>,
}

impl LmHead {
    pub fn new(params: &mut ParamStore, d: usize, vocab_size: usize, tied: bool) -> Result<Self> {
        let final_norm = RmsNorm::new(params, "final_norm", d)?;
        let untied = (!tied)
            .then(|| params.normal("lm_head", (d, vocab_size), INIT_STD, DecayGroup::Decay))
            .transpose()?;
        Ok(LmHead { final_norm, untied })
    }

    /// `(batch, time, d)` → `(batch, time, vocab)` logits.
    pub fn forward(&self, x: &Tensor, embedding: &TokenEmbedding) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let x = self.final_norm.forward(x)?.reshape((b * t, d))?;
        let logits = match &self.untied {
            Some(head) => x.matmul(&param(head))?,
            None => x.matmul(&param(&embedding.table).t()?)?,
        };
        logits.reshape((b, t, ()))
    }
}

/// Multi-head causal self-attention with RMS-normalised queries and keys (QK-norm) and RoPE.
pub struct CausalSelfAttention {
    /// `(d, 3d)`: queries, keys and values in one matmul.
    w_qkv: Tensor,
    /// `(d, d)`.
    w_out: Tensor,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    n_heads: usize,
}

impl CausalSelfAttention {
    pub fn new(
        params: &mut ParamStore,
        name: &str,
        cfg: &ModelConfig,
        out_std: f64,
    ) -> Result<Self> {
        let d = cfg.d_model;
        assert!(
            d.is_multiple_of(cfg.n_heads),
            "d_model {d} is not a multiple of n_heads {}",
            cfg.n_heads
        );
        Ok(CausalSelfAttention {
            w_qkv: params.normal(
                &format!("{name}.w_qkv"),
                (d, 3 * d),
                INIT_STD,
                DecayGroup::Decay,
            )?,
            w_out: params.normal(&format!("{name}.w_out"), (d, d), out_std, DecayGroup::Decay)?,
            q_norm: RmsNorm::new(params, &format!("{name}.q_norm"), head_dim(cfg))?,
            k_norm: RmsNorm::new(params, &format!("{name}.k_norm"), head_dim(cfg))?,
            n_heads: cfg.n_heads,
        })
    }

    pub fn forward(&self, x: &Tensor, rope: &Rope) -> Result<Tensor> {
        let d = x.dim(D::Minus1)?;
        let (h, hd) = (self.n_heads, d / self.n_heads);
        // Three projections through column blocks of W_qkv (views, no copy), so that each
        // gradient lands in its own (b, t, d) tensor instead of being padded out to 3d.
        let w_qkv = param(&self.w_qkv);
        let part = |i: usize| project(x, &w_qkv.narrow(1, i * d, d)?);
        let angles = rope.angles();
        let heads = |i: usize, norm: &RmsNorm| {
            ops::norm_rope_heads(&part(i)?, &param(norm.gain()), h, &angles, RmsNorm::EPS)
        };
        // q, k: (b, h, t, hd); v: (b, t, d)
        let (q, k, v) = (heads(0, &self.q_norm)?, heads(1, &self.k_norm)?, part(2)?);
        let mixed = ops::causal_attention(&q, &k, &v, 1.0 / (hd as f64).sqrt())?;
        project(&mixed, &param(&self.w_out))
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
        out_std: f64,
    ) -> Result<Self> {
        let (d, hidden) = (cfg.d_model, mlp_hidden_width(cfg));
        let w_in = params.normal(
            &format!("{name}.w_in"),
            (d, hidden),
            INIT_STD,
            DecayGroup::Decay,
        )?;
        let w_gate = match cfg.mlp {
            Mlp::Swiglu => Some(params.normal(
                &format!("{name}.w_gate"),
                (d, hidden),
                INIT_STD,
                DecayGroup::Decay,
            )?),
            Mlp::Relu2 | Mlp::Gelu => None,
        };
        let w_out = params.normal(
            &format!("{name}.w_out"),
            (hidden, d),
            out_std,
            DecayGroup::Decay,
        )?;
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
    /// `out_std` initialises the two output projections; scaling it by `1/sqrt(2·depth)`
    /// keeps the residual stream's variance independent of depth at initialisation.
    pub fn new(
        params: &mut ParamStore,
        name: &str,
        cfg: &ModelConfig,
        out_std: f64,
    ) -> Result<Self> {
        Ok(Block {
            attn_norm: RmsNorm::new(params, &format!("{name}.attn_norm"), cfg.d_model)?,
            attn: CausalSelfAttention::new(params, &format!("{name}.attn"), cfg, out_std)?,
            mlp_norm: RmsNorm::new(params, &format!("{name}.mlp_norm"), cfg.d_model)?,
            mlp: MlpBlock::new(params, &format!("{name}.mlp"), cfg, out_std)?,
        })
    }

    pub fn forward(&self, x: &Tensor, rope: &Rope) -> Result<Tensor> {
        let x = (x + self.attn.forward(&self.attn_norm.forward(x)?, rope)?)?;
        &x + self.mlp.forward(&self.mlp_norm.forward(&x)?)?
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
        let out_std = INIT_STD / (2.0 * depth.max(1) as f64).sqrt();
        let blocks = (0..n)
            .map(|i| Block::new(params, &format!("{name}.{i}"), cfg, out_std))
            .collect::<Result<_>>()?;
        Ok(BlockStack { blocks })
    }

    pub fn forward(&self, x: &Tensor, rope: &Rope) -> Result<Tensor> {
        self.blocks
            .iter()
            .try_fold(x.clone(), |x, block| block.forward(&x, rope))
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }
}
