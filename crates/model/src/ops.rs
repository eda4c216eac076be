//! The operations a network is written in, each run where it runs best: our fused kernels
//! ([`super::fused`], [`super::fused_attention`]) on the CPU, candle's differentiable
//! compositions ([`super::fused::composed`]) on other devices (the `cuda` feature). The kernels
//! are tested against the compositions (`tests/fused_ops.rs`), so both give the same maths.
//!
//! This is the one place that looks at the device: `layers.rs` calls these and reads as the
//! mathematics alone.

use std::sync::Arc;

use candle_core::{DType, Result, Tensor};

use super::bf16_matmul;
use super::fused::{self, RopeTables, composed};
use super::fused_attention;
use super::precision::{self, Precision};

/// `a · b` for matrices, at the precision [`autocast`](super::precision::autocast) set: f32,
/// or with bf16 operands and f32 sums ([`super::bf16_matmul`] on the CPU, candle's bf16
/// matmul on a GPU). The CPU's gemm reads operands of any strides; candle's CUDA matmul
/// (cuBLAS) takes only row- or column-major blocks, so there an operand that is neither (a
/// column block of `W_qkv`, a view) is copied first. The copy is differentiable: the gradient
/// still reaches the view's parent.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let bf16 = precision::current() == Precision::Bf16;
    if a.device().is_cpu() {
        if bf16 && a.rank() == 2 && b.rank() == 2 && a.dtype() == DType::F32 {
            bf16_matmul::matmul(a, b)
        } else {
            a.matmul(b)
        }
    } else if bf16 && a.dtype() == DType::F32 {
        let half = |m: &Tensor| m.to_dtype(DType::BF16);
        half(a)?.matmul(&half(b)?)?.to_dtype(DType::F32)
    } else {
        let dense = |m: &Tensor| -> Result<Tensor> {
            if m.is_contiguous() || m.t()?.is_contiguous() {
                Ok(m.clone())
            } else {
                m.contiguous()
            }
        };
        dense(a)?.matmul(&dense(b)?)
    }
}

/// `x / sqrt(mean(x²) + eps) ⊙ gain` over the last dimension.
pub fn rms_norm(x: &Tensor, gain: &Tensor, eps: f64) -> Result<Tensor> {
    if x.device().is_cpu() {
        fused::rms_norm(x, gain, eps)
    } else {
        composed::rms_norm(x, gain, eps)
    }
}

/// Rotary position tables: `(max_len, head_dim / 2)` tensors, and the same on the host for the
/// fused kernel.
pub struct RopeAngles<'a> {
    pub cos: &'a Tensor,
    pub sin: &'a Tensor,
    pub host: &'a Arc<RopeTables>,
}

/// `(batch, time, d)` projections → `(batch, heads, time, head_dim)` heads, each RMS-normalised
/// with `gain` (QK-norm) and rotated by its position (RoPE).
pub fn norm_rope_heads(
    x: &Tensor,
    gain: &Tensor,
    heads: usize,
    rope: &RopeAngles,
    eps: f64,
) -> Result<Tensor> {
    if x.device().is_cpu() {
        fused::norm_rope_heads(x, gain, heads, rope.host, eps)
    } else {
        composed::norm_rope_heads(x, gain, heads, rope.cos, rope.sin, eps)?.contiguous()
    }
}

/// Causal softmax attention of heads `q`, `k` `(batch, heads, time, head_dim)` over values `v`
/// `(batch, time, d)`; the output is `(batch, time, d)`, heads side by side.
pub fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    if q.device().is_cpu() {
        fused_attention::causal_attention(q, k, v, scale)
    } else {
        composed::causal_attention(q, k, v, scale)
    }
}

/// `relu(x)²`.
pub fn relu_squared(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() {
        fused::relu_squared(x)
    } else {
        composed::relu_squared(x)
    }
}

/// GELU, tanh approximation.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() {
        fused::gelu(x)
    } else {
        composed::gelu(x)
    }
}

/// Mean cross-entropy (nats per token) of `logits` `(n, vocab)` against `targets` `(n,)` u32.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    if logits.device().is_cpu() {
        fused::cross_entropy(logits, targets)
    } else {
        composed::cross_entropy(logits, targets)
    }
}
