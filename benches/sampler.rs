//! The training sampler's throughput: batches of windows cut from the corpus and made into
//! tensors, as a step asks for them, in tokens per second — for Moby-Dick as bytes in memory,
//! as GPT-2 tokens in a memory-mapped llm.c shard (the tokenized-text cache), and across a
//! sparse 1 GiB raw shard (windows scattered over the whole file: page faults included). A
//! training step of the smallest sweep model consumes a few thousand tokens in tens of
//! milliseconds, so the sampler must deliver millions of tokens per second not to matter.
//! Each source is read in both orders: epochs (the default: a keyed permutation of the
//! non-overlapping windows, computed per window) and replacement (uniform draws), so the cost
//! of the permutation is the ratio between the two lines, measured in the same run.
//!
//! `cargo bench --bench sampler` (`BENCH_BATCHES`, default 2000; batch 16 × seq 128).

use std::path::Path;
use std::time::Instant;

use candle_core::Device;
use loopscale::config::{DataConfig, DataOrder};
use loopscale::train::{BatchSampler, Corpus};

const BATCH: usize = 16;
const SEQ: usize = 128;

fn measure(name: &str, corpus: &Corpus, batches: usize) {
    for order in [DataOrder::Epochs, DataOrder::Replacement] {
        measure_order(name, corpus, batches, order);
    }
}

fn measure_order(name: &str, corpus: &Corpus, batches: usize, order: DataOrder) {
    let device = Device::Cpu;
    let mut sampler = BatchSampler::new(1, BATCH, SEQ, order);
    // One batch first: the mapping's first pages and allocations are not the steady state.
    sampler.sample(corpus.train_tokens(), &device).unwrap();
    let t = Instant::now();
    for _ in 0..batches {
        let b = sampler.sample(corpus.train_tokens(), &device).unwrap();
        std::hint::black_box(b.inputs);
    }
    let s = t.elapsed().as_secs_f64();
    let tokens = (batches * BATCH * SEQ) as f64;
    println!(
        "sampler {name:<28} {:<11} {:>8.2} M tokens/s  {:>8.1} µs/batch ({BATCH}×{SEQ})",
        order.name(),
        tokens / s / 1e6,
        s / batches as f64 * 1e6
    );
}

fn main() {
    let batches: usize = std::env::var("BENCH_BATCHES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = |tokenizer: &str| DataConfig {
        tokenizer: tokenizer.into(),
        seq_len: SEQ,
        ..DataConfig::default()
    };
    let bytes = Corpus::load(&data("bytes"), root).expect("the corpus is installed (make corpus)");
    measure("moby-dick bytes (memory)", &bytes, batches);
    let gpt2 = Corpus::load(&data("gpt2"), root).expect("GPT-2 tokens of the corpus");
    measure("moby-dick gpt2 (mapped)", &gpt2, batches);

    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.bin");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let sparse = Corpus::load(
        &DataConfig {
            tokens: Some(big.display().to_string()),
            ..data("bytes")
        },
        root,
    )
    .unwrap();
    measure("1 GiB sparse shard (mapped)", &sparse, batches);
}
