//! A run's size and cost, known before it trains: steps, tokens, parameters and FLOPs.

use crate::model::{param_counts, train_flops_per_token};
use crate::sweep::RunConfig;

/// Vocabulary of the byte tokenizer, the only tokenizer so far.
pub const BYTE_VOCAB: usize = 256;

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
        let tokens_per_step = (config.train.batch_size * config.data.seq_len) as u64;
        let steps = config.train.tokens.div_ceil(tokens_per_step.max(1));
        let tokens = steps * tokens_per_step;
        let counts = param_counts(&config.model, BYTE_VOCAB);
        let flops = train_flops_per_token(&config.model, BYTE_VOCAB, config.data.seq_len) * tokens as f64;
        Budget { steps, tokens, params: counts.total, non_embedding_params: counts.non_embedding, flops }
    }
}
