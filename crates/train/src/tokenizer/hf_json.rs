//! A Hugging Face `tokenizer.json` of a byte-level BPE model (GPT-2, RoBERTa, Llama-3-style
//! vocabularies), loaded into tiktoken's BPE engine without the `tokenizers` crate (whose
//! build — onig, esaxx, its own regex stack — would add more than all of loopscale's
//! tokenizing code is worth).
//!
//! What is read: `model.vocab` (tokens in GPT-2's byte-to-unicode alphabet), `model.merges`,
//! the pre-tokenizer's split pattern (`ByteLevel` with `use_regex`: GPT-2's; a `Split` with a
//! `Regex`: that one) and `added_tokens`. tiktoken merges the adjacent pair whose concatenation
//! has the lowest rank; Hugging Face applies the merge listed first. Using ids as ranks makes
//! the two the same when the merges' results have increasing ids, which a BPE trainer produces
//! (each merge appends the next id); a file where they do not is refused rather than encoded
//! differently. Normalizers and `add_prefix_space` are refused for the same reason.

use std::collections::HashMap;

use anyhow::{Context, bail};
use serde_json::Value;
use tiktoken_rs::CoreBPE;

/// GPT-2's pre-tokenizer pattern (what `ByteLevel { use_regex: true }` splits with).
pub const GPT2_PATTERN: &str =
    r"'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// A loaded tokenizer.json.
pub struct Loaded {
    pub bpe: CoreBPE,
    /// The largest id + 1.
    pub vocab: usize,
    /// Added tokens marked special (they stand for no text).
    pub specials: Vec<u32>,
}

/// GPT-2's map from bytes to the printable characters byte-level vocabularies are written in.
pub fn bytes_to_unicode() -> [char; 256] {
    let mut out = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..=255u32 {
        let printable =
            (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        out[b as usize] = if printable {
            char::from_u32(b).unwrap()
        } else {
            n += 1;
            char::from_u32(255 + n).unwrap()
        };
    }
    out
}

fn fill<M: Default + Extend<(K, u32)>, K>(items: impl IntoIterator<Item = (K, u32)>) -> M {
    let mut m = M::default();
    m.extend(items);
    m
}

/// Parses the JSON text of a tokenizer.json.
pub fn load(json: &str) -> anyhow::Result<Loaded> {
    let root: Value = serde_json::from_str(json).context("not valid JSON")?;
    let model = &root["model"];
    if model["type"].as_str() != Some("BPE") {
        bail!(
            "`model.type` is {}; only byte-level BPE tokenizers are supported",
            model["type"]
        );
    }
    if !root["normalizer"].is_null() {
        bail!(
            "it has a normalizer ({}); only byte-level BPE without one is supported",
            root["normalizer"]["type"]
        );
    }
    let pattern = pre_tokenizer_pattern(&root["pre_tokenizer"])?;
    let unicode = bytes_to_unicode();
    let back: HashMap<char, u8> = unicode
        .iter()
        .enumerate()
        .map(|(b, &c)| (c, b as u8))
        .collect();
    let to_bytes = |s: &str| -> anyhow::Result<Vec<u8>> {
        s.chars()
            .map(|c| {
                back.get(&c).copied().with_context(|| {
                    format!("token {s:?} has {c:?}, not in the byte-level alphabet")
                })
            })
            .collect()
    };
    let vocab = model["vocab"]
        .as_object()
        .context("`model.vocab` is not an object of token → id")?;
    let mut encoder = Vec::with_capacity(vocab.len());
    let mut ids: HashMap<&str, u32> = HashMap::new();
    for (token, id) in vocab {
        let id = id
            .as_u64()
            .context("`model.vocab` holds a non-integer id")? as u32;
        ids.insert(token.as_str(), id);
        encoder.push((to_bytes(token)?, id));
    }
    for b in 0..=255u8 {
        if !ids.contains_key(unicode[b as usize].to_string().as_str()) {
            bail!("`model.vocab` lacks byte {b:#04x}: not a byte-level BPE vocabulary");
        }
    }
    // Ids as ranks are right only if merges produce increasing ids.
    let merges = model["merges"]
        .as_array()
        .context("`model.merges` is not a list")?;
    let mut last = None;
    for (k, m) in merges.iter().enumerate() {
        let (a, b) = match m {
            Value::String(s) => s.split_once(' ').context("a merge is not \"a b\"")?,
            Value::Array(p) if p.len() == 2 => (
                p[0].as_str().context("a merge pair is not two strings")?,
                p[1].as_str().context("a merge pair is not two strings")?,
            ),
            _ => bail!("merge {k} is neither \"a b\" nor [a, b]"),
        };
        let joined = format!("{a}{b}");
        let id = *ids.get(joined.as_str()).with_context(|| {
            format!("merge {k} ({a} {b}) makes {joined:?}, not in the vocabulary")
        })?;
        if last.is_some_and(|l| id <= l) {
            bail!(
                "merge {k} ({a} {b}) makes id {id}, not above the previous merge's {}: ids do not \
                 follow merge order, which loopscale's BPE needs (see `crates/train/src/tokenizer/hf_json.rs`)",
                last.unwrap()
            );
        }
        last = Some(id);
    }
    let mut specials = Vec::new();
    let mut special_map = Vec::new();
    let mut top = ids.values().copied().max().unwrap_or(0);
    for t in root["added_tokens"].as_array().into_iter().flatten() {
        let (Some(id), Some(content)) = (t["id"].as_u64(), t["content"].as_str()) else {
            continue;
        };
        top = top.max(id as u32);
        if !ids.contains_key(content) {
            special_map.push((content.to_string(), id as u32));
        }
        if t["special"].as_bool().unwrap_or(false) {
            specials.push(id as u32);
        }
    }
    let bpe = CoreBPE::new(fill(encoder), fill(special_map), &pattern)
        .map_err(|e| anyhow::anyhow!("building the BPE: {e}"))?;
    Ok(Loaded {
        bpe,
        vocab: top as usize + 1,
        specials,
    })
}

/// The split pattern of a byte-level pre-tokenizer.
fn pre_tokenizer_pattern(p: &Value) -> anyhow::Result<String> {
    let steps: Vec<&Value> = match p["type"].as_str() {
        Some("Sequence") => p["pretokenizers"]
            .as_array()
            .into_iter()
            .flatten()
            .collect(),
        Some(_) => vec![p],
        None => bail!("no `pre_tokenizer`; a byte-level BPE needs a ByteLevel one"),
    };
    let mut pattern = None;
    let mut byte_level = false;
    for s in steps {
        match s["type"].as_str() {
            Some("ByteLevel") => {
                byte_level = true;
                if s["add_prefix_space"].as_bool() == Some(true) {
                    bail!("`add_prefix_space = true` is not supported");
                }
                if s["use_regex"].as_bool().unwrap_or(true) {
                    pattern.get_or_insert_with(|| GPT2_PATTERN.to_string());
                }
            }
            Some("Split") => {
                let r = s["pattern"]["Regex"]
                    .as_str()
                    .context("a Split pre-tokenizer without a Regex pattern is not supported")?;
                pattern = Some(r.to_string());
            }
            other => bail!("pre-tokenizer {other:?} is not supported (ByteLevel, Split)"),
        }
    }
    if !byte_level {
        bail!("the pre-tokenizer has no ByteLevel step: not a byte-level BPE");
    }
    pattern.context("the pre-tokenizer splits nothing (ByteLevel with use_regex = false, no Split)")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tokenizer.json with the 256 byte tokens (ids 0–255 in byte order) and `merges`, each
    /// making the next id.
    pub(crate) fn tiny(merges: &[(&str, &str)]) -> String {
        let u = bytes_to_unicode();
        let mut vocab = serde_json::Map::new();
        for (b, c) in u.iter().enumerate() {
            vocab.insert(c.to_string(), (b as u64).into());
        }
        for (i, (a, b)) in merges.iter().enumerate() {
            vocab.insert(format!("{a}{b}"), (256 + i as u64).into());
        }
        serde_json::json!({
            "normalizer": null,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
            "added_tokens": [{"id": 256 + merges.len(), "content": "<|endoftext|>", "special": true}],
            "model": {
                "type": "BPE",
                "vocab": vocab,
                "merges": merges.iter().map(|(a, b)| format!("{a} {b}")).collect::<Vec<_>>(),
            }
        })
        .to_string()
    }

    #[test]
    fn merges_apply_in_order_and_spaces_are_byte_level() {
        let json = tiny(&[
            ("h", "e"),
            ("l", "l"),
            ("he", "ll"),
            ("Ġ", "w"),
            ("hell", "o"),
        ]);
        let t = load(&json).unwrap();
        assert_eq!(t.vocab, 262);
        assert_eq!(t.specials, vec![261]);
        // "hello" → hell+o (260); " world" → Ġw (259), o, r, l, d.
        let ids = t.bpe.encode_ordinary("hello world");
        assert_eq!(
            ids,
            vec![260, 259, b'o' as u32, b'r' as u32, b'l' as u32, b'd' as u32]
        );
        assert_eq!(t.bpe.decode_bytes(&ids).unwrap(), b"hello world");
    }

    #[test]
    fn merges_out_of_id_order_and_other_models_are_refused() {
        let mut v: Value = serde_json::from_str(&tiny(&[("h", "e"), ("l", "l")])).unwrap();
        v["model"]["merges"] = serde_json::json!(["l l", "h e"]);
        let e = load(&v.to_string()).err().unwrap().to_string();
        assert!(e.contains("merge order"), "{e}");
        v["model"]["type"] = "WordPiece".into();
        let e = load(&v.to_string()).err().unwrap().to_string();
        assert!(e.contains("only byte-level BPE"), "{e}");
    }
}
