//! The networks: a pre-norm GPT and the looped (Parcae) model built from the same block,
//! plus their parameter and FLOP counts.
//!
//! - [`params`]: the parameter registry, seeded init, weight-decay groups;
//! - [`layers`]: RMSNorm, RoPE, attention, MLPs, the block and a stack of blocks, the loss;
//! - [`gpt`]: the GPT baseline;
//! - [`counts`]: parameters and FLOPs by arithmetic.

mod config;
pub mod counts;
pub mod gpt;
pub mod layers;
pub mod params;

pub use config::{Arch, DepthSampling, Injection, LoopedConfig, Mlp, ModelConfig, StateInit};
pub use counts::{ParamCounts, forward_flops_per_token, param_counts, train_flops_per_token};
pub use gpt::Gpt;
pub use layers::cross_entropy;
pub use params::{DecayGroup, Param, ParamStore};

use candle_core::{Result, Tensor};

/// A next-token predictor the trainer and the evaluator can drive.
pub trait CausalLm {
    /// Logits `(batch, time, vocab)` for `input_ids` `(batch, time)` of u32 token ids.
    fn logits(&self, input_ids: &Tensor) -> Result<Tensor>;

    /// Mean cross-entropy (nats per token) of predicting `targets` `(batch, time)`.
    fn loss(&self, input_ids: &Tensor, targets: &Tensor) -> Result<Tensor> {
        let logits = self.logits(input_ids)?;
        let vocab = logits.dim(2)?;
        cross_entropy(&logits.reshape(((), vocab))?, &targets.flatten_all()?)
    }

    /// Its trainable parameters.
    fn params(&self) -> &ParamStore;
}
