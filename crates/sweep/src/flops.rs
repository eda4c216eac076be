//! `train.flops`: a training-FLOP budget instead of a token budget.
//!
//! A run with a budget trains `round(budget / FLOPs per step)` whole steps, at least one, so
//! its realised FLOPs lie within half a step of the budget; its `train.tokens` becomes what
//! those steps consume. FLOPs per step are [`RunConfig::train_flops_per_token`] (the count `plan` shows
//! and the store records) × `batch_size · seq_len`. The budget stays in the run's
//! configuration, so it is part of the run key and a grid axis like any scalar.

use loopscale_config::RunConfig;

/// Training FLOPs of one optimizer step of this run.
pub fn step_flops(c: &RunConfig) -> f64 {
    let tokens_per_step = (c.train.batch_size * c.data.seq_len) as f64;
    c.train_flops_per_token() * tokens_per_step
}

/// Sets `train.tokens` from `train.flops` when a budget is given. A budget below one step (or
/// not a positive number) leaves 0 tokens, which validation reports with the smallest valid
/// budget.
pub(crate) fn resolve(c: &mut RunConfig) {
    let Some(budget) = c.train.flops else {
        return;
    };
    let per_step = step_flops(c);
    let steps = if budget.is_finite() && per_step > 0.0 && budget >= per_step {
        (budget / per_step).round().max(1.0) as u64
    } else {
        0
    };
    c.train.tokens = steps * (c.train.batch_size * c.data.seq_len) as u64;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_becomes_whole_steps_within_half_a_step() {
        let mut c = RunConfig {
            data: Default::default(),
            train: Default::default(),
            model: Default::default(),
            seed: 0,
            lineage: None,
        };
        let per_step = step_flops(&c);
        for budget in [1.0, 1.49, 1.51, 7.3, 100.0].map(|k| k * per_step) {
            c.train.flops = Some(budget);
            resolve(&mut c);
            let steps = c.train.tokens / (c.train.batch_size * c.data.seq_len) as u64;
            let realised = steps as f64 * per_step;
            assert!(steps >= 1);
            assert!(
                (realised - budget).abs() <= 0.5 * per_step,
                "{budget} → {realised}"
            );
        }
        c.train.flops = Some(0.9 * per_step);
        resolve(&mut c);
        assert_eq!(
            c.train.tokens, 0,
            "below one step: left for validation to report"
        );
    }
}
