//! The order training windows are read in: every epoch a fresh permutation of the split's
//! non-overlapping windows, so a run sees each window once before it sees any twice.
//!
//! The permutation is a keyed bijection on the window indices (a balanced Feistel network,
//! walked until it lands inside the range), computed on demand: O(1) memory however large the
//! split, and the window at any position of the stream is known without drawing the ones before
//! it, so a resumed run continues the exact order by its position alone. Epoch `e` of seed `s`
//! is keyed by `(s, e)`: another seed gives another order, another epoch another permutation.

use super::batch::indexed_rng;
use rand::RngCore;

/// Rounds of the Feistel network. Four rounds of a good round function make a pseudorandom
/// permutation (Luby–Rackoff); two more cost nothing here.
const ROUNDS: usize = 6;

/// A permutation of `0..n` keyed by `(seed, epoch)`.
#[derive(Clone, Debug)]
pub struct Permutation {
    n: u64,
    /// Bits of each Feistel half; the network permutes `0..4^half_bits` ⊇ `0..n`.
    half_bits: u32,
    keys: [u64; ROUNDS],
}

impl Permutation {
    pub fn new(n: u64, seed: u64, epoch: u64) -> Permutation {
        // The smallest even bit count whose range holds n: at most 4n values, so walking from
        // an index back into 0..n takes fewer than four steps on average.
        let bits = (64 - n.saturating_sub(1).leading_zeros()).max(2);
        let half_bits = bits.div_ceil(2);
        let mut rng = indexed_rng(seed, epoch);
        let mut keys = [0u64; ROUNDS];
        keys.iter_mut().for_each(|k| *k = rng.next_u64());
        Permutation { n, half_bits, keys }
    }

    /// The size of the permuted range.
    pub fn len(&self) -> u64 {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The element at position `i` (`i < n`).
    pub fn at(&self, i: u64) -> u64 {
        assert!(
            i < self.n,
            "position {i} outside a permutation of {}",
            self.n
        );
        // Cycle walking: the network is a bijection on 0..4^half_bits, so following it from a
        // point of 0..n returns to 0..n, and the map restricted that way is a bijection too.
        let mut x = self.feistel(i);
        while x >= self.n {
            x = self.feistel(x);
        }
        x
    }

    fn feistel(&self, x: u64) -> u64 {
        let mask = (1u64 << self.half_bits) - 1;
        let (mut left, mut right) = (x >> self.half_bits, x & mask);
        for key in self.keys {
            let next = left ^ (mix(right ^ key) & mask);
            left = right;
            right = next;
        }
        (left << self.half_bits) | right
    }
}

/// SplitMix64's finaliser: a bijective mix of 64 bits, the round function.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The stream of window indices a run reads: sample `k` is window
/// `Permutation(windows, seed, k / windows).at(k % windows)`.
#[derive(Clone, Debug)]
pub struct WindowOrder {
    windows: u64,
    seed: u64,
    /// The permutation of the epoch last asked for (a batch rarely spans two).
    current: Option<(u64, Permutation)>,
}

impl WindowOrder {
    pub fn new(windows: u64, seed: u64) -> WindowOrder {
        WindowOrder {
            windows,
            seed,
            current: None,
        }
    }

    /// The window read as sample `k` of the stream (0-based, counted from the run's start).
    pub fn window(&mut self, k: u64) -> u64 {
        let (epoch, i) = (k / self.windows, k % self.windows);
        if self.current.as_ref().is_none_or(|(e, _)| *e != epoch) {
            self.current = Some((epoch, Permutation::new(self.windows, self.seed, epoch)));
        }
        self.current.as_ref().expect("set above").1.at(i)
    }

    /// Passes over the split after `samples` windows: exact, since each pass is one permutation.
    pub fn passes(&self, samples: u64) -> f64 {
        samples as f64 / self.windows as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_is_a_bijection() {
        for n in [1u64, 2, 3, 4, 5, 7, 16, 17, 100, 1000, 4097] {
            let p = Permutation::new(n, 7, 0);
            let mut seen = vec![false; n as usize];
            for i in 0..n {
                let x = p.at(i) as usize;
                assert!(!seen[x], "n = {n}: {x} twice");
                seen[x] = true;
            }
        }
    }

    #[test]
    fn seeds_and_epochs_give_other_orders_and_the_same_key_the_same_one() {
        let order = |seed, epoch| -> Vec<u64> {
            let p = Permutation::new(500, seed, epoch);
            (0..500).map(|i| p.at(i)).collect()
        };
        assert_eq!(order(1, 0), order(1, 0));
        assert_ne!(order(1, 0), order(2, 0));
        assert_ne!(order(1, 0), order(1, 1));
        // Not the identity, nor a rotation of it: most neighbours are split apart.
        let o = order(1, 0);
        let adjacent = o.windows(2).filter(|w| w[1] == w[0] + 1).count();
        assert!(adjacent < 10, "{adjacent} of 499 steps are +1");
    }

    #[test]
    fn positions_are_spread_evenly_over_the_range() {
        // The first tenth of an epoch reads about a tenth of each tenth of the split.
        let n = 10_000u64;
        let p = Permutation::new(n, 3, 0);
        let mut bins = [0u32; 10];
        for i in 0..n / 10 {
            bins[(p.at(i) * 10 / n) as usize] += 1;
        }
        for b in bins {
            assert!((60..=140).contains(&b), "{bins:?}");
        }
    }

    #[test]
    fn the_stream_is_one_permutation_per_epoch() {
        let mut order = WindowOrder::new(37, 11);
        for epoch in 0..3u64 {
            let mut got: Vec<u64> = (0..37).map(|i| order.window(epoch * 37 + i)).collect();
            got.sort_unstable();
            assert_eq!(got, (0..37).collect::<Vec<_>>());
        }
        assert!((order.passes(74) - 2.0).abs() < 1e-12);
    }
}
