//! Multi-operand addition: `operands` numbers of `digits` digits (zero-padded, most significant
//! first) joined by `+`, then `=`, then the sum's digits **least significant first** (the order
//! in which carries are computed, as in most length-generalisation work), zero-padded to the
//! width of the largest possible sum. Only the answer digits are scored; an answer counts as
//! right when every digit is.

use rand::Rng;
use rand::rngs::StdRng;

/// Tokens `0`–`9` are the digits.
pub const PLUS: u32 = 10;
pub const EQUALS: u32 = 11;
/// Fills the sequence after the answer; never scored.
pub const PAD: u32 = 12;
pub const VOCAB: usize = 13;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addition {
    pub operands: usize,
    pub digits: usize,
}

impl Addition {
    /// Digits of the largest sum, `operands · (10^digits − 1)`.
    pub fn answer_width(&self) -> usize {
        let max = self.operands as u128 * (10u128.pow(self.digits as u32) - 1);
        max.to_string().len()
    }

    /// Tokens of a whole problem with its answer: `n·k` digits, `n − 1` pluses, `=`, the answer.
    pub fn full_len(&self) -> usize {
        self.operands * self.digits + self.operands + self.answer_width()
    }

    /// The model reads all but the last token: the context a problem needs.
    pub fn context_len(&self) -> usize {
        self.full_len() - 1
    }

    /// A random problem: the operands, uniform in `0..10^digits`.
    pub fn sample(&self, rng: &mut StdRng) -> Vec<u64> {
        let top = 10u64.pow(self.digits as u32);
        (0..self.operands)
            .map(|_| rng.random_range(0..top))
            .collect()
    }

    /// The tokens of `numbers` and their sum, and where the answer starts.
    pub fn encode(&self, numbers: &[u64]) -> (Vec<u32>, usize) {
        let mut tokens = Vec::with_capacity(self.full_len());
        for (i, &n) in numbers.iter().enumerate() {
            if i > 0 {
                tokens.push(PLUS);
            }
            tokens.extend(digits_msb_first(n, self.digits));
        }
        tokens.push(EQUALS);
        let answer_start = tokens.len();
        let mut sum: Vec<u32> = digits_msb_first(numbers.iter().sum(), self.answer_width());
        sum.reverse();
        tokens.extend(sum);
        (tokens, answer_start)
    }
}

/// `n` as exactly `width` decimal digits, most significant first.
fn digits_msb_first(n: u64, width: usize) -> Vec<u32> {
    let mut out = vec![0u32; width];
    let mut rest = n;
    for d in out.iter_mut().rev() {
        *d = (rest % 10) as u32;
        rest /= 10;
    }
    out
}
