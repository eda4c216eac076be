//! The procedure for a parametric law, end to end (Epoch AI's replication of Hoffmann et
//! al.'s approach 3): multi-start minimisation of the Huber objective, a bootstrap for
//! intervals, and a held-out check on the largest-compute points.
//!
//! Bootstrap resamples start from the full-data optimum plus a few random perturbations
//! of it, not from the whole grid: a resample's optimum lies near the full-data one, and
//! this is ~1000× cheaper than re-running the grid. The perturbed starts guard against a
//! resample whose optimum moved to a neighbouring basin (B, β on all 245 Chinchilla points).

use anyhow::{Result, bail};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use serde::Serialize;

use super::bootstrap::{BootstrapOptions, percentile_interval, resample_weights, rng_for};
use super::estimate::{BootstrapSummary, FitReport, HeldOut, ParamEstimate};
use super::huber::{DEFAULT_HUBER_DELTA, Objective};
use super::identify::{self, End, ProfileInterval};
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

/// What a bootstrap resample draws.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resampling {
    /// Points with replacement: right when each point is its own run (compute, Chinchilla,
    /// Parcae's training law).
    #[default]
    Points,
    /// Residuals: every point is kept, its log loss the fitted value plus a residual drawn with
    /// replacement (rescaled by √(n/(n−p))). Keeps a curve's shape where a few points carry the
    /// information: a test-time curve resampled by points loses its T = 1 in a third of the
    /// resamples, and its gain becomes an extrapolation.
    Residuals,
    /// Whole groups (runs) with replacement, `groups[i]` the group of point i: each resampled
    /// run keeps its whole curve (pooled test-time curves, the unified law).
    Groups(Vec<usize>),
}

#[derive(Debug, Clone, Serialize)]
pub struct FitOptions {
    pub huber_delta: f64,
    /// Solver-space starts; `None` uses the law's default grid.
    pub starts: Option<Vec<Vec<f64>>>,
    pub solver: SolverOptions,
    pub bootstrap: Option<BootstrapOptions>,
    pub heldout: Option<HeldOutSpec>,
    /// How bootstrap resamples are drawn (each law's fit function sets its own).
    pub resampling: Resampling,
    /// Profile the law's headline parameters for their intervals and identifiability.
    pub profile: bool,
    /// The replicate group (configuration without its seed) of each point, where the points
    /// are runs with seeds: the fit then tests its residuals against the seed noise
    /// ([`super::noise::lack_of_fit`]).
    pub replicates: Option<Vec<usize>>,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            huber_delta: DEFAULT_HUBER_DELTA,
            starts: None,
            solver: SolverOptions::default(),
            bootstrap: Some(BootstrapOptions::default()),
            heldout: None,
            resampling: Resampling::Points,
            profile: true,
            replicates: None,
        }
    }
}

/// Group index of each of `ids`, in first-seen order (for [`Resampling::Groups`]).
pub fn group_indices(ids: &[String]) -> Vec<usize> {
    let mut seen: Vec<&String> = Vec::new();
    ids.iter()
        .map(|id| match seen.iter().position(|s| *s == id) {
            Some(i) => i,
            None => {
                seen.push(id);
                seen.len() - 1
            }
        })
        .collect()
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
/// resample, and the number of failed resamples. Resamples follow `opts.resampling`.
pub fn bootstrap_draws<L: Law>(
    law: &L,
    design: &Design,
    best: &[f64],
    opts: &FitOptions,
    b: &BootstrapOptions,
) -> (Vec<Vec<f64>>, usize) {
    let (thetas, failed) = bootstrap_thetas(law, design, best, opts, b);
    let rows: Vec<Vec<f64>> = thetas
        .iter()
        .map(|th| {
            law.natural(th)
                .into_iter()
                .chain(law.derived(th))
                .map(|(_, v)| v)
                .collect::<Vec<f64>>()
        })
        .collect();
    // A resample whose parameters overflow (a scale at e^800) failed as surely as one that did
    // not converge.
    let kept: Vec<Vec<f64>> = rows
        .into_iter()
        .filter(|r| r.iter().all(|v| v.is_finite()))
        .collect();
    let failed = failed + thetas.len() - kept.len();
    (kept, failed)
}

/// The bootstrap ensemble in solver space: the optimum θ of each successful resample (the
/// ensemble `fit::design` reads), and the number of failed resamples.
pub fn bootstrap_thetas<L: Law>(
    law: &L,
    design: &Design,
    best: &[f64],
    opts: &FitOptions,
    b: &BootstrapOptions,
) -> (Vec<Vec<f64>>, usize) {
    let n = design.len();
    // Fitted log losses and residuals at the optimum, for residual resampling.
    let mut g = vec![0.0; best.len()];
    let fitted: Vec<f64> = (0..n)
        .map(|i| law.log_predict(best, design.row(i), &mut g))
        .collect();
    let inflate = if n > best.len() {
        (n as f64 / (n - best.len()) as f64).sqrt()
    } else {
        1.0
    };
    let residuals: Vec<f64> = (0..n)
        .map(|i| (design.log_loss[i] - fitted[i]) * inflate)
        .collect();
    let n_groups = match &opts.resampling {
        Resampling::Groups(gr) => gr.iter().copied().max().map_or(0, |m| m + 1),
        _ => 0,
    };
    let rows: Vec<Option<Vec<f64>>> = (0..b.resamples)
        .into_par_iter()
        .map(|i| {
            let mut rng = rng_for(b.seed, i as u64);
            let (w, resampled) = match &opts.resampling {
                Resampling::Points => (resample_weights(n, &mut rng), None),
                Resampling::Residuals => {
                    let mut d = design.clone();
                    for (k, l) in d.log_loss.iter_mut().enumerate() {
                        *l = fitted[k] + residuals[rng.random_range(0..n)];
                    }
                    (vec![1.0; n], Some(d))
                }
                Resampling::Groups(gr) => {
                    let gw = resample_weights(n_groups, &mut rng);
                    (gr.iter().map(|&k| gw[k]).collect(), None)
                }
            };
            let design = resampled.as_ref().unwrap_or(design);
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
            let th = ms.best.theta;
            th.iter().all(|v| v.is_finite()).then_some(th)
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
            let pred = law.loss_of(law.log_predict(&ms.best.theta, design.row(i), &mut g));
            let obs = law.loss_of(design.log_loss[i]);
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
            let n = design.len();
            let why_not = if k >= n {
                Some("it holds every point (one budget)".to_string())
            } else if n - k < law.n_params() {
                Some(format!(
                    "the other budgets hold {} points for {} parameters",
                    n - k,
                    law.n_params()
                ))
            } else {
                None
            };
            let check = match (spec, why_not) {
                (HeldOutSpec::LargestBudget(_), Some(why)) => Err(anyhow::anyhow!(why)),
                _ => heldout_check(law, design, order_key, k, opts),
            };
            match (spec, check) {
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
    let mut params = estimates(natural, &draws, 0, level);
    let mut derived = estimates(law.derived(&theta), &draws, n_nat, level);
    let (profiles, not_identified, identify_note) = identifiability(
        law,
        design,
        opts,
        (&theta, ms.best.objective),
        (&mut params, &mut derived),
        &draws,
        level,
    );
    let mut not_identified = not_identified;
    let mut notes = law.notes(&[params.clone(), derived.clone()].concat());
    // Replicates of one configuration do not add a point of the law's variables: with no more
    // distinct points than parameters the data determine nothing, whatever the profiles say.
    let distinct = design.distinct_rows();
    if distinct <= law.n_params() && design.len() > distinct {
        for p in params.iter().chain(derived.iter()) {
            if !not_identified.contains(&p.name) {
                not_identified.push(p.name.clone());
            }
        }
        notes.push(format!(
            "not identified: every parameter; the data hold {distinct} distinct point(s) of the law's variables for {} parameters (replicates of one point do not separate them)",
            law.n_params()
        ));
    }
    notes.extend(identify_note);
    notes.extend(heldout_note);
    let lack_of_fit = opts.replicates.as_ref().and_then(|groups| {
        let residuals = Objective::new(law, design, opts.huber_delta).residuals(&theta);
        super::noise::lack_of_fit(&residuals, &design.log_loss, groups, law.n_params())
    });
    if let Some(l) = &lack_of_fit
        && l.p_value < 0.05
    {
        notes.push(format!(
            "lack of fit: the law misses its configurations by more than their seed noise (sd {:.4} against {:.4} in log loss, F = {:.2} on {} and {} df, p = {:.2e}); its intervals understate the error of a prediction",
            l.lack_sd, l.noise_sd, l.f, l.df_lack, l.df_noise, l.p_value
        ));
    }
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
        not_identified,
        profiles,
        lack_of_fit,
    })
}

/// Profiles the law's headline parameters, widens their intervals to the profile intervals,
/// and judges what the data do not determine (see `fit::identify`): the profiles, the names not
/// identified, and the note saying so.
fn identifiability<L: Law>(
    law: &L,
    design: &Design,
    opts: &FitOptions,
    optimum: (&[f64], f64),
    (params, derived): (&mut [ParamEstimate], &mut [ParamEstimate]),
    draws: &[Vec<f64>],
    level: Option<f64>,
) -> (Vec<ProfileInterval>, Vec<String>, Option<String>) {
    let specs = law.profiled();
    if specs.is_empty() || !opts.profile {
        return (Vec::new(), Vec::new(), None);
    }
    let floor = design
        .log_loss
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .exp();
    let threshold = identify::threshold(
        optimum.1,
        design.len(),
        law.n_params(),
        level.unwrap_or(0.95),
    );
    let profiles = identify::profiles(
        law,
        design,
        opts.huber_delta,
        &opts.solver,
        optimum,
        &specs,
        threshold,
    );
    let mut not_identified = Vec::new();
    let mut reasons = Vec::new();
    for (spec, prof) in specs.iter().zip(&profiles) {
        let Some(j) = params.iter().position(|p| p.name == spec.name) else {
            continue;
        };
        let share = (!draws.is_empty()).then(|| {
            draws.iter().filter(|d| spec.at_bound(d[j], floor)).count() as f64 / draws.len() as f64
        });
        let p = &mut params[j];
        // The hull of the percentile and profile intervals; open where the profile is.
        let widen = |pct: Option<f64>, end: End, lower: bool| match (pct, end.value()) {
            (_, None) => None,
            (None, Some(v)) => Some(v),
            (Some(a), Some(v)) => Some(if lower { a.min(v) } else { a.max(v) }),
        };
        p.lo = widen(p.lo, prof.lo, true);
        p.hi = widen(p.hi, prof.hi, false);
        // An end at the bound is the bound (E = 0, not E = 3e-77).
        if let Some(lo) = p.lo
            && matches!(spec.kind, identify::Kind::Floor | identify::Kind::Exponent)
            && spec.at_bound(lo, floor)
        {
            p.lo = Some(0.0);
        }
        if let Some(why) = identify::verdict(spec, p.value, floor, share, Some(prof), (p.lo, p.hi))
        {
            not_identified.push(spec.name.clone());
            reasons.push(format!("{} ({why})", spec.name));
        }
    }
    let mut dependent = Vec::new();
    for d in derived.iter() {
        let on: Vec<String> = law
            .depends(&d.name)
            .into_iter()
            .filter(|n| not_identified.iter().any(|m| m == n))
            .collect();
        if !on.is_empty() {
            reasons.push(format!("{} (it depends on {})", d.name, on.join(", ")));
            dependent.push(d.name.clone());
        }
    }
    not_identified.extend(dependent);
    let note = (!reasons.is_empty()).then(|| {
        format!(
            "not identified: {}; the data do not determine these, so read their intervals as the range the data \
             allow, not a measurement",
            reasons.join("; ")
        )
    });
    (profiles, not_identified, note)
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
    let all = curves(points);
    let n_curves = all.len();
    // A curve evaluated at fewer than three points or two distinct T determines no saturating
    // exponential: it is left out (`fittable_curves` says which), not allowed to sink the rest.
    let fits: Vec<(String, FitReport)> = all
        .into_iter()
        .filter(|(_, idx)| curve_is_fittable(points, idx))
        .map(|(id, idx)| {
            let pts = points.subset(&idx);
            let law = TestTimeLaw::new(&pts).map_err(|e| anyhow::anyhow!("curve {id}: {e}"))?;
            let opts = FitOptions {
                resampling: Resampling::Residuals,
                ..opts.clone()
            };
            let mut r = fit_law(
                &law,
                &law.design(&pts)?,
                (pts.test_loops.as_ref().unwrap(), "T"),
                &opts,
            )?;
            r.law = format!("test-time[{id}]");
            Ok((id, r))
        })
        .collect::<Result<_>>()?;
    if fits.is_empty() {
        bail!(
            "no test-time curve has three or more evaluations at two or more distinct loop counts T \
             ({n_curves} curve(s)); evaluate each run at several test_loops"
        );
    }
    Ok(fits)
}

/// Whether the points `idx` of one curve can determine L∞, A and k: three or more points at two
/// or more distinct T.
fn curve_is_fittable(points: &Points, idx: &[usize]) -> bool {
    let Some(t) = &points.test_loops else {
        return false;
    };
    let mut ts: Vec<f64> = idx.iter().map(|&i| t[i]).collect();
    ts.sort_by(f64::total_cmp);
    ts.dedup();
    idx.len() >= 3 && ts.len() >= 2
}

/// The ids of the curves [`fit_test_time`] fits and of those it leaves out.
pub fn fittable_curves(points: &Points) -> (Vec<String>, Vec<String>) {
    let (ok, left): (Vec<_>, Vec<_>) = curves(points)
        .into_iter()
        .partition(|(_, idx)| curve_is_fittable(points, idx));
    let ids = |v: Vec<(String, Vec<usize>)>| v.into_iter().map(|(id, _)| id).collect();
    (ids(ok), ids(left))
}

/// Test-time curves pooled with a shared k. Starts come from per-curve fits (unless
/// `opts.starts` is given).
pub fn fit_test_time_pooled(points: &Points, opts: &FitOptions) -> Result<FitReport> {
    points.validate()?;
    // Curves that determine no exponential of their own are left out, as in `fit_test_time`.
    let (_, left_out) = fittable_curves(points);
    let kept: Vec<usize> = curves(points)
        .into_iter()
        .filter(|(_, idx)| curve_is_fittable(points, idx))
        .flat_map(|(_, idx)| idx)
        .collect();
    if kept.is_empty() {
        bail!(
            "no test-time curve has three or more evaluations at two or more distinct loop counts T"
        );
    }
    let mut kept = kept;
    kept.sort_unstable();
    let points = &points.subset(&kept);
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
    let opts = FitOptions {
        resampling: Resampling::Groups(group_indices(points.curve_ids()?)),
        ..opts.clone()
    };
    let mut r = fit_law(&law, &design, (&t, "T"), &opts)?;
    if !left_out.is_empty() {
        r.notes.push(format!(
            "{} curve(s) with fewer than three evaluations or two distinct T left out: {}",
            left_out.len(),
            left_out.join(", ")
        ));
    }
    Ok(r)
}

/// Parcae's training law L(μ, D) = E + X·N(μ)^(−x) + Y·D^(−y) over the points' N = N(μ) and
/// D; the held-out check ranks points by C (recorded, or 6·N(μ)·D).
pub fn fit_parcae(points: &Points, opts: &FitOptions) -> Result<FitReport> {
    points.validate()?;
    let law = ParcaeLaw;
    let design = law.design(points)?;
    let mut r = fit_law(&law, &design, (&points.compute()?, "C"), opts)?;
    r.notes.extend(grid_notes(points)?);
    Ok(r)
}

/// A power-law term with its own exponent and scale next to E needs three or more distinct
/// values of its variable; with fewer, its parameters are whatever the start left them.
fn grid_notes(points: &Points) -> Result<Vec<String>> {
    let distinct = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v.dedup();
        v.len()
    };
    let mut notes = Vec::new();
    for (values, what, params) in [
        (points.params()?, "N(μ)", "X and x"),
        (points.tokens()?, "D", "Y and y"),
    ] {
        let k = distinct(&values);
        if k < 3 {
            notes.push(format!(
                "{what} takes {k} distinct value(s) in these points: {params} are not determined (only their \
                 sum with E at the sampled values is); sample three or more"
            ));
        }
    }
    Ok(notes)
}

/// Parcae's unified law L(T | μ, D) = E + X·N(μ)^(−x) + Y·D^(−y) + Z·exp(−z·T/μ) over every
/// test-time evaluation of every run together (N = N(μ), D, loops = μ, test_loops = T).
pub fn fit_parcae_unified(points: &Points, opts: &FitOptions) -> Result<FitReport> {
    points.validate()?;
    let law = ParcaeUnifiedLaw::new(points)?;
    let design = law.design(points)?;
    // Whole runs: a run's test-time curve is resampled together, never point by point.
    let opts = match &points.curve {
        Some(ids) => FitOptions {
            resampling: Resampling::Groups(group_indices(ids)),
            ..opts.clone()
        },
        None => opts.clone(),
    };
    let mut r = fit_law(&law, &design, (&points.compute()?, "C"), &opts)?;
    r.notes.extend(grid_notes(points)?);
    Ok(r)
}
