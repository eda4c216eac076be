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
//!   costs nothing. This differs from the Parcae reference code's count (`scripts/cost.py` in
//!   sandyresearch/parcae, which leaves the tied embedding and head out) only by the head term,
//!   which the looped count below adds the same way.
//!
//! On a regression task ([`super::io::Io::Vectors`]) the ends are a linear read-in of `w`
//! channels and a scalar read-out: the head term is `6·d·1`, the read-in adds `6·w·d` (a real
//! matrix product, unlike a table lookup), and both count as embedding parameters.
//!
//! # Looped models
//!
//! A looped model's non-embedding parameters split into those applied once per token
//! (`N_once`: prelude and coda blocks, prelude and final norms, the injection's loop-invariant
//! matrix — `B` for diagonal, `B` for add when `r ≠ d`, `W_e` for linear — and the readout `C`)
//! and those applied once per loop (`N_core`: the core blocks, plus the injection's per-loop
//! parameters — `A_log` and `dt_bias` for diagonal, `W_h` for linear). Every parameter costs
//! 2 FLOPs per token each time it is applied forward and 4 backward, as above. A loop with
//! gradient costs forward + backward; a loop without (truncated backprop) costs forward only.
//! With `μ_rec` loops on average of which `μ_bwd` have gradient, per training token:
//!
//! ```text
//! train = 6·N_once + 3·A·(L_pre + L_coda) + (2μ_rec + 4μ_bwd)·N_core
//!         + (μ_rec + 2μ_bwd)·A_r·L_core + 6·d·V,          A = 4·d·seq,  A_r = 4·r·seq
//! forward at T loops = 2·N_once + A·(L_pre + L_coda) + 2T·N_core + T·A_r·L_core + 2·d·V
//! ```
//!
//! This is the Parcae reference code's formula plus the head term `6·d·V` the GPT count
//! uses, with the loop-invariant injection matrix and `C` counted once. `μ_rec` is the configured
//! `mean_recurrence` and `μ_bwd = min(backprop_depth, μ_rec)`, the nominal values: under Poisson
//! sampling the exact expectations differ slightly (`E[max(n, 1)] = μ + e^-μ`, and
//! `E[min(n, k)] < k`), and the batch actually computes `max_i n_i` loops for every sequence with
//! the surplus masked out; the count is of the useful work, as in the paper. The injection's
//! element-wise update is covered by counting `A_log` and `dt_bias` as per-loop parameters.
//!
//! LoopFormer's conditioning (`loop_conditioning = "time_step"`) is applied every loop but once
//! per sequence: its `N_cond` parameters cost `2·N_cond / seq` FLOPs per token forward per loop
//! (and twice that backward), i.e. `N_core` above is `N_core + N_cond / seq`. Shortcut
//! consistency adds a short trajectory: [`shortcut_train_flops_per_token`].

use super::conditioning::CoreConditioning;
use super::config::{Arch, LoopConditioning, LoopGate, LoopedConfig, Mlp, ModelConfig};
pub use super::config::{head_dim, mlp_hidden_width};
use super::injection::InjectionLayer;
use super::io::Io;
use super::loopus::{ExitHead, SelectiveGate};
use super::melt::KvGate;

/// Parameter counts of a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamCounts {
    /// Every trainable scalar (a tied embedding counted once).
    pub total: u64,
    /// `total` without the token embedding and without an untied LM head.
    pub non_embedding: u64,
}

/// Parameters of one pre-norm block: two norms, attention (QKV and output projections, and
/// the per-head QK-norm gains when learnable), and the MLP.
pub fn block_params(cfg: &ModelConfig) -> u64 {
    let d = cfg.d_model as u64;
    let norms = 2 * d;
    let qk_gains = if cfg.qk_norm_gain {
        2 * head_dim(cfg) as u64
    } else {
        0
    };
    let attention = 3 * d * d + d * d + qk_gains;
    let h = mlp_hidden_width(cfg) as u64;
    let mlp = match cfg.mlp {
        Mlp::Relu2 | Mlp::Gelu => 2 * d * h,
        Mlp::Swiglu => 3 * d * h,
    };
    norms + attention + mlp
}

/// A looped model's non-embedding parameters by how often each is applied per token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoopedSplit {
    /// Applied once: prelude, coda, norms, loop-invariant injection matrix, readout `C`.
    pub once: u64,
    /// Applied every loop: core blocks and the injection's per-loop parameters.
    pub per_loop: u64,
    /// LoopFormer's conditioning (time and step embedders, the core blocks' adaptive norms):
    /// applied every loop, but once per *sequence*, not per token. 0 without conditioning.
    pub conditioning: u64,
}

/// Parameters of LoopFormer's conditioning at recurrent width `r` with `n_core` core blocks:
/// two embedders `sinusoid(256) → Linear(256, r) → SiLU → Linear(r, r)` (with biases) and one
/// adaptive norm `Linear(r, 4r)` (with bias) per core block.
pub fn conditioning_params(l: &LoopedConfig, r: usize) -> u64 {
    match l.loop_conditioning {
        LoopConditioning::None => 0,
        LoopConditioning::TimeStep => CoreConditioning::param_count(r, l.n_core),
    }
}

/// The looped model's config, panicking for a GPT (a programming error, not a user one).
fn looped_of(cfg: &ModelConfig) -> &LoopedConfig {
    cfg.looped
        .as_ref()
        .expect("arch = looped always carries a LoopedConfig")
}

/// The core's blocks are as wide as the recurrent state.
fn core_config(cfg: &ModelConfig) -> ModelConfig {
    ModelConfig {
        d_model: looped_of(cfg).recurrent_width(cfg.d_model),
        ..cfg.clone()
    }
}

/// Splits a looped model's non-embedding parameters (see the module docs).
pub fn looped_split(cfg: &ModelConfig) -> LoopedSplit {
    let l = looped_of(cfg);
    let (d, r) = (cfg.d_model as u64, l.recurrent_width(cfg.d_model) as u64);
    let (inject_once, inject_per_loop) =
        InjectionLayer::param_split(l.injection, d as usize, r as usize);
    let norms = d + if l.prelude_norm { d } else { 0 };
    // LoopUS: the gate acts every loop; the confidence head is counted per loop too (it is
    // read every loop at evaluation, once per step in training: a small overcount there).
    let gate = match l.loop_gate {
        LoopGate::None => 0,
        LoopGate::Selective => SelectiveGate::param_count(r as usize),
    };
    let exit_head = if l.exit_head {
        ExitHead::param_count(r as usize)
    } else {
        0
    };
    // MELT: the cache gate acts in every loop after the first.
    let cache_gate = if cfg.melt_from.is_some() {
        KvGate::param_count(r as usize, l.n_core)
    } else {
        0
    };
    LoopedSplit {
        once: (l.n_prelude + l.n_coda) as u64 * block_params(cfg) + norms + inject_once + r * d,
        per_loop: l.n_core as u64 * block_params(&core_config(cfg))
            + inject_per_loop
            + gate
            + exit_head
            + cache_gate,
        conditioning: conditioning_params(l, r as usize),
    }
}

/// Parameter counts of the model described by `cfg` with ends `io` (a vocabulary size, or a
/// linear read-in and scalar read-out; unique parameters: a looped core counts once). The
/// read-in (token table or read-in matrix) and an untied head are the embedding parameters.
pub fn param_counts(cfg: &ModelConfig, io: impl Into<Io>) -> ParamCounts {
    let io = io.into();
    let d = cfg.d_model as u64;
    let non_embedding = match cfg.arch {
        Arch::Gpt => cfg.n_layers as u64 * block_params(cfg) + d, // + final norm
        Arch::Looped => {
            let split = looped_split(cfg);
            split.once + split.per_loop + split.conditioning
        }
    };
    let embedding = io.read_in_params(cfg.d_model);
    let untied_head = if io.tied(cfg) {
        0
    } else {
        d * io.out_width() as u64
    };
    ParamCounts {
        total: non_embedding + embedding + untied_head,
        non_embedding,
    }
}

/// Attention's forward FLOPs per token in one block, beyond its projections: `A = 4·d·seq`.
pub fn attention_flops_per_token(cfg: &ModelConfig, seq_len: usize) -> f64 {
    4.0 * cfg.d_model as f64 * seq_len as f64
}

/// Forward FLOPs per token: `2·N_ne + A·L + 2·d·V` for a GPT; a looped model at its
/// `mean_recurrence` loops (see the module docs).
pub fn forward_flops_per_token(cfg: &ModelConfig, io: impl Into<Io>, seq_len: usize) -> f64 {
    let io = io.into();
    match cfg.arch {
        Arch::Gpt => {
            let n_ne = param_counts(cfg, io).non_embedding as f64;
            2.0 * n_ne
                + attention_flops_per_token(cfg, seq_len) * cfg.n_layers as f64
                + ends_flops(cfg, io)
        }
        Arch::Looped => {
            forward_flops_per_token_at(cfg, io, seq_len, looped_of(cfg).mean_recurrence)
        }
    }
}

/// Forward FLOPs per token of the two ends: the head (`2·d·V`, `V` = 1 for a scalar read-out)
/// and a linear read-in (`2·width·d`; a token lookup is free).
fn ends_flops(cfg: &ModelConfig, io: Io) -> f64 {
    2.0 * cfg.d_model as f64 * io.out_width() as f64 + io.read_in_flops(cfg.d_model)
}

/// Forward FLOPs per token of a looped model run for `loops` loops (evaluation at test-time
/// depth): `2·N_once + A·(L_pre + L_coda) + 2T·N_core + T·A_r·L_core + 2·d·V`. For a GPT,
/// `loops` is ignored.
pub fn forward_flops_per_token_at(
    cfg: &ModelConfig,
    io: impl Into<Io>,
    seq_len: usize,
    loops: usize,
) -> f64 {
    let io = io.into();
    if cfg.arch == Arch::Gpt {
        return forward_flops_per_token(cfg, io, seq_len);
    }
    let l = looped_of(cfg);
    let split = looped_split(cfg);
    let t = loops as f64;
    let attn = attention_flops_per_token(cfg, seq_len);
    let attn_core = attention_flops_per_token(&core_config(cfg), seq_len);
    2.0 * split.once as f64
        + attn * (l.n_prelude + l.n_coda) as f64
        + 2.0 * t * (split.per_loop as f64 + per_token(split.conditioning, seq_len))
        + t * attn_core * l.n_core as f64
        + ends_flops(cfg, io)
}

/// A per-sequence parameter count spread over the sequence's tokens.
fn per_token(per_sequence: u64, seq_len: usize) -> f64 {
    per_sequence as f64 / seq_len.max(1) as f64
}

/// Training (forward + backward) FLOPs per token: `6·N_ne + 3·A·L + 6·d·V` for a GPT; for a
/// looped model the loop-split formula of the module docs.
pub fn train_flops_per_token(cfg: &ModelConfig, io: impl Into<Io>, seq_len: usize) -> f64 {
    let io = io.into();
    if cfg.arch == Arch::Gpt {
        return 3.0 * forward_flops_per_token(cfg, io, seq_len);
    }
    let l = looped_of(cfg);
    let split = looped_split(cfg);
    let mu_rec = l.mean_recurrence as f64;
    let mu_bwd = l.backprop_depth().min(l.mean_recurrence) as f64;
    let attn = attention_flops_per_token(cfg, seq_len);
    6.0 * split.once as f64
        + 3.0 * attn * (l.n_prelude + l.n_coda) as f64
        + loops_flops_per_token(cfg, seq_len, mu_rec, mu_bwd)
        + 3.0 * ends_flops(cfg, io)
}

/// Training FLOPs per token of `mu_rec` loops of which `mu_bwd` have gradient: the core, the
/// injection's per-loop work and the conditioning (per sequence, spread over its tokens).
fn loops_flops_per_token(cfg: &ModelConfig, seq_len: usize, mu_rec: f64, mu_bwd: f64) -> f64 {
    let l = looped_of(cfg);
    let split = looped_split(cfg);
    let attn_core = attention_flops_per_token(&core_config(cfg), seq_len);
    (2.0 * mu_rec + 4.0 * mu_bwd) * (split.per_loop as f64 + per_token(split.conditioning, seq_len))
        + (mu_rec + 2.0 * mu_bwd) * attn_core * l.n_core as f64
}

/// Training FLOPs per token of one more decode of a looped model's state (readout `C`, coda
/// blocks, final norm, head: `6·(r·d + N_coda + d) + 3·A·L_coda + 6·d·V`), as Yang et al.'s
/// loss over the last loops' outputs adds per extra output.
pub fn decode_train_flops_per_token(cfg: &ModelConfig, io: impl Into<Io>, seq_len: usize) -> f64 {
    let io = io.into();
    let l = looped_of(cfg);
    let (d, r) = (cfg.d_model as f64, l.recurrent_width(cfg.d_model) as f64);
    let coda = l.n_coda as f64 * block_params(cfg) as f64;
    6.0 * (r * d + coda + d)
        + 3.0 * attention_flops_per_token(cfg, seq_len) * l.n_coda as f64
        + 6.0 * d * io.out_width() as f64
}

/// Training FLOPs per token under shortcut-consistency training (`train.shortcut_consistency`):
/// the plain count of [`train_flops_per_token`] with the long trajectory's `L = mean_recurrence`
/// loops (`μ_bwd = min(backprop_depth, L)`), plus the short trajectory, which shares the
/// embedding, prelude and injection but runs its own loops, readout, coda and head:
///
/// ```text
/// short = E_k[(2k + 4·min(k, b))]·N_core + E_k[k + 2·min(k, b)]·A_r·L_core   (k ~ U{1..L−1})
///         + 6·(N_coda + r·d + d) + 3·A·L_coda + 6·d·V
/// ```
///
/// `E[k] = L/2`: with full backprop the step costs about 1.5× a plain one, as the paper says.
pub fn shortcut_train_flops_per_token(cfg: &ModelConfig, io: impl Into<Io>, seq_len: usize) -> f64 {
    let io = io.into();
    let plain = train_flops_per_token(cfg, io, seq_len);
    if cfg.arch == Arch::Gpt {
        return plain;
    }
    let l = looped_of(cfg);
    let long = l.mean_recurrence;
    if long < 2 {
        return plain;
    }
    let b = l.backprop_depth();
    let lengths = 1..long;
    let n = (long - 1) as f64;
    let mean_k = lengths.clone().sum::<usize>() as f64 / n;
    let mean_bwd = lengths.map(|k| k.min(b)).sum::<usize>() as f64 / n;
    let (d, r) = (cfg.d_model as f64, l.recurrent_width(cfg.d_model) as f64);
    let coda = l.n_coda as f64 * block_params(cfg) as f64 + r * d + d;
    let head = d * io.out_width() as f64;
    plain
        + loops_flops_per_token(cfg, seq_len, mean_k, mean_bwd)
        + 6.0 * coda
        + 3.0 * attention_flops_per_token(cfg, seq_len) * l.n_coda as f64
        + 6.0 * head
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
