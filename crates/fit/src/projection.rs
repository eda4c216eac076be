//! The loss surface L(N, D) = E + A·N^−α + B·D^−β fitted directly by variable projection
//! (Hoffmann et al.'s approach 3, done the way Czech et al. do it in "Problems with Chinchilla
//! Approach 2" and its VPNLS method, Open-Athena/vpnls; the idea is theirs, the code is ours).
//!
//! **Variable projection.** For fixed exponents (α, β) the model is linear in (E, A, B), so the
//! best non-negative (E, A, B) is a 3-variable non-negative least-squares problem, solved
//! exactly by trying every active set ([`nnls3`]). What is left is a two-dimensional search
//! over the exponents alone: a log-spaced grid over a wide range ([`ExponentRange`]), then a
//! compass search from the best cell. No start of E, A, B can be wrong, and a surface with
//! several basins in (α, β) shows them all on the grid.
//!
//! **Loss, with squares.** The fit is least squares on the loss itself, not Huber on the log
//! loss as the other parametric laws here are fitted ([`crate::parametric`]): only squares of
//! the loss keep the inner problem linear, which is what makes it exact. An iso-FLOP sweep
//! spans a narrow range of loss, so absolute and relative errors weigh the points alike; what
//! is given up is Huber's robustness to an outlying run.
//!
//! **What it reports.** E, A, B, α, β and the allocation exponents they imply at fixed compute
//! C ∝ N·D: N*(C) ∝ C^a with a = β/(α+β), D*(C) ∝ C^b with b = α/(α+β) (Hoffmann et al.,
//! eq. 4), with percentile bootstrap intervals; a's (and b's) interval is widened to its profile
//! interval (the residual minimised over α + β at each a, within χ²₁·RSS/(n − 5) of the best,
//! as [`crate::identify`] calibrates it). An exponent at an end of the searched range, or a scale
//! (A or B) at zero, leaves that term undetermined: it and the exponents derived from it are
//! reported not identified (as [`crate::identify`] does for the other laws), also when a tenth of
//! the resamples end there, a's profile stays within the noise to 0 or 1, or an exponent's
//! interval spans more than [`identify::EXPONENT_SPAN`].

use anyhow::{Result, bail};
use rayon::prelude::*;
use serde::Serialize;

use super::bootstrap::{
    BootstrapOptions, percentile_interval, resample_weights, rng_for, stratified_weights,
};
use super::estimate::{BootstrapSummary, End, FitReport, ParamEstimate, ProfileInterval};
use super::identify::{self, BOUND_SHARE};
use super::points::Points;

/// The range the exponents α and β are searched over, log-spaced.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ExponentRange {
    pub lo: f64,
    pub hi: f64,
    /// Grid points per exponent.
    pub steps: usize,
}

impl Default for ExponentRange {
    /// 0.02 to 3: published data exponents lie around 0.1–0.8; an exponent near 0 makes its
    /// term a constant (confounded with E), one near 3 a term that vanishes within the data.
    fn default() -> Self {
        ExponentRange {
            lo: 0.02,
            hi: 3.0,
            steps: 48,
        }
    }
}

impl ExponentRange {
    fn values(&self) -> Vec<f64> {
        let (l, h) = (self.lo.ln(), self.hi.ln());
        (0..self.steps)
            .map(|k| (l + (h - l) * k as f64 / (self.steps - 1) as f64).exp())
            .collect()
    }
    /// Whether `x` is at an end of the range (a compass search clamps to the ends exactly).
    fn at_end(&self, x: f64) -> bool {
        x <= self.lo * (1.0 + 1e-9) || x >= self.hi * (1.0 - 1e-9)
    }
}

/// How bootstrap resamples are drawn.
#[derive(Debug, Clone, Default, Serialize)]
pub enum SurfaceResampling {
    /// Points with replacement.
    #[default]
    Points,
    /// Within each stratum (an iso-FLOP budget: indices of its points), so each resample keeps
    /// every budget's size, as approach 2's bootstrap does.
    Strata(Vec<Vec<usize>>),
    /// Whole replicate groups, `groups[i]` the group of point i: a configuration's seeds are
    /// taken or left together.
    Groups(Vec<usize>),
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SurfaceOptions {
    pub exponents: ExponentRange,
    pub bootstrap: Option<BootstrapOptions>,
    pub resampling: SurfaceResampling,
}

/// One fitted surface in natural units.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Surface {
    pub e: f64,
    pub a: f64,
    pub b: f64,
    pub alpha: f64,
    pub beta: f64,
    /// Weighted residual sum of squares of the loss.
    pub rss: f64,
}

impl Surface {
    /// N*(C) ∝ C^a_opt at fixed C ∝ N·D.
    pub fn a_opt(&self) -> f64 {
        self.beta / (self.alpha + self.beta)
    }
    /// D*(C) ∝ C^b_opt.
    pub fn b_opt(&self) -> f64 {
        self.alpha / (self.alpha + self.beta)
    }
    pub fn predict(&self, n: f64, d: f64) -> f64 {
        self.e + self.a * n.powf(-self.alpha) + self.b * d.powf(-self.beta)
    }
}

/// The weighted normal equations of y ≈ c₀·1 + c₁·x₁ + c₂·x₂: Gram matrix, right-hand side
/// and Σ w·y².
#[derive(Debug, Clone, Copy)]
pub struct Gram {
    pub g: [[f64; 3]; 3],
    pub r: [f64; 3],
    pub yy: f64,
}

impl Gram {
    pub fn new(x1: &[f64], x2: &[f64], y: &[f64], w: &[f64]) -> Gram {
        let mut g = [[0.0; 3]; 3];
        let mut r = [0.0; 3];
        let mut yy = 0.0;
        for k in 0..y.len() {
            let (wk, a, b, yk) = (w[k], x1[k], x2[k], y[k]);
            if wk == 0.0 {
                continue;
            }
            g[0][0] += wk;
            g[0][1] += wk * a;
            g[0][2] += wk * b;
            g[1][1] += wk * a * a;
            g[1][2] += wk * a * b;
            g[2][2] += wk * b * b;
            r[0] += wk * yk;
            r[1] += wk * a * yk;
            r[2] += wk * b * yk;
            yy += wk * yk * yk;
        }
        g[1][0] = g[0][1];
        g[2][0] = g[0][2];
        g[2][1] = g[1][2];
        Gram { g, r, yy }
    }
}

/// Exact non-negative least squares in three variables: the unconstrained solution on each
/// active set (every subset of the variables), kept when non-negative; the lowest residual
/// wins. The NNLS optimum is the unconstrained optimum on its own support, so it is among them.
/// Returns the coefficients and the residual sum of squares.
pub fn nnls3(gram: &Gram) -> ([f64; 3], f64) {
    let mut best = ([0.0; 3], gram.yy);
    for mask in 1u8..8 {
        let set: Vec<usize> = (0..3).filter(|j| mask & (1 << j) != 0).collect();
        let Some(c) = solve_subset(gram, &set) else {
            continue;
        };
        if c.iter().any(|&v| v < 0.0) {
            continue;
        }
        let mut coef = [0.0; 3];
        for (&j, &v) in set.iter().zip(&c) {
            coef[j] = v;
        }
        // Σ w (y − Xc)² = yy − 2cᵀr + cᵀGc.
        let mut rss = gram.yy;
        for i in 0..3 {
            rss -= 2.0 * coef[i] * gram.r[i];
            for j in 0..3 {
                rss += coef[i] * gram.g[i][j] * coef[j];
            }
        }
        let rss = rss.max(0.0);
        if rss < best.1 {
            best = (coef, rss);
        }
    }
    best
}

/// Solves the normal equations on the rows and columns `set` by LU with partial pivoting;
/// `None` when they are (numerically) singular — a pivot at most 1e-13 of the largest diagonal
/// entry, or a non-finite one: the columns are collinear there, and a smaller active set reaches
/// the same fit.
fn solve_subset(gram: &Gram, set: &[usize]) -> Option<Vec<f64>> {
    let m = set.len();
    let a = nalgebra::DMatrix::from_fn(m, m, |i, j| gram.g[set[i]][set[j]]);
    let b = nalgebra::DVector::from_iterator(m, set.iter().map(|&i| gram.r[i]));
    let scale = set.iter().map(|&i| gram.g[i][i]).fold(0.0f64, f64::max);
    let lu = a.lu();
    // A NaN pivot is refused too.
    let tiny = |p: &f64| p.abs().partial_cmp(&(1e-13 * scale)) != Some(std::cmp::Ordering::Greater);
    if lu.u().diagonal().iter().any(tiny) {
        return None;
    }
    let x: Vec<f64> = lu.solve(&b)?.data.into();
    x.iter().all(|v| v.is_finite()).then_some(x)
}

/// The data of a surface fit, with N and D scaled by their geometric means so the columns
/// N^−α, D^−β stay near 1 for any exponent.
struct Data<'a> {
    ln_n: Vec<f64>,
    ln_d: Vec<f64>,
    n_ref: f64,
    d_ref: f64,
    loss: &'a [f64],
}

impl<'a> Data<'a> {
    fn new(n: &[f64], d: &[f64], loss: &'a [f64]) -> Data<'a> {
        let mean = |v: &[f64]| v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64;
        let (mn, md) = (mean(n), mean(d));
        Data {
            ln_n: n.iter().map(|x| x.ln() - mn).collect(),
            ln_d: d.iter().map(|x| x.ln() - md).collect(),
            n_ref: mn.exp(),
            d_ref: md.exp(),
            loss,
        }
    }
    fn column(ln_x: &[f64], exponent: f64) -> Vec<f64> {
        ln_x.iter().map(|l| (-exponent * l).exp()).collect()
    }
    /// The projected objective at (α, β): the NNLS coefficients and residual.
    fn project(&self, alpha: f64, beta: f64, w: &[f64]) -> ([f64; 3], f64) {
        let x1 = Data::column(&self.ln_n, alpha);
        let x2 = Data::column(&self.ln_d, beta);
        nnls3(&Gram::new(&x1, &x2, self.loss, w))
    }
    fn surface(&self, alpha: f64, beta: f64, w: &[f64]) -> Surface {
        let (c, rss) = self.project(alpha, beta, w);
        Surface {
            e: c[0],
            a: c[1] * self.n_ref.powf(alpha),
            b: c[2] * self.d_ref.powf(beta),
            alpha,
            beta,
            rss,
        }
    }
}

/// The variable-projection fit under point weights `w`: every `stride`-th value of the grid,
/// then a compass search in (ln α, ln β) from its best cell, and from `warm` where given (a
/// resample starts from the full data's optimum too, so a coarser grid serves it).
fn fit_weighted(
    data: &Data,
    range: &ExponentRange,
    w: &[f64],
    stride: usize,
    warm: Option<&Surface>,
) -> Surface {
    let mut grid: Vec<f64> = range.values().into_iter().step_by(stride).collect();
    if grid.last() != Some(&range.hi) {
        grid.push(range.hi);
    }
    let cols_n: Vec<Vec<f64>> = grid.iter().map(|&a| Data::column(&data.ln_n, a)).collect();
    let cols_d: Vec<Vec<f64>> = grid.iter().map(|&b| Data::column(&data.ln_d, b)).collect();
    let mut best = (0, 0, f64::INFINITY);
    for (i, x1) in cols_n.iter().enumerate() {
        for (j, x2) in cols_d.iter().enumerate() {
            let (_, rss) = nnls3(&Gram::new(x1, x2, data.loss, w));
            if rss < best.2 {
                best = (i, j, rss);
            }
        }
    }
    let spacing = (range.hi.ln() - range.lo.ln()) / (range.steps - 1) as f64;
    let from_grid = compass(
        data,
        range,
        w,
        (grid[best.0].ln(), grid[best.1].ln(), best.2),
        spacing * stride as f64,
    );
    let (alpha, beta, _) = match warm {
        Some(s) => {
            let start = (
                s.alpha.ln(),
                s.beta.ln(),
                data.project(s.alpha, s.beta, w).1,
            );
            let from_warm = compass(data, range, w, start, spacing);
            if from_warm.2 < from_grid.2 {
                from_warm
            } else {
                from_grid
            }
        }
        None => from_grid,
    };
    data.surface(alpha, beta, w)
}

/// Compass search on the projected residual in (ln α, ln β), clamped to the range: the eight
/// neighbours at `step`, moving to the best, halving the step when none is better. Returns
/// (α, β, residual).
fn compass(
    data: &Data,
    range: &ExponentRange,
    w: &[f64],
    (a0, b0, rss0): (f64, f64, f64),
    step: f64,
) -> (f64, f64, f64) {
    let (lo, hi) = (range.lo.ln(), range.hi.ln());
    let clamp = |v: f64| v.clamp(lo, hi);
    let (mut at, mut rss, mut step) = ((a0, b0), rss0, step);
    while step > 1e-7 {
        let mut moved = false;
        for (da, db) in [
            (1.0, 0.0),
            (-1.0, 0.0),
            (0.0, 1.0),
            (0.0, -1.0),
            (1.0, 1.0),
            (-1.0, -1.0),
            (1.0, -1.0),
            (-1.0, 1.0),
        ] {
            let p = (clamp(at.0 + da * step), clamp(at.1 + db * step));
            if p == at {
                continue;
            }
            let (_, r) = data.project(p.0.exp(), p.1.exp(), w);
            if r < rss {
                (at, rss, moved) = (p, r, true);
            }
        }
        if !moved {
            step /= 2.0;
        }
    }
    (at.0.exp(), at.1.exp(), rss)
}

/// The profile of a = β/(α+β): at each a on a grid over (0, 1), the residual minimised over
/// the exponents' sum s (α = (1 − a)·s, β = a·s, both within the range), and where it rises
/// past `threshold` on each side of `a_hat`: `End::At` the crossing, `End::Open` when it stays
/// within the threshold to the end of the grid (a = 0.01 or 0.99).
fn profile_allocation(
    data: &Data,
    range: &ExponentRange,
    (a_hat, rss_min): (f64, f64),
    threshold: f64,
) -> (End, End) {
    let ones = vec![1.0; data.loss.len()];
    let (s_lo, s_hi) = ((2.0 * range.lo).ln(), (2.0 * range.hi).ln());
    let rss_at = |a: f64| {
        let f = |ln_s: f64| {
            let (alpha, beta) = ((1.0 - a) * ln_s.exp(), a * ln_s.exp());
            if alpha < range.lo || alpha > range.hi || beta < range.lo || beta > range.hi {
                return f64::INFINITY;
            }
            data.project(alpha, beta, &ones).1
        };
        // A grid over ln s, then a one-dimensional compass search from its best point.
        let steps = range.steps;
        let h = (s_hi - s_lo) / (steps - 1) as f64;
        let (mut at, mut best) = (0..steps)
            .map(|k| s_lo + h * k as f64)
            .map(|t| (t, f(t)))
            .fold((s_lo, f64::INFINITY), |b, p| if p.1 < b.1 { p } else { b });
        let mut step = h;
        while step > 1e-7 && best.is_finite() {
            let moved = [at - step, at + step]
                .into_iter()
                .map(|t| (t, f(t)))
                .find(|p| p.1 < best);
            match moved {
                Some(p) => (at, best) = p,
                None => step /= 2.0,
            }
        }
        best
    };
    let walk = |grid: &mut dyn Iterator<Item = f64>| {
        let (mut prev_a, mut prev_rise) = (a_hat, 0.0);
        for a in grid {
            let rise = rss_at(a) - rss_min;
            if rise > threshold {
                // Infinite where no exponents in the range give this a: that is a bound too.
                let f = if rise.is_finite() {
                    ((threshold - prev_rise) / (rise - prev_rise)).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                return End::At(prev_a + f * (a - prev_a));
            }
            (prev_a, prev_rise) = (a, rise.max(0.0));
        }
        End::Open
    };
    let grid: Vec<f64> = (1..100).map(|k| k as f64 / 100.0).collect();
    let lo = walk(&mut grid.iter().rev().copied().filter(|&a| a < a_hat));
    let hi = walk(&mut grid.iter().copied().filter(|&a| a > a_hat));
    (lo, hi)
}

/// Why each of a surface's parameters cannot be read (empty when all can): a scale at zero
/// leaves its exponent free, and an exponent at an end of the range its scale and E.
fn undetermined(s: &Surface, range: &ExponentRange) -> Vec<&'static str> {
    let mut out = Vec::new();
    let alpha_free = s.a == 0.0 || range.at_end(s.alpha);
    let beta_free = s.b == 0.0 || range.at_end(s.beta);
    if alpha_free {
        out.extend(["A", "alpha"]);
    }
    if beta_free {
        out.extend(["B", "beta"]);
    }
    // A term whose exponent is at the low end is a constant that trades against E.
    let constant = |scale: f64, exponent: f64| scale > 0.0 && exponent <= range.lo * (1.0 + 1e-9);
    if s.e == 0.0 || constant(s.a, s.alpha) || constant(s.b, s.beta) {
        out.push("E");
    }
    if alpha_free || beta_free {
        out.extend(["a_opt", "b_opt"]);
    }
    out
}

/// A resample searches every third exponent of the grid (a 16 × 16 grid by default) and
/// starts from the full data's optimum as well: nine times cheaper, and a resample that moves
/// to another basin still finds it on the coarser grid.
const RESAMPLE_STRIDE: usize = 3;

const NAMES: [&str; 7] = ["E", "A", "B", "alpha", "beta", "a_opt", "b_opt"];

fn values(s: &Surface) -> [f64; 7] {
    [s.e, s.a, s.b, s.alpha, s.beta, s.a_opt(), s.b_opt()]
}

/// Fits the surface to points with N and D (D = C/(6N) where only C is given) and reports it
/// with bootstrap intervals and what the data do not determine.
pub fn fit_surface(points: &Points, opts: &SurfaceOptions) -> Result<FitReport> {
    points.validate()?;
    let n = points.params()?;
    let d = points.tokens()?;
    for (name, v) in [("N", &n), ("D", &d)] {
        if !v.iter().all(|x| x.is_finite() && *x > 0.0) {
            bail!("the loss surface needs positive {name} for every point");
        }
    }
    if !points.loss.iter().all(|l| l.is_finite()) {
        bail!("the loss surface needs a finite loss for every point");
    }
    let range = opts.exponents;
    if !(range.lo > 0.0 && range.hi > range.lo && range.steps >= 3) {
        bail!(
            "the exponent range must have 0 < lo < hi and three or more steps, got {} to {} in {}",
            range.lo,
            range.hi,
            range.steps
        );
    }
    const P: usize = 5;
    if points.len() <= P {
        bail!(
            "the loss surface has {P} parameters (E, A, B, α, β): it needs more than {P} points, got {}",
            points.len()
        );
    }
    let data = Data::new(&n, &d, &points.loss);
    let ones = vec![1.0; points.len()];
    let best = fit_weighted(&data, &range, &ones, 1, None);
    let free = undetermined(&best, &range);

    let draws: Vec<Surface> = match &opts.bootstrap {
        Some(b) if b.resamples > 0 => (0..b.resamples)
            .into_par_iter()
            .map(|i| {
                let mut rng = rng_for(b.seed, i as u64);
                let w = match &opts.resampling {
                    SurfaceResampling::Points => resample_weights(points.len(), &mut rng),
                    SurfaceResampling::Strata(s) => stratified_weights(points.len(), s, &mut rng),
                    SurfaceResampling::Groups(g) => {
                        let k = g.iter().copied().max().map_or(0, |m| m + 1);
                        let gw = resample_weights(k, &mut rng);
                        g.iter().map(|&j| gw[j]).collect()
                    }
                };
                fit_weighted(&data, &range, &w, RESAMPLE_STRIDE, Some(&best))
            })
            .collect(),
        _ => Vec::new(),
    };
    let level = opts.bootstrap.map_or(0.95, |b| b.level);
    let mut not_identified: Vec<String> = Vec::new();
    let mut notes = Vec::new();
    let mut estimates = Vec::new();
    // Share of resamples leaving each parameter undetermined.
    let share = |name: &str| {
        draws
            .iter()
            .filter(|s| undetermined(s, &range).contains(&name))
            .count() as f64
            / draws.len().max(1) as f64
    };
    let fmt = |v: f64| crate::estimate::fmt_digits(v, 4);
    // The allocation exponent's profile: its interval widens the percentile one, and an open
    // end (the data allow a up to 0 or 1) leaves it not identified.
    let threshold = identify::threshold(best.rss, points.len(), P, level);
    let (a_lo, a_hi) = profile_allocation(&data, &range, (best.a_opt(), best.rss), threshold);
    let mirror = |e: End| match e {
        End::At(v) => End::At(1.0 - v),
        e => e,
    };
    let profiles = vec![
        ProfileInterval {
            name: "a_opt".into(),
            lo: a_lo,
            hi: a_hi,
            threshold,
        },
        ProfileInterval {
            name: "b_opt".into(),
            lo: mirror(a_hi),
            hi: mirror(a_lo),
            threshold,
        },
    ];
    for (k, name) in NAMES.iter().enumerate() {
        let value = values(&best)[k];
        let (mut lo, mut hi) = if draws.is_empty() {
            (None, None)
        } else {
            let col: Vec<f64> = draws.iter().map(|s| values(s)[k]).collect();
            let (lo, hi) = percentile_interval(&col, level);
            (Some(lo), Some(hi))
        };
        let mut why = Vec::new();
        if let Some(p) = profiles.iter().find(|p| p.name == *name) {
            // The hull of the two; open where the profile is.
            lo = p.lo.value().map(|v| lo.map_or(v, |l: f64| l.min(v)));
            hi = p.hi.value().map(|v| hi.map_or(v, |h: f64| h.max(v)));
            if !(p.lo.determined() && p.hi.determined()) {
                // An open end is an end of (0, 1): the data allow the exponent to reach it.
                let end = |e: End, bound: &str| e.value().map_or(bound.to_string(), fmt);
                why.push(format!(
                    "its profile stays within the noise from {} to {}",
                    end(p.lo, "0"),
                    end(p.hi, "1")
                ));
            }
        }
        if free.contains(name) {
            why.push(format!(
                "the fit leaves it free ({})",
                reason(&best, &range)
            ));
        }
        let s = share(name);
        if !draws.is_empty() && s >= BOUND_SHARE {
            why.push(format!(
                "{:.0}% of bootstrap resamples leave it free (a scale at 0 or an exponent at an end of {}–{})",
                100.0 * s,
                range.lo,
                range.hi
            ));
        }
        let exponent = matches!(*name, "alpha" | "beta" | "a_opt" | "b_opt");
        if exponent
            && why.is_empty()
            && let (Some(l), Some(h)) = (lo, hi)
            && l > 0.0
            && h / l > identify::EXPONENT_SPAN
        {
            why.push(format!(
                "its interval [{}, {}] spans a factor of {:.0}",
                fmt(l),
                fmt(h),
                h / l
            ));
        }
        if !why.is_empty() {
            not_identified.push(name.to_string());
            notes.push(format!("{name} not identified: {}", why.join("; ")));
        }
        estimates.push(ParamEstimate {
            name: name.to_string(),
            value,
            lo,
            hi,
        });
    }
    // A derived exponent follows the exponents it is made of.
    if ["alpha", "beta"]
        .iter()
        .any(|p| not_identified.iter().any(|n| n == p))
    {
        for d in ["a_opt", "b_opt"] {
            if !not_identified.iter().any(|n| n == d) {
                not_identified.push(d.into());
                notes.push(format!("{d} not identified: it is made of α and β"));
            }
        }
    }
    let derived = estimates.split_off(5);
    Ok(FitReport {
        law: "isoflop-surface".into(),
        n_points: points.len(),
        params: estimates,
        derived,
        objective: best.rss,
        solver: format!(
            "variable projection: exact NNLS in (E, A, B), a {0}×{0} log grid of (α, β) over {1}–{2}, then a compass search; least squares on the loss",
            range.steps, range.lo, range.hi
        ),
        starts: range.steps * range.steps,
        converged_starts: range.steps * range.steps,
        starts_at_best: 1,
        huber_delta: None,
        theta: vec![best.e, best.a, best.b, best.alpha, best.beta],
        theta_names: ["E", "A", "B", "alpha", "beta"].map(String::from).to_vec(),
        bootstrap: opts
            .bootstrap
            .filter(|b| b.resamples > 0)
            .map(|b| BootstrapSummary {
                resamples: b.resamples,
                failed: 0,
                level: b.level,
                seed: b.seed,
                starts_per_resample: range.steps.div_ceil(RESAMPLE_STRIDE).pow(2) + 1,
            }),
        heldout: None,
        notes,
        not_identified,
        profiles,
        lack_of_fit: None,
    })
}

/// What leaves the full-data fit's terms free, in words.
fn reason(s: &Surface, range: &ExponentRange) -> String {
    let mut r = Vec::new();
    for (name, scale, exp, sym) in [("A", s.a, s.alpha, "α"), ("B", s.b, s.beta, "β")] {
        if scale == 0.0 {
            r.push(format!("{name} = 0"));
        }
        if range.at_end(exp) {
            r.push(format!("{sym} = {} at an end of the range searched", exp));
        }
    }
    if s.e == 0.0 {
        r.push("E = 0".into());
    }
    if r.is_empty() {
        "its term trades against E".into()
    } else {
        r.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nnls_matches_unconstrained_when_feasible_and_clips_otherwise() {
        let x1: Vec<f64> = (0..10).map(|k| 1.0 + 0.3 * k as f64).collect();
        let x2: Vec<f64> = (0..10).map(|k| (0.2 * k as f64).exp()).collect();
        let w = vec![1.0; 10];
        let y: Vec<f64> = (0..10).map(|k| 2.0 + 0.5 * x1[k] + 0.25 * x2[k]).collect();
        let (c, rss) = nnls3(&Gram::new(&x1, &x2, &y, &w));
        assert!((c[0] - 2.0).abs() < 1e-9 && (c[1] - 0.5).abs() < 1e-9);
        assert!((c[2] - 0.25).abs() < 1e-9 && rss < 1e-12);
        // A negative true coefficient is clipped to 0, and the rest refitted without it.
        let y: Vec<f64> = (0..10).map(|k| 2.0 + 0.5 * x1[k] - 0.25 * x2[k]).collect();
        let (c, _) = nnls3(&Gram::new(&x1, &x2, &y, &w));
        assert_eq!(c[2], 0.0);
        assert!(c[0] >= 0.0 && c[1] >= 0.0);
    }
}
