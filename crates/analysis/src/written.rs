//! Laws written as expressions (`[analysis.laws.NAME]` of a sweep file, or `fit --law-expr`):
//! the sweep file's form turned into the fit crate's [`LawSpec`], the laws a database's stored
//! sweep files declare, and the columns a database offers them. They are fitted as a built-in
//! law is, by [`super::law_fit`].

use anyhow::Result;

use super::columns::{strs, to_frame};
use super::frames::Frames;
use super::groups::{replicate_groups, replicate_indices};
use super::source::{ParamCount, run_columns};
use loopscale_fit::written::{LawSpec, ParamSpec, Range};
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
