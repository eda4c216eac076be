//! The GPT baseline: token embedding → `n_layers` pre-norm blocks → final RMSNorm → LM head.
//!
//! The head is the transposed token embedding when `tie_embeddings` is set, else its own
//! `(d, vocab)` matrix. There are no learned positions: RoPE inside attention carries them.

use candle_core::{DType, Device, Result, Tensor};

use super::CausalLm;
use super::config::{Arch, ModelConfig};
use super::counts::head_dim;
use super::grad::param;
use super::layers::{BlockStack, RmsNorm, Rope, embedding_init};
use super::params::ParamStore;

pub struct Gpt {
    /// `(vocab, d)`.
    token_embedding: Tensor,
    blocks: BlockStack,
    final_norm: RmsNorm,
    /// `(d, vocab)` when untied.
    untied_head: Option<Tensor>,
    rope: Rope,
    params: ParamStore,
}

impl Gpt {
    /// Builds a GPT with weights drawn from `seed`, for sequences up to `max_seq_len` tokens.
    pub fn new(
        cfg: &ModelConfig,
        vocab_size: usize,
        max_seq_len: usize,
        seed: u64,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        if cfg.arch != Arch::Gpt {
            candle_core::bail!("Gpt::new called with arch {:?}", cfg.arch);
        }
        let d = cfg.d_model;
        let mut params = ParamStore::new(seed, dtype, device);
        let token_embedding = embedding_init(&mut params, cfg, "token_embedding", (vocab_size, d))?;
        let blocks = BlockStack::new(&mut params, "blocks", cfg, cfg.n_layers, cfg.n_layers)?;
        let final_norm = RmsNorm::with_eps(&mut params, "final_norm", d, cfg.norm_eps)?;
        let untied_head = if cfg.tie_embeddings {
            None
        } else {
            Some(embedding_init(
                &mut params,
                cfg,
                "lm_head",
                (d, vocab_size),
            )?)
        };
        let rope = Rope::with_base(head_dim(cfg), max_seq_len, cfg.rope_base, dtype, device)?;
        Ok(Gpt {
            token_embedding,
            blocks,
            final_norm,
            untied_head,
            rope,
            params,
        })
    }
}

impl CausalLm for Gpt {
    fn logits(&self, input_ids: &Tensor) -> Result<Tensor> {
        let (b, t) = input_ids.dims2()?;
        let d = self.token_embedding.dim(1)?;
        let x = param(&self.token_embedding)
            .embedding(&input_ids.flatten_all()?)?
            .reshape((b, t, d))?;
        let x = self.blocks.forward(&x, &self.rope)?;
        let x = self.final_norm.forward(&x)?.reshape((b * t, d))?;
        let logits = match &self.untied_head {
            Some(head) => x.matmul(&param(head))?,
            None => x.matmul(&param(&self.token_embedding).t()?)?,
        };
        logits.reshape((b, t, ()))
    }

    fn params(&self) -> &ParamStore {
        &self.params
    }
}
