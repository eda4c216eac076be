//! In-context linear regression (Garg et al. 2022; Yang et al. 2024's looped study).
//!
//! A prompt draws `w ~ N(0, I_d)` and `n` points `x_i ~ N(0, I_d)` with `y_i = x_iᵀw (+ noise)`.
//! It is `2n` positions of `d + 1` real channels: position `2i` carries `x_i` in channels
//! `0..d`, position `2i + 1` carries `y_i` in channel `d`. (Garg et al. put `y` in the first
//! channel of a `d`-wide vector; a channel of its own keeps `x` and `y` apart.) The model
//! predicts `y_i` at position `2i`, from the `i` pairs before it and `x_i`: every prediction is
//! scored (squared error), the other positions are not.
//!
//! The curriculum (`data.curriculum`) follows Yang et al.'s shape: the active dimensions and
//! points start at a quarter of `d` and `n` (their 5 of 20, 11 of 41) and grow in equal steps to
//! the full size, here over the first half of training rather than in fixed 5k-step increments;
//! inactive dimensions are zero and inactive points are neither shown nor scored.

use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};

/// One prompt: the points and their targets.
#[derive(Clone, Debug, PartialEq)]
pub struct Prompt {
    pub xs: Vec<Vec<f64>>,
    pub ys: Vec<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Regression {
    pub dims: usize,
    pub examples: usize,
    pub noise: f64,
    pub curriculum: bool,
}

impl Regression {
    /// Channels per position: `x` and `y`.
    pub fn width(&self) -> usize {
        self.dims + 1
    }

    /// Positions a prompt of all `examples` pairs takes.
    pub fn context_len(&self) -> usize {
        2 * self.examples
    }

    /// Active `(dims, examples)` at 0-based `step` of `steps`: the full size without a
    /// curriculum, else growing from a quarter to full over the first half of training.
    pub fn sizes_at(&self, step: u64, steps: u64) -> (usize, usize) {
        if !self.curriculum {
            return (self.dims, self.examples);
        }
        let progress = (2.0 * step as f64 / steps.max(1) as f64).min(1.0);
        let grow = |full: usize| {
            let start = full.div_ceil(4).max(1);
            start + ((full - start) as f64 * progress).floor() as usize
        };
        (grow(self.dims), grow(self.examples))
    }

    /// A prompt with `active_dims` nonzero dimensions and `points` pairs.
    pub fn sample(&self, rng: &mut StdRng, active_dims: usize, points: usize) -> Prompt {
        let mut normal = || -> f64 { StandardNormal.sample(rng) };
        let w: Vec<f64> = (0..active_dims).map(|_| normal()).collect();
        let mut xs = Vec::with_capacity(points);
        let mut ys = Vec::with_capacity(points);
        for _ in 0..points {
            let mut x = vec![0.0; self.dims];
            x.iter_mut().take(active_dims).for_each(|v| *v = normal());
            let clean: f64 = x.iter().zip(&w).map(|(a, b)| a * b).sum();
            ys.push(clean + self.noise * normal());
            xs.push(x);
        }
        Prompt { xs, ys }
    }

    /// The model's inputs `(seq_len, d + 1)` row-major and targets `(seq_len,)`: `y_i` at
    /// position `2i`, NaN (unscored) elsewhere.
    pub fn encode(&self, prompt: &Prompt, seq_len: usize) -> (Vec<f32>, Vec<f32>) {
        let width = self.width();
        let mut inputs = vec![0f32; seq_len * width];
        let mut targets = vec![f32::NAN; seq_len];
        for (i, (x, &y)) in prompt.xs.iter().zip(&prompt.ys).enumerate() {
            let (xp, yp) = (2 * i, 2 * i + 1);
            for (c, &v) in x.iter().enumerate() {
                inputs[xp * width + c] = v as f32;
            }
            inputs[yp * width + self.dims] = y as f32;
            targets[xp] = y as f32;
        }
        (inputs, targets)
    }
}
