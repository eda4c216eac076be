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

use toml::Spanned;
use toml::de::DeValue;

use super::error::{ErrorKind, Source, SweepError, describe_toml, nearest};
use super::keys::schema;

/// The keys of `[analysis]`.
pub(crate) const ANALYSIS_KEYS: &[&str] = &["tune"];

/// What the `[analysis]` table sets; empty when absent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnalysisSettings {
    /// Dotted keys tuned per configuration (`train.lr`).
    pub tune: Vec<String>,
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
            err.help = Some("[analysis] takes `tune`".into());
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
