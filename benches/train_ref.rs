//! Training throughput against PyTorch, eager and compiled (`make bench`, or
//! `cargo bench --bench train_ref` without PyTorch).
//!
//! Two reference models, d_model 256, 4 heads, 6 unique blocks, seq_len 256, batch 16, bytes:
//! a GPT-6 and a Parcae looped model (2 prelude + 2 core + 2 coda, diagonal injection, 4 loops
//! of which the last 2 carry gradient; the depth is fixed rather than Poisson so that every
//! implementation does exactly the same work every step). Both in loopscale's default recipe
//! (tied head, scaled-zero init, no QK-norm gains; docs/recipe.md), which the PyTorch twin
//! follows.
//!
//! For each model and precision (fp32; bf16 = `train.precision = "bf16"` against PyTorch's CPU
//! autocast), `BENCH_REPEAT` rounds of three peers in a rotating order: loopscale's trainer
//! (`train_model`), `benches/torch_reference.py` eager, and the same under `torch.compile`, each
//! `BENCH_STEPS` timed steps after `BENCH_WARMUP` untimed ones (compilation happens there), with
//! the same thread count. Prints each measurement, the median tokens/s of each peer with its
//! range, the median of the per-round ratios against eager and compiled PyTorch with their
//! range, GFLOP/s (`train_flops_per_token`, attention over the full seq × seq square) against
//! this CPU's nominal and measured (sgemm) peak, the losses at a few steps, a forward /
//! backward / optimizer split of our step and a per-op breakdown of one block whose matmul row
//! says what fraction of the best sgemm the products reach. Before the models: this CPU (vendor,
//! model, the SIMD flags kernels choose between, caches) and the rate of every matrix product of a
//! step at its shape and layout, ours (`ops::matmul`) beside `torch.mm` (`benches/torch_gemm.py`).
//!
//! Environment: `BENCH_STEPS` (12), `BENCH_WARMUP` (3), `BENCH_REPEAT` (3), `BENCH_MODELS`
//! (`gpt,looped`), `BENCH_PRECISION` (`fp32`; `make bench` sets `fp32,bf16`), `BENCH_PYTHON`
//! (the interpreter with torch; none → PyTorch is skipped), `BENCH_TORCH_ATTENTION` (`manual`
//! or `sdpa`). Threads: `RAYON_NUM_THREADS` (the Makefile sets 2), passed on to PyTorch.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor, Var};
use loopscale::config::RunConfig;
use loopscale::config::{DataConfig, TrainConfig};
use loopscale::model::fused::{self, composed};
use loopscale::model::fused_attention;
use loopscale::model::layers::{self, RmsNorm};
use loopscale::model::ops;
use loopscale::model::{
    Arch, DepthSampling, LoopedConfig, ModelConfig, Precision, autocast, train_flops_per_token,
};
use loopscale::train::objectives;
use loopscale::train::{
    AdamW, AdamWConfig, BatchSampler, Corpus, EvalMetrics, RunObserver, StepMetrics, build_model,
    train_model,
};
use rand::SeedableRng;
use rand::rngs::StdRng;

const D: usize = 256;
const HEADS: usize = 4;
const SEQ: usize = 256;
const BATCH: usize = 16;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn config(arch: Arch, steps: usize) -> RunConfig {
    let looped = (arch == Arch::Looped).then(|| LoopedConfig {
        depth_sampling: DepthSampling::Fixed,
        test_loops: vec![4],
        ..LoopedConfig::default()
    });
    RunConfig {
        data: DataConfig {
            seq_len: SEQ,
            ..DataConfig::default()
        },
        train: TrainConfig {
            tokens: (steps * BATCH * SEQ) as u64,
            batch_size: BATCH,
            lr: 3e-3,
            // A constant learning rate, as the PyTorch twin uses.
            warmup_fraction: 0.0,
            min_lr_fraction: 1.0,
            eval_every: 0,
            eval_tokens: (BATCH * SEQ) as u64,
            log_every: 1,
            ..TrainConfig::default()
        },
        model: ModelConfig {
            arch,
            d_model: D,
            n_heads: HEADS,
            n_layers: 6,
            looped,
            ..ModelConfig::default()
        },
        seed: 0,
        lineage: None,
    }
}

#[derive(Default)]
struct Timeline {
    steps: Vec<StepMetrics>,
}
impl RunObserver for Timeline {
    fn on_step(&mut self, m: &StepMetrics) -> anyhow::Result<()> {
        self.steps.push(m.clone());
        Ok(())
    }
    fn on_eval(&mut self, _: &EvalMetrics) -> anyhow::Result<()> {
        Ok(())
    }
}

struct Measured {
    tokens_per_second: f64,
    losses: Vec<f64>,
}

/// Who trains the reference model in one measurement.
#[derive(Clone, Copy, PartialEq)]
enum Peer {
    Loopscale,
    TorchEager,
    TorchCompiled,
}

impl Peer {
    fn name(self) -> &'static str {
        match self {
            Peer::Loopscale => "loopscale",
            Peer::TorchEager => "torch eager",
            Peer::TorchCompiled => "torch compiled",
        }
    }
}

/// loopscale's trainer; tokens/s over the steps after the warmup ones.
fn run_ours(
    arch: Arch,
    precision: Precision,
    corpus: &Corpus,
    warmup: usize,
    steps: usize,
) -> Measured {
    let mut cfg = config(arch, warmup + steps);
    cfg.train.precision = precision;
    let model = build_model(&cfg, corpus.vocab_size(), &Device::Cpu).unwrap();
    let mut timeline = Timeline::default();
    train_model(model.as_ref(), &cfg, corpus, &Device::Cpu, &mut timeline).unwrap();
    let s = &timeline.steps;
    let (t0, tok0) = if warmup == 0 {
        (0.0, 0)
    } else {
        (s[warmup - 1].elapsed_seconds, s[warmup - 1].tokens)
    };
    let last = s.last().unwrap();
    Measured {
        tokens_per_second: (last.tokens - tok0) as f64 / (last.elapsed_seconds - t0),
        losses: s.iter().map(|m| m.train_loss).collect(),
    }
}

/// The PyTorch twin (`benches/torch_reference.py`), eager or under `torch.compile` (whose
/// compilation happens in the untimed warm-up steps), at `precision` (bf16: CPU autocast).
fn run_torch(
    python: &str,
    arch: Arch,
    precision: Precision,
    compiled: bool,
    warmup: usize,
    steps: usize,
    threads: usize,
) -> Option<Measured> {
    let attention = std::env::var("BENCH_TORCH_ATTENTION").unwrap_or_else(|_| "manual".into());
    let mut cmd = Command::new(python);
    cmd.arg("-W")
        .arg("ignore")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/benches/torch_reference.py"
        ))
        .args(["--arch", if arch == Arch::Gpt { "gpt" } else { "looped" }])
        .args(["--steps", &steps.to_string()])
        .args(["--warmup-steps", &warmup.to_string()])
        .args(["--threads", &threads.to_string()])
        .args(["--attention", &attention])
        .args(["--precision", precision.name()])
        .arg("--corpus")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("data/corpus/moby-dick.txt"));
    if compiled {
        cmd.arg("--compile");
    }
    let out = match cmd.output() {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            eprintln!(
                "torch_reference.py failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            return None;
        }
        Err(e) => {
            eprintln!("cannot run {python}: {e}");
            return None;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value = serde_json::from_str(stdout.lines().last()?).ok()?;
    Some(Measured {
        tokens_per_second: json["tokens_per_second"].as_f64()?,
        losses: json["losses"]
            .as_array()?
            .iter()
            .filter_map(|v| v.as_f64())
            .collect(),
    })
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn spread(xs: &[f64]) -> (f64, f64) {
    xs.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        })
}

/// Peak f32 FLOP/s of `threads` cores: clock × SIMD lanes (8 with AVX2, 16 with AVX-512) × 2
/// (fused multiply-add) × 2 FMA pipes per core. The clock is the faster of /proc/cpuinfo's
/// (often the base clock on a virtual machine) and one measured by a chain of dependent adds
/// ([`measured_clock_ghz`]): a peak below what a GEMM reaches is no peak.
fn nominal_peak(threads: usize) -> (f64, String) {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let listed = info
        .lines()
        .filter(|l| l.starts_with("cpu MHz"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        .fold(0.0, f64::max)
        / 1e3;
    let measured = measured_clock_ghz();
    let ghz = listed.max(measured.unwrap_or(0.0));
    let flags = info
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or_default();
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    let lanes = if has("avx512f") {
        16.0
    } else if has("avx2") || has("avx") {
        8.0
    } else {
        4.0
    };
    let fma = if has("fma") { 2.0 } else { 1.0 };
    let peak = threads as f64 * ghz * lanes * fma * 2.0 * 1e9;
    let clock = match measured {
        Some(m) => format!("{ghz:.2} GHz (listed {listed:.2}, measured {m:.2})"),
        None => format!("{ghz:.2} GHz (listed)"),
    };
    let how = format!("{threads} cores × {clock} × {lanes} f32 lanes × {fma} (FMA) × 2 pipes");
    (peak, how)
}

/// The clock one core runs at while busy, in GHz: a chain of dependent integer adds retires one
/// add per cycle on every x86-64 core of the last two decades, so adds per second is cycles per
/// second. Best of 5; `None` off x86-64.
fn measured_clock_ghz() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        const ADDS_PER_ITER: u64 = 64;
        const ITERS: u64 = 2_000_000;
        let best = (0..5)
            .map(|_| {
                let mut x: u64 = 0;
                let t = Instant::now();
                for _ in 0..ITERS {
                    // SAFETY: register arithmetic only; no memory, no flags read afterwards.
                    unsafe {
                        std::arch::asm!(
                            ".rept 64", "add {x}, 1", ".endr",
                            x = inout(reg) x,
                            options(nomem, nostack)
                        );
                    }
                }
                std::hint::black_box(x);
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min);
        Some((ITERS * ADDS_PER_ITER) as f64 / best / 1e9)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// Best-of-5 GFLOP/s of a 1024³ f32 matmul through candle (gemm crate), i.e. the attainable peak.
fn measured_sgemm() -> f64 {
    let dev = Device::Cpu;
    let a = Tensor::randn(0f32, 1.0, (1024, 1024), &dev).unwrap();
    let b = Tensor::randn(0f32, 1.0, (1024, 1024), &dev).unwrap();
    let _ = a.matmul(&b).unwrap();
    (0..5)
        .map(|_| {
            let t = Instant::now();
            let _ = a.matmul(&b).unwrap();
            2.0 * 1024f64.powi(3) / t.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

/// This CPU as the bench sees it: vendor, model, family/model numbers, the SIMD flags the
/// kernels choose between, and the cache sizes (from /proc/cpuinfo and sysfs).
fn cpu_report() -> Vec<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        info.lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == key))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "?".into())
    };
    let flags = field("flags");
    let wanted = [
        "avx2",
        "fma",
        "avx512f",
        "avx512_bf16",
        "avx512_fp16",
        "avx512_vnni",
        "amx_bf16",
        "amx_tile",
    ];
    let have: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|f| flags.split_whitespace().any(|x| x == *f))
        .collect();
    let mut caches = Vec::new();
    for i in 0..8 {
        let dir = format!("/sys/devices/system/cpu/cpu0/cache/index{i}");
        let read = |f: &str| std::fs::read_to_string(format!("{dir}/{f}")).ok();
        let (Some(level), Some(kind), Some(size)) = (read("level"), read("type"), read("size"))
        else {
            break;
        };
        let kind = match kind.trim() {
            "Data" => "d",
            "Instruction" => "i",
            _ => "",
        };
        caches.push(format!("L{}{kind} {}", level.trim(), size.trim()));
    }
    vec![
        format!(
            "cpu: {} — {} (family {}, model {})",
            field("vendor_id"),
            field("model name"),
            field("cpu family"),
            field("model")
        ),
        format!(
            "cpu: flags that choose kernels: {}; caches (per core or shared): {}",
            have.join(" "),
            caches.join(", ")
        ),
    ]
}

/// The matrix products of one block's training step at the reference shapes, as
/// (what, M, K, N, A transposed, B transposed): the forward x·W, and the backward's
/// dX = dY·Wᵀ and dW = Xᵀ·dY, which read one operand through a transposed view.
fn step_gemms() -> Vec<(&'static str, usize, usize, usize, bool, bool)> {
    let n = BATCH * SEQ;
    vec![
        ("fwd qkv x·W", n, D, 3 * D, false, false),
        ("fwd out x·W", n, D, D, false, false),
        ("fwd mlp-in x·W", n, D, 4 * D, false, false),
        ("fwd mlp-out h·W", n, 4 * D, D, false, false),
        ("bwd qkv dY·Wᵀ", n, 3 * D, D, false, true),
        ("bwd mlp-in dY·Wᵀ", n, 4 * D, D, false, true),
        ("bwd mlp-out dY·Wᵀ", n, D, 4 * D, false, true),
        ("bwd qkv Xᵀ·dY", D, n, 3 * D, true, false),
        ("bwd mlp-in Xᵀ·dY", D, n, 4 * D, true, false),
        ("bwd mlp-out Hᵀ·dY", 4 * D, n, D, true, false),
    ]
}

/// Best-of-10 GFLOP/s of `ops::matmul` (the trainer's product at `precision`) at one shape.
fn our_gemm(m: usize, k: usize, n: usize, ta: bool, tb: bool, precision: Precision) -> f64 {
    let dev = Device::Cpu;
    let operand = |rows: usize, cols: usize, transposed: bool| {
        if transposed {
            Tensor::randn(0f32, 1.0, (cols, rows), &dev)
                .unwrap()
                .t()
                .unwrap()
        } else {
            Tensor::randn(0f32, 1.0, (rows, cols), &dev).unwrap()
        }
    };
    let (a, b) = (operand(m, k, ta), operand(k, n, tb));
    autocast(precision, || {
        let _ = ops::matmul(&a, &b).unwrap();
        (0..10)
            .map(|_| {
                let t = Instant::now();
                let _ = ops::matmul(&a, &b).unwrap();
                2.0 * (m * k * n) as f64 / t.elapsed().as_secs_f64() / 1e9
            })
            .fold(0.0, f64::max)
    })
}

/// `torch.mm` at the same shapes and precision (`benches/torch_gemm.py`), in GFLOP/s.
fn torch_gemms(python: &str, precision: Precision, threads: usize) -> Option<Vec<f64>> {
    let shapes: Vec<String> = step_gemms()
        .iter()
        .map(|&(_, m, k, n, ta, tb)| format!("{m},{k},{n},{},{}", ta as u8, tb as u8))
        .collect();
    let out = Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/benches/torch_gemm.py"
        ))
        .args(["--shapes", &shapes.join(";")])
        .args(["--threads", &threads.to_string()])
        .args(["--precision", precision.name()])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let json: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last()?).ok()?;
    json["gflops"]
        .as_array()?
        .iter()
        .map(|v| v.as_f64())
        .collect()
}

/// The GEMM rate of each product of a step, ours beside torch.mm's, and each as a share of
/// the nominal peak: where a gap against PyTorch comes from, read off one table.
fn gemm_table(precision: Precision, python: Option<&str>, threads: usize, f32_peak: f64) {
    // AVX512-BF16's dot product does two multiply-adds per f32 lane: twice the f32 peak.
    let peak = match precision {
        Precision::Bf16 => 2.0 * f32_peak,
        Precision::Fp32 => f32_peak,
    };
    let theirs = python.and_then(|p| torch_gemms(p, precision, threads));
    println!(
        "  GEMMs of a step ({}), GFLOP/s best of 10 (% of the nominal {} peak, {:.0} GFLOP/s):",
        precision.name(),
        precision.name(),
        peak / 1e9
    );
    println!(
        "    {:<20} {:>16} {:>16} {:>16} {:>6}",
        "product", "M×K×N", "loopscale", "torch.mm", "ratio"
    );
    let (mut ours_sum, mut theirs_sum, mut flops_sum) = (0.0, 0.0, 0.0);
    for (i, &(what, m, k, n, ta, tb)) in step_gemms().iter().enumerate() {
        let ours = our_gemm(m, k, n, ta, tb, precision);
        let flops = 2.0 * (m * k * n) as f64;
        // Time-weighted: the step's GEMM rate is total FLOPs over total time.
        ours_sum += flops / ours;
        flops_sum += flops;
        let pct = |g: f64| format!("{g:.0} ({:.0}%)", 100.0 * g * 1e9 / peak);
        let (t, ratio) = match theirs.as_ref().and_then(|v| v.get(i)) {
            Some(&g) => {
                theirs_sum += flops / g;
                (pct(g), format!("{:.2}", ours / g))
            }
            None => ("—".into(), "—".into()),
        };
        println!(
            "    {what:<20} {:>16} {:>16} {t:>16} {ratio:>6}",
            format!("{m}×{k}×{n}"),
            pct(ours)
        );
    }
    let ours = flops_sum / ours_sum;
    let pct = |g: f64| format!("{g:.0} ({:.0}%)", 100.0 * g * 1e9 / peak);
    let (t, ratio) = if theirs_sum > 0.0 {
        let g = flops_sum / theirs_sum;
        (pct(g), format!("{:.2}", ours / g))
    } else {
        ("—".into(), "—".into())
    };
    println!(
        "    {:<20} {:>16} {:>16} {t:>16} {ratio:>6}",
        "all, by time",
        "",
        pct(ours)
    );
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Mean forward / backward / optimizer milliseconds of our training step over `steps` steps.
fn phase_split(arch: Arch, precision: Precision, corpus: &Corpus, steps: usize) -> [f64; 4] {
    let mut cfg = config(arch, steps);
    cfg.train.precision = precision;
    let dev = Device::Cpu;
    let model = build_model(&cfg, corpus.vocab_size(), &dev).unwrap();
    let mut opt = AdamW::new(
        model.params(),
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
            decay_embeddings: false,
        },
    )
    .unwrap();
    let mut sampler = BatchSampler::new(1, BATCH, SEQ, loopscale::config::DataOrder::Epochs);
    let mut rng = StdRng::seed_from_u64(2);
    let mut sums = [0.0; 4];
    for step in 0..=steps {
        let batch = sampler.sample(corpus.train_tokens(), &dev).unwrap();
        let t = Instant::now();
        let loss = autocast(precision, || {
            objectives::train_loss(
                model.as_ref(),
                &batch.inputs,
                &batch.targets,
                &cfg.train,
                (step as u64, steps as u64 + 1),
                &mut rng,
            )
        })
        .unwrap()
        .loss;
        let _ = loss.to_scalar::<f32>().unwrap();
        let fwd = ms(t);
        let t = Instant::now();
        let grads = loss.backward().unwrap();
        let bwd = ms(t);
        let t = Instant::now();
        opt.step(&grads, 1e-3, 1.0).unwrap();
        let upd = ms(t);
        let t = Instant::now();
        let _ = model
            .loss(&batch.inputs, &batch.targets)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let eval = ms(t);
        if step > 0 {
            for (s, v) in sums.iter_mut().zip([fwd, bwd, upd, eval]) {
                *s += v / steps as f64;
            }
        }
    }
    sums
}

/// A scalar stand-in for a loss whose gradient with respect to its input is a fixed dense
/// tensor: an op's backward is then timed from a real gradient, without the materialised
/// broadcast of ones that `sum_all`'s backward would store first (a whole extra pass over the
/// output that training, whose loss is the cross-entropy of the logits, never makes).
struct Upstream(Tensor);

impl CustomOp1 for Upstream {
    fn name(&self) -> &'static str {
        "bench-upstream"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        Ok((CpuStorage::F32(vec![0.0]), Shape::from(())))
    }

    fn bwd(&self, _: &Tensor, _: &Tensor, _: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(self.0.clone()))
    }
}

/// Forward and backward milliseconds of `f` on fresh leaf variables (best of `reps`); the
/// backward starts from a dense random gradient of the output ([`Upstream`]).
fn time_op(inputs: &[Tensor], f: &dyn Fn(&[Tensor]) -> Vec<Tensor>, reps: usize) -> (f64, f64) {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let (mut best_f, mut best_b) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..reps {
        let t = Instant::now();
        let outs = f(&ts);
        best_f = best_f.min(ms(t));
        let mut scalar = Tensor::zeros((), DType::F32, &Device::Cpu).unwrap();
        for out in outs {
            let upstream = Tensor::randn(0f32, 1.0, out.shape(), out.device()).unwrap();
            let term = out.apply_op1(Upstream(upstream)).unwrap();
            scalar = (scalar + term).unwrap();
        }
        let t = Instant::now();
        let _ = scalar.backward().unwrap();
        best_b = best_b.min(ms(t));
    }
    (best_f, best_b)
}

/// Per-op time at the reference shapes, fused kernel against the candle composition it
/// replaced, fwd and bwd, scaled to a step by the op's count.
/// What the 1.3× goal asks of a step: its milliseconds at 1.3 × compiled PyTorch's median rate.
struct Goal {
    step_ms: f64,
}

fn op_breakdown(
    precision: Precision,
    (fwd_blocks, bwd_blocks): (f64, f64),
    step_ms: f64,
    sgemm: f64,
    goal: Option<Goal>,
) {
    let dev = Device::Cpu;
    let n = BATCH * SEQ;
    let hd = D / HEADS;
    let r = |shape: &[usize]| Tensor::randn(0f32, 1.0, shape, &dev).unwrap();
    let w = |a: usize, b: usize| Tensor::randn(0f32, 0.02, (a, b), &dev).unwrap();
    let rope = layers::Rope::new(hd, SEQ, DType::F32, &dev).unwrap();
    let (cos, sin) = (rope.cos_sin().0.clone(), rope.cos_sin().1.clone());
    let tables = rope.tables().clone();
    let targets = Tensor::from_vec(
        (0..n as u32).map(|i| (i * 7919) % 256).collect::<Vec<_>>(),
        n,
        &dev,
    )
    .unwrap();
    let targets2 = targets.clone();
    let eps = RmsNorm::EPS;
    let scale = 1.0 / (hd as f64).sqrt();
    type OpFn = Box<dyn Fn(&[Tensor]) -> Vec<Tensor>>;
    fn one(f: impl Fn(&[Tensor]) -> Tensor + 'static) -> OpFn {
        Box::new(move |x| vec![f(x)])
    }
    type OpRow = (&'static str, f64, Vec<Tensor>, OpFn, Option<OpFn>);
    // (name, count per block (per step for the loss), inputs, fused, composed)
    let ops: Vec<OpRow> = vec![
        (
            MATMUL_ROW,
            1.0,
            vec![r(&[n, D]), w(D, 3 * D), w(D, D), w(D, 4 * D), w(4 * D, D)],
            // The four products, as `ops::matmul` at the trainer's precision; each output gets
            // its own upstream gradient.
            Box::new(|x| {
                let a = ops::matmul(&x[0], &x[1]).unwrap();
                let b = ops::matmul(&x[0], &x[2]).unwrap();
                let h = ops::matmul(&x[0], &x[3]).unwrap();
                let c = ops::matmul(&h, &x[4]).unwrap();
                vec![a, b, c]
            }),
            None,
        ),
        (
            "causal attention (QKᵀ, softmax, PV)",
            1.0,
            vec![
                r(&[BATCH, HEADS, SEQ, hd]),
                r(&[BATCH, HEADS, SEQ, hd]),
                r(&[BATCH, SEQ, D]),
            ],
            one(move |x| fused_attention::causal_attention(&x[0], &x[1], &x[2], scale).unwrap()),
            // The composition it is tested against: candle's batched matmuls over the full
            // square around a masked softmax, with the two transpose copies.
            Some(one(move |x| {
                let v = x[2]
                    .reshape((BATCH, SEQ, HEADS, hd))
                    .unwrap()
                    .transpose(1, 2)
                    .unwrap()
                    .contiguous()
                    .unwrap();
                let s = x[0].matmul(&x[1].t().unwrap()).unwrap();
                let p = composed::causal_softmax(&s, scale).unwrap();
                p.matmul(&v)
                    .unwrap()
                    .transpose(1, 2)
                    .unwrap()
                    .reshape((BATCH, SEQ, D))
                    .unwrap()
            })),
        ),
        (
            "heads: QK-norm + RoPE + transpose (q, k)",
            2.0,
            vec![r(&[BATCH, SEQ, D]), r(&[hd])],
            one(move |x| fused::norm_rope_heads(&x[0], &x[1], HEADS, &tables, eps).unwrap()),
            Some(one(move |x| {
                let h = composed::norm_rope_heads(&x[0], &x[1], HEADS, &cos, &sin, eps);
                // The composed path made the heads contiguous for the matmuls.
                h.unwrap().contiguous().unwrap()
            })),
        ),
        (
            "RMSNorm (attn, mlp)",
            2.0,
            vec![r(&[BATCH, SEQ, D]), r(&[D])],
            one(move |x| fused::rms_norm(&x[0], &x[1], eps).unwrap()),
            Some(one(move |x| composed::rms_norm(&x[0], &x[1], eps).unwrap())),
        ),
        (
            "MLP activation ReLU²",
            1.0,
            vec![r(&[n, 4 * D])],
            one(|x| fused::relu_squared(&x[0]).unwrap()),
            Some(one(|x| composed::relu_squared(&x[0]).unwrap())),
        ),
        (
            "residual adds",
            2.0,
            vec![r(&[BATCH, SEQ, D]), r(&[BATCH, SEQ, D])],
            one(|x| (&x[0] + &x[1]).unwrap()),
            None,
        ),
        (
            "cross-entropy (once per step)",
            0.0,
            vec![r(&[n, 256])],
            one(move |x| fused::cross_entropy(&x[0], &targets).unwrap()),
            Some(one(move |x| {
                composed::cross_entropy(&x[0], &targets2).unwrap()
            })),
        ),
    ];
    println!(
        "  per-op at the reference shapes (best of 3; per block × {fwd_blocks} forward, × {bwd_blocks} backward):"
    );
    println!(
        "    {:<40} {:>7} {:>7} {:>8} {:>6}   {:>7} {:>7}  (composed)",
        "op", "fwd ms", "bwd ms", "ms/step", "share", "fwd ms", "bwd ms"
    );
    let mut total = 0.0;
    // One block's products, x·W for W of D×3D, D×D, D×4D and h·W for W of 4D×D: 2·n·12·D²
    // FLOPs forward, twice that backward (the gradients of both operands).
    let block_matmul_flops = 2.0 * n as f64 * 12.0 * (D * D) as f64;
    let mut matmul_gflops = (0.0, 0.0);
    for (name, count, inputs, fused_op, composed_op) in &ops {
        // The forward runs at the trainer's precision (bf16: the matmuls); the backward
        // follows the precision each op was run at.
        let (tf, tb) = autocast(precision, || time_op(inputs, fused_op.as_ref(), 3));
        if *name == MATMUL_ROW {
            matmul_gflops = (
                block_matmul_flops / tf / 1e6,
                2.0 * block_matmul_flops / tb / 1e6,
            );
        }
        let per_step = if *count == 0.0 {
            tf + tb
        } else {
            count * (tf * fwd_blocks + tb * bwd_blocks)
        };
        let (cf, cb) = match composed_op {
            Some(op) => time_op(inputs, op.as_ref(), 3),
            None => (f64::NAN, f64::NAN), // not fused: no composed counterpart
        };
        let k = count.max(1.0);
        total += per_step;
        println!(
            "    {name:<40} {:>7.2} {:>7.2} {per_step:>8.0} {:>5.1}%   {:>7.2} {:>7.2}",
            k * tf,
            k * tb,
            100.0 * per_step / step_ms,
            k * cf,
            k * cb
        );
    }
    println!(
        "    {:<40} {:>7} {:>7} {total:>8.0} {:>5.1}%   (rest: embedding, head, injection, AdamW, gradient accumulation)",
        "sum of the above",
        "",
        "",
        100.0 * total / step_ms
    );
    println!(
        "    matmuls ({}): forward {:.0} GFLOP/s ({:.0}% of the best fp32 sgemm), backward {:.0} GFLOP/s ({:.0}%)",
        precision.name(),
        matmul_gflops.0,
        100.0 * matmul_gflops.0 * 1e9 / sgemm,
        matmul_gflops.1,
        100.0 * matmul_gflops.1 * 1e9 / sgemm
    );
    if let Some(goal) = goal {
        // The step's block matmuls at the best fp32 sgemm rate: what no scheduling of the rest
        // can go below in fp32.
        let flops = block_matmul_flops * (fwd_blocks + 2.0 * bwd_blocks);
        let at_peak = flops / sgemm * 1e3;
        println!(
            "    1.3 × torch compiled = a {:.0} ms step (ours {step_ms:.0} ms); the block matmuls alone need {at_peak:.0} ms at the best fp32 sgemm rate, leaving {:.0} ms for attention, the element-wise kernels and the rest",
            goal.step_ms,
            goal.step_ms - at_peak
        );
    }
}

const MATMUL_ROW: &str = "matmul x·W (qkv, out, mlp in, mlp out)";

fn main() {
    let steps = env_usize("BENCH_STEPS", 12);
    let warmup = env_usize("BENCH_WARMUP", 3);
    let repeat = env_usize("BENCH_REPEAT", 3).max(1);
    let models = std::env::var("BENCH_MODELS").unwrap_or_else(|_| "gpt,looped".into());
    let precisions = std::env::var("BENCH_PRECISION").unwrap_or_else(|_| "fp32".into());
    let python = std::env::var("BENCH_PYTHON").ok().filter(|s| !s.is_empty());
    let threads = candle_core::utils::get_num_threads();
    let corpus = Corpus::load(
        &DataConfig {
            seq_len: SEQ,
            ..DataConfig::default()
        },
        Path::new(env!("CARGO_MANIFEST_DIR")),
    )
    .expect("the corpus is installed (make corpus)");

    let (peak, how) = nominal_peak(threads);
    // Re-measured after every repeat and the best kept: on a shared machine one measurement
    // can land in a slow moment and overstate the fraction of it we reach.
    let mut sgemm = measured_sgemm();
    println!(
        "threads: {threads} (RAYON_NUM_THREADS); {steps} timed steps after {warmup} untimed (torch.compile compiles in those), {repeat} repeats, peers alternating"
    );
    println!("peak: {:.1} GFLOP/s nominal = {how}", peak / 1e9);
    println!(
        "peak: {:.1} GFLOP/s measured (best 1024³ sgemm through candle)",
        sgemm / 1e9
    );
    for line in cpu_report() {
        println!("{line}");
    }
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average: {}", load.trim());
    }
    let mut peers = vec![Peer::Loopscale];
    if python.is_some() {
        peers.extend([Peer::TorchEager, Peer::TorchCompiled]);
    } else {
        println!("BENCH_PYTHON unset: PyTorch skipped (make bench installs and sets it)");
    }

    let precisions: Vec<Precision> = precisions
        .split(',')
        .map(|p| match p.trim() {
            "fp32" => Precision::Fp32,
            "bf16" => Precision::Bf16,
            other => panic!("BENCH_PRECISION: unknown precision {other:?} (expected fp32, bf16)"),
        })
        .collect();
    let runnable = |p: Precision| p == Precision::Fp32 || loopscale::model::bf16_available();
    // The products a step is made of, ours beside torch.mm's, once per precision: the two
    // models share these shapes.
    for &precision in precisions.iter().filter(|&&p| runnable(p)) {
        gemm_table(precision, python.as_deref(), threads, peak);
    }

    for name in models.split(',').filter(|m| m.trim() != "none") {
        let arch = match name.trim() {
            "gpt" => Arch::Gpt,
            "looped" => Arch::Looped,
            other => panic!("BENCH_MODELS: unknown model {other:?} (expected gpt, looped, none)"),
        };
        for &precision in &precisions {
            if !runnable(precision) {
                println!("\n== {name} bf16: skipped, this CPU has no AVX512-BF16");
                continue;
            }
            bench_model(
                arch,
                precision,
                &corpus,
                &peers,
                (warmup, steps, repeat, threads),
                python.as_deref(),
                peak,
                &mut sgemm,
            );
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn bench_model(
    arch: Arch,
    precision: Precision,
    corpus: &Corpus,
    peers: &[Peer],
    (warmup, steps, repeat, threads): (usize, usize, usize, usize),
    python: Option<&str>,
    peak: f64,
    sgemm: &mut f64,
) {
    let cfg = config(arch, 1);
    let fpt = train_flops_per_token(&cfg.model, corpus.vocab_size(), SEQ);
    let name = if arch == Arch::Gpt { "gpt" } else { "looped" };
    println!(
        "\n== {name} {}: d_model {D}, {HEADS} heads, 6 unique blocks{}, seq {SEQ}, batch {BATCH}; {:.1} MFLOP/token",
        precision.name(),
        if arch == Arch::Looped {
            " (2+2+2, 4 loops, 2 with gradient)"
        } else {
            ""
        },
        fpt / 1e6
    );
    let gf = |tps: f64| tps * fpt / 1e9;
    // tokens/s of each peer, one entry per repeat; the order rotates each repeat so that a
    // slow stretch of a shared machine does not always fall on the same peer.
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); peers.len()];
    let mut losses: Vec<Option<Vec<f64>>> = vec![None; peers.len()];
    for rep in 0..repeat {
        for i in 0..peers.len() {
            let p = (i + rep) % peers.len();
            let measured = match peers[p] {
                Peer::Loopscale => Some(run_ours(arch, precision, corpus, warmup, steps)),
                Peer::TorchEager | Peer::TorchCompiled => run_torch(
                    python.unwrap(),
                    arch,
                    precision,
                    peers[p] == Peer::TorchCompiled,
                    warmup,
                    steps,
                    threads,
                ),
            };
            let Some(m) = measured else { continue };
            println!(
                "  [{rep}] {:<15} {:>7.0} tokens/s  {:>6.1} GFLOP/s  {:>5.1}% of nominal peak  {:>5.1}% of sgemm",
                peers[p].name(),
                m.tokens_per_second,
                gf(m.tokens_per_second),
                100.0 * gf(m.tokens_per_second) * 1e9 / peak,
                100.0 * gf(m.tokens_per_second) * 1e9 / *sgemm
            );
            rates[p].push(m.tokens_per_second);
            losses[p].get_or_insert(m.losses);
        }
        *sgemm = sgemm.max(measured_sgemm());
    }
    println!("  median over repeats (min – max):");
    for (p, r) in peers.iter().zip(&rates) {
        if r.is_empty() {
            continue;
        }
        let (lo, hi) = spread(r);
        println!(
            "    {:<15} {:>7.0} tokens/s ({lo:.0} – {hi:.0})  {:>5.1}% of sgemm",
            p.name(),
            median(r),
            100.0 * gf(median(r)) * 1e9 / *sgemm
        );
    }
    for (p, r) in peers.iter().zip(&rates).skip(1) {
        // Ratios pair the measurements of one repeat, which ran back to back.
        let ratios: Vec<f64> = rates[0].iter().zip(r).map(|(a, b)| a / b).collect();
        if ratios.is_empty() {
            continue;
        }
        let (lo, hi) = spread(&ratios);
        println!(
            "    ratio loopscale / {:<15} {:.2} ({lo:.2} – {hi:.2}) over {} repeats",
            p.name(),
            median(&ratios),
            ratios.len()
        );
    }
    for (p, l) in peers.iter().zip(&losses) {
        let Some(l) = l else { continue };
        let n = l.len();
        let picks: Vec<usize> = [0, n / 4, n / 2, 3 * n / 4, n - 1].into();
        let shown: Vec<String> = picks
            .iter()
            .map(|&i| format!("{}:{:.3}", i + 1, l[i]))
            .collect();
        println!("    loss {:<15} {}", p.name(), shown.join(" "));
    }
    println!(
        "  (% of sgemm against the best 1024³ sgemm seen so far: {:.1} GFLOP/s)",
        *sgemm / 1e9
    );
    let [fwd, bwd, upd, eval] = phase_split(arch, precision, corpus, 3);
    let step = fwd + bwd + upd;
    println!(
        "  our step: {step:.0} ms = forward {fwd:.0} ms ({:.0}%) + backward {bwd:.0} ms ({:.0}%) + AdamW {upd:.0} ms ({:.0}%); eval forward {eval:.0} ms",
        100.0 * fwd / step,
        100.0 * bwd / step,
        100.0 * upd / step
    );
    let (fwd_blocks, bwd_blocks) = if arch == Arch::Gpt {
        (6.0, 6.0)
    } else {
        (12.0, 8.0)
    };
    let compiled = peers.iter().position(|&p| p == Peer::TorchCompiled);
    let goal = compiled.filter(|&i| !rates[i].is_empty()).map(|i| Goal {
        step_ms: (BATCH * SEQ) as f64 / (1.3 * median(&rates[i])) * 1e3,
    });
    op_breakdown(precision, (fwd_blocks, bwd_blocks), step, *sgemm, goal);
}
