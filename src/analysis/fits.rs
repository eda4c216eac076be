//! The fits a report shows, computed from the frames with `crate::fit` (nothing is read from
//! the `fits` table: a report always reflects the runs in the database now): the compute law
//! with a pointwise bootstrap band, one saturating exponential per test-time curve, and the
//! iso-FLOP parabolas and power laws of the optimal loops and tokens. A fit that cannot be made
//! carries the sentence saying why, for the report to print instead of a chart.

use anyhow::{Result, anyhow};
use polars::prelude::DataFrame;

use super::budgets::{BUDGET_TOLERANCE, with_budgets};
use super::columns::{f64s, filter_rows, opt_f64s, strs};
use super::frames::Frames;
use super::source::{ParamCount, run_points_of, test_time_points_of};
use crate::fit::bootstrap::percentile_interval;
use crate::fit::isoflop::{Parabola, fit_parabola};
use crate::fit::parametric::bootstrap_draws;
use crate::fit::{
    BootstrapOptions, Budgeting, ComputeLaw, FitOptions, FitReport, IsoflopAxis, IsoflopOptions,
    Points, fit_compute, fit_isoflop, fit_test_time,
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

/// One FLOP budget of an iso-FLOP analysis: its runs' (x, loss) and fitted parabola in log x.
#[derive(Clone, Debug)]
pub struct BudgetCurve {
    pub flops: f64,
    pub x: Vec<f64>,
    pub loss: Vec<f64>,
    pub parabola: Parabola,
    /// The vertex: optimal x and the parabola's loss there.
    pub x_star: f64,
    pub loss_star: f64,
}

impl BudgetCurve {
    pub fn predict(&self, x: f64) -> f64 {
        let u = x.ln();
        self.parabola.c0 + self.parabola.c1 * u + self.parabola.c2 * u * u
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

/// Every fit of a report; each is the fit or the sentence saying why there is none.
#[derive(Clone, Debug)]
pub struct ReportFits {
    pub compute: Result<ComputeFit, String>,
    pub test_time: Result<Vec<TestTimeFit>, String>,
    pub isoflop_loops: Result<IsoflopFit, String>,
    pub isoflop_tokens: Result<IsoflopFit, String>,
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

impl ReportFits {
    pub fn compute(frames: &Frames) -> ReportFits {
        ReportFits {
            compute: compute_fit(frames),
            test_time: test_time_fits(frames),
            isoflop_loops: isoflop_fit(frames, IsoflopAxis::Loops),
            isoflop_tokens: isoflop_fit(frames, IsoflopAxis::Tokens),
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
    let points =
        run_points_of(&frames.runs, ParamCount::NonEmbedding).map_err(|e| e.to_string())?;
    let opts = options();
    let report = fit_compute(&points, false, &opts)
        .map_err(|e| format!("The compute-law fit failed: {e:#}."))?;
    let band = compute_band(&points, &report, &opts)
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
    let points = test_time_points_of(&frames.test_time).map_err(|e| e.to_string())?;
    let fits = fit_test_time(&points, &options())
        .map_err(|e| format!("The test-time fit failed: {e:#}."))?;
    let keys = strs(&frames.test_time, "run_key").map_err(|e| e.to_string())?;
    let labels = strs(&frames.test_time, "label").map_err(|e| e.to_string())?;
    Ok(fits
        .into_iter()
        .map(|(run_key, report)| {
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
    let mut runs = frames.runs.clone();
    if axis == IsoflopAxis::Loops {
        // Loops are a looped-model axis: GPT runs have none.
        let looped: Vec<bool> = opt_f64s(&runs, "mean_recurrence")?
            .iter()
            .map(Option::is_some)
            .collect();
        runs = filter_rows(&runs, &looped)?;
        if runs.height() == 0 {
            return Ok(Err(
                "There are no looped runs, so there is no iso-FLOP analysis over loops.".into(),
            ));
        }
    }
    let runs = with_budgets(&runs, BUDGET_TOLERANCE)?;
    let column = if axis == IsoflopAxis::Loops {
        "mean_recurrence"
    } else {
        "tokens"
    };
    let x = f64s(&runs, column)?;
    let loss = f64s(&runs, "final_val_loss")?;
    let budget = strs(&runs, "budget")?;
    let budget_flops = f64s(&runs, "budget_flops")?;
    let mut labels: Vec<String> = budget.clone();
    labels.dedup();
    let mut curves = Vec::new();
    let mut keep = vec![false; runs.height()];
    for l in &labels {
        let idx: Vec<usize> = (0..runs.height()).filter(|&i| budget[i] == *l).collect();
        let u: Vec<f64> = idx.iter().map(|&i| x[i].ln()).collect();
        let y: Vec<f64> = idx.iter().map(|&i| loss[i]).collect();
        let Some(parabola) = fit_parabola(&u, &y, &vec![1.0; u.len()]) else {
            continue;
        };
        let Some(u_star) = parabola.vertex() else {
            continue;
        };
        for &i in &idx {
            keep[i] = true;
        }
        let loss_star = parabola.c0 + parabola.c1 * u_star + parabola.c2 * u_star * u_star;
        curves.push(BudgetCurve {
            flops: budget_flops[idx[0]],
            x: idx.iter().map(|&i| x[i]).collect(),
            loss: y,
            parabola,
            x_star: u_star.exp(),
            loss_star,
        });
    }
    if curves.is_empty() {
        return Ok(Err(format!(
            "No FLOP budget (runs within {:.0}% of each other's training FLOPs) has three or more distinct \
             {} with a loss curve that opens upward, so no iso-FLOP parabola over {} can be fitted \
             ({} budget(s) in this database).",
            100.0 * BUDGET_TOLERANCE,
            axis_name(axis),
            axis_name(axis),
            labels.len()
        )));
    }
    let power_law = if curves.len() < 2 {
        Err(format!(
            "Only one FLOP budget has an iso-FLOP parabola over {}; the optimal {} against FLOPs needs two or more.",
            axis_name(axis),
            axis_name(axis)
        ))
    } else {
        let kept = filter_rows(&runs, &keep)?;
        let mut points = run_points_of(&kept, ParamCount::NonEmbedding)?;
        points.group = Some(strs(&kept, "budget")?);
        if axis == IsoflopAxis::Loops {
            points.loops = Some(f64s(&kept, "mean_recurrence")?);
        }
        let bootstrap = Some(BootstrapOptions {
            resamples: REPORT_RESAMPLES,
            ..BootstrapOptions::default()
        });
        fit_isoflop(
            &points,
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

/// Fitted value and residual (observed − fitted) of each run for the compute law.
pub fn compute_residuals(runs: &DataFrame, fit: &ComputeFit) -> Result<Vec<(f64, f64)>> {
    let c = f64s(runs, "flops")?;
    let l = f64s(runs, "final_val_loss")?;
    Ok(c.iter()
        .zip(&l)
        .map(|(&c, &l)| (c, l - fit.predict(c)))
        .collect())
}
