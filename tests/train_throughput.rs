//! Training throughput of the reference small GPT on this machine's CPU (not part of the
//! suite). Run with
//! `cargo test --release --test train_throughput -- --ignored --nocapture`.

use candle_core::Device;
use loopscale::model::{ModelConfig, train_flops_per_token};
use loopscale::sweep::RunConfig;
use loopscale::train::{
    Corpus, DataConfig, EvalMetrics, RunObserver, StepMetrics, TrainConfig, train,
};

struct Quiet;
impl RunObserver for Quiet {
    fn on_step(&mut self, _: &StepMetrics) -> anyhow::Result<()> {
        Ok(())
    }
    fn on_eval(&mut self, _: &EvalMetrics) -> anyhow::Result<()> {
        Ok(())
    }
}

#[test]
#[ignore]
fn tokens_per_second_d128_l4_seq128_batch16() {
    let data = DataConfig {
        seq_len: 128,
        ..DataConfig::default()
    };
    let corpus = Corpus::load(&data, std::path::Path::new(".")).unwrap();
    let model = ModelConfig {
        d_model: 128,
        n_heads: 4,
        n_layers: 4,
        ..ModelConfig::default()
    };
    let steps = 20;
    let cfg = RunConfig {
        data,
        train: TrainConfig {
            tokens: steps * 16 * 128,
            batch_size: 16,
            eval_every: 0,
            eval_tokens: 128,
            log_every: 0,
            ..TrainConfig::default()
        },
        model,
        seed: 0,
    };
    let outcome = train(&cfg, &corpus, &Device::Cpu, &mut Quiet).unwrap();
    let flops = train_flops_per_token(&cfg.model, 256, 128);
    println!(
        "{} steps, {:.0} tokens/s, {:.2} GFLOP/s ({:.2} MFLOP/token)",
        outcome.steps,
        outcome.tokens_per_second,
        outcome.tokens_per_second * flops / 1e9,
        flops / 1e6
    );
}
