//! The range a saturating exponential's rate may take, given where its variable was sampled:
//! what makes a test-time curve's decay one the data can show.

use anyhow::{Result, bail};
use serde::Serialize;

/// The range a saturating exponential's rate may take, set by the sampled values of its
/// variable v (T, or T/μ): A·exp(−k·v) is only a *saturating* decay the data can show when
///
/// - k ≥ 1/(v_max − v_min): a slower decay has not visibly saturated within the samples, so
///   an asymptote L∞ would be an extrapolation the data cannot support (with k at this bound
///   L∞ lies at most 1/(e − 1) ≈ 0.58 of the fitted drop below the last sample);
/// - k ≤ ln(1000)/(v₂ − v₁), v₁ < v₂ the two smallest samples: a faster decay is over (to
///   0.1%) before the second sample, so only A·e^(−k·v₁) is seen and A and k trade off.
///
/// The solver works with κ, ln k = ln k_min + (ln k_max − ln k_min)·σ(κ), so every θ is a
/// valid rate and L-BFGS stays unconstrained; a fit that wants a rate outside the range ends
/// with κ large and k at a bound, which [`RateBounds::at_bound`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RateBounds {
    pub min: f64,
    pub max: f64,
    /// The smallest and largest sampled value of the variable.
    pub lo: f64,
    pub hi: f64,
}

/// Which end of its range a rate sits at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Lower,
    Upper,
}

/// A rate within this fraction of its log range from a bound is at that bound.
const AT_BOUND: f64 = 0.02;

impl Default for RateBounds {
    /// For integer T from 1 to 32 (the widest test-time grid of the shipped sweeps).
    fn default() -> Self {
        RateBounds {
            min: 1.0 / 31.0,
            max: 1000f64.ln(),
            lo: 1.0,
            hi: 32.0,
        }
    }
}

impl RateBounds {
    /// From the sampled values of the exponent's variable; they need two distinct values.
    pub fn of(v: &[f64], what: &str) -> Result<RateBounds> {
        let mut d: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        d.sort_by(f64::total_cmp);
        d.dedup();
        if d.len() < 2 {
            bail!(
                "a saturating exponential in {what} needs at least two distinct values of {what}; found {}",
                d.len()
            );
        }
        let span = d[d.len() - 1] - d[0];
        Ok(RateBounds {
            min: 1.0 / span,
            max: (1000f64.ln() / (d[1] - d[0])).max(2.0 / span),
            lo: d[0],
            hi: d[d.len() - 1],
        })
    }
    fn width(&self) -> f64 {
        self.max.ln() - self.min.ln()
    }
    /// k and dk/dκ at κ.
    #[inline]
    pub fn rate(&self, kappa: f64) -> (f64, f64) {
        let s = 1.0 / (1.0 + (-kappa).exp());
        let k = (self.min.ln() + self.width() * s).exp();
        (k, k * self.width() * s * (1.0 - s))
    }
    /// κ of a rate, clamped inside the range (for starts).
    pub fn kappa(&self, k: f64) -> f64 {
        let s = ((k.ln() - self.min.ln()) / self.width()).clamp(0.01, 0.99);
        (s / (1.0 - s)).ln()
    }
    /// The bound a rate sits at (within 2% of the log range), if any.
    pub fn at_bound(&self, k: f64) -> Option<Bound> {
        let s = (k.ln() - self.min.ln()) / self.width();
        if s <= AT_BOUND {
            Some(Bound::Lower)
        } else if s >= 1.0 - AT_BOUND {
            Some(Bound::Upper)
        } else {
            None
        }
    }
}
