//! Laws written as expressions (`[analysis.laws.NAME]` of a sweep file, or `fit --law-expr`):
//! the sweep file's form turned into the fit crate's [`LawSpec`], the laws a database's stored
//! sweep files declare, the columns a database offers them, and the same columns of a run not
//! trained yet (a `suggest` candidate). They are fitted as a built-in law is, by
//! [`super::law_fit`].

use anyhow::{Context, Result, bail};

use super::columns::{strs, to_frame};
use super::frames::Frames;
use super::groups::{lookup, replicate_groups, replicate_indices};
use super::source::{ParamCount, once_and_per_loop, run_columns};
use loopscale_fit::Law;
use loopscale_fit::written::WrittenLaw;
use loopscale_fit::written::{LawSpec, ParamSpec, Range};
use loopscale_store::{Store, Table};
use loopscale_sweep::RunConfig;
use loopscale_sweep::{WrittenLawToml, analysis_of};
use loopscale_train::RunCost;

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

/// The columns of `final_runs` that training measures: a run not trained yet has no value for
/// them (`loss` is the final validation loss).
pub const MEASURED: &[&str] = &[
    "loss",
    "final_train_loss",
    "final_val_loss",
    "final_val_bpb",
    "loss_spikes",
    "wall_seconds",
    "tokens_per_second",
];

/// The columns a written law reads of a run not trained yet, named and valued as
/// [`run_columns`] gives them once it is: the `final_runs` columns the store registers before
/// training (sizes, FLOPs and tokens from [`RunCost::of`], as `plan` registers them), `N`, `D`,
/// `C`, `r`, `n_once`, `n_rec` ([`once_and_per_loop`]) and the dotted configuration keys
/// `config_keys`.
pub fn planned_columns(
    config: &RunConfig,
    n: ParamCount,
    config_keys: &[String],
) -> Result<Vec<(String, f64)>> {
    let cost = RunCost::of(config);
    let model = &config.model;
    let looped = model.looped.as_ref();
    let (params, non_embedding) = (cost.params as f64, cost.non_embedding_params as f64);
    let big_n = if n == ParamCount::Total {
        params
    } else {
        non_embedding
    };
    let (n_once, n_rec) =
        once_and_per_loop(looped.map(|_| model), big_n, params - non_embedding, n);
    let mut out = vec![
        ("N".to_string(), big_n),
        ("D".to_string(), cost.tokens as f64),
        ("C".to_string(), cost.flops),
        (
            "r".to_string(),
            looped.map_or(1.0, |l| l.mean_recurrence as f64),
        ),
        ("n_once".to_string(), n_once),
        ("n_rec".to_string(), n_rec),
        ("d_model".to_string(), model.d_model as f64),
        ("n_heads".to_string(), model.n_heads as f64),
        // As the store registers the run: a looped run's layers are its blocks.
        ("n_layers".to_string(), model.distinct_blocks() as f64),
        ("seed".to_string(), config.seed as f64),
        ("lr".to_string(), config.train.lr),
        ("params".to_string(), params),
        ("non_embedding_params".to_string(), non_embedding),
        ("tokens".to_string(), cost.tokens as f64),
        ("flops".to_string(), cost.flops),
    ];
    if let Some(l) = looped {
        out.push(("mean_recurrence".into(), l.mean_recurrence as f64));
        out.push(("backprop_depth".into(), l.backprop_depth() as f64));
    }
    let json: serde_json::Value =
        serde_json::from_str(&config.canonical_json()).context("a run's configuration as JSON")?;
    for key in config_keys {
        let v = lookup(&json, key)
            .and_then(|x| x.as_f64())
            .with_context(|| format!("the configuration key `{key}` is not a number"))?;
        out.push((key.clone(), v));
    }
    Ok(out)
}

/// A run not trained yet as a row of `law`'s variables, from [`planned_columns`]; a variable
/// that only training measures is refused, named.
pub fn planned_row(law: &WrittenLaw, config: &RunConfig, n: ParamCount) -> Result<Vec<f64>> {
    let keys: Vec<String> = law
        .vars
        .iter()
        .filter(|(_, c)| c.contains('.'))
        .map(|(_, c)| c.clone())
        .collect();
    let columns = planned_columns(config, n, &keys)?;
    law.vars
        .iter()
        .map(|(sym, col)| {
            if let Some((_, v)) = columns.iter().find(|(name, _)| name == col) {
                return Ok(*v);
            }
            let known: Vec<&str> = columns.iter().map(|(c, _)| c.as_str()).collect();
            if MEASURED.contains(&col.as_str()) {
                bail!(
                    "law `{}`: variable `{sym}` reads `{col}`, which only training measures, so a run not trained yet has no value for it; a law that chooses new runs reads what is known before training: {}",
                    law.name(),
                    known.join(", ")
                );
            }
            bail!(
                "law `{}`: variable `{sym}` reads `{col}`, which a run not trained yet does not have; known before training: {}",
                law.name(),
                known.join(", ")
            )
        })
        .collect()
}
