//! How many loops each sequence of a batch runs, and through how many of them gradients flow.
//!
//! In training each sequence `i` of a batch draws its own depth `n_i` (Poisson(μ) clamped ≥ 1,
//! or fixed = μ) and gets gradients through its last `k_i = min(n_i, backprop_depth)` loops. The
//! batch runs `N = max n_i` loops with sequences *aligned at their end*: sequence `i` is active
//! in loops `j ≥ N − n_i` (0-based) and keeps its state unchanged before that (the looped model's
//! `recur` masks it), so it sees exactly `n_i` injections and core passes. The loops no sequence
//! needs a gradient through are `j < N − K`, `K = min(N, backprop_depth)`: see
//! [`super::looped`] for why the masked batch gives each sequence the gradient it would get alone.
//!
//! A conditioned (LoopFormer) model also needs each loop's place on its trajectory: a plan either
//! gives every sequence one schedule of step sizes ([`LoopPlan::with_steps`]) or lets sequence
//! `i` take `n_i` steps of `1/n_i`.

use candle_core::{Device, Result, Tensor};
use rand::rngs::StdRng;
use rand_distr::{Distribution, Poisson};

use super::config::{DepthSampling, LoopedConfig};

/// How many loops each sequence of a batch runs, and through how many gradients flow.
#[derive(Clone, Debug, PartialEq)]
pub struct LoopPlan {
    depths: Vec<usize>,
    backprop_depth: usize,
    /// A schedule every sequence follows (conditioned models): `depths[i] = steps.len()` and
    /// loop `j` has step size `steps[j]`. `None`: sequence `i` takes `n_i` steps of `1/n_i`.
    steps: Option<Vec<f64>>,
}

impl LoopPlan {
    /// Sequence `i` runs `depths[i] ≥ 1` loops, the last `min(depths[i], backprop_depth)` with
    /// gradient.
    pub fn new(depths: Vec<usize>, backprop_depth: usize) -> Self {
        assert!(
            !depths.is_empty() && depths.iter().all(|&n| n >= 1),
            "loop depths must be ≥ 1: {depths:?}"
        );
        assert!(backprop_depth >= 1, "backprop_depth must be ≥ 1");
        LoopPlan {
            depths,
            backprop_depth,
            steps: None,
        }
    }

    /// Every sequence follows the schedule `steps` (one loop per step), the last
    /// `min(steps.len(), backprop_depth)` loops with gradient.
    pub fn with_steps(batch: usize, steps: Vec<f64>, backprop_depth: usize) -> Self {
        let mut plan = LoopPlan::new(vec![steps.len(); batch], backprop_depth);
        plan.steps = Some(steps);
        plan
    }

    /// Each sequence's `(t, Δt)` in loop `j` (see [`LoopPlan::with_steps`]); a sequence not yet
    /// active in loop `j` gets `(0, Δt of its first loop)`, which its mask discards.
    pub fn times_at(&self, j: usize) -> (Vec<f64>, Vec<f64>) {
        if let Some(steps) = &self.steps {
            let t: f64 = steps[..j].iter().sum();
            let n = self.depths.len();
            return (vec![t; n], vec![steps[j]; n]);
        }
        let total = self.total_loops();
        self.depths
            .iter()
            .map(|&d| {
                let local = (j + d).saturating_sub(total);
                (local as f64 / d as f64, 1.0 / d as f64)
            })
            .unzip()
    }

    /// Every sequence runs `loops` loops, all with gradient (evaluation, gradient checks).
    pub fn uniform(batch: usize, loops: usize) -> Self {
        LoopPlan::new(vec![loops; batch], loops.max(1))
    }

    /// Training depths for a batch, drawn from `rng` as `cfg.depth_sampling` says.
    pub fn sample(cfg: &LoopedConfig, batch: usize, rng: &mut StdRng) -> Result<Self> {
        let depths = match cfg.depth_sampling {
            DepthSampling::Fixed => vec![cfg.mean_recurrence; batch],
            DepthSampling::Poisson => {
                let poisson =
                    Poisson::new(cfg.mean_recurrence as f64).map_err(candle_core::Error::wrap)?;
                (0..batch)
                    .map(|_| (poisson.sample(rng) as usize).max(1))
                    .collect()
            }
        };
        Ok(LoopPlan::new(depths, cfg.backprop_depth()))
    }

    pub fn depths(&self) -> &[usize] {
        &self.depths
    }

    /// `N = max n_i`: loops the batch runs.
    pub fn total_loops(&self) -> usize {
        *self.depths.iter().max().expect("non-empty")
    }

    /// `N − K`, `K = min(N, backprop_depth)`: loops before this one run without a graph.
    pub fn first_graph_loop(&self) -> usize {
        let n = self.total_loops();
        n - n.min(self.backprop_depth)
    }

    /// `(batch, 1, 1)` u8 mask of the sequences active in loop `j`, or `None` when all are.
    pub fn active_mask(&self, j: usize, device: &Device) -> Result<Option<Tensor>> {
        let n = self.total_loops();
        if self.depths.iter().all(|&d| j >= n - d) {
            return Ok(None);
        }
        let mask: Vec<u8> = self.depths.iter().map(|&d| u8::from(j >= n - d)).collect();
        Ok(Some(Tensor::from_vec(
            mask,
            (self.depths.len(), 1, 1),
            device,
        )?))
    }
}
