//! Decoding measured (`decode_evals`): validation text fed a token at a time through a
//! finished model's KV cache (`model::generate::Decoder`), with the cache's bytes, the time it
//! took and the loss of what it predicted.

use std::time::Instant;

use candle_core::Tensor;

use super::DecodeEvalMetrics;
use loopscale_model::grad::no_grad;
use loopscale_model::{CausalLm, Decoder, lm_loss};

/// Tokens of one validation sequence a decode measurement feeds: short, so that it stays a
/// small part of a run's time at every loop count.
pub const DECODE_EVAL_TOKENS: usize = 64;

/// `inputs` `(1, t)` fed one token at a time to `model` at `loops` loops (a looped model's; `None`
/// for a GPT or a looped model's training mean), scored against `targets` `(1, t)`. The step is
/// left at 0 for the caller to set.
pub fn measure_decoding(
    model: &dyn CausalLm,
    inputs: &Tensor,
    targets: &Tensor,
    loops: Option<usize>,
) -> anyhow::Result<DecodeEvalMetrics> {
    let t = inputs.dim(1)?;
    anyhow::ensure!(t > 0, "measure_decoding: an empty sequence");
    no_grad(|| {
        let mut decoder = Decoder::new(model, loops, t)?;
        let started = Instant::now();
        let mut logits = Vec::with_capacity(t);
        for i in 0..t {
            logits.push(decoder.feed(&inputs.narrow(1, i, 1)?)?);
        }
        let seconds = started.elapsed().as_secs_f64();
        let logits = Tensor::cat(&logits, 1)?;
        let val_loss = lm_loss(&logits, targets)?
            .to_dtype(candle_core::DType::F64)?
            .to_scalar::<f64>()?;
        let bytes = decoder.cache_bytes();
        Ok(DecodeEvalMetrics {
            step: 0,
            loops,
            tokens: t,
            kv_bytes_per_token: bytes as f64 / t as f64,
            peak_cache_bytes: bytes,
            tokens_per_s: t as f64 / seconds.max(1e-9),
            val_loss,
        })
    })
}
