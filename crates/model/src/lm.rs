//! The interface a trainer and an evaluator drive: a next-token predictor ([`CausalLm`]) and
//! its loss ([`lm_loss`]), met by the GPT and the looped model alike.

use candle_core::{Result, Tensor};

use super::fused;
use super::gpt::Gpt;
use super::layers::cross_entropy;
use super::looped::Looped;
use super::params::ParamStore;

/// A target that is not scored: tasks score only their answer positions.
pub const IGNORE: u32 = u32::MAX;

/// The loss of a network's outputs `(batch, time, out)` against `targets` `(batch, time)`:
/// - u32 targets: mean cross-entropy over the positions whose target is not [`IGNORE`] (every
///   position of a text; a task's answer tokens);
/// - real targets: mean squared error of the scalar outputs (`out` = 1) over the positions whose
///   target is finite (a regression prompt's `y` predictions; NaN marks the rest).
///
/// On the CPU unscored positions are dropped by `index_select` before the loss (the targets are
/// in host memory already), so they get no gradient; on other devices [`masked_loss`] weighs
/// them by zero on the device, so a step never copies its targets back to the host (a sync on
/// CUDA). Both give the same loss and gradient (`tests/tasks.rs`).
pub fn lm_loss(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    if !logits.device().is_cpu() {
        return masked_loss(logits, targets);
    }
    let out = logits.dim(2)?;
    let flat = logits.reshape(((), out))?;
    let targets = targets.flatten_all()?;
    if targets.dtype() == candle_core::DType::U32 {
        let ids = targets.to_vec1::<u32>()?;
        if !ids.contains(&IGNORE) {
            return cross_entropy(&flat, &targets);
        }
        let (rows, kept): (Vec<u32>, Vec<u32>) = ids
            .iter()
            .enumerate()
            .filter(|(_, t)| **t != IGNORE)
            .map(|(i, t)| (i as u32, *t))
            .unzip();
        let index = Tensor::new(rows.as_slice(), flat.device())?;
        let kept = Tensor::new(kept.as_slice(), flat.device())?;
        return cross_entropy(&flat.index_select(&index, 0)?, &kept);
    }
    let values = targets
        .to_dtype(candle_core::DType::F64)?
        .to_vec1::<f64>()?;
    let (rows, kept): (Vec<u32>, Vec<f64>) = values
        .iter()
        .enumerate()
        .filter(|(_, y)| y.is_finite())
        .map(|(i, y)| (i as u32, *y))
        .unzip();
    if rows.is_empty() {
        candle_core::bail!("lm_loss: no finite regression target");
    }
    let index = Tensor::new(rows.as_slice(), flat.device())?;
    let predicted = flat.index_select(&index, 0)?.squeeze(1)?;
    let kept = Tensor::new(kept.as_slice(), flat.device())?.to_dtype(predicted.dtype())?;
    (predicted - kept)?.sqr()?.mean_all()
}

/// [`lm_loss`] computed on the tensors' device without reading the targets back: every
/// position's loss, weighted by a 0/1 mask of the scored ones (targets other than [`IGNORE`];
/// finite real targets), summed and divided by the mask's sum. Unscored positions get exactly
/// zero gradient. What `lm_loss` does off the CPU; public so the two can be compared anywhere.
pub fn masked_loss(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    use candle_core::DType;
    let out = logits.dim(2)?;
    let flat = logits.reshape(((), out))?;
    let targets = targets.flatten_all()?;
    let (per_position, keep) = if targets.dtype() == DType::U32 {
        let keep = targets.ne(&Tensor::full(IGNORE, targets.shape(), targets.device())?)?;
        let safe = keep.where_cond(&targets, &targets.zeros_like()?)?;
        let log_probs = fused::composed::log_softmax_last_dim(&flat)?;
        let nll = log_probs
            .gather(&safe.unsqueeze(1)?, 1)?
            .squeeze(1)?
            .neg()?;
        (nll, keep)
    } else {
        // NaN marks an unscored target: it is the one value not equal to itself.
        let keep = targets.eq(&targets)?;
        let safe = keep.where_cond(&targets, &targets.zeros_like()?)?;
        let predicted = flat.squeeze(1)?;
        let error = (&predicted - safe.to_dtype(predicted.dtype())?)?.sqr()?;
        (error, keep)
    };
    let weight = keep.to_dtype(per_position.dtype())?;
    (per_position * &weight)?
        .sum_all()?
        .broadcast_div(&weight.sum_all()?)
}

/// A next-token predictor the trainer and the evaluator can drive.
pub trait CausalLm {
    /// Logits `(batch, time, vocab)` for `input_ids` `(batch, time)` of u32 token ids (the
    /// looped model at its training mean depth, from its evaluation state).
    fn logits(&self, input_ids: &Tensor) -> Result<Tensor>;

    /// Mean cross-entropy (nats per token) of predicting `targets` `(batch, time)`.
    fn loss(&self, input_ids: &Tensor, targets: &Tensor) -> Result<Tensor> {
        lm_loss(&self.logits(input_ids)?, targets)
    }

    /// The looped model behind this one: its objectives, loop-count evaluations and stability
    /// telemetry need it.
    fn as_looped(&self) -> Option<&Looped> {
        None
    }

    /// The teacher of a MELT model in post-training (its parent looped model, frozen): the
    /// objective distils from it (`train::objectives::melt_loss`).
    fn melt_teacher(&self) -> Option<&Looped> {
        None
    }

    /// The GPT behind this one, for decoding with its cache.
    fn as_gpt(&self) -> Option<&Gpt> {
        None
    }

    /// Its trainable parameters.
    fn params(&self) -> &ParamStore;
}

impl CausalLm for Gpt {
    fn logits(&self, input_ids: &Tensor) -> Result<Tensor> {
        Gpt::logits(self, input_ids)
    }

    fn as_gpt(&self) -> Option<&Gpt> {
        Some(self)
    }

    fn params(&self) -> &ParamStore {
        Gpt::params(self)
    }
}

impl CausalLm for Looped {
    fn logits(&self, input_ids: &Tensor) -> Result<Tensor> {
        Looped::logits(self, input_ids)
    }

    fn as_looped(&self) -> Option<&Looped> {
        Some(self)
    }

    fn params(&self) -> &ParamStore {
        Looped::params(self)
    }
}
