//! The corpus as tokens: a text file tokenized (bytes held in memory, BPE through the
//! tokenized-text cache of [`super::tokenizer`]) or pre-tokenized shards memory-mapped
//! ([`super::shards`]); the fixed train/validation split; a seeded sampler of training windows,
//! the fixed validation windows, and the bytes of text per validation token that turn a loss
//! per token into bits per byte.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use candle_core::{Device, Tensor};
use rand::Rng;

use super::batch::{Batch, indexed_rng};
use super::order::WindowOrder;
use super::shards::{self, Tokens};
use super::tokenizer::Tokenizer;
use loopscale_config::{DataConfig, DataOrder, resolve_corpus_path};

/// Vocabulary of the byte tokenizer: one token per byte value.
pub const BYTE_VOCAB: usize = 256;

/// Tokens of the validation split over which [`Corpus::bytes_per_token`] is measured when no
/// evaluation size is given (`plan`'s reference line).
const BPT_SAMPLE_TOKENS: u64 = 1 << 16;

/// A tokenized corpus split into training and validation tokens.
pub struct Corpus {
    path: PathBuf,
    train: Tokens,
    val: Tokens,
    vocab: usize,
    /// Text bytes per id (0 for special tokens and ids past the tokenizer's vocabulary).
    token_bytes: Arc<Vec<u32>>,
}

impl Corpus {
    /// Reads the data of `cfg` (paths resolved against `base_dir`): the text `data.corpus`,
    /// checked to be UTF-8, tokenized and split (the last `val_fraction` of its bytes is
    /// validation); or the shards of `data.tokens` (validation: `data.val_tokens`, else their
    /// last `val_fraction` of tokens).
    pub fn load(cfg: &DataConfig, base_dir: &Path) -> anyhow::Result<Corpus> {
        let tokenizer = Tokenizer::load(&cfg.tokenizer, base_dir)?;
        if let Some(pattern) = &cfg.tokens {
            return Self::from_shards(cfg, pattern, &tokenizer, base_dir);
        }
        let path = resolve_corpus_path(&cfg.corpus, base_dir);
        let bytes =
            std::fs::read(&path).with_context(|| format!("reading corpus {}", path.display()))?;
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => bail!(
                "corpus {} is not valid UTF-8: {}",
                path.display(),
                e.utf8_error()
            ),
        };
        Self::from_string(text, cfg, &tokenizer, path)
    }

    /// The same from text already in memory (`origin` names it in errors), byte tokenizer or
    /// the one `cfg` names.
    pub fn from_text(text: &str, cfg: &DataConfig, origin: &str) -> anyhow::Result<Corpus> {
        let tokenizer = Tokenizer::load(&cfg.tokenizer, Path::new("."))?;
        Self::from_string(text.to_string(), cfg, &tokenizer, PathBuf::from(origin))
    }

    fn from_string(
        text: String,
        cfg: &DataConfig,
        tokenizer: &Tokenizer,
        path: PathBuf,
    ) -> anyhow::Result<Corpus> {
        check_split_keys(cfg)?;
        let n_val = (text.len() as f64 * cfg.val_fraction).floor() as usize;
        let mut n_train = text.len() - n_val;
        let (train, val) = if tokenizer.is_bytes() {
            let mut train = text.into_bytes();
            let val = train.split_off(n_train);
            (Tokens::from_bytes(train), Tokens::from_bytes(val))
        } else {
            // The same text as the byte tokenizer validates on (to the next character), so
            // bits per byte compare runs of different tokenizers on one text.
            while !text.is_char_boundary(n_train) {
                n_train += 1;
            }
            let name = path.display().to_string();
            let vocab = cfg.vocab_size.unwrap_or(tokenizer.vocab_size());
            if vocab < tokenizer.vocab_size() {
                bail!(
                    "data.vocab_size = {vocab} is smaller than tokenizer {:?}'s {} ids",
                    cfg.tokenizer,
                    tokenizer.vocab_size()
                );
            }
            let train = tokenizer.tokenize_cached(&text[..n_train], &format!("{name} (train)"))?;
            let val = tokenizer.tokenize_cached(&text[n_train..], &format!("{name} (val)"))?;
            (Tokens::map(&[train], vocab)?, Tokens::map(&[val], vocab)?)
        };
        let need = cfg.seq_len + 1;
        if train.window_count(cfg.seq_len) == 0 || val.window_count(cfg.seq_len) == 0 {
            bail!(
                "corpus {} splits into {} training and {} validation tokens; \
                 data.seq_len = {} needs at least {need} in each",
                path.display(),
                train.len(),
                val.len(),
                cfg.seq_len
            );
        }
        Ok(Corpus {
            path,
            train,
            val,
            vocab: cfg.vocab_size.unwrap_or(tokenizer.vocab_size()),
            token_bytes: Arc::new(tokenizer.token_bytes()),
        })
    }

    fn from_shards(
        cfg: &DataConfig,
        pattern: &str,
        tokenizer: &Tokenizer,
        base_dir: &Path,
    ) -> anyhow::Result<Corpus> {
        check_split_keys(cfg)?;
        let vocab = cfg.vocab_size.unwrap_or(tokenizer.vocab_size());
        let files = shards::expand(pattern, "tokens", base_dir)?;
        let all = Tokens::map(&files, vocab)?;
        let (train, val) = match &cfg.val_tokens {
            Some(v) => (
                all,
                Tokens::map(&shards::expand(v, "val_tokens", base_dir)?, vocab)?,
            ),
            None => all.split_last((all.len() as f64 * cfg.val_fraction).floor() as usize),
        };
        for (split, t) in [("training", &train), ("validation", &val)] {
            if t.window_count(cfg.seq_len) == 0 {
                bail!(
                    "`data.tokens` = {pattern:?}: the {split} split ({} tokens) has no shard \
                     holding data.seq_len + 1 = {} tokens",
                    t.len(),
                    cfg.seq_len + 1
                );
            }
        }
        Ok(Corpus {
            path: files[0].clone(),
            train,
            val,
            vocab,
            token_bytes: Arc::new(tokenizer.token_bytes()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab
    }

    /// Bytes of text per target token over the validation windows an evaluation of
    /// `eval_tokens` scores (1 for the byte tokenizer): converts nats/token to bits/byte.
    pub fn eval_bytes_per_token(&self, seq_len: usize, eval_tokens: u64) -> anyhow::Result<f64> {
        let (mut bytes, mut tokens) = (0u64, 0u64);
        let mut window = Vec::with_capacity(seq_len + 1);
        for start in self.validation_starts(seq_len, eval_tokens) {
            window.clear();
            self.val.window(start, seq_len, &mut window)?;
            for &t in &window[1..] {
                bytes += self.token_bytes.get(t as usize).copied().unwrap_or(0) as u64;
                tokens += 1;
            }
        }
        Ok(bytes as f64 / tokens.max(1) as f64)
    }

    /// [`Corpus::eval_bytes_per_token`] over the first 65 536 validation tokens' windows.
    pub fn bytes_per_token(&self) -> f64 {
        let seq = self.val.len().min(1024) - 1;
        self.eval_bytes_per_token(seq, BPT_SAMPLE_TOKENS)
            .unwrap_or(f64::NAN)
    }

    pub fn train_tokens(&self) -> &Tokens {
        &self.train
    }

    pub fn val_tokens(&self) -> &Tokens {
        &self.val
    }

    /// Entropy (nats) of the training split's unigram distribution (over its first 2^26
    /// tokens): the loss of the best model that ignores context, a reference line for the
    /// loss curves.
    pub fn unigram_entropy_nats(&self) -> f64 {
        let Ok(counts) = self.train.counts(1 << 26) else {
            return f64::NAN;
        };
        let n = counts.iter().sum::<u64>() as f64;
        counts
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| c as f64 / n)
            .map(|p| -p * p.ln())
            .sum()
    }

    /// Window indices of the validation windows: `ceil(eval_tokens / seq_len)` of them spaced
    /// evenly from the first to the last window of the split (overlapping if it is short).
    fn validation_starts(&self, seq_len: usize, eval_tokens: u64) -> Vec<usize> {
        let n_windows = (eval_tokens as usize).div_ceil(seq_len).max(1);
        let last_start = self.val.window_count(seq_len) - 1;
        if n_windows == 1 {
            vec![0]
        } else {
            (0..n_windows)
                .map(|i| i * last_start / (n_windows - 1))
                .collect()
        }
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
        self.validation_starts(seq_len, eval_tokens)
            .chunks(batch_size.max(1))
            .map(|chunk| windows_to_batch(&self.val, chunk, seq_len, device))
            .collect()
    }
}

/// The split keys shared by text and shards.
fn check_split_keys(cfg: &DataConfig) -> anyhow::Result<()> {
    if !(cfg.val_fraction > 0.0 && cfg.val_fraction < 1.0) {
        bail!(
            "data.val_fraction = {} must lie strictly between 0 and 1",
            cfg.val_fraction
        );
    }
    if cfg.seq_len == 0 {
        bail!("data.seq_len must be at least 1");
    }
    Ok(())
}

fn windows_to_batch(
    tokens: &Tokens,
    starts: &[usize],
    seq_len: usize,
    device: &Device,
) -> anyhow::Result<Batch> {
    let mut inputs = Vec::with_capacity(starts.len() * seq_len);
    let mut targets = Vec::with_capacity(starts.len() * seq_len);
    let mut window = Vec::with_capacity(seq_len + 1);
    for &s in starts {
        window.clear();
        tokens.window(s, seq_len, &mut window)?;
        inputs.extend_from_slice(&window[..seq_len]);
        targets.extend_from_slice(&window[1..]);
    }
    let shape = (starts.len(), seq_len);
    Ok(Batch::dense(
        Tensor::from_vec(inputs, shape, device)?,
        Tensor::from_vec(targets, shape, device)?,
    )?)
}

/// Draws a run's training windows in `data.order`. In epochs (the default), sample `k` of the
/// stream is the split's non-overlapping window at position `k mod W` of epoch `k / W`'s
/// permutation ([`WindowOrder`]); with replacement, batch `i`'s windows are uniform draws among
/// every window of the split (across shards, none crossing a shard's end) from an RNG seeded
/// by `(seed, i)`. Either way batch `i` depends on the seed and `i` alone, so a resumed run
/// picks up the stream at any step by [`BatchSampler::seek`]: the data position is just the
/// step count.
pub struct BatchSampler {
    seed: u64,
    position: u64,
    batch_size: usize,
    seq_len: usize,
    order: DataOrder,
    /// The epoch order over the split's non-overlapping windows, made on the first batch.
    epochs: Option<WindowOrder>,
}

impl BatchSampler {
    pub fn new(seed: u64, batch_size: usize, seq_len: usize, order: DataOrder) -> Self {
        BatchSampler {
            seed,
            position: 0,
            batch_size,
            seq_len,
            order,
            epochs: None,
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
    pub fn sample(&mut self, tokens: &Tokens, device: &Device) -> anyhow::Result<Batch> {
        let starts = self.next_starts(tokens);
        windows_to_batch(tokens, &starts, self.seq_len, device)
    }

    /// The next batch's windows, as indices of [`Tokens::window`].
    pub fn next_starts(&mut self, tokens: &Tokens) -> Vec<usize> {
        let position = self.position;
        self.position += 1;
        match self.order {
            DataOrder::Epochs => {
                let seq_len = self.seq_len;
                let order = self.epochs.get_or_insert_with(|| {
                    WindowOrder::new(tokens.block_count(seq_len) as u64, self.seed)
                });
                let first = position * self.batch_size as u64;
                (first..first + self.batch_size as u64)
                    .map(|k| tokens.block_window(order.window(k) as usize, seq_len))
                    .collect()
            }
            DataOrder::Replacement => {
                let mut rng = indexed_rng(self.seed, position);
                // One text's windows are drawn exactly as before shards existed (same range,
                // same draws), so byte runs keep their data order.
                let last_start = tokens.window_count(self.seq_len) - 1;
                (0..self.batch_size)
                    .map(|_| rng.random_range(0..=last_start))
                    .collect()
            }
        }
    }
}

/// Passes over a split of `tokens` made by `batches` batches of `batch_size` windows read in
/// `order`: exact in epochs (each pass is one permutation of the non-overlapping windows); with
/// replacement, the windows' tokens over the split's (each window is a uniform draw).
pub fn text_passes(
    tokens: &Tokens,
    seq_len: usize,
    batch_size: usize,
    batches: u64,
    order: DataOrder,
) -> f64 {
    let samples = batches * batch_size as u64;
    match order {
        DataOrder::Epochs => {
            WindowOrder::new(tokens.block_count(seq_len) as u64, 0).passes(samples)
        }
        DataOrder::Replacement => (samples * seq_len as u64) as f64 / tokens.len().max(1) as f64,
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
        let ids = |b: &[u8]| b.iter().map(|&x| x as u32).collect::<Vec<_>>();
        assert_eq!(
            c.train_tokens().to_vec().unwrap(),
            ids(&text.as_bytes()[..90])
        );
        assert_eq!(
            c.val_tokens().to_vec().unwrap(),
            ids(&text.as_bytes()[90..])
        );
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
        for order in [DataOrder::Epochs, DataOrder::Replacement] {
            let draw = |seed| {
                let mut s = BatchSampler::new(seed, 4, 16, order);
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
            let mut s = BatchSampler::new(1, 4, 16, order);
            s.seek(2);
            let third = s
                .sample(c.train_tokens(), &dev)
                .unwrap()
                .inputs
                .to_vec2::<u32>()
                .unwrap();
            assert_eq!(third, draw(1)[2]);
            assert_eq!(s.position(), 3);
            let b = BatchSampler::new(3, 2, 16, order)
                .sample(c.train_tokens(), &dev)
                .unwrap();
            let (x, y) = (
                b.inputs.to_vec2::<u32>().unwrap(),
                b.targets.to_vec2::<u32>().unwrap(),
            );
            assert_eq!(x[0][1..], y[0][..15]);
        }
    }

    #[test]
    fn an_epoch_reads_every_window_once_and_the_next_epoch_another_order() {
        // 900 training bytes at seq_len 16: (900 − 1) / 16 = 56 non-overlapping windows.
        let text: String = (0..1000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let c = Corpus::from_text(&text, &data(16, 0.1), "t").unwrap();
        let tokens = c.train_tokens();
        assert_eq!(tokens.block_count(16), 56);
        // Batches of 8 cover 56 windows in exactly 7 batches.
        let mut s = BatchSampler::new(5, 8, 16, DataOrder::Epochs);
        let epoch = |s: &mut BatchSampler| -> Vec<usize> {
            (0..7).flat_map(|_| s.next_starts(tokens)).collect()
        };
        let first = epoch(&mut s);
        let mut sorted = first.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..56).map(|j| j * 16).collect::<Vec<_>>());
        let second = epoch(&mut s);
        let mut sorted2 = second.clone();
        sorted2.sort_unstable();
        assert_eq!(sorted2, sorted);
        assert_ne!(first, second, "each epoch is a new permutation");
        assert!((text_passes(tokens, 16, 8, 14, DataOrder::Epochs) - 2.0).abs() < 1e-12);
        // Resuming mid-epoch (batch 3) continues the same sequence.
        let mut resumed = BatchSampler::new(5, 8, 16, DataOrder::Epochs);
        resumed.seek(3);
        assert_eq!(resumed.next_starts(tokens), first[24..32].to_vec());
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
            *c.val_tokens().to_vec().unwrap().last().unwrap()
        );
    }
}
