//! `loopscale fit`: fit a scaling law to a sweep's database or a CSV file, print it, store it.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::analysis::source::{self, ParamCount};
use crate::analysis::{CsvColumns, fit_record};
use crate::fit::{
    BootstrapOptions, Budgeting, DEFAULT_HUBER_DELTA, FitOptions, FitReport, HeldOutSpec,
    IsoflopAxis, IsoflopOptions, Points, fit_chinchilla, fit_compute, fit_isoflop, fit_test_time,
    fit_test_time_pooled,
};
use crate::store::Store;

/// The laws `loopscale fit` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LawName {
    /// L(C) = E + A·C^(-α): loss against training FLOPs (all points, or the frontier with --frontier).
    Compute,
    /// L(N, D) = E + A/N^α + B/D^β (Hoffmann et al. 2022, approach 3).
    Chinchilla,
    /// Per FLOP budget, a parabola of loss in log(x); its minima x*(C) = G·C^a.
    Isoflop,
    /// L(T) = L∞ + A·exp(-k·T) over test-time loop counts, per run (or pooled with --pooled).
    TestTime,
}

/// Which parameter count stands for N (database sources).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum NCount {
    /// Parameters without the token embedding (Kaplan et al.'s convention).
    NonEmbedding,
    /// All unique parameters (Hoffmann et al.'s convention).
    Total,
}

impl From<NCount> for ParamCount {
    fn from(n: NCount) -> ParamCount {
        match n {
            NCount::NonEmbedding => ParamCount::NonEmbedding,
            NCount::Total => ParamCount::Total,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum AxisName {
    Loops,
    Tokens,
    Params,
}

#[derive(Args, Debug, Serialize)]
pub struct FitArgs {
    /// A sweep database (results/NAME.sqlite) or a CSV file with a header row.
    pub source: PathBuf,
    /// Which law to fit.
    #[arg(long, value_enum)]
    pub law: LawName,
    /// Database source: only this sweep's runs (default: every finished run in the file).
    #[arg(long)]
    pub sweep: Option<String>,
    /// Database source: which parameter count is N.
    #[arg(long, value_enum, default_value = "non-embedding")]
    pub n: NCount,
    /// compute law: fit only the compute frontier (the lowest loss at or below each C).
    #[arg(long)]
    pub frontier: bool,
    /// test-time law: one fit over all curves with a shared rate k (else one fit per curve).
    #[arg(long)]
    pub pooled: bool,
    /// isoflop law: the variable whose optimum per budget is sought.
    #[arg(long, value_enum, default_value = "loops")]
    pub axis: AxisName,
    /// isoflop law: points whose FLOPs lie within this relative distance share a budget
    /// (ignored when the CSV has a group column via --group-col).
    #[arg(long, default_value_t = 0.1)]
    pub budget_tolerance: f64,
    /// Leave out the K highest-loss points (Epoch AI dropped 5 of Chinchilla's 245).
    #[arg(long, default_value_t = 0)]
    pub drop_top_loss: usize,
    /// δ of the Huber loss on log-loss residuals.
    #[arg(long, default_value_t = DEFAULT_HUBER_DELTA)]
    pub huber_delta: f64,
    /// Bootstrap resamples for the intervals (0: no intervals).
    #[arg(long, default_value_t = 1000)]
    pub resamples: usize,
    /// Coverage of the percentile intervals.
    #[arg(long, default_value_t = 0.95)]
    pub level: f64,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Held-out check: fit without the K largest-compute points (largest T for test-time) and
    /// report the error predicting them.
    #[arg(long)]
    pub heldout: Option<usize>,
    /// CSV column of N (parameters).
    #[arg(long)]
    pub n_col: Option<String>,
    /// CSV column of D (training tokens); if absent, D = C / (6N).
    #[arg(long)]
    pub d_col: Option<String>,
    /// CSV column of C (training FLOPs).
    #[arg(long)]
    pub c_col: Option<String>,
    /// CSV column of the loss.
    #[arg(long, default_value = "loss")]
    pub loss_col: String,
    /// CSV column of the (mean training) loop count.
    #[arg(long)]
    pub loops_col: Option<String>,
    /// CSV column of the test-time loop count T.
    #[arg(long)]
    pub test_loops_col: Option<String>,
    /// CSV column naming each point's FLOP budget (isoflop).
    #[arg(long)]
    pub group_col: Option<String>,
    /// CSV column naming each point's curve (test-time).
    #[arg(long)]
    pub curve_col: Option<String>,
    /// Print the result as JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Record the fit in this database's `fits` table (default: the source, when it is a
    /// database; a CSV fit is not recorded unless this is given).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Do not record the fit anywhere.
    #[arg(long)]
    pub no_save: bool,
}

impl FitArgs {
    fn csv_columns(&self) -> CsvColumns {
        // With no column flags at all, loopscale's own export names are assumed.
        let d = CsvColumns::default();
        let any = self.n_col.is_some()
            || self.d_col.is_some()
            || self.c_col.is_some()
            || self.loops_col.is_some();
        let pick = |given: &Option<String>, default: Option<String>| {
            given.clone().or(if any { None } else { default })
        };
        CsvColumns {
            n: pick(&self.n_col, d.n),
            d: pick(&self.d_col, d.d),
            c: pick(&self.c_col, d.c),
            loss: self.loss_col.clone(),
            loops: pick(&self.loops_col, d.loops),
            test_loops: pick(&self.test_loops_col, d.test_loops),
            group: self.group_col.clone().or(if any { None } else { d.group }),
            curve: self.curve_col.clone().or(if any { None } else { d.curve }),
        }
    }

    fn bootstrap(&self) -> Option<BootstrapOptions> {
        (self.resamples > 0).then(|| BootstrapOptions {
            resamples: self.resamples,
            level: self.level,
            seed: self.seed,
            ..BootstrapOptions::default()
        })
    }

    fn fit_options(&self) -> FitOptions {
        FitOptions {
            huber_delta: self.huber_delta,
            bootstrap: self.bootstrap(),
            heldout: self.heldout.map(HeldOutSpec::Count),
            ..FitOptions::default()
        }
    }

    #[allow(clippy::neg_cmp_op_on_partial_ord)] // `!(x > 0)` also refuses NaN
    fn check(&self) -> Result<()> {
        if !self.source.exists() {
            bail!(
                "{}: no such file (give a sweep database or a CSV file)",
                self.source.display()
            );
        }
        if !(self.huber_delta > 0.0) {
            bail!("--huber-delta must be positive, got {}", self.huber_delta);
        }
        if !(self.level > 0.0 && self.level < 1.0) {
            bail!("--level must lie in (0, 1), got {}", self.level);
        }
        if !(self.budget_tolerance > 0.0) {
            bail!(
                "--budget-tolerance must be positive, got {}",
                self.budget_tolerance
            );
        }
        Ok(())
    }
}

/// A finished fit: one or more reports (per-curve test-time fits give one per curve).
#[derive(Serialize)]
struct Fitted {
    law: String,
    source: String,
    selection: serde_json::Value,
    reports: Vec<(Option<String>, FitReport)>,
    /// iso-FLOP only: the optimum of each budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    optima: Option<serde_json::Value>,
}

fn load_points(args: &FitArgs) -> Result<Points> {
    let points = if source::is_database(&args.source) {
        let store = Store::open_read_only(&args.source)?;
        match args.law {
            LawName::TestTime => source::test_time_points(&store, args.sweep.as_deref())?,
            _ => source::run_points(&store, args.sweep.as_deref(), args.n.into())?,
        }
    } else {
        source::csv_points(&args.source, &args.csv_columns())?
    };
    points.validate()?;
    Ok(if args.drop_top_loss > 0 {
        points.drop_top_loss(args.drop_top_loss)
    } else {
        points
    })
}

fn run_fit(args: &FitArgs, points: &Points) -> Result<Fitted> {
    let options = args.fit_options();
    let mut law = format!("{:?}", args.law).to_lowercase();
    let mut optima = None;
    let reports = match args.law {
        LawName::Compute => vec![(None, fit_compute(points, args.frontier, &options)?)],
        LawName::Chinchilla => vec![(None, fit_chinchilla(points, &options)?)],
        LawName::TestTime if args.pooled => {
            law = "test-time-pooled".into();
            vec![(None, fit_test_time_pooled(points, &options)?)]
        }
        LawName::TestTime => {
            law = "test-time".into();
            fit_test_time(points, &options)?
                .into_iter()
                .map(|(curve, r)| (Some(curve), r))
                .collect()
        }
        LawName::Isoflop => {
            let axis = match args.axis {
                AxisName::Loops => IsoflopAxis::Loops,
                AxisName::Tokens => IsoflopAxis::Tokens,
                AxisName::Params => IsoflopAxis::Params,
            };
            let budgeting = if points.group.is_some() {
                Budgeting::Labels
            } else {
                Budgeting::RelativeTolerance(args.budget_tolerance)
            };
            let result = fit_isoflop(
                points,
                &IsoflopOptions {
                    axis,
                    budgeting,
                    bootstrap: args.bootstrap(),
                },
            )?;
            optima = Some(serde_json::to_value(&result.optima)?);
            vec![(None, result.report)]
        }
    };
    Ok(Fitted {
        law,
        source: args.source.display().to_string(),
        selection: serde_json::to_value(args)?,
        reports,
        optima,
    })
}

/// `loopscale fit`.
pub fn fit(args: &FitArgs) -> Result<i32> {
    args.check()?;
    let points = load_points(args)?;
    let fitted = run_fit(args, &points)?;

    let target: Option<&Path> = if args.no_save {
        None
    } else if let Some(db) = &args.db {
        Some(db)
    } else if source::is_database(&args.source) {
        Some(&args.source)
    } else {
        None
    };
    let mut fit_ids = Vec::new();
    if let Some(db) = target {
        let mut store = Store::open(db)?;
        let selection = fitted.selection.to_string();
        for (curve, report) in &fitted.reports {
            let json = serde_json::to_string(&(report, &fitted.optima))?;
            fit_ids.push(store.insert_fit(&fit_record(
                &fitted.law,
                &fitted.source,
                &selection,
                curve.as_deref(),
                report,
                &json,
            ))?);
        }
    }

    if args.json {
        println!("{}", serde_json::to_string_pretty(&fitted)?);
        return Ok(0);
    }
    println!(
        "{} fit of {} ({} points)",
        fitted.law,
        fitted.source,
        points.len()
    );
    for (curve, report) in &fitted.reports {
        if let Some(curve) = curve {
            println!("\ncurve {curve}:");
        }
        println!("{report}");
    }
    let noted = fitted
        .reports
        .iter()
        .filter(|(_, r)| !r.notes.is_empty())
        .count();
    if fitted.reports.len() > 1 && noted > 0 {
        println!(
            "{noted} of {} fits carry a NOTE (above): read them before quoting their parameters",
            fitted.reports.len()
        );
    }
    if let Some(optima) = &fitted.optima {
        println!(
            "optimum per FLOP budget:\n{}",
            serde_json::to_string_pretty(optima)?
        );
    }
    if let Some(db) = target {
        let ids: Vec<String> = fit_ids.iter().map(|i| i.to_string()).collect();
        println!(
            "recorded in {} (fits.fit_id {})",
            db.display(),
            ids.join(", ")
        );
    }
    Ok(0)
}
