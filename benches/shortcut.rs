//! The step-time overhead of LoopFormer's shortcut-consistency training, as a ratio measured
//! back to back in one process: the same time-conditioned model (the `loopformer` variant of
//! `sweeps/loopformer_elastic.toml`) stepped plainly (the long trajectory only) and with
//! shortcut consistency (plus one short trajectory), alternating, on the same batches and
//! step-keyed draws. Prints each pair's ratio, the median, and the FLOP count's ratio.
//!
//! `cargo bench --bench shortcut` (`BENCH_STEPS`, default 12 pairs; `RAYON_NUM_THREADS`).

use std::path::Path;
use std::time::Instant;

use candle_core::Device;
use loopscale::config::{DataConfig, RunConfig};
use loopscale::sweep::Sweep;
use loopscale::train::objectives;
use loopscale::train::{BatchSampler, Corpus, build_model, indexed_rng};

fn main() {
    let steps: usize = std::env::var("BENCH_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sweep = Sweep::load(&root.join("sweeps/loopformer_elastic.toml")).expect("the sweep loads");
    let cfg: RunConfig = sweep
        .runs
        .iter()
        .find(|r| r.variant.as_deref() == Some("loopformer"))
        .expect("a loopformer variant")
        .config
        .clone();
    let corpus = Corpus::load(
        &DataConfig {
            seq_len: cfg.data.seq_len,
            ..DataConfig::default()
        },
        root,
    )
    .expect("the corpus is installed (make corpus)");
    let device = Device::Cpu;
    let model = build_model(&cfg, corpus.vocab_size(), &device).unwrap();
    let looped = model.as_looped().expect("a looped model");
    let t = &cfg.train;
    let mut sampler = BatchSampler::new(cfg.seed, t.batch_size, cfg.data.seq_len, cfg.data.order);
    let time = |f: &mut dyn FnMut()| {
        let start = Instant::now();
        f();
        start.elapsed().as_secs_f64()
    };
    let mut ratios = Vec::new();
    let (mut plain_total, mut shortcut_total) = (0.0, 0.0);
    for step in 0..steps as u64 + 1 {
        let batch = sampler.sample(corpus.train_tokens(), &device).unwrap();
        let mut plain = || {
            let mut rng = indexed_rng(cfg.seed, step);
            let loss =
                objectives::sampled_depth_loss(looped, &batch.inputs, &batch.targets, &mut rng)
                    .unwrap();
            loss.loss.backward().unwrap();
        };
        let mut shortcut = || {
            let mut rng = indexed_rng(cfg.seed, step);
            let loss = objectives::shortcut_train_loss(
                looped,
                &batch.inputs,
                &batch.targets,
                &mut rng,
                t.shortcut_lambda_ce,
                t.shortcut_lambda_mse,
            )
            .unwrap();
            loss.loss.backward().unwrap();
        };
        // Alternate the order, so neither always runs second (warm caches, a neighbour's load).
        let (p, s) = if step % 2 == 0 {
            let p = time(&mut plain);
            (p, time(&mut shortcut))
        } else {
            let s = time(&mut shortcut);
            (time(&mut plain), s)
        };
        if step == 0 {
            continue; // warm-up
        }
        plain_total += p;
        shortcut_total += s;
        ratios.push(s / p);
        println!(
            "step {step:>3}: plain {p:.3} s, shortcut {s:.3} s, ratio {:.3}",
            s / p
        );
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    let mut plain_cfg = cfg.clone();
    plain_cfg.train.shortcut_consistency = false;
    let flops = cfg.train_flops_per_token() / plain_cfg.train_flops_per_token();
    println!(
        "shortcut / plain step time: median {median:.3}, total {:.3} over {} pairs; FLOP count ratio {flops:.3}",
        shortcut_total / plain_total,
        ratios.len()
    );
}
