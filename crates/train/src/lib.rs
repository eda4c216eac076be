//! Training one run: corpus and tokenizer, optimizer, schedule, the loop and evaluation, and
//! the starts of runs built on runs (a recast GPT, a MELT model from its looped parent).
//!
//! Training reports what it measures through a [`RunObserver`]; it never touches the store.

pub mod adamw;
mod adamw_kernel;
pub mod batch;
pub mod checkpoint;
mod cost;
pub mod data;
pub mod dataset;
pub mod decoding;
pub mod divergence;
pub mod melt;
mod memory;
pub mod muon;
pub mod objectives;
pub mod optimizer;
pub mod order;
pub mod recast;
pub mod schedule;
pub mod shards;
pub mod tasks;
pub mod tokenizer;
pub mod trainer;

pub use adamw::{AdamW, AdamWConfig};
pub use batch::{Batch, indexed_rng};
pub use checkpoint::{Checkpointing, ParentCheckpoint, TrainerState};
pub use cost::RunCost;
pub use data::{BYTE_VOCAB, BatchSampler, Corpus, text_passes};
pub use dataset::{Data, Dataset};
pub use melt::{MeltTraining, build_melt_model};
pub use memory::{keep_freed_memory, peak_rss_bytes};
pub use objectives::TrainLoss;
pub use optimizer::{Group, Optimizer, group_of};
pub use recast::build_recast_model;
pub use schedule::{cooldown_start, learning_rate, lr_multiplier, warmup_steps};
pub use shards::Tokens;
pub use tasks::TaskSet;
pub use tokenizer::Tokenizer;
pub use trainer::{
    TRAIN_DTYPE, build_model, count_loss_spikes, evaluate, evaluate_at_loops, evaluate_exit,
    evaluate_with_steps, total_steps, train, train_model, train_model_resumable, train_resumable,
};

/// One logged optimizer step.
#[derive(Clone, Debug, PartialEq)]
pub struct StepMetrics {
    pub step: u64,
    /// Training tokens consumed so far (after this step).
    pub tokens: u64,
    /// Training FLOPs spent so far (after this step).
    pub flops: f64,
    /// Mean cross-entropy (nats per token) of this step's batch.
    pub train_loss: f64,
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Seconds since training started.
    pub elapsed_seconds: f64,
    /// Looped models: mean per-token L2 norm of the recurrent state after this step's loops.
    pub state_norm: Option<f64>,
    /// Looped models: spectral norm of the injection's map on the state (diagonal: max Ā;
    /// add: 1; linear: largest singular value of W_h), after this step's update.
    pub injection_norm: Option<f64>,
}

/// One validation measurement.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalMetrics {
    pub step: u64,
    pub tokens: u64,
    pub flops: f64,
    /// Mean cross-entropy on held-out text, nats per token.
    pub val_loss: f64,
    /// The same loss in bits per byte of text.
    pub val_bpb: f64,
    /// Loop count evaluated at (looped models); `None` for the GPT or the training depth.
    pub test_loops: Option<usize>,
    /// The named schedule a conditioned model (LoopFormer) was run along at `test_loops`
    /// (`"uniform"`, `"coarse_fine"`); `None` for unconditioned models and training-depth evals.
    pub schedule: Option<String>,
    /// Tasks with right or wrong answers (p_hop, addition): the fraction of evaluation examples
    /// answered exactly (judged at the answer: a p-hop sequence's last position, an addition's
    /// digits); `None` for text and regression.
    pub accuracy: Option<f64>,
    /// The same tasks: the fraction of scored positions predicted exactly (for p-hop trained on
    /// every defined position, the per-position accuracy over all of them); `None` otherwise.
    pub position_accuracy: Option<f64>,
}

/// One in-context regression error (`icl_errors`): an estimator's mean squared error / d when
/// predicting `y` from `n_examples` pairs, over the fixed evaluation prompts.
#[derive(Clone, Debug, PartialEq)]
pub struct IclError {
    /// `"model"`, or a reference estimator: `"least_squares"`, `"averaging"`, `"knn3"`.
    pub estimator: String,
    /// The looped model's loop count; `None` for a GPT and the reference estimators.
    pub test_loops: Option<usize>,
    pub n_examples: usize,
    pub error: f64,
}

/// Early exit at one confidence threshold (LoopUS; looped models with `exit_head`), measured
/// once training is done.
#[derive(Clone, Debug, PartialEq)]
pub struct ExitEvalMetrics {
    pub step: u64,
    /// A token exits after the first loop whose confidence exceeds this.
    pub threshold: f64,
    /// Loops a token runs at most (the largest `test_loops`).
    pub max_loops: usize,
    /// Mean loops per validation token.
    pub mean_loops: f64,
    /// Mean cross-entropy of the exited predictions, nats per token.
    pub val_loss: f64,
}

/// Decoding measured once training is done: validation text fed a token at a time through
/// the model's KV cache (a GPT once, a looped or MELT model at each `test_loops` count).
#[derive(Clone, Debug, PartialEq)]
pub struct DecodeEvalMetrics {
    pub step: u64,
    /// `None` for a GPT.
    pub loops: Option<usize>,
    /// Tokens decoded (and scored).
    pub tokens: usize,
    /// Bytes of keys and values the cache holds per token of context.
    pub kv_bytes_per_token: f64,
    /// The most the cache held: at the end of the longest decoded sequence.
    pub peak_cache_bytes: usize,
    pub tokens_per_s: f64,
    /// Mean cross-entropy of the decoded predictions, nats per token.
    pub val_loss: f64,
}

/// Receives a run's measurements as they happen; the engine stores them.
pub trait RunObserver {
    fn on_step(&mut self, metrics: &StepMetrics) -> anyhow::Result<()>;
    fn on_eval(&mut self, eval: &EvalMetrics) -> anyhow::Result<()>;
    /// An early-exit evaluation (LoopUS); ignored unless the observer stores them.
    fn on_exit_eval(&mut self, eval: &ExitEvalMetrics) -> anyhow::Result<()> {
        let _ = eval;
        Ok(())
    }

    /// A decoding measurement; ignored unless the observer stores them.
    fn on_decode_eval(&mut self, eval: &DecodeEvalMetrics) -> anyhow::Result<()> {
        let _ = eval;
        Ok(())
    }

    /// A finished regression run's in-context errors, the model's and the baselines'.
    fn on_icl_errors(&mut self, errors: &[IclError]) -> anyhow::Result<()> {
        let _ = errors;
        Ok(())
    }
    /// Polled between steps; `true` stops training early with [`RunEnd::Interrupted`].
    fn should_stop(&mut self) -> bool {
        false
    }
    /// Training starts after step `step` (0 = from scratch, else from a checkpoint): any
    /// measurement recorded earlier for a later step is void and will be measured again.
    fn on_resume(&mut self, step: u64) -> anyhow::Result<()> {
        let _ = step;
        Ok(())
    }
    /// A checkpoint of the state after step `step` is about to be written: make everything
    /// reported up to it durable first, so a resumed run never misses a row.
    fn before_checkpoint(&mut self, step: u64) -> anyhow::Result<()> {
        let _ = step;
        Ok(())
    }
    /// A note for the run's log (a checkpoint written, a damaged one skipped).
    fn note(&mut self, line: &str) {
        eprintln!("{line}");
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum RunEnd {
    Done,
    /// Non-finite loss, or a sustained rise ([`divergence`]); the string says what was seen.
    Diverged(String),
    Interrupted,
}

/// A run's summary once training stops.
#[derive(Clone, Debug, PartialEq)]
pub struct RunOutcome {
    pub end: RunEnd,
    pub steps: u64,
    pub tokens: u64,
    pub flops: f64,
    /// Last validation loss at the training depth (nats per token), if any evaluation ran.
    pub final_val_loss: Option<f64>,
    pub final_val_bpb: Option<f64>,
    /// Bytes of text per validation token under the run's tokenizer (1 for bytes), measured
    /// over the scored validation targets: `final_val_bpb = final_val_loss / ln 2 / this`.
    /// `None` for a task, or where the tokens' text is unknown.
    pub bytes_per_token: Option<f64>,
    /// The training process's peak resident memory (bytes) when the run stopped.
    pub peak_rss_bytes: Option<u64>,
    /// Passes over the training split made by the steps trained (`data::text_passes`: exact
    /// in epochs); `None` for a task, or a trainer that does not say.
    pub text_passes: Option<f64>,
    pub final_train_loss: Option<f64>,
    pub wall_seconds: f64,
    pub tokens_per_second: f64,
    /// Steps whose training loss exceeded [`trainer::SPIKE_FACTOR`] × the mean of the previous
    /// [`trainer::SPIKE_WINDOW`] steps' losses (a stability measure; the run went on).
    pub loss_spikes: u32,
    /// Where this attempt's wall time went (all zero for a trainer that does not say).
    pub time: TimeSplit,
}

/// Seconds of one training attempt by what they were spent on: `loopscale run` sums them over a
/// sweep and says what share of its wall time went outside training steps (issue: the sweep's
/// time outside steps should stay under a tenth).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TimeSplit {
    /// Training steps: sampling a batch, forward, backward, optimizer.
    pub steps: f64,
    /// Periodic validation at the training depth (the forward passes only).
    pub evals: f64,
    /// A finished run's test-time evaluations: every `test_loops` count, early exits, ICL errors.
    pub test_evals: f64,
    /// Decoding through the KV cache after training.
    pub decode_evals: f64,
    /// Writing checkpoints and final weights.
    pub checkpoints: f64,
    /// Handing rows to the observer (the database or a worker's run store): metrics, evaluations,
    /// and making them durable before each checkpoint.
    pub records: f64,
    /// The attempt from its first step to its end, all of the above included.
    pub total: f64,
}

impl TimeSplit {
    /// Part by part, `self − earlier`: the time spent between two readings of a sweep's sums.
    pub fn since(&self, earlier: &TimeSplit) -> TimeSplit {
        TimeSplit {
            steps: self.steps - earlier.steps,
            evals: self.evals - earlier.evals,
            test_evals: self.test_evals - earlier.test_evals,
            decode_evals: self.decode_evals - earlier.decode_evals,
            checkpoints: self.checkpoints - earlier.checkpoints,
            records: self.records - earlier.records,
            total: self.total - earlier.total,
        }
    }

    /// Each part with what it is, in the order `run` and the report print them; they add up to
    /// `total`.
    pub fn parts(&self) -> [(&'static str, f64); 7] {
        [
            ("training steps", self.steps),
            ("periodic evaluations", self.evals),
            ("test-time evaluations", self.test_evals),
            ("decode evaluations", self.decode_evals),
            ("checkpoints", self.checkpoints),
            ("database writes", self.records),
            ("other", self.other()),
        ]
    }

    /// `seconds` as a percentage of `total`; `None` when nothing was timed.
    pub fn percent(&self, seconds: f64) -> Option<f64> {
        (self.total > 0.0).then(|| 100.0 * seconds / self.total)
    }

    /// Seconds accounted for by none of the parts (the loop's own bookkeeping).
    pub fn other(&self) -> f64 {
        (self.total
            - self.steps
            - self.evals
            - self.test_evals
            - self.decode_evals
            - self.checkpoints
            - self.records)
            .max(0.0)
    }
}

/// What `LOOPSCALE_DEVICE` asks for.
enum DeviceRequest {
    /// Unset: a GPU when the build has the `cuda` feature and one can be opened, else the CPU.
    Auto,
    Cpu,
    #[cfg(feature = "cuda")]
    Cuda,
}

/// Reads `LOOPSCALE_DEVICE`, refusing a value this build cannot honour; opens no device.
fn device_request() -> anyhow::Result<DeviceRequest> {
    match std::env::var("LOOPSCALE_DEVICE").ok().as_deref() {
        None | Some("") => Ok(DeviceRequest::Auto),
        Some("cpu") => Ok(DeviceRequest::Cpu),
        #[cfg(feature = "cuda")]
        Some("cuda") => Ok(DeviceRequest::Cuda),
        #[cfg(not(feature = "cuda"))]
        Some("cuda") => anyhow::bail!(
            "LOOPSCALE_DEVICE=cuda, but this loopscale was built without the `cuda` feature: \
             build it with `cargo build --release --features cuda` (docs/gpu.md)"
        ),
        Some(other) => {
            anyhow::bail!("LOOPSCALE_DEVICE={other:?}: expected \"cpu\" or \"cuda\" (or unset)")
        }
    }
}

/// Refuses a `LOOPSCALE_DEVICE` this build or machine cannot honour, before any run starts:
/// `cuda` is checked by opening the GPU; otherwise no device is opened (the workers do, and
/// fall back to the CPU themselves).
pub fn check_device_request() -> anyhow::Result<()> {
    match device_request()? {
        #[cfg(feature = "cuda")]
        DeviceRequest::Cuda => first_gpu().map(|_| ()),
        _ => Ok(()),
    }
}

/// The device runs train on: `LOOPSCALE_DEVICE` (`cpu` or `cuda`) when set; else the first CUDA
/// GPU when built with `--features cuda` and one can be opened; else the CPU.
pub fn default_device() -> anyhow::Result<candle_core::Device> {
    match device_request()? {
        DeviceRequest::Cpu => Ok(candle_core::Device::Cpu),
        #[cfg(feature = "cuda")]
        DeviceRequest::Cuda => first_gpu(),
        DeviceRequest::Auto => {
            #[cfg(feature = "cuda")]
            match first_gpu() {
                Ok(gpu) => return Ok(gpu),
                Err(e) => eprintln!("loopscale: {e:#}; training on the CPU"),
            }
            Ok(candle_core::Device::Cpu)
        }
    }
}

/// CUDA device 0, or why not. cudarc panics, rather than returning an error, when the driver
/// library cannot be loaded (a `cuda` build on a machine without a GPU): that becomes an error.
#[cfg(feature = "cuda")]
fn first_gpu() -> anyhow::Result<candle_core::Device> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let opened = std::panic::catch_unwind(|| candle_core::Device::new_cuda(0));
    std::panic::set_hook(hook);
    match opened {
        Ok(device) => Ok(device?),
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let why = why.split(" - searched").next().unwrap_or_default();
            anyhow::bail!(
                "no CUDA GPU could be opened ({why}); is the NVIDIA driver installed and \
                 libcuda.so on LD_LIBRARY_PATH?"
            )
        }
    }
}
