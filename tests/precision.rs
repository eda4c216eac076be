//! Mixed precision (`train.precision = "bf16"`): the bf16 matrix product against a reference
//! that rounds the same operands, its gradients, the `autocast` scope, a bf16 run that tracks
//! its fp32 twin, run keys, and the errors for a bad value and for a CPU without AVX512-BF16.
//! Tests of the arithmetic print a note and pass where the CPU has no AVX512-BF16.

use candle_core::{DType, Device, Tensor, Var};
use loopscale::config::RunConfig;
use loopscale::config::{DataConfig, Schedule, TrainConfig};
use loopscale::model::{Mlp, ModelConfig, Precision, autocast, bf16_available, ops};
use loopscale::sweep::{ErrorKind, Sweep};
use loopscale::train::train;

use crate::common::{self, Recorder, moby_dick};

fn cpu_has_bf16() -> bool {
    let yes = bf16_available();
    if !yes {
        eprintln!("note: this CPU has no AVX512-BF16; the bf16 arithmetic is not tested here");
    }
    yes
}

/// `x` rounded to bfloat16 (nearest, ties to even) and back, as f64.
fn rounded(x: &Tensor) -> Tensor {
    x.to_dtype(DType::BF16)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
}

fn randn(shape: (usize, usize), seed: u64) -> Tensor {
    // A fixed pattern that is not bf16-exact: most entries lose bits when rounded.
    let (r, c) = shape;
    let v: Vec<f32> = (0..r * c)
        .map(|i| {
            let x = ((i as u64 * 2_654_435_761 + seed * 97) % 10_007) as f32 / 10_007.0;
            (x - 0.5) * 3.7 + 0.013 * (i % 7) as f32
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// Largest |a − b| relative to the largest |reference|.
fn rel_err(got: &Tensor, want: &Tensor) -> f64 {
    common::max_abs_diff(got, want) / common::max_abs(want).max(1e-30)
}

#[test]
fn bf16_matmul_equals_the_product_of_rounded_operands() {
    if !cpu_has_bf16() {
        return;
    }
    for &(m, k, n) in &[
        (1, 1, 1),
        (5, 7, 3),
        (33, 17, 65),
        (64, 256, 96),
        (3, 1025, 2),
    ] {
        let a = randn((m, k), 1);
        let b = randn((k, n), 2);
        let got = autocast(Precision::Bf16, || ops::matmul(&a, &b)).unwrap();
        let want = rounded(&a).matmul(&rounded(&b)).unwrap();
        let err = rel_err(&got, &want);
        assert!(err < 1e-5, "({m}, {k}, {n}): relative error {err:.2e}");
        // And it is not the fp32 product: the operands were rounded.
        let fp32 = a.matmul(&b).unwrap();
        assert!(
            common::max_abs_diff(&got, &fp32) > 0.0,
            "({m}, {k}, {n}) equals fp32"
        );
    }
    // Strided operands, as the model passes them: a column block of W_qkv, a transposed table.
    let x = randn((40, 24), 3);
    let w = randn((24, 72), 4);
    let block = w.narrow(1, 24, 24).unwrap();
    let got = autocast(Precision::Bf16, || ops::matmul(&x, &block)).unwrap();
    let want = rounded(&x).matmul(&rounded(&block)).unwrap();
    assert!(rel_err(&got, &want) < 1e-5, "column block");
    let table = randn((50, 24), 5);
    let got = autocast(Precision::Bf16, || ops::matmul(&x, &table.t().unwrap())).unwrap();
    let want = rounded(&x).matmul(&rounded(&table).t().unwrap()).unwrap();
    assert!(rel_err(&got, &want) < 1e-5, "transposed table");
}

#[test]
fn bf16_gradients_are_the_rounded_products_of_the_backward() {
    if !cpu_has_bf16() {
        return;
    }
    let (m, k, n) = (37, 29, 45);
    let a = Var::from_tensor(&randn((m, k), 6)).unwrap();
    let b = Var::from_tensor(&randn((k, n), 7)).unwrap();
    let upstream = randn((m, n), 8);
    // loss = Σ (a·b) ⊙ upstream, so d loss / d(a·b) = upstream.
    let loss = autocast(Precision::Bf16, || {
        ops::matmul(a.as_tensor(), b.as_tensor())
            .unwrap()
            .mul(&upstream)
            .unwrap()
            .sum_all()
    })
    .unwrap();
    let grads = loss.backward().unwrap();
    let (ga, gb) = (
        grads.get(a.as_tensor()).unwrap(),
        grads.get(b.as_tensor()).unwrap(),
    );
    let g = rounded(&upstream);
    let want_a = g.matmul(&rounded(b.as_tensor()).t().unwrap()).unwrap();
    let want_b = rounded(a.as_tensor()).t().unwrap().matmul(&g).unwrap();
    assert!(
        rel_err(ga, &want_a) < 1e-5,
        "d a: {:.2e}",
        rel_err(ga, &want_a)
    );
    assert!(
        rel_err(gb, &want_b) < 1e-5,
        "d b: {:.2e}",
        rel_err(gb, &want_b)
    );
}

#[test]
fn autocast_sets_the_precision_only_inside_its_scope() {
    let a = randn((8, 16), 9);
    let b = randn((16, 4), 10);
    let fp32 = a.matmul(&b).unwrap();
    let outside = ops::matmul(&a, &b).unwrap();
    assert_eq!(common::max_abs_diff(&outside, &fp32), 0.0);
    let inner = autocast(Precision::Bf16, || {
        autocast(Precision::Fp32, || ops::matmul(&a, &b).unwrap())
    });
    assert_eq!(
        common::max_abs_diff(&inner, &fp32),
        0.0,
        "nested fp32 scope"
    );
    if cpu_has_bf16() {
        let bf16 = autocast(Precision::Bf16, || ops::matmul(&a, &b).unwrap());
        assert!(common::max_abs_diff(&bf16, &fp32) > 0.0);
    }
    // A panic inside the scope still restores fp32.
    let caught = std::panic::catch_unwind(|| autocast(Precision::Bf16, || panic!("inside")));
    assert!(caught.is_err());
    let after = ops::matmul(&a, &b).unwrap();
    assert_eq!(common::max_abs_diff(&after, &fp32), 0.0, "after a panic");
}

fn tiny_run(precision: Precision) -> RunConfig {
    RunConfig {
        data: DataConfig {
            seq_len: 32,
            ..DataConfig::default()
        },
        train: TrainConfig {
            tokens: 200 * 8 * 32,
            batch_size: 8,
            lr: 1e-2,
            schedule: Schedule::Cosine,
            eval_every: 0,
            eval_tokens: 4096,
            log_every: 1,
            precision,
            ..TrainConfig::default()
        },
        model: ModelConfig {
            d_model: 32,
            n_heads: 2,
            n_layers: 2,
            mlp: Mlp::Relu2,
            ..ModelConfig::default()
        },
        seed: 0,
        lineage: None,
    }
}

#[test]
fn a_bf16_run_trains_as_well_as_its_fp32_twin() {
    if !cpu_has_bf16() {
        return;
    }
    let corpus = moby_dick(100_000, 32);
    let mut finals = Vec::new();
    let mut losses = Vec::new();
    for precision in [Precision::Fp32, Precision::Bf16] {
        let mut rec = Recorder::default();
        let out = train(&tiny_run(precision), &corpus, &Device::Cpu, &mut rec).unwrap();
        let val = out.final_val_loss.unwrap();
        let first = rec.steps[0].train_loss;
        println!("{}: first {first:.4}, final val {val:.4}", precision.name());
        assert!(val < first - 2.0, "{}: {first} → {val}", precision.name());
        finals.push(val);
        losses.push(rec.steps.iter().map(|s| s.train_loss).collect::<Vec<_>>());
    }
    // The same data and init: the first step's loss differs only by rounding, and the runs
    // then drift apart by their rounding (they are not the same run).
    assert!((losses[0][0] - losses[1][0]).abs() < 1e-2);
    assert!(losses[0] != losses[1], "bf16 changed nothing");
    let gap = finals[1] - finals[0];
    assert!(gap.abs() < 0.05, "bf16 − fp32 = {gap:.4}");
}

#[test]
fn precision_enters_the_run_key_only_when_bf16() {
    let fp32 = tiny_run(Precision::Fp32);
    let bf16 = tiny_run(Precision::Bf16);
    assert!(!fp32.canonical_json().contains("precision"));
    assert!(bf16.canonical_json().contains("\"precision\":\"bf16\""));
    assert_ne!(fp32.key(), bf16.key());
}

fn sweep_text(precision: &str) -> String {
    format!(
        "[sweep]\nname = \"p\"\n[data]\ncorpus = \"tiny_corpus.txt\"\nseq_len = 16\n\
         [model]\nd_model = 16\nn_heads = 2\nn_layers = 1\n\
         [train]\ntokens = 1024\nbatch_size = 4\neval_tokens = 256\nprecision = {precision}\n"
    )
}

#[test]
fn precision_is_an_axis_and_a_bad_value_is_named() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sweeps/p.toml");
    let sweep = Sweep::from_str(&sweep_text("[\"fp32\", \"bf16\"]"), &path).unwrap();
    let got: Vec<Precision> = sweep
        .runs
        .iter()
        .map(|r| r.config.train.precision)
        .collect();
    assert_eq!(got, vec![Precision::Fp32, Precision::Bf16]);
    // An axis although fp32 is absent from the canonical form (`plan` shows it).
    assert!(
        sweep.axes.iter().any(|a| a == "train.precision"),
        "{:?}",
        sweep.axes
    );
    let shown: Vec<&str> = sweep.runs.iter().map(|r| r.varying[0].1.as_str()).collect();
    assert_eq!(shown, ["fp32", "bf16"]);
    let e = Sweep::from_str(&sweep_text("\"fp16\""), &path).expect_err("fp16 is refused");
    let shown = e.to_string();
    println!("{shown}");
    assert_eq!(e.kind, ErrorKind::BadEnumValue);
    for part in ["p.toml", "`train.precision`", "fp32, bf16", "\"fp16\""] {
        assert!(shown.contains(part), "missing {part:?} in:\n{shown}");
    }
}

#[test]
fn a_cpu_without_avx512_bf16_refuses_a_bf16_run_and_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = common::moby_dick_file(dir.path(), 20_000);
    let text = sweep_text("\"bf16\"").replace("tiny_corpus.txt", corpus.to_str().unwrap());
    let sweep = dir.path().join("bf16.toml");
    std::fs::write(&sweep, text).unwrap();
    let db = dir.path().join("r.sqlite");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loopscale"))
        .args([
            "run",
            sweep.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
            "--plain",
        ])
        .env("RAYON_NUM_THREADS", "1")
        .env("LOOPSCALE_NO_CPU_BF16", "1")
        .output()
        .unwrap();
    let shown = common::text(&out);
    println!("{shown}");
    assert!(!out.status.success(), "a refused run is a failed sweep");
    assert!(shown.contains("train.precision = \"bf16\" needs a CPU with AVX512-BF16"));
    // The whole message is the run's error in the database; no step was trained.
    let row = common::loopscale(&[
        "sql",
        db.to_str().unwrap(),
        "SELECT status || ' ' || coalesce(steps_done, 0) || ' ' || error FROM runs",
    ]);
    let row = common::text(&row);
    assert!(row.contains("failed 0 train.precision"), "{row}");
    assert!(row.contains("set train.precision = \"fp32\""), "{row}");
}
