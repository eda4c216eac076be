//! The training loop end to end on small slices of Moby-Dick: the loss falls, a seed fixes the
//! whole loss sequence, divergence and interruption end a run cleanly.

use candle_core::Device;
use loopscale::config::RunConfig;
use loopscale::config::{DataConfig, Schedule, TrainConfig};
use loopscale::model::{Mlp, ModelConfig};
use loopscale::train::{RunEnd, train};

use crate::common;
use common::{Recorder, moby_dick};

fn tiny_run(tokens: u64, lr: f64, seed: u64) -> RunConfig {
    RunConfig {
        data: DataConfig {
            seq_len: 32,
            ..DataConfig::default()
        },
        train: TrainConfig {
            tokens,
            batch_size: 8,
            lr,
            schedule: Schedule::Cosine,
            eval_every: 0,
            eval_tokens: 1024,
            log_every: 1,
            ..TrainConfig::default()
        },
        model: ModelConfig {
            d_model: 32,
            n_heads: 2,
            n_layers: 2,
            mlp: Mlp::Relu2,
            ..ModelConfig::default()
        },
        seed,
        lineage: None,
    }
}

#[test]
fn loss_falls_below_the_unigram_entropy() {
    let corpus = moby_dick(200_000, 32);
    let mut cfg = tiny_run(300 * 8 * 32, 3e-2, 0);
    cfg.train.eval_every = 100;
    cfg.train.eval_tokens = 4096;
    let mut rec = Recorder::default();
    let outcome = train(&cfg, &corpus, &Device::Cpu, &mut rec).unwrap();
    assert_eq!(outcome.end, RunEnd::Done);
    assert_eq!(outcome.steps, 300);
    let first = rec.steps[0].train_loss;
    let unigram = corpus.unigram_entropy_nats();
    let val = outcome.final_val_loss.unwrap();
    println!("first train loss {first:.3}, final val loss {val:.3}, unigram entropy {unigram:.3}");
    for e in &rec.evals {
        println!("  step {} val {:.3}", e.step, e.val_loss);
    }
    // Initial loss ≈ ln 256 = 5.55; a model that beats the unigram entropy uses context.
    assert!((first - 256f64.ln()).abs() < 0.3, "first loss {first}");
    assert!(
        val < unigram - 0.2,
        "val loss {val} did not fall below unigram entropy {unigram}"
    );
    assert_eq!(
        rec.evals.iter().map(|e| e.step).collect::<Vec<_>>(),
        vec![100, 200, 300]
    );
    assert!((rec.evals[2].val_bpb - val / std::f64::consts::LN_2).abs() < 1e-12);
    let last = rec.steps.last().unwrap();
    assert_eq!(last.tokens, 300 * 8 * 32);
    assert!(
        last.flops > 0.0
            && (last.flops / last.tokens as f64 - outcome.flops / outcome.tokens as f64).abs()
                < 1e-6
    );
}

#[test]
fn same_seed_gives_identical_losses() {
    let corpus = moby_dick(50_000, 32);
    let losses = |seed| {
        let mut rec = Recorder::default();
        train(
            &tiny_run(15 * 8 * 32, 3e-3, seed),
            &corpus,
            &Device::Cpu,
            &mut rec,
        )
        .unwrap();
        rec.steps
            .iter()
            .map(|s| s.train_loss.to_bits())
            .collect::<Vec<_>>()
    };
    let a = losses(5);
    assert_eq!(a.len(), 15);
    assert_eq!(a, losses(5));
    assert_ne!(a, losses(6));
}

#[test]
fn absurd_learning_rate_diverges_without_panicking() {
    let corpus = moby_dick(50_000, 32);
    let mut cfg = tiny_run(100 * 8 * 32, 1e3, 0);
    cfg.train.warmup_fraction = 0.0;
    let outcome = train(&cfg, &corpus, &Device::Cpu, &mut Recorder::default()).unwrap();
    match outcome.end {
        RunEnd::Diverged(reason) => println!("diverged after {} steps: {reason}", outcome.steps),
        other => panic!(
            "expected divergence, got {other:?} after {} steps",
            outcome.steps
        ),
    }
    assert!(outcome.steps < 100);
}

#[test]
fn should_stop_interrupts_between_steps() {
    let corpus = moby_dick(50_000, 32);
    let mut rec = Recorder {
        stop_after: Some(4),
        ..Recorder::default()
    };
    let outcome = train(
        &tiny_run(50 * 8 * 32, 3e-3, 0),
        &corpus,
        &Device::Cpu,
        &mut rec,
    )
    .unwrap();
    assert_eq!(outcome.end, RunEnd::Interrupted);
    assert_eq!(outcome.steps, 4);
    assert_eq!(rec.steps.len(), 4);
}
