//! The corpus as tokens: loading and checking the text, the byte tokenizer, the fixed
//! train/validation split, a seeded sampler of training windows and the fixed validation windows.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use candle_core::{Device, Tensor};
use rand::Rng;

use super::batch::{Batch, indexed_rng};
use crate::config::{DataConfig, resolve_corpus_path};

/// Vocabulary of the byte tokenizer: one token per byte value.
pub const BYTE_VOCAB: usize = 256;

/// A tokenized corpus split into training and validation tokens.
pub struct Corpus {
    path: PathBuf,
    train: Vec<u8>,
    val: Vec<u8>,
}

impl Corpus {
    /// Reads `data.corpus` (resolved against `base_dir`), checks it is UTF-8, tokenizes it and
    /// splits it: the last `val_fraction` of the bytes is validation, the rest training.
    pub fn load(cfg: &DataConfig, base_dir: &Path) -> anyhow::Result<Corpus> {
        let path = resolve_corpus_path(&cfg.corpus, base_dir);
        let bytes =
            std::fs::read(&path).with_context(|| format!("reading corpus {}", path.display()))?;
        if let Err(e) = std::str::from_utf8(&bytes) {
            bail!("corpus {} is not valid UTF-8: {e}", path.display());
        }
        Self::from_bytes(bytes, cfg, path)
    }

    /// The same from text already in memory (`origin` names it in errors).
    pub fn from_text(text: &str, cfg: &DataConfig, origin: &str) -> anyhow::Result<Corpus> {
        Self::from_bytes(text.as_bytes().to_vec(), cfg, PathBuf::from(origin))
    }

    fn from_bytes(bytes: Vec<u8>, cfg: &DataConfig, path: PathBuf) -> anyhow::Result<Corpus> {
        if cfg.tokenizer != "bytes" {
            bail!(
                "data.tokenizer = {:?} is not supported; the only tokenizer is \"bytes\"",
                cfg.tokenizer
            );
        }
        if !(cfg.val_fraction > 0.0 && cfg.val_fraction < 1.0) {
            bail!(
                "data.val_fraction = {} must lie strictly between 0 and 1",
                cfg.val_fraction
            );
        }
        if cfg.seq_len == 0 {
            bail!("data.seq_len must be at least 1");
        }
        let n_val = (bytes.len() as f64 * cfg.val_fraction).floor() as usize;
        let n_train = bytes.len() - n_val;
        let need = cfg.seq_len + 1;
        if n_train < need || n_val < need {
            bail!(
                "corpus {} ({} bytes) splits into {n_train} training and {n_val} validation tokens; \
                 data.seq_len = {} needs at least {need} in each",
                path.display(),
                bytes.len(),
                cfg.seq_len
            );
        }
        let mut train = bytes;
        let val = train.split_off(n_train);
        Ok(Corpus { path, train, val })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn vocab_size(&self) -> usize {
        BYTE_VOCAB
    }

    /// Bytes of text per token (1 for the byte tokenizer); converts nats/token to bits/byte.
    pub fn bytes_per_token(&self) -> f64 {
        1.0
    }

    pub fn train_tokens(&self) -> &[u8] {
        &self.train
    }

    pub fn val_tokens(&self) -> &[u8] {
        &self.val
    }

    /// Entropy (nats) of the training split's unigram distribution: the loss of the best model
    /// that ignores context, a reference line for the loss curves.
    pub fn unigram_entropy_nats(&self) -> f64 {
        let mut counts = [0u64; BYTE_VOCAB];
        for &b in &self.train {
            counts[b as usize] += 1;
        }
        let n = self.train.len() as f64;
        counts
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| c as f64 / n)
            .map(|p| -p * p.ln())
            .sum()
    }

    /// Fixed validation windows, `ceil(eval_tokens / seq_len)` of them spaced evenly from the
    /// start to the end of the validation split (overlapping if the split is short), grouped
    /// into batches of at most `batch_size`. The same for every run with the same data.
    pub fn validation_batches(
        &self,
        seq_len: usize,
        batch_size: usize,
        eval_tokens: u64,
        device: &Device,
    ) -> anyhow::Result<Vec<Batch>> {
        let n_windows = (eval_tokens as usize).div_ceil(seq_len).max(1);
        let last_start = self.val.len() - seq_len - 1;
        let starts: Vec<usize> = if n_windows == 1 {
            vec![0]
        } else {
            (0..n_windows)
                .map(|i| i * last_start / (n_windows - 1))
                .collect()
        };
        starts
            .chunks(batch_size.max(1))
            .map(|chunk| windows_to_batch(&self.val, chunk, seq_len, device))
            .collect()
    }
}

fn windows_to_batch(
    tokens: &[u8],
    starts: &[usize],
    seq_len: usize,
    device: &Device,
) -> anyhow::Result<Batch> {
    let mut inputs = Vec::with_capacity(starts.len() * seq_len);
    let mut targets = Vec::with_capacity(starts.len() * seq_len);
    for &s in starts {
        inputs.extend(tokens[s..s + seq_len].iter().map(|&b| b as u32));
        targets.extend(tokens[s + 1..s + seq_len + 1].iter().map(|&b| b as u32));
    }
    let shape = (starts.len(), seq_len);
    Ok(Batch::dense(
        Tensor::from_vec(inputs, shape, device)?,
        Tensor::from_vec(targets, shape, device)?,
    )?)
}

/// Draws training windows uniformly at random. Batch `i` comes from an RNG seeded by
/// `(seed, i)` alone, so a run's data order depends only on its seed, and a resumed run picks up
/// the stream at any step by [`BatchSampler::seek`]: the data position is just the step count.
pub struct BatchSampler {
    seed: u64,
    position: u64,
    batch_size: usize,
    seq_len: usize,
}

impl BatchSampler {
    pub fn new(seed: u64, batch_size: usize, seq_len: usize) -> Self {
        BatchSampler {
            seed,
            position: 0,
            batch_size,
            seq_len,
        }
    }

    /// Batches drawn so far (the index of the next one).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Continue the stream from batch `position`, as if that many had been drawn.
    pub fn seek(&mut self, position: u64) {
        self.position = position;
    }

    /// The next batch of `batch_size` windows of `tokens`.
    pub fn sample(&mut self, tokens: &[u8], device: &Device) -> anyhow::Result<Batch> {
        let mut rng = indexed_rng(self.seed, self.position);
        self.position += 1;
        let last_start = tokens.len() - self.seq_len - 1;
        let starts: Vec<usize> = (0..self.batch_size)
            .map(|_| rng.random_range(0..=last_start))
            .collect();
        windows_to_batch(tokens, &starts, self.seq_len, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(seq_len: usize, val_fraction: f64) -> DataConfig {
        DataConfig {
            corpus: "unused".into(),
            tokenizer: "bytes".into(),
            seq_len,
            val_fraction,
            ..DataConfig::default()
        }
    }

    #[test]
    fn split_is_the_last_fraction() {
        let text: String = (0..100)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let c = Corpus::from_text(&text, &data(4, 0.1), "t").unwrap();
        assert_eq!(c.train_tokens(), &text.as_bytes()[..90]);
        assert_eq!(c.val_tokens(), &text.as_bytes()[90..]);
    }

    #[test]
    fn too_short_split_names_seq_len() {
        let err = Corpus::from_text("hello world", &data(8, 0.5), "t")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("data.seq_len"), "{err}");
    }

    #[test]
    fn non_utf8_file_is_named_in_the_error() {
        let dir = std::env::temp_dir().join(format!("loopscale-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bad.txt");
        std::fs::write(&file, [0x66, 0x6f, 0xff, 0xfe, 0x6f].repeat(100)).unwrap();
        let cfg = DataConfig {
            corpus: file.to_string_lossy().into(),
            ..data(4, 0.1)
        };
        let err = Corpus::load(&cfg, &dir).err().unwrap().to_string();
        assert!(err.contains("bad.txt") && err.contains("UTF-8"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unigram_entropy_of_two_equally_likely_bytes_is_ln2() {
        let c = Corpus::from_text(&"ab".repeat(100), &data(4, 0.1), "t").unwrap();
        assert!((c.unigram_entropy_nats() - 2f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn sampler_is_deterministic_and_targets_are_shifted_inputs() {
        let text: String = (0..1000)
            .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
            .collect();
        let c = Corpus::from_text(&text, &data(16, 0.1), "t").unwrap();
        let dev = Device::Cpu;
        let draw = |seed| {
            let mut s = BatchSampler::new(seed, 4, 16);
            (0..3)
                .map(|_| {
                    s.sample(c.train_tokens(), &dev)
                        .unwrap()
                        .inputs
                        .to_vec2::<u32>()
                        .unwrap()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
        // Seeking to batch 2 gives what the third draw gave: a resumed run sees the same data.
        let mut s = BatchSampler::new(1, 4, 16);
        s.seek(2);
        let third = s
            .sample(c.train_tokens(), &dev)
            .unwrap()
            .inputs
            .to_vec2::<u32>()
            .unwrap();
        assert_eq!(third, draw(1)[2]);
        assert_eq!(s.position(), 3);
        let b = BatchSampler::new(3, 2, 16)
            .sample(c.train_tokens(), &dev)
            .unwrap();
        let (x, y) = (
            b.inputs.to_vec2::<u32>().unwrap(),
            b.targets.to_vec2::<u32>().unwrap(),
        );
        assert_eq!(x[0][1..], y[0][..15]);
    }

    #[test]
    fn validation_windows_cover_the_split_and_batch() {
        let text: String = (0..2000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let c = Corpus::from_text(&text, &data(10, 0.25), "t").unwrap();
        let batches = c.validation_batches(10, 4, 95, &Device::Cpu).unwrap();
        let sizes: Vec<usize> = batches.iter().map(|b| b.inputs.dim(0).unwrap()).collect();
        assert_eq!(sizes, vec![4, 4, 2]);
        let last = batches[2].targets.to_vec2::<u32>().unwrap();
        assert_eq!(
            *last[1].last().unwrap(),
            *c.val_tokens().last().unwrap() as u32
        );
    }
}
