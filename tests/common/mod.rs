//! Helpers shared by the tests: a slice of the shipped corpus (in memory, or as a file a sweep
//! can name), an observer that records what a run reports (and can ask it to stop), and the
//! largest difference between two tensors.

#![allow(dead_code)] // not every helper is used by the tests of every build

use loopscale::config::DataConfig;
use loopscale::train::{Corpus, EvalMetrics, RunObserver, StepMetrics};

#[derive(Default)]
pub struct Recorder {
    pub steps: Vec<StepMetrics>,
    pub evals: Vec<EvalMetrics>,
    /// Ask the trainer to stop after this many `should_stop` polls.
    pub stop_after: Option<usize>,
    pub polls: usize,
}

impl RunObserver for Recorder {
    fn on_step(&mut self, metrics: &StepMetrics) -> anyhow::Result<()> {
        self.steps.push(metrics.clone());
        Ok(())
    }
    fn on_eval(&mut self, eval: &EvalMetrics) -> anyhow::Result<()> {
        self.evals.push(eval.clone());
        Ok(())
    }
    fn should_stop(&mut self) -> bool {
        self.polls += 1;
        self.stop_after.is_some_and(|n| self.polls > n)
    }
}

/// The first `bytes` bytes of Moby-Dick (cut at a character boundary).
fn moby_dick_text(bytes: usize) -> String {
    let path = loopscale::config::resolve_corpus_path(
        "moby-dick",
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
    );
    let mut text = std::fs::read_to_string(&path).expect("the corpus is installed (make corpus)");
    let mut end = bytes.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}

/// The first `bytes` bytes of Moby-Dick as a corpus.
pub fn moby_dick(bytes: usize, seq_len: usize) -> Corpus {
    let data = DataConfig {
        seq_len,
        ..DataConfig::default()
    };
    Corpus::from_text(&moby_dick_text(bytes), &data, "moby-dick slice").unwrap()
}

/// The first `bytes` bytes of Moby-Dick written to `dir/slice.txt`, for a sweep's `data.corpus`.
pub fn moby_dick_file(dir: &std::path::Path, bytes: usize) -> std::path::PathBuf {
    let path = dir.join("slice.txt");
    std::fs::write(&path, moby_dick_text(bytes)).unwrap();
    path
}

/// The largest absolute difference between two tensors of the same shape, in f64.
pub fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    let f64 = |t: &candle_core::Tensor| t.to_dtype(candle_core::DType::F64).unwrap();
    (f64(a) - f64(b))
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}
