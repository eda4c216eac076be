//! The fitting objective: the Huber loss of log-loss residuals, Σᵢ wᵢ·ρ_δ(log L̂ᵢ − log Lᵢ),
//! and its analytic gradient. As in Hoffmann et al. and Epoch AI the sum is not divided by
//! n, so objective values are comparable with theirs.
//!
//! With δ = 1e-3 and residuals of ~1e-2 the loss is linear for most points, which makes
//! the fit close to least-absolute-deviations in log space: robust to the few bad points.
//! Point weights carry bootstrap multiplicities, so a resample needs no copy of the data.

use super::laws::{Design, Law};

/// Epoch AI's and Hoffmann et al.'s δ.
pub const DEFAULT_HUBER_DELTA: f64 = 1e-3;

/// ρ_δ(r) = r²/2 for |r| ≤ δ, δ(|r| − δ/2) beyond.
#[inline]
pub fn huber(r: f64, delta: f64) -> f64 {
    let a = r.abs();
    if a <= delta {
        0.5 * r * r
    } else {
        delta * (a - 0.5 * delta)
    }
}

/// ρ'_δ(r) = clamp(r, −δ, δ).
#[inline]
pub fn huber_deriv(r: f64, delta: f64) -> f64 {
    r.clamp(-delta, delta)
}

/// The objective of one fit: a law, its data, optional per-point weights, and δ.
pub struct Objective<'a, L: Law> {
    pub law: &'a L,
    pub design: &'a Design,
    pub weights: Option<&'a [f64]>,
    pub delta: f64,
}

impl<'a, L: Law> Objective<'a, L> {
    pub fn new(law: &'a L, design: &'a Design, delta: f64) -> Self {
        Objective {
            law,
            design,
            weights: None,
            delta,
        }
    }
    pub fn weighted(mut self, weights: &'a [f64]) -> Self {
        self.weights = Some(weights);
        self
    }

    /// Objective value; overwrites `grad` with its gradient in θ.
    pub fn value_grad(&self, theta: &[f64], grad: &mut [f64]) -> f64 {
        let p = theta.len();
        grad[..p].fill(0.0);
        // Fixed-size scratch for ∂ log L̂/∂θ; pooled laws with many curves fall back to the heap.
        let mut small = [0.0f64; 16];
        let mut big = Vec::new();
        let g_i: &mut [f64] = if p <= 16 {
            &mut small[..p]
        } else {
            big.resize(p, 0.0);
            &mut big
        };
        let mut total = 0.0;
        for i in 0..self.design.len() {
            let w = self.weights.map_or(1.0, |w| w[i]);
            if w == 0.0 {
                continue;
            }
            let pred = self.law.log_predict(theta, self.design.row(i), g_i);
            let r = pred - self.design.log_loss[i];
            total += w * huber(r, self.delta);
            let s = w * huber_deriv(r, self.delta);
            for (g, gi) in grad.iter_mut().zip(g_i.iter()) {
                *g += s * gi;
            }
        }
        total
    }

    pub fn value(&self, theta: &[f64]) -> f64 {
        let mut g = vec![0.0; theta.len()];
        self.value_grad(theta, &mut g)
    }

    /// Residuals log L̂ − log L, unweighted.
    pub fn residuals(&self, theta: &[f64]) -> Vec<f64> {
        let mut g = vec![0.0; theta.len()];
        (0..self.design.len())
            .map(|i| {
                self.law.log_predict(theta, self.design.row(i), &mut g) - self.design.log_loss[i]
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huber_is_quadratic_then_linear_and_c1() {
        let d = 1e-3;
        assert_eq!(huber(5e-4, d), 0.5 * 5e-4 * 5e-4);
        assert!((huber(-0.01, d) - d * (0.01 - 0.5 * d)).abs() < 1e-18);
        // Continuous value and slope at the kink.
        assert!((huber(d, d) - huber(d * (1.0 + 1e-12), d)).abs() < 1e-15);
        assert_eq!(huber_deriv(0.5, d), d);
        assert_eq!(huber_deriv(-0.5, d), -d);
        assert_eq!(huber_deriv(2e-4, d), 2e-4);
    }
}
