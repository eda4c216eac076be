//! Token shards on disk: reading and checking the two formats, memory-mapping them, and
//! [`Tokens`], a run's training or validation tokens as segments of shards (or of bytes held in
//! memory) that windows are cut from.
//!
//! Formats (both little-endian):
//! - **nanoGPT raw**: the file is nothing but uint16 token ids (`train.bin`, `val.bin`).
//! - **llm.c**: a header of 256 int32 — `[0]` magic 20240520, `[1]` version, `[2]` token count —
//!   then the ids: version 1 = uint16 (llm.c, modded-nanogpt), version 2 = uint32 (loopscale's
//!   choice for vocabularies past 65 535; `docs/data.md`).
//!
//! A file whose first int32 is the magic is read as llm.c, any other as raw. Shards are mapped,
//! never read whole, so a 10 GB dataset costs the pages a run actually touches. Every id is
//! checked against the vocabulary once per shard ([`verify`]: a streamed read, which costs page
//! cache but no process memory, remembered in the cache by path, size, modification time and
//! vocabulary), and again as windows are cut; either error names the file and the byte offset.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use memmap2::{Advice, Mmap, UncheckedAdvice};

/// llm.c's magic number, `header[0]`.
pub const LLMC_MAGIC: i32 = 20240520;
/// llm.c header version for uint16 ids.
pub const LLMC_VERSION_U16: i32 = 1;
/// The header version loopscale writes and reads for uint32 ids.
pub const LLMC_VERSION_U32: i32 = 2;
/// Bytes of an llm.c header: 256 int32.
pub const LLMC_HEADER_BYTES: usize = 256 * 4;

/// Where a segment's tokens live.
enum Source {
    /// Bytes of text held in memory, one token per byte (the byte tokenizer).
    Bytes(Vec<u8>),
    /// A memory-mapped shard: `width`-byte ids from byte `offset` on.
    Mapped {
        path: PathBuf,
        map: Mmap,
        offset: usize,
        width: usize,
    },
}

/// A shard as `plan` and the sweep see it, from its header and size alone.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardInfo {
    pub path: PathBuf,
    /// `"raw uint16"`, `"llm.c uint16"` or `"llm.c uint32"`.
    pub format: &'static str,
    pub tokens: u64,
    /// Byte offset of the first token.
    pub offset: usize,
    /// Bytes per token id.
    pub width: usize,
}

/// Reads a shard's header and checks its size against it: a clear error for an llm.c header
/// of an unknown version or whose count disagrees with the file's size, and for a raw file of
/// an odd number of bytes.
pub fn inspect(path: &Path) -> anyhow::Result<ShardInfo> {
    use std::io::Read;
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening shard {}", path.display()))?;
    let size = file
        .metadata()
        .with_context(|| format!("reading shard {}", path.display()))?
        .len();
    let mut head = [0u8; 12];
    let n = file
        .read(&mut head)
        .with_context(|| format!("reading shard {}", path.display()))?;
    let word = |i: usize| i32::from_le_bytes(head[4 * i..4 * i + 4].try_into().unwrap());
    if n == 12 && word(0) == LLMC_MAGIC {
        let (version, count) = (word(1), word(2));
        let (width, format) = match version {
            LLMC_VERSION_U16 => (2, "llm.c uint16"),
            LLMC_VERSION_U32 => (4, "llm.c uint32"),
            v => bail!(
                "shard {}: llm.c header version {v} is not known; expected {LLMC_VERSION_U16} \
                 (uint16 ids) or {LLMC_VERSION_U32} (uint32 ids)",
                path.display()
            ),
        };
        if count < 0 {
            bail!(
                "shard {}: llm.c header token count {count} is negative",
                path.display()
            );
        }
        let expected = LLMC_HEADER_BYTES as u64 + count as u64 * width as u64;
        if size != expected {
            bail!(
                "shard {}: its llm.c header says {count} tokens of {width} bytes \
                 ({expected} bytes with the header), but the file holds {size} bytes \
                 (truncated, or not an llm.c shard)",
                path.display()
            );
        }
        return Ok(ShardInfo {
            path: path.to_path_buf(),
            format,
            tokens: count as u64,
            offset: LLMC_HEADER_BYTES,
            width,
        });
    }
    // An llm.c header in all but its magic (a version and a count that match the file's size
    // exactly) is a damaged or foreign shard, not raw ids that happen to look like one.
    if n == 12 {
        let (version, count) = (word(1), word(2));
        let width = match version {
            LLMC_VERSION_U16 => Some(2u64),
            LLMC_VERSION_U32 => Some(4),
            _ => None,
        };
        if let Some(width) = width.filter(|_| count > 0)
            && size == LLMC_HEADER_BYTES as u64 + count as u64 * width
        {
            bail!(
                "shard {}: wrong magic {}: the file has an llm.c header (version {version}, \
                 {count} tokens, matching its size) but llm.c's magic is {LLMC_MAGIC}",
                path.display(),
                word(0)
            );
        }
    }
    if size % 2 != 0 {
        bail!(
            "shard {}: {size} bytes is an odd length; a raw (nanoGPT) shard is uint16 token ids, \
             2 bytes each, and the file does not start with llm.c's magic {LLMC_MAGIC} \
             (it starts with {})",
            path.display(),
            if n >= 4 {
                format!("{}", i32::from_le_bytes(head[..4].try_into().unwrap()))
            } else {
                "fewer than 4 bytes".into()
            }
        );
    }
    Ok(ShardInfo {
        path: path.to_path_buf(),
        format: "raw uint16",
        tokens: size / 2,
        offset: 0,
        width: 2,
    })
}

/// The files a `data.tokens` value names, sorted: a path, or a glob (`*`, `?`, `[...]`)
/// resolved against `base_dir`. An error when nothing matches, naming the key.
pub fn expand(pattern: &str, key: &str, base_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let full = if Path::new(pattern).is_absolute() {
        PathBuf::from(pattern)
    } else {
        base_dir.join(pattern)
    };
    let text = full.to_string_lossy().into_owned();
    let mut files: Vec<PathBuf> = glob::glob(&text)
        .with_context(|| format!("`data.{key}` = {pattern:?} is not a valid glob"))?
        .filter_map(Result::ok)
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        bail!(
            "`data.{key}` = {pattern:?} matches no file ({text}); a relative path is resolved \
             against the sweep file's folder"
        );
    }
    Ok(files)
}

/// Where derived data is cached: `$LOOPSCALE_DATA_DIR/cache/tokens`, else the checkout's
/// `data/cache/tokens` (git-ignored).
pub fn cache_dir() -> PathBuf {
    loopscale_config::data_dir().join("cache").join("tokens")
}

/// Checks every id of shard `info` is below `vocab`, reading the file in blocks (not mapped:
/// page cache, no resident memory); an error names the file, the id and its byte offset. A
/// shard found sound is remembered (a marker under [`cache_dir`] keyed by its path, size,
/// modification time and `vocab`), so each shard is read once, not at every worker's start.
pub fn verify(info: &ShardInfo, vocab: usize) -> anyhow::Result<()> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let path = &info.path;
    let meta =
        std::fs::metadata(path).with_context(|| format!("reading shard {}", path.display()))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let full = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
    let id = Sha256::digest(format!("{}|{}|{mtime}|{vocab}", full.display(), meta.len()));
    let marker = cache_dir().join("verified").join(
        id[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    );
    if marker.exists() {
        return Ok(());
    }
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening shard {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64; // bytes of ids read so far
    let total = info.tokens * info.width as u64;
    let mut skip = info.offset;
    while pos < total {
        if skip > 0 {
            let n = file
                .read(&mut buf[..skip])
                .with_context(|| format!("reading shard {}", path.display()))?;
            skip -= n;
            continue;
        }
        let want = ((total - pos) as usize).min(buf.len());
        file.read_exact(&mut buf[..want])
            .with_context(|| format!("reading shard {}", path.display()))?;
        let bad = if all_below(&buf[..want], info.width, vocab) {
            None
        } else if info.width == 2 {
            buf[..want]
                .chunks_exact(2)
                .position(|c| u16::from_le_bytes([c[0], c[1]]) as usize >= vocab)
        } else {
            buf[..want]
                .chunks_exact(4)
                .position(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize >= vocab)
        };
        if let Some(k) = bad {
            let at = k * info.width;
            let id = if info.width == 2 {
                u16::from_le_bytes([buf[at], buf[at + 1]]) as u32
            } else {
                u32::from_le_bytes(buf[at..at + 4].try_into().unwrap())
            };
            let token = pos / info.width as u64 + k as u64;
            bail!(
                "{}: token id {id} at byte offset {} (token {token}) is not below the \
                 vocabulary size {vocab}; set `data.vocab_size` (or `data.tokenizer`) to the \
                 vocabulary the shards were written with",
                path.display(),
                info.offset as u64 + pos + at as u64,
            );
        }
        pos += want as u64;
    }
    if let Some(dir) = marker.parent() {
        // A marker that cannot be written only means the next start reads the shard again.
        let _ = std::fs::create_dir_all(dir)
            .and_then(|_| std::fs::write(&marker, path.display().to_string()));
    }
    Ok(())
}

/// A fast sufficient test that every `width`-byte id of `block` is below `vocab`: the bitwise
/// OR of all ids bounds each of them, and ORing 8-byte words is a plain loop the compiler keeps
/// fast at any optimisation level (the exact per-id scan runs only when this fails).
fn all_below(block: &[u8], width: usize, vocab: usize) -> bool {
    // SAFETY: any bytes are a valid u64; `align_to` hands back the unaligned ends separately.
    let (head, words, tail) = unsafe { block.align_to::<u64>() };
    if !head.is_empty() || !tail.is_empty() {
        return false;
    }
    let mut acc = 0u64;
    for w in words {
        acc |= *w;
    }
    let lanes = if width == 2 {
        (acc | acc >> 16 | acc >> 32 | acc >> 48) & 0xffff
    } else {
        (acc | acc >> 32) & 0xffff_ffff
    };
    (lanes as usize) < vocab
}

/// A segment of a mapped shard as another trainer reads it: ids `start .. start + len` of
/// `path`, `width` bytes each, after `offset` header bytes.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MappedSegment {
    pub path: PathBuf,
    pub offset: usize,
    pub width: usize,
    pub start: usize,
    pub len: usize,
}

/// A contiguous run of tokens of one source.
#[derive(Clone)]
struct Segment {
    source: Arc<Source>,
    start: usize,
    len: usize,
}

/// A split's tokens: segments of shards or of in-memory bytes, each a separate document stream
/// (no window crosses from one segment into the next). Ids are checked against `vocab` as they
/// are read.
#[derive(Clone)]
pub struct Tokens {
    segments: Vec<Segment>,
    vocab: usize,
}

impl Tokens {
    /// Bytes held in memory (the byte tokenizer's tokens).
    pub fn from_bytes(bytes: Vec<u8>) -> Tokens {
        let len = bytes.len();
        Tokens {
            segments: vec![Segment {
                source: Arc::new(Source::Bytes(bytes)),
                start: 0,
                len,
            }],
            vocab: 256,
        }
    }

    /// The shards `paths`, memory-mapped, with ids checked against `vocab`.
    pub fn map(paths: &[PathBuf], vocab: usize) -> anyhow::Result<Tokens> {
        let mut segments = Vec::with_capacity(paths.len());
        for path in paths {
            let info = inspect(path)?;
            verify(&info, vocab)?;
            let file = std::fs::File::open(path)
                .with_context(|| format!("opening shard {}", path.display()))?;
            // SAFETY: the shard is only read; a file truncated under a running sweep is the
            // one case this cannot defend against (SIGBUS), as with any mapped reader.
            let map = unsafe { Mmap::map(&file) }
                .with_context(|| format!("memory-mapping shard {}", path.display()))?;
            // Windows are drawn at random: read-ahead would only fill memory with pages no
            // window asks for.
            let _ = map.advise(Advice::Random);
            segments.push(Segment {
                source: Arc::new(Source::Mapped {
                    path: path.clone(),
                    map,
                    offset: info.offset,
                    width: info.width,
                }),
                start: 0,
                len: info.tokens as usize,
            });
        }
        Ok(Tokens { segments, vocab })
    }

    /// The segments of mapped shards, for a trainer in another process (`None` when any
    /// segment is bytes held in memory): file, header bytes, id width, first token and count.
    pub fn mapped_segments(&self) -> Option<Vec<MappedSegment>> {
        self.segments
            .iter()
            .map(|s| match &*s.source {
                Source::Bytes(_) => None,
                Source::Mapped {
                    path,
                    offset,
                    width,
                    ..
                } => Some(MappedSegment {
                    path: path.clone(),
                    offset: *offset,
                    width: *width,
                    start: s.start,
                    len: s.len,
                }),
            })
            .collect()
    }

    /// Total tokens.
    pub fn len(&self) -> usize {
        self.segments.iter().map(|s| s.len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The vocabulary ids are checked against.
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// Splits off the last `n` tokens (across segment ends): `(first, last)`.
    pub fn split_last(&self, n: usize) -> (Tokens, Tokens) {
        let mut first = Vec::new();
        let mut last = Vec::new();
        let keep = self.len().saturating_sub(n);
        let mut seen = 0;
        for s in &self.segments {
            let take = keep.saturating_sub(seen).min(s.len);
            if take > 0 {
                first.push(Segment {
                    len: take,
                    ..s.clone()
                });
            }
            if take < s.len {
                last.push(Segment {
                    start: s.start + take,
                    len: s.len - take,
                    ..s.clone()
                });
            }
            seen += s.len;
        }
        let vocab = self.vocab;
        (
            Tokens {
                segments: first,
                vocab,
            },
            Tokens {
                segments: last,
                vocab,
            },
        )
    }

    /// How many windows of `seq_len + 1` tokens (inputs and shifted targets) start in this
    /// split: `len − seq_len` per segment long enough. Window `i` of [`Tokens::window`] is one
    /// of them, counted through the segments in order.
    pub fn window_count(&self, seq_len: usize) -> usize {
        self.segments
            .iter()
            .map(|s| s.len.saturating_sub(seq_len))
            .sum()
    }

    /// How many non-overlapping windows the split holds: window `j` of a segment starts at
    /// token `j · seq_len` (its last target is the next window's first input), as many as fit
    /// whole, `(len − 1) / seq_len` per segment; none crosses a segment's end.
    pub fn block_count(&self, seq_len: usize) -> usize {
        self.segments
            .iter()
            .map(|s| s.len.saturating_sub(1) / seq_len)
            .sum()
    }

    /// Non-overlapping window `block` (of [`Tokens::block_count`]) as an index of
    /// [`Tokens::window`].
    pub fn block_window(&self, block: usize, seq_len: usize) -> usize {
        let (mut b, mut offset) = (block, 0);
        for s in &self.segments {
            let here = s.len.saturating_sub(1) / seq_len;
            if b < here {
                return offset + b * seq_len;
            }
            b -= here;
            offset += s.len.saturating_sub(seq_len);
        }
        panic!(
            "window {block} is past the {} windows of these tokens",
            self.block_count(seq_len)
        )
    }

    /// Appends window `index` (`seq_len + 1` ids) to `out`; an id at or past the vocabulary is
    /// an error naming the shard and the id's offset in it.
    pub fn window(&self, index: usize, seq_len: usize, out: &mut Vec<u32>) -> anyhow::Result<()> {
        let mut i = index;
        for s in &self.segments {
            let here = s.len.saturating_sub(seq_len);
            if i < here {
                return self.read(s, s.start + i, seq_len + 1, out);
            }
            i -= here;
        }
        bail!(
            "window {index} is past the {} windows of these tokens",
            self.window_count(seq_len)
        )
    }

    /// Every token, in order (for small splits: statistics and tests).
    pub fn to_vec(&self) -> anyhow::Result<Vec<u32>> {
        let mut out = Vec::with_capacity(self.len());
        for s in &self.segments {
            self.read(s, s.start, s.len, &mut out)?;
        }
        Ok(out)
    }

    /// Counts of each id over at most the first `limit` tokens (for the unigram entropy).
    pub fn counts(&self, limit: usize) -> anyhow::Result<Vec<u64>> {
        let mut counts = vec![0u64; self.vocab];
        let mut left = limit;
        let mut buf = Vec::new();
        for s in &self.segments {
            let mut at = s.start;
            let end = s.start + s.len;
            while at < end && left > 0 {
                let n = (end - at).min(1 << 20).min(left);
                buf.clear();
                self.read(s, at, n, &mut buf)?;
                for &t in &buf {
                    counts[t as usize] += 1;
                }
                at += n;
                left -= n;
            }
        }
        Ok(counts)
    }

    fn read(&self, s: &Segment, at: usize, n: usize, out: &mut Vec<u32>) -> anyhow::Result<()> {
        let from = out.len();
        match &*s.source {
            Source::Bytes(b) => out.extend(b[at..at + n].iter().map(|&x| x as u32)),
            Source::Mapped {
                map, offset, width, ..
            } => {
                let bytes = &map[offset + at * width..offset + (at + n) * width];
                if *width == 2 {
                    out.extend(
                        bytes
                            .chunks_exact(2)
                            .map(|c| u16::from_le_bytes([c[0], c[1]]) as u32),
                    );
                } else {
                    out.extend(
                        bytes
                            .chunks_exact(4)
                            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                    );
                }
                // The ids are copied out: drop their pages from this process's resident set (they
                // stay in the page cache). Without this a run's resident memory grows with every
                // page it has drawn from (measured: about 1.8 MB a window on this machine's ext4,
                // whose page cache maps large folios) until it nears the dataset's size.
                // SAFETY: nothing borrows these pages now; a read-only file mapping that drops
                // them reads the same bytes back from the file when next touched.
                let _ = unsafe {
                    map.unchecked_advise_range(
                        UncheckedAdvice::DontNeed,
                        offset + at * width,
                        n * width,
                    )
                };
            }
        }
        if let Some(k) = out[from..].iter().position(|&t| t as usize >= self.vocab) {
            let id = out[from + k];
            let (name, offset) = match &*s.source {
                Source::Bytes(_) => ("the text in memory".to_string(), at + k),
                Source::Mapped {
                    path,
                    offset,
                    width,
                    ..
                } => (path.display().to_string(), offset + (at + k) * width),
            };
            bail!(
                "{name}: token id {id} at byte offset {offset} (token {}) is not below the \
                 vocabulary size {}; set `data.vocab_size` (or `data.tokenizer`) to the \
                 vocabulary the shards were written with",
                at + k,
                self.vocab
            );
        }
        Ok(())
    }
}

/// Writes `ids` as an llm.c shard at `path` (uint16 when every id fits, else uint32 under
/// version 2), through a temporary file renamed into place, so a reader never sees half a file.
pub fn write_llmc(path: &Path, ids: &[u32]) -> anyhow::Result<()> {
    let wide = ids.iter().any(|&t| t > u16::MAX as u32);
    let mut bytes = Vec::with_capacity(LLMC_HEADER_BYTES + ids.len() * if wide { 4 } else { 2 });
    let mut header = [0i32; 256];
    header[0] = LLMC_MAGIC;
    header[1] = if wide {
        LLMC_VERSION_U32
    } else {
        LLMC_VERSION_U16
    };
    header[2] = i32::try_from(ids.len()).context("an llm.c shard holds under 2^31 tokens")?;
    for h in header {
        bytes.extend(h.to_le_bytes());
    }
    for &t in ids {
        if wide {
            bytes.extend(t.to_le_bytes());
        } else {
            bytes.extend((t as u16).to_le_bytes());
        }
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn raw_and_llmc_shards_read_back_the_same_ids() {
        let d = dir();
        let ids: Vec<u32> = (0..1000).map(|i| (i * 37 % 500) as u32).collect();
        let raw = d.path().join("train.bin");
        std::fs::write(
            &raw,
            ids.iter()
                .flat_map(|&t| (t as u16).to_le_bytes())
                .collect::<Vec<u8>>(),
        )
        .unwrap();
        let llmc = d.path().join("a.bin");
        write_llmc(&llmc, &ids).unwrap();
        assert_eq!(inspect(&raw).unwrap().format, "raw uint16");
        assert_eq!(inspect(&llmc).unwrap().format, "llm.c uint16");
        for p in [&raw, &llmc] {
            let t = Tokens::map(std::slice::from_ref(p), 500).unwrap();
            assert_eq!(t.len(), 1000);
            assert_eq!(t.to_vec().unwrap(), ids);
        }
        // Ids past 65 535 go to version 2, uint32.
        let wide: Vec<u32> = vec![70_000, 1, 199_999];
        let w = d.path().join("w.bin");
        write_llmc(&w, &wide).unwrap();
        let info = inspect(&w).unwrap();
        assert_eq!(
            (info.format, info.width, info.tokens),
            ("llm.c uint32", 4, 3)
        );
        let t = Tokens::map(&[w], 200_000).unwrap();
        assert_eq!(t.to_vec().unwrap(), wide);
    }

    #[test]
    fn non_overlapping_windows_tile_each_shard_and_an_epoch_reads_each_once() {
        let d = dir();
        let a = d.path().join("a.bin");
        let b = d.path().join("b.bin");
        write_llmc(&a, &(0..10).collect::<Vec<_>>()).unwrap();
        write_llmc(&b, &(100..106).collect::<Vec<_>>()).unwrap();
        let t = Tokens::map(&[a, b], 200).unwrap();
        assert!(t.mapped_segments().is_some(), "memory-mapped, not copied");
        // seq_len 4: a's 10 tokens hold windows at 0 and 4 ((10 − 1) / 4 = 2), b's 6 one at 0.
        assert_eq!(t.block_count(4), 3);
        let windows: Vec<Vec<u32>> = (0..3)
            .map(|j| {
                let mut w = Vec::new();
                t.window(t.block_window(j, 4), 4, &mut w).unwrap();
                w
            })
            .collect();
        assert_eq!(
            windows,
            vec![
                vec![0, 1, 2, 3, 4],
                vec![4, 5, 6, 7, 8],
                vec![100, 101, 102, 103, 104]
            ]
        );
        // Two epochs of one window a batch: each window once per epoch.
        let mut sampler =
            super::super::BatchSampler::new(9, 1, 4, loopscale_config::DataOrder::Epochs);
        for _ in 0..2 {
            let mut seen: Vec<usize> = (0..3).flat_map(|_| sampler.next_starts(&t)).collect();
            seen.sort_unstable();
            assert_eq!(seen, vec![0, 4, 6]);
        }
    }

    #[test]
    fn windows_never_cross_a_shard_and_split_last_keeps_order() {
        let d = dir();
        let a = d.path().join("a.bin");
        let b = d.path().join("b.bin");
        write_llmc(&a, &(0..10).collect::<Vec<_>>()).unwrap();
        write_llmc(&b, &(100..106).collect::<Vec<_>>()).unwrap();
        let t = Tokens::map(&[a, b], 200).unwrap();
        // seq_len 4: windows of 5 tokens; 10 − 4 = 6 in a, 6 − 4 = 2 in b.
        assert_eq!(t.window_count(4), 8);
        let mut w = Vec::new();
        t.window(5, 4, &mut w).unwrap();
        assert_eq!(w, vec![5, 6, 7, 8, 9]);
        w.clear();
        t.window(6, 4, &mut w).unwrap();
        assert_eq!(w, vec![100, 101, 102, 103, 104]);
        assert!(t.window(8, 4, &mut w).is_err());
        let (first, last) = t.split_last(8);
        assert_eq!(first.to_vec().unwrap(), (0..8).collect::<Vec<_>>());
        assert_eq!(
            last.to_vec().unwrap(),
            vec![8, 9, 100, 101, 102, 103, 104, 105]
        );
    }

    #[test]
    fn bad_shards_are_clear_errors() {
        let d = dir();
        // Odd length: not uint16.
        let odd = d.path().join("odd.bin");
        std::fs::write(&odd, [1u8, 2, 3, 4, 5]).unwrap();
        let e = inspect(&odd).unwrap_err().to_string();
        assert!(e.contains("odd.bin") && e.contains("odd length"), "{e}");
        // Wrong magic on an otherwise valid llm.c header.
        let magic = d.path().join("magic.bin");
        write_llmc(&magic, &[1, 2, 3]).unwrap();
        let mut bytes = std::fs::read(&magic).unwrap();
        bytes[..4].copy_from_slice(&20240521i32.to_le_bytes());
        std::fs::write(&magic, &bytes).unwrap();
        let e = inspect(&magic).unwrap_err().to_string();
        assert!(
            e.contains("magic.bin") && e.contains("wrong magic 20240521"),
            "{e}"
        );
        // Unknown llm.c version.
        let bad = d.path().join("v9.bin");
        let mut bytes = vec![0u8; LLMC_HEADER_BYTES + 4];
        bytes[..4].copy_from_slice(&LLMC_MAGIC.to_le_bytes());
        bytes[4..8].copy_from_slice(&9i32.to_le_bytes());
        bytes[8..12].copy_from_slice(&2i32.to_le_bytes());
        std::fs::write(&bad, &bytes).unwrap();
        let e = inspect(&bad).unwrap_err().to_string();
        assert!(e.contains("v9.bin") && e.contains("version 9"), "{e}");
        // A count the file does not hold (truncated).
        let short = d.path().join("short.bin");
        write_llmc(&short, &[1, 2, 3, 4]).unwrap();
        let mut bytes = std::fs::read(&short).unwrap();
        bytes.truncate(bytes.len() - 2);
        std::fs::write(&short, &bytes).unwrap();
        let e = inspect(&short).unwrap_err().to_string();
        assert!(
            e.contains("short.bin") && e.contains("says 4 tokens"),
            "{e}"
        );
        // An id past the vocabulary: file and byte offset named.
        let big = d.path().join("big.bin");
        write_llmc(&big, &[1, 2, 3, 300, 4, 5]).unwrap();
        let e = Tokens::map(std::slice::from_ref(&big), 256)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("big.bin") && e.contains("token id 300") && e.contains("byte offset 1030"),
            "{e}"
        );
        // The check as windows are cut (a shard changed after it was verified) says the same.
        let t = Tokens::map(&[big], 301).unwrap();
        let t = Tokens { vocab: 256, ..t };
        let e = t.to_vec().unwrap_err().to_string();
        assert!(
            e.contains("big.bin") && e.contains("token id 300") && e.contains("byte offset 1030"),
            "{e}"
        );
    }

    #[test]
    fn a_glob_that_matches_nothing_names_the_key() {
        let d = dir();
        let e = expand("shards/*.bin", "tokens", d.path())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("data.tokens") && e.contains("matches no file"),
            "{e}"
        );
        for n in ["b_001.bin", "a_000.bin"] {
            std::fs::write(d.path().join(n), [0u8, 0]).unwrap();
        }
        let files = expand("*.bin", "tokens", d.path()).unwrap();
        assert_eq!(files.len(), 2);
        assert!(files[0].ends_with("a_000.bin"));
    }
}
