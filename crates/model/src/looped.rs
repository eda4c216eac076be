//! The looped (recurrent-depth) model, Parcae's: the GPT with its middle blocks applied T times.
//!
//! ```text
//! tokens → embedding → prelude blocks → prelude norm = e           encode   (once)
//! h ← h0                                                            (random or zero, width r)
//! repeat T times:                                                   recur
//!     x ← inject(h, e)                                              (super::injection)
//!     p ← core blocks(x; c_j)                                       (c_j: a conditioner's, if any)
//!     h ← update(x, p)                                              (p itself, unless a variant updates)
//! h · C → coda blocks → final norm → LM head                        decode   (once)
//! ```
//!
//! That is the whole model; [`Looped::encode`], [`Looped::step`], [`Looped::recur`] and
//! [`Looped::decode`] are those lines. The variants are parts it is given
//! ([`super::parts`]): LoopFormer's per-loop conditioning and LoopUS's gate and exit policy are
//! built by [`super::variants`] and never named here. The training objectives that use the
//! model (Parcae's sampled depth, LoopFormer's shortcut consistency, LoopUS's deep supervision,
//! Yang et al.'s last-loops loss) live with the training code that chooses them
//! (`train::objectives`), built on these four methods.
//!
//! # One recurrence, three KV cache policies
//!
//! The recurrence is written once (`Looped::loops`). What tells training, decoding and MELT
//! apart is only what the core's attention keeps of earlier positions, a [`CoreCache`] policy:
//! none in training and whole-sequence evaluation ([`Looped::forward`]); one cache per core
//! block and loop when decoding ([`Looped::logits_cached`]); one per core block shared by every
//! loop for MELT ([`Looped::forward_shared`], and its decoding), whose positions run in chunks.
//! The prelude and coda keep one cache per block when decoding, none otherwise.
//!
//! # Depth per sequence and truncated backprop
//!
//! A [`LoopPlan`] gives each sequence `i` its depth `n_i` and gradients through its last
//! `k_i = min(n_i, backprop_depth)` loops. The batch runs `N = max n_i` loops with sequences
//! *aligned at their end*: sequence `i` is active in loops `j ≥ N − n_i` and keeps its state
//! unchanged (`h ← where(active, step(h), h)`) before that. Because every sequence ends at loop
//! `N − 1`, the loops that *no* sequence needs a gradient through are exactly `j < N − K` with
//! `K = max k_i = min(N, backprop_depth)`. Those run and then `detach()` the state, so no graph
//! survives them. Inside the graph region `j ≥ N − K`, a sequence with `k_i < K` has
//! `k_i = n_i` and is inactive before `N − n_i`: its masked-out loops pass its state through
//! unchanged (gradient identity onto a state that is still `h0`, a constant) and contribute
//! exactly zero gradient to the core. So each sequence's gradient is the one it would get alone
//! with depth `n_i` truncated to `k_i` — which `tests/model_looped.rs` checks against
//! per-sequence runs.
//!
//! Evaluation runs the same number of loops `T` on every sequence (`T = mean_recurrence`, or a
//! test-time value), from an initial state drawn from a fixed seed, so it is deterministic.
//!
//! # Tied embeddings and the init (what used to stall)
//!
//! With `init = "gpt2"` (N(0, 0.02²) everywhere, `C = I`) a small tied model behind the prelude
//! norm stalls at the unigram loss (d = 32, 1+1+1 blocks, μ = 3, 200 steps, lr 1e-2: val 3.14
//! nats, the unigram entropy; untied 2.50). The cause: 0.02 is far below the width-scaled
//! √(2/(5d)) (0.11 at d = 32) for both the token embedding and the blocks' input projections,
//! so at init the blocks barely act and the only working path is embedding → prelude norm →
//! state → `C = I` → the tied head, i.e. the same embedding: every position predicts its own
//! input token. The next-token gradient then pulls each token's row towards its
//! predecessor's, the shared table collapses onto one direction (effective rank 1.9 over the
//! 40 most frequent bytes after 100 steps, against 15 with scaled-zero and 8 untied), and the
//! prelude norm strips the magnitudes that are left. Width-scaled embedding *and* input
//! projections together remove the stall (2.27 even with `C = I`; either alone: 3.06, 3.14);
//! an orthogonal `C` removes the self-prediction path (2.94 alone, 2.33 with the scaled
//! embedding). `init = "scaled-zero"` (the reference's) has all of these and trains tied
//! better than untied (2.29 vs 2.32). docs/recipe.md has the measurements.

use candle_core::{DType, Device, Result, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::config::{Arch, Init, LoopedConfig, ModelConfig, StateInit, head_dim};
use super::core_cache::{CoreCache, LoopMemory};
use super::grad::param;
use super::injection::{Injected, InjectionLayer};
use super::io::{Io, LmHead, ReadIn};
use super::layers::{
    BlockStack, KvCache, RmsNorm, Rope, embedding_init_std, hidden_init_std, project,
};
use super::melt::SharedCaches;
use super::params::{ParamRole, ParamStore, identity_values, truncated_normal};
use super::parts::{ExitPolicy, LoopParts, LoopStep};
use super::plan::LoopPlan;
use super::variants;

/// What a forward pass returns: the logits and the recurrent state after the last loop.
pub struct LoopedOutput {
    /// `(batch, time, vocab)`.
    pub logits: Tensor,
    /// `(batch, time, r)`.
    pub state: Tensor,
    /// The final normalised hidden state the logits are read from, `(batch, time, d)`
    /// (what shortcut consistency aligns).
    pub hidden: Tensor,
}

pub struct Looped {
    read_in: ReadIn,
    prelude: BlockStack,
    prelude_norm: Option<RmsNorm>,
    injection: InjectionLayer,
    /// Blocks of width `r`.
    core: BlockStack,
    /// What a variant adds to each loop (none for Parcae).
    parts: LoopParts,
    /// `C`, `(r, d)`: identity-shaped at init, so with `r = d` the coda first sees the state as is.
    readout: Tensor,
    coda: BlockStack,
    head: LmHead,
    rope: Rope,
    /// RoPE for the core's head width (`r / n_heads`).
    core_rope: Rope,
    cfg: LoopedConfig,
    /// MELT's chunk length, for a model with a shared KV cache (a [`super::parts::CacheGate`]).
    shared_chunk: Option<usize>,
    recurrent: usize,
    /// σ of the initial state's truncated normal: the token embedding's init std.
    state_std: f64,
    /// Seeds the initial state of every evaluation forward pass (deterministic evals).
    eval_seed: u64,
    params: ParamStore,
}

impl Looped {
    /// Builds a looped model with weights drawn from `seed`, for sequences up to `max_seq_len`;
    /// `io` is a vocabulary size, or [`Io::Vectors`] for a linear read-in and scalar read-out.
    pub fn new(
        cfg: &ModelConfig,
        io: impl Into<Io>,
        max_seq_len: usize,
        seed: u64,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let Some(lc) = cfg.looped.as_ref().filter(|_| cfg.arch == Arch::Looped) else {
            candle_core::bail!(
                "Looped::new needs arch = looped with a LoopedConfig, got {:?}",
                cfg.arch
            )
        };
        if lc.n_core == 0 || lc.mean_recurrence == 0 {
            candle_core::bail!("a looped model needs n_core ≥ 1 and mean_recurrence ≥ 1");
        }
        let (d, r) = (cfg.d_model, lc.recurrent_width(cfg.d_model));
        let core_cfg = ModelConfig {
            d_model: r,
            ..cfg.clone()
        };
        // Residual-branch init scaled by the unrolled depth at the mean recurrence.
        let depth = lc.n_prelude + lc.n_core * lc.mean_recurrence + lc.n_coda;

        // Parameters are created in this order (it fixes the seeded draws, and so every run's
        // initial weights): ends, prelude, injection, core, parts, readout, coda, head.
        let io = io.into();
        let mut params = ParamStore::new(seed, dtype, device);
        if let Some(m) = cfg
            .checked_mup_width_mult()
            .map_err(candle_core::Error::msg)?
        {
            // μP's width multiplier is the model's (d_model / base) for every hidden matrix.
            if !lc.loop_conditioning.is_none()
                || !lc.loop_gate.is_none()
                || lc.exit_head
                || cfg.melt_from.is_some()
            {
                candle_core::bail!(
                    "parametrization = \"mup\" does not cover LoopFormer's conditioning, \
                     LoopUS's gate and exit head, or MELT's cache gate"
                );
            }
            params.set_hidden_lr_scale(1.0 / m);
        }
        // Hidden matrices (injection, readout C) at the hidden scale; the recurrent state's
        // initial noise at the embedding's (under μP, the base width's).
        let std = hidden_init_std(cfg);
        let state_std = embedding_init_std(cfg);
        let read_in = ReadIn::new(&mut params, cfg, io)?;
        let prelude = BlockStack::new(&mut params, "prelude", cfg, lc.n_prelude, depth)?;
        let prelude_norm = lc
            .prelude_norm
            .then(|| RmsNorm::with_eps(&mut params, "prelude_norm", d, cfg.norm_eps))
            .transpose()?;
        let injection = InjectionLayer::new(&mut params, lc.injection, d, r, std)?;
        let core_init = variants::core_init(lc, &core_cfg, depth);
        let core = BlockStack::with_init(&mut params, "core", &core_cfg, lc.n_core, &core_init)?;
        let parts = variants::build(&mut params, cfg, lc)?;
        // scaled-zero: orthogonal with the model width's entry scale (× √(2/5) when r = d). An
        // identity C hands the normalised input embedding straight to a tied head, which
        // collapses the shared embedding (see the module docs).
        let readout = match cfg.init {
            Init::ScaledZero => {
                params.orthogonal("readout.C", (r, d), std, ParamRole::Recurrent)?
            }
            Init::Gpt2 => params.constant(
                "readout.C",
                &[r, d],
                identity_values(r, d),
                ParamRole::Recurrent,
            )?,
        };
        let coda = BlockStack::new(&mut params, "coda", cfg, lc.n_coda, depth)?;
        let head = LmHead::new(&mut params, cfg, io)?;
        Ok(Looped {
            read_in,
            prelude,
            prelude_norm,
            injection,
            core,
            parts,
            readout,
            coda,
            head,
            rope: Rope::with_base(head_dim(cfg), max_seq_len, cfg.rope_base, dtype, device)?,
            core_rope: Rope::with_base(
                head_dim(&core_cfg),
                max_seq_len,
                cfg.rope_base,
                dtype,
                device,
            )?,
            cfg: lc.clone(),
            shared_chunk: cfg.melt_from.is_some().then(|| lc.melt_chunk()),
            recurrent: r,
            state_std,
            eval_seed: seed ^ 0x5eed_0fe7_a1a1,
            params,
        })
    }

    /// Embedding and prelude, once: `e` and the injection's loop-invariant part.
    pub fn encode(&self, input_ids: &Tensor) -> Result<Injected> {
        self.encode_with(input_ids, None)
    }

    /// [`Looped::encode`]; with `caches`, of new positions after the cached ones (decoding).
    fn encode_with(&self, input_ids: &Tensor, caches: Option<&mut [KvCache]>) -> Result<Injected> {
        let x = self.read_in.forward(input_ids)?;
        let x = self.prelude.run(&x, &self.rope, None, caches)?;
        let e = match &self.prelude_norm {
            Some(norm) => norm.forward(&x)?,
            None => x,
        };
        self.injection.prepare(&e)
    }

    /// Loop `j` of `plan` on state `h`: inject, run the core, update. Returns the new state and
    /// the loop's core input and proposal.
    pub fn step(
        &self,
        injected: &Injected,
        plan: &LoopPlan,
        j: usize,
        h: &Tensor,
    ) -> Result<(Tensor, LoopStep)> {
        self.step_with(injected, plan, j, h, None)
    }

    /// [`Looped::step`]; with `memory` (this loop's, one per core block, from a
    /// [`CoreCache`]), of new positions after the ones it holds.
    fn step_with(
        &self,
        injected: &Injected,
        plan: &LoopPlan,
        j: usize,
        h: &Tensor,
        memory: Option<&mut [LoopMemory<'_>]>,
    ) -> Result<(Tensor, LoopStep)> {
        let input = injected.apply(h)?;
        let modulations = match &self.parts.conditioner {
            Some(c) => Some(c.modulations(plan, j)?),
            None => None,
        };
        let proposal = self
            .core
            .run(&input, &self.core_rope, modulations.as_deref(), memory)?;
        let next = match &self.parts.update {
            Some(update) => update.update(&input, &proposal)?,
            None => proposal.clone(),
        };
        Ok((next, LoopStep { input, proposal }))
    }

    /// The recurrence from `h0` (or, without an injection, from `e`); see the module docs for
    /// the masking and the detach point.
    pub fn recur(&self, injected: &Injected, plan: &LoopPlan, h0: &Tensor) -> Result<Tensor> {
        Ok(self.recur_traced(injected, plan, h0)?.0)
    }

    /// [`Looped::recur`], also returning the last loop's core input and proposal.
    pub fn recur_traced(
        &self,
        injected: &Injected,
        plan: &LoopPlan,
        h0: &Tensor,
    ) -> Result<(Tensor, LoopStep)> {
        self.recur_cached(injected, plan, h0, &mut CoreCache::None, 0)
    }

    /// [`Looped::recur_traced`] on the new positions `injected` (each from its `h0`) after the
    /// `start` positions `cache` holds, under `cache`'s policy: in the pieces it cuts them into
    /// (MELT's chunks), one after the other.
    fn recur_cached(
        &self,
        injected: &Injected,
        plan: &LoopPlan,
        h0: &Tensor,
        cache: &mut CoreCache,
        start: usize,
    ) -> Result<(Tensor, LoopStep)> {
        let (mut states, mut inputs, mut proposals) = (Vec::new(), Vec::new(), Vec::new());
        for (a, len) in cache.pieces(start, h0.dim(1)?) {
            let injected = injected.narrow(a, len)?;
            let (h, last) = self.loops(&injected, plan, &h0.narrow(1, a, len)?, cache)?;
            states.push(h);
            inputs.push(last.input);
            proposals.push(last.proposal);
        }
        // One piece (every policy but MELT's): `cat` and `narrow` hand the tensors back as is.
        let last = LoopStep {
            input: Tensor::cat(&inputs, 1)?,
            proposal: Tensor::cat(&proposals, 1)?,
        };
        Ok((Tensor::cat(&states, 1)?, last))
    }

    /// The recurrence itself, on one piece of positions: `plan`'s loops, each attending through
    /// `cache`'s memory of that loop, then the piece committed to `cache`.
    fn loops(
        &self,
        injected: &Injected,
        plan: &LoopPlan,
        h0: &Tensor,
        cache: &mut CoreCache,
    ) -> Result<(Tensor, LoopStep)> {
        let gate = self.parts.cache_gate.as_deref();
        let mut h = injected.start(h0);
        let first_graph_loop = plan.first_graph_loop();
        let mut last = None;
        for j in 0..plan.total_loops() {
            let mut memory = cache.loop_memory(j, gate)?;
            let (stepped, step) = self.step_with(injected, plan, j, &h, memory.as_deref_mut())?;
            h = match plan.active_mask(j, h.device())? {
                Some(mask) => mask.broadcast_as(h.shape())?.where_cond(&stepped, &h)?,
                None => stepped,
            };
            if j < first_graph_loop {
                h = h.detach();
            }
            last = Some(step);
        }
        cache.commit()?;
        Ok((h, last.expect("a plan runs at least one loop")))
    }

    /// Readout, coda, final norm and head, once, on the state after the last loop.
    pub fn decode(&self, h: Tensor) -> Result<LoopedOutput> {
        self.decode_with(h, None)
    }

    /// [`Looped::decode`]; with `caches`, of new positions (decoding).
    fn decode_with(&self, h: Tensor, caches: Option<&mut [KvCache]>) -> Result<LoopedOutput> {
        let x = project(&h, &param(&self.readout))?;
        let x = self.coda.run(&x, &self.rope, None, caches)?;
        let (logits, hidden) = self
            .head
            .forward_with_hidden(&x, self.read_in.tied_table())?;
        Ok(LoopedOutput {
            logits,
            state: h,
            hidden,
        })
    }

    /// The whole network on `input_ids` `(batch, time)`, looping as `plan` says from state `h0`.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        plan: &LoopPlan,
        h0: &Tensor,
    ) -> Result<LoopedOutput> {
        if self.shared_chunk.is_some() {
            let loops = plan.total_loops();
            if plan.depths().iter().any(|&n| n != loops) {
                candle_core::bail!("a MELT model runs the same number of loops on every sequence");
            }
            return Ok(self.forward_shared(input_ids, loops, h0, 0.0, false)?.0);
        }
        Ok(self.forward_traced(input_ids, plan, h0)?.0)
    }

    /// MELT's forward pass: the core's caches shared by every loop ([`CoreCache::Shared`]), so
    /// the core runs chunk by chunk (`model.melt_chunk`; a model without a shared cache, at
    /// `alpha = 1` only, takes the whole sequence as one chunk), `alpha` of the per-loop keys and
    /// values mixed in (1: the parent's computation exactly). With `traced`, also each core
    /// block's attention output in each loop, `traces[j · n_core + i]` `(batch, time, r)`.
    pub fn forward_shared(
        &self,
        input_ids: &Tensor,
        loops: usize,
        h0: &Tensor,
        alpha: f64,
        traced: bool,
    ) -> Result<(LoopedOutput, Vec<Tensor>)> {
        let (b, t) = batch_time(input_ids)?;
        let chunk = self.shared_chunk.unwrap_or(t);
        let shared = SharedCaches::new(self.core.len(), chunk, alpha, traced);
        let mut cache = CoreCache::Shared(shared);
        let injected = self.encode(input_ids)?;
        let plan = LoopPlan::uniform(b, loops);
        let (h, _) = self.recur_cached(&injected, &plan, h0, &mut cache, 0)?;
        Ok((self.decode(h)?, cache.take_traces()?))
    }

    /// [`Looped::forward`], also returning the last loop's core input and proposal.
    pub fn forward_traced(
        &self,
        input_ids: &Tensor,
        plan: &LoopPlan,
        h0: &Tensor,
    ) -> Result<(LoopedOutput, LoopStep)> {
        let (b, _) = batch_time(input_ids)?;
        assert_eq!(plan.depths().len(), b, "one loop depth per sequence");
        if self.shared_chunk.is_some() {
            candle_core::bail!(
                "a MELT model runs its core chunk by chunk (Looped::forward_shared) and trains \
                 from its parent (train::objectives::melt_loss)"
            );
        }
        let injected = self.encode(input_ids)?;
        let (h, last) = self.recur_traced(&injected, plan, h0)?;
        Ok((self.decode(h)?, last))
    }

    /// `h0` `(batch, time, r)`: a truncated normal (±3σ) drawn from `rng`, σ the token
    /// embedding's init std (the reference's "like-init"), or zeros.
    pub fn initial_state(&self, batch: usize, time: usize, rng: &mut StdRng) -> Result<Tensor> {
        let (dtype, device) = (self.params.dtype(), self.params.device());
        let shape = (batch, time, self.recurrent);
        match self.cfg.state_init {
            StateInit::Zero => Tensor::zeros(shape, dtype, device),
            StateInit::Random => {
                let values =
                    truncated_normal(rng, batch * time * self.recurrent, self.state_std, 3.0);
                Tensor::from_vec(values, shape, device)?.to_dtype(dtype)
            }
        }
    }

    /// The initial state every evaluation uses: drawn from the model's fixed evaluation seed.
    pub fn eval_state(&self, batch: usize, time: usize) -> Result<Tensor> {
        self.initial_state(batch, time, &mut StdRng::seed_from_u64(self.eval_seed))
    }

    /// Logits with the core applied `loops` times on every sequence, from the evaluation state.
    pub fn logits_with_loops(&self, input_ids: &Tensor, loops: usize) -> Result<Tensor> {
        let (b, t) = batch_time(input_ids)?;
        let plan = LoopPlan::uniform(b, loops);
        Ok(self
            .forward(input_ids, &plan, &self.eval_state(b, t)?)?
            .logits)
    }

    /// Logits along the schedule `steps` on every sequence, from the evaluation state.
    pub fn logits_with_steps(&self, input_ids: &Tensor, steps: Vec<f64>) -> Result<Tensor> {
        let (b, t) = batch_time(input_ids)?;
        let plan = LoopPlan::with_steps(b, steps, self.cfg.backprop_depth());
        Ok(self
            .forward(input_ids, &plan, &self.eval_state(b, t)?)?
            .logits)
    }

    /// Logits of the new positions `input_ids` `(batch, t_new)` at `cache.loops` loops, given
    /// the KV caches of the positions before them, which they join: decoding. Each new
    /// position starts from its own slice of `cache`'s initial state, so the logits are those of
    /// [`Looped::logits_with_loops`] on the whole sequence (batch 1) at those positions.
    pub fn logits_cached(&self, input_ids: &Tensor, cache: &mut LoopedCache) -> Result<Tensor> {
        let (b, t) = batch_time(input_ids)?;
        if b != 1 {
            candle_core::bail!("decoding a looped model takes one sequence at a time, got {b}");
        }
        let h0 = cache.h0.narrow(1, cache.len, t)?;
        let plan = LoopPlan::uniform(b, cache.loops);
        let injected = self.encode_with(input_ids, Some(&mut cache.prelude))?;
        let (h, _) = self.recur_cached(&injected, &plan, &h0, &mut cache.core, cache.len)?;
        let out = self.decode_with(h, Some(&mut cache.coda))?;
        cache.len += t;
        Ok(out.logits)
    }

    /// Empty caches for decoding up to `max_len` positions of one sequence at `loops` loops:
    /// one per prelude and coda block, and the core's under its policy — one per core block
    /// *per loop*, or for a MELT model one per core block shared by every loop.
    pub fn new_cache(&self, loops: usize, max_len: usize) -> Result<LoopedCache> {
        let core = match self.shared_chunk {
            Some(chunk) => CoreCache::Shared(SharedCaches::new(self.core.len(), chunk, 0.0, false)),
            None => CoreCache::PerLoop((0..loops).map(|_| self.core.new_caches()).collect()),
        };
        Ok(LoopedCache {
            loops,
            len: 0,
            h0: self.eval_state(1, max_len)?,
            prelude: self.prelude.new_caches(),
            core,
            coda: self.coda.new_caches(),
        })
    }

    /// Whether the core keeps one KV cache per block shared by every loop (MELT).
    pub fn has_shared_cache(&self) -> bool {
        self.shared_chunk.is_some()
    }

    /// Logits at the training mean depth, `mean_recurrence` loops.
    pub fn logits(&self, input_ids: &Tensor) -> Result<Tensor> {
        self.logits_with_loops(input_ids, self.cfg.mean_recurrence)
    }

    pub fn config(&self) -> &LoopedConfig {
        &self.cfg
    }

    /// Whether the core is conditioned on where each loop sits (LoopFormer).
    pub fn is_conditioned(&self) -> bool {
        self.parts.conditioner.is_some()
    }

    /// The exit policy, when the model has one (LoopUS's confidence head).
    pub fn exit_policy(&self) -> Option<&dyn ExitPolicy> {
        self.parts.exit.as_deref()
    }

    /// Whether the model has an exit policy.
    pub fn has_exit_head(&self) -> bool {
        self.parts.exit.is_some()
    }

    /// The injection, for its telemetry (decay, spectral norm).
    pub fn injection(&self) -> &InjectionLayer {
        &self.injection
    }

    /// Its trainable parameters.
    pub fn params(&self) -> &ParamStore {
        &self.params
    }
}

/// What decoding a looped model holds: the keys and values of every block application (the
/// core's under its policy: once per loop, or MELT's once), and the initial state of every
/// position it may reach.
pub struct LoopedCache {
    loops: usize,
    /// Positions decoded so far.
    len: usize,
    /// `(1, max_len, r)`: the evaluation state, whose position `i` starts position `i`.
    h0: Tensor,
    prelude: Vec<KvCache>,
    core: CoreCache,
    coda: Vec<KvCache>,
}

impl LoopedCache {
    /// Bytes of keys and values held, over every block application.
    pub fn bytes(&self) -> usize {
        let sum = |caches: &[KvCache]| caches.iter().map(KvCache::bytes).sum::<usize>();
        sum(&self.prelude) + self.core.bytes() + sum(&self.coda)
    }

    /// Positions decoded so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// `(batch, time)` of an input: token ids `(batch, time)` or vectors `(batch, time, width)`.
pub fn batch_time(input: &Tensor) -> Result<(usize, usize)> {
    Ok((input.dim(0)?, input.dim(1)?))
}

/// Mean per-token L2 norm of a state `(batch, time, r)`.
pub fn state_norm(h: &Tensor) -> Result<f64> {
    h.detach()
        .sqr()?
        .sum(candle_core::D::Minus1)?
        .sqrt()?
        .mean_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()
}
