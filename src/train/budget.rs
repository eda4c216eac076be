//! A run's size and cost, known before it trains: steps, tokens, parameters and FLOPs.

use super::data::BYTE_VOCAB;
use super::trainer::total_steps;
use crate::model::{param_counts, train_flops_per_token};
use crate::sweep::RunConfig;

/// What a run will cost.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Budget {
    pub steps: u64,
    /// Tokens actually trained on: `steps · batch_size · seq_len` (the budget rounded up to whole steps).
    pub tokens: u64,
    pub params: u64,
    pub non_embedding_params: u64,
    pub flops: f64,
}

impl Budget {
    pub fn of(config: &RunConfig) -> Budget {
        let steps = total_steps(config);
        let tokens = steps * (config.train.batch_size * config.data.seq_len) as u64;
        let counts = param_counts(&config.model, BYTE_VOCAB);
        let flops =
            train_flops_per_token(&config.model, BYTE_VOCAB, config.data.seq_len) * tokens as f64;
        Budget {
            steps,
            tokens,
            params: counts.total,
            non_embedding_params: counts.non_embedding,
            flops,
        }
    }
}
