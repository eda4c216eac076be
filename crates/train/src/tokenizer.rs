//! Tokenizers (`data.tokenizer`) and the tokenized-text cache.
//!
//! - `"bytes"`: one token per byte, vocabulary 256 (no table, nothing cached).
//! - `"gpt2"` (= `"r50k_base"`), `"cl100k_base"`, `"o200k_base"`: OpenAI's BPE vocabularies,
//!   bundled in the binary by tiktoken-rs (no download at run time).
//! - a path ending in `.json`: a Hugging Face `tokenizer.json` of a byte-level BPE model
//!   (GPT-2 style), loaded by [`hf_json`] into the same BPE engine.
//!
//! Tokenizing a text is cached on disk by the text's SHA-256 and the tokenizer's fingerprint, as
//! an llm.c shard (`data/cache/tokens/`, or under `$LOOPSCALE_DATA_DIR`): the first worker of a
//! sweep tokenizes, every other maps the file. Long texts are encoded in parallel chunks with
//! progress on stderr.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use tiktoken_rs::CoreBPE;

use super::shards::{cache_dir, write_llmc};

pub mod hf_json;

/// A loaded tokenizer.
pub enum Tokenizer {
    Bytes,
    Bpe {
        /// What `data.tokenizer` said.
        name: String,
        /// Identifies the vocabulary in cache file names: the name, or the JSON file's hash.
        fingerprint: String,
        bpe: Box<CoreBPE>,
        vocab: usize,
        /// Ids that stand for no text (`<|endoftext|>` and the like).
        specials: Vec<u32>,
    },
}

impl Tokenizer {
    /// The tokenizer `data.tokenizer = name` names; a `.json` path is resolved against
    /// `base_dir` (the sweep file's folder).
    pub fn load(name: &str, base_dir: &Path) -> anyhow::Result<Tokenizer> {
        use tiktoken_rs::{cl100k_base, o200k_base, r50k_base};
        let builtin = |bpe: anyhow::Result<CoreBPE>, vocab: usize, specials: Vec<u32>| {
            Ok(Tokenizer::Bpe {
                name: name.to_string(),
                fingerprint: name.to_string(),
                bpe: Box::new(bpe.with_context(|| format!("building tokenizer {name}"))?),
                vocab,
                specials,
            })
        };
        match name {
            "bytes" => Ok(Tokenizer::Bytes),
            "gpt2" | "r50k_base" => builtin(r50k_base(), 50_257, vec![50_256]),
            "cl100k_base" => builtin(cl100k_base(), 100_277, (100_257..100_277).collect()),
            "o200k_base" => builtin(o200k_base(), 200_019, (199_999..200_019).collect()),
            path if path.ends_with(".json") => {
                let p = loopscale_config::resolve_corpus_path(path, base_dir);
                let text = std::fs::read_to_string(&p)
                    .with_context(|| format!("reading `data.tokenizer` file {}", p.display()))?;
                let loaded = hf_json::load(&text)
                    .with_context(|| format!("`data.tokenizer` file {}", p.display()))?;
                Ok(Tokenizer::Bpe {
                    name: name.to_string(),
                    fingerprint: format!("hf-{}", &hex(&Sha256::digest(text.as_bytes()))[..16]),
                    bpe: Box::new(loaded.bpe),
                    vocab: loaded.vocab,
                    specials: loaded.specials,
                })
            }
            other => bail!(
                "`data.tokenizer` = {other:?} is not a tokenizer: expected \"bytes\", \"gpt2\", \
                 \"cl100k_base\", \"o200k_base\" or the path of a Hugging Face tokenizer.json"
            ),
        }
    }

    pub fn is_bytes(&self) -> bool {
        matches!(self, Tokenizer::Bytes)
    }

    /// The largest id + 1, special tokens included.
    pub fn vocab_size(&self) -> usize {
        match self {
            Tokenizer::Bytes => 256,
            Tokenizer::Bpe { vocab, .. } => *vocab,
        }
    }

    /// The ids of `text` (special-token text is encoded as ordinary text).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        match self {
            Tokenizer::Bytes => text.bytes().map(u32::from).collect(),
            Tokenizer::Bpe { bpe, .. } => bpe.encode_ordinary(text),
        }
    }

    /// The bytes of `ids` (special tokens and unknown ids decode to nothing).
    pub fn decode(&self, ids: &[u32]) -> Vec<u8> {
        match self {
            Tokenizer::Bytes => ids.iter().map(|&t| t as u8).collect(),
            Tokenizer::Bpe { bpe, specials, .. } => ids
                .iter()
                .filter(|t| !specials.contains(t))
                .flat_map(|&t| bpe.decode_bytes(&[t]).unwrap_or_default())
                .collect(),
        }
    }

    /// The number of text bytes each id stands for, indexed by id (0 for special tokens and
    /// ids the vocabulary lacks): what converts a loss per token into one per byte.
    pub fn token_bytes(&self) -> Vec<u32> {
        match self {
            Tokenizer::Bytes => vec![1; 256],
            Tokenizer::Bpe {
                bpe,
                vocab,
                specials,
                ..
            } => (0..*vocab as u32)
                .into_par_iter()
                .map(|t| {
                    if specials.contains(&t) {
                        0
                    } else {
                        bpe.decode_bytes(&[t]).map_or(0, |b| b.len() as u32)
                    }
                })
                .collect(),
        }
    }

    /// The cache file of `text` under this tokenizer: its ids as an llm.c shard, written on
    /// first use (`what` names the text in progress lines).
    pub fn tokenize_cached(&self, text: &str, what: &str) -> anyhow::Result<PathBuf> {
        let Tokenizer::Bpe { fingerprint, .. } = self else {
            bail!("the byte tokenizer needs no cache");
        };
        let digest = hex(&Sha256::digest(text.as_bytes()));
        let path = cache_dir().join(format!("{fingerprint}-{}.bin", &digest[..16]));
        if path.is_file() {
            return Ok(path);
        }
        let ids = self.encode_with_progress(text, what);
        write_llmc(&path, &ids)?;
        Ok(path)
    }

    /// [`Tokenizer::encode`] in parallel chunks cut where every one of the bundled patterns
    /// splits anyway (after a newline followed by a non-space character: no pre-token spans
    /// it), so the result is the whole text's encoding; progress on stderr past 4 MB.
    pub fn encode_with_progress(&self, text: &str, what: &str) -> Vec<u32> {
        let chunks = chunk_at_line_starts(text, 1 << 18);
        let loud = text.len() > 4 << 20;
        let done = std::sync::atomic::AtomicUsize::new(0);
        let start = std::time::Instant::now();
        let parts: Vec<Vec<u32>> = chunks
            .par_iter()
            .map(|c| {
                let ids = self.encode(c);
                let before = done.fetch_add(c.len(), std::sync::atomic::Ordering::Relaxed);
                let after = before + c.len();
                // A line each time another tenth of the text is done.
                if loud && before * 10 / text.len() != after * 10 / text.len() {
                    eprintln!(
                        "tokenizing {what}: {}% of {:.1} MB ({:.0} s)",
                        after * 100 / text.len(),
                        text.len() as f64 / 1e6,
                        start.elapsed().as_secs_f64()
                    );
                }
                ids
            })
            .collect();
        parts.concat()
    }
}

/// Cuts `text` into pieces of about `target` bytes, each ending just after a `\n` that is
/// followed by a non-whitespace character.
pub fn chunk_at_line_starts(text: &str, target: usize) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut cut = text.len();
        let mut at = start + target;
        while at < bytes.len() {
            if bytes[at - 1] == b'\n' && !bytes[at].is_ascii_whitespace() && bytes[at] < 0x80 {
                cut = at;
                break;
            }
            at += 1;
        }
        out.push(&text[start..cut]);
        start = cut;
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_encodes_known_ids_and_round_trips() {
        let t = Tokenizer::load("gpt2", Path::new(".")).unwrap();
        assert_eq!(t.vocab_size(), 50_257);
        // "Hello world" is [15496, 995] under GPT-2's BPE (OpenAI's tiktoken, HF's gpt2).
        assert_eq!(t.encode("Hello world"), vec![15496, 995]);
        let text = "Call me Ishmael. Some years ago—never mind how long precisely";
        assert_eq!(t.decode(&t.encode(text)), text.as_bytes());
        let bytes = t.token_bytes();
        assert_eq!(bytes.len(), 50_257);
        assert_eq!((bytes[15496], bytes[995], bytes[50_256]), (5, 6, 0));
    }

    #[test]
    fn chunked_encoding_equals_the_whole_texts() {
        let t = Tokenizer::load("gpt2", Path::new(".")).unwrap();
        let text = "It was the best of times,\n\n  it was the worst of times.\nA line!\n\n\n\
                    Numbers 12345 and 'quotes' \n\tand tabs.\n"
            .repeat(40);
        let chunks = chunk_at_line_starts(&text, 64);
        assert!(chunks.len() > 10);
        assert_eq!(chunks.concat(), text);
        assert_eq!(
            chunks.iter().flat_map(|c| t.encode(c)).collect::<Vec<_>>(),
            t.encode(&text)
        );
    }

    #[test]
    fn an_unknown_tokenizer_lists_the_known_ones() {
        let e = Tokenizer::load("gpt3", Path::new("."))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("\"gpt3\"") && e.contains("\"gpt2\""), "{e}");
    }
}
