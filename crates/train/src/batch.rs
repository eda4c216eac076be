//! What every data source hands the trainer: a [`Batch`] of inputs and targets, built on the
//! host with its count of scored positions; and [`indexed_rng`], the step-keyed random stream
//! every sampler draws from (so a resumed run sees exactly the data the uninterrupted one would).
//!
//! Both the corpus ([`super::data`]) and the synthetic tasks ([`super::tasks`]) build on this
//! module; it imports neither.

use candle_core::{DType, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;

use loopscale_model::IGNORE;

/// Inputs and next-token targets, both `(batch, seq_len)` u32; for a task, targets are
/// [`IGNORE`] where unscored, and a regression batch holds `(batch, seq_len, d + 1)` f32 inputs
/// and `(batch, seq_len)` f32 targets (NaN where unscored).
pub struct Batch {
    pub inputs: Tensor,
    pub targets: Tensor,
    /// Positions the loss averages over: every position of a text, a task's scored ones.
    /// Counted on the host when the batch is built, so evaluation never reads targets back.
    pub scored: usize,
    /// Token tasks: the targets of the *answer* alone (the positions accuracy is judged on,
    /// [`IGNORE`] elsewhere), when they are fewer than the scored positions — a p-hop batch
    /// trained on every defined position is judged at the last one. `None`: the answer is
    /// every scored position (addition, p-hop on the last position), or there is none (text,
    /// regression).
    pub answers: Option<Tensor>,
}

impl Batch {
    /// A batch whose every position is scored (text windows).
    pub fn dense(inputs: Tensor, targets: Tensor) -> candle_core::Result<Batch> {
        let scored = targets.elem_count();
        Ok(Batch {
            inputs,
            targets,
            scored,
            answers: None,
        })
    }

    /// A batch with host `targets` of shape `(rows, cols)`, counting the scored positions
    /// (token ids other than [`IGNORE`]) as it builds them.
    pub fn from_token_targets(
        inputs: Tensor,
        targets: Vec<u32>,
        shape: (usize, usize),
    ) -> candle_core::Result<Batch> {
        let scored = targets.iter().filter(|&&t| t != IGNORE).count();
        let targets = Tensor::from_vec(targets, shape, inputs.device())?;
        Ok(Batch {
            inputs,
            targets,
            scored,
            answers: None,
        })
    }

    /// A regression batch with host `targets` `(rows, cols)`, NaN where unscored.
    pub fn from_real_targets(
        inputs: Tensor,
        targets: Vec<f32>,
        shape: (usize, usize),
    ) -> candle_core::Result<Batch> {
        let scored = targets.iter().filter(|y| y.is_finite()).count();
        let targets = Tensor::from_vec(targets, shape, inputs.device())?;
        Ok(Batch {
            inputs,
            targets,
            scored,
            answers: None,
        })
    }

    /// Whether the targets are token ids (accuracy can be measured) rather than reals.
    pub fn has_token_targets(&self) -> bool {
        self.targets.dtype() == DType::U32
    }
}

/// An RNG for item `index` of the stream `seed`: both mixed through SplitMix64's finaliser so
/// that neighbouring seeds and indices give unrelated streams.
pub fn indexed_rng(seed: u64, index: u64) -> StdRng {
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    StdRng::seed_from_u64(mix(seed ^ mix(index)))
}
