//! `loopscale fit --law-expr`: a law written as an expression, from the command line or from a
//! sweep file's `[analysis.laws.NAME]`, resolved against the columns its source offers (a CSV
//! file's numeric columns, or a database's finished runs with `loss`, `N`, `D`, `C`, `r`,
//! `n_once`, `n_rec` and any configuration key), then fitted by the same procedure as a
//! built-in law (`loopscale_analysis::law_fit`). This file only turns the flags into the law.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::analysis::source;
use crate::analysis::written::{declared_in_store, spec_of};
use crate::fit::written::{LawSpec, ParamSpec, Range, schwethelm};
use crate::store::Store;
use crate::sweep::{Sweep, WrittenLawToml};

/// The built-in laws written as expressions, by name.
pub fn builtin(name: &str) -> Option<LawSpec> {
    (name == "schwethelm").then(schwethelm)
}

/// Names of the built-in written laws, for help and errors.
pub const BUILTIN: &[&str] = &["schwethelm"];

/// The written laws a source declares: a sweep file's own, or those of the sweep files stored in
/// a database (of `sweep` when given).
pub fn declared(source: &Path, sweep: Option<&str>) -> Result<Vec<WrittenLawToml>> {
    if source.extension().is_some_and(|e| e == "toml") && !source::is_database(source) {
        return Ok(Sweep::load(source)?.analysis.laws);
    }
    if !source::is_database(source) {
        return Ok(Vec::new());
    }
    declared_in_store(&Store::open_read_only(source)?, sweep)
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
            spec_of(t).with_context(|| format!("{}: [analysis.laws.{text}]", source.display()))?
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
