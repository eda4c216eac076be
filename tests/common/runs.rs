//! Runs for databases built by hand: a run of the default configuration with the few fields
//! the tests vary (seed, width, the training configuration), its registration record, and
//! the metrics a logged step or evaluation carries, so every test that writes a store builds
//! its rows the same way.

use loopscale::config::{DataConfig, RunConfig, TrainConfig};
use loopscale::model::ModelConfig;
use loopscale::store::NewRun;
use loopscale::train::{EvalMetrics, StepMetrics};

/// A run to register: the default configuration and, unless a setter says otherwise, 1000
/// parameters (900 non-embedding), 5000 tokens and 3e7 FLOPs.
#[derive(Clone, Debug)]
pub struct TestRun {
    config: RunConfig,
    variant: Option<String>,
    params: u64,
    non_embedding_params: u64,
    tokens: u64,
    flops: f64,
}

impl TestRun {
    /// The default configuration with `seed`.
    pub fn seed(seed: u64) -> TestRun {
        TestRun::of(RunConfig {
            data: DataConfig::default(),
            train: TrainConfig::default(),
            model: ModelConfig::default(),
            seed,
            lineage: None,
        })
    }

    /// A run of `config`, with the default counts.
    pub fn of(config: RunConfig) -> TestRun {
        TestRun {
            config,
            variant: None,
            params: 1000,
            non_embedding_params: 900,
            tokens: 5000,
            flops: 3e7,
        }
    }

    /// A run of width `d_model` and `seed` training on 4096 tokens, with 1000 parameters (900
    /// non-embedding) per unit of width and 1e12 FLOPs.
    pub fn width(d_model: usize, seed: u64) -> TestRun {
        TestRun::seed(seed)
            .d_model(d_model)
            .train(|t| t.tokens = 4096)
            .tokens(4096)
            .params(1000 * d_model as u64, 900 * d_model as u64)
            .flops(1e12)
    }

    /// The model's width (`model.d_model`).
    pub fn d_model(mut self, d_model: usize) -> TestRun {
        self.config.model.d_model = d_model;
        self
    }

    /// The training configuration changed by `set` (`train.tokens`, which is part of the run's
    /// key, `train.lr`, `train.batch_size`, ...).
    pub fn train(mut self, set: impl FnOnce(&mut TrainConfig)) -> TestRun {
        set(&mut self.config.train);
        self
    }

    /// The `[[variants]]` name the run is registered under.
    pub fn variant(mut self, variant: Option<&str>) -> TestRun {
        self.variant = variant.map(str::to_string);
        self
    }

    /// The parameter counts recorded for the run: all of them, and those outside the embedding.
    pub fn params(mut self, params: u64, non_embedding_params: u64) -> TestRun {
        self.params = params;
        self.non_embedding_params = non_embedding_params;
        self
    }

    /// The training tokens recorded for the run.
    pub fn tokens(mut self, tokens: u64) -> TestRun {
        self.tokens = tokens;
        self
    }

    /// The training FLOPs recorded for the run.
    pub fn flops(mut self, flops: f64) -> TestRun {
        self.flops = flops;
        self
    }

    /// The run's configuration.
    pub fn config(&self) -> RunConfig {
        self.config.clone()
    }

    /// The run's registration record, keyed by its configuration.
    pub fn new_run(self) -> NewRun {
        NewRun {
            key: self.config.key(),
            variant: self.variant,
            config: self.config,
            params: self.params,
            non_embedding_params: self.non_embedding_params,
            tokens: self.tokens,
            flops: self.flops,
        }
    }
}

/// The default configuration with `seed`.
pub fn config(seed: u64) -> RunConfig {
    TestRun::seed(seed).config()
}

/// The registration record of [`config`]`(seed)` with [`TestRun`]'s default counts.
pub fn new_run(seed: u64) -> NewRun {
    TestRun::seed(seed).new_run()
}

/// A logged training step at `loss`: 100 tokens, 1e6 FLOPs and one second a step.
pub fn step(step: u64, loss: f64) -> StepMetrics {
    StepMetrics {
        step,
        tokens: step * 100,
        flops: step as f64 * 1e6,
        train_loss: loss,
        lr: 1e-3,
        grad_norm: 0.5,
        elapsed_seconds: step as f64,
        state_norm: None,
        injection_norm: None,
    }
}

/// A validation evaluation at the training depth at `loss`, at [`step`]'s tokens and FLOPs.
pub fn eval(step: u64, loss: f64) -> EvalMetrics {
    EvalMetrics {
        step,
        tokens: step * 100,
        flops: step as f64 * 1e6,
        test_loops: None,
        schedule: None,
        accuracy: None,
        position_accuracy: None,
        val_loss: loss,
        val_bpb: loss / std::f64::consts::LN_2,
    }
}
