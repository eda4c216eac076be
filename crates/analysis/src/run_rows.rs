//! The columns of the finished runs frame ([`super::frames::Frames::runs`], the `final_runs`
//! view) that the fits, envelopes and replicate groups read again and again, read once into
//! typed rows ([`FinishedRun`]); and each run's stored configuration by key ([`RunConfigs`]).
//! Their column names live here, so the modules that use them take typed values. A leaf of
//! `analysis` beside [`super::columns`]: it imports no other analysis module but the column
//! helpers and [`ParamCount`].

use anyhow::Result;
use polars::prelude::DataFrame;

use super::columns::{f64s, opt_f64s, strs};
use super::unrolled::ParamCount;

/// One finished run as the analysis reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct FinishedRun {
    /// `run_key`.
    pub key: String,
    /// `params`: every parameter, the token embedding included.
    pub params: f64,
    /// `non_embedding_params`.
    pub non_embedding_params: f64,
    /// `tokens`: training tokens.
    pub tokens: f64,
    /// `flops`: training FLOPs.
    pub flops: f64,
    /// `final_val_loss`.
    pub loss: f64,
    /// `mean_recurrence`: the mean training loop count of a looped run; `None` for a GPT.
    pub mean_recurrence: Option<f64>,
}

impl FinishedRun {
    /// The run's N as `n` counts it.
    pub fn n(&self, n: ParamCount) -> f64 {
        match n {
            ParamCount::Total => self.params,
            ParamCount::NonEmbedding => self.non_embedding_params,
        }
    }

    /// The loop count, 1 for a GPT.
    pub fn loops(&self) -> f64 {
        self.mean_recurrence.unwrap_or(1.0)
    }
}

/// The rows of a runs frame ([`super::frames::Frames::runs`] or a subset of it), in its order.
pub fn finished_runs(runs: &DataFrame) -> Result<Vec<FinishedRun>> {
    let keys = strs(runs, "run_key")?;
    let params = f64s(runs, "params")?;
    let non_embedding = f64s(runs, "non_embedding_params")?;
    let tokens = f64s(runs, "tokens")?;
    let flops = f64s(runs, "flops")?;
    let loss = f64s(runs, "final_val_loss")?;
    let mu = opt_f64s(runs, "mean_recurrence")?;
    Ok(keys
        .into_iter()
        .enumerate()
        .map(|(i, key)| FinishedRun {
            key,
            params: params[i],
            non_embedding_params: non_embedding[i],
            tokens: tokens[i],
            flops: flops[i],
            loss: loss[i],
            mean_recurrence: mu[i],
        })
        .collect())
}

/// Each run's resolved configuration as stored (JSON text), by run key
/// ([`super::frames::Frames::configs`]).
#[derive(Clone, Debug)]
pub struct RunConfigs {
    keys: Vec<String>,
    json: Vec<String>,
}

impl RunConfigs {
    /// The configurations of a configs frame (`run_key`, `config_json`).
    pub fn of(configs: &DataFrame) -> Result<RunConfigs> {
        Ok(RunConfigs {
            keys: strs(configs, "run_key")?,
            json: strs(configs, "config_json")?,
        })
    }

    /// The stored configuration of run `key`, if it has one.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.keys
            .iter()
            .position(|k| k == key)
            .map(|i| self.json[i].as_str())
    }

    /// The run keys and their configurations, in the frame's order.
    pub fn columns(&self) -> (&[String], &[String]) {
        (&self.keys, &self.json)
    }
}
