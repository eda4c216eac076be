//! What the data can pin down: profile intervals and the "not identified" verdict.
//!
//! A percentile bootstrap interval collapses when an estimate sits at a bound (E → 0 gives
//! E = 1e-9 [1e-11, 1e-7], a tight-looking interval around nothing). A **profile** widens
//! honestly: one parameter is held at each value of a grid over a wide range, the others are
//! re-minimised, and the values whose objective rises by less than a threshold calibrated to the
//! residual noise are the ones the data allow. The threshold is χ²₁(level) · H_min / (n − p),
//! H_min the best Huber objective, n points, p parameters: with Gaussian residuals (Huber's
//! quadratic part) it is the likelihood-ratio interval; in Huber's linear part (δ = 1e-3, most
//! residuals) it is about twice the Laplace likelihood-ratio threshold, so the interval errs wide.
//!
//! A parameter is **not identified** when its estimate sits at its bound (an asymptote at 0, an
//! exponent at 0, a rate at either end of what its samples can show), when its bootstrap
//! estimates sit at that bound in a sizeable share of resamples ([`BOUND_SHARE`]), or when its
//! profile stays within the noise to the end of its range on either side. A law names, for each
//! derived quantity, the parameters it depends on; a derived quantity is not identified when one
//! of them is not.
//!
//! Pure mathematics over a law and its design, as the rest of `fit`.

use rayon::prelude::*;

pub use super::estimate::{End, ProfileInterval};
use super::huber::Objective;
use super::laws::{Design, Law};
pub use super::profile_spec::{Kind, ProfileSpec};
use super::solve::{SolverOptions, multistart_seq};

/// Resamples at a bound beyond this share make a parameter not identified.
pub const BOUND_SHARE: f64 = 0.1;
/// A scale whose interval spans more than this factor is not identified: the data allow it
/// anywhere over two orders of magnitude.
pub const SCALE_SPAN: f64 = 100.0;
/// An exponent whose interval spans more than this factor (an order of magnitude) is not
/// identified.
pub const EXPONENT_SPAN: f64 = 10.0;

/// χ²₁ quantile at `level` (the square of the normal quantile at (1 + level)/2).
pub fn chi2_1(level: f64) -> f64 {
    let z = normal_quantile(0.5 + level / 2.0);
    z * z
}

/// Acklam's rational approximation of the standard normal quantile (relative error < 1.2e-9).
fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let p = p.clamp(1e-300, 1.0 - 1e-16);
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// The objective rise a profile interval allows: χ²₁(level) · H_min / (n − p); infinite when
/// there are no more points than parameters (no residual left to measure the noise with).
pub fn threshold(best: f64, n: usize, p: usize, level: f64) -> f64 {
    if n <= p {
        return f64::INFINITY;
    }
    // A noiseless fit still allows the rounding of its objective.
    chi2_1(level) * best.max(1e-14 * n as f64) / (n - p) as f64
}

/// A law with one θ coordinate held fixed: the others are its parameters.
struct Fixed<'a, L: Law> {
    law: &'a L,
    j: usize,
    value: f64,
}

impl<L: Law> Fixed<'_, L> {
    fn full(&self, th: &[f64]) -> Vec<f64> {
        let mut v = Vec::with_capacity(th.len() + 1);
        v.extend_from_slice(&th[..self.j]);
        v.push(self.value);
        v.extend_from_slice(&th[self.j..]);
        v
    }
}

impl<L: Law> Law for Fixed<'_, L> {
    fn name(&self) -> String {
        self.law.name()
    }
    fn theta_names(&self) -> Vec<String> {
        let mut n = self.law.theta_names();
        n.remove(self.j);
        n
    }
    fn log_predict(&self, th: &[f64], row: &[f64], g: &mut [f64]) -> f64 {
        let full = self.full(th);
        let mut gf = vec![0.0; full.len()];
        let v = self.law.log_predict(&full, row, &mut gf);
        gf.remove(self.j);
        g.copy_from_slice(&gf);
        v
    }
    fn natural(&self, _th: &[f64]) -> Vec<(String, f64)> {
        Vec::new()
    }
    fn start_grid(&self) -> Vec<Vec<f64>> {
        Vec::new()
    }
}

/// How many of the law's own grid starts a profile step re-minimises from, besides its warm
/// start: the best few at the held value, screened by their objective before any descent.
const FRESH_STARTS: usize = 2;
/// At most this many grid starts are screened per step (an even subsample of a larger grid).
const SCREENED: usize = 256;

/// The law's start grid with the profiled coordinate removed, subsampled evenly to
/// [`SCREENED`] starts; each keeps its full θ so the law itself evaluates it.
struct Screen {
    starts: Vec<Vec<f64>>,
}

impl Screen {
    fn new<L: Law>(law: &L, j: usize) -> Screen {
        let grid = law.start_grid();
        let stride = grid.len().div_ceil(SCREENED).max(1);
        let mut starts: Vec<Vec<f64>> = grid.into_iter().step_by(stride).collect();
        for s in starts.iter_mut() {
            s[j] = 0.0;
        }
        starts.dedup();
        Screen { starts }
    }
}

/// Starts for re-minimising the other parameters with θ_j held at `t`, in the space without
/// θ_j. A profile that only warm-starts stays in the optimum's basin, and a floor traded
/// against a scale/exponent pair over a narrow range has two: the floor at 0 with a shallow
/// power, or the floor high with a steep one. So besides the previous step's optimum and the
/// optimum's own coordinates, each other floor is also tried at the far end of its range (near
/// the smallest loss when it sits low, near 0 when it sits high), and the law's grid starts
/// that score best at the held value are descended from too.
#[allow(clippy::too_many_arguments)]
fn restarts<L: Law>(
    law: &L,
    j: usize,
    t: f64,
    warm: &[f64],
    rest: &[f64],
    floor: f64,
    screen: &Screen,
    whole: &Objective<'_, L>,
) -> Vec<Vec<f64>> {
    let without = |th: &[f64]| {
        let mut v = th.to_vec();
        v.remove(j);
        v
    };
    let index = |k: usize| if k < j { k } else { k - 1 };
    let mut starts = vec![warm.to_vec(), rest.to_vec()];
    for spec in law.profiled() {
        if spec.theta == j || !matches!(spec.kind, Kind::Floor) {
            continue;
        }
        let k = index(spec.theta);
        let high = warm[k].exp() > 0.5 * floor;
        let mut s = warm.to_vec();
        s[k] = if high {
            (1e-3 * floor).ln()
        } else {
            (0.95 * floor).ln()
        };
        starts.push(s);
    }
    let mut scored: Vec<(f64, &Vec<f64>)> = screen
        .starts
        .iter()
        .map(|s| {
            let mut th = s.clone();
            th[j] = t;
            (whole.value(&th), s)
        })
        .filter(|(v, _)| v.is_finite())
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    starts.extend(
        scored
            .into_iter()
            .take(FRESH_STARTS)
            .map(|(_, s)| without(s)),
    );
    starts
}

/// The profile interval of one parameter around the optimum `best` (objective `best_obj`).
pub fn profile<L: Law>(
    law: &L,
    design: &Design,
    delta: f64,
    solver: &SolverOptions,
    (best, best_obj): (&[f64], f64),
    spec: &ProfileSpec,
    threshold: f64,
) -> ProfileInterval {
    let floor = design
        .log_loss
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .exp();
    let others = |th: &[f64]| {
        let mut v = th.to_vec();
        v.remove(spec.theta);
        v
    };
    let rest = others(best);
    let (below, above) = spec.grid(best[spec.theta], floor);
    let screen = Screen::new(law, spec.theta);
    let whole = Objective::new(law, design, delta);
    let walk = |grid: &[f64]| -> End {
        let mut prev_theta = best[spec.theta];
        let mut prev_rise = 0.0;
        let mut warm = rest.clone();
        for &t in grid {
            let fixed = Fixed {
                law,
                j: spec.theta,
                value: t,
            };
            let obj = Objective::new(&fixed, design, delta);
            let starts = restarts(law, spec.theta, t, &warm, &rest, floor, &screen, &whole);
            let ms = multistart_seq(&obj, &starts, solver);
            let rise = ms.best.objective - best_obj;
            if !rise.is_finite() {
                return End::Open;
            }
            if rise > threshold {
                // Linear interpolation of the crossing, in natural units.
                let f = ((threshold - prev_rise) / (rise - prev_rise)).clamp(0.0, 1.0);
                let (a, b) = (spec.natural(prev_theta), spec.natural(t));
                return End::At(a + f * (b - a));
            }
            warm = ms.best.theta;
            prev_theta = t;
            prev_rise = rise.max(0.0);
        }
        // Within the threshold to the end of the grid: a bound for floors, exponents at 0
        // and rates; the end of the range searched for scales and large exponents.
        let last = spec.natural(prev_theta);
        match spec.kind {
            Kind::Floor | Kind::Rate(_) | Kind::Interval(..) => End::Bound(last),
            Kind::Exponent if last <= 1e-9 => End::Bound(last.max(0.0)),
            _ => End::Open,
        }
    };
    // A floor profiled up to the smallest loss: within the threshold there is an open end.
    let hi = match walk(&above) {
        End::Bound(v) if matches!(spec.kind, Kind::Floor) => End::At(v),
        e => e,
    };
    ProfileInterval {
        name: spec.name.clone(),
        lo: walk(&below),
        hi,
        threshold,
    }
}

/// Profiles of every parameter `specs` names, in parallel.
pub fn profiles<L: Law>(
    law: &L,
    design: &Design,
    delta: f64,
    solver: &SolverOptions,
    optimum: (&[f64], f64),
    specs: &[ProfileSpec],
    threshold: f64,
) -> Vec<ProfileInterval> {
    specs
        .par_iter()
        .map(|s| profile(law, design, delta, solver, optimum, s, threshold))
        .collect()
}

/// Why a parameter is not identified, in words; `None` when it is. `interval` is its reported
/// interval (the hull of the percentile and profile intervals; `None` where open).
pub fn verdict(
    spec: &ProfileSpec,
    value: f64,
    floor: f64,
    share_at_bound: Option<f64>,
    profile: Option<&ProfileInterval>,
    interval: (Option<f64>, Option<f64>),
) -> Option<String> {
    let fmt = |v: f64| {
        if v == 0.0 || (1e-3..1e4).contains(&v.abs()) {
            format!("{v:.4}")
        } else {
            format!("{v:.3e}")
        }
    };
    let mut why = Vec::new();
    if spec.at_bound(value, floor) {
        why.push(format!("its estimate {} sits at its bound", fmt(value)));
    }
    if let Some(s) = share_at_bound
        && s >= BOUND_SHARE
    {
        why.push(format!(
            "{:.0}% of bootstrap resamples put it at its bound",
            100.0 * s
        ));
    }
    let open_profile = profile.is_some_and(|p| !(p.lo.determined() && p.hi.determined()));
    if let Some(p) = profile
        && open_profile
    {
        let end = |e: End, side: &str| match e {
            End::At(v) => fmt(v),
            End::Bound(v) => format!("its bound {}", fmt(v)),
            End::Open => format!("beyond the {side} end searched"),
        };
        why.push(format!(
            "its profile stays within the noise from {} to {}",
            end(p.lo, "lower"),
            end(p.hi, "upper")
        ));
    }
    if !open_profile && why.is_empty() {
        let reaches = |v: Option<f64>| v.is_some_and(|v| spec.at_bound(v, floor));
        let span = match spec.kind {
            Kind::Scale => Some(SCALE_SPAN),
            Kind::Exponent => Some(EXPONENT_SPAN),
            _ => None,
        };
        let two_ended = matches!(spec.kind, Kind::Rate(_) | Kind::Interval(..));
        if reaches(interval.0) || (two_ended && reaches(interval.1)) {
            why.push(format!(
                "its interval [{}, {}] reaches its bound",
                interval.0.map_or("open".into(), fmt),
                interval.1.map_or("open".into(), fmt)
            ));
        } else if let (Some(limit), (Some(lo), Some(hi))) = (span, interval)
            && lo > 0.0
            && hi / lo > limit
        {
            why.push(format!(
                "its interval [{}, {}] spans a factor of {:.0}",
                fmt(lo),
                fmt(hi),
                hi / lo
            ));
        }
    }
    (!why.is_empty()).then(|| why.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chi2_quantiles() {
        assert!((chi2_1(0.95) - 3.841_458_820_694_124).abs() < 1e-6);
        assert!((chi2_1(0.68268949) - 1.0).abs() < 1e-6);
        assert!((normal_quantile(0.001) + 3.090_232_306).abs() < 1e-6);
    }

    #[test]
    fn thresholds_scale_with_noise_and_refuse_saturated_fits() {
        let t = threshold(0.02, 12, 3, 0.95);
        assert!((t - 3.841_458_8 * 0.02 / 9.0).abs() < 1e-8);
        assert!(threshold(0.02, 3, 3, 0.95).is_infinite());
    }
}
