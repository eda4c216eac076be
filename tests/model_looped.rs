//! The looped (Parcae) model: the diagonal injection's stability guarantee, finite-difference
//! gradients through the loops, truncated backprop and per-sequence depths against independent
//! references, equivalence with the GPT at one loop, parameter and FLOP counts.

use crate::common::{GradEntry, central_differences};
use candle_core::{DType, Device, Tensor, Var};
use loopscale::model::{
    Arch, DepthSampling, Gpt, Init, Injection, LoopPlan, Looped, LoopedConfig, Mlp, ModelConfig,
    ParamRole, StateInit, forward_flops_per_token, forward_flops_per_token_at, lm_loss,
    param_counts, train_flops_per_token,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CPU: Device = Device::Cpu;

fn looped_cfg(
    injection: Injection,
    recurrent_dim: Option<usize>,
    mean_recurrence: usize,
) -> ModelConfig {
    ModelConfig {
        arch: Arch::Looped,
        d_model: 16,
        n_heads: 2,
        mlp: Mlp::Relu2,
        mlp_ratio: 2,
        // Random output projections and C: every parameter has a gradient from the first step,
        // so the loop mechanics are checked at a generic point (scaled-zero starts at identity).
        init: Init::Gpt2,
        looped: Some(LoopedConfig {
            n_prelude: 1,
            n_core: 1,
            n_coda: 1,
            recurrent_dim,
            injection,
            mean_recurrence,
            backprop_depth: Some(mean_recurrence),
            depth_sampling: DepthSampling::Fixed,
            state_init: StateInit::Random,
            prelude_norm: true,
            test_loops: vec![1, 2],
            loop_conditioning: Default::default(),
            ..LoopedConfig::default()
        }),
        ..ModelConfig::default()
    }
}

fn random_tensor(rng: &mut StdRng, shape: &[usize], scale: f64) -> Tensor {
    let n: usize = shape.iter().product();
    let values: Vec<f64> = (0..n)
        .map(|_| scale * rng.random_range(-1.0..1.0))
        .collect();
    Tensor::from_vec(values, shape, &CPU).unwrap()
}

fn var(model: &Looped, name: &str) -> Var {
    model
        .params()
        .find(name)
        .unwrap_or_else(|| panic!("no parameter {name}"))
        .var
        .clone()
}

fn ids(rng: &mut StdRng, batch: usize, time: usize, vocab: u32) -> (Tensor, Tensor) {
    let ids: Vec<u32> = (0..batch * (time + 1))
        .map(|_| rng.random_range(0..vocab))
        .collect();
    let ids = Tensor::from_vec(ids, (batch, time + 1), &CPU).unwrap();
    (
        ids.narrow(1, 0, time).unwrap(),
        ids.narrow(1, 1, time).unwrap(),
    )
}

/// Moves every parameter away from its structured init (identities, ones, the default decay)
/// so gradients are checked at a generic point.
fn perturb(model: &Looped, rng: &mut StdRng) {
    for p in model.params().params() {
        let shape = p.var.dims().to_vec();
        let noise = random_tensor(rng, &shape, 0.3);
        p.var.set(&(p.var.as_tensor() + noise).unwrap()).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// (a) Stability of the diagonal injection

/// One draw of an arbitrary, often extreme, parameter value.
fn extreme(rng: &mut StdRng) -> f64 {
    let magnitude = match rng.random_range(0..6) {
        0 => rng.random_range(0.0..10.0),
        1 => 10f64.powf(rng.random_range(-30.0..0.0)),
        2 => 10f64.powf(rng.random_range(0.0..6.0)),
        3 => [0.0, 1e-300, 30.0, 88.0, 710.0, 1e30][rng.random_range(0..6)],
        _ => rng.random_range(0.0..100.0),
    };
    if rng.random_bool(0.5) {
        magnitude
    } else {
        -magnitude
    }
}

#[test]
fn diagonal_injection_spectral_norm_is_below_one_for_any_parameters() {
    for dtype in [DType::F32, DType::F64] {
        let cfg = looped_cfg(Injection::Diagonal, None, 2);
        let model = Looped::new(&cfg, 32, 8, 0, dtype, &CPU).unwrap();
        // Parcae's default: Ā = 0.447 on every channel.
        let decay = model
            .injection()
            .decay_values()
            .unwrap()
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap();
        for a in decay.to_vec1::<f64>().unwrap() {
            assert!((a - 0.447).abs() < 1e-6, "default decay {a}");
        }
        let (a_log, dt_bias) = (
            var(&model, "injection.A_log"),
            var(&model, "injection.dt_bias"),
        );
        let mut rng = StdRng::seed_from_u64(99);
        let (mut largest, mut smallest) = (0.0f64, 1.0f64);
        for _ in 0..500 {
            for v in [&a_log, &dt_bias] {
                let values: Vec<f64> = (0..16).map(|_| extreme(&mut rng)).collect();
                v.set(&Tensor::new(values, &CPU).unwrap().to_dtype(dtype).unwrap())
                    .unwrap();
            }
            let decay = model
                .injection()
                .decay_values()
                .unwrap()
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap();
            for a in decay.to_vec1::<f64>().unwrap() {
                assert!(
                    a.is_finite() && (0.0..1.0).contains(&a),
                    "Ā = {a} for A_log {a_log} dt {dt_bias}"
                );
                smallest = smallest.min(a);
            }
            let norm = model.injection().spectral_norm().unwrap();
            assert!(norm < 1.0, "spectral norm {norm}");
            largest = largest.max(norm);
        }
        println!("{dtype:?}: over 500 extreme draws Ā ∈ [{smallest:e}, {largest}]");
    }
}

#[test]
fn linear_injection_spectral_norm_is_the_largest_singular_value() {
    let cfg = looped_cfg(Injection::Linear, None, 2);
    let model = Looped::new(&cfg, 32, 8, 0, DType::F64, &CPU).unwrap();
    // W_h = diag(3, 1, ..., 1) rotated by a permutation has σ_max = 3; W_e is irrelevant.
    let mut w = vec![0.0; 32 * 16];
    for i in 0..16 {
        w[i * 16 + (i + 5) % 16] = if i == 7 { -3.0 } else { 1.0 };
        w[(16 + i) * 16 + i] = 50.0;
    }
    var(&model, "injection.W")
        .set(&Tensor::from_vec(w, (32, 16), &CPU).unwrap())
        .unwrap();
    let norm = model.injection().spectral_norm().unwrap();
    assert!((norm - 3.0).abs() < 1e-9, "{norm}");
    // At init W_h ≈ I: spectral norm near 1, not constrained below it.
    let fresh = Looped::new(&cfg, 32, 8, 0, DType::F64, &CPU).unwrap();
    let norm = fresh.injection().spectral_norm().unwrap();
    println!("linear injection spectral norm at init: {norm:.4}");
    assert!((norm - 1.0).abs() < 0.3, "{norm}");
    let add = Looped::new(
        &looped_cfg(Injection::Add, None, 2),
        32,
        8,
        0,
        DType::F64,
        &CPU,
    )
    .unwrap();
    assert_eq!(add.injection().spectral_norm().unwrap(), 1.0);
}

// ---------------------------------------------------------------------------------------------
// (b) Finite-difference gradients through the loops

/// Autograd against central differences at `per_var` random entries of every parameter;
/// returns the largest relative error among entries with a non-negligible gradient.
fn gradcheck(name: &str, model: &Looped, f: &dyn Fn() -> Tensor, per_var: usize, seed: u64) -> f64 {
    let checked = central_differences(name, model.params().params(), f, &|_| per_var, seed);
    let significant: Vec<&GradEntry> = checked.iter().filter(|e| e.scale > 1e-6).collect();
    let total = checked.len();
    assert!(
        significant.len() * 4 >= total * 3,
        "{name}: only {}/{total} entries had a gradient",
        significant.len()
    );
    let worst = significant.iter().map(|e| e.rel).fold(0.0f64, f64::max);
    println!(
        "{name}: max relative error {worst:.2e} over {} entries",
        significant.len()
    );
    worst
}

#[test]
fn looped_gradients_match_finite_differences_through_three_loops() {
    let cases = [
        (Injection::Diagonal, None),
        (Injection::Add, None),
        (Injection::Linear, None),
        (Injection::Diagonal, Some(8)),
        (Injection::Add, Some(8)),
    ];
    for (k, (injection, recurrent_dim)) in cases.into_iter().enumerate() {
        let cfg = looped_cfg(injection, recurrent_dim, 3);
        let model = Looped::new(&cfg, 32, 6, k as u64, DType::F64, &CPU).unwrap();
        let mut rng = StdRng::seed_from_u64(100 + k as u64);
        perturb(&model, &mut rng);
        let (inputs, targets) = ids(&mut rng, 2, 6, 32);
        let h0 = model.initial_state(2, 6, &mut rng).unwrap();
        // Per-sequence depths 3 and 2 (the second masked out of the first loop), all with
        // gradient: the training path, masking included.
        let plan = LoopPlan::new(vec![3, 2], 3);
        let f = || {
            lm_loss(
                &model.forward(&inputs, &plan, &h0).unwrap().logits,
                &targets,
            )
            .unwrap()
        };
        gradcheck(
            &format!("looped {injection:?} r={recurrent_dim:?}"),
            &model,
            &f,
            3,
            200 + k as u64,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// (c) Truncated backprop and per-sequence depths

fn grads_by_name(model: &Looped, loss: &Tensor) -> Vec<(String, Option<Vec<f64>>)> {
    let grads = loss.backward().unwrap();
    model
        .params()
        .params()
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                grads
                    .get(&p.var)
                    .map(|g| g.flatten_all().unwrap().to_vec1::<f64>().unwrap()),
            )
        })
        .collect()
}

fn max_abs_diff(
    a: &[(String, Option<Vec<f64>>)],
    b: &[(String, Option<Vec<f64>>)],
    name_filter: &str,
) -> f64 {
    let zeros = |n: usize| vec![0.0; n];
    let mut worst = 0.0f64;
    for ((name, ga), (_, gb)) in a.iter().zip(b) {
        if !name.contains(name_filter) {
            continue;
        }
        let n = ga.as_ref().or(gb.as_ref()).map_or(0, Vec::len);
        let (ga, gb) = (
            ga.clone().unwrap_or_else(|| zeros(n)),
            gb.clone().unwrap_or_else(|| zeros(n)),
        );
        for (x, y) in ga.iter().zip(&gb) {
            worst = worst.max((x - y).abs());
        }
    }
    worst
}

#[test]
fn truncated_backprop_equals_running_the_last_loops_from_a_detached_state() {
    for (k, injection) in [Injection::Diagonal, Injection::Linear]
        .into_iter()
        .enumerate()
    {
        let cfg = looped_cfg(injection, None, 3);
        let model = Looped::new(&cfg, 32, 6, 10 + k as u64, DType::F64, &CPU).unwrap();
        let mut rng = StdRng::seed_from_u64(7);
        perturb(&model, &mut rng);
        let (inputs, targets) = ids(&mut rng, 2, 6, 32);
        let h0 = model.initial_state(2, 6, &mut rng).unwrap();

        // 3 loops, gradient through the last one only.
        let truncated = model
            .forward(&inputs, &LoopPlan::new(vec![3, 3], 1), &h0)
            .unwrap();
        let g_truncated = grads_by_name(&model, &lm_loss(&truncated.logits, &targets).unwrap());
        // Reference: 2 loops, their state taken as a constant, then 1 loop with full gradient.
        let h2 = model
            .forward(&inputs, &LoopPlan::uniform(2, 2), &h0)
            .unwrap()
            .state
            .detach();
        let reference = model
            .forward(&inputs, &LoopPlan::uniform(2, 1), &h2)
            .unwrap();
        let g_reference = grads_by_name(&model, &lm_loss(&reference.logits, &targets).unwrap());
        // Full backprop through all 3 loops: the core's gradient must differ, else the test
        // could not tell truncation from none.
        let full = model
            .forward(&inputs, &LoopPlan::uniform(2, 3), &h0)
            .unwrap();
        let g_full = grads_by_name(&model, &lm_loss(&full.logits, &targets).unwrap());

        let logit_diff = (truncated.logits - reference.logits)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert_eq!(logit_diff.to_scalar::<f64>().unwrap(), 0.0);
        let same = max_abs_diff(&g_truncated, &g_reference, "");
        let core_vs_full = max_abs_diff(&g_truncated, &g_full, "core.");
        let prelude_vs_full = max_abs_diff(&g_truncated, &g_full, "prelude.");
        println!(
            "{injection:?}: truncated vs detached reference {same:e}; vs full backprop: core {core_vs_full:e}, prelude {prelude_vs_full:e}"
        );
        assert!(
            same < 1e-12,
            "{injection:?}: truncated gradients differ from the reference by {same:e}"
        );
        assert!(
            core_vs_full > 1e-6 && prelude_vs_full > 1e-6,
            "truncation had no effect"
        );
    }
}

#[test]
fn batch_gradient_is_the_mean_of_per_sequence_gradients_at_their_own_depths() {
    let cfg = looped_cfg(Injection::Diagonal, None, 3);
    let model = Looped::new(&cfg, 32, 6, 3, DType::F64, &CPU).unwrap();
    let mut rng = StdRng::seed_from_u64(8);
    perturb(&model, &mut rng);
    let (inputs, targets) = ids(&mut rng, 3, 6, 32);
    let h0 = model.initial_state(3, 6, &mut rng).unwrap();
    let (depths, backprop) = (vec![4, 1, 2], 2);

    // The batch: N = 4 loops, loops 0–1 without graph; sequence 1 active only in loop 3,
    // sequence 2 in loops 2–3.
    let batch = model
        .forward(&inputs, &LoopPlan::new(depths.clone(), backprop), &h0)
        .unwrap();
    let g_batch = grads_by_name(&model, &lm_loss(&batch.logits, &targets).unwrap());

    // Each sequence alone at its own depth, truncated to its own last min(n, 2) loops.
    let mut mean: Vec<(String, Option<Vec<f64>>)> = Vec::new();
    for (i, &n) in depths.iter().enumerate() {
        let slice = |t: &Tensor| t.narrow(0, i, 1).unwrap();
        let alone = model
            .forward(
                &slice(&inputs),
                &LoopPlan::new(vec![n], backprop),
                &slice(&h0),
            )
            .unwrap();
        let logit_diff = (&alone.logits - slice(&batch.logits))
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert!(
            logit_diff.to_scalar::<f64>().unwrap() < 1e-12,
            "sequence {i}'s logits differ in the batch"
        );
        let g = grads_by_name(&model, &lm_loss(&alone.logits, &slice(&targets)).unwrap());
        if mean.is_empty() {
            mean = g.iter().map(|(name, _)| (name.clone(), None)).collect();
        }
        for ((_, acc), (_, gi)) in mean.iter_mut().zip(g) {
            if let Some(gi) = gi {
                let acc = acc.get_or_insert_with(|| vec![0.0; gi.len()]);
                acc.iter_mut()
                    .zip(gi)
                    .for_each(|(a, x)| *a += x / depths.len() as f64);
            }
        }
    }
    let diff = max_abs_diff(&g_batch, &mean, "");
    println!("batch vs mean of per-sequence gradients: {diff:e}");
    assert!(
        diff < 1e-12,
        "batch gradient differs from per-sequence gradients by {diff:e}"
    );
}

#[test]
fn sampled_depths_are_seeded_and_poisson_distributed() {
    let mut lc = looped_cfg(Injection::Diagonal, None, 4).looped.unwrap();
    lc.depth_sampling = DepthSampling::Poisson;
    lc.backprop_depth = Some(2);
    let draw = |seed| LoopPlan::sample(&lc, 4000, &mut StdRng::seed_from_u64(seed)).unwrap();
    assert_eq!(draw(1), draw(1));
    assert_ne!(draw(1), draw(2));
    let plan = draw(1);
    let mean = plan.depths().iter().sum::<usize>() as f64 / 4000.0;
    // E[max(n, 1)] = 4 + e^-4 = 4.018; the sample mean's standard error is ≈ 0.03.
    assert!((mean - 4.018).abs() < 0.15, "mean depth {mean}");
    assert!(plan.depths().iter().all(|&n| n >= 1));
    assert_eq!(plan.first_graph_loop(), plan.total_loops() - 2);
    lc.depth_sampling = DepthSampling::Fixed;
    assert_eq!(
        LoopPlan::sample(&lc, 3, &mut StdRng::seed_from_u64(0))
            .unwrap()
            .depths(),
        &[4, 4, 4]
    );
}

// ---------------------------------------------------------------------------------------------
// (d) One loop of an additive core is a GPT

#[test]
fn one_additive_loop_from_zero_state_is_the_gpt() {
    for tie in [false, true] {
        one_loop_matches_gpt(tie);
    }
}

fn one_loop_matches_gpt(tie: bool) {
    let mut cfg = looped_cfg(Injection::Add, None, 1);
    cfg.tie_embeddings = tie;
    let lc = cfg.looped.as_mut().unwrap();
    (lc.n_prelude, lc.n_core, lc.n_coda) = (2, 1, 2);
    lc.state_init = StateInit::Zero;
    lc.prelude_norm = false;
    let looped = Looped::new(&cfg, 32, 8, 1, DType::F64, &CPU).unwrap();
    let gpt_cfg = ModelConfig {
        arch: Arch::Gpt,
        n_layers: 5,
        looped: None,
        ..cfg.clone()
    };
    let gpt = Gpt::new(&gpt_cfg, 32, 8, 2, DType::F64, &CPU).unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    for p in gpt.params().params() {
        // Random gains too, so a norm applied in the wrong place would show.
        let shape = p.var.dims().to_vec();
        p.var
            .set(&(p.var.as_tensor() + random_tensor(&mut rng, &shape, 0.3)).unwrap())
            .unwrap();
        let name = match p.name.strip_prefix("blocks.") {
            Some(rest) => {
                let (i, tail) = rest.split_once('.').unwrap();
                match i.parse::<usize>().unwrap() {
                    i @ 0..2 => format!("prelude.{i}.{tail}"),
                    2 => format!("core.0.{tail}"),
                    i => format!("coda.{}.{tail}", i - 3),
                }
            }
            None => p.name.clone(),
        };
        var(&looped, &name).set(p.var.as_tensor()).unwrap();
    }
    let (inputs, _) = ids(&mut rng, 2, 8, 32);
    let diff = (looped.logits(&inputs).unwrap() - gpt.logits(&inputs).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    println!("looped (1 add loop) vs GPT, tied={tie}: max logit difference {diff:e}");
    assert!(diff < 1e-12, "{diff}");
    // Sanity: a second loop changes the output, so the comparison is not vacuous.
    let two = (looped.logits_with_loops(&inputs, 2).unwrap() - gpt.logits(&inputs).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!(two > 1e-6);
}

// ---------------------------------------------------------------------------------------------
// (f) FLOPs by hand, (g) parameter counts against the built tensors

#[test]
fn looped_flops_match_a_hand_count() {
    // d = 8, 2 heads, ReLU² ×4, vocabulary 16, context 4, tied; 1 prelude + 1 core + 1 coda,
    // diagonal injection, r = d, μ_rec = 4, backprop depth 2.
    let cfg = ModelConfig {
        arch: Arch::Looped,
        d_model: 8,
        n_heads: 2,
        mlp: Mlp::Relu2,
        mlp_ratio: 4,
        tie_embeddings: true,
        // Learnable QK-norm gains, as in the GPT hand count.
        qk_norm_gain: true,
        looped: Some(LoopedConfig {
            n_prelude: 1,
            n_core: 1,
            n_coda: 1,
            recurrent_dim: None,
            injection: Injection::Diagonal,
            mean_recurrence: 4,
            backprop_depth: Some(2),
            depth_sampling: DepthSampling::Poisson,
            state_init: StateInit::Random,
            prelude_norm: true,
            test_loops: vec![1],
            loop_conditioning: Default::default(),
            ..LoopedConfig::default()
        }),
        ..ModelConfig::default()
    };
    // One block is 792 parameters (see tests/model_counts.rs).
    // Once per token: prelude 792 + coda 792 + final and prelude norms 8 + 8 + B 8·8 + C 8·8
    //   = 1728. Per loop: core 792 + A_log 8 + dt_bias 8 = 808. Embedding 16·8 = 128.
    let counts = param_counts(&cfg, 16);
    assert_eq!(counts.non_embedding, 1728 + 808);
    assert_eq!(counts.total, 1728 + 808 + 128);
    // A = 4·d·seq = 128. Training per token:
    //   6·1728 = 10368; 3·A·(1 + 1) = 768; (2·4 + 4·2)·808 = 12928; (4 + 2·2)·A·1 = 1024;
    //   head 6·8·16 = 768. Sum 25856.
    assert_eq!(train_flops_per_token(&cfg, 16, 4), 25856.0);
    // Forward at T loops: 2·1728 + A·2 + 2T·808 + T·A + 2·8·16 = 3968 + 1744·T.
    assert_eq!(
        forward_flops_per_token_at(&cfg, 16, 4, 8),
        3968.0 + 1744.0 * 8.0
    );
    assert_eq!(forward_flops_per_token(&cfg, 16, 4), 3968.0 + 1744.0 * 4.0);

    // Linear injection: W_e (8·8) once, W_h (8·8) per loop instead of A_log and dt_bias.
    let mut linear = cfg.clone();
    linear.looped.as_mut().unwrap().injection = Injection::Linear;
    let counts = param_counts(&linear, 16);
    assert_eq!(counts.non_embedding, 1728 + 856);
    assert_eq!(
        train_flops_per_token(&linear, 16, 4),
        10368.0 + 768.0 + 16.0 * 856.0 + 1024.0 + 768.0
    );

    // One loop with gradient, additive, no prelude norm: a 3-block GPT plus C (6·64 = 384).
    let mut one = cfg.clone();
    let lc = one.looped.as_mut().unwrap();
    (
        lc.injection,
        lc.mean_recurrence,
        lc.backprop_depth,
        lc.prelude_norm,
    ) = (Injection::Add, 1, None, false);
    let gpt = ModelConfig {
        arch: Arch::Gpt,
        n_layers: 3,
        looped: None,
        ..cfg.clone()
    };
    assert_eq!(
        train_flops_per_token(&one, 16, 4),
        train_flops_per_token(&gpt, 16, 4) + 384.0
    );
}

#[test]
fn looped_param_counts_equal_the_built_tensors() {
    for injection in [Injection::Diagonal, Injection::Add, Injection::Linear] {
        for recurrent_dim in [None, Some(8), Some(24)] {
            for (prelude_norm, tie) in [(true, true), (false, false)] {
                let mut cfg = looped_cfg(injection, recurrent_dim, 3);
                cfg.tie_embeddings = tie;
                let lc = cfg.looped.as_mut().unwrap();
                lc.prelude_norm = prelude_norm;
                (lc.n_prelude, lc.n_core, lc.n_coda) = (2, 2, 1);
                let model = Looped::new(&cfg, 40, 8, 0, DType::F32, &CPU).unwrap();
                let counts = param_counts(&cfg, 40);
                let built = model.params().element_count() as u64;
                assert_eq!(
                    counts.total, built,
                    "{injection:?} r={recurrent_dim:?} norm={prelude_norm} tie={tie}"
                );
                let embedding: usize = model
                    .params()
                    .params()
                    .iter()
                    .filter(|p| p.name == "token_embedding" || p.name == "lm_head")
                    .map(|p| p.var.elem_count())
                    .sum();
                assert_eq!(counts.non_embedding, built - embedding as u64);
            }
        }
    }
}

#[test]
fn injection_and_readout_parameters_are_not_decayed() {
    let model = Looped::new(
        &looped_cfg(Injection::Diagonal, None, 2),
        32,
        8,
        0,
        DType::F32,
        &CPU,
    )
    .unwrap();
    for name in [
        "injection.A_log",
        "injection.dt_bias",
        "injection.B",
        "readout.C",
    ] {
        let role = model.params().find(name).unwrap().role;
        assert_eq!(role, ParamRole::Recurrent, "{name}");
        assert!(!role.decayed(true), "{name}");
    }
    let matrix = model.params().find("core.0.attn.w_qkv").unwrap().role;
    assert_eq!(matrix, ParamRole::Matrix);
    assert!(matrix.decayed(false));
}
