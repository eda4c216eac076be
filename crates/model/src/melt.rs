//! MELT (Memory-Efficient Looped Transformer, arXiv 2605.07721, 2026; no code released, so the
//! details below are loopscale's choices where the paper's public summaries are silent): one KV
//! cache per core block **shared by every loop**, updated in place by a learned element-wise
//! gate, so decoding holds `layers × length` keys and values however many loops run, where a
//! looped model (Parcae, Ouro) holds `layers × length × loops`.
//!
//! # The shared cache and its gate
//!
//! Each position keeps one entry `(K̄, V̄)` per core block. In loop `j` the block computes the
//! position's keys and values `(k_j, v_j)` as usual (QK-norm, RoPE at its position) and its entry
//! becomes
//!
//! ```text
//! (K̄, V̄) ← (k_0, v_0)                                   loop 0 writes the entry
//! (K̄, V̄) ← (K̄, V̄) + z ⊙ ((k_j, v_j) − (K̄, V̄))         loop j ≥ 1, in place
//! z = σ(x · W_z + b_z)                                  (batch, t, 2r): one gate per key and
//!                                                       value channel, read from the block's
//!                                                       attention input x in that loop
//! ```
//!
//! (`W_z` starts at zero and `b_z` at 0, so a fresh gate is z = ½: an exponential average that
//! weighs later loops more.) A query in loop `j` attends over the entries of the earlier
//! positions — as their last loop left them — and over its own chunk's entries as loop `j`
//! leaves them (causally). [`KvGate`] is the gate, a [`CacheGate`] part of the looped model
//! (`super::variants`); [`SharedCaches`] is the cache. It is a policy of the core's KV cache
//! (`super::core_cache`'s `Shared`, beside no cache and one per loop): the looped model runs
//! its one recurrence ([`super::looped`]) through it, with no loop of its own here.
//!
//! # Chunk-wise: training equals decoding
//!
//! A position's loop-0 query needs the earlier positions' *final* entries, so an exact
//! token-by-token model is sequential in time. Training (and prefill) therefore runs the core
//! chunk by chunk (`model.melt_chunk` positions, aligned to multiples of it): every loop runs on
//! the whole chunk in parallel, attending over the committed entries of the earlier chunks and the
//! chunk's own current entries; after the last loop the chunk's entries are committed
//! ([`SharedCaches::chunks`] cuts them, the recurrence commits). Decoding runs the same code
//! on the new positions, so a forward pass over a sequence equals feeding it
//! to the cache in chunk-aligned pieces, and with `melt_chunk = 1` equals decoding token by
//! token (`tests/melt.rs` checks both). Generated tokens arrive one at a time: chunks of one.
//!
//! # Post-training from the parent (`train::objectives::melt_loss`)
//!
//! The child starts from its parent's weights, the gate fresh. Keys and values of earlier
//! positions are an interpolation `α · (per-loop: the parent's own cache of that loop) +
//! (1 − α) · (shared)`, so `α = 1` is exactly the parent ([`SharedCaches::new`] keeps the per-loop
//! caches only while `α > 0`). Phase 1, the interpolated transition, lowers α linearly from 1 to
//! 0 over `train.melt_transition_steps` with the language-model loss; phase 2, attention-aligned
//! distillation, trains at α = 0 against the parent as teacher: cross-entropy + `melt_kd_weight` ·
//! KL(teacher ‖ student) on the logits + `melt_align_weight` · the mean squared error between
//! the student's and the teacher's core attention outputs, every block and loop.

use candle_core::{D, Result, Tensor};

use super::grad::param;
use super::layers::{KvCache, KvMemory, project, softplus};
use super::params::{ParamRole, ParamStore};
use super::parts::CacheGate;

/// MELT's gate (see the module docs): per core block `W_z` `(r, 2r)` and `b_z` `(2r,)`.
pub struct KvGate {
    w: Vec<Tensor>,
    b: Vec<Tensor>,
    n_heads: usize,
}

impl KvGate {
    /// The gates of `n_core` blocks of width `r` with `n_heads` heads, each z = ½ at first.
    pub fn new(params: &mut ParamStore, r: usize, n_core: usize, n_heads: usize) -> Result<Self> {
        let (mut w, mut b) = (Vec::new(), Vec::new());
        for i in 0..n_core {
            w.push(params.zeros(&format!("melt.{i}.W_z"), (r, 2 * r), ParamRole::Recurrent)?);
            b.push(params.constant(
                &format!("melt.{i}.b_z"),
                &[2 * r],
                vec![0.0; 2 * r],
                ParamRole::Recurrent,
            )?);
        }
        Ok(KvGate { w, b, n_heads })
    }

    /// Trainable scalars of the gates of `n_core` blocks of width `r`.
    pub fn param_count(r: usize, n_core: usize) -> u64 {
        (n_core * (2 * r * r + 2 * r)) as u64
    }

    /// `z` of block `block` for input `x` `(batch, t, r)`: keys' and values' gates, each
    /// `(batch, heads, t, head_dim)`.
    pub fn gates(&self, block: usize, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, t, r) = x.dims3()?;
        let logits = project(x, &param(&self.w[block]))?.broadcast_add(&param(&self.b[block]))?;
        // σ(a) = exp(−softplus(−a)): finite gradient at any a.
        let z = softplus(&logits.neg()?)?.neg()?.exp()?;
        let hd = r / self.n_heads;
        let heads = |i: usize| {
            z.narrow(D::Minus1, i * r, r)?
                .reshape((b, t, self.n_heads, hd))?
                .transpose(1, 2)
        };
        Ok((heads(0)?, heads(1)?))
    }
}

impl CacheGate for KvGate {
    fn blend(
        &self,
        block: usize,
        x: &Tensor,
        old: (&Tensor, &Tensor),
        new: (&Tensor, &Tensor),
    ) -> Result<(Tensor, Tensor)> {
        let (zk, zv) = self.gates(block, x)?;
        let mix = |old: &Tensor, new: &Tensor, z: &Tensor| old + (z * (new - old)?)?;
        Ok((mix(old.0, new.0, &zk)?, mix(old.1, new.1, &zv)?))
    }
}

/// One core block's shared cache.
#[derive(Default)]
struct SharedKv {
    /// The entries of the committed positions, as their last loop left them.
    held: KvCache,
    /// The new positions' entries after the latest loop.
    current: Option<(Tensor, Tensor)>,
    /// While α > 0: each loop's own keys and values of the committed positions (the parent's
    /// caches) and of the new positions.
    per_loop: Vec<KvCache>,
    pending: Vec<(Tensor, Tensor)>,
}

/// The core's caches of a shared-cache model: one entry per position and core block, and how
/// the positions are cut into chunks (`super::core_cache`'s [`Shared`] policy).
///
/// [`Shared`]: super::core_cache::CoreCache::Shared
pub struct SharedCaches {
    blocks: Vec<SharedKv>,
    /// `model.melt_chunk` (a parent at α = 1: its whole sequence).
    chunk: usize,
    /// The weight of the per-loop keys and values: falls from 1 to 0 in post-training's
    /// transition, 0 after it and when decoding.
    alpha: f64,
    /// `[j · n_core + i]`: core block `i`'s attention output in loop `j`, chunk after chunk,
    /// when distillation asks for them.
    traces: Option<Vec<Vec<Tensor>>>,
}

impl SharedCaches {
    /// Empty caches for `n_core` blocks run in chunks of `chunk` positions with `alpha` of the
    /// per-loop keys and values; `traced`: also record every block's attention output.
    pub fn new(n_core: usize, chunk: usize, alpha: f64, traced: bool) -> Self {
        assert!(chunk > 0, "MELT's chunks hold at least one position");
        SharedCaches {
            blocks: (0..n_core).map(|_| SharedKv::default()).collect(),
            chunk,
            alpha,
            traces: traced.then(Vec::new),
        }
    }

    /// The chunks `(offset, len)` of `t` new positions after `start` held ones: aligned to
    /// multiples of the chunk length, so a sequence fed in any pieces is cut as in training.
    pub fn chunks(&self, start: usize, t: usize) -> Vec<(usize, usize)> {
        let (mut chunks, mut a) = (Vec::new(), 0);
        while a < t {
            let c = (self.chunk - (start + a) % self.chunk).min(t - a);
            chunks.push((a, c));
            a += c;
        }
        chunks
    }

    /// Loop `j`'s view of every block's cache: keys and values blended by `gate`, α of the
    /// per-loop ones mixed in; each block's attention output joins its trace when traced.
    pub fn loop_views<'a>(
        &'a mut self,
        gate: Option<&'a dyn CacheGate>,
        j: usize,
    ) -> Result<Vec<LoopView<'a>>> {
        let alpha = self.alpha;
        if alpha < 1.0 && gate.is_none() {
            candle_core::bail!("a shared KV cache needs a gate (a MELT model) below α = 1");
        }
        let n = self.blocks.len();
        let mut traces: Vec<Option<&'a mut Vec<Tensor>>> = match self.traces.as_mut() {
            Some(t) => {
                if t.len() < (j + 1) * n {
                    t.resize_with((j + 1) * n, Vec::new);
                }
                t[j * n..(j + 1) * n].iter_mut().map(Some).collect()
            }
            None => (0..n).map(|_| None).collect(),
        };
        Ok(self
            .blocks
            .iter_mut()
            .enumerate()
            .zip(traces.iter_mut())
            .map(|((block, kv), trace)| LoopView {
                kv,
                block,
                gate,
                j,
                alpha,
                trace: trace.take(),
            })
            .collect())
    }

    /// The traces, each block's in each loop over every chunk so far, `(batch, time, r)` at
    /// `[j · n_core + i]`; none when not traced.
    pub fn take_traces(&mut self) -> Result<Vec<Tensor>> {
        self.traces
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
            .into_iter()
            .map(|chunks| Tensor::cat(&chunks, 1))
            .collect()
    }

    /// After the last loop: the new positions' entries join the committed ones.
    pub fn commit(&mut self) -> Result<()> {
        for kv in &mut self.blocks {
            if let Some((k, v)) = kv.current.take() {
                kv.held.append(&k, &v)?;
            }
            let pending = std::mem::take(&mut kv.pending);
            if kv.per_loop.len() < pending.len() {
                kv.per_loop.resize_with(pending.len(), KvCache::default);
            }
            for (cache, (k, v)) in kv.per_loop.iter_mut().zip(pending) {
                cache.append(&k, &v)?;
            }
        }
        Ok(())
    }

    /// Bytes of keys and values held (the per-loop caches of a transition included).
    pub fn bytes(&self) -> usize {
        self.blocks
            .iter()
            .map(|kv| kv.held.bytes() + kv.per_loop.iter().map(KvCache::bytes).sum::<usize>())
            .sum()
    }
}

/// One core block's cache as one loop sees it (a [`KvMemory`]).
pub struct LoopView<'a> {
    kv: &'a mut SharedKv,
    block: usize,
    gate: Option<&'a dyn CacheGate>,
    j: usize,
    alpha: f64,
    trace: Option<&'a mut Vec<Tensor>>,
}

impl KvMemory for LoopView<'_> {
    fn start(&self) -> usize {
        self.kv
            .held
            .len()
            .max(self.kv.per_loop.first().map_or(0, KvCache::len))
    }

    fn attend_over(&mut self, x: &Tensor, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let kv = &mut *self.kv;
        let own = if self.alpha > 0.0 {
            assert_eq!(kv.pending.len(), self.j, "loops run in order");
            kv.pending.push((k.clone(), v.clone()));
            let cache = kv.per_loop.get(self.j);
            Some(match cache {
                Some(c) => c.joined(k, v)?,
                None => (k.contiguous()?, v.contiguous()?),
            })
        } else {
            None
        };
        if self.alpha >= 1.0 {
            return Ok(own.expect("α > 0"));
        }
        let gate = self.gate.expect("checked by loop_views");
        let entry = match kv.current.take() {
            Some(old) if self.j > 0 => gate.blend(self.block, x, (&old.0, &old.1), (k, v))?,
            _ => (k.clone(), v.clone()),
        };
        let shared = kv.held.joined(&entry.0, &entry.1)?;
        kv.current = Some(entry);
        match own {
            None => Ok(shared),
            Some((ok, ov)) => {
                let a = self.alpha;
                let mix = |own: &Tensor, shared: &Tensor| {
                    own.affine(a, 0.0)? + shared.affine(1.0 - a, 0.0)?
                };
                Ok((mix(&ok, &shared.0)?, mix(&ov, &shared.1)?))
            }
        }
    }

    fn observe(&mut self, out: &Tensor) {
        if let Some(trace) = self.trace.as_mut() {
            trace.push(out.clone());
        }
    }
}

/// The gate's parameters are the ones a MELT model adds to its parent's: their names start so.
pub const GATE_PREFIX: &str = "melt.";

/// Copies the parent looped model's `tensors` into a MELT model's `params`: every parameter
/// but the gate's must be there, with its shape; the gate keeps its initialisation.
pub fn init_from_parent(
    params: &ParamStore,
    tensors: &std::collections::HashMap<String, Tensor>,
) -> Result<()> {
    for p in params.params() {
        if p.name.starts_with(GATE_PREFIX) {
            continue;
        }
        let Some(t) = tensors.get(&p.name) else {
            candle_core::bail!(
                "the parent has no tensor {} (is it a looped model of this shape?)",
                p.name
            )
        };
        let like = p.var.as_tensor();
        if t.shape() != like.shape() {
            candle_core::bail!(
                "{}: the parent's tensor is {:?}, the MELT model's {:?}",
                p.name,
                t.shape(),
                like.shape()
            );
        }
        p.var
            .set(&t.to_device(like.device())?.to_dtype(like.dtype())?)?;
    }
    Ok(())
}
