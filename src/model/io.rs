//! What a network reads and writes: tokens through the embedding table and logits through the
//! LM head (every text and discrete task), or continuous vectors through a linear read-in and a
//! scalar read-out (in-context linear regression, Garg et al. 2022).
//!
//! The body between them (GPT blocks, or the looped model's prelude, recurrence and coda) is the
//! same either way; only these two ends change.

use candle_core::{Result, Tensor};

use super::config::ModelConfig;
use super::grad::param;
use super::layers::{TokenEmbedding, init_std, project};
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
                init_std(cfg.init, cfg.d_model),
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
