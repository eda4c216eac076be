//! What a looped variant may add to Parcae's loop: the parts the core is given.
//!
//! The core ([`super::looped`]) runs `h ← update(x, core(x; c_j))` with `x = inject(h, e)` in
//! every loop `j`. A variant changes that loop only through these parts, each optional:
//!
//! - a [`Conditioner`] gives the core's blocks a modulation `c_j` per loop (LoopFormer's
//!   time/step conditioning, [`super::conditioning`]);
//! - a [`StateUpdate`] decides how the core's proposal `p = core(x)` becomes the next state
//!   (LoopUS's selective gate, [`super::loopus`]); without one, `h ← p`;
//! - a [`CacheGate`] makes the core keep one KV cache per block shared by every loop instead of
//!   one per block and loop, blending each loop's keys and values into a position's entry
//!   (MELT, [`super::melt`]): the model's core then runs under the shared cache policy
//!   ([`super::core_cache`]), chunk by chunk;
//! - an [`ExitPolicy`] reads each loop's [`LoopStep`] and says per token whether to stop there
//!   (LoopUS's confidence head); the core never consults it, the objectives and the early-exit
//!   evaluation do.
//!
//! [`super::variants`] builds the parts a configuration asks for; the core knows only these
//! traits, so a new variant is a new file and a line there.

use candle_core::{Result, Tensor};

use super::layers::Modulation;
use super::plan::LoopPlan;

/// One loop's core input and (un-updated) output, what an exit policy reads.
#[derive(Clone)]
pub struct LoopStep {
    /// `x = inject(h, e)`, `(batch, time, r)`.
    pub input: Tensor,
    /// `p = core(x)`, `(batch, time, r)`.
    pub proposal: Tensor,
}

/// A per-loop conditioning of the core's blocks.
pub trait Conditioner: Send + Sync {
    /// Each core block's modulation in loop `j` of `plan`.
    fn modulations(&self, plan: &LoopPlan, j: usize) -> Result<Vec<Modulation>>;
}

/// How the core's proposal becomes the next state.
pub trait StateUpdate: Send + Sync {
    /// The next state from the core's input `x` and its proposal `p`.
    fn update(&self, x: &Tensor, proposal: &Tensor) -> Result<Tensor>;
}

/// How a shared KV cache (MELT) takes a loop's keys and values into each position's entry.
pub trait CacheGate: Send + Sync {
    /// Core block `block`'s entry `(keys, values)`, each `(batch, heads, t, head_dim)`, after a
    /// loop that computed `new` for the positions whose entry was `old`; `x` `(batch, t, r)` is
    /// the attention's input in that loop.
    fn blend(
        &self,
        block: usize,
        x: &Tensor,
        old: (&Tensor, &Tensor),
        new: (&Tensor, &Tensor),
    ) -> Result<(Tensor, Tensor)>;
}

/// A per-token exit decision read from each loop.
pub trait ExitPolicy: Send + Sync {
    /// The confidence `(batch, time)` in `[0, 1]` that a token may stop after `step`.
    fn confidence(&self, step: &LoopStep) -> Result<Tensor>;

    /// The policy's training loss at `step`, whose read-out gave `logits` for `targets`.
    fn loss(&self, step: &LoopStep, logits: &Tensor, targets: &Tensor) -> Result<Tensor>;
}

/// The parts of one looped model; all `None` for Parcae itself.
#[derive(Default)]
pub struct LoopParts {
    pub conditioner: Option<Box<dyn Conditioner>>,
    pub update: Option<Box<dyn StateUpdate>>,
    pub cache_gate: Option<Box<dyn CacheGate>>,
    pub exit: Option<Box<dyn ExitPolicy>>,
}
