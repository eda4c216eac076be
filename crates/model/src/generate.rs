//! Generation: a finished model writes text a token at a time through a KV cache, at any
//! test-time loop count for a looped model.
//!
//! Each step feeds only the new token: its keys and values join the cache of every block
//! application (a looped model's core blocks once per loop, since each loop attends over its
//! own states), so a step costs one position's work. Its logits are the ones a forward pass
//! over the whole prefix would give at that position (`tests/generate.rs` checks this against
//! recomputation, GPT and looped, at every loop count). The next token is drawn from
//! `softmax(logits / temperature)` restricted to the `top_k` most likely tokens, by a seeded
//! RNG; temperature 0 takes the most likely token.

use candle_core::{DType, Device, Result, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::gpt::Gpt;
use super::layers::KvCache;
use super::lm::CausalLm;
use super::looped::{Looped, LoopedCache};

/// A model with its decoding state.
pub enum Decoder<'a> {
    Gpt(&'a Gpt, Vec<KvCache>),
    Looped(&'a Looped, LoopedCache),
}

impl<'a> Decoder<'a> {
    /// A decoder for `model` of one sequence up to `max_len` positions; a looped model runs
    /// `loops` loops (its training mean when `None`).
    pub fn new(model: &'a dyn CausalLm, loops: Option<usize>, max_len: usize) -> Result<Self> {
        Ok(match model.as_looped() {
            Some(looped) => {
                let loops = loops.unwrap_or(looped.config().mean_recurrence);
                if loops == 0 {
                    candle_core::bail!("a looped model decodes with at least one loop");
                }
                Decoder::Looped(looped, looped.new_cache(loops, max_len)?)
            }
            None => {
                let Some(gpt) = model.as_gpt() else {
                    candle_core::bail!("this model cannot decode with a cache");
                };
                if loops.is_some() {
                    candle_core::bail!("a GPT has no loops to set");
                }
                Decoder::Gpt(gpt, gpt.new_caches())
            }
        })
    }

    /// Logits `(1, t_new, vocab)` of the new positions `ids` `(1, t_new)`, which join the cache.
    pub fn feed(&mut self, ids: &Tensor) -> Result<Tensor> {
        match self {
            Decoder::Gpt(gpt, caches) => gpt.logits_cached(ids, caches),
            Decoder::Looped(looped, cache) => looped.logits_cached(ids, cache),
        }
    }

    /// Bytes of keys and values the cache holds.
    pub fn cache_bytes(&self) -> usize {
        match self {
            Decoder::Gpt(_, caches) => caches.iter().map(KvCache::bytes).sum(),
            Decoder::Looped(_, cache) => cache.bytes(),
        }
    }
}

/// How the next token is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampling {
    /// 0: the most likely token; otherwise logits are divided by it before the softmax.
    pub temperature: f64,
    /// Draw only among the `top_k` most likely tokens (`None`: all).
    pub top_k: Option<usize>,
    pub seed: u64,
}

/// `prompt` (at least one token) continued by `n` tokens drawn as `sampling` says; returns the
/// new tokens. `loops`: a looped model's loop count (its training mean when `None`).
pub fn generate(
    model: &dyn CausalLm,
    prompt: &[u32],
    n: usize,
    sampling: Sampling,
    loops: Option<usize>,
    device: &Device,
) -> Result<Vec<u32>> {
    if prompt.is_empty() {
        candle_core::bail!("generation needs a prompt of at least one token");
    }
    let mut decoder = Decoder::new(model, loops, prompt.len() + n)?;
    let mut rng = StdRng::seed_from_u64(sampling.seed);
    let mut logits = decoder.feed(&Tensor::new(prompt, device)?.unsqueeze(0)?)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = logits.dim(1)?;
        let last = logits
            .narrow(1, t - 1, 1)?
            .flatten_all()?
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?;
        let next = draw(&last, sampling, &mut rng);
        out.push(next);
        logits = decoder.feed(&Tensor::new(&[next], device)?.unsqueeze(0)?)?;
    }
    Ok(out)
}

/// One token from `logits` as `sampling` says.
pub fn draw(logits: &[f64], sampling: Sampling, rng: &mut StdRng) -> u32 {
    let argmax = |xs: &[f64]| {
        xs.iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i as u32)
    };
    if sampling.temperature <= 0.0 {
        return argmax(logits);
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    order.truncate(sampling.top_k.unwrap_or(logits.len()).max(1));
    let top = logits[order[0]];
    let weights: Vec<f64> = order
        .iter()
        .map(|&i| ((logits[i] - top) / sampling.temperature).exp())
        .collect();
    let mut u = rng.random::<f64>() * weights.iter().sum::<f64>();
    for (&i, w) in order.iter().zip(&weights) {
        if u < *w {
            return i as u32;
        }
        u -= w;
    }
    order[order.len() - 1] as u32
}
