//! N(μ), the unrolled parameter count of a looped run, from its stored configuration: the
//! parameter convention ([`ParamCount`]), the count itself ([`unrolled_params`]) and the
//! reading of a run's `config_json` ([`model_config`]). A leaf of `analysis`: it imports no
//! other analysis module, so both the frames and the fit sources can use it.

use anyhow::{Context, Result};

use loopscale_model::{ModelConfig, looped_split};

/// Which parameter count stands for N.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamCount {
    /// Parameters without the token embedding (Kaplan et al.'s convention).
    NonEmbedding,
    /// All unique parameters (Hoffmann et al.'s convention).
    Total,
}

/// N(μ), the unrolled parameter count of a looped run trained at mean recurrence μ: the
/// parameters applied once per token (prelude and coda blocks, the prelude and final norms, the
/// injection's loop-invariant matrix, the readout C) plus μ times those applied every loop
/// (the core blocks and the injection's per-loop parameters), as `model::counts` splits them.
/// The token embedding and an untied head are not counted (as in N = non-embedding
/// parameters), unless `n` is [`ParamCount::Total`], which adds them once.
pub fn unrolled_params(model: &ModelConfig, mu: f64, embedding: f64, n: ParamCount) -> f64 {
    let split = looped_split(model);
    // LoopFormer's conditioning acts once per sequence and loop, not per token: counted once.
    let unrolled = split.once as f64 + mu * split.per_loop as f64 + split.conditioning as f64;
    match n {
        ParamCount::NonEmbedding => unrolled,
        ParamCount::Total => unrolled + embedding,
    }
}

/// The model configuration of a run's stored `config_json`. A configuration written by a build
/// with model keys this one does not know is read without them (they are kept out of N(μ)'s
/// count, which is this build's count of the model), rather than not at all.
pub fn model_config(config_json: &str) -> Result<ModelConfig> {
    let value: serde_json::Value =
        serde_json::from_str(config_json).context("its stored configuration is not JSON")?;
    let model = value["model"].clone();
    serde_json::from_value(model.clone())
        .or_else(|e| serde_json::from_value(known_keys_only(model)).map_err(|_| e))
        .context("its stored model configuration does not parse, so N(μ) cannot be counted")
}

/// `model` without the keys `ModelConfig` (and its `looped` table) does not have.
fn known_keys_only(mut model: serde_json::Value) -> serde_json::Value {
    // Every key, optional ones included, from a configuration that sets them all.
    let probe = ModelConfig {
        arch: loopscale_model::Arch::Looped,
        looped: Some(loopscale_model::LoopedConfig {
            recurrent_dim: Some(1),
            backprop_depth: Some(1),
            ..Default::default()
        }),
        ..ModelConfig::default()
    };
    let known = serde_json::to_value(&probe).unwrap_or_default();
    if let (Some(m), Some(k)) = (model.as_object_mut(), known.as_object()) {
        m.retain(|key, _| k.contains_key(key));
        if let (Some(l), Some(kl)) = (
            m.get_mut("looped").and_then(|l| l.as_object_mut()),
            k.get("looped").and_then(|l| l.as_object()),
        ) {
            l.retain(|key, _| kl.contains_key(key));
        }
    }
    model
}
