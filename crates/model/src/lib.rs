//! The networks: a pre-norm GPT and the looped (Parcae) model built from the same block,
//! each looped variant a part given to the looped core, plus their parameter and FLOP counts.
//!
//! Read in this order, each file using only those above it:
//! - [`config`]: the shape of a network (what a sweep may vary) and its derived widths;
//! - [`params`]: the parameter registry, seeded init, weight-decay groups; [`grad`]: graph-free
//!   forward passes for evaluation;
//! - [`fused`], [`fused_attention`]: fused CPU kernels (custom ops with backward) for the
//!   element-wise work and attention; [`precision`]: mixed precision's `autocast` scope, and
//!   [`bf16_gemm`], [`bf16_matmul`]: the bf16 matrix product (an AVX512-BF16 kernel, and the
//!   custom op with its backward); [`ops`]: the operations the layers are written in — the
//!   fused kernels on the CPU, candle compositions on other devices (the one place that looks
//!   at the device);
//! - [`layers`]: RMSNorm, RoPE, attention, MLPs, the block and a stack of blocks, the losses;
//! - [`io`]: the two ends — token embedding and LM head, or a linear read-in and scalar
//!   read-out for continuous inputs;
//! - [`gpt`]: the GPT baseline;
//! - [`plan`]: how many loops each sequence runs, and with how much backprop;
//! - [`injection`]: Parcae's injection of the prelude's output into the recurrent state;
//! - [`parts`]: what a variant may add to a loop (a conditioner, a state update, an exit policy);
//! - [`conditioning`]: LoopFormer's time/step conditioning, adaptive norms and trajectories;
//! - [`loopus`]: LoopUS's selective gate, confidence head and random deep supervision;
//! - [`melt`]: MELT's gate and its KV cache shared by every loop, run chunk by chunk;
//! - [`core_cache`]: the looped core's KV cache policy — none (training), one per loop
//!   (decoding), or MELT's shared one — the only thing that differs between the core's uses;
//! - [`variants`]: which parts a configuration asks for;
//! - [`looped`]: the looped (Parcae) model: prelude → injected recurrent core × T → coda;
//! - [`lm`]: the interface a trainer drives ([`CausalLm`]) and the loss;
//! - [`generate`]: decoding a token at a time through KV caches, and sampling;
//! - [`recast`]: a trained GPT's weights as a looped model's (LoopUS recasting), and the
//!   choice of its core from the GPT's representation dynamics;
//! - [`counts`]: parameters and FLOPs by arithmetic, each part stating its own.
//!
//! The training objectives (Parcae's sampled depth, LoopFormer's shortcut consistency, LoopUS's
//! deep supervision and early exit, Yang et al.'s last-loops loss) are the training code's:
//! `train::objectives`.

pub mod bf16_gemm;
pub mod bf16_matmul;
pub mod conditioning;
mod config;
pub mod core_cache;
pub mod counts;
pub mod fused;
pub mod fused_attention;
pub mod generate;
pub mod gpt;
pub mod grad;
pub mod injection;
pub mod io;
pub mod layers;
pub mod lm;
pub mod looped;
pub mod loopus;
pub mod melt;
pub mod ops;
pub mod params;
pub mod parts;
pub mod plan;
pub mod precision;
pub mod recast;
pub mod variants;

pub use config::{
    Arch, AutoSplit, DepthSampling, Init, Injection, LoopConditioning, LoopGate, LoopedConfig, Mlp,
    ModelConfig, Parametrization, RecastSplit, StateInit, head_dim, mlp_hidden_width,
};
pub use counts::{
    LoopedSplit, ParamCounts, conditioning_params, decode_train_flops_per_token,
    forward_flops_per_token, forward_flops_per_token_at, looped_split, param_counts,
    shortcut_train_flops_per_token, train_flops_per_token,
};
pub use generate::{Decoder, Sampling, generate};
pub use gpt::Gpt;
pub use io::{Io, ReadIn};
pub use layers::{KvCache, cross_entropy};
pub use lm::{CausalLm, IGNORE, lm_loss, masked_loss};
pub use looped::{Looped, LoopedCache, LoopedOutput};
pub use params::{Param, ParamRole, ParamStore};
pub use parts::LoopStep;
pub use plan::LoopPlan;
pub use precision::{Precision, autocast, bf16_available};
