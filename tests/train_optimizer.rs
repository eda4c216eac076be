//! The optimizer groups and Muon: every parameter of every model shape is in exactly one group
//! (AdamW decayed, AdamW undecayed, or Muon), the hidden matrices and nothing else go to Muon,
//! the Polar Express iteration returns a near-orthogonal matrix, and one Muon update of a
//! square matrix is near-orthogonal.

use candle_core::{DType, Device, Tensor};
use loopscale::config::{OptimizerKind, TrainConfig};
use loopscale::model::{
    Arch, CausalLm, Gpt, Injection, Looped, LoopedConfig, Mlp, ModelConfig, ParamRole, ParamStore,
};
use loopscale::train::muon::{Muon, MuonConfig, orthogonalise};
use loopscale::train::{Group, Optimizer, group_of};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CPU: Device = Device::Cpu;

fn models() -> Vec<(String, Box<dyn CausalLm>)> {
    let mut out: Vec<(String, Box<dyn CausalLm>)> = Vec::new();
    for tie in [true, false] {
        let gpt = ModelConfig {
            d_model: 16,
            n_heads: 2,
            mlp: Mlp::Swiglu,
            tie_embeddings: tie,
            qk_norm_gain: true,
            ..ModelConfig::default()
        };
        out.push((
            format!("gpt tied={tie}"),
            Box::new(Gpt::new(&gpt, 32, 8, 0, DType::F32, &CPU).unwrap()),
        ));
        for (injection, r) in [
            (Injection::Diagonal, None),
            (Injection::Add, Some(8)),
            (Injection::Linear, None),
        ] {
            let cfg = ModelConfig {
                arch: Arch::Looped,
                d_model: 16,
                n_heads: 2,
                tie_embeddings: tie,
                looped: Some(LoopedConfig {
                    injection,
                    recurrent_dim: r,
                    ..LoopedConfig::default()
                }),
                ..ModelConfig::default()
            };
            out.push((
                format!("looped {injection:?} tied={tie}"),
                Box::new(Looped::new(&cfg, 32, 8, 0, DType::F32, &CPU).unwrap()),
            ));
        }
    }
    out
}

#[test]
fn every_parameter_is_in_exactly_one_optimizer_group() {
    for kind in [OptimizerKind::Adamw, OptimizerKind::Muon] {
        let train = TrainConfig {
            optimizer: kind,
            ..TrainConfig::default()
        };
        for (label, model) in models() {
            let params = model.params();
            let opt = Optimizer::new(params, &train, 10).unwrap();
            let state: Vec<String> = opt.state().into_iter().map(|(n, _)| n).collect();
            for p in params.params() {
                // One first-moment buffer per parameter, in AdamW's or in Muon's state.
                let owners: Vec<&String> = state
                    .iter()
                    .filter(|n| {
                        *n == &format!("adam_m.{}", p.name) || *n == &format!("muon_m.{}", p.name)
                    })
                    .collect();
                assert_eq!(
                    owners.len(),
                    1,
                    "{label} {kind:?}: {} in {owners:?}",
                    p.name
                );
                let in_muon = owners[0].starts_with("muon_");
                assert_eq!(
                    in_muon,
                    group_of(p.role, &train) == Group::Muon,
                    "{label} {kind:?}: {}",
                    p.name
                );
                // Muon takes exactly the blocks' hidden matrices.
                let hidden = p.var.rank() == 2
                    && !p.name.starts_with("injection.")
                    && !["token_embedding", "lm_head", "readout.C"].contains(&p.name.as_str());
                assert_eq!(
                    in_muon,
                    kind == OptimizerKind::Muon && hidden,
                    "{label}: {}",
                    p.name
                );
                assert_eq!(hidden, p.role == ParamRole::Matrix, "{label}: {}", p.name);
            }
            assert_eq!(state.len(), 2 * params.params().len(), "{label} {kind:?}");
        }
    }
}

fn random(rng: &mut StdRng, shape: (usize, usize)) -> Tensor {
    let values: Vec<f32> = (0..shape.0 * shape.1)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    Tensor::from_vec(values, shape, &CPU).unwrap()
}

/// Singular values of `x` (via the eigenvalues of the small Gram matrix, by Jacobi rotations).
fn singular_values(x: &Tensor) -> Vec<f64> {
    let (r, c) = x.dims2().unwrap();
    let x = x.to_dtype(DType::F64).unwrap();
    let gram = if r >= c {
        x.t().unwrap().matmul(&x).unwrap()
    } else {
        x.matmul(&x.t().unwrap()).unwrap()
    };
    let mut a: Vec<Vec<f64>> = gram.to_vec2().unwrap();
    let n = a.len();
    for _ in 0..100 {
        for p in 0..n {
            for q in p + 1..n {
                if a[p][q].abs() < 1e-15 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let (cs, sn) = (1.0 / (t * t + 1.0).sqrt(), t / (t * t + 1.0).sqrt());
                for row in a.iter_mut() {
                    let (akp, akq) = (row[p], row[q]);
                    row[p] = cs * akp - sn * akq;
                    row[q] = sn * akp + cs * akq;
                }
                let (rp, rq) = (a[p].clone(), a[q].clone());
                for k in 0..n {
                    a[p][k] = cs * rp[k] - sn * rq[k];
                    a[q][k] = sn * rp[k] + cs * rq[k];
                }
            }
        }
    }
    (0..n).map(|i| a[i][i].max(0.0).sqrt()).collect()
}

#[test]
fn polar_express_returns_a_near_orthogonal_matrix() {
    let mut rng = StdRng::seed_from_u64(0);
    for shape in [(48, 16), (16, 48), (32, 32)] {
        // Columns scaled from 1 down to 0.05: singular values spread over a factor of 20+.
        let scales: Vec<f32> = (0..shape.1)
            .map(|j| 0.05f32.powf(j as f32 / (shape.1 - 1) as f32))
            .collect();
        let scales = Tensor::from_vec(scales, (1, shape.1), &CPU).unwrap();
        let g = random(&mut rng, shape).broadcast_mul(&scales).unwrap();
        let s = singular_values(&g);
        let spread =
            s.iter().cloned().fold(0.0, f64::max) / s.iter().cloned().fold(f64::MAX, f64::min);
        assert!(spread > 5.0, "the input is far from orthogonal: {spread}");
        let x = orthogonalise(&g).unwrap();
        assert_eq!(x.dims2().unwrap(), shape);
        for sv in singular_values(&x) {
            assert!((0.7..=1.2).contains(&sv), "{shape:?}: singular value {sv}");
        }
    }
}

#[test]
fn one_muon_update_of_a_square_matrix_is_near_orthogonal() {
    let mut store = ParamStore::new(0, DType::F32, &CPU);
    let w = store.normal("w", (32, 32), 0.1, ParamRole::Matrix).unwrap();
    let before = w.copy().unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let target = random(&mut rng, (32, 32));
    // loss = Σ W ⊙ T: the gradient is T, far from orthogonal.
    let grads = (&w * &target)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let mut muon = Muon::new(
        vec![store.params()[0].var.clone()],
        MuonConfig {
            momentum: 0.95,
            momentum_start: 0.85,
            momentum_warmup: 300,
            weight_decay: 0.0,
            beta2: 0.95,
        },
    )
    .unwrap();
    let lr = 0.01;
    muon.step(&grads, lr, 1.0, 0, 10).unwrap();
    let update = ((before - &w).unwrap() / lr).unwrap();
    for sv in singular_values(&update) {
        assert!((0.7..=1.3).contains(&sv), "singular value {sv}");
    }
    // It descends: the update is positively aligned with the gradient.
    let dot = (&update * &target)
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(dot > 0.0);
}

#[test]
fn muon_warms_momentum_up_and_decays_weight_decay_to_zero() {
    let muon = Muon::new(
        vec![],
        MuonConfig {
            momentum: 0.95,
            momentum_start: 0.85,
            momentum_warmup: 300,
            weight_decay: 0.2,
            beta2: 0.95,
        },
    )
    .unwrap();
    assert!((muon.momentum_at(0) - 0.85).abs() < 1e-12);
    assert!((muon.momentum_at(150) - 0.90).abs() < 1e-12);
    assert!((muon.momentum_at(1000) - 0.95).abs() < 1e-12);
    assert!((muon.weight_decay_at(0, 100) - 0.2).abs() < 1e-12);
    assert!((muon.weight_decay_at(50, 100) - 0.1).abs() < 1e-12);
    assert_eq!(muon.weight_decay_at(100, 100), 0.0);
}
