//! Choosing the next runs: which new points, within a FLOP budget, are expected to narrow a
//! target quantity's interval the most, given a fitted law and its bootstrap ensemble.
//!
//! The ensemble stands for what the data leave open: every member θ_b fits the runs so far.
//! A candidate run teaches most where the members disagree about its loss, relative to the
//! noise of one observation, *and* where that disagreement goes with disagreement about the
//! target (query by committee, made quantitative). Treating the members' targets and
//! predicted log losses as jointly Gaussian (an ensemble Kalman update), observing the
//! candidates S with noise σ leaves the target the variance
//!
//! ```text
//! V(S) = Var(t) − cov(t, f_S) · (Cov(f_S) + σ²·I)⁻¹ · cov(f_S, t),
//! ```
//!
//! which does not depend on the values the runs will show, so a batch can be planned before
//! any of it is trained. The batch is greedy: each step adds the affordable candidate with the
//! largest drop of V per FLOP, the runs already chosen counted as observed (Kalman's update
//! takes them into account through Cov(f_S)). The expected interval after a run is the current
//! percentile interval scaled by √(V(S)/V(∅)).
//!
//! Limits, said where they are reported: the update is exact only for a target linear in the
//! predictions; members that sit at a parameter's bound (a floor E at 0) carry no spread, so a
//! target the fit does not identify may look settled to the ensemble (callers check the fit's
//! identifiability first); and σ is the fit's residual scale, law misfit included.
//!
//! Pure mathematics like the rest of `fit`: rows and costs in, choices out.

use anyhow::{Result, bail};
use serde::Serialize;

use super::bootstrap::percentile_interval;
use super::isoflop::fit_parabola;
use super::laws::{Design, Law};

/// The target's value at one member θ, `None` where the member gives no finite value.
pub type TargetFn<'a> = dyn Fn(&[f64]) -> Option<f64> + Sync + 'a;

/// A design row from named covariates (`mu`, `tokens`, …), for a loss-at-a-point target.
pub type RowOf<'a> = dyn Fn(&[(String, f64)]) -> Result<Vec<f64>> + 'a;

/// One run (or tuned group of runs) that could be trained next: its design row (the law's
/// covariates, as [`Design`] holds them) and its training FLOPs.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub row: Vec<f64>,
    pub flops: f64,
    /// 0 for a new configuration; n ≥ 1 for another seed of a configuration whose n seeds are
    /// already measured (see [`suggest`] for how a repeat is valued).
    pub seeds_done: usize,
}

/// One step of the greedy batch.
#[derive(Debug, Clone, Serialize)]
pub struct Pick {
    /// Index into the candidates.
    pub candidate: usize,
    pub flops: f64,
    /// FLOPs of the batch so far, this run included.
    pub cumulative_flops: f64,
    /// The target's expected interval width once this run and those before it are observed.
    pub width_after: f64,
}

/// The chosen batch and what it is expected to do to the target's interval.
#[derive(Debug, Clone, Serialize)]
pub struct Suggestion {
    /// The target at the full-data optimum, and its current percentile interval over the
    /// ensemble (in the target's own units).
    pub value: f64,
    pub interval: (f64, f64),
    pub width: f64,
    /// Members that gave the target a finite value.
    pub members: usize,
    pub noise_sd: f64,
    pub picks: Vec<Pick>,
    /// What the suggestion cannot promise, in words.
    pub notes: Vec<String>,
}

impl Suggestion {
    /// The expected width after the whole batch (the current width without one).
    pub fn width_after(&self) -> f64 {
        self.picks.last().map_or(self.width, |p| p.width_after)
    }
}

/// A step that lowers the target's variance by less than this fraction of what is left (about
/// half a percent of the interval's width) teaches nothing worth its FLOPs: the batch stops
/// there rather than spend the rest of the budget.
const MIN_GAIN: f64 = 1e-2;

/// A batch is called unable to settle its target when it narrows the interval by less than this.
const SETTLE_FRACTION: f64 = 0.10;

/// The smallest noise a new run is taken to have (a law that interpolates its points, seeds
/// that agree to the last digit still leave a new run noisy).
pub const MIN_NOISE_SD: f64 = 1e-4;

/// Residual scale of a fit at θ: √(Σ r² / (n − p)), r the log-loss residuals (floored, so a
/// law that interpolates its points still counts a new run as noisy).
pub fn noise_sd<L: Law>(law: &L, design: &Design, theta: &[f64]) -> f64 {
    let n = design.len();
    let p = law.n_params();
    let mut g = vec![0.0; p];
    let ss: f64 = (0..n)
        .map(|i| {
            let r = design.log_loss[i] - law.log_predict(theta, design.row(i), &mut g);
            r * r
        })
        .sum();
    (ss / (n.saturating_sub(p)).max(1) as f64)
        .sqrt()
        .max(MIN_NOISE_SD)
}

/// Greedy batch selection within `budget` FLOPs (see the module header). `best` is the
/// full-data optimum, `members` the bootstrap ensemble, `target` the quantity to settle, and
/// `log_target` says the target is reported as exp of what `target` returns (μ*, D*: their
/// spread is multiplicative).
///
/// A candidate that repeats a measured configuration with another seed (`seeds_done` = n) is
/// valued as what it adds to the n seeds already there: its gain is the drop of V from the
/// ensemble told the configuration's mean (noise σ²/n) to the ensemble told it with one more
/// seed. Where the target hangs on a point measured with much noise, that drop is large and a
/// cheap repeat can win; where the noise is small, telling the ensemble the mean leaves a repeat
/// little to add.
#[allow(clippy::too_many_arguments)]
pub fn suggest<L: Law>(
    law: &L,
    best: &[f64],
    members: &[Vec<f64>],
    target: &TargetFn<'_>,
    log_target: bool,
    candidates: &[Candidate],
    budget: f64,
    noise_sd: f64,
    level: f64,
) -> Result<Suggestion> {
    let Some(value) = target(best) else {
        bail!("the target has no finite value at the fitted law");
    };
    let kept: Vec<(&Vec<f64>, f64)> = members
        .iter()
        .filter_map(|th| target(th).filter(|t| t.is_finite()).map(|t| (th, t)))
        .collect();
    if kept.len() < 10 {
        bail!(
            "only {} of {} bootstrap members give the target a finite value: too few to say which runs would narrow it",
            kept.len(),
            members.len()
        );
    }
    let b = kept.len();
    let ts: Vec<f64> = kept.iter().map(|(_, t)| *t).collect();
    let (lo, hi) = percentile_interval(&ts, level);
    let unit = |t: f64| if log_target { t.exp() } else { t };
    let width = unit(hi) - unit(lo);

    // Centred target and centred log-loss predictions per candidate, over the members.
    let t_mean = ts.iter().sum::<f64>() / b as f64;
    let t_c: Vec<f64> = ts.iter().map(|t| t - t_mean).collect();
    let mut g = vec![0.0; law.n_params()];
    let f_c: Vec<Vec<f64>> = candidates
        .iter()
        .map(|c| {
            let f: Vec<f64> = kept
                .iter()
                .map(|(th, _)| law.log_predict(th, &c.row, &mut g))
                .collect();
            let m = f.iter().sum::<f64>() / b as f64;
            f.iter().map(|v| v - m).collect()
        })
        .collect();
    let dot =
        |a: &[f64], c: &[f64]| a.iter().zip(c).map(|(x, y)| x * y).sum::<f64>() / (b - 1) as f64;
    let var0 = dot(&t_c, &t_c);
    let cov_t: Vec<f64> = f_c.iter().map(|f| dot(&t_c, f)).collect();
    let s2 = noise_sd * noise_sd;
    // V after observing `set` (each with noise σ²) and, for each repeat among `told`, the mean
    // its configuration's seeds already showed (noise σ²/n): the ensemble is told what those
    // seeds measured before a repeat is valued, so a point it is unsure of only because some
    // resamples left it out is not mistaken for one that another seed would settle.
    let variance = |set: &[usize], told: &[usize]| -> f64 {
        let mut obs: Vec<(usize, f64)> = set.iter().map(|&a| (a, s2)).collect();
        obs.extend(told.iter().filter_map(|&a| {
            let n = candidates[a].seeds_done;
            (n > 0).then(|| (a, s2 / n as f64))
        }));
        if obs.is_empty() {
            return var0;
        }
        let k = obs.len();
        let mut m = vec![0.0; k * k];
        for (i, &(a, na)) in obs.iter().enumerate() {
            for (j, &(c, _)) in obs.iter().enumerate() {
                m[i * k + j] = dot(&f_c[a], &f_c[c]) + if i == j { na } else { 0.0 };
            }
        }
        let rhs: Vec<f64> = obs.iter().map(|&(a, _)| cov_t[a]).collect();
        match solve_spd(&m, &rhs) {
            Some(x) => (var0 - rhs.iter().zip(&x).map(|(r, x)| r * x).sum::<f64>()).max(0.0),
            None => var0,
        }
    };

    let mut notes = Vec::new();
    let mut picks = Vec::new();
    let mut chosen: Vec<usize> = Vec::new();
    // V as the batch leaves it: var0 less each pick's gain. Without repeats it is V(chosen).
    let (mut spent, mut v_now) = (0.0, var0);
    if var0 > 0.0 {
        loop {
            let mut best_step: Option<(usize, f64, f64)> = None; // (candidate, gain per FLOP, gain)
            for (i, c) in candidates.iter().enumerate() {
                if chosen.contains(&i) || spent + c.flops > budget || c.flops <= 0.0 {
                    continue;
                }
                let mut set = chosen.clone();
                set.push(i);
                // A repeat's gain is measured against the ensemble told what its seeds showed.
                let gain = variance(&chosen, &set) - variance(&set, &set);
                let per_flop = gain / c.flops;
                if gain > MIN_GAIN * v_now && best_step.is_none_or(|(_, g, _)| per_flop > g) {
                    best_step = Some((i, per_flop, gain));
                }
            }
            let Some((i, _, gain)) = best_step else { break };
            chosen.push(i);
            spent += candidates[i].flops;
            v_now = (v_now - gain).max(0.0);
            picks.push(Pick {
                candidate: i,
                flops: candidates[i].flops,
                cumulative_flops: spent,
                width_after: width * (v_now / var0).sqrt(),
            });
        }
    } else {
        notes.push(
            "every bootstrap member gives the target the same value: the ensemble shows no uncertainty to reduce (a parameter at its bound looks settled to it; check the fit's identifiability)".into(),
        );
    }
    if candidates.iter().all(|c| c.flops > budget) {
        notes.push(format!(
            "no candidate fits in the budget ({budget:.3e} FLOPs; the cheapest costs {:.3e})",
            candidates
                .iter()
                .map(|c| c.flops)
                .fold(f64::INFINITY, f64::min)
        ));
    } else if var0 > 0.0 && (v_now / var0).sqrt() > 1.0 - SETTLE_FRACTION {
        notes.push(format!(
            "no set of candidates within the budget is expected to narrow the target's interval by more than {:.0}%: it cannot be settled by these candidates at this budget",
            SETTLE_FRACTION * 100.0
        ));
    }
    Ok(Suggestion {
        value: unit(value),
        interval: (unit(lo), unit(hi)),
        width,
        members: b,
        noise_sd,
        picks,
        notes,
    })
}

/// A target that is the law's prediction over a region: a set of inputs (the extrapolation
/// points a study cares about, a benchmark's held-out rows), settled together. Its variance is
/// the sum over the region's points of each prediction's variance, so V(S) of the module
/// header becomes
///
/// ```text
/// V(S) = Σ_t [ Var(f_t) − cov(f_t, f_S) · (Cov(f_S) + σ²·I)⁻¹ · cov(f_S, f_t) ].
/// ```
///
/// It holds the members' centred predictions (anomalies) at the candidates and at the region's
/// points, on the law's own scale ([`Law::log_predict`]).
#[derive(Debug, Clone)]
pub struct RegionEnsemble {
    /// Per candidate, its prediction's deviation from the ensemble mean, one entry per member.
    pub candidates: Vec<Vec<f64>>,
    /// Per region point, the same.
    pub region: Vec<Vec<f64>>,
    /// Members kept (those with a finite prediction everywhere).
    pub members: usize,
    /// γ of the choice's denominator cost^γ: 1 (the default) is variance drop per unit cost;
    /// below 1 favours costlier rows, which constrain a law's large-scale behaviour that many
    /// cheap rows do not (the ScaleBench paper, arXiv 2604.22753, divides by cost^γ, γ ≈ 0.3–0.4).
    pub cost_exponent: f64,
}

impl RegionEnsemble {
    /// Predictions of every member at every candidate row and region row. A member with a
    /// non-finite prediction anywhere is dropped: it says nothing usable about a covariance.
    pub fn new<L: Law>(
        law: &L,
        members: &[Vec<f64>],
        candidate_rows: &[&[f64]],
        region_rows: &[&[f64]],
    ) -> RegionEnsemble {
        let mut g = vec![0.0; law.n_params()];
        let preds: Vec<Vec<f64>> = members
            .iter()
            .filter_map(|th| {
                let p: Vec<f64> = candidate_rows
                    .iter()
                    .chain(region_rows)
                    .map(|r| law.log_predict(th, r, &mut g))
                    .collect();
                p.iter().all(|v| v.is_finite()).then_some(p)
            })
            .collect();
        let b = preds.len();
        let centred = |k: usize| -> Vec<f64> {
            let m = preds.iter().map(|p| p[k]).sum::<f64>() / b.max(1) as f64;
            preds.iter().map(|p| p[k] - m).collect()
        };
        let nc = candidate_rows.len();
        RegionEnsemble {
            candidates: (0..nc).map(centred).collect(),
            region: (nc..nc + region_rows.len()).map(centred).collect(),
            members: b,
            cost_exponent: 1.0,
        }
    }

    /// The same ensemble choosing by variance drop per cost^γ.
    pub fn with_cost_exponent(mut self, gamma: f64) -> RegionEnsemble {
        self.cost_exponent = gamma;
        self
    }

    fn dot(&self, a: &[f64], c: &[f64]) -> f64 {
        a.iter().zip(c).map(|(x, y)| x * y).sum::<f64>() / (self.members.max(2) - 1) as f64
    }

    /// V(S) by the formula above, solved directly (a reference for [`Self::choose`]).
    pub fn variance(&self, set: &[usize], noise_sd: f64) -> f64 {
        let v0: f64 = self.region.iter().map(|t| self.dot(t, t)).sum();
        if set.is_empty() {
            return v0;
        }
        let k = set.len();
        let mut m = vec![0.0; k * k];
        for (i, &a) in set.iter().enumerate() {
            for (j, &c) in set.iter().enumerate() {
                m[i * k + j] = self.dot(&self.candidates[a], &self.candidates[c])
                    + if i == j { noise_sd * noise_sd } else { 0.0 };
            }
        }
        let mut reduction = 0.0;
        for t in &self.region {
            let rhs: Vec<f64> = set
                .iter()
                .map(|&a| self.dot(t, &self.candidates[a]))
                .collect();
            if let Some(x) = solve_spd(&m, &rhs) {
                reduction += rhs.iter().zip(&x).map(|(r, x)| r * x).sum::<f64>();
            }
        }
        (v0 - reduction).max(0.0)
    }

    /// Greedy choice, as [`suggest`] makes it: each step takes the `eligible` candidate with the
    /// largest drop of V per unit of cost, counting the earlier picks as observed, until
    /// `max_picks` are chosen or no eligible candidate lowers V by `min_gain` of what is left.
    /// `eligible(i, spent)` says whether candidate i may be bought after `spent`.
    ///
    /// Observing a pick updates the anomalies themselves (the serial square-root ensemble
    /// Kalman filter, Whitaker & Hamill 2002), which leaves exactly the covariances of V(S)
    /// above; a step then costs one pass over the candidates and region rather than a solve
    /// per candidate.
    pub fn choose(
        &self,
        costs: &[f64],
        eligible: &dyn Fn(usize, f64) -> bool,
        noise_sd: f64,
        max_picks: usize,
        min_gain: f64,
    ) -> Vec<Pick> {
        let s2 = noise_sd * noise_sd;
        let mut cand = self.candidates.clone();
        let mut region = self.region.clone();
        let mut v_now: f64 = region.iter().map(|t| self.dot(t, t)).sum();
        let v0 = v_now;
        let (mut picks, mut chosen, mut spent) = (Vec::new(), Vec::<usize>::new(), 0.0);
        while picks.len() < max_picks && v_now > 0.0 {
            let mut best: Option<(usize, f64, f64)> = None; // (candidate, gain per cost, gain)
            for (i, a) in cand.iter().enumerate() {
                if chosen.contains(&i) || costs[i] <= 0.0 || !eligible(i, spent) {
                    continue;
                }
                let var = self.dot(a, a) + s2;
                let gain: f64 = region
                    .iter()
                    .map(|t| {
                        let c = self.dot(t, a);
                        c * c
                    })
                    .sum::<f64>()
                    / var;
                let per = gain / costs[i].powf(self.cost_exponent);
                if gain > min_gain * v_now && best.is_none_or(|(_, p, _)| per > p) {
                    best = Some((i, per, gain));
                }
            }
            let Some((i, _, _)) = best else { break };
            // Serial square-root update: z' = z − α·K_z·a_i, K_z = cov(z, f_i)/(var_i + σ²).
            let a = cand[i].clone();
            let var = self.dot(&a, &a) + s2;
            let alpha = 1.0 / (1.0 + (s2 / var).sqrt());
            for z in cand.iter_mut().chain(region.iter_mut()) {
                let k = alpha * self.dot(z, &a) / var;
                for (zj, aj) in z.iter_mut().zip(&a) {
                    *zj -= k * aj;
                }
            }
            chosen.push(i);
            spent += costs[i];
            v_now = region.iter().map(|t| self.dot(t, t)).sum();
            picks.push(Pick {
                candidate: i,
                flops: costs[i],
                cumulative_flops: spent,
                width_after: if v0 > 0.0 { (v_now / v0).sqrt() } else { 1.0 },
            });
        }
        picks
    }
}

/// Solves m·x = rhs for a symmetric positive-definite m (k × k, row-major) by Cholesky;
/// `None` when m is not positive definite (nalgebra refuses a pivot that is not > 0).
fn solve_spd(m: &[f64], rhs: &[f64]) -> Option<Vec<f64>> {
    let k = rhs.len();
    let chol = nalgebra::DMatrix::from_row_slice(k, k, m).cholesky()?;
    Some(
        chol.solve(&nalgebra::DVector::from_column_slice(rhs))
            .data
            .into(),
    )
}

/// Where a Parcae-law target is read: the shape's unrolled parameters N(μ) and training FLOPs
/// per token at each mean recurrence μ the allocation may choose (the caller counts them from
/// the model, as `model::counts` does).
#[derive(Debug, Clone)]
pub struct Allocation {
    pub mu: Vec<f64>,
    pub unrolled_params: Vec<f64>,
    pub flops_per_token: Vec<f64>,
}

impl Allocation {
    /// The design row (ln N(μ), ln D) of the run at the i-th μ trained on `c` FLOPs.
    pub fn row(&self, i: usize, c: f64) -> [f64; 2] {
        [
            self.unrolled_params[i].ln(),
            (c / self.flops_per_token[i]).ln(),
        ]
    }

    /// The compute-optimal allocation of `c` FLOPs under the law at θ: ln μ*, ln D* and the
    /// log loss there. Interior optima are refined by a parabola in ln μ through the best μ
    /// and its neighbours; an optimum at the smallest or largest μ stays there.
    pub fn optimum<L: Law>(&self, law: &L, theta: &[f64], c: f64) -> Option<(f64, f64, f64)> {
        let mut g = vec![0.0; law.n_params()];
        let losses: Vec<f64> = (0..self.mu.len())
            .map(|i| law.log_predict(theta, &self.row(i, c), &mut g))
            .collect();
        if losses.iter().any(|l| !l.is_finite()) {
            return None;
        }
        let i = (0..losses.len()).min_by(|&a, &b| losses[a].total_cmp(&losses[b]))?;
        let ln_mu = |j: usize| self.mu[j].ln();
        let (mut x, mut y) = (ln_mu(i), losses[i]);
        if i > 0 && i + 1 < losses.len() {
            // The iso-FLOP procedure's parabola, through the best μ and its neighbours.
            let u = [ln_mu(i - 1), ln_mu(i), ln_mu(i + 1)];
            let parabola = fit_parabola(&u, &losses[i - 1..=i + 1], &[1.0; 3]);
            if let Some((p, v)) = parabola.and_then(|p| p.vertex().map(|v| (p, v)))
                && v > u[0]
                && v < u[2]
            {
                x = v;
                y = p.c0 + p.c1 * v + p.c2 * v * v;
            }
        }
        // D* at the refined μ: FLOPs per token interpolated linearly in μ.
        let mu = x.exp();
        let j = (0..self.mu.len() - 1)
            .find(|&j| self.mu[j + 1] >= mu)
            .unwrap_or(self.mu.len().saturating_sub(2));
        let fpt = if self.mu.len() < 2 {
            self.flops_per_token[0]
        } else {
            let w = ((mu - self.mu[j]) / (self.mu[j + 1] - self.mu[j])).clamp(0.0, 1.0);
            self.flops_per_token[j] * (1.0 - w) + self.flops_per_token[j + 1] * w
        };
        Some((x, (c / fpt).ln(), y))
    }
}

/// The search range of a crossing, in FLOPs: a crossing past it is reported at its end.
pub const CROSSING_RANGE: (f64, f64) = (1e6, 1e24);

impl Allocation {
    /// The compute C at which the run at the j-th μ, trained on C FLOPs, first has a lower loss
    /// than the run at μ = 1 on the same C, under the law at θ (bisection in ln C after a scan).
    /// A law under which it never does within [`CROSSING_RANGE`] gives the range's end, and one
    /// under which it always does, the range's start: the percentile interval then says "beyond".
    pub fn crossing<L: Law>(&self, law: &L, theta: &[f64], j: usize) -> Option<f64> {
        let mut g = vec![0.0; law.n_params()];
        // Positive where μ = 1 is better.
        let mut gap = |ln_c: f64| {
            let c = ln_c.exp();
            law.log_predict(theta, &self.row(j, c), &mut g)
                - law.log_predict(theta, &self.row(0, c), &mut g)
        };
        let (lo, hi) = (CROSSING_RANGE.0.ln(), CROSSING_RANGE.1.ln());
        let steps = 180;
        let mut prev = (lo, gap(lo));
        if !prev.1.is_finite() {
            return None;
        }
        if prev.1 < 0.0 {
            return Some(CROSSING_RANGE.0);
        }
        for k in 1..=steps {
            let x = lo + (hi - lo) * k as f64 / steps as f64;
            let y = gap(x);
            if !y.is_finite() {
                return None;
            }
            if y < 0.0 {
                let (mut a, mut b) = (prev.0, x);
                for _ in 0..40 {
                    let mid = 0.5 * (a + b);
                    if gap(mid) < 0.0 {
                        b = mid;
                    } else {
                        a = mid;
                    }
                }
                return Some((0.5 * (a + b)).exp());
            }
            prev = (x, y);
        }
        Some(CROSSING_RANGE.1)
    }
}

/// What `loopscale suggest --target` can ask for.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetSpec {
    /// A natural parameter or derived quantity of the law, by its reported name (`x`, `y`,
    /// `alpha`, `n_opt_exponent`, …).
    Parameter(String),
    /// The compute-optimal mean recurrence μ* at C FLOPs (`mu_opt@1e14`).
    MuOpt(f64),
    /// The compute-optimal training tokens D* at C FLOPs (`d_opt@1e14`).
    DOpt(f64),
    /// The compute C at which training at μ = M loops starts to beat μ = 1 on the same FLOPs
    /// (`crossing@2`): where looping starts to pay, searched over C = 1e6 … 1e24 FLOPs.
    Crossing(f64),
    /// The law's loss at a point: the named covariates in the law's row order
    /// (`loss@mu=4,tokens=1e7` for Parcae's law, `loss@n=1e6,tokens=1e8` for Chinchilla's).
    LossAt(Vec<(String, f64)>),
}

impl TargetSpec {
    /// Parses `x`, `mu_opt@1e14`, `d_opt@1e14`, `loss@mu=4,tokens=1e7`.
    pub fn parse(text: &str) -> Result<TargetSpec> {
        let text = text.trim();
        let number = |s: &str, what: &str| -> Result<f64> {
            match s.trim().parse::<f64>() {
                Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
                _ => bail!("--target {text}: {what} must be a positive number, got `{s}`"),
            }
        };
        Ok(match text.split_once('@') {
            None if text.is_empty() => bail!(
                "--target is empty: give a parameter (e.g. y), mu_opt@C, d_opt@C, crossing@M or loss@KEY=V,…"
            ),
            None => TargetSpec::Parameter(text.to_string()),
            Some(("mu_opt", c)) => TargetSpec::MuOpt(number(c, "the compute C")?),
            Some(("d_opt", c)) => TargetSpec::DOpt(number(c, "the compute C")?),
            Some(("crossing", m)) => {
                let m = number(m, "the loop count M")?;
                if m.fract() != 0.0 || !(2.0..=64.0).contains(&m) {
                    bail!("--target {text}: the loop count must be a whole number from 2 to 64");
                }
                TargetSpec::Crossing(m)
            }
            Some(("loss", at)) => {
                let mut pairs = Vec::new();
                for part in at.split(',') {
                    let Some((k, v)) = part.split_once('=') else {
                        bail!(
                            "--target {text}: `{part}` is not KEY=VALUE (e.g. loss@mu=4,tokens=1e7)"
                        );
                    };
                    pairs.push((k.trim().to_string(), number(v, k.trim())?));
                }
                TargetSpec::LossAt(pairs)
            }
            Some((what, _)) => bail!(
                "--target {text}: unknown target `{what}@…`; the targets are a parameter name, mu_opt@C, d_opt@C, crossing@M and loss@KEY=V,…"
            ),
        })
    }

    /// Whether the target's spread is multiplicative (reported as exp of its log).
    pub fn log_scale(&self) -> bool {
        !matches!(self, TargetSpec::Parameter(_))
    }

    /// A short label for tables (`μ* at 3.2e12 FLOPs`).
    pub fn label(&self) -> String {
        match self {
            TargetSpec::Parameter(p) => p.clone(),
            TargetSpec::MuOpt(c) => format!("μ* at {c:.3e} FLOPs"),
            TargetSpec::DOpt(c) => format!("D* at {c:.3e} FLOPs"),
            TargetSpec::Crossing(m) => format!("the FLOPs where μ = {m} starts to beat μ = 1"),
            TargetSpec::LossAt(p) => format!(
                "loss at {}",
                p.iter()
                    .map(|(k, v)| format!("{k}={v:.3e}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// The target as a function of θ for `law`. Parameters are read by name from
/// [`Law::natural`] and [`Law::derived`]; μ* and D* need the `allocation` (Parcae's law);
/// a loss at a point needs `row_of`, which turns its named covariates into a design row.
pub fn target_fn<'a, L: Law>(
    law: &'a L,
    spec: &'a TargetSpec,
    allocation: Option<&'a Allocation>,
    row_of: &RowOf<'_>,
) -> Result<Box<TargetFn<'a>>> {
    Ok(match spec {
        TargetSpec::Parameter(name) => {
            let probe = vec![0.5; law.n_params()];
            let names: Vec<String> = law
                .natural(&probe)
                .into_iter()
                .chain(law.derived(&probe))
                .map(|(n, _)| n)
                .collect();
            let Some(j) = names.iter().position(|n| n == name) else {
                bail!(
                    "--target {name}: the {} law has no parameter `{name}`; it has {}",
                    law.name(),
                    names.join(", ")
                );
            };
            Box::new(move |th: &[f64]| {
                law.natural(th)
                    .into_iter()
                    .chain(law.derived(th))
                    .nth(j)
                    .map(|(_, v)| v)
                    .filter(|v| v.is_finite())
            })
        }
        TargetSpec::MuOpt(c) | TargetSpec::DOpt(c) => {
            let Some(alloc) = allocation else {
                bail!(
                    "--target {}: μ* and D* are read from Parcae's law (--law parcae), which knows what a loop costs",
                    spec.label()
                );
            };
            let mu = matches!(spec, TargetSpec::MuOpt(_));
            let c = *c;
            Box::new(move |th: &[f64]| {
                alloc
                    .optimum(law, th, c)
                    .map(|(ln_mu, ln_d, _)| if mu { ln_mu } else { ln_d })
            })
        }
        TargetSpec::Crossing(m) => {
            let Some(alloc) = allocation else {
                bail!(
                    "--target {}: the crossing is read from Parcae's law (--law parcae), which knows what a loop costs",
                    spec.label()
                );
            };
            let j = alloc
                .mu
                .iter()
                .position(|mu| (mu - m).abs() < 1e-9)
                .ok_or_else(|| anyhow::anyhow!("--target crossing@{m}: μ = {m} is not in 1…64"))?;
            Box::new(move |th: &[f64]| alloc.crossing(law, th, j).map(f64::ln))
        }
        TargetSpec::LossAt(pairs) => {
            let row = row_of(pairs)?;
            Box::new(move |th: &[f64]| {
                let mut g = vec![0.0; law.n_params()];
                Some(law.log_predict(th, &row, &mut g)).filter(|v| v.is_finite())
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves_a_known_system() {
        let m = [4.0, 2.0, 2.0, 3.0];
        let x = solve_spd(&m, &[2.0, 1.0]).unwrap();
        assert!((4.0 * x[0] + 2.0 * x[1] - 2.0).abs() < 1e-12);
        assert!((2.0 * x[0] + 3.0 * x[1] - 1.0).abs() < 1e-12);
        assert!(solve_spd(&[1.0, 2.0, 2.0, 1.0], &[1.0, 1.0]).is_none());
    }

    /// A synthetic law L = a + b·x (raw scale) with a Gaussian ensemble over (a, b): the
    /// greedy square-root updates leave the same region variance as the direct formula, and
    /// the first pick is the candidate that tells most about the region.
    #[test]
    fn region_variance_matches_the_direct_formula() {
        use crate::written::{LawSpec, Scale, WrittenLaw};
        use rand::SeedableRng;
        use rand_distr::{Distribution, StandardNormal};
        let spec = LawSpec {
            name: "line".into(),
            expr: "y = a + b*x".into(),
            params: vec![
                crate::written::ParamSpec {
                    name: "a".into(),
                    range: crate::written::Range::Free,
                    start: None,
                },
                crate::written::ParamSpec {
                    name: "b".into(),
                    range: crate::written::Range::Free,
                    start: None,
                },
            ],
            scale: Scale::Raw,
            ..Default::default()
        };
        let law = WrittenLaw::new(&spec, &["x".into(), "y".into()]).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let members: Vec<Vec<f64>> = (0..400)
            .map(|_| {
                let z1: f64 = StandardNormal.sample(&mut rng);
                let z2: f64 = StandardNormal.sample(&mut rng);
                vec![1.0 + 0.1 * z1, 0.5 + 0.05 * z2]
            })
            .collect();
        let cand: Vec<[f64; 1]> = [0.0, 1.0, 2.0, 3.0].map(|x| [x]).to_vec();
        let region: Vec<[f64; 1]> = [10.0, 12.0].map(|x| [x]).to_vec();
        let cr: Vec<&[f64]> = cand.iter().map(|r| &r[..]).collect();
        let rr: Vec<&[f64]> = region.iter().map(|r| &r[..]).collect();
        let ens = RegionEnsemble::new(&law, &members, &cr, &rr);
        // Var(a + b·x) summed over the region, from the ensemble: about 2·0.01 + (100+144)·0.0025.
        let v0 = ens.variance(&[], 0.05);
        assert!((v0 - (0.02 + 244.0 * 0.0025)).abs() < 0.15 * v0, "{v0}");
        let picks = ens.choose(&[1.0; 4], &|_, _| true, 0.05, 3, 0.0);
        assert_eq!(picks.len(), 3);
        // The farthest candidate pins the slope that the region's predictions hang on.
        assert_eq!(picks[0].candidate, 3);
        let set: Vec<usize> = picks.iter().map(|p| p.candidate).collect();
        for k in 1..=3 {
            let direct = ens.variance(&set[..k], 0.05);
            let greedy = (picks[k - 1].width_after).powi(2) * v0;
            assert!(
                (direct - greedy).abs() < 1e-9 * v0.max(1.0),
                "{k}: {direct} vs {greedy}"
            );
        }
        // Two well-placed observations with small noise settle a two-parameter line.
        assert!(ens.variance(&set[..2], 0.05) < 0.3 * v0);
    }

    #[test]
    fn targets_parse_and_bad_ones_say_what_is_expected() {
        assert_eq!(
            TargetSpec::parse("y").unwrap(),
            TargetSpec::Parameter("y".into())
        );
        assert_eq!(
            TargetSpec::parse("mu_opt@1e14").unwrap(),
            TargetSpec::MuOpt(1e14)
        );
        assert_eq!(
            TargetSpec::parse("loss@mu=4,tokens=1e7").unwrap(),
            TargetSpec::LossAt(vec![("mu".into(), 4.0), ("tokens".into(), 1e7)])
        );
        let e = TargetSpec::parse("mu_opt@lots").unwrap_err().to_string();
        assert!(e.contains("positive number") && e.contains("lots"), "{e}");
        let e = TargetSpec::parse("best@1").unwrap_err().to_string();
        assert!(e.contains("unknown target"), "{e}");
        let e = TargetSpec::parse("loss@mu4").unwrap_err().to_string();
        assert!(e.contains("KEY=VALUE"), "{e}");
    }
}
