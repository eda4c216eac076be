//! Real tokens end to end through the binary: one sweep trains on bytes, on GPT-2 tokens of the
//! same text and on an llm.c shard of those tokens, and its report puts all three on one
//! bits-per-byte axis; a gigabyte shard trains with the worker's peak memory far below it; bad
//! shards are clear errors naming the file (and key, or offset).

use std::path::Path;

use crate::common;
use common::{loopscale, moby_dick_file, text};
use loopscale::train::Tokenizer;
use loopscale::train::shards::write_llmc;

/// `SELECT` through `loopscale sql --csv`, rows after the header.
fn sql(db: &Path, query: &str) -> Vec<Vec<String>> {
    let out = loopscale(&["sql", db.to_str().unwrap(), query, "--csv"]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(String::from).collect())
        .collect()
}

const TRAIN: &str = r#"
[train]
tokens = 2560
batch_size = 8
lr = 3e-3
eval_every = 5
eval_tokens = 512
log_every = 2

[model]
d_model = 32
n_heads = 2
n_layers = 1
"#;

#[test]
fn bytes_gpt2_and_a_shard_train_and_share_one_bits_per_byte_axis() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = moby_dick_file(dir.path(), 60_000);
    // The same text as GPT-2 tokens in an llm.c shard (validation: its last 10%).
    let text_in = std::fs::read_to_string(&corpus).unwrap();
    let gpt2 = Tokenizer::load("gpt2", dir.path()).unwrap();
    let ids = gpt2.encode(&text_in);
    write_llmc(&dir.path().join("shard_000.bin"), &ids).unwrap();
    let db = dir.path().join("tok.sqlite");
    let file = dir.path().join("tok.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[sweep]
name = "tok"
seeds = [0]
db = "{db}"

[data]
corpus = "{corpus}"
seq_len = 32
val_fraction = 0.1

[[variants]]
name = "bytes"
data.tokenizer = "bytes"

[[variants]]
name = "gpt2"
data.tokenizer = "gpt2"

[[variants]]
name = "shards"
data.tokenizer = "gpt2"
data.tokens = "shard_*.bin"
{TRAIN}"#,
            db = db.display(),
            corpus = corpus.display(),
        ),
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let plan = loopscale(&["plan", f]);
    assert!(plan.status.success(), "{}", text(&plan));
    // The shard's training split: 90% of its tokens, counted from its header.
    let shard_train = ids.len() - (ids.len() as f64 * 0.1).floor() as usize;
    let shown = format!("{:.3}k", shard_train as f64 / 1e3).replace(".000", "");
    assert!(
        text(&plan).contains(&format!("{shown} train")),
        "plan counts the shard's tokens ({shard_train}): {}",
        text(&plan)
    );
    let run = loopscale(&["run", f, "--plain"]);
    assert!(run.status.success(), "{}", text(&run));

    let rows = sql(
        &db,
        "SELECT variant, status, final_val_loss, final_val_bpb, bytes_per_token FROM runs ORDER BY variant",
    );
    assert_eq!(rows.len(), 3, "{rows:?}");
    let num = |s: &str| s.parse::<f64>().unwrap();
    for r in &rows {
        assert_eq!(r[1], "done", "{r:?}");
        let (loss, bpb, bpt) = (num(&r[2]), num(&r[3]), num(&r[4]));
        // bits per byte is the loss per token over ln 2 and the measured bytes per token.
        assert!(
            (bpb - loss / std::f64::consts::LN_2 / bpt).abs() < 1e-6 * bpb,
            "{r:?}"
        );
        match r[0].as_str() {
            "bytes" => assert_eq!(bpt, 1.0),
            // English prose under GPT-2's BPE: about four bytes a token.
            _ => assert!((3.0..6.0).contains(&bpt), "{r:?}"),
        }
    }
    // From text and from the shard, GPT-2 runs see the same ids: validation windows differ
    // only by where the split falls, so their bytes per token agree closely.
    let (g, s) = (num(&rows[1][4]), num(&rows[2][4]));
    assert!((g - s).abs() < 0.3, "gpt2 {g} vs shards {s}");

    let out = dir.path().join("report");
    let rep = loopscale(&["report", f, "--out", out.to_str().unwrap()]);
    assert!(rep.status.success(), "{}", text(&rep));
    assert!(out.join("bits_per_byte.png").exists() && out.join("bits_per_byte.svg").exists());
    let svg = std::fs::read_to_string(out.join("bits_per_byte.svg")).unwrap();
    for series in ["bytes", "gpt2", "gpt2 (shards)"] {
        assert!(svg.contains(series), "legend lacks {series}");
    }
}

#[test]
fn a_gigabyte_shard_trains_with_peak_memory_far_below_its_size() {
    let dir = tempfile::tempdir().unwrap();
    // A sparse 1 GiB raw (nanoGPT) shard: 512 Mi uint16 ids, all 0 but a few real blocks of
    // text bytes, costing no disk; and a small validation shard.
    let big = dir.path().join("train.bin");
    let size: u64 = 1 << 30;
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(&big).unwrap();
        f.set_len(size).unwrap();
        let block: Vec<u8> = b"Call me Ishmael. "
            .repeat(256)
            .iter()
            .flat_map(|&b| (b as u16).to_le_bytes())
            .collect();
        for k in 0..16u64 {
            f.seek(SeekFrom::Start(k * (size / 16))).unwrap();
            f.write_all(&block).unwrap();
        }
    }
    let val: Vec<u8> = b"It was the best of times, it was the worst of times. "
        .repeat(40)
        .iter()
        .flat_map(|&b| (b as u16).to_le_bytes())
        .collect();
    std::fs::write(dir.path().join("val.bin"), &val).unwrap();
    let db = dir.path().join("big.sqlite");
    let file = dir.path().join("big.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[sweep]
name = "big"
seeds = [0]
db = "{db}"

[data]
tokens = "train.bin"
val_tokens = "val.bin"
seq_len = 32
{TRAIN}"#,
            db = db.display(),
        ),
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let plan = loopscale(&["plan", f]);
    assert!(plan.status.success(), "{}", text(&plan));
    // 2560 tokens of 512 Mi: the epochs column comes from the shard's size.
    assert!(
        text(&plan).contains("536.871M train"),
        "plan counts the shard's 536 870 912 tokens: {}",
        text(&plan)
    );
    let run = loopscale(&["run", f, "--plain"]);
    assert!(run.status.success(), "{}", text(&run));
    let rows = sql(
        &db,
        "SELECT status, peak_rss_bytes, bytes_per_token, text_passes FROM runs",
    );
    assert_eq!(rows[0][0], "done", "{rows:?}");
    let peak: u64 = rows[0][1].parse().unwrap();
    // The worker maps the file and drops each window's pages once read: its peak resident
    // memory is a byte run's (about 26 MiB here), not the 1 GiB shard's. Measured here: 28.7 MiB;
    // 169 MiB before windows' pages were dropped (large page-cache folios mapped per window).
    assert!(
        peak < 100 << 20,
        "peak RSS {} MiB for a 1024 MiB shard",
        peak >> 20
    );
    assert_eq!(rows[0][2], "1.0");
    // Read in epochs over the shard's 16 777 215 non-overlapping windows of 32 tokens.
    let passes: f64 = rows[0][3].parse().unwrap();
    assert!(
        (passes * 16_777_215.0 / 80.0 - 1.0).abs() < 1e-9,
        "{rows:?}"
    );
}

/// A sweep on the shards `pattern` in `dir` (byte vocabulary unless `extra` says otherwise).
fn shard_sweep(dir: &Path, pattern: &str, extra: &str) -> std::path::PathBuf {
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[sweep]
name = "bad"
seeds = [0]
db = "{db}"

[data]
tokens = "{pattern}"
seq_len = 32
val_fraction = 0.2
{extra}
{TRAIN}"#,
            db = dir.join("bad.sqlite").display(),
        ),
    )
    .unwrap();
    file
}

#[test]
fn bad_shards_are_clear_errors_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good: Vec<u32> = (0..4000).map(|i| (i * 7 % 200) as u32).collect();
    // Odd length: plan refuses, naming the key and the file.
    std::fs::write(d.join("odd.bin"), vec![1u8; 4001]).unwrap();
    let plan = loopscale(&["plan", shard_sweep(d, "odd.bin", "").to_str().unwrap()]);
    assert!(!plan.status.success());
    let msg = text(&plan);
    assert!(
        msg.contains("tokens = \"odd.bin\"")
            && msg.contains("/odd.bin: 4001 bytes is an odd length"),
        "{msg}"
    );
    // Wrong magic on an llm.c header.
    write_llmc(&d.join("magic.bin"), &good).unwrap();
    let mut bytes = std::fs::read(d.join("magic.bin")).unwrap();
    bytes[0] ^= 1;
    std::fs::write(d.join("magic.bin"), &bytes).unwrap();
    let plan = loopscale(&["plan", shard_sweep(d, "magic.bin", "").to_str().unwrap()]);
    let msg = text(&plan);
    assert!(
        !plan.status.success() && msg.contains("magic.bin") && msg.contains("wrong magic"),
        "{msg}"
    );
    // A glob that matches nothing.
    let plan = loopscale(&["plan", shard_sweep(d, "none_*.bin", "").to_str().unwrap()]);
    let msg = text(&plan);
    assert!(
        !plan.status.success() && msg.contains("matches no file"),
        "{msg}"
    );
    // An id at or past the vocabulary: `plan` and `run` refuse the sweep, naming file and
    // byte offset, and record nothing.
    let mut ids = good.clone();
    ids[3500] = 300;
    write_llmc(&d.join("vocab.bin"), &ids).unwrap();
    let file = shard_sweep(d, "vocab.bin", "");
    let run = loopscale(&["run", file.to_str().unwrap(), "--plain"]);
    let msg = text(&run);
    let offset = 1024 + 3500 * 2;
    assert!(
        !run.status.success()
            && msg.contains("tokens = \"vocab.bin\"")
            && msg.contains("vocab.bin: token id 300")
            && msg.contains(&format!("byte offset {offset}"))
            && msg.contains("vocabulary size 256"),
        "{msg}"
    );
    assert!(!d.join("bad.sqlite").exists(), "nothing recorded");
    // The same shard with the vocabulary it was written with trains.
    let plan = loopscale(&[
        "plan",
        shard_sweep(d, "vocab.bin", "vocab_size = 301")
            .to_str()
            .unwrap(),
    ]);
    assert!(plan.status.success(), "{}", text(&plan));
    // A tokenizer that is not one.
    let plan = loopscale(&[
        "plan",
        shard_sweep(d, "vocab.bin", "tokenizer = \"gpt3\"")
            .to_str()
            .unwrap(),
    ]);
    let msg = text(&plan);
    assert!(
        !plan.status.success() && msg.contains("data.tokenizer") && msg.contains("\"gpt2\""),
        "{msg}"
    );
}
