//! The reference recipe's initialisation ("scaled-zero"): entry scales, orthogonality, output
//! projections at zero so every block is the identity at init (checked through the whole GPT
//! and looped forward passes against the closed form), the readout `C`, and the recurrent
//! state's truncated normal.

use candle_core::{D, DType, Device, Tensor};
use loopscale::model::{
    Arch, DepthSampling, Gpt, Init, Injection, LoopPlan, Looped, LoopedConfig, ModelConfig,
    ParamRole, StateInit,
};
use rand::SeedableRng;
use rand::rngs::StdRng;

const CPU: Device = Device::Cpu;

fn gpt_cfg(d: usize) -> ModelConfig {
    ModelConfig {
        d_model: d,
        n_heads: 4,
        n_layers: 2,
        ..ModelConfig::default()
    }
}

fn looped_cfg(d: usize, r: Option<usize>) -> ModelConfig {
    ModelConfig {
        arch: Arch::Looped,
        looped: Some(LoopedConfig {
            recurrent_dim: r,
            depth_sampling: DepthSampling::Fixed,
            ..LoopedConfig::default()
        }),
        ..gpt_cfg(d)
    }
}

fn matrix(t: &Tensor) -> Vec<Vec<f64>> {
    t.to_dtype(DType::F64).unwrap().to_vec2().unwrap()
}

/// `AᵀA` (`gram_cols`) of a row-major matrix.
fn gram_cols(a: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let cols = a[0].len();
    (0..cols)
        .map(|i| {
            (0..cols)
                .map(|j| a.iter().map(|r| r[i] * r[j]).sum())
                .collect()
        })
        .collect()
}

fn transpose(a: &[Vec<f64>]) -> Vec<Vec<f64>> {
    (0..a[0].len())
        .map(|j| a.iter().map(|r| r[j]).collect())
        .collect()
}

/// Asserts `g = scale · I` entry by entry.
fn assert_scaled_identity(name: &str, g: &[Vec<f64>], scale: f64) {
    for (i, row) in g.iter().enumerate() {
        for (j, &x) in row.iter().enumerate() {
            let want = if i == j { scale } else { 0.0 };
            assert!(
                (x - want).abs() < 1e-9 * scale.max(1.0),
                "{name}: gram[{i}][{j}] = {x}, want {want}"
            );
        }
    }
}

fn std_of(values: &[f64]) -> f64 {
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    (values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / values.len() as f64).sqrt()
}

#[test]
fn scaled_zero_matrices_are_orthogonal_at_the_reference_scale() {
    let d = 32;
    let model = Gpt::new(&gpt_cfg(d), 256, 16, 3, DType::F64, &CPU).unwrap();
    let sigma = (2.0 / (5.0 * d as f64)).sqrt();
    let store = model.params();
    let get = |name: &str| matrix(store.find(name).unwrap().var.as_tensor());

    // The embedding (256 × 32, tall): orthonormal columns × σ·√256, entries of std σ.
    let emb = get("token_embedding");
    assert_scaled_identity("embedding", &gram_cols(&emb), sigma * sigma * 256.0);
    let flat: Vec<f64> = emb.iter().flatten().copied().collect();
    let s = std_of(&flat);
    assert!(
        (s / sigma - 1.0).abs() < 0.05,
        "embedding std {s} vs {sigma}"
    );

    // Q, K and V: three d × d orthogonal blocks side by side, each σ·√d · orthogonal.
    let qkv = get("blocks.0.attn.w_qkv");
    for part in 0..3 {
        let block: Vec<Vec<f64>> = qkv
            .iter()
            .map(|r| r[part * d..(part + 1) * d].to_vec())
            .collect();
        assert_scaled_identity("w_qkv block", &gram_cols(&block), sigma * sigma * d as f64);
    }
    // The MLP's input (d × 4d, wide): orthonormal rows × σ·√(4d).
    let w_in = get("blocks.1.mlp.w_in");
    assert_scaled_identity(
        "w_in",
        &gram_cols(&transpose(&w_in)),
        sigma * sigma * 4.0 * d as f64,
    );
    // Output projections start at zero; there are no QK-norm gains by default.
    for name in ["blocks.0.attn.w_out", "blocks.1.mlp.w_out"] {
        assert!(get(name).iter().flatten().all(|&x| x == 0.0), "{name}");
    }
    assert!(store.params().iter().all(|p| !p.name.contains("q_norm")));
    // Distinct seeds, distinct draws.
    let other = Gpt::new(&gpt_cfg(d), 256, 16, 4, DType::F64, &CPU).unwrap();
    assert_ne!(
        matrix(
            other
                .params()
                .find("token_embedding")
                .unwrap()
                .var
                .as_tensor()
        ),
        emb
    );
}

#[test]
fn gpt2_init_keeps_gaussian_weights_and_scaled_output_projections() {
    let cfg = ModelConfig {
        init: Init::Gpt2,
        ..gpt_cfg(32)
    };
    let model = Gpt::new(&cfg, 256, 16, 3, DType::F64, &CPU).unwrap();
    let values = |name: &str| -> Vec<f64> {
        matrix(model.params().find(name).unwrap().var.as_tensor())
            .into_iter()
            .flatten()
            .collect()
    };
    let emb = std_of(&values("token_embedding"));
    assert!((emb / 0.02 - 1.0).abs() < 0.05, "{emb}");
    let out = std_of(&values("blocks.0.mlp.w_out"));
    let want = 0.02 / (2.0f64 * 2.0).sqrt(); // 1/√(2·depth), depth 2
    assert!((out / want - 1.0).abs() < 0.05, "{out} vs {want}");
}

/// `x / √(mean(x²) + ε)` over the last dimension, unit gain.
fn rms_normed(x: &Tensor, eps: f64) -> Tensor {
    let ms = x.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
    x.broadcast_div(&(ms + eps).unwrap().sqrt().unwrap())
        .unwrap()
}

fn ids() -> Tensor {
    Tensor::from_vec(vec![5u32, 17, 200, 3, 3, 99, 0, 255], (2, 4), &CPU).unwrap()
}

#[test]
fn scaled_zero_gpt_is_the_identity_between_embedding_and_head() {
    let cfg = gpt_cfg(32);
    let model = Gpt::new(&cfg, 256, 16, 1, DType::F64, &CPU).unwrap();
    let emb = model
        .params()
        .find("token_embedding")
        .unwrap()
        .var
        .as_tensor();
    let x = emb.embedding(&ids().flatten_all().unwrap()).unwrap();
    let want = rms_normed(&x, cfg.norm_eps)
        .matmul(&emb.t().unwrap())
        .unwrap();
    let got = model.logits(&ids()).unwrap().reshape((8, 256)).unwrap();
    let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
    assert!(diff.to_scalar::<f64>().unwrap() < 1e-10);
}

#[test]
fn scaled_zero_looped_model_is_the_closed_form_recurrence_at_init() {
    // Identity blocks: e = norm(E[ids]); each loop h ← Ā·h + Δ·e (B = I); out = norm(h·C)·Eᵀ.
    let cfg = looped_cfg(32, None);
    let model = Looped::new(&cfg, 256, 16, 2, DType::F64, &CPU).unwrap();
    let store = model.params();
    let emb = store.find("token_embedding").unwrap().var.as_tensor();
    let c = store.find("readout.C").unwrap().var.as_tensor();
    assert_eq!(store.find("readout.C").unwrap().role, ParamRole::Recurrent);
    assert_scaled_identity("C", &gram_cols(&matrix(c)), 0.4);

    let decay: f64 = model
        .injection()
        .decay_values()
        .unwrap()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()[0];
    let delta = -(decay.ln()) - 1e-4; // softplus(dt_bias), MIN_DECAY_RATE below Ā's rate
    let loops = 3;
    let e = rms_normed(
        &emb.embedding(&ids().flatten_all().unwrap()).unwrap(),
        cfg.norm_eps,
    );
    let h0 = model
        .initial_state(2, 4, &mut StdRng::seed_from_u64(9))
        .unwrap();
    let mut h = h0.reshape((8, 32)).unwrap();
    for _ in 0..loops {
        h = ((h * decay).unwrap() + (&e * delta).unwrap()).unwrap();
    }
    let x = rms_normed(&h.matmul(c).unwrap(), cfg.norm_eps);
    let want = x.matmul(&emb.t().unwrap()).unwrap();
    let got = model
        .forward(&ids(), &LoopPlan::uniform(2, loops), &h0)
        .unwrap()
        .logits
        .reshape((8, 256))
        .unwrap();
    let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
    assert!(diff.to_scalar::<f64>().unwrap() < 1e-9);
}

#[test]
fn readout_is_orthogonal_when_the_state_is_narrower() {
    let model = Looped::new(&looped_cfg(32, Some(16)), 256, 16, 2, DType::F64, &CPU).unwrap();
    let c = matrix(model.params().find("readout.C").unwrap().var.as_tensor());
    assert_eq!((c.len(), c[0].len()), (16, 32));
    // Wide (16 × 32): orthonormal rows × σ·√32 with σ = √(2/(5·32)).
    assert_scaled_identity("C", &gram_cols(&transpose(&c)), 2.0 / (5.0 * 32.0) * 32.0);
}

#[test]
fn random_state_init_is_a_truncated_normal_at_the_embedding_scale() {
    for (init, sigma) in [
        (Init::ScaledZero, (2.0f64 / (5.0 * 32.0)).sqrt()),
        (Init::Gpt2, 0.02),
    ] {
        let cfg = ModelConfig {
            init,
            ..looped_cfg(32, None)
        };
        let model = Looped::new(&cfg, 256, 16, 2, DType::F64, &CPU).unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        let h = model.initial_state(8, 64, &mut rng).unwrap();
        let values: Vec<f64> = h.flatten_all().unwrap().to_vec1().unwrap();
        assert!(values.iter().all(|x| x.abs() <= 3.0 * sigma), "{init:?}");
        // A normal truncated at ±3σ has std 0.986σ.
        let s = std_of(&values);
        assert!(
            (s / (0.986 * sigma) - 1.0).abs() < 0.03,
            "{init:?}: {s} vs {sigma}"
        );
        // A fresh draw each call.
        assert_ne!(
            model
                .initial_state(8, 64, &mut rng)
                .unwrap()
                .to_vec3::<f64>()
                .unwrap()[0][0],
            values[..32]
        );
    }
    let zero = ModelConfig {
        looped: Some(LoopedConfig {
            state_init: StateInit::Zero,
            injection: Injection::Add,
            ..LoopedConfig::default()
        }),
        ..looped_cfg(32, None)
    };
    let model = Looped::new(&zero, 256, 16, 2, DType::F64, &CPU).unwrap();
    let h = model
        .initial_state(2, 4, &mut StdRng::seed_from_u64(1))
        .unwrap();
    assert_eq!(
        h.abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap(),
        0.0
    );
}
