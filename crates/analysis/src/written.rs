//! Laws written as expressions (`[analysis.laws.NAME]` of a sweep file, or `fit --law-expr`):
//! the sweep file's form turned into the fit crate's [`LawSpec`], the laws a database's stored
//! sweep files declare, the columns a database offers them, and the fit with each run's measured
//! and predicted loss. One path serves `loopscale fit` and the report.

use anyhow::{Context, Result};

use super::columns::{strs, to_frame};
use super::frames::Frames;
use super::groups::{replicate_groups, replicate_indices};
use super::source::{ParamCount, run_columns};
use loopscale_fit::parametric::fit_law;
use loopscale_fit::written::{LawSpec, ParamSpec, Range, WrittenLaw};
use loopscale_fit::{FitOptions, FitReport, Law, Resampling};
use loopscale_store::{Store, Table};
use loopscale_sweep::{WrittenLawToml, analysis_of};

/// Named columns, one value per point.
pub type NamedColumns = Vec<(String, Vec<f64>)>;

/// A sweep file's written law as the fit crate takes it.
pub fn spec_of(t: &WrittenLawToml) -> Result<LawSpec> {
    let params = t
        .params
        .iter()
        .map(|p| {
            Ok(ParamSpec {
                name: p.name.clone(),
                range: Range::from_bounds(&p.name, p.bounds)?,
                start: p.start,
            })
        })
        .collect::<Result<_>>()?;
    Ok(LawSpec {
        name: t.name.clone(),
        expr: t.expr.clone(),
        params,
        vars: t.vars.clone(),
        derived: t.derived.clone(),
        scale: Default::default(),
    })
}

/// The written laws of the sweep files stored in a database (of `sweep`, or all), in order; a
/// stored file whose `[analysis]` this build cannot read declares none.
pub fn declared_in_store(store: &Store, sweep: Option<&str>) -> Result<Vec<WrittenLawToml>> {
    let files = to_frame(store.read_table(Table::SweepFiles, sweep)?)?;
    let mut laws: Vec<WrittenLawToml> = Vec::new();
    for text in strs(&files, "spec_toml")? {
        if let Ok(a) = analysis_of(&text, store.path()) {
            for law in a.laws {
                if !laws.iter().any(|l| l.name == law.name) {
                    laws.push(law);
                }
            }
        }
    }
    Ok(laws)
}

/// The columns of a database's finished runs a written law may read ([`run_columns`], with the
/// dotted configuration keys `spec` binds), and each run's replicate group when configurations
/// have several seeds (so the bootstrap resamples configurations with all their seeds).
pub fn database_columns(
    frames: &Frames,
    n: ParamCount,
    spec: &LawSpec,
) -> Result<(NamedColumns, Option<Vec<usize>>)> {
    let keys: Vec<String> = spec
        .vars
        .iter()
        .filter(|(_, c)| c.contains('.'))
        .map(|(_, c)| c.clone())
        .collect();
    let cols = run_columns(frames, n, &keys)?;
    let runs = strs(&frames.runs, "run_key")?;
    Ok((cols, replicate_indices(&replicate_groups(frames)?, &runs)))
}

/// A written law fitted over named columns: the law (its variables resolved) and its report.
/// The held-out check, when `opts` asks for one, withholds the points of largest `C` (or the
/// last rows when the source has no `C`).
pub fn fit_columns(
    spec: &LawSpec,
    columns: &[(String, Vec<f64>)],
    replicates: Option<Vec<usize>>,
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
    let mut opts = opts.clone();
    if let Some(groups) = replicates {
        opts.replicates = Some(groups.clone());
        opts.resampling = Resampling::Groups(groups);
    }
    let (order, key) = match column("C") {
        Some(c) => (c, "C"),
        None => ((0..design.len()).map(|i| i as f64).collect(), "row"),
    };
    let report = fit_law(&law, &design, (&order, key), &opts)
        .with_context(|| format!("fitting law `{}` ({})", spec.name, law.text()))?;
    Ok((law, report))
}

/// One run under a written law: its label, training FLOPs, measured and predicted loss.
pub type RunPrediction = (String, f64, f64, f64);

/// A written law over the report's runs, with each run's measured and predicted loss.
pub fn report_fit(
    frames: &Frames,
    spec: &LawSpec,
    opts: &FitOptions,
) -> Result<(FitReport, Vec<RunPrediction>)> {
    let (columns, replicates) = database_columns(frames, ParamCount::NonEmbedding, spec)?;
    let (law, report) = fit_columns(spec, &columns, replicates, opts)?;
    let column = |name: &str| {
        columns
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let labels = strs(&frames.runs, "label")?;
    let flops = column("C");
    let target = column(&law.target);
    let vars: Vec<Vec<f64>> = law.vars.iter().map(|(_, c)| column(c)).collect();
    let runs = (0..target.len())
        .map(|i| {
            let row: Vec<f64> = vars.iter().map(|v| v[i]).collect();
            (
                labels.get(i).cloned().unwrap_or_default(),
                flops.get(i).copied().unwrap_or(f64::NAN),
                target[i],
                law.predict(&report.theta, &row),
            )
        })
        .collect();
    debug_assert_eq!(law.n_params(), report.params.len());
    Ok((report, runs))
}
