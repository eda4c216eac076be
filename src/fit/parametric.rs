//! The procedure for a parametric law, end to end (Epoch AI's replication of Hoffmann et
//! al.'s approach 3): multi-start minimisation of the Huber objective, a bootstrap for
//! intervals, and a held-out check on the largest-compute points.
//!
//! Bootstrap resamples start from the full-data optimum plus a few random perturbations
//! of it, not from the whole grid: a resample's optimum lies near the full-data one, and
//! this is ~1000× cheaper than re-running the grid. The perturbed starts guard against a
//! resample whose optimum moved to a neighbouring basin (B, β on all 245 Chinchilla points).

use anyhow::{Result, bail};
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use serde::Serialize;

use super::bootstrap::{BootstrapOptions, percentile_interval, resample_weights, rng_for};
use super::estimate::{BootstrapSummary, FitReport, HeldOut, ParamEstimate};
use super::huber::{DEFAULT_HUBER_DELTA, Objective};
use super::laws::{
    ChinchillaLaw, ComputeLaw, Design, Law, ParcaeLaw, ParcaeUnifiedLaw, TestTimeLaw,
    TestTimePooledLaw,
};
use super::points::Points;
use super::solve::{Method, MultiStart, SolverOptions, multistart, multistart_seq};

/// Which points the held-out check withholds: those with the largest compute (or, for
/// test-time laws, the largest T).
#[derive(Debug, Clone, Copy, Serialize)]
pub enum HeldOutSpec {
    Fraction(f64),
    Count(usize),
    /// Every point of the largest budget: points whose key lies within this relative
    /// tolerance of each other form a budget, as iso-FLOP budgets are grouped (a rollout: fit
    /// the smaller budgets, predict the largest).
    LargestBudget(f64),
}

/// How many points a held-out spec withholds from `key` (sorted or not), and what they are.
fn heldout_count(spec: HeldOutSpec, key: &[f64], key_name: &str) -> (usize, String) {
    let n = key.len();
    match spec {
        HeldOutSpec::Fraction(f) => {
            let k = ((f * n as f64).round() as usize).max(1);
            (k, format!("{k} points of largest {key_name}"))
        }
        HeldOutSpec::Count(k) => (k, format!("{k} points of largest {key_name}")),
        HeldOutSpec::LargestBudget(tol) => {
            let mut v: Vec<f64> = key.to_vec();
            v.sort_by(f64::total_cmp);
            // The same grouping as `isoflop::group_budgets`: a new budget starts where a value
            // exceeds its budget's first value by more than `tol`.
            let mut first = 0;
            for i in 1..n {
                if v[i] > v[first] * (1.0 + tol) {
                    first = i;
                }
            }
            let k = n - first;
            let c = (v[first..].iter().map(|x| x.ln()).sum::<f64>() / k.max(1) as f64).exp();
            (
                k,
                format!("the largest {key_name} budget ({key_name} ≈ {c:.3e}, {k} points)"),
            )
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FitOptions {
    pub huber_delta: f64,
    /// Solver-space starts; `None` uses the law's default grid.
    pub starts: Option<Vec<Vec<f64>>>,
    pub solver: SolverOptions,
    pub bootstrap: Option<BootstrapOptions>,
    pub heldout: Option<HeldOutSpec>,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            huber_delta: DEFAULT_HUBER_DELTA,
            starts: None,
            solver: SolverOptions::default(),
            bootstrap: Some(BootstrapOptions::default()),
            heldout: None,
        }
    }
}

fn solver_label(s: &SolverOptions) -> String {
    match s.method {
        Method::Lbfgs => format!("L-BFGS (argmin, Moré–Thuente, m={})", s.lbfgs_memory),
        Method::NelderMead => "Nelder–Mead (argmin)".into(),
    }
}

/// Multi-start minimisation of the Huber objective on a design.
pub fn fit_theta<L: Law>(law: &L, design: &Design, opts: &FitOptions) -> Result<MultiStart> {
    if design.len() < law.n_params() {
        bail!(
            "{}: {} points cannot determine {} parameters",
            law.name(),
            design.len(),
            law.n_params()
        );
    }
    let starts = opts.starts.clone().unwrap_or_else(|| law.start_grid());
    let obj = Objective::new(law, design, opts.huber_delta);
    let ms = multistart(&obj, &starts, &opts.solver);
    if !ms.best.objective.is_finite() {
        bail!("{}: no start reached a finite objective", law.name());
    }
    Ok(ms)
}

fn estimates(
    named: Vec<(String, f64)>,
    draws: &[Vec<f64>],
    offset: usize,
    level: Option<f64>,
) -> Vec<ParamEstimate> {
    named
        .into_iter()
        .enumerate()
        .map(|(j, (name, value))| {
            let (lo, hi) = match level {
                Some(level) if !draws.is_empty() => {
                    let col: Vec<f64> = draws.iter().map(|d| d[offset + j]).collect();
                    let (lo, hi) = percentile_interval(&col, level);
                    (Some(lo), Some(hi))
                }
                _ => (None, None),
            };
            ParamEstimate {
                name,
                value,
                lo,
                hi,
            }
        })
        .collect()
}

/// Bootstrap draws of (natural parameters ++ derived quantities), one row per successful
/// resample, and the number of failed resamples.
pub fn bootstrap_draws<L: Law>(
    law: &L,
    design: &Design,
    best: &[f64],
    opts: &FitOptions,
    b: &BootstrapOptions,
) -> (Vec<Vec<f64>>, usize) {
    let rows: Vec<Option<Vec<f64>>> = (0..b.resamples)
        .into_par_iter()
        .map(|i| {
            let mut rng = rng_for(b.seed, i as u64);
            let w = resample_weights(design.len(), &mut rng);
            let mut starts = vec![best.to_vec()];
            for _ in 0..b.perturbed_starts {
                starts.push(
                    best.iter()
                        .map(|&t| {
                            let z: f64 = StandardNormal.sample(&mut rng);
                            t + 0.1 * t.abs().max(1.0) * z
                        })
                        .collect(),
                );
            }
            let obj = Objective::new(law, design, opts.huber_delta).weighted(&w);
            let ms = multistart_seq(&obj, &starts, &opts.solver);
            if !ms.best.objective.is_finite() {
                return None;
            }
            let th = &ms.best.theta;
            let row: Vec<f64> = law
                .natural(th)
                .into_iter()
                .chain(law.derived(th))
                .map(|(_, v)| v)
                .collect();
            row.iter().all(|v| v.is_finite()).then_some(row)
        })
        .collect();
    let failed = rows.iter().filter(|r| r.is_none()).count();
    (rows.into_iter().flatten().collect(), failed)
}

/// Relative errors predicting the `k` points with the largest `order_key` from a fit on the
/// others.
pub fn heldout_check<L: Law>(
    law: &L,
    design: &Design,
    order_key: &[f64],
    k: usize,
    opts: &FitOptions,
) -> Result<HeldOut> {
    let n = design.len();
    if k == 0 || k >= n {
        bail!("held-out count {k} must be in 1..{n}");
    }
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&i, &j| order_key[i].total_cmp(&order_key[j]).then(i.cmp(&j)));
    let (train, test) = idx.split_at(n - k);
    let ms = fit_theta(law, &design.subset(train), opts)?;
    let mut g = vec![0.0; law.n_params()];
    let errs: Vec<f64> = test
        .iter()
        .map(|&i| {
            let pred = law.log_predict(&ms.best.theta, design.row(i), &mut g).exp();
            let obs = design.log_loss[i].exp();
            ((pred - obs) / obs).abs()
        })
        .collect();
    Ok(HeldOut {
        n: k,
        what: String::new(),
        mean_abs_rel_error: errs.iter().sum::<f64>() / k as f64,
        max_abs_rel_error: errs.iter().copied().fold(0.0, f64::max),
    })
}

/// Fit a law: multi-start optimum, bootstrap intervals, held-out check, and the law's notes
/// on what the estimates do not support. `order_key` ranks points for the held-out check
/// (compute, or T), `key_name` names it ("C", "T").
pub fn fit_law<L: Law>(
    law: &L,
    design: &Design,
    (order_key, key_name): (&[f64], &str),
    opts: &FitOptions,
) -> Result<FitReport> {
    let ms = fit_theta(law, design, opts)?;
    let theta = ms.best.theta.clone();
    let (draws, summary) = match &opts.bootstrap {
        Some(b) if b.resamples > 0 => {
            let (draws, failed) = bootstrap_draws(law, design, &theta, opts, b);
            let summary = BootstrapSummary {
                resamples: b.resamples,
                failed,
                level: b.level,
                seed: b.seed,
                starts_per_resample: 1 + b.perturbed_starts,
            };
            (draws, Some(summary))
        }
        _ => (Vec::new(), None),
    };
    let level = summary.as_ref().map(|s| s.level);
    let natural = law.natural(&theta);
    let n_nat = natural.len();
    let mut heldout_note = None;
    let heldout = match opts.heldout {
        Some(spec) => {
            let (k, what) = heldout_count(spec, order_key, key_name);
            match (spec, heldout_check(law, design, order_key, k, opts)) {
                (_, Ok(mut h)) => {
                    h.what = what;
                    Some(h)
                }
                // A rollout over budgets is asked for by default: without two budgets (or
                // with too few points below the largest) there is none, and the fit says so.
                (HeldOutSpec::LargestBudget(_), Err(e)) => {
                    heldout_note = Some(format!("no held-out check of {what}: {e:#}"));
                    None
                }
                (_, Err(e)) => return Err(e),
            }
        }
        None => None,
    };
    let params = estimates(natural, &draws, 0, level);
    let derived = estimates(law.derived(&theta), &draws, n_nat, level);
    let mut notes = law.notes(&[params.clone(), derived.clone()].concat());
    notes.extend(heldout_note);
    Ok(FitReport {
        law: law.name(),
        n_points: design.len(),
        params,
        derived,
        objective: ms.best.objective,
        solver: solver_label(&opts.solver),
        starts: ms.starts,
        converged_starts: ms.converged,
        starts_at_best: ms.at_best,
        huber_delta: Some(opts.huber_delta),
        theta,
        theta_names: law.theta_names(),
        bootstrap: summary,
        heldout,
        notes,
    })
}

/// L(C) = E + A·C^(−α) on all points, or on the compute frontier when `frontier_only`.
pub fn fit_compute(points: &Points, frontier_only: bool, opts: &FitOptions) -> Result<FitReport> {
    points.validate()?;
    let pts = if frontier_only {
        points.frontier()?
    } else {
        points.clone()
    };
    let law = ComputeLaw;
    let mut r = fit_law(&law, &law.design(&pts)?, (&pts.compute()?, "C"), opts)?;
    if frontier_only {
        r.law = "compute-frontier".into();
    }
    Ok(r)
}

/// L(N, D) = E + A/N^α + B/D^β.
pub fn fit_chinchilla(points: &Points, opts: &FitOptions) -> Result<FitReport> {
    points.validate()?;
    let law = ChinchillaLaw;
    let design = law.design(points)?;
    // The design exists, so N and D (or C) do: C is recorded or 6ND.
    fit_law(&law, &design, (&points.compute()?, "C"), opts)
}

/// Indices of each curve, in first-seen order; one curve named "all" without ids.
fn curves(points: &Points) -> Vec<(String, Vec<usize>)> {
    let Ok(ids) = points.curve_ids() else {
        return vec![("all".into(), (0..points.len()).collect())];
    };
    let mut out: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        match out.iter_mut().find(|(c, _)| c == id) {
            Some((_, v)) => v.push(i),
            None => out.push((id.clone(), vec![i])),
        }
    }
    out
}

/// L(T) = L∞ + A·exp(−k·T), one fit per curve.
pub fn fit_test_time(points: &Points, opts: &FitOptions) -> Result<Vec<(String, FitReport)>> {
    points.validate()?;
    curves(points)
        .into_iter()
        .map(|(id, idx)| {
            let pts = points.subset(&idx);
            let law = TestTimeLaw::new(&pts).map_err(|e| anyhow::anyhow!("curve {id}: {e}"))?;
            let mut r = fit_law(
                &law,
                &law.design(&pts)?,
                (pts.test_loops.as_ref().unwrap(), "T"),
                opts,
            )?;
            r.law = format!("test-time[{id}]");
            Ok((id, r))
        })
        .collect()
}

/// Test-time curves pooled with a shared k. Starts come from per-curve fits (unless
/// `opts.starts` is given).
pub fn fit_test_time_pooled(points: &Points, opts: &FitOptions) -> Result<FitReport> {
    points.validate()?;
    let mut law = TestTimePooledLaw::new(points)?;
    let t = points
        .test_loops
        .clone()
        .ok_or_else(|| anyhow::anyhow!("test-time law needs a test-loops column"))?;
    if opts.starts.is_none() {
        let single = FitOptions {
            starts: None,
            bootstrap: None,
            heldout: None,
            ..opts.clone()
        };
        for (id, idx) in curves(points) {
            let pts = points.subset(&idx);
            let per_curve =
                TestTimeLaw::new(&pts).map_err(|e| anyhow::anyhow!("curve {id}: {e}"))?;
            let ms = fit_theta(&per_curve, &per_curve.design(&pts)?, &single)?;
            let th = &ms.best.theta;
            // κ in the pooled law's range: the curve's k, re-expressed.
            let k = per_curve.rate.rate(th[2]).0;
            law.curve_starts.push([th[0], th[1], law.rate.kappa(k)]);
        }
    }
    let design = law.design(points)?;
    fit_law(&law, &design, (&t, "T"), opts)
}

/// Parcae's training law L(μ, D) = E + X·N(μ)^(−x) + Y·D^(−y) over the points' N = N(μ) and
/// D; the held-out check ranks points by C (recorded, or 6·N(μ)·D).
pub fn fit_parcae(points: &Points, opts: &FitOptions) -> Result<FitReport> {
    points.validate()?;
    let law = ParcaeLaw;
    let design = law.design(points)?;
    fit_law(&law, &design, (&points.compute()?, "C"), opts)
}

/// Parcae's unified law L(T | μ, D) = E + X·N(μ)^(−x) + Y·D^(−y) + Z·exp(−z·T/μ) over every
/// test-time evaluation of every run together (N = N(μ), D, loops = μ, test_loops = T).
pub fn fit_parcae_unified(points: &Points, opts: &FitOptions) -> Result<FitReport> {
    points.validate()?;
    let law = ParcaeUnifiedLaw::new(points)?;
    let design = law.design(points)?;
    fit_law(&law, &design, (&points.compute()?, "C"), opts)
}
