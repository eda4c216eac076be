//! p-hop induction (Sanford, Hsu and Telgarsky 2024; Saunshi et al. 2025's depth task).
//!
//! A sequence `X` over an alphabet of `a` symbols. One induction hop from position `i` goes to
//! the position just after the most recent earlier occurrence of `X_i`:
//! `find(i) = 1 + max{ j < i : X_j = X_i }`. The answer is `X` at `find^p(N − 1)`, the symbol
//! reached after `p` hops from the last position: for `p = 1` the classic induction head ("what
//! followed this symbol last time"), each further hop one more step of the same lookup, which a
//! transformer of depth ~log p can compose (the paper's point).
//!
//! The task maps a sequence to the sequence of its answers: `hop_p(X)_i = X` at `find^p(i)`,
//! defined at every position `i` whose chain of `p` hops stays inside the sequence (Sanford et
//! al.'s definition). [`answers`] gives all of them; with `data.targets = "all"` the loss scores
//! every defined position, with `"last"` only the last, and accuracy is judged at the last.
//!
//! Sequences are drawn uniformly among those with no symbol repeated twice in a row (a repeat
//! would let a hop land where it started and loop forever) and whose last position's chain of
//! `p` hops stays inside the sequence; others are redrawn.

use rand::Rng;
use rand::rngs::StdRng;

/// Redraws allowed before a configuration is declared impossible in practice.
const MAX_TRIES: usize = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PHop {
    pub alphabet: usize,
    pub hops: usize,
    pub len: usize,
}

impl PHop {
    /// A sequence of `len` symbols whose last position's `hops`-hop answer exists, and the
    /// answer at every position (`None` where undefined; the last is always defined).
    pub fn sample(&self, rng: &mut StdRng) -> anyhow::Result<(Vec<u32>, Vec<Option<u32>>)> {
        for _ in 0..MAX_TRIES {
            let seq = self.draw(rng);
            let answers = answers(&seq, self.hops);
            if answers.last().is_some_and(Option::is_some) {
                return Ok((seq, answers));
            }
        }
        anyhow::bail!(
            "p_hop: no sequence of {} symbols over an alphabet of {} in {MAX_TRIES} draws has a \
             {}-hop answer; raise data.seq_len or lower data.hops",
            self.len,
            self.alphabet,
            self.hops
        )
    }

    /// Uniform symbols, none equal to its predecessor.
    fn draw(&self, rng: &mut StdRng) -> Vec<u32> {
        let a = self.alphabet as u32;
        let mut seq: Vec<u32> = Vec::with_capacity(self.len);
        for i in 0..self.len {
            let s = match i {
                0 => rng.random_range(0..a),
                // One of the a − 1 symbols other than the previous one, uniformly.
                _ => {
                    let prev = seq[i - 1];
                    let s = rng.random_range(0..a - 1);
                    if s >= prev { s + 1 } else { s }
                }
            };
            seq.push(s);
        }
        seq
    }
}

/// The symbol reached after `hops` hops from the last position, if every hop exists.
pub fn answer(seq: &[u32], hops: usize) -> Option<u32> {
    *answers(seq, hops).last()?
}

/// `hop_p(X)_i` at every position `i`: the symbol reached after `hops` hops from `i`, or `None`
/// where a hop has no earlier occurrence to go to.
pub fn answers(seq: &[u32], hops: usize) -> Vec<Option<u32>> {
    // last[s]: the latest position of symbol s seen so far; prev[i]: the one before i.
    let mut last: Vec<Option<usize>> = vec![None; seq.iter().max().map_or(0, |&m| m as usize + 1)];
    let prev: Vec<Option<usize>> = seq
        .iter()
        .enumerate()
        .map(|(i, &s)| last[s as usize].replace(i))
        .collect();
    (0..seq.len())
        .map(|start| {
            let mut i = start;
            for _ in 0..hops {
                i = prev[i]? + 1;
            }
            Some(seq[i])
        })
        .collect()
}
