//! The one way from a source and a law to a fit, used by `loopscale fit`, the report's fits and
//! `suggest`: the source's points ([`load`]: a sweep database's finished runs, frames already
//! loaded, or a CSV file), each point's replicate group where the bootstrap should resample
//! configurations with all their seeds, the estimator of the law (built in, or written as an
//! expression), and the rows the store records ([`Fitted::records`]).
//!
//! It goes in two steps, [`load`] then [`FitInput::fit`], so that a caller can say what it is
//! about to fit (the envelope, the replicate groups) before the fit, and word a failed fit its
//! own way. Nothing here prints or writes: the caller chooses the options, prints, and hands the
//! records to the store.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::columns::strs;
use super::csv::{CsvColumns, read_numeric_columns};
use super::envelope::Envelope;
use super::frames::Frames;
use super::groups::{replicate_groups, replicate_indices};
use super::record::fit_record;
use super::source::{self, ParamCount};
use super::written::{NamedColumns, database_columns};
use loopscale_fit::isoflop::BudgetOptimum;
use loopscale_fit::parametric::{fit_law, fittable_curves};
use loopscale_fit::written::{LawSpec, WrittenLaw};
use loopscale_fit::{
    Budgeting, ExponentTwoWays, FitOptions, FitReport, IsoflopAxis, IsoflopOptions, Law, Points,
    Resampling, fit_chinchilla, fit_compute, fit_isoflop_two_ways, fit_parcae, fit_parcae_unified,
    fit_test_time, fit_test_time_pooled,
};
use loopscale_store::{FitRecord, Store};

/// The built-in laws fitted to points (the depth and tuned-optimum laws read their own data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuiltinLaw {
    Compute,
    Chinchilla,
    Isoflop,
    TestTime,
    Parcae,
    ParcaeUnified,
}

impl BuiltinLaw {
    /// The law's name on the command line and in the `fits` table.
    pub fn name(self) -> &'static str {
        match self {
            BuiltinLaw::Compute => "compute",
            BuiltinLaw::Chinchilla => "chinchilla",
            BuiltinLaw::Isoflop => "isoflop",
            BuiltinLaw::TestTime => "test-time",
            BuiltinLaw::Parcae => "parcae",
            BuiltinLaw::ParcaeUnified => "parcae-unified",
        }
    }
}

/// Which law to fit.
#[derive(Clone, Debug)]
pub enum LawChoice {
    Builtin(BuiltinLaw),
    Written(LawSpec),
}

/// How the keys tuned per configuration are chosen for a database.
#[derive(Clone, Copy, Debug)]
pub enum Tune<'a> {
    /// The stored sweep files' `[analysis] tune`.
    Stored,
    /// These keys (none: every finished run stands for itself).
    Keys(&'a [String]),
}

/// A sweep database opened for fitting: its finished runs (of `sweep`, or all), with, for a
/// tuned sweep, only the best run of each configuration and the envelope that chose them.
pub struct Database {
    pub path: PathBuf,
    pub store: Store,
    pub sweep: Option<String>,
    /// The compute and Chinchilla laws: only this `[[variants]]` name's runs.
    pub variant: Option<String>,
    pub frames: Frames,
    pub envelope: Option<Envelope>,
}

impl Database {
    pub fn open(
        path: &Path,
        sweep: Option<&str>,
        variant: Option<&str>,
        tune: Tune<'_>,
    ) -> Result<Database> {
        let store = Store::open_read_only(path)?;
        let keys = match tune {
            Tune::Stored => source::stored_tune(&store, sweep)?,
            Tune::Keys(k) => k.to_vec(),
        };
        let (frames, envelope) = source::load_frames(&store, sweep, &keys, None)?;
        Ok(Database {
            path: path.to_path_buf(),
            store,
            sweep: sweep.map(str::to_string),
            variant: variant.map(str::to_string),
            frames,
            envelope,
        })
    }
}

/// Where the points come from.
pub enum Source<'a> {
    Database(&'a Database),
    /// Frames already loaded and checked (the report's, restricted to a tuned sweep's chosen
    /// runs): no check naming a file, and each estimator validates the points itself, so that
    /// the report words every failure the same way.
    Frames(&'a Frames),
    Csv {
        path: &'a Path,
        columns: &'a CsvColumns,
    },
}

impl Source<'_> {
    fn name(&self) -> String {
        match self {
            Source::Database(db) => db.path.display().to_string(),
            Source::Csv { path, .. } => path.display().to_string(),
            Source::Frames(_) => String::new(),
        }
    }
}

/// A law and how to fit it.
#[derive(Clone, Debug)]
pub struct FitRequest {
    pub law: LawChoice,
    /// Which parameter count stands for N (databases).
    pub n: ParamCount,
    /// The compute law: only the compute frontier.
    pub frontier: bool,
    /// The test-time law: one fit over all curves with a shared rate.
    pub pooled: bool,
    /// The iso-FLOP law: the variable whose optimum per budget is sought.
    pub axis: IsoflopAxis,
    /// The iso-FLOP law: points within this relative distance of FLOPs share a budget (when the
    /// points carry no budget labels).
    pub budget_tolerance: f64,
    /// A built-in law: leave out the K highest-loss points (database and CSV sources).
    pub drop_top_loss: usize,
    /// Resample replicate groups (a configuration with all its seeds) where the law fits one
    /// point per run and the runs have seeds: seeds are not independent draws of the law's error.
    /// On by default, for every caller (fit, report, suggest); a database without seeds is
    /// resampled by run either way.
    pub replicate_groups: bool,
    /// Huber δ, bootstrap, held-out check, starts: passed to the estimator as they are.
    pub options: FitOptions,
}

impl FitRequest {
    /// `law` with `options`, N the non-embedding parameters, and nothing else asked for.
    pub fn new(law: LawChoice, options: FitOptions) -> FitRequest {
        FitRequest {
            law,
            n: ParamCount::NonEmbedding,
            frontier: false,
            pooled: false,
            axis: IsoflopAxis::Loops,
            budget_tolerance: super::budgets::BUDGET_TOLERANCE,
            drop_top_loss: 0,
            replicate_groups: true,
            options,
        }
    }

    /// Whether the law fits one point per run, so that seeds can be resampled together.
    fn per_run(&self) -> bool {
        match &self.law {
            LawChoice::Written(_) => true,
            LawChoice::Builtin(BuiltinLaw::Compute) => !self.frontier,
            LawChoice::Builtin(BuiltinLaw::Chinchilla | BuiltinLaw::Parcae) => true,
            LawChoice::Builtin(_) => false,
        }
    }
}

/// What a law is fitted to, before the fit.
pub struct FitInput {
    /// A built-in law's points (empty for a written law).
    pub points: Points,
    /// A written law's columns, one value per run or row (empty for a built-in law).
    pub columns: NamedColumns,
    /// The Parcae laws and iso-FLOP optima from runs: the GPT runs left out.
    pub gpt_runs_left_out: Option<usize>,
    /// A tuned database's envelope (built-in laws).
    pub envelope: Option<Envelope>,
    /// Each point's replicate group, when the bootstrap resamples groups.
    pub replicates: Option<Vec<usize>>,
    source: String,
}

/// The points (or columns) of `req`'s law in `source`, with their replicate groups.
pub fn load(source: &Source<'_>, req: &FitRequest) -> Result<FitInput> {
    match &req.law {
        LawChoice::Written(spec) => load_written(source, req, spec),
        LawChoice::Builtin(law) => load_builtin(source, req, *law),
    }
}

fn load_builtin(source: &Source<'_>, req: &FitRequest, law: BuiltinLaw) -> Result<FitInput> {
    let (points, gpt, frames, envelope) = match source {
        Source::Database(db) => {
            let (store, frames, sweep) = (&db.store, &db.frames, db.sweep.as_deref());
            let (p, gpt) = match law {
                BuiltinLaw::TestTime => (source::test_time_points(store, frames)?, None),
                BuiltinLaw::Parcae => {
                    let (p, gpt) = source::parcae_points(store, frames, sweep, req.n)?;
                    (p, Some(gpt))
                }
                BuiltinLaw::ParcaeUnified => {
                    let (p, gpt) = source::parcae_unified_points(store, frames, sweep, req.n)?;
                    (p, Some(gpt))
                }
                BuiltinLaw::Isoflop => {
                    let (p, gpt) = source::isoflop_points(store, frames, sweep, req.n, req.axis)?;
                    (p, Some(gpt))
                }
                BuiltinLaw::Compute | BuiltinLaw::Chinchilla => (
                    source::run_points(store, frames, sweep, db.variant.as_deref(), req.n)?,
                    None,
                ),
            };
            (p, gpt, Some(frames), db.envelope.clone())
        }
        Source::Frames(frames) => {
            let (p, gpt) = match law {
                BuiltinLaw::TestTime => (source::test_time_points_of(&frames.test_time)?, None),
                BuiltinLaw::Parcae => {
                    let (p, gpt) = source::parcae_points_of(frames, req.n)?;
                    (p, Some(gpt))
                }
                BuiltinLaw::ParcaeUnified => {
                    let (p, gpt) = source::parcae_unified_points_of(frames, req.n)?;
                    (p, Some(gpt))
                }
                BuiltinLaw::Isoflop => {
                    let (runs, gpt) = source::isoflop_runs(&frames.runs, req.axis)?;
                    (source::run_points_of(&runs, req.n)?, Some(gpt.height()))
                }
                BuiltinLaw::Compute | BuiltinLaw::Chinchilla => {
                    (source::run_points_of(&frames.runs, req.n)?, None)
                }
            };
            (p, gpt, Some(*frames), None)
        }
        Source::Csv { path, columns } => {
            let p = source::csv_points(path, columns)?;
            csv_requirements(law, req.axis, &p)?;
            (p, None, None, None)
        }
    };
    let points = if matches!(source, Source::Frames(_)) {
        points
    } else {
        points.validate()?;
        if req.drop_top_loss > 0 {
            points.drop_top_loss(req.drop_top_loss)
        } else {
            points
        }
    };
    // Only the points' own runs are numbered: the groups a law does not fit (the GPT's under
    // Parcae's law) take no part.
    let replicates = match (frames, &points.curve) {
        (Some(frames), Some(keys)) if req.replicate_groups && req.per_run() => {
            replicate_indices(&replicate_groups(frames)?, keys)
        }
        _ => None,
    };
    Ok(FitInput {
        points,
        columns: Vec::new(),
        gpt_runs_left_out: gpt,
        envelope,
        replicates,
        source: source.name(),
    })
}

fn load_written(source: &Source<'_>, req: &FitRequest, spec: &LawSpec) -> Result<FitInput> {
    let (columns, replicates) = match source {
        Source::Csv { path, .. } => (read_numeric_columns(path)?, None),
        Source::Database(db) => {
            if db.frames.runs.height() == 0 {
                bail!(
                    "{}: no finished runs to fit; train some with `loopscale run`",
                    db.path.display()
                );
            }
            database_columns(&db.frames, req.n, spec)?
        }
        Source::Frames(frames) => database_columns(frames, req.n, spec)?,
    };
    Ok(FitInput {
        points: Points::default(),
        columns,
        gpt_runs_left_out: None,
        envelope: None,
        replicates: replicates.filter(|_| req.replicate_groups),
        source: source.name(),
    })
}

/// What a built-in law needs of a CSV file's columns, as an error naming the flag to give.
fn csv_requirements(law: BuiltinLaw, axis: IsoflopAxis, points: &Points) -> Result<()> {
    let need = |ok: bool, what: &str, flag: &str| -> Result<()> {
        if !ok {
            bail!(
                "--law {}: needs {what}; name its CSV column with {flag}",
                law.name()
            );
        }
        Ok(())
    };
    match law {
        BuiltinLaw::Parcae | BuiltinLaw::ParcaeUnified => {
            need(
                points.n.is_some(),
                "N(μ), the unrolled parameter count",
                "--n-col",
            )?;
            need(
                points.d.is_some() || points.c.is_some(),
                "training tokens D (or FLOPs C, to derive D = C/(6·N(μ)))",
                "--d-col (or --c-col)",
            )?;
            if law == BuiltinLaw::ParcaeUnified {
                need(
                    points.loops.is_some(),
                    "each run's training loops μ",
                    "--loops-col",
                )?;
                need(
                    points.test_loops.is_some(),
                    "the test-time loops T",
                    "--test-loops-col",
                )?;
            }
        }
        BuiltinLaw::TestTime => need(
            points.test_loops.is_some(),
            "the test-time loops T",
            "--test-loops-col",
        )?,
        BuiltinLaw::Isoflop => {
            need(
                points.c.is_some() || (points.n.is_some() && points.d.is_some()),
                "training FLOPs C to group budgets (or N and D, for C = 6ND)",
                "--c-col",
            )?;
            match axis {
                IsoflopAxis::Loops => need(
                    points.loops.is_some(),
                    "the loops of each point (--axis loops)",
                    "--loops-col",
                )?,
                IsoflopAxis::Tokens => need(
                    points.d.is_some() || (points.n.is_some() && points.c.is_some()),
                    "the tokens of each point (--axis tokens)",
                    "--d-col",
                )?,
                IsoflopAxis::Params => need(
                    points.n.is_some(),
                    "the parameters of each point (--axis params)",
                    "--n-col",
                )?,
            }
        }
        BuiltinLaw::Compute | BuiltinLaw::Chinchilla => {}
    }
    Ok(())
}

/// The iso-FLOP surface fit (approach 3, by variable projection) and its exponent beside
/// approach 2's; over loops, only why there is none.
#[derive(Clone, Debug, Serialize)]
pub struct Surface {
    pub report: Option<FitReport>,
    pub exponent: Option<ExponentTwoWays>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why_none: Option<String>,
}

/// A finished fit: one or more reports (per-curve test-time fits give one per curve), as
/// `loopscale fit --json` prints it and the `fits` table records it.
#[derive(Debug, Serialize)]
pub struct Fitted {
    pub law: String,
    pub source: String,
    /// The options the points were chosen and fitted with, as the `fits` row records them (the
    /// caller's; null until it says).
    pub selection: serde_json::Value,
    pub reports: Vec<(Option<String>, FitReport)>,
    /// iso-FLOP only: the optimum of each budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optima: Option<Vec<BudgetOptimum>>,
    /// iso-FLOP only: approach 3, the loss surface, beside approach 2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub surface: Option<Surface>,
    /// Parcae laws and iso-FLOP optima over loops or tokens from a database: GPT runs left out
    /// (they are about looped runs at fixed parameters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpt_runs_left_out: Option<usize>,
    /// With tuned keys: which run stands for each configuration, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envelope: Option<Envelope>,
    /// A written law, its variables resolved against the source's columns.
    #[serde(skip)]
    pub written: Option<WrittenLaw>,
    /// The points fitted.
    #[serde(skip)]
    pub n_points: usize,
}

impl Fitted {
    /// A fit made elsewhere (the depth and tuned-optimum laws), to be printed and recorded.
    pub fn of_reports(
        law: &str,
        source: &str,
        reports: Vec<(Option<String>, FitReport)>,
        n_points: usize,
    ) -> Fitted {
        Fitted {
            law: law.to_string(),
            source: source.to_string(),
            selection: serde_json::Value::Null,
            reports,
            optima: None,
            surface: None,
            gpt_runs_left_out: None,
            envelope: None,
            written: None,
            n_points,
        }
    }

    /// The `fits` / `fit_params` rows: one per report (its JSON beside the iso-FLOP optima), and
    /// approach 3's surface in a row of its own, so that its parameters sit in `fit_params`.
    pub fn records(&self) -> Result<Vec<FitRecord>> {
        let selection = self.selection.to_string();
        let mut out = Vec::new();
        for (curve, report) in &self.reports {
            let json = serde_json::to_string(&(report, &self.optima))?;
            out.push(fit_record(
                &self.law,
                &self.source,
                &selection,
                curve.as_deref(),
                report,
                &json,
            ));
        }
        if let Some(Surface {
            report: Some(report),
            exponent,
            ..
        }) = &self.surface
        {
            let json = serde_json::to_string(&(report, exponent))?;
            out.push(fit_record(
                "isoflop-surface",
                &self.source,
                &selection,
                None,
                report,
                &json,
            ));
        }
        Ok(out)
    }
}

impl FitInput {
    /// The test-time curves (fitted one by one) with too few evaluations to fit: the fit leaves
    /// them out.
    pub fn curves_left_out(&self, req: &FitRequest) -> Vec<String> {
        match req.law {
            LawChoice::Builtin(BuiltinLaw::TestTime) if !req.pooled => {
                fittable_curves(&self.points).1
            }
            _ => Vec::new(),
        }
    }

    /// Replicate groups and runs, when the bootstrap resamples groups.
    pub fn replicate_groups(&self) -> Option<(usize, usize)> {
        self.replicates
            .as_ref()
            .map(|g| (g.iter().max().map_or(0, |m| m + 1), g.len()))
    }

    /// `req`'s estimator options as the fit uses them: where the points have replicate groups,
    /// a bootstrap resample takes or leaves a configuration with all its seeds. Anything that
    /// resamples these points again (the report's band of L(C)) takes these options.
    pub fn options(&self, req: &FitRequest) -> FitOptions {
        let mut options = req.options.clone();
        if let Some(groups) = &self.replicates {
            options.replicates = Some(groups.clone());
            options.resampling = Resampling::Groups(groups.clone());
        }
        options
    }

    /// The fit of `req`'s law; a tuned database's envelope notes go into every report.
    pub fn fit(&self, req: &FitRequest) -> Result<Fitted> {
        let options = self.options(req);
        let mut fitted = Fitted::of_reports("", &self.source, Vec::new(), self.points.len());
        match &req.law {
            LawChoice::Written(spec) => {
                let (law, report) = fit_columns(spec, &self.columns, &options)?;
                fitted.law = spec.name.clone();
                fitted.n_points = report.n_points;
                fitted.reports = vec![(None, report)];
                fitted.written = Some(law);
                return Ok(fitted);
            }
            LawChoice::Builtin(law) => {
                fitted.law = law.name().to_string();
                let reports = self.fit_builtin(*law, req, &options, &mut fitted)?;
                fitted.reports = reports;
            }
        }
        fitted.gpt_runs_left_out = self.gpt_runs_left_out;
        if let Some(env) = &self.envelope {
            for (_, r) in fitted.reports.iter_mut() {
                r.notes.extend(env.notes.iter().cloned());
            }
            fitted.envelope = Some(env.clone());
        }
        Ok(fitted)
    }

    fn fit_builtin(
        &self,
        law: BuiltinLaw,
        req: &FitRequest,
        options: &FitOptions,
        fitted: &mut Fitted,
    ) -> Result<Vec<(Option<String>, FitReport)>> {
        let points = &self.points;
        Ok(match law {
            BuiltinLaw::Parcae => vec![(None, fit_parcae(points, options)?)],
            BuiltinLaw::ParcaeUnified => vec![(None, fit_parcae_unified(points, options)?)],
            BuiltinLaw::Compute => vec![(None, fit_compute(points, req.frontier, options)?)],
            BuiltinLaw::Chinchilla => vec![(None, fit_chinchilla(points, options)?)],
            BuiltinLaw::TestTime if req.pooled => {
                fitted.law = "test-time-pooled".into();
                vec![(None, fit_test_time_pooled(points, options)?)]
            }
            BuiltinLaw::TestTime => fit_test_time(points, options)?
                .into_iter()
                .map(|(curve, r)| (Some(curve), r))
                .collect(),
            BuiltinLaw::Isoflop => {
                let budgeting = if points.group.is_some() {
                    Budgeting::Labels
                } else {
                    Budgeting::RelativeTolerance(req.budget_tolerance)
                };
                let two_ways = fit_isoflop_two_ways(
                    points,
                    &IsoflopOptions {
                        axis: req.axis,
                        budgeting,
                        bootstrap: options.bootstrap,
                    },
                    None,
                )?;
                fitted.optima = Some(two_ways.approach2.optima);
                fitted.surface = Some(Surface {
                    report: two_ways.surface,
                    exponent: two_ways.comparison,
                    why_none: two_ways.no_surface,
                });
                vec![(None, two_ways.approach2.report)]
            }
        })
    }

    /// A written law's measured and predicted value of each run, labelled from `frames` (the
    /// frames the law was fitted over), with its training FLOPs.
    pub fn written_predictions(
        &self,
        fitted: &Fitted,
        frames: &Frames,
    ) -> Result<Vec<RunPrediction>> {
        let law = fitted.written.as_ref().context("not a written law's fit")?;
        let theta = &fitted.reports[0].1.theta;
        let column = |name: &str| {
            self.columns
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let labels = strs(&frames.runs, "label")?;
        let flops = column("C");
        let target = column(&law.target);
        let vars: Vec<Vec<f64>> = law.vars.iter().map(|(_, c)| column(c)).collect();
        debug_assert_eq!(law.n_params(), fitted.reports[0].1.params.len());
        Ok((0..target.len())
            .map(|i| {
                let row: Vec<f64> = vars.iter().map(|v| v[i]).collect();
                (
                    labels.get(i).cloned().unwrap_or_default(),
                    flops.get(i).copied().unwrap_or(f64::NAN),
                    target[i],
                    law.predict(theta, &row),
                )
            })
            .collect())
    }
}

/// One run under a written law: its label, training FLOPs, measured and predicted loss.
pub type RunPrediction = (String, f64, f64, f64);

/// A written law fitted over named columns: the law (its variables resolved) and its report.
/// The held-out check, when `opts` asks for one, withholds the points of largest `C` (or the
/// last rows when the source has no `C`).
fn fit_columns(
    spec: &LawSpec,
    columns: &[(String, Vec<f64>)],
    opts: &FitOptions,
) -> Result<(WrittenLaw, FitReport)> {
    let names: Vec<String> = columns.iter().map(|(n, _)| n.clone()).collect();
    let law = WrittenLaw::new(spec, &names)?;
    let column = |name: &str| {
        columns
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let design = law.design(&column)?;
    let (order, key) = match column("C") {
        Some(c) => (c, "C"),
        None => ((0..design.len()).map(|i| i as f64).collect(), "row"),
    };
    let report = fit_law(&law, &design, (&order, key), opts)
        .with_context(|| format!("fitting law `{}` ({})", spec.name, law.text()))?;
    Ok((law, report))
}
