//! Helpers shared by the tests: a slice of the shipped corpus (in memory, or as a file a sweep
//! can name), an observer that records what a run reports (and can ask it to stop), and the
//! largest difference between two tensors; runs and metrics for databases built by hand
//! ([`runs`]).

#![allow(dead_code)] // not every helper is used by the tests of every build

pub mod runs;

use loopscale::config::DataConfig;
use loopscale::train::{Corpus, EvalMetrics, ExitEvalMetrics, IclError, RunObserver, StepMetrics};

#[derive(Default)]
pub struct Recorder {
    pub steps: Vec<StepMetrics>,
    pub evals: Vec<EvalMetrics>,
    pub exits: Vec<ExitEvalMetrics>,
    pub icl_errors: Vec<IclError>,
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
    fn on_exit_eval(&mut self, eval: &ExitEvalMetrics) -> anyhow::Result<()> {
        self.exits.push(eval.clone());
        Ok(())
    }

    fn on_icl_errors(&mut self, errors: &[IclError]) -> anyhow::Result<()> {
        self.icl_errors.extend_from_slice(errors);
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

/// Runs the loopscale binary with `args` on one compute thread, to the end.
pub fn loopscale(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_loopscale"))
        .args(args)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .expect("run loopscale")
}

/// What a finished command printed, standard output then standard error.
pub fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
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
    max_abs(&(f64(a) - f64(b)).unwrap())
}

/// The largest magnitude in a tensor, in f64.
pub fn max_abs(t: &candle_core::Tensor) -> f64 {
    t.to_dtype(candle_core::DType::F64)
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

/// One entry checked by [`central_differences`]: its parameter's role, the larger of the two
/// derivative magnitudes, and their difference relative to it.
pub struct GradEntry {
    pub role: loopscale::model::ParamRole,
    pub scale: f64,
    pub rel: f64,
}

const GRAD_STEP: f64 = 1e-5;
const GRAD_REL_TOL: f64 = 1e-4;
const GRAD_ABS_TOL: f64 = 1e-8;

fn entry(var: &candle_core::Var, i: usize) -> f64 {
    var.flatten_all().unwrap().to_vec1::<f64>().unwrap()[i]
}

fn set_entry(var: &candle_core::Var, i: usize, value: f64) {
    let mut values = var.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    values[i] = value;
    var.set(
        &candle_core::Tensor::from_vec(values, var.shape(), &candle_core::Device::Cpu).unwrap(),
    )
    .unwrap();
}

/// Autograd of the f64 scalar `f` against central differences (step 1e-5) at `samples(p)`
/// random entries of each parameter; panics, naming `name` and the entry, where the two differ
/// by more than 1e-4 of the larger plus 1e-8. Returns every entry checked.
pub fn central_differences(
    name: &str,
    params: &[loopscale::model::Param],
    f: &dyn Fn() -> candle_core::Tensor,
    samples: &dyn Fn(&loopscale::model::Param) -> usize,
    seed: u64,
) -> Vec<GradEntry> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let grads = f().backward().unwrap();
    let mut checked = Vec::new();
    for p in params {
        let grad = grads
            .get(&p.var)
            .map(|g| g.flatten_all().unwrap().to_vec1::<f64>().unwrap());
        for _ in 0..samples(p) {
            let i = rng.random_range(0..p.var.elem_count());
            let original = entry(&p.var, i);
            set_entry(&p.var, i, original + GRAD_STEP);
            let up = f().to_scalar::<f64>().unwrap();
            set_entry(&p.var, i, original - GRAD_STEP);
            let down = f().to_scalar::<f64>().unwrap();
            set_entry(&p.var, i, original);
            let numerical = (up - down) / (2.0 * GRAD_STEP);
            let analytic = grad.as_ref().map_or(0.0, |g| g[i]);
            let diff = (analytic - numerical).abs();
            let scale = analytic.abs().max(numerical.abs());
            assert!(
                diff <= GRAD_REL_TOL * scale + GRAD_ABS_TOL,
                "{name}: d/d {}[{i}] autograd {analytic:e} vs numerical {numerical:e}",
                p.name
            );
            checked.push(GradEntry {
                role: p.role,
                scale,
                rel: if scale > 0.0 { diff / scale } else { 0.0 },
            });
        }
    }
    checked
}

/// Registers `runs` as sweep `name` (its file's text `spec_toml`) and finishes each after one
/// step with its final validation loss: a database of known results, without training.
pub fn record_finished(
    store: &mut loopscale::store::Store,
    name: &str,
    spec_toml: &str,
    runs: &[(loopscale::store::NewRun, f64)],
) {
    use loopscale::train::{RunEnd, RunOutcome};
    let new: Vec<loopscale::store::NewRun> = runs.iter().map(|(r, _)| r.clone()).collect();
    store
        .register_sweep(name, "", &format!("{name}.toml"), spec_toml, &new)
        .unwrap();
    for (run, loss) in runs {
        let attempt = store.start_attempt(&run.key, None).unwrap();
        let outcome = RunOutcome {
            end: RunEnd::Done,
            steps: 1,
            tokens: run.tokens,
            flops: run.flops,
            final_val_loss: Some(*loss),
            final_val_bpb: None,
            bytes_per_token: None,
            peak_rss_bytes: None,
            text_passes: None,
            final_train_loss: None,
            wall_seconds: 1.0,
            tokens_per_second: 1.0,
            loss_spikes: 0,
            time: Default::default(),
        };
        store
            .finish_attempt(&run.key, attempt, &[], &[], &outcome)
            .unwrap();
    }
}

/// A chart's series with its error bars (x, lo, hi).
pub type BarSeries<'a> = (&'a loopscale::chart::Series, &'a [(f64, f64, f64)]);

/// Each `ErrorBars` series of `series` with its bars: asserts that every bar is the mean ± the
/// SE of three seeds 0.01 apart (sd 0.01, SE 0.01/√3), that there are `curves` such series of
/// `each` bars, named with their n, and the seeds drawn pale behind; returns them for the checks
/// a chart adds of its own.
pub fn assert_bars_of_three_seeds(
    series: &[loopscale::chart::Series],
    curves: usize,
    each: usize,
) -> Vec<BarSeries<'_>> {
    use loopscale::chart::Kind;
    let bars: Vec<_> = series
        .iter()
        .filter_map(|s| match &s.kind {
            Kind::ErrorBars(b) => Some((s, b.as_slice())),
            _ => None,
        })
        .collect();
    assert_eq!(bars.len(), curves, "one curve of means per configuration");
    for (s, b) in &bars {
        assert_eq!(b.len(), each);
        assert!(s.name.as_deref().unwrap().contains("n = 3"), "{:?}", s.name);
        for (&(x, lo, hi), &(mx, mean)) in b.iter().zip(&s.points) {
            assert_eq!(x, mx);
            assert!(((hi - lo) / 2.0 - 0.01 / 3f64.sqrt()).abs() < 1e-12);
            assert!(((hi + lo) / 2.0 - mean).abs() < 1e-12);
        }
    }
    let faint: usize = series
        .iter()
        .filter(|s| s.kind == Kind::Faint)
        .map(|s| s.points.len())
        .sum();
    assert_eq!(faint, curves * 3 * each, "every seed's point pale behind");
    bars
}
