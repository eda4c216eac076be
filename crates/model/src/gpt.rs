//! The GPT baseline: token embedding → `n_layers` pre-norm blocks → final RMSNorm → LM head.
//!
//! The head is the transposed token embedding when `tie_embeddings` is set, else its own
//! `(d, vocab)` matrix. There are no learned positions: RoPE inside attention carries them.
//! On a regression task the two ends are a linear read-in and a scalar read-out ([`Io`]).

use candle_core::{DType, Device, Result, Tensor};

use super::config::{Arch, ModelConfig, head_dim};
use super::io::{Io, LmHead, ReadIn};
use super::layers::{BlockStack, KvCache, Rope};
use super::params::ParamStore;

pub struct Gpt {
    read_in: ReadIn,
    blocks: BlockStack,
    head: LmHead,
    rope: Rope,
    params: ParamStore,
}

impl Gpt {
    /// Builds a GPT with weights drawn from `seed`, for sequences up to `max_seq_len` tokens;
    /// `io` is a vocabulary size, or [`Io::Vectors`] for a linear read-in and scalar read-out.
    pub fn new(
        cfg: &ModelConfig,
        io: impl Into<Io>,
        max_seq_len: usize,
        seed: u64,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        if cfg.arch != Arch::Gpt {
            candle_core::bail!("Gpt::new called with arch {:?}", cfg.arch);
        }
        let io = io.into();
        let mut params = ParamStore::new(seed, dtype, device);
        if let Some(m) = cfg
            .checked_mup_width_mult()
            .map_err(candle_core::Error::msg)?
        {
            params.set_hidden_lr_scale(1.0 / m);
        }
        let read_in = ReadIn::new(&mut params, cfg, io)?;
        let blocks = BlockStack::new(&mut params, "blocks", cfg, cfg.n_layers, cfg.n_layers)?;
        let head = LmHead::new(&mut params, cfg, io)?;
        let rope = Rope::with_base(head_dim(cfg), max_seq_len, cfg.rope_base, dtype, device)?;
        Ok(Gpt {
            read_in,
            blocks,
            head,
            rope,
            params,
        })
    }

    /// Logits `(batch, time, out)`: embedding, the blocks, the head.
    pub fn logits(&self, input_ids: &Tensor) -> Result<Tensor> {
        let x = self.read_in.forward(input_ids)?;
        let x = self.blocks.forward(&x, &self.rope)?;
        self.head.forward(&x, self.read_in.tied_table())
    }

    /// Logits of the new positions `input_ids` `(batch, t_new)` given the KV caches of the
    /// positions before them (one per block, [`Gpt::new_caches`]), which they join: decoding.
    pub fn logits_cached(&self, input_ids: &Tensor, caches: &mut [KvCache]) -> Result<Tensor> {
        let x = self.read_in.forward(input_ids)?;
        let x = self.blocks.run(&x, &self.rope, None, Some(caches))?;
        self.head.forward(&x, self.read_in.tied_table())
    }

    /// Empty KV caches, one per block.
    pub fn new_caches(&self) -> Vec<KvCache> {
        self.blocks.new_caches()
    }

    /// Its trainable parameters.
    pub fn params(&self) -> &ParamStore {
        &self.params
    }
}

impl Gpt {
    /// The residual stream before the first block and after each block: `n_layers + 1`
    /// tensors `(batch, time, d)` (what recasting reads the representation dynamics from).
    pub fn residual_stream(&self, input_ids: &Tensor) -> Result<Vec<Tensor>> {
        let mut stream = vec![self.read_in.forward(input_ids)?];
        for block in self.blocks.blocks() {
            let x = block.forward(stream.last().expect("starts non-empty"), &self.rope)?;
            stream.push(x);
        }
        Ok(stream)
    }
}
