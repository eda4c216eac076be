//! A run's size and cost, known before it trains: steps, tokens, parameters, FLOPs, and the
//! memory and disk it will need.
//!
//! # The memory estimate
//!
//! Training holds, in f32 (4 bytes a number): the weights, their gradients and AdamW's two
//! moments (4 numbers per parameter), and the activations the backward pass needs. Per block
//! applied with gradient, per token, a pre-norm block keeps about `10·d + 2·h` numbers (its
//! input, two norm outputs, q, k, v, the attention output and projection, the residual sums,
//! the MLP's pre-activation and activation of width `h`), plus attention's probabilities,
//! `heads · seq` per token. Blocks applied with gradient: every GPT block; a looped model's
//! prelude and coda, and its core `backprop_depth` times (loops before those run without a
//! graph and free their activations). The logits and their gradient add `3·V` per token. The
//! sum is multiplied by [`WORKSPACE_FACTOR`] for the temporaries of the forward and backward
//! passes that live alongside. It is an estimate meant to catch runs that cannot fit at all,
//! not to pack memory tightly. Checkpoints on disk: the newest two are kept, each the weights
//! and both moments.

use super::trainer::total_steps;
use loopscale_config::RunConfig;
use loopscale_model::counts::mlp_hidden_width;
use loopscale_model::{Arch, param_counts};

/// What a run will cost.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunCost {
    pub steps: u64,
    /// Tokens actually trained on: `steps · batch_size · seq_len` (the budget rounded up to whole steps).
    pub tokens: u64,
    pub params: u64,
    pub non_embedding_params: u64,
    pub flops: f64,
    /// The part of `flops` (and of `tokens`) this run trains itself: a WSD branch's path
    /// begins with its trunk's prefix, trained once by the trunk for all its branches.
    pub own_flops: f64,
    pub own_tokens: u64,
    /// Estimated peak memory of training, in bytes (see the module docs).
    pub peak_memory_bytes: f64,
    /// Disk taken by the run's checkpoints (the newest two are kept), in bytes.
    pub checkpoint_bytes: f64,
}

/// Bytes of one number in training (f32).
const BYTES: f64 = 4.0;
/// Slack for the temporaries alive beside the saved activations during forward and backward.
pub const WORKSPACE_FACTOR: f64 = 1.5;

impl RunCost {
    pub fn of(config: &RunConfig) -> RunCost {
        let steps = total_steps(config);
        let tokens = steps * (config.train.batch_size * config.data.seq_len) as u64;
        let counts = param_counts(&config.model, config.data.io());
        let flops = config.train_flops_per_token() * tokens as f64;
        // A branch starts at its parent's step; a recast run only takes its parent's weights
        // (its own budget starts at 0).
        let inherited = match &config.lineage {
            Some(l) if l.role == loopscale_config::Role::Branch => l.parent_step.unwrap_or(0),
            _ => 0,
        }
        .min(steps);
        let own_tokens =
            (steps - inherited) * (config.train.batch_size * config.data.seq_len) as u64;
        RunCost {
            steps,
            tokens,
            params: counts.total,
            non_embedding_params: counts.non_embedding,
            flops,
            own_flops: flops * (steps - inherited) as f64 / steps.max(1) as f64,
            own_tokens,
            peak_memory_bytes: peak_memory_bytes(config, counts.total),
            checkpoint_bytes: 2.0 * 3.0 * BYTES * counts.total as f64,
        }
    }

    /// Tokens the run's path has trained after `step` optimizer steps (a checkpoint's step).
    pub fn tokens_at(&self, step: u64) -> u64 {
        step * (self.tokens / self.steps.max(1))
    }

    /// The part of [`RunCost::own_flops`] done once the run's path has trained `tokens` tokens
    /// (counted from the path's start, as the trainer counts them: a branch's count starts at
    /// its trunk's prefix, which this run did not train).
    pub fn own_flops_done(&self, tokens: u64) -> f64 {
        let inherited = self.tokens - self.own_tokens;
        let own = tokens.saturating_sub(inherited).min(self.own_tokens);
        self.own_flops * own as f64 / self.own_tokens.max(1) as f64
    }
}

/// Weights, gradients, AdamW moments and saved activations at the peak of a training step.
fn peak_memory_bytes(config: &RunConfig, params: u64) -> f64 {
    let model = &config.model;
    let tokens = (config.train.batch_size * config.data.seq_len) as f64;
    let per_block = |d: usize| {
        let hidden = mlp_hidden_width(&loopscale_model::ModelConfig {
            d_model: d,
            ..model.clone()
        });
        (10 * d + 2 * hidden) as f64 + (model.n_heads * config.data.seq_len) as f64
    };
    let d = model.d_model;
    let graph_blocks = match (model.arch, &model.looped) {
        (Arch::Looped, Some(l)) => {
            (l.n_prelude + l.n_coda) as f64 * per_block(d)
                + (l.n_core * l.backprop_depth()) as f64 * per_block(l.recurrent_width(d))
        }
        _ => model.n_layers as f64 * per_block(d),
    };
    let activations = tokens * (graph_blocks + 3.0 * config.data.io().out_width() as f64) * BYTES;
    let state = 4.0 * BYTES * params as f64;
    WORKSPACE_FACTOR * (state + activations)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_grows_with_batch_and_depth_and_counts_the_optimizer() {
        let mut config = RunConfig {
            data: Default::default(),
            train: Default::default(),
            model: Default::default(),
            seed: 0,
            lineage: None,
        };
        let base = RunCost::of(&config);
        // Weights, gradients and two moments: at least 16 bytes a parameter.
        assert!(base.peak_memory_bytes > 16.0 * base.params as f64);
        assert_eq!(base.checkpoint_bytes, 24.0 * base.params as f64);
        config.train.batch_size *= 2;
        let bigger_batch = RunCost::of(&config).peak_memory_bytes;
        assert!(bigger_batch > base.peak_memory_bytes);
        config.model.n_layers *= 4;
        assert!(RunCost::of(&config).peak_memory_bytes > bigger_batch);
    }

    #[test]
    fn a_branch_counts_only_the_flops_it_trains_itself() {
        use loopscale_config::{Lineage, Role};
        let mut config = RunConfig {
            data: Default::default(),
            train: Default::default(),
            model: Default::default(),
            seed: 0,
            lineage: None,
        };
        let whole = RunCost::of(&config);
        assert_eq!(whole.own_flops_done(whole.tokens / 2), whole.flops / 2.0);
        let half = whole.steps / 2;
        config.lineage = Some(Lineage {
            role: Role::Branch,
            parent: Some("trunk".into()),
            parent_step: Some(half),
            branch_points: Vec::new(),
        });
        let branch = RunCost::of(&config);
        let per_step = branch.tokens / branch.steps;
        // At its start (the trunk's checkpoint) it has done none of its own work; at its end all.
        assert_eq!(branch.own_flops_done(half * per_step), 0.0);
        assert_eq!(branch.own_flops_done(branch.tokens), branch.own_flops);
        assert!(branch.own_flops < 0.6 * branch.flops);
        let midway = branch.own_flops_done((half + (branch.steps - half) / 2) * per_step);
        assert!((midway / branch.own_flops - 0.5).abs() < 0.05);
    }
}
