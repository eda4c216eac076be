//! μP (`model.parametrization = "mup"`): the coordinate check of Tensor Programs V (the RMS of
//! every block's output after a few AdamW steps, flat across widths 32…256 under μP, growing
//! without it), μP at its base width being exactly the standard network, the learning-rate
//! factors it gives each parameter, and looped models training under it.

use candle_core::{DType, Device, Tensor};
use loopscale::model::{
    Arch, DepthSampling, Gpt, Injection, Looped, LoopedConfig, ModelConfig, ParamRole, ParamStore,
    Parametrization, lm_loss,
};
use loopscale::train::{AdamW, AdamWConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CPU: Device = Device::Cpu;
const VOCAB: usize = 64;
const BASE: usize = 32;

fn gpt(d: usize, p: Parametrization) -> ModelConfig {
    ModelConfig {
        d_model: d,
        n_heads: 2,
        n_layers: 3,
        parametrization: p,
        mup_base_width: Some(BASE),
        ..ModelConfig::default()
    }
}

fn looped(d: usize, p: Parametrization, injection: Injection) -> ModelConfig {
    ModelConfig {
        arch: Arch::Looped,
        looped: Some(LoopedConfig {
            n_prelude: 1,
            n_core: 1,
            n_coda: 1,
            injection,
            mean_recurrence: 3,
            depth_sampling: DepthSampling::Fixed,
            test_loops: vec![3],
            ..LoopedConfig::default()
        }),
        ..gpt(d, p)
    }
}

/// A fixed batch of `(inputs, targets)` with something to learn (each token predicts the next
/// of a noisy cycle), the same at every width.
fn batch() -> (Tensor, Tensor) {
    let mut rng = StdRng::seed_from_u64(3);
    let (b, t) = (4, 33);
    let ids: Vec<u32> = (0..b)
        .flat_map(|_| {
            let start = rng.random_range(0..VOCAB as u32);
            let noise: Vec<u32> = (0..t).map(|_| rng.random_range(0..4)).collect();
            (0..t).map(move |i| (start + 5 * i as u32 + noise[i]) % VOCAB as u32)
        })
        .collect();
    let all = Tensor::from_vec(ids, (b, t), &CPU).unwrap();
    (
        all.narrow(1, 0, t - 1).unwrap(),
        all.narrow(1, 1, t - 1).unwrap(),
    )
}

fn adamw(params: &ParamStore) -> AdamW {
    AdamW::new(
        params,
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.0,
            decay_embeddings: false,
        },
    )
    .unwrap()
}

fn rms(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64)
        .unwrap()
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
        .sqrt()
}

/// After `steps` AdamW steps at `lr` on the fixed batch: the RMS of what each block adds to the
/// residual stream (`x_l − x_{l−1}`), and of the logits.
fn coordinates(cfg: &ModelConfig, steps: usize, lr: f64) -> (Vec<f64>, f64) {
    let (x, y) = batch();
    let model = Gpt::new(cfg, VOCAB, 64, 0, DType::F32, &CPU).unwrap();
    let mut opt = adamw(model.params());
    for _ in 0..steps {
        let loss = lm_loss(&model.logits(&x).unwrap(), &y).unwrap();
        assert!(loss.to_scalar::<f32>().unwrap().is_finite());
        opt.step(&loss.backward().unwrap(), lr, 0.0).unwrap();
    }
    let stream = model.residual_stream(&x).unwrap();
    let blocks = stream
        .windows(2)
        .map(|w| rms(&(&w[1] - &w[0]).unwrap()))
        .collect();
    (blocks, rms(&model.logits(&x).unwrap()))
}

#[test]
fn coordinate_check_is_flat_across_widths_under_mup_and_grows_without_it() {
    let widths = [32, 64, 128, 256];
    let (steps, lr) = (4, 1e-2);
    let mut table = String::new();
    let mut per = |p: Parametrization| -> Vec<(Vec<f64>, f64)> {
        widths
            .iter()
            .map(|&d| {
                let c = coordinates(&gpt(d, p), steps, lr);
                table += &format!("{p:?} d={d}: blocks {:.4?} logits {:.4}\n", c.0, c.1);
                c
            })
            .collect()
    };
    let mup = per(Parametrization::Mup);
    let standard = per(Parametrization::Standard);
    let spread = |xs: &[f64]| {
        xs.iter().cloned().fold(f64::MIN, f64::max) / xs.iter().cloned().fold(f64::MAX, f64::min)
    };
    for block in 0..3 {
        let mup_block: Vec<f64> = mup.iter().map(|c| c.0[block]).collect();
        let std_block: Vec<f64> = standard.iter().map(|c| c.0[block]).collect();
        // Flat under μP: within a factor 2 over an 8× range of widths.
        assert!(spread(&mup_block) < 2.0, "block {block} under μP:\n{table}");
        // Growing without it: Adam's update of a width-d matrix moves its output ∝ d.
        assert!(
            std_block[3] > 3.0 * std_block[0],
            "block {block} standard:\n{table}"
        );
    }
    eprintln!("{table}");
    let mup_logits: Vec<f64> = mup.iter().map(|c| c.1).collect();
    let std_logits: Vec<f64> = standard.iter().map(|c| c.1).collect();
    assert!(spread(&mup_logits) < 2.0, "logits under μP:\n{table}");
    assert!(
        std_logits[3] > 2.0 * std_logits[0],
        "standard logits:\n{table}"
    );
}

#[test]
fn mup_at_its_base_width_is_the_standard_network() {
    let (x, _) = batch();
    for cfg in [
        gpt(BASE, Parametrization::Standard),
        looped(BASE, Parametrization::Standard, Injection::Diagonal),
    ] {
        let mup = ModelConfig {
            parametrization: Parametrization::Mup,
            ..cfg.clone()
        };
        let logits = |c: &ModelConfig| -> Vec<f32> {
            let t = if c.arch == Arch::Gpt {
                Gpt::new(c, VOCAB, 64, 1, DType::F32, &CPU)
                    .unwrap()
                    .logits(&x)
                    .unwrap()
            } else {
                Looped::new(c, VOCAB, 64, 1, DType::F32, &CPU)
                    .unwrap()
                    .logits(&x)
                    .unwrap()
            };
            t.flatten_all().unwrap().to_vec1().unwrap()
        };
        assert_eq!(logits(&cfg), logits(&mup), "{:?}", cfg.arch);
    }
}

#[test]
fn mup_divides_only_hidden_matrices_learning_rates_by_the_width_multiplier() {
    for (cfg, injection) in [
        (gpt(128, Parametrization::Mup), None),
        (
            looped(128, Parametrization::Mup, Injection::Diagonal),
            Some("injection.B"),
        ),
        (
            looped(128, Parametrization::Mup, Injection::Linear),
            Some("injection.W"),
        ),
    ] {
        let params = if cfg.arch == Arch::Gpt {
            Gpt::new(&cfg, VOCAB, 64, 0, DType::F32, &CPU)
                .unwrap()
                .params()
                .params()
                .iter()
                .map(|p| (p.name.clone(), p.role, p.var.rank(), p.lr_scale))
                .collect::<Vec<_>>()
        } else {
            Looped::new(&cfg, VOCAB, 64, 0, DType::F32, &CPU)
                .unwrap()
                .params()
                .params()
                .iter()
                .map(|p| (p.name.clone(), p.role, p.var.rank(), p.lr_scale))
                .collect()
        };
        for (name, role, rank, scale) in &params {
            let hidden = matches!(role, ParamRole::Matrix | ParamRole::Adapter)
                || (*role == ParamRole::Recurrent && *rank == 2);
            let expected = if hidden { 0.25 } else { 1.0 };
            assert_eq!(*scale, expected, "{name} ({role:?}, rank {rank})");
        }
        let scale_of = |n: &str| params.iter().find(|p| p.0 == n).map(|p| p.3);
        assert_eq!(scale_of("token_embedding"), Some(1.0));
        if let Some(name) = injection {
            assert_eq!(scale_of(name), Some(0.25), "{name}");
            assert_eq!(scale_of("readout.C"), Some(0.25));
        }
        // The standard parametrization leaves every factor at 1.
        let standard = ModelConfig {
            parametrization: Parametrization::Standard,
            ..cfg
        };
        let all_one = if standard.arch == Arch::Gpt {
            let m = Gpt::new(&standard, VOCAB, 64, 0, DType::F32, &CPU).unwrap();
            m.params().params().iter().all(|p| p.lr_scale == 1.0)
        } else {
            let m = Looped::new(&standard, VOCAB, 64, 0, DType::F32, &CPU).unwrap();
            m.params().params().iter().all(|p| p.lr_scale == 1.0)
        };
        assert!(all_one);
    }
}

#[test]
fn a_looped_model_trains_under_mup_at_several_widths() {
    let (x, y) = batch();
    for d in [32, 128] {
        let cfg = looped(d, Parametrization::Mup, Injection::Diagonal);
        let model = Looped::new(&cfg, VOCAB, 64, 0, DType::F32, &CPU).unwrap();
        let mut opt = adamw(model.params());
        let loss = |m: &Looped| {
            lm_loss(&m.logits(&x).unwrap(), &y)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        let before = loss(&model);
        for _ in 0..8 {
            let l = lm_loss(&model.logits(&x).unwrap(), &y).unwrap();
            opt.step(&l.backward().unwrap(), 1e-2, 1.0).unwrap();
        }
        let after = loss(&model);
        assert!(
            after.is_finite() && after < before - 0.1,
            "d={d}: {before} → {after}"
        );
    }
}

#[test]
fn a_mup_model_without_a_base_width_is_refused() {
    for base in [None, Some(0)] {
        let cfg = ModelConfig {
            mup_base_width: base,
            ..gpt(64, Parametrization::Mup)
        };
        let err = Gpt::new(&cfg, VOCAB, 64, 0, DType::F32, &CPU)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("mup_base_width"), "{err}");
        let cfg = ModelConfig {
            mup_base_width: base,
            ..looped(64, Parametrization::Mup, Injection::Diagonal)
        };
        assert!(Looped::new(&cfg, VOCAB, 64, 0, DType::F32, &CPU).is_err());
    }
}

#[test]
fn mup_refuses_muon_when_building_the_optimizer() {
    use loopscale::config::{OptimizerKind, TrainConfig};
    let model = Gpt::new(
        &gpt(64, Parametrization::Mup),
        VOCAB,
        64,
        0,
        DType::F32,
        &CPU,
    )
    .unwrap();
    let train = TrainConfig {
        optimizer: OptimizerKind::Muon,
        ..TrainConfig::default()
    };
    let err = loopscale::train::Optimizer::new(model.params(), &train, 10)
        .err()
        .expect("Muon with μP must be refused");
    assert!(err.to_string().contains("mup"), "{err}");
}
