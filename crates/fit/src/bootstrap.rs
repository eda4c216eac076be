//! Nonparametric bootstrap: resampling points with replacement (as multiplicity weights),
//! seeded per resample so results do not depend on thread count or scheduling, and
//! percentile intervals.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

#[derive(Debug, Clone, Copy, Serialize)]
pub struct BootstrapOptions {
    pub resamples: usize,
    /// Central coverage of the percentile interval (0.95 → 2.5th and 97.5th percentiles).
    pub level: f64,
    pub seed: u64,
    /// Extra starts per resample, perturbed around the full-data optimum (see
    /// `parametric::fit_law`).
    pub perturbed_starts: usize,
}

impl Default for BootstrapOptions {
    fn default() -> Self {
        BootstrapOptions {
            resamples: 1000,
            level: 0.95,
            seed: 0,
            perturbed_starts: 3,
        }
    }
}

/// Independent stream for resample `b`: mixing the index through SplitMix64 keeps nearby
/// (seed, b) pairs from producing correlated ChaCha keys' worth of structure.
pub fn rng_for(seed: u64, b: u64) -> StdRng {
    let mut z = seed ^ b.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    StdRng::seed_from_u64(z ^ (z >> 31))
}

/// Multiplicities of a size-n resample with replacement of n points.
pub fn resample_weights(n: usize, rng: &mut impl Rng) -> Vec<f64> {
    let mut w = vec![0.0; n];
    for _ in 0..n {
        w[rng.random_range(0..n)] += 1.0;
    }
    w
}

/// Multiplicities of a stratified resample: each stratum (e.g. FLOP budget) is resampled
/// with replacement within itself, so every resample keeps every stratum's size.
pub fn stratified_weights(n: usize, strata: &[Vec<usize>], rng: &mut impl Rng) -> Vec<f64> {
    let mut w = vec![0.0; n];
    for s in strata {
        for _ in 0..s.len() {
            w[s[rng.random_range(0..s.len())]] += 1.0;
        }
    }
    w
}

/// The `q`-quantile of sorted values, linear interpolation between order statistics
/// (NumPy's default), so intervals match `np.percentile`.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let h = q.clamp(0.0, 1.0) * (n - 1) as f64;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Percentile interval at central coverage `level` over the finite values.
pub fn percentile_interval(values: &[f64], level: f64) -> (f64, f64) {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let tail = (1.0 - level) / 2.0;
    (quantile_sorted(&v, tail), quantile_sorted(&v, 1.0 - tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_match_numpy_linear() {
        let v: Vec<f64> = (1..=5).map(f64::from).collect();
        assert_eq!(quantile_sorted(&v, 0.5), 3.0);
        assert_eq!(quantile_sorted(&v, 0.1), 1.4);
        let (lo, hi) = percentile_interval(&[5.0, 1.0, f64::NAN, 3.0, 2.0, 4.0], 0.5);
        assert_eq!((lo, hi), (2.0, 4.0));
    }

    #[test]
    fn resamples_are_reproducible_and_sized() {
        let a = resample_weights(50, &mut rng_for(3, 7));
        let b = resample_weights(50, &mut rng_for(3, 7));
        let c = resample_weights(50, &mut rng_for(3, 8));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.iter().sum::<f64>(), 50.0);
        let strata = vec![vec![0, 1, 2], vec![3, 4]];
        let w = stratified_weights(5, &strata, &mut rng_for(1, 0));
        assert_eq!(w[..3].iter().sum::<f64>(), 3.0);
        assert_eq!(w[3..].iter().sum::<f64>(), 2.0);
    }
}
