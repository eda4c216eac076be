//! How a law declares each parameter it profiles (`fit::identify`): where it sits in θ, its
//! kind (asymptote, scale, exponent, rate), the grid a profile walks and where its bound is.

use super::rates::RateBounds;

/// How a natural parameter sits in θ, and so how it is profiled and where its bound is.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// An asymptote (E, L∞): θ = ln P, P from 0 (its bound) to the smallest observed loss;
    /// profiled over that whole range.
    Floor,
    /// A scale (A, X, Y, Z): θ = ln P, profiled over ln P ± 8 (a factor of about 3000).
    Scale,
    /// An exponent (α, x, y): θ = P, meaningful from 0 (its bound: loss does not fall);
    /// profiled from P − max(P, 0.05) to P + 3·max(P, 0.05).
    Exponent,
    /// A saturating rate within its [`RateBounds`]: θ = κ; profiled over the whole range, both
    /// ends bounds.
    Rate(RateBounds),
    /// A parameter a written law confines to [lo, hi]: θ = logit((P − lo)/(hi − lo)); profiled
    /// over the whole range, both ends bounds.
    Interval(f64, f64),
    /// A parameter of either sign with no bound (a written law's free parameter): θ = P;
    /// profiled from P − 3·max(|P|, 0.1) to P + 3·max(|P|, 0.1), both ends open.
    Free,
}

/// σ(θ) mapped onto [lo, hi].
pub fn interval_value(lo: f64, hi: f64, th: f64) -> f64 {
    lo + (hi - lo) / (1.0 + (-th).exp())
}

/// θ of a value inside [lo, hi], kept a hair inside the ends (for starts and grids).
pub fn interval_theta(lo: f64, hi: f64, v: f64) -> f64 {
    let s = ((v - lo) / (hi - lo)).clamp(1e-6, 1.0 - 1e-6);
    (s / (1.0 - s)).ln()
}

/// One parameter a law profiles: its natural name, its index in θ and its kind.
#[derive(Debug, Clone)]
pub struct ProfileSpec {
    pub name: String,
    pub theta: usize,
    pub kind: Kind,
}

impl ProfileSpec {
    pub fn new(name: &str, theta: usize, kind: Kind) -> ProfileSpec {
        ProfileSpec {
            name: name.into(),
            theta,
            kind,
        }
    }
    pub fn natural(&self, th: f64) -> f64 {
        match self.kind {
            Kind::Floor | Kind::Scale => th.exp(),
            Kind::Exponent => th,
            Kind::Rate(b) => b.rate(th).0,
            Kind::Interval(lo, hi) => interval_value(lo, hi, th),
            Kind::Free => th,
        }
    }
    /// Whether a natural value sits at the parameter's bound; `floor` is the smallest loss.
    pub fn at_bound(&self, value: f64, floor: f64) -> bool {
        match self.kind {
            Kind::Floor => value < AT_ZERO * floor,
            Kind::Scale => false,
            Kind::Exponent => value <= AT_ZERO,
            Kind::Rate(b) => b.at_bound(value).is_some(),
            Kind::Interval(lo, hi) => {
                let s = (value - lo) / (hi - lo);
                !(AT_ZERO..=1.0 - AT_ZERO).contains(&s)
            }
            Kind::Free => false,
        }
    }
    /// θ values to visit below and above θ̂, each list walking away from it.
    pub fn grid(&self, th: f64, floor: f64) -> (Vec<f64>, Vec<f64>) {
        match self.kind {
            Kind::Floor => {
                let e = th.exp();
                let pts: Vec<f64> = (0..=FLOOR_STEPS)
                    .map(|k| floor * (1.0 - 1e-4) * k as f64 / FLOOR_STEPS as f64)
                    .map(|v| v.max(1e-12 * floor).ln())
                    .collect();
                let mut below: Vec<f64> = pts.iter().copied().filter(|&t| t.exp() < e).collect();
                below.reverse();
                let above = pts.into_iter().filter(|&t| t.exp() > e).collect();
                (below, above)
            }
            Kind::Scale => (
                (1..=16).map(|k| th - 0.5 * k as f64).collect(),
                (1..=16).map(|k| th + 0.5 * k as f64).collect(),
            ),
            Kind::Exponent => {
                let s = th.abs().max(0.05);
                (
                    (1..=8).map(|k| th - s * k as f64 / 8.0).collect(),
                    (1..=24).map(|k| th + s * k as f64 / 8.0).collect(),
                )
            }
            Kind::Interval(lo, hi) => {
                let v = interval_value(lo, hi, th);
                let n = 30;
                let vs: Vec<f64> = (0..=n)
                    .map(|i| lo + (hi - lo) * (1e-4 + (1.0 - 2e-4) * i as f64 / n as f64))
                    .collect();
                let mut below: Vec<f64> = vs
                    .iter()
                    .filter(|&&x| x < v)
                    .map(|&x| interval_theta(lo, hi, x))
                    .collect();
                below.reverse();
                let above = vs
                    .iter()
                    .filter(|&&x| x > v)
                    .map(|&x| interval_theta(lo, hi, x))
                    .collect();
                (below, above)
            }
            Kind::Free => {
                let s = th.abs().max(0.1);
                (
                    (1..=24).map(|k| th - s * k as f64 / 8.0).collect(),
                    (1..=24).map(|k| th + s * k as f64 / 8.0).collect(),
                )
            }
            Kind::Rate(b) => {
                let k_hat = b.rate(th).0;
                let n = 30;
                let ks: Vec<f64> = (0..=n)
                    .map(|i| (b.min.ln() + (b.max.ln() - b.min.ln()) * i as f64 / n as f64).exp())
                    .collect();
                // κ of a rate at the very ends of the range: close enough to the bound.
                let kappa = |k: f64| {
                    let s =
                        ((k.ln() - b.min.ln()) / (b.max.ln() - b.min.ln())).clamp(1e-4, 1.0 - 1e-4);
                    (s / (1.0 - s)).ln()
                };
                let mut below: Vec<f64> = ks
                    .iter()
                    .filter(|&&k| k < k_hat)
                    .map(|&k| kappa(k))
                    .collect();
                below.reverse();
                let above = ks
                    .iter()
                    .filter(|&&k| k > k_hat)
                    .map(|&k| kappa(k))
                    .collect();
                (below, above)
            }
        }
    }
}

/// A Floor or Exponent estimate below this fraction (of the smallest loss, for a floor) is at 0.
const AT_ZERO: f64 = 1e-3;
/// Steps of a floor's profile between 0 and the smallest loss.
const FLOOR_STEPS: usize = 40;
