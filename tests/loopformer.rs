//! LoopFormer (`loop_conditioning = "time_step"`, `train.shortcut_consistency`): gradients
//! through the time/step conditioning and the adaptive norms against finite differences, the
//! conditioned block's identity at init, the short trajectories' steps, the stop-gradient of the
//! consistency term, counts, sweep errors, and a tiny LoopFormer that learns.

use candle_core::{DType, Device, Tensor};
use loopscale::config::{DataConfig, RunConfig, Schedule, TrainConfig};
use loopscale::model::conditioning::{
    AdaptiveNorm, Trajectory, coarse_fine, sample_short_trajectory,
};
use loopscale::model::layers::{Block, BlockInit, Rope};
use loopscale::model::{
    Arch, DepthSampling, Init, Injection, LoopConditioning, LoopPlan, Looped, LoopedConfig, Mlp,
    ModelConfig, Param, ParamRole, ParamStore, StateInit, lm_loss, param_counts,
    shortcut_train_flops_per_token, train_flops_per_token,
};
use loopscale::sweep::Sweep;
use loopscale::train::objectives;
use loopscale::train::{RunEnd, train};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::common::{Recorder, central_differences, moby_dick};

const CPU: Device = Device::Cpu;

fn loopformer_cfg(injection: Injection, init: Init, mean_recurrence: usize) -> ModelConfig {
    ModelConfig {
        arch: Arch::Looped,
        d_model: 16,
        n_heads: 2,
        mlp: Mlp::Relu2,
        mlp_ratio: 2,
        init,
        looped: Some(LoopedConfig {
            n_prelude: 1,
            n_core: 2,
            n_coda: 1,
            injection,
            mean_recurrence,
            backprop_depth: Some(mean_recurrence),
            depth_sampling: DepthSampling::Fixed,
            state_init: StateInit::Random,
            test_loops: vec![1, 2, 4],
            loop_conditioning: LoopConditioning::TimeStep,
            ..LoopedConfig::default()
        }),
        ..ModelConfig::default()
    }
}

/// Moves the zero-initialised conditioning (adaptive norms, biases) to a generic point, so that
/// every factor of the modulated blocks has a gradient.
fn perturb_conditioning(model: &Looped, rng: &mut StdRng) {
    for p in model.params().params() {
        if p.role == ParamRole::Conditioning {
            let n = p.var.elem_count();
            let values: Vec<f64> = (0..n).map(|_| 0.3 * rng.random_range(-1.0..1.0)).collect();
            p.var
                .set(&Tensor::from_vec(values, p.var.shape(), &CPU).unwrap())
                .unwrap();
        }
    }
}

fn ids(rng: &mut StdRng, batch: usize, time: usize, vocab: u32) -> (Tensor, Tensor) {
    let mut draw = || -> Vec<u32> {
        (0..batch * time)
            .map(|_| rng.random_range(0..vocab))
            .collect()
    };
    let inputs = Tensor::from_vec(draw(), (batch, time), &CPU).unwrap();
    let targets = Tensor::from_vec(draw(), (batch, time), &CPU).unwrap();
    (inputs, targets)
}

/// Autograd against central differences at `per_var` entries of every parameter whose name
/// passes `only`; returns how many conditioning entries had a non-negligible gradient.
fn gradcheck(
    name: &str,
    model: &Looped,
    f: &dyn Fn() -> Tensor,
    per_var: usize,
    seed: u64,
) -> usize {
    // The conditioning gets more samples: it is what this test is about.
    let samples = |p: &Param| {
        if p.role == ParamRole::Conditioning {
            3 * per_var
        } else {
            per_var
        }
    };
    let checked = central_differences(name, model.params().params(), f, &samples, seed);
    let significant = checked.iter().filter(|e| e.scale > 1e-6);
    let worst = significant.clone().map(|e| e.rel).fold(0.0f64, f64::max);
    println!("{name}: max relative error {worst:.2e}");
    significant
        .filter(|e| e.role == ParamRole::Conditioning)
        .count()
}

#[test]
fn conditioning_and_adaptive_norm_gradients_match_finite_differences() {
    // A shared schedule with unequal steps, and per-sequence depths (3 and 2, Δt = 1/3 and 1/2,
    // the second masked out of the first loop): both ways a trajectory reaches the core.
    let plans = [
        (
            "schedule",
            LoopPlan::with_steps(2, vec![0.5, 0.25, 0.25], 3),
        ),
        ("per-sequence depths", LoopPlan::new(vec![3, 2], 3)),
    ];
    for (k, injection) in [Injection::Diagonal, Injection::None]
        .into_iter()
        .enumerate()
    {
        for (name, plan) in &plans {
            let cfg = loopformer_cfg(injection, Init::Gpt2, 3);
            let model = Looped::new(&cfg, 32, 6, k as u64, DType::F64, &CPU).unwrap();
            let mut rng = StdRng::seed_from_u64(7 + k as u64);
            perturb_conditioning(&model, &mut rng);
            let (inputs, targets) = ids(&mut rng, 2, 6, 32);
            let h0 = model.initial_state(2, 6, &mut rng).unwrap();
            let f =
                || lm_loss(&model.forward(&inputs, plan, &h0).unwrap().logits, &targets).unwrap();
            let significant = gradcheck(
                &format!("{injection:?}, {name}"),
                &model,
                &f,
                2,
                11 + k as u64,
            );
            // Embedders (w1, b1, w2, b2 for time and step) and two adaptive norms (w, b): 12
            // tensors × 6 samples. The rows of w1 fed by low-frequency sines (sin(t·f) ≈ 0 for
            // small f) carry almost no gradient; a forward-only op would leave none at all.
            assert!(
                significant >= 24,
                "{injection:?} {name}: only {significant} conditioning entries had a gradient"
            );
        }
    }
}

#[test]
fn a_conditioned_block_is_the_identity_at_init() {
    let cfg = ModelConfig {
        d_model: 16,
        n_heads: 2,
        mlp_ratio: 2,
        ..ModelConfig::default()
    };
    let mut params = ParamStore::new(0, DType::F64, &CPU);
    // Random output projections: the identity must come from the zero gates alone.
    let init = BlockInit {
        std: 0.3,
        out_std: Some(0.3),
        orthogonal: false,
    };
    let block = Block::new(&mut params, "b", &cfg, &init).unwrap();
    let norm = AdaptiveNorm::new(&mut params, "b.ada_norm", 16).unwrap();
    let rope = Rope::new(8, 6, DType::F64, &CPU).unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let x = Tensor::from_vec(
        (0..2 * 6 * 16)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect::<Vec<f64>>(),
        (2, 6, 16),
        &CPU,
    )
    .unwrap();
    let c = Tensor::from_vec(
        (0..2 * 16)
            .map(|_| rng.random_range(-3.0..3.0))
            .collect::<Vec<f64>>(),
        (2, 16),
        &CPU,
    )
    .unwrap();
    let out = block
        .run(&x, &rope, Some(&norm.forward(&c).unwrap()), None)
        .unwrap();
    assert_eq!(crate::common::max_abs_diff(&out, &x), 0.0);
    // The plain block with the same weights is not the identity (the test can fail).
    assert!(crate::common::max_abs_diff(&block.forward(&x, &rope).unwrap(), &x) > 1e-3);

    // The whole conditioned core at init, scaled-zero (random output projections, zero gates):
    // without an injection the state after any number of loops is the prelude's `e`.
    let model = Looped::new(
        &loopformer_cfg(Injection::None, Init::ScaledZero, 4),
        32,
        6,
        3,
        DType::F64,
        &CPU,
    )
    .unwrap();
    let (inputs, _) = ids(&mut rng, 2, 6, 32);
    let h0 = model.initial_state(2, 6, &mut rng).unwrap();
    let state = |loops: usize| {
        model
            .forward(&inputs, &LoopPlan::uniform(2, loops), &h0)
            .unwrap()
            .state
    };
    assert_eq!(crate::common::max_abs_diff(&state(1), &state(5)), 0.0);
}

#[test]
fn short_trajectory_steps_always_sum_to_one() {
    let mut rng = StdRng::seed_from_u64(5);
    for l in 2..=16usize {
        let mut lengths = std::collections::BTreeSet::new();
        for _ in 0..300 {
            let steps = sample_short_trajectory(l, &mut rng);
            assert!(
                (1..l).contains(&steps.len()),
                "L = {l}: length {} outside 1..{}",
                steps.len(),
                l - 1
            );
            let units: Vec<f64> = steps.iter().map(|s| s * l as f64).collect();
            for u in &units {
                assert!(
                    (u - u.round()).abs() < 1e-9 && u.round() >= 1.0,
                    "L = {l}: step {u}/L is not in {{k/L}}"
                );
            }
            assert_eq!(units.iter().map(|u| u.round() as usize).sum::<usize>(), l);
            assert!(
                (steps.iter().sum::<f64>() - 1.0).abs() < 1e-12,
                "L = {l}: {steps:?}"
            );
            lengths.insert(steps.len());
        }
        assert_eq!(
            lengths.len(),
            l - 1,
            "L = {l}: every length 1..L−1 is drawn"
        );
    }
    // The named inference schedules too, at budgets below, at and above the training depth.
    for l in [4usize, 8] {
        for m in 1..=2 * l {
            for s in Trajectory::ALL {
                let steps = s.steps(m, l);
                assert_eq!(steps.len(), m);
                assert!(
                    (steps.iter().sum::<f64>() - 1.0).abs() < 1e-12,
                    "{s:?} M={m} L={l}: {steps:?}"
                );
            }
            let cf = coarse_fine(m, l);
            assert!(
                cf.windows(2).all(|w| w[0] >= w[1]),
                "coarse_fine is larger first: {cf:?}"
            );
        }
        assert_eq!(coarse_fine(l, l), vec![1.0 / l as f64; l]);
    }
    assert_eq!(coarse_fine(3, 8), vec![0.5, 0.375, 0.125]);
    assert_eq!(coarse_fine(2, 8), vec![0.625, 0.375]);
}

/// Gradients of `loss` by parameter name.
fn grads(model: &Looped, loss: &Tensor) -> Vec<Vec<f64>> {
    let g = loss.backward().unwrap();
    model
        .params()
        .params()
        .iter()
        .map(|p| match g.get(&p.var) {
            Some(t) => t.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
            None => vec![0.0; p.var.elem_count()],
        })
        .collect()
}

fn largest_difference(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn consistency_gradient_does_not_reach_the_long_trajectory() {
    let cfg = loopformer_cfg(Injection::None, Init::Gpt2, 4);
    let model = Looped::new(&cfg, 32, 6, 9, DType::F64, &CPU).unwrap();
    let mut rng = StdRng::seed_from_u64(9);
    perturb_conditioning(&model, &mut rng);
    let (inputs, targets) = ids(&mut rng, 2, 6, 32);
    let h0 = model.initial_state(2, 6, &mut rng).unwrap();
    let short = vec![0.5, 0.25, 0.25];
    let out =
        objectives::shortcut_loss(&model, &inputs, &targets, &h0, short.clone(), 0.1, 0.1).unwrap();

    // The consistency term's gradient is that of MSE(constant, h_short): the long trajectory's
    // hidden state enters as a constant (a fresh tensor with no graph behind it).
    let got = grads(&model, &out.mse);
    let long_values = Tensor::from_vec(
        out.long
            .hidden
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap(),
        out.long.hidden.shape(),
        &CPU,
    )
    .unwrap();
    let short_out = model
        .forward(&inputs, &LoopPlan::with_steps(2, short, 4), &h0)
        .unwrap();
    let reference = (long_values - &short_out.hidden)
        .unwrap()
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap();
    let want = grads(&model, &reference);
    assert!(
        largest_difference(&got, &want) < 1e-12,
        "consistency gradient differs: {}",
        largest_difference(&got, &want)
    );
    // Without the stop-gradient it would differ (so this test can fail).
    let both = (&out.long.hidden - &short_out.hidden)
        .unwrap()
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap();
    assert!(largest_difference(&grads(&model, &both), &want) > 1e-6);

    // The whole objective is CE_long + 0.1·CE_short + 0.1·MSE term by term, and CE_long is the
    // loss of a plain uniform forward at L loops.
    let total = grads(&model, &out.total);
    let parts: Vec<Vec<f64>> = grads(&model, &out.ce_long)
        .into_iter()
        .zip(grads(&model, &out.ce_short))
        .zip(got)
        .map(|((a, b), c)| {
            a.iter()
                .zip(&b)
                .zip(&c)
                .map(|((a, b), c)| a + 0.1 * b + 0.1 * c)
                .collect()
        })
        .collect();
    assert!(largest_difference(&total, &parts) < 1e-12);
    let plain = lm_loss(
        &model
            .forward(&inputs, &LoopPlan::uniform(2, 4), &h0)
            .unwrap()
            .logits,
        &targets,
    )
    .unwrap();
    let diff = (plain.to_scalar::<f64>().unwrap() - out.ce_long.to_scalar::<f64>().unwrap()).abs();
    assert!(diff < 1e-12);
}

#[test]
fn loopformer_counts_match_the_built_model() {
    for injection in [Injection::None, Injection::Diagonal] {
        let cfg = loopformer_cfg(injection, Init::ScaledZero, 4);
        let model = Looped::new(&cfg, 40, 8, 0, DType::F32, &CPU).unwrap();
        assert_eq!(
            param_counts(&cfg, 40).total as usize,
            model.params().element_count(),
            "{injection:?}"
        );
    }
    // Shortcut consistency: one short trajectory of mean length L/2 on top of the long one.
    // With full backprop and the coda and head small next to the core, about 1.5×.
    let mut cfg = loopformer_cfg(Injection::None, Init::ScaledZero, 8);
    if let Some(l) = cfg.looped.as_mut() {
        (l.n_prelude, l.n_coda) = (0, 0);
    }
    cfg.d_model = 64;
    let (plain, shortcut) = (
        train_flops_per_token(&cfg, 16, 64),
        shortcut_train_flops_per_token(&cfg, 16, 64),
    );
    let ratio = shortcut / plain;
    assert!((1.45..1.55).contains(&ratio), "shortcut/plain = {ratio}");
}

fn sweep_error(body: &str) -> String {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sweeps/inline.toml");
    let text =
        format!("[sweep]\nname = \"t\"\n[data]\ncorpus = \"tiny_corpus.txt\"\nseq_len = 8\n{body}");
    match Sweep::from_str(&text, &path) {
        Ok(s) => panic!("expected an error, got {} runs for:\n{text}", s.runs.len()),
        Err(e) => {
            let shown = e.to_string();
            eprintln!("{shown}\n");
            assert!(shown.contains("inline.toml"), "no file name in:\n{shown}");
            shown
        }
    }
}

fn assert_has(shown: &str, parts: &[&str]) {
    for p in parts {
        assert!(shown.contains(p), "missing {p:?} in:\n{shown}");
    }
}

#[test]
fn shortcut_consistency_on_a_gpt_is_refused_with_file_key_and_expected_value() {
    let shown = sweep_error(
        "[train]\ntokens = 1000\nshortcut_consistency = true\n[model]\narch = \"gpt\"\n",
    );
    assert_has(
        &shown,
        &[
            "inline.toml:8:1",
            "shortcut_consistency",
            "`model.arch` = \"looped\"",
            "found \"gpt\"",
            "help:",
        ],
    );
}

#[test]
fn unknown_loop_conditioning_is_refused_with_the_values_expected() {
    let shown = sweep_error("[model]\narch = \"looped\"\nloop_conditioning = \"time\"\n");
    assert_has(
        &shown,
        &[
            "inline.toml:8:",
            "model.loop_conditioning",
            "none",
            "time_step",
            "\"time\"",
            "help:",
        ],
    );
}

#[test]
fn shortcut_consistency_needs_fixed_depth_and_two_loops() {
    let shown = sweep_error(
        "[train]\nshortcut_consistency = true\n[model]\narch = \"looped\"\nmean_recurrence = 4\n",
    );
    assert_has(
        &shown,
        &[
            "shortcut_consistency",
            "`model.depth_sampling` = \"fixed\"",
            "help:",
        ],
    );
    let shown = sweep_error(
        "[train]\nshortcut_consistency = true\n[model]\narch = \"looped\"\ndepth_sampling = \"fixed\"\nmean_recurrence = 1\n",
    );
    assert_has(
        &shown,
        &["inline.toml:11:", "model.mean_recurrence", "≥ 2", "found 1"],
    );
}

#[test]
fn default_keys_leave_run_keys_unchanged() {
    // The new keys at their defaults are absent from the canonical form, so every existing run
    // keeps its key; written explicitly at their defaults they change nothing either.
    let base = RunConfig {
        data: DataConfig::default(),
        train: TrainConfig::default(),
        model: loopformer_cfg(Injection::Diagonal, Init::ScaledZero, 4),
        seed: 0,
        lineage: None,
    };
    let json = base.canonical_json();
    assert!(!json.contains("shortcut"), "{json}");
    let mut plain = base.clone();
    plain.model.looped.as_mut().unwrap().loop_conditioning = LoopConditioning::None;
    assert!(!plain.canonical_json().contains("loop_conditioning"));
    assert!(json.contains("\"loop_conditioning\":\"time_step\""));
    let mut shortcut = base.clone();
    shortcut.train.shortcut_consistency = true;
    assert_ne!(shortcut.key(), base.key());
    assert!(!shortcut.canonical_json().contains("lambda"));
}

fn loopformer_run(steps: u64, shortcut: bool) -> RunConfig {
    let mut model = loopformer_cfg(Injection::None, Init::ScaledZero, 4);
    model.d_model = 32;
    if let Some(l) = model.looped.as_mut() {
        l.n_core = 1;
        l.test_loops = vec![1, 2, 4];
    }
    RunConfig {
        data: DataConfig {
            seq_len: 32,
            ..DataConfig::default()
        },
        train: TrainConfig {
            tokens: steps * 8 * 32,
            batch_size: 8,
            lr: 1e-2,
            schedule: Schedule::Cosine,
            eval_every: 0,
            eval_tokens: 2048,
            log_every: 5,
            shortcut_consistency: shortcut,
            ..TrainConfig::default()
        },
        model,
        seed: 0,
        lineage: None,
    }
}

#[test]
fn a_tiny_loopformer_learns_and_is_evaluated_along_each_schedule() {
    let corpus = moby_dick(200_000, 32);
    let cfg = loopformer_run(60, true);
    let mut rec = Recorder::default();
    let outcome = train(&cfg, &corpus, &CPU, &mut rec).unwrap();
    assert_eq!(outcome.end, RunEnd::Done);
    let first = rec.steps[0].train_loss;
    let last = rec.steps.last().unwrap().train_loss;
    let val = outcome.final_val_loss.unwrap();
    for s in &rec.steps {
        println!("step {:>3} CE_long {:.3}", s.step, s.train_loss);
    }
    for e in &rec.evals {
        println!(
            "eval test_loops {:?} schedule {:?} val {:.3}",
            e.test_loops, e.schedule, e.val_loss
        );
    }
    assert!(
        last < first - 1.0,
        "CE_long fell only from {first:.3} to {last:.3}"
    );
    assert!(
        val < corpus.unigram_entropy_nats(),
        "val {val:.3} not below the unigram entropy"
    );
    // One eval per budget and schedule, plus the training-depth one.
    let budget_evals: Vec<_> = rec
        .evals
        .iter()
        .filter(|e| e.test_loops.is_some())
        .collect();
    assert_eq!(budget_evals.len(), 3 * 2);
    for m in [1, 2, 4] {
        for s in ["uniform", "coarse_fine"] {
            assert!(
                budget_evals
                    .iter()
                    .any(|e| e.test_loops == Some(m) && e.schedule.as_deref() == Some(s))
            );
        }
    }
    // At the training depth the uniform schedule is the training-depth evaluation.
    let at = |m, s: &str| {
        budget_evals
            .iter()
            .find(|e| e.test_loops == Some(m) && e.schedule.as_deref() == Some(s))
            .unwrap()
            .val_loss
    };
    assert!((at(4, "uniform") - val).abs() < 1e-6);
    assert!(
        (at(4, "coarse_fine") - val).abs() < 1e-6,
        "coarse_fine at M = L is uniform"
    );
    // The FLOPs recorded are the shortcut count, above a plain step's.
    let plain = loopformer_run(60, false).train_flops_per_token();
    assert!(outcome.flops > 1.2 * plain * outcome.tokens as f64);
}
