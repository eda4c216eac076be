//! What a network reads and writes: tokens through the embedding table and logits through the
//! LM head (every text and discrete task), or continuous vectors through a linear read-in and a
//! scalar read-out (in-context linear regression, Garg et al. 2022).
//!
//! The token embedding and the LM head (final norm, then the tied or untied head) live here too.
//!
//! The body between them (GPT blocks, or the looped model's prelude, recurrence and coda) is the
//! same either way; only these two ends change.

use candle_core::{Result, Tensor};

use super::config::{Init, ModelConfig};
use super::grad::param;
use super::layers::{RmsNorm, embedding_init_std, logit_scale, project};
use super::ops;
use super::params::{ParamRole, ParamStore};

/// The two ends of a network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Io {
    /// `(batch, time)` u32 ids of a `vocab`-token vocabulary in, `(batch, time, vocab)` logits out.
    Tokens { vocab: usize },
    /// `(batch, time, width)` real vectors in, `(batch, time, 1)` scalar predictions out.
    Vectors { width: usize },
}

/// A bare number is a vocabulary size: every text model's ends.
impl From<usize> for Io {
    fn from(vocab: usize) -> Io {
        Io::Tokens { vocab }
    }
}

impl Io {
    /// Outputs per position: the vocabulary, or 1.
    pub fn out_width(self) -> usize {
        match self {
            Io::Tokens { vocab } => vocab,
            Io::Vectors { .. } => 1,
        }
    }

    /// Parameters of the read-in: the `(vocab, d)` table or the `(width, d)` matrix.
    pub fn read_in_params(self, d: usize) -> u64 {
        match self {
            Io::Tokens { vocab } => (vocab * d) as u64,
            Io::Vectors { width } => (width * d) as u64,
        }
    }

    /// Whether the head reuses the embedding table (tokens with `tie_embeddings`; a scalar
    /// read-out never does).
    pub fn tied(self, cfg: &ModelConfig) -> bool {
        matches!(self, Io::Tokens { .. }) && cfg.tie_embeddings
    }

    /// Forward FLOPs per token of the read-in: a table lookup is free, a matrix costs `2·width·d`.
    pub fn read_in_flops(self, d: usize) -> f64 {
        match self {
            Io::Tokens { .. } => 0.0,
            Io::Vectors { width } => 2.0 * width as f64 * d as f64,
        }
    }
}

/// The network's first step: token embedding, or a linear map of each input vector.
pub enum ReadIn {
    Tokens(TokenEmbedding),
    /// `(width, d)`, an embedding-role matrix (AdamW, like the token table).
    Linear(Tensor),
}

impl ReadIn {
    pub fn new(params: &mut ParamStore, cfg: &ModelConfig, io: Io) -> Result<Self> {
        Ok(match io {
            Io::Tokens { vocab } => ReadIn::Tokens(TokenEmbedding::new(params, cfg, vocab)?),
            Io::Vectors { width } => ReadIn::Linear(params.normal(
                "read_in",
                (width, cfg.d_model),
                embedding_init_std(cfg),
                ParamRole::Embedding,
            )?),
        })
    }

    /// `(batch, time)` ids or `(batch, time, width)` vectors → `(batch, time, d)`.
    pub fn forward(&self, input: &Tensor) -> Result<Tensor> {
        match self {
            ReadIn::Tokens(embedding) => embedding.forward(input),
            ReadIn::Linear(w) => project(&input.to_dtype(w.dtype())?, &param(w)),
        }
    }

    /// The token table a tied head reads from; `None` for a linear read-in.
    pub fn tied_table(&self) -> Option<&Tensor> {
        match self {
            ReadIn::Tokens(embedding) => Some(embedding.table()),
            ReadIn::Linear(_) => None,
        }
    }
}

/// The token embedding (`(vocab, d)`) or an untied LM head (`(d, vocab)`) as `cfg.init` says:
/// orthogonal at the scaled-zero entry scale, or N(0, 0.02²); under μP at the base width's
/// scale ([`embedding_init_std`]).
fn embedding_init(
    params: &mut ParamStore,
    cfg: &ModelConfig,
    name: &str,
    shape: (usize, usize),
) -> Result<Tensor> {
    let std = embedding_init_std(cfg);
    match cfg.init {
        Init::ScaledZero => params.orthogonal(name, shape, std, ParamRole::Embedding),
        Init::Gpt2 => params.normal(name, shape, std, ParamRole::Embedding),
    }
}

/// The token embedding: a `(vocab, d)` table whose rows are the tokens' vectors.
pub struct TokenEmbedding {
    table: Tensor,
}

impl TokenEmbedding {
    /// A `(vocab, d)` table initialised as `cfg.init` says.
    pub fn new(params: &mut ParamStore, cfg: &ModelConfig, vocab_size: usize) -> Result<Self> {
        Ok(TokenEmbedding {
            table: embedding_init(params, cfg, "token_embedding", (vocab_size, cfg.d_model))?,
        })
    }

    /// The `(vocab, d)` table.
    pub fn table(&self) -> &Tensor {
        &self.table
    }

    /// `(batch, time)` u32 token ids → `(batch, time, d)` vectors.
    pub fn forward(&self, input_ids: &Tensor) -> Result<Tensor> {
        let (b, t) = input_ids.dims2()?;
        let d = self.table.dim(1)?;
        param(&self.table)
            .embedding(&input_ids.flatten_all()?)?
            .reshape((b, t, d))
    }
}

/// The output end of every network: final RMSNorm, then the LM head — the transposed token
/// embedding when tied, else its own `(d, vocab)` matrix.
pub struct LmHead {
    final_norm: RmsNorm,
    /// `(d, vocab)` when untied.
    untied: Option<Tensor>,
    /// The factor on the logits ([`logit_scale`]): 1, or μP's `1/m`.
    scale: f64,
}

impl LmHead {
    /// The final norm and, unless the head is tied to the token table (`Io::tied`), a
    /// `(d, out)` head initialised like the embedding (`out` = vocabulary, or 1 for a scalar
    /// read-out).
    pub fn new(params: &mut ParamStore, cfg: &ModelConfig, io: impl Into<Io>) -> Result<Self> {
        let io = io.into();
        let d = cfg.d_model;
        let final_norm = RmsNorm::with_eps(params, "final_norm", d, cfg.norm_eps)?;
        let untied = (!io.tied(cfg))
            .then(|| embedding_init(params, cfg, "lm_head", (d, io.out_width())))
            .transpose()?;
        Ok(LmHead {
            final_norm,
            untied,
            scale: logit_scale(cfg),
        })
    }

    /// `(batch, time, d)` → `(batch, time, out)` logits; `tied` is the token table a tied head
    /// reads from.
    pub fn forward(&self, x: &Tensor, tied: Option<&Tensor>) -> Result<Tensor> {
        Ok(self.forward_with_hidden(x, tied)?.0)
    }

    /// The logits and the final normalised hidden state `(batch, time, d)` they are read from.
    pub fn forward_with_hidden(
        &self,
        x: &Tensor,
        tied: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor)> {
        let (b, t, d) = x.dims3()?;
        let normed = self.final_norm.forward(x)?;
        let flat = normed.reshape((b * t, d))?;
        let logits = match (&self.untied, tied) {
            (Some(head), _) => ops::matmul(&flat, &param(head))?,
            (None, Some(table)) => ops::matmul(&flat, &param(table).t()?)?,
            (None, None) => candle_core::bail!("a tied LM head needs the token table"),
        };
        // μP's readout multiplier; a tied table keeps its learning rate and init, the logits
        // read from it shrink by 1/m instead.
        let logits = if self.scale == 1.0 {
            logits
        } else {
            logits.affine(self.scale, 0.0)?
        };
        Ok((logits.reshape((b, t, ()))?, normed))
    }
}
