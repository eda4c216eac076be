//! The looped core's KV cache policy: what each loop's attention keeps of the positions before
//! the ones it computes. It is the only thing that tells the core's uses apart; the recurrence
//! ([`super::looped`]) is the same under every policy.
//!
//! | policy | the core blocks' keys and values | used by |
//! |---|---|---|
//! | [`CoreCache::None`] | none kept: each loop attends over the whole sequence at once | training, evaluation |
//! | [`CoreCache::PerLoop`] | one cache per block *and loop*: each loop attends over its own states | decoding a looped model |
//! | [`CoreCache::Shared`] | one cache per block shared by every loop, each entry gated in place | MELT ([`super::melt`]): post-training and decoding |
//!
//! In each loop the recurrence asks the policy for that loop's memory (one per core block, or
//! none) and after the last loop tells it to commit the new positions. A shared cache also cuts
//! the new positions into chunks that run one after the other (a position's loop 0 reads the
//! earlier positions' final entries); the other policies take them all at once.

use candle_core::{Result, Tensor};

use super::layers::{KvCache, KvMemory};
use super::melt::{LoopView, SharedCaches};
use super::parts::CacheGate;

/// The core's caches under one policy (see the module docs).
pub enum CoreCache {
    /// No cache: training and whole-sequence evaluation (the fused attention kernels).
    None,
    /// `[j][i]`: core block `i` in loop `j`.
    PerLoop(Vec<Vec<KvCache>>),
    /// MELT's: one per core block, every loop's.
    Shared(SharedCaches),
}

impl CoreCache {
    /// The pieces `(offset, len)` of `t` new positions after the `start` held ones, which the
    /// recurrence runs one after the other: MELT's chunks, otherwise one piece.
    pub fn pieces(&self, start: usize, t: usize) -> Vec<(usize, usize)> {
        match self {
            CoreCache::Shared(shared) => shared.chunks(start, t),
            CoreCache::None | CoreCache::PerLoop(_) => vec![(0, t)],
        }
    }

    /// Loop `j`'s memory, one per core block (`None`: attend over the given positions only);
    /// `gate` blends a shared cache's entries.
    pub fn loop_memory<'a>(
        &'a mut self,
        j: usize,
        gate: Option<&'a dyn CacheGate>,
    ) -> Result<Option<Vec<LoopMemory<'a>>>> {
        Ok(match self {
            CoreCache::None => None,
            CoreCache::PerLoop(per_loop) => {
                let loops = per_loop.len();
                let Some(caches) = per_loop.get_mut(j) else {
                    candle_core::bail!("a per-loop cache of {loops} loops asked for loop {j}")
                };
                Some(caches.iter_mut().map(LoopMemory::Own).collect())
            }
            CoreCache::Shared(shared) => Some(
                shared
                    .loop_views(gate, j)?
                    .into_iter()
                    .map(LoopMemory::Shared)
                    .collect(),
            ),
        })
    }

    /// After the last loop: the new positions join what is held (a per-loop cache has
    /// appended them already).
    pub fn commit(&mut self) -> Result<()> {
        match self {
            CoreCache::Shared(shared) => shared.commit(),
            CoreCache::None | CoreCache::PerLoop(_) => Ok(()),
        }
    }

    /// MELT's distillation traces (every core block's attention output in every loop); none
    /// under the other policies.
    pub fn take_traces(&mut self) -> Result<Vec<Tensor>> {
        match self {
            CoreCache::Shared(shared) => shared.take_traces(),
            CoreCache::None | CoreCache::PerLoop(_) => Ok(Vec::new()),
        }
    }

    /// Bytes of keys and values held.
    pub fn bytes(&self) -> usize {
        match self {
            CoreCache::None => 0,
            CoreCache::PerLoop(per_loop) => per_loop.iter().flatten().map(KvCache::bytes).sum(),
            CoreCache::Shared(shared) => shared.bytes(),
        }
    }
}

/// One core block's memory in one loop: its own cache of that loop, or its view of the shared
/// one.
pub enum LoopMemory<'a> {
    Own(&'a mut KvCache),
    Shared(LoopView<'a>),
}

impl KvMemory for LoopMemory<'_> {
    fn start(&self) -> usize {
        match self {
            LoopMemory::Own(cache) => cache.start(),
            LoopMemory::Shared(view) => view.start(),
        }
    }

    fn attend_over(&mut self, x: &Tensor, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        match self {
            LoopMemory::Own(cache) => cache.attend_over(x, k, v),
            LoopMemory::Shared(view) => view.attend_over(x, k, v),
        }
    }

    fn observe(&mut self, out: &Tensor) {
        match self {
            LoopMemory::Own(cache) => cache.observe(out),
            LoopMemory::Shared(view) => view.observe(out),
        }
    }
}
