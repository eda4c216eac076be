//! `loopscale fit --law-expr`: a law written as an expression, from the command line or from a
//! sweep file's `[analysis.laws.NAME]`, resolved against the columns its source offers (a CSV
//! file's numeric columns, or a database's finished runs with `loss`, `N`, `D`, `C`, `r`,
//! `n_once`, `n_rec` and any configuration key), then fitted by the same procedure as a
//! built-in law (`loopscale_fit::written`).

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::analysis::csv::read_numeric_columns;
use crate::analysis::source::{self, ParamCount};
use crate::fit::written::{LawSpec, ParamSpec, Range, schwethelm};
use crate::store::{Store, Table};
use crate::sweep::{Sweep, WrittenLawToml, analysis_of};

/// The built-in laws written as expressions, by name.
pub fn builtin(name: &str) -> Option<LawSpec> {
    (name == "schwethelm").then(schwethelm)
}

/// Names of the built-in written laws, for help and errors.
pub const BUILTIN: &[&str] = &["schwethelm"];

/// A sweep file's written law as the fit crate takes it.
fn from_toml(t: &WrittenLawToml) -> Result<LawSpec> {
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

/// The written laws a source declares: a sweep file's own, or those of the sweep files stored in
/// a database (of `sweep` when given). A stored file this build cannot read declares none.
pub fn declared(source: &Path, sweep: Option<&str>) -> Result<Vec<WrittenLawToml>> {
    if source.extension().is_some_and(|e| e == "toml") && !source::is_database(source) {
        return Ok(Sweep::load(source)?.analysis.laws);
    }
    if !source::is_database(source) {
        return Ok(Vec::new());
    }
    let store = Store::open_read_only(source)?;
    let files = crate::analysis::columns::to_frame(store.read_table(Table::SweepFiles, sweep)?)?;
    let mut laws = Vec::new();
    for text in crate::analysis::columns::strs(&files, "spec_toml")? {
        if let Ok(a) = analysis_of(&text, source) {
            laws.extend(a.laws);
        }
    }
    Ok(laws)
}

/// `NAME=LO:HI` (a flag's value) as a name and two numbers; `inf`/`-inf` allowed.
fn name_range(flag: &str, text: &str) -> Result<(String, (f64, f64))> {
    let bad = || {
        anyhow::anyhow!(
            "{flag} {text}: expected NAME=LO:HI, e.g. {flag} phi=0:1 (inf and -inf allowed)"
        )
    };
    let (name, range) = text.split_once('=').ok_or_else(bad)?;
    let (lo, hi) = range.split_once(':').ok_or_else(bad)?;
    let lo: f64 = lo.trim().parse().map_err(|_| bad())?;
    let hi: f64 = hi.trim().parse().map_err(|_| bad())?;
    if lo.is_nan() || hi.is_nan() || lo >= hi {
        bail!("{flag} {text}: LO must be below HI");
    }
    Ok((name.trim().to_string(), (lo, hi)))
}

/// `NAME=TEXT`.
fn name_text(flag: &str, text: &str) -> Result<(String, String)> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("{flag} {text}: expected NAME=VALUE"))?;
    Ok((name.trim().to_string(), value.trim().to_string()))
}

/// What `--law-expr` and its companion flags say.
pub struct WrittenFlags<'a> {
    pub law_expr: &'a str,
    pub params: &'a [String],
    pub starts: &'a [String],
    pub derived: &'a [String],
    pub vars: &'a [String],
}

/// The law `--law-expr` names or writes: a law of the source's sweep file
/// (`[analysis.laws.NAME]`), a built-in written law, or an expression; the flags add bounds,
/// starts, derived quantities and variable bindings to it.
pub fn law_spec(flags: &WrittenFlags<'_>, source: &Path, sweep: Option<&str>) -> Result<LawSpec> {
    let text = flags.law_expr.trim();
    let is_name = !text.is_empty() && text.chars().all(|c| c.is_alphanumeric() || c == '_');
    let mut spec = if is_name {
        let declared = declared(source, sweep)?;
        if let Some(t) = declared.iter().find(|l| l.name == text) {
            from_toml(t).with_context(|| format!("{}: [analysis.laws.{text}]", source.display()))?
        } else if let Some(b) = builtin(text) {
            b
        } else {
            let mut known: Vec<&str> = declared.iter().map(|l| l.name.as_str()).collect();
            known.extend(BUILTIN);
            bail!(
                "--law-expr {text}: no law of that name (laws known here: {}); write the law itself, e.g. --law-expr 'loss = E + A*C^(-alpha)'",
                known.join(", ")
            );
        }
    } else {
        LawSpec {
            name: "written".into(),
            expr: text.to_string(),
            ..Default::default()
        }
    };
    for p in flags.params {
        let (name, bounds) = name_range("--param", p)?;
        let range = Range::from_bounds(&name, Some(bounds))?;
        match spec.params.iter_mut().find(|q| q.name == name) {
            Some(q) => q.range = range,
            None => spec.params.push(ParamSpec {
                name,
                range,
                start: None,
            }),
        }
    }
    for s in flags.starts {
        let (name, start) = name_range("--param-start", s)?;
        match spec.params.iter_mut().find(|q| q.name == name) {
            Some(q) => q.start = Some(start),
            None => spec.params.push(ParamSpec {
                name,
                range: Range::Positive,
                start: Some(start),
            }),
        }
    }
    for d in flags.derived {
        spec.derived.push(name_text("--derived", d)?);
    }
    for v in flags.vars {
        spec.vars.push(name_text("--var", v)?);
    }
    Ok(spec)
}

/// Named columns, and each row's replicate group where the source has seeds.
pub type ColumnsAndGroups = (Vec<(String, Vec<f64>)>, Option<Vec<usize>>);

/// The columns of a source: a CSV file's numeric columns, or [`source::run_columns`] of a
/// database's finished runs (tuned per configuration by `tune`), with the dotted configuration
/// keys the law binds; and, for a database whose configurations have several seeds, each run's
/// replicate group, so the bootstrap resamples configurations with all their seeds.
pub fn columns(
    path: &Path,
    sweep: Option<&str>,
    tune: &[String],
    n: ParamCount,
    spec: &LawSpec,
) -> Result<ColumnsAndGroups> {
    if !source::is_database(path) {
        return Ok((read_numeric_columns(path)?, None));
    }
    let store = Store::open_read_only(path)?;
    let (frames, _) = source::load_frames(&store, sweep, tune, None)?;
    if frames.runs.height() == 0 {
        bail!(
            "{}: no finished runs to fit; train some with `loopscale run`",
            path.display()
        );
    }
    let keys: Vec<String> = spec
        .vars
        .iter()
        .filter(|(_, c)| c.contains('.'))
        .map(|(_, c)| c.clone())
        .collect();
    let cols = source::run_columns(&frames, n, &keys)?;
    let groups = crate::analysis::groups::replicate_groups(&frames)?;
    if !groups.iter().any(|g| g.stats.n >= 2) {
        return Ok((cols, None));
    }
    let runs = crate::analysis::columns::strs(&frames.runs, "run_key")?;
    let ids: Vec<String> = runs
        .iter()
        .map(|k| {
            groups
                .iter()
                .position(|g| g.run_keys.contains(k))
                .map_or_else(|| format!("run {k}"), |i| i.to_string())
        })
        .collect();
    Ok((cols, Some(crate::fit::parametric::group_indices(&ids))))
}
