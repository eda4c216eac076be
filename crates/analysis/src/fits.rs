//! The fits a report shows, computed from the frames through [`super::law_fit`], as `loopscale
//! fit` computes them (nothing is read from the `fits` table: a report always reflects the runs
//! in the database now), with the report's own options and data checks: the compute law
//! with a pointwise bootstrap band, one saturating exponential per test-time curve, the
//! iso-FLOP optima (located near each budget's lowest loss, or flagged at an edge) and power
//! laws of the optimal loops and tokens, Parcae's law over the looped runs, and, for a tuned sweep
//! ([`super::envelope`]), the optimum of each tuned key against compute. A fit that cannot be made
//! carries the sentence saying why, for the report to print instead of a chart.

use anyhow::{Result, anyhow};
use polars::prelude::DataFrame;

use super::budgets::{BUDGET_TOLERANCE, with_budgets};
use super::columns::{f64s, strs};
use super::envelope::{Envelope, Position, column_of};
use super::frames::Frames;
use super::law_fit::{BuiltinLaw, FitInput, FitRequest, LawChoice, Source, load};
use super::run_rows::finished_runs;
use super::source::{ParamCount, run_points_of};
use loopscale_fit::bootstrap::percentile_interval;
use loopscale_fit::hyper::fit_optimum_law;
use loopscale_fit::isoflop::{Location, Parabola, budget_optima};
use loopscale_fit::parametric::bootstrap_draws;
use loopscale_fit::{
    BootstrapOptions, Budgeting, ComputeLaw, FitOptions, FitReport, HeldOutSpec, IsoflopAxis,
    IsoflopOptions, ParcaeLaw, ParcaeUnifiedLaw, Points, fit_isoflop,
};

/// Bootstrap resamples of the report's fits (fewer than `fit`'s 1000: a report is redrawn
/// often; `loopscale fit` gives the publication intervals).
pub const REPORT_RESAMPLES: usize = 200;

/// L(C) = E + A·C^(−α) over every finished run, with the 95% band of the fitted curve.
#[derive(Clone, Debug)]
pub struct ComputeFit {
    pub report: FitReport,
    /// (C, lo, hi): pointwise percentile band of L(C) over bootstrap resamples.
    pub band: Vec<(f64, f64, f64)>,
}

impl ComputeFit {
    pub fn predict(&self, c: f64) -> f64 {
        let v = |n| self.report.value(n).unwrap_or(f64::NAN);
        v("E") + v("A") * c.powf(-v("alpha"))
    }
}

/// One test-time curve's L(T) = L∞ + A·exp(−k·T).
#[derive(Clone, Debug)]
pub struct TestTimeFit {
    pub run_key: String,
    pub label: String,
    pub report: FitReport,
}

impl TestTimeFit {
    pub fn predict(&self, t: f64) -> f64 {
        let v = |n| self.report.value(n).unwrap_or(f64::NAN);
        v("L_inf") + v("A") * (-v("k") * t).exp()
    }
    /// What the curve does not show, in a few words ("no saturating gain", "no saturation
    /// within the sampled T", ...), from the fit's first note; `None` for a saturating curve.
    pub fn verdict(&self) -> Option<&str> {
        self.report
            .notes
            .first()
            .map(|n| n.split(':').next().unwrap_or(n))
    }
}

/// One FLOP budget of an iso-FLOP analysis: its runs' (x, loss), where its optimum lies, and
/// the parabola in log x fitted near its lowest loss (when the optimum is inside the samples).
#[derive(Clone, Debug)]
pub struct BudgetCurve {
    pub flops: f64,
    pub x: Vec<f64>,
    pub loss: Vec<f64>,
    pub location: Location,
    /// The local parabola and the x range it was fitted over (inside only).
    pub parabola: Option<Parabola>,
    pub window: (f64, f64),
    /// The located optimum (or the edge value) and the loss there.
    pub x_star: f64,
    pub loss_star: f64,
    /// The mean final loss of the GPT runs at this budget (within the budget tolerance) that a
    /// looped-run analysis left out: the fixed-depth model it is compared with.
    pub gpt_loss: Option<f64>,
}

impl BudgetCurve {
    /// The local parabola at x (NaN without one).
    pub fn predict(&self, x: f64) -> f64 {
        let u = x.ln();
        self.parabola
            .map_or(f64::NAN, |p| p.c0 + p.c1 * u + p.c2 * u * u)
    }
    /// Whether x lies in the window the parabola was fitted over.
    pub fn in_window(&self, x: f64) -> bool {
        self.parabola.is_some()
            && x >= self.window.0 * (1.0 - 1e-12)
            && x <= self.window.1 * (1.0 + 1e-12)
    }
}

/// Iso-FLOP analysis along one axis (loops or tokens).
#[derive(Clone, Debug)]
pub struct IsoflopFit {
    pub axis: IsoflopAxis,
    pub budgets: Vec<BudgetCurve>,
    /// x*(C) = G·C^a over the budgets' optima; needs two budgets or more.
    pub power_law: Result<FitReport, String>,
}

/// Parcae's law L(μ, D) = E + X·N(μ)^(−x) + Y·D^(−y) over the looped runs, with each run's
/// measured and predicted final loss.
#[derive(Clone, Debug)]
pub struct ParcaeFit {
    pub report: FitReport,
    /// Per looped run: its label, training FLOPs, measured and predicted final loss.
    pub runs: Vec<ParcaeRun>,
}

#[derive(Clone, Debug)]
pub struct ParcaeRun {
    pub label: String,
    pub flops: f64,
    pub measured: f64,
    pub predicted: f64,
}

/// The tuned optimum of one hyperparameter against compute: each configuration's refined
/// optimum, the configurations whose optimum is at an edge of their grid (bounds, not fitted),
/// and η*(C) = a·C^b over the refined ones.
#[derive(Clone, Debug)]
pub struct HyperFit {
    /// The tuned key (`train.lr`).
    pub key: String,
    /// (FLOPs, refined optimum, configuration label).
    pub inside: Vec<(f64, f64, String)>,
    /// (FLOPs, best value sampled, where it lies) of configurations at an edge.
    pub edges: Vec<(f64, f64, Position)>,
    pub law: Result<FitReport, String>,
}

/// Every fit of a report; each is the fit or the sentence saying why there is none.
#[derive(Clone, Debug)]
pub struct ReportFits {
    /// With tuned keys: the envelope that chose one run per configuration.
    pub envelope: Option<Envelope>,
    /// Per tuned key: its optimum against compute.
    pub hyper: Vec<HyperFit>,
    pub compute: Result<ComputeFit, String>,
    pub test_time: Result<Vec<TestTimeFit>, String>,
    pub isoflop_loops: Result<IsoflopFit, String>,
    pub isoflop_tokens: Result<IsoflopFit, String>,
    pub parcae: Result<ParcaeFit, String>,
    /// Parcae's unified law over every test-time evaluation of the looped runs.
    pub parcae_unified: Result<ParcaeFit, String>,
    /// The laws the sweep file writes as expressions (`[analysis.laws.NAME]`), by name: each
    /// fitted over the runs, with each run's measured and predicted loss.
    pub written: Vec<(String, Result<ParcaeFit, String>)>,
}

fn options() -> FitOptions {
    FitOptions {
        bootstrap: Some(BootstrapOptions {
            resamples: REPORT_RESAMPLES,
            ..BootstrapOptions::default()
        }),
        ..FitOptions::default()
    }
}

/// The one report of a law fitted through [`super::law_fit`].
fn fit_one(input: &FitInput, req: &FitRequest) -> Result<FitReport> {
    let mut fitted = input.fit(req)?;
    Ok(fitted.reports.swap_remove(0).1)
}

/// A law the sweep file writes, over the report's runs (resampling replicate groups where the
/// sweep has seeds, as every law of the report does), with each run's measured and predicted loss.
fn written_fit(frames: &Frames, t: &loopscale_sweep::WrittenLawToml) -> Result<ParcaeFit> {
    let req = FitRequest::new(LawChoice::Written(super::written::spec_of(t)?), options());
    let input = load(&Source::Frames(frames), &req)?;
    let mut fitted = input.fit(&req)?;
    let runs = input
        .written_predictions(&fitted, frames)?
        .into_iter()
        .map(|(label, flops, measured, predicted)| ParcaeRun {
            label,
            flops,
            measured,
            predicted,
        })
        .collect();
    Ok(ParcaeFit {
        report: fitted.reports.swap_remove(0).1,
        runs,
    })
}

impl ReportFits {
    pub fn compute(frames: &Frames) -> ReportFits {
        ReportFits::compute_tuned(frames, None, &[])
    }

    /// The fits of `frames` (already restricted to an envelope's chosen runs, if tuned), with
    /// the envelope's hyperparameter laws and the sweep's written laws.
    pub fn compute_tuned(
        frames: &Frames,
        envelope: Option<&Envelope>,
        laws: &[loopscale_sweep::WrittenLawToml],
    ) -> ReportFits {
        ReportFits {
            written: laws
                .iter()
                .map(|t| {
                    let fit = written_fit(frames, t).map_err(|e| {
                        format!("The written law `{}` was not fitted: {e:#}.", t.name)
                    });
                    (t.name.clone(), fit)
                })
                .collect(),
            envelope: envelope.cloned(),
            hyper: envelope.map(hyper_fits).unwrap_or_default(),
            compute: compute_fit(frames),
            test_time: test_time_fits(frames),
            isoflop_loops: isoflop_fit(frames, IsoflopAxis::Loops),
            isoflop_tokens: isoflop_fit(frames, IsoflopAxis::Tokens),
            parcae: parcae_fit(frames),
            parcae_unified: parcae_unified_fit(frames),
        }
    }
}

fn compute_fit(frames: &Frames) -> Result<ComputeFit, String> {
    let n = frames.runs.height();
    // Distinct compute scales, not distinct FLOP values: runs within the budget tolerance of
    // each other (one width at two learning rates, three injections of one size) pin down one
    // point of the curve, and a three-parameter law through two clusters is not determined.
    let budgets = with_budgets(&frames.runs, BUDGET_TOLERANCE).map_err(|e| e.to_string())?;
    let mut scales = strs(&budgets, "budget").map_err(|e| e.to_string())?;
    scales.dedup();
    if scales.len() < 4 {
        return Err(format!(
            "The compute law L(C) = E + A·C^(−α) has three parameters; it needs finished runs at four or \
             more distinct compute scales (runs within {:.0}% of each other's FLOPs count as one), and this \
             database has {n} run(s) at {} scale(s).",
            100.0 * BUDGET_TOLERANCE,
            scales.len()
        ));
    }
    let req = FitRequest::new(LawChoice::Builtin(BuiltinLaw::Compute), options());
    let input = load(&Source::Frames(frames), &req).map_err(|e| e.to_string())?;
    let report =
        fit_one(&input, &req).map_err(|e| format!("The compute-law fit failed: {e:#}."))?;
    let band = compute_band(&input.points, &report, &input.options(&req))
        .map_err(|e| format!("The compute-law band failed: {e:#}."))?;
    Ok(ComputeFit { report, band })
}

/// Pointwise percentile band of L(C): every bootstrap resample's curve, evaluated on a grid.
fn compute_band(
    points: &Points,
    report: &FitReport,
    opts: &FitOptions,
) -> Result<Vec<(f64, f64, f64)>> {
    let law = ComputeLaw;
    let design = law.design(points)?;
    let b = opts
        .bootstrap
        .ok_or_else(|| anyhow!("no bootstrap options"))?;
    let (draws, _) = bootstrap_draws(&law, &design, &report.theta, opts, &b);
    let c = points.compute()?;
    let (lo, hi) = c
        .iter()
        .fold((f64::INFINITY, 0.0f64), |(l, h), &v| (l.min(v), h.max(v)));
    let grid: Vec<f64> = (0..=60)
        .map(|i| (lo.ln() + (hi.ln() - lo.ln()) * i as f64 / 60.0).exp())
        .collect();
    Ok(grid
        .iter()
        .map(|&x| {
            let ys: Vec<f64> = draws.iter().map(|d| d[0] + d[1] * x.powf(-d[2])).collect();
            let (l, h) = percentile_interval(&ys, b.level);
            (x, l, h)
        })
        .collect())
}

fn test_time_fits(frames: &Frames) -> Result<Vec<TestTimeFit>, String> {
    if frames.test_time.height() == 0 {
        return Err(
            "No run was evaluated at test-time loop counts (no looped runs with model.test_loops), \
                    so there are no test-time curves."
                .into(),
        );
    }
    let req = FitRequest::new(LawChoice::Builtin(BuiltinLaw::TestTime), options());
    let input = load(&Source::Frames(frames), &req).map_err(|e| e.to_string())?;
    let fits = input
        .fit(&req)
        .map_err(|e| format!("The test-time fit failed: {e:#}."))?
        .reports;
    let keys = strs(&frames.test_time, "run_key").map_err(|e| e.to_string())?;
    let labels = strs(&frames.test_time, "label").map_err(|e| e.to_string())?;
    Ok(fits
        .into_iter()
        .map(|(run_key, report)| {
            let run_key = run_key.unwrap_or_default();
            let label = keys
                .iter()
                .position(|k| *k == run_key)
                .map(|i| labels[i].clone())
                .unwrap_or_default();
            TestTimeFit {
                run_key,
                label,
                report,
            }
        })
        .collect())
}

fn axis_name(axis: IsoflopAxis) -> &'static str {
    match axis {
        IsoflopAxis::Loops => "training loops",
        IsoflopAxis::Tokens => "training tokens",
        IsoflopAxis::Params => "parameters",
    }
}

fn isoflop_fit(frames: &Frames, axis: IsoflopAxis) -> Result<IsoflopFit, String> {
    isoflop_fit_inner(frames, axis).map_err(|e| e.to_string())?
}

fn isoflop_fit_inner(frames: &Frames, axis: IsoflopAxis) -> Result<Result<IsoflopFit, String>> {
    let (runs, gpt) = super::source::isoflop_runs(&frames.runs, axis)?;
    // The GPT runs left out, as (FLOPs, loss): each budget's fixed-depth reference.
    let gpt_runs: Vec<(f64, f64)> = finished_runs(&gpt)?
        .iter()
        .map(|r| (r.flops, r.loss))
        .collect();
    let gpt_loss_at = |flops: f64| -> Option<f64> {
        let near: Vec<f64> = gpt_runs
            .iter()
            .filter(|(c, _)| (c / flops - 1.0).abs() <= BUDGET_TOLERANCE)
            .map(|(_, l)| *l)
            .collect();
        (!near.is_empty()).then(|| near.iter().sum::<f64>() / near.len() as f64)
    };
    if runs.height() == 0 {
        return Ok(Err(
            "There are no looped runs, so there is no iso-FLOP analysis over loops.".into(),
        ));
    }
    let runs = with_budgets(&runs, BUDGET_TOLERANCE)?;
    let mut points = run_points_of(&runs, ParamCount::NonEmbedding)?;
    points.group = Some(strs(&runs, "budget")?);
    if axis == IsoflopAxis::Loops {
        points.loops = Some(f64s(&runs, "mean_recurrence")?);
    }
    let x = axis_values_of(&points, axis)?;
    let budget_flops = f64s(&runs, "budget_flops")?;
    let located = budget_optima(&points, axis, Budgeting::Labels)?;
    let n_budgets = located.len();
    // Budgets with fewer than three distinct values (a GPT alone at its FLOPs) have no optimum
    // and stay out of the power law too.
    let mut keep = vec![false; points.len()];
    let curves: Vec<BudgetCurve> = located
        .into_iter()
        .filter_map(|(b, o)| {
            let o = o?;
            for &i in &b.idx {
                keep[i] = true;
            }
            Some(BudgetCurve {
                flops: budget_flops[b.idx[0]],
                x: b.idx.iter().map(|&i| x[i]).collect(),
                loss: b.idx.iter().map(|&i| points.loss[i]).collect(),
                location: o.location,
                parabola: o.parabola,
                window: (o.window.0.exp(), o.window.1.exp()),
                x_star: o.u_star.exp(),
                loss_star: o.loss_star,
                gpt_loss: gpt_loss_at(budget_flops[b.idx[0]]),
            })
        })
        .collect();
    if curves.is_empty() {
        return Ok(Err(format!(
            "No FLOP budget (runs within {:.0}% of each other's training FLOPs) has three or more distinct \
             {}, so no iso-FLOP optimum over {} can be located ({} budget(s) in this database).",
            100.0 * BUDGET_TOLERANCE,
            axis_name(axis),
            axis_name(axis),
            n_budgets
        )));
    }
    let inside = curves
        .iter()
        .filter(|c| c.location == Location::Inside)
        .count();
    let power_law = if inside < 2 {
        Err(format!(
            "{} FLOP budget(s) of {} have their optimal {} inside the sampled values (the others' lowest loss \
             is at the smallest or largest value sampled); the optimal {} against FLOPs needs two or more.",
            inside,
            curves.len(),
            axis_name(axis),
            axis_name(axis)
        ))
    } else {
        let bootstrap = Some(BootstrapOptions {
            resamples: REPORT_RESAMPLES,
            ..BootstrapOptions::default()
        });
        let kept: Vec<usize> = (0..points.len()).filter(|&i| keep[i]).collect();
        fit_isoflop(
            &points.subset(&kept),
            &IsoflopOptions {
                axis,
                budgeting: Budgeting::Labels,
                bootstrap,
            },
        )
        .map(|r| r.report)
        .map_err(|e| {
            format!(
                "The power-law fit of the optimal {} failed: {e:#}.",
                axis_name(axis)
            )
        })
    };
    Ok(Ok(IsoflopFit {
        axis,
        budgets: curves,
        power_law,
    }))
}

/// The axis values of an iso-FLOP analysis (loops, tokens or parameters).
fn axis_values_of(points: &Points, axis: IsoflopAxis) -> Result<Vec<f64>> {
    match axis {
        IsoflopAxis::Loops => points
            .loops
            .clone()
            .ok_or_else(|| anyhow!("no loops column")),
        IsoflopAxis::Tokens => points.tokens(),
        IsoflopAxis::Params => points.params(),
    }
}

/// The optimum of each numeric tuned key against compute (see [`HyperFit`]).
fn hyper_fits(env: &Envelope) -> Vec<HyperFit> {
    env.keys
        .iter()
        .filter_map(|key| {
            let mut inside = Vec::new();
            let mut edges = Vec::new();
            for c in &env.configs {
                let k = c.keys.iter().find(|k| k.key == *key)?;
                match (k.position, k.refined) {
                    (Position::Inside, Some(r)) => inside.push((c.flops, r, c.label.clone())),
                    (Position::Smallest | Position::Largest, _) if k.best.is_finite() => {
                        edges.push((c.flops, k.best, k.position))
                    }
                    _ => {}
                }
            }
            if inside.is_empty() && edges.is_empty() {
                return None; // not a numeric key with a grid
            }
            let x: Vec<f64> = inside.iter().map(|p| p.0).collect();
            let y: Vec<f64> = inside.iter().map(|p| p.1).collect();
            let name = column_of(key);
            let bootstrap = BootstrapOptions {
                resamples: REPORT_RESAMPLES,
                ..BootstrapOptions::default()
            };
            let law = fit_optimum_law(name, "C", &x, &y, Some(&bootstrap)).map_err(|e| {
                format!(
                    "No law of the optimal {name} against compute: {e:#} ({} configuration(s) have their best {name} \
                     at an edge of their grid).",
                    edges.len()
                )
            });
            Some(HyperFit {
                key: key.clone(),
                inside,
                edges,
                law,
            })
        })
        .collect()
}

/// Looped runs a Parcae-law fit needs at least: five parameters and a few points to spare.
pub const PARCAE_MIN_RUNS: usize = 6;

fn parcae_fit(frames: &Frames) -> Result<ParcaeFit, String> {
    let req = FitRequest::new(LawChoice::Builtin(BuiltinLaw::Parcae), options());
    let input = load(&Source::Frames(frames), &req).map_err(|e| format!("{e:#}."))?;
    let points = &input.points;
    let distinct = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v.dedup();
        v.len()
    };
    let (n, d) = (
        points.n.clone().unwrap_or_default(),
        points.d.clone().unwrap_or_default(),
    );
    if points.len() < PARCAE_MIN_RUNS || distinct(&n) < 2 || distinct(&d) < 3 {
        return Err(format!(
            "Parcae's law L(μ, D) = E + X·N(μ)^(−x) + Y·D^(−y) has five parameters; it needs {PARCAE_MIN_RUNS} or more \
             finished looped runs at two or more loop counts and three or more token counts, and this database \
             has {} looped run(s) at {} loop count(s) and {} token count(s).",
            points.len(),
            distinct(&n),
            distinct(&d)
        ));
    }
    // A coarse grid: a report is redrawn often (`loopscale fit` runs Epoch's full grid).
    let req = FitRequest {
        options: FitOptions {
            heldout: Some(HeldOutSpec::LargestBudget(BUDGET_TOLERANCE)),
            starts: Some(ParcaeLaw::coarse_grid()),
            ..options()
        },
        ..req
    };
    let report = fit_one(&input, &req).map_err(|e| format!("The Parcae-law fit failed: {e:#}."))?;
    let v = |name| report.value(name).unwrap_or(f64::NAN);
    let labels = strs(&frames.runs, "label").map_err(|e| e.to_string())?;
    let keys = strs(&frames.runs, "run_key").map_err(|e| e.to_string())?;
    let c = points.compute().map_err(|e| e.to_string())?;
    let runs = (0..points.len())
        .map(|i| {
            let key = &points.curve.as_ref().expect("parcae points carry run keys")[i];
            ParcaeRun {
                label: keys
                    .iter()
                    .position(|k| k == key)
                    .map(|j| labels[j].clone())
                    .unwrap_or_default(),
                flops: c[i],
                measured: points.loss[i],
                predicted: v("E") + v("X") * n[i].powf(-v("x")) + v("Y") * d[i].powf(-v("y")),
            }
        })
        .collect();
    Ok(ParcaeFit { report, runs })
}

/// Parcae's unified law L(T | μ, D) = E + X·N(μ)^(−x) + Y·D^(−y) + Z·exp(−z·T/μ) over every
/// test-time evaluation of the looped runs; `runs` holds one entry per evaluation.
fn parcae_unified_fit(frames: &Frames) -> Result<ParcaeFit, String> {
    let req = FitRequest::new(LawChoice::Builtin(BuiltinLaw::ParcaeUnified), options());
    let input = load(&Source::Frames(frames), &req).map_err(|e| format!("{e:#}."))?;
    let points = &input.points;
    let curves = {
        let mut c = points.curve.clone().unwrap_or_default();
        c.dedup();
        c.len()
    };
    if curves < PARCAE_MIN_RUNS {
        return Err(format!(
            "Parcae's unified law L(T | μ, D) = E + X·N(μ)^(−x) + Y·D^(−y) + Z·e^(−z·T/μ) needs test-time \
             evaluations of {PARCAE_MIN_RUNS} or more finished looped runs; this database has {curves}."
        ));
    }
    let law = ParcaeUnifiedLaw::new(points).map_err(|e| format!("{e:#}."))?;
    let req = FitRequest {
        options: FitOptions {
            heldout: Some(HeldOutSpec::LargestBudget(BUDGET_TOLERANCE)),
            starts: Some(law.coarse_grid()),
            ..options()
        },
        ..req
    };
    let report =
        fit_one(&input, &req).map_err(|e| format!("The unified Parcae-law fit failed: {e:#}."))?;
    let v = |name| report.value(name).unwrap_or(f64::NAN);
    let (n, d, mu, t) = (
        points.n.clone().unwrap_or_default(),
        points.d.clone().unwrap_or_default(),
        points.loops.clone().unwrap_or_default(),
        points.test_loops.clone().unwrap_or_default(),
    );
    let c = points.compute().map_err(|e| e.to_string())?;
    let runs = (0..points.len())
        .map(|i| ParcaeRun {
            label: format!("T = {}", t[i]),
            flops: c[i],
            measured: points.loss[i],
            predicted: v("E")
                + v("X") * n[i].powf(-v("x"))
                + v("Y") * d[i].powf(-v("y"))
                + v("Z") * (-v("z") * t[i] / mu[i]).exp(),
        })
        .collect();
    Ok(ParcaeFit { report, runs })
}

/// Fitted value and residual (observed − fitted) of each run for the compute law.
pub fn compute_residuals(runs: &DataFrame, fit: &ComputeFit) -> Result<Vec<(f64, f64)>> {
    Ok(finished_runs(runs)?
        .iter()
        .map(|r| (r.flops, r.loss - fit.predict(r.flops)))
        .collect())
}
