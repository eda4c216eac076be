//! The optional `[analysis]` table of a sweep file: how `loopscale fit` and `loopscale report`
//! read the sweep's runs. Nothing here changes what is trained.
//!
//! ```toml
//! [analysis]
//! tune = ["train.lr"]   # runs differing only in these keys form one configuration; its best
//!                       # finished run stands for it in every law and chart (a hyperparameter
//!                       # envelope); `fit --tune` / `report --tune` say the same on the command line
//! ```
//!
//! Each tuned key must be a key of `[data]`, `[train]` or `[model]`, written with its table
//! (`train.lr`, `train.batch_size`, `model.mup_base_width`, ...).
//!
//! A sweep may also carry laws written as expressions, fitted by `loopscale fit SWEEP.toml
//! --law-expr NAME` (the expression itself is parsed there, by `loopscale_fit::expr`):
//!
//! ```toml
//! [analysis.laws.looped]
//! expr = "loss = E + A*(n_once + r^phi*n_rec)^(-alpha) + B*D^(-beta)"
//! params.phi = { bounds = [0, 1] }             # optional; without bounds a parameter is > 0
//! params.E = { bounds = [0, 5], start = [1, 3] }
//! vars = { r = "mean_recurrence" }             # optional: a symbol read from another column
//! derived = { n_opt = "beta/(alpha+beta)" }    # optional: quantities over the parameters
//! ```

use toml::Spanned;
use toml::de::DeValue;

use super::error::{ErrorKind, Source, SweepError, describe_toml, nearest};
use super::keys::schema;

/// The keys of `[analysis]`.
pub(crate) const ANALYSIS_KEYS: &[&str] = &["tune", "laws"];
/// The keys of one `[analysis.laws.NAME]` table.
const LAW_KEYS: &[&str] = &["expr", "params", "vars", "derived"];

/// One parameter's declared bounds and starting range, as written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WrittenParam {
    pub name: String,
    pub bounds: Option<(f64, f64)>,
    pub start: Option<(f64, f64)>,
}

/// A law written in `[analysis.laws.NAME]`, as written (the expression is checked when fitted).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WrittenLawToml {
    pub name: String,
    pub expr: String,
    pub params: Vec<WrittenParam>,
    pub vars: Vec<(String, String)>,
    pub derived: Vec<(String, String)>,
}

/// What the `[analysis]` table sets; empty when absent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AnalysisSettings {
    /// Dotted keys tuned per configuration (`train.lr`).
    pub tune: Vec<String>,
    /// Laws written as expressions (`[analysis.laws.NAME]`), in the file's order.
    pub laws: Vec<WrittenLawToml>,
}

fn wrong_type(src: &Source, v: &Spanned<DeValue>, key: &str, expected: &str) -> SweepError {
    src.error(
        ErrorKind::WrongType,
        v.span(),
        format!(
            "`{key}` must be {expected}, found {}",
            describe_toml(v.get_ref())
        ),
    )
    .with_key(key.to_string())
}

fn unknown_key(
    src: &Source,
    k: &Spanned<impl AsRef<str>>,
    dotted: &str,
    keys: &[&str],
) -> SweepError {
    let mut err = src
        .error(
            ErrorKind::UnknownKey,
            k.span(),
            format!("unknown key `{dotted}`"),
        )
        .with_key(dotted.to_string());
    if let Some(s) = nearest(k.get_ref().as_ref(), keys.iter().copied()) {
        err.message.push_str(&format!("; did you mean `{s}`?"));
    }
    err.help = Some(format!("this table takes {}", keys.join(", ")));
    err
}

fn number(v: &Spanned<DeValue>) -> Option<f64> {
    match v.get_ref() {
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
            .ok()
            .map(|n| n as f64),
        DeValue::Float(f) => f.as_str().parse().ok(),
        _ => None,
    }
}

/// `[lo, hi]` with lo < hi (ends may be `inf`/`-inf`).
fn pair(src: &Source, v: &Spanned<DeValue>, key: &str) -> Result<(f64, f64), SweepError> {
    let expected = "two numbers [lo, hi] with lo < hi (inf and -inf allowed)";
    let DeValue::Array(items) = v.get_ref() else {
        return Err(wrong_type(src, v, key, expected));
    };
    let nums: Vec<f64> = items.iter().filter_map(number).collect();
    if items.len() != 2
        || nums.len() != 2
        || nums[0].is_nan()
        || nums[1].is_nan()
        || nums[0] >= nums[1]
    {
        return Err(wrong_type(src, v, key, expected));
    }
    Ok((nums[0], nums[1]))
}

/// `{ name = "text", ... }`.
fn string_table(
    src: &Source,
    v: &Spanned<DeValue>,
    key: &str,
    what: &str,
) -> Result<Vec<(String, String)>, SweepError> {
    let Some(t) = v.get_ref().as_table() else {
        return Err(wrong_type(src, v, key, &format!("a table of {what}")));
    };
    let mut out = Vec::new();
    for (k, item) in t.iter() {
        let DeValue::String(text) = item.get_ref() else {
            return Err(wrong_type(
                src,
                item,
                &format!("{key}.{}", k.get_ref()),
                "a string",
            ));
        };
        out.push((k.get_ref().to_string(), text.to_string()));
    }
    Ok(out)
}

fn parse_law(src: &Source, name: &str, v: &Spanned<DeValue>) -> Result<WrittenLawToml, SweepError> {
    let at = format!("analysis.laws.{name}");
    let Some(table) = v.get_ref().as_table() else {
        return Err(wrong_type(src, v, &at, "a table with `expr`").with_help(
            "write `[analysis.laws.NAME]` followed by `expr = \"loss = E + A*C^(-alpha)\"`",
        ));
    };
    let mut law = WrittenLawToml {
        name: name.to_string(),
        ..Default::default()
    };
    let mut has_expr = false;
    for (k, item) in table.iter() {
        let key = k.get_ref().as_ref();
        let dotted = format!("{at}.{key}");
        match key {
            "expr" => {
                let DeValue::String(text) = item.get_ref() else {
                    return Err(wrong_type(
                        src,
                        item,
                        &dotted,
                        "the law as a string, e.g. \"loss = E + A*C^(-alpha)\"",
                    ));
                };
                law.expr = text.to_string();
                has_expr = true;
            }
            "params" => {
                let Some(params) = item.get_ref().as_table() else {
                    return Err(wrong_type(
                        src,
                        item,
                        &dotted,
                        "a table of parameters, e.g. params.phi = { bounds = [0, 1] }",
                    ));
                };
                for (pk, pv) in params.iter() {
                    let pname = pk.get_ref().to_string();
                    let pdot = format!("{dotted}.{pname}");
                    let Some(pt) = pv.get_ref().as_table() else {
                        return Err(wrong_type(
                            src,
                            pv,
                            &pdot,
                            "a table { bounds = [lo, hi], start = [lo, hi] }",
                        ));
                    };
                    let mut p = WrittenParam {
                        name: pname,
                        ..Default::default()
                    };
                    for (fk, fv) in pt.iter() {
                        let fdot = format!("{pdot}.{}", fk.get_ref());
                        match fk.get_ref().as_ref() {
                            "bounds" => p.bounds = Some(pair(src, fv, &fdot)?),
                            "start" => p.start = Some(pair(src, fv, &fdot)?),
                            _ => return Err(unknown_key(src, fk, &fdot, &["bounds", "start"])),
                        }
                    }
                    law.params.push(p);
                }
            }
            "vars" => law.vars = string_table(src, item, &dotted, "symbol = \"column\"")?,
            "derived" => law.derived = string_table(src, item, &dotted, "name = \"expression\"")?,
            _ => return Err(unknown_key(src, k, &dotted, LAW_KEYS)),
        }
    }
    if !has_expr {
        return Err(src
            .error(
                ErrorKind::WrongType,
                v.span(),
                format!("`{at}` has no `expr`"),
            )
            .with_key(at.clone())
            .with_help("add `expr = \"loss = E + A*C^(-alpha)\"`, the law to fit"));
    }
    Ok(law)
}

/// Whether `key` is a sweep key that can be tuned, or the nearest one for a suggestion.
pub fn check_tune_key(key: &str) -> Result<(), Option<String>> {
    let s = schema();
    if s.get(key).is_some() {
        return Ok(());
    }
    Err(nearest(key, s.keys.iter().map(|k| k.dotted.as_str())).map(String::from))
}

pub(crate) fn parse_analysis(
    src: &Source,
    value: &Spanned<DeValue>,
) -> Result<AnalysisSettings, SweepError> {
    let Some(table) = value.get_ref().as_table() else {
        return Err(src
            .error(
                ErrorKind::WrongType,
                value.span(),
                format!(
                    "`analysis` must be a table, found {}",
                    describe_toml(value.get_ref())
                ),
            )
            .with_key("analysis")
            .with_help(
                "write it as a table header `[analysis]` followed by `tune = [\"train.lr\"]`",
            ));
    };
    let mut out = AnalysisSettings::default();
    for (k, v) in table.iter() {
        let key = k.get_ref().as_ref();
        let dotted = format!("analysis.{key}");
        if key == "laws" {
            let Some(laws) = v.get_ref().as_table() else {
                return Err(wrong_type(
                    src,
                    v,
                    &dotted,
                    "a table of laws, [analysis.laws.NAME]",
                ));
            };
            for (name, law) in laws.iter() {
                out.laws.push(parse_law(src, name.get_ref().as_ref(), law)?);
            }
            continue;
        }
        if key != "tune" {
            let mut err = src
                .error(
                    ErrorKind::UnknownKey,
                    k.span(),
                    format!("unknown key `{dotted}`"),
                )
                .with_key(dotted.clone());
            if let Some(s) = nearest(key, ANALYSIS_KEYS.iter().copied()) {
                err.message
                    .push_str(&format!("; did you mean `analysis.{s}`?"));
            }
            err.help = Some("[analysis] takes `tune` and `laws`".into());
            return Err(err);
        }
        let expected = "a list of dotted sweep keys such as [\"train.lr\"]";
        let wrong = |v: &Spanned<DeValue>| {
            src.error(
                ErrorKind::WrongType,
                v.span(),
                format!(
                    "`analysis.tune` must be {expected}, found {}",
                    describe_toml(v.get_ref())
                ),
            )
            .with_key("analysis.tune")
            .with_help(
                "list the keys whose best value is chosen per configuration: tune = [\"train.lr\"]",
            )
        };
        let DeValue::Array(items) = v.get_ref() else {
            return Err(wrong(v));
        };
        for item in items {
            let DeValue::String(s) = item.get_ref() else {
                return Err(wrong(item));
            };
            if let Err(near) = check_tune_key(s) {
                let mut err = src
                    .error(
                        ErrorKind::UnknownKey,
                        item.span(),
                        format!("`analysis.tune` names `{s}`, which is not a sweep key"),
                    )
                    .with_key("analysis.tune");
                if let Some(n) = near {
                    err.message.push_str(&format!("; did you mean `{n}`?"));
                }
                err.help = Some(
                    "name a key of [data], [train] or [model] with its table, e.g. \"train.lr\""
                        .into(),
                );
                return Err(err);
            }
            if !out.tune.iter().any(|t| t == s.as_ref()) {
                out.tune.push(s.to_string());
            }
        }
    }
    Ok(out)
}

/// Only the `[analysis]` table of a sweep file's text (empty when absent): for a sweep file
/// stored in a database, whose corpus paths need not resolve where the database now lies.
pub fn analysis_of(text: &str, path: &std::path::Path) -> Result<AnalysisSettings, SweepError> {
    let src = Source { path, text };
    let doc = toml::de::DeTable::parse(text).map_err(|e| super::error::syntax_error(&src, &e))?;
    match doc.get_ref().get("analysis") {
        Some(v) => parse_analysis(&src, v),
        None => Ok(AnalysisSettings::default()),
    }
}
