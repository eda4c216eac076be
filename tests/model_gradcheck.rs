//! Finite-difference gradient checks (f64, CPU): autograd against central differences for
//! RMSNorm, attention (with QK-norm and RoPE), each MLP, and the whole GPT's loss.
//!
//! A forward-only op anywhere in the graph (candle-nn's fused norms, softmax or RoPE) gives an
//! autograd gradient of zero where the numerical one is not, and fails these tests.

use candle_core::{DType, Device, Tensor, Var};
use loopscale::model::layers::{BlockInit, CausalSelfAttention, MlpBlock, RmsNorm, Rope};
use loopscale::model::{CausalLm, Gpt, Init, Mlp, ModelConfig, ParamStore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const STEP: f64 = 1e-5;
const REL_TOL: f64 = 1e-4;
/// Absolute slack for entries whose gradient is at the level of f64 round-off.
const ABS_TOL: f64 = 1e-8;

fn random_tensor(rng: &mut StdRng, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let values: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

fn get(var: &Var, i: usize) -> f64 {
    var.flatten_all().unwrap().to_vec1::<f64>().unwrap()[i]
}

fn set(var: &Var, i: usize, value: f64) {
    let mut values = var.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    values[i] = value;
    var.set(&Tensor::from_vec(values, var.shape(), &Device::Cpu).unwrap())
        .unwrap();
}

/// Compares autograd with central differences of `f` at `per_var` random entries of each
/// variable; returns the largest relative error among entries with a non-negligible gradient.
fn check(
    name: &str,
    vars: &[(String, Var)],
    f: &dyn Fn() -> Tensor,
    per_var: usize,
    seed: u64,
) -> f64 {
    let mut rng = StdRng::seed_from_u64(seed);
    let grads = f().backward().unwrap();
    let (mut worst, mut significant) = (0.0f64, 0);
    for (var_name, var) in vars {
        let grad = grads
            .get(var)
            .map(|g| g.flatten_all().unwrap().to_vec1::<f64>().unwrap());
        for _ in 0..per_var {
            let i = rng.random_range(0..var.elem_count());
            let original = get(var, i);
            set(var, i, original + STEP);
            let up = f().to_scalar::<f64>().unwrap();
            set(var, i, original - STEP);
            let down = f().to_scalar::<f64>().unwrap();
            set(var, i, original);
            let numerical = (up - down) / (2.0 * STEP);
            let analytic = grad.as_ref().map_or(0.0, |g| g[i]);
            let diff = (analytic - numerical).abs();
            let scale = analytic.abs().max(numerical.abs());
            assert!(
                diff <= REL_TOL * scale + ABS_TOL,
                "{name}: d/d {var_name}[{i}] autograd {analytic:e} vs numerical {numerical:e}"
            );
            if scale > 1e-6 {
                significant += 1;
                worst = worst.max(diff / scale);
            }
        }
    }
    let total = vars.len() * per_var;
    assert!(
        significant * 2 >= total,
        "{name}: only {significant}/{total} checked entries had a gradient"
    );
    println!("{name}: max relative error {worst:.2e} over {significant} entries");
    worst
}

/// Gaussian weights of std 0.3, output projections included.
const LARGE: BlockInit = BlockInit {
    std: 0.3,
    out_std: Some(0.3),
    orthogonal: false,
};

fn tiny(mlp: Mlp) -> ModelConfig {
    ModelConfig {
        d_model: 16,
        n_heads: 2,
        n_layers: 2,
        mlp,
        mlp_ratio: 2,
        // Random output projections, so every weight has a gradient at init; learnable QK-norm
        // gains, so their gradient is checked too.
        init: Init::Gpt2,
        qk_norm_gain: true,
        ..ModelConfig::default()
    }
}

/// `Σ out ⊙ W` for a fixed random `W`: a scalar whose gradient reaches every output entry.
fn weighted_sum(out: &Tensor, weights: &Tensor) -> Tensor {
    (out * weights).unwrap().sum_all().unwrap()
}

fn store_vars(store: &ParamStore) -> Vec<(String, Var)> {
    store
        .params()
        .iter()
        .map(|p| (p.name.clone(), p.var.clone()))
        .collect()
}

#[test]
fn rmsnorm_gradient_matches_finite_differences() {
    let mut rng = StdRng::seed_from_u64(1);
    let mut store = ParamStore::new(1, DType::F64, &Device::Cpu);
    let norm = RmsNorm::new(&mut store, "norm", 8).unwrap();
    // Perturb the gain away from 1 so the check is not at a special point.
    let gain = store.params()[0].var.clone();
    gain.set(&(random_tensor(&mut rng, &[8]) + 1.0).unwrap())
        .unwrap();
    let x = Var::from_tensor(&random_tensor(&mut rng, &[3, 8])).unwrap();
    let w = random_tensor(&mut rng, &[3, 8]);
    let mut vars = store_vars(&store);
    vars.push(("x".into(), x.clone()));
    check(
        "rmsnorm",
        &vars,
        &|| weighted_sum(&norm.forward(&x).unwrap(), &w),
        8,
        2,
    );
}

#[test]
fn attention_gradient_matches_finite_differences() {
    let cfg = tiny(Mlp::Relu2);
    let mut rng = StdRng::seed_from_u64(3);
    let mut store = ParamStore::new(3, DType::F64, &Device::Cpu);
    // A large init std so attention is far from uniform and RoPE matters.
    let attn = CausalSelfAttention::new(&mut store, "attn", &cfg, &LARGE).unwrap();
    for p in store.params() {
        if p.name.ends_with("gain") {
            p.var
                .set(&(random_tensor(&mut rng, &[p.var.elem_count()]) + 1.5).unwrap())
                .unwrap();
        }
    }
    let rope = Rope::new(8, 6, DType::F64, &Device::Cpu).unwrap();
    let x = Var::from_tensor(&random_tensor(&mut rng, &[2, 6, 16])).unwrap();
    let w = random_tensor(&mut rng, &[2, 6, 16]);
    let mut vars = store_vars(&store);
    vars.push(("x".into(), x.clone()));
    check(
        "attention",
        &vars,
        &|| weighted_sum(&attn.forward(&x, &rope).unwrap(), &w),
        12,
        4,
    );
}

#[test]
fn mlp_gradients_match_finite_differences() {
    for (i, mlp) in [Mlp::Relu2, Mlp::Gelu, Mlp::Swiglu].into_iter().enumerate() {
        let cfg = tiny(mlp);
        let mut rng = StdRng::seed_from_u64(10 + i as u64);
        let mut store = ParamStore::new(10 + i as u64, DType::F64, &Device::Cpu);
        let block = MlpBlock::new(&mut store, "mlp", &cfg, &LARGE).unwrap();
        let x = Var::from_tensor(
            &random_tensor(&mut rng, &[2, 3, 16])
                .affine(3.0, 0.0)
                .unwrap(),
        )
        .unwrap();
        let w = random_tensor(&mut rng, &[2, 3, 16]);
        let mut vars = store_vars(&store);
        vars.push(("x".into(), x.clone()));
        check(
            &format!("mlp {mlp:?}"),
            &vars,
            &|| weighted_sum(&block.forward(&x).unwrap(), &w),
            10,
            20 + i as u64,
        );
    }
}

#[test]
fn whole_gpt_loss_gradient_matches_finite_differences() {
    for (i, (mlp, tie)) in [(Mlp::Relu2, true), (Mlp::Swiglu, false)]
        .into_iter()
        .enumerate()
    {
        let cfg = ModelConfig {
            tie_embeddings: tie,
            ..tiny(mlp)
        };
        let model = Gpt::new(&cfg, 32, 8, 7 + i as u64, DType::F64, &Device::Cpu).unwrap();
        let mut rng = StdRng::seed_from_u64(30 + i as u64);
        // Gains away from 1 so every norm's gradient is generic.
        for p in model.params().params() {
            if p.name.ends_with("gain") {
                p.var
                    .set(
                        &(random_tensor(&mut rng, &[p.var.elem_count()])
                            .affine(0.5, 1.0)
                            .unwrap()),
                    )
                    .unwrap();
            }
        }
        let ids: Vec<u32> = (0..2 * 9).map(|_| rng.random_range(0..32)).collect();
        let ids = Tensor::from_vec(ids, (2, 9), &Device::Cpu).unwrap();
        let inputs = ids.narrow(1, 0, 8).unwrap();
        let targets = ids.narrow(1, 1, 8).unwrap();
        let vars = store_vars(model.params());
        check(
            &format!("gpt {mlp:?} tied={tie}"),
            &vars,
            &|| model.loss(&inputs, &targets).unwrap(),
            3,
            40 + i as u64,
        );
    }
}
