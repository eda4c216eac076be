//! Parameter and FLOP counts of a configuration, by arithmetic alone (no tensors are built).
//!
//! Every run stores both numbers; the scaling laws are fitted against them. Tests check the
//! parameter count against the tensors a model actually creates, and the FLOP count against a
//! hand count.
//!
//! # The FLOP formula
//!
//! Per training token, for a GPT of `L` blocks, width `d`, context `seq` and vocabulary `V`:
//!
//! ```text
//! train_flops_per_token   = 6·N_ne + 3·A·L + 6·d·V,        A = 4·d·seq
//! forward_flops_per_token = 2·N_ne +   A·L + 2·d·V
//! ```
//!
//! - `N_ne` is the non-embedding parameter count: every weight in the blocks plus the final
//!   norm costs 2 FLOPs per token forward (multiply-add) and 4 backward (gradients with respect
//!   to input and weight). Norm gains are counted the same way; they are ≪ 1% of `N_ne`.
//! - `A = 4·d·seq` is one block's attention forward cost beyond its projections: `2·d·seq` for
//!   `QKᵀ` and `2·d·seq` for the weighted sum of values, counted over the full `seq × seq`
//!   square (the causal mask's saving is not subtracted, as in Kaplan et al. 2020 and the
//!   Parcae reference code), ×3 for forward plus backward.
//! - The LM head matmul (`d·V` multiply-adds per token) is real compute and is **included**,
//!   whether or not its weight is tied to the embedding. The embedding lookup is a gather and
//!   costs nothing. This differs from the DESIGN's looped formula only by the head term, which
//!   the looped count should add the same way.

use super::config::{Arch, Mlp, ModelConfig};

/// Parameter counts of a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamCounts {
    /// Every trainable scalar (a tied embedding counted once).
    pub total: u64,
    /// `total` without the token embedding and without an untied LM head.
    pub non_embedding: u64,
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

/// Width of one attention head.
pub fn head_dim(cfg: &ModelConfig) -> usize {
    cfg.d_model / cfg.n_heads
}

/// Parameters of one pre-norm block: two norms, attention (QKV and output projections, and
/// the per-head QK-norm gains), and the MLP.
pub fn block_params(cfg: &ModelConfig) -> u64 {
    let d = cfg.d_model as u64;
    let norms = 2 * d;
    let attention = 3 * d * d + d * d + 2 * head_dim(cfg) as u64;
    let h = mlp_hidden_width(cfg) as u64;
    let mlp = match cfg.mlp {
        Mlp::Relu2 | Mlp::Gelu => 2 * d * h,
        Mlp::Swiglu => 3 * d * h,
    };
    norms + attention + mlp
}

/// Parameter counts of the GPT described by `cfg` with a `vocab_size`-token vocabulary.
pub fn param_counts(cfg: &ModelConfig, vocab_size: usize) -> ParamCounts {
    assert_eq!(
        cfg.arch,
        Arch::Gpt,
        "param_counts: only the GPT is implemented so far"
    );
    let d = cfg.d_model as u64;
    let v = vocab_size as u64;
    let non_embedding = cfg.n_layers as u64 * block_params(cfg) + d; // + final norm
    let embedding = v * d;
    let untied_head = if cfg.tie_embeddings { 0 } else { d * v };
    ParamCounts {
        total: non_embedding + embedding + untied_head,
        non_embedding,
    }
}

/// Attention's forward FLOPs per token in one block, beyond its projections: `A = 4·d·seq`.
pub fn attention_flops_per_token(cfg: &ModelConfig, seq_len: usize) -> f64 {
    4.0 * cfg.d_model as f64 * seq_len as f64
}

/// Forward FLOPs per token: `2·N_ne + A·L + 2·d·V` (see the module docs).
pub fn forward_flops_per_token(cfg: &ModelConfig, vocab_size: usize, seq_len: usize) -> f64 {
    let n_ne = param_counts(cfg, vocab_size).non_embedding as f64;
    let head = cfg.d_model as f64 * vocab_size as f64;
    2.0 * n_ne + attention_flops_per_token(cfg, seq_len) * cfg.n_layers as f64 + 2.0 * head
}

/// Training (forward + backward) FLOPs per token: `6·N_ne + 3·A·L + 6·d·V` (see the module docs).
pub fn train_flops_per_token(cfg: &ModelConfig, vocab_size: usize, seq_len: usize) -> f64 {
    3.0 * forward_flops_per_token(cfg, vocab_size, seq_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swiglu_width_keeps_parameters_close() {
        let relu = ModelConfig {
            d_model: 96,
            mlp_ratio: 4,
            ..ModelConfig::default()
        };
        let swiglu = ModelConfig {
            mlp: Mlp::Swiglu,
            ..relu.clone()
        };
        assert_eq!(mlp_hidden_width(&swiglu), 256);
        assert_eq!(block_params(&relu), block_params(&swiglu));
        let odd = ModelConfig {
            d_model: 100,
            mlp: Mlp::Swiglu,
            ..ModelConfig::default()
        };
        let diff = block_params(&odd) as i64
            - block_params(&ModelConfig {
                d_model: 100,
                ..ModelConfig::default()
            }) as i64;
        assert!(diff.unsigned_abs() <= 3 * 100, "swiglu differs by {diff}");
    }

    #[test]
    fn tied_and_untied_differ_by_one_head() {
        let tied = ModelConfig::default();
        let untied = ModelConfig {
            tie_embeddings: false,
            ..tied.clone()
        };
        let (a, b) = (param_counts(&tied, 256), param_counts(&untied, 256));
        assert_eq!(a.non_embedding, b.non_embedding);
        assert_eq!(b.total - a.total, 256 * 64);
    }
}
