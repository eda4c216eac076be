//! Each fused kernel against the differentiable candle composition it replaces: the forward
//! values and the gradients of a random weighted sum of the output with respect to every
//! input, in f64 (to rounding) and in f32 (the training dtype), on shapes that do not divide
//! the kernels' task sizes. Also: the kernels give the same numbers on one thread as on many.

use crate::common;

use candle_core::{DType, Device, Tensor, Var};
use common::max_abs_diff;
use loopscale::model::fused::{self, composed};
use loopscale::model::fused_attention;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn random(rng: &mut StdRng, shape: &[usize], dtype: DType) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.random_range(-2.0..2.0)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

/// The largest magnitude in `t`, at least 1: the scale a tolerance is relative to.
fn scale_of(t: &Tensor) -> f64 {
    max_abs_diff(t, &t.zeros_like().unwrap()).max(1.0)
}

/// Runs `fused_op` and `reference` on the same leaf variables made from `inputs`, and asserts
/// outputs and gradients of `Σ out ⊙ w` agree within `tol` relative to their magnitude.
fn compare(
    name: &str,
    inputs: &[Tensor],
    fused_op: &dyn Fn(&[Tensor]) -> Tensor,
    reference: &dyn Fn(&[Tensor]) -> Tensor,
    tol: f64,
) {
    let run = |f: &dyn Fn(&[Tensor]) -> Tensor| {
        let vars: Vec<Var> = inputs
            .iter()
            .map(|t| Var::from_tensor(t).unwrap())
            .collect();
        let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let out = f(&ts);
        let mut rng = StdRng::seed_from_u64(99);
        let w = random(&mut rng, out.dims(), out.dtype());
        let grads = (&out * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let g: Vec<Tensor> = vars
            .iter()
            .map(|v| grads.get(v).expect("every input gets a gradient").clone())
            .collect();
        (out, g)
    };
    let (out_f, grads_f) = run(fused_op);
    let (out_r, grads_r) = run(reference);
    let d = max_abs_diff(&out_f, &out_r);
    assert!(
        d <= tol * scale_of(&out_r),
        "{name}: forward differs by {d:e}"
    );
    for (i, (gf, gr)) in grads_f.iter().zip(&grads_r).enumerate() {
        let d = max_abs_diff(gf, gr);
        assert!(
            d <= tol * scale_of(gr),
            "{name}: gradient of input {i} differs by {d:e} (scale {})",
            scale_of(gr)
        );
    }
}

const CASES: [(DType, f64); 2] = [(DType::F64, 1e-11), (DType::F32, 2e-5)];

#[test]
fn rms_norm_matches_the_composition() {
    for (dtype, tol) in CASES {
        let mut rng = StdRng::seed_from_u64(1);
        let x = random(&mut rng, &[3, 37, 24], dtype);
        let g = random(&mut rng, &[24], dtype);
        compare(
            "rms_norm",
            &[x, g],
            &|t| fused::rms_norm(&t[0], &t[1], 1e-6).unwrap(),
            &|t| composed::rms_norm(&t[0], &t[1], 1e-6).unwrap(),
            tol,
        );
    }
}

#[test]
fn rms_norm_accepts_a_strided_input() {
    let mut rng = StdRng::seed_from_u64(2);
    let x = random(&mut rng, &[5, 8, 6], DType::F64);
    let g = random(&mut rng, &[5], DType::F64);
    let xt = x.transpose(0, 2).unwrap(); // (6, 8, 5), not contiguous
    let d = max_abs_diff(
        &fused::rms_norm(&xt, &g, 1e-6).unwrap(),
        &composed::rms_norm(&xt, &g, 1e-6).unwrap(),
    );
    assert!(d < 1e-12, "{d:e}");
}

#[test]
fn norm_rope_heads_match_the_composition() {
    for (dtype, tol) in CASES {
        let (b, t, h, hd) = (3, 7, 2, 8);
        let mut rng = StdRng::seed_from_u64(3);
        let x = random(&mut rng, &[b, t, h * hd], dtype);
        let g = random(&mut rng, &[hd], dtype);
        let rope = loopscale::model::layers::Rope::new(hd, 9, dtype, &Device::Cpu).unwrap();
        let (cos, sin) = rope.cos_sin();
        let (cos, sin) = (cos.clone(), sin.clone());
        let tables = rope.tables().clone();
        compare(
            "norm_rope_heads",
            &[x, g],
            &|x| fused::norm_rope_heads(&x[0], &x[1], h, &tables, 1e-6).unwrap(),
            &|x| composed::norm_rope_heads(&x[0], &x[1], h, &cos, &sin, 1e-6).unwrap(),
            tol,
        );
    }
}

#[test]
fn causal_attention_matches_the_composition() {
    // time 150 spans three row blocks of 64, the last one partial; time 5 is under one block.
    for (t, seed) in [(150, 5), (5, 6)] {
        for (dtype, tol) in CASES {
            let (b, h, hd) = (3, 2, 8);
            let mut rng = StdRng::seed_from_u64(seed);
            let q = random(&mut rng, &[b, h, t, hd], dtype);
            let k = random(&mut rng, &[b, h, t, hd], dtype);
            let v = random(&mut rng, &[b, t, h * hd], dtype);
            compare(
                &format!("causal_attention (time {t})"),
                &[q, k, v],
                &|x| fused_attention::causal_attention(&x[0], &x[1], &x[2], 0.41).unwrap(),
                &|x| composed::causal_attention(&x[0], &x[1], &x[2], 0.41).unwrap(),
                tol,
            );
        }
    }
}

#[test]
fn causal_attention_refuses_mismatched_shapes() {
    let mut rng = StdRng::seed_from_u64(7);
    let q = random(&mut rng, &[2, 2, 9, 4], DType::F32);
    let v = random(&mut rng, &[2, 9, 6], DType::F32);
    let err = fused_attention::causal_attention(&q, &q, &v, 0.5).unwrap_err();
    assert!(
        err.to_string().contains("expected q = k = (b, h, t, hd)"),
        "{err}"
    );
}

#[test]
fn activations_match_candle() {
    for (dtype, tol) in CASES {
        let mut rng = StdRng::seed_from_u64(5);
        // More elements than one kernel task, so the split is exercised.
        let x = random(&mut rng, &[3, 7001], dtype)
            .affine(2.0, 0.0)
            .unwrap();
        compare(
            "relu_squared",
            std::slice::from_ref(&x),
            &|t| fused::relu_squared(&t[0]).unwrap(),
            &|t| composed::relu_squared(&t[0]).unwrap(),
            tol,
        );
        compare(
            "gelu",
            &[x],
            &|t| fused::gelu(&t[0]).unwrap(),
            &|t| composed::gelu(&t[0]).unwrap(),
            tol,
        );
    }
}

#[test]
fn cross_entropy_matches_the_composition() {
    for (dtype, tol) in CASES {
        let mut rng = StdRng::seed_from_u64(6);
        let (n, v) = (301, 19);
        let logits = random(&mut rng, &[n, v], dtype).affine(4.0, 0.0).unwrap();
        let targets: Vec<u32> = (0..n).map(|_| rng.random_range(0..v as u32)).collect();
        let targets = Tensor::from_vec(targets, n, &Device::Cpu).unwrap();
        compare(
            "cross_entropy",
            &[logits],
            &|t| fused::cross_entropy(&t[0], &targets).unwrap(),
            &|t| composed::cross_entropy(&t[0], &targets).unwrap(),
            tol,
        );
    }
}

#[test]
fn cross_entropy_refuses_an_out_of_range_target() {
    let logits = Tensor::zeros((2, 4), DType::F32, &Device::Cpu).unwrap();
    let targets = Tensor::from_vec(vec![1u32, 4], 2, &Device::Cpu).unwrap();
    let err = fused::cross_entropy(&logits, &targets).unwrap_err();
    assert!(err.to_string().contains("vocabulary 4"), "{err}");
}

#[test]
fn kernels_give_the_same_numbers_on_one_thread() {
    let mut rng = StdRng::seed_from_u64(7);
    let x = random(&mut rng, &[64, 300, 32], DType::F32);
    let g = random(&mut rng, &[32], DType::F32);
    let run = || {
        let v = Var::from_tensor(&x).unwrap();
        let y = fused::rms_norm(v.as_tensor(), &g, 1e-6).unwrap();
        let dx = y
            .sum_all()
            .unwrap()
            .backward()
            .unwrap()
            .get(&v)
            .unwrap()
            .clone();
        (y, dx)
    };
    let (y_many, dx_many) = run();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let (y_one, dx_one) = pool.install(run);
    assert_eq!(max_abs_diff(&y_many, &y_one), 0.0);
    assert_eq!(max_abs_diff(&dx_many, &dx_one), 0.0);
}

#[test]
fn attention_gives_the_same_numbers_on_one_thread() {
    // Each batch runs single-threaded gemms in a fixed order, so the thread count cannot change
    // a bit: a resumed run on another thread budget stays bit-identical.
    let mut rng = StdRng::seed_from_u64(8);
    let (b, h, t, hd) = (4, 2, 130, 16);
    let q = random(&mut rng, &[b, h, t, hd], DType::F32);
    let k = random(&mut rng, &[b, h, t, hd], DType::F32);
    let v = random(&mut rng, &[b, t, h * hd], DType::F32);
    let run = || {
        let vars: Vec<Var> = [&q, &k, &v]
            .iter()
            .map(|x| Var::from_tensor(x).unwrap())
            .collect();
        let out = fused_attention::causal_attention(
            vars[0].as_tensor(),
            vars[1].as_tensor(),
            vars[2].as_tensor(),
            0.25,
        )
        .unwrap();
        let grads = (&out * &out)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g: Vec<Tensor> = vars.iter().map(|x| grads.get(x).unwrap().clone()).collect();
        (out, g)
    };
    let (out_many, g_many) = run();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let (out_one, g_one) = pool.install(run);
    assert_eq!(max_abs_diff(&out_many, &out_one), 0.0);
    for (a, b) in g_many.iter().zip(&g_one) {
        assert_eq!(max_abs_diff(a, b), 0.0);
    }
}

#[test]
fn no_grad_evaluation_records_nothing_and_gives_the_same_loss() {
    use loopscale::model::grad::no_grad;
    use loopscale::model::{Arch, CausalLm, Gpt, Looped, LoopedConfig, ModelConfig};
    let dev = Device::Cpu;
    let ids = Tensor::from_vec(
        (0..2 * 9).map(|i| (i * 7) % 32).collect::<Vec<u32>>(),
        (2, 9),
        &dev,
    )
    .unwrap();
    let (inputs, targets) = (ids.narrow(1, 0, 8).unwrap(), ids.narrow(1, 1, 8).unwrap());
    let gpt_cfg = ModelConfig {
        d_model: 16,
        n_heads: 2,
        ..ModelConfig::default()
    };
    let looped_cfg = ModelConfig {
        arch: Arch::Looped,
        looped: Some(LoopedConfig {
            n_prelude: 1,
            n_core: 1,
            n_coda: 1,
            ..LoopedConfig::default()
        }),
        ..gpt_cfg.clone()
    };
    let models: Vec<Box<dyn CausalLm>> = vec![
        Box::new(Gpt::new(&gpt_cfg, 32, 8, 1, DType::F32, &dev).unwrap()),
        Box::new(Looped::new(&looped_cfg, 32, 8, 1, DType::F32, &dev).unwrap()),
    ];
    for model in &models {
        let with_graph = model.loss(&inputs, &targets).unwrap();
        let without = no_grad(|| model.loss(&inputs, &targets)).unwrap();
        assert!(
            with_graph.track_op(),
            "a training forward pass records its graph"
        );
        assert!(!without.track_op(), "an evaluation records no graph");
        assert_eq!(
            with_graph.to_scalar::<f32>().unwrap(),
            without.to_scalar::<f32>().unwrap()
        );
        // And recording is back on afterwards.
        assert!(model.loss(&inputs, &targets).unwrap().track_op());
    }
}

#[test]
fn matmuls_repeat_bit_for_bit_and_match_a_float64_product() {
    // The products of a step through `ops::matmul`, at a step's layouts (a transposed operand as
    // in the backward): the kernel the CPU is given at run time (AVX-512 where the CPU has it,
    // else AVX2 + FMA; `gemm`'s `x86-v4` feature) must give the same bits on every call with
    // the same thread count — what makes a resumed run bit-identical — and the right product.
    let mut rng = StdRng::seed_from_u64(9);
    let (m, k, n) = (256, 192, 384);
    for (ta, tb) in [(false, false), (false, true), (true, false)] {
        let a = random(&mut rng, &[m, k], DType::F32);
        let b = random(&mut rng, &[k, n], DType::F32);
        // The same values, read through a transposed view where asked.
        let view = |x: &Tensor, transposed: bool| {
            if transposed {
                x.t().unwrap().contiguous().unwrap().t().unwrap()
            } else {
                x.clone()
            }
        };
        let (av, bv) = (view(&a, ta), view(&b, tb));
        let first = loopscale::model::ops::matmul(&av, &bv).unwrap();
        let again = loopscale::model::ops::matmul(&av, &bv).unwrap();
        assert_eq!(max_abs_diff(&first, &again), 0.0, "ta {ta} tb {tb}");
        let (a64, b64) = (
            a.to_dtype(DType::F64).unwrap().to_vec2::<f64>().unwrap(),
            b.to_dtype(DType::F64).unwrap().to_vec2::<f64>().unwrap(),
        );
        let got = first.to_vec2::<f32>().unwrap();
        let mut worst = 0f64;
        for i in 0..m {
            for j in 0..n {
                let exact: f64 = (0..k).map(|p| a64[i][p] * b64[p][j]).sum();
                worst = worst.max((got[i][j] as f64 - exact).abs());
            }
        }
        // f32 accumulation over k = 192 products of unit normals: errors of order 1e-5.
        assert!(worst < 1e-3, "ta {ta} tb {tb}: off by {worst}");
    }
}
