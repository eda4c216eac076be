//! LoopUS recasting: a GPT trained here for a few dozen steps becomes a looped model whose one
//! loop is the GPT; the automatic split; the selective gate's and confidence head's gradients;
//! random deep supervision's draws; early exit; a recast model that trains; bad input refused.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use loopscale::config::{DataConfig, DeepSupervision, RunConfig, Schedule, TrainConfig};
use loopscale::model::grad::no_grad;
use loopscale::model::loopus::draw_supervised_loops;
use loopscale::model::recast::{
    Split, block_dynamics, choose_core, init_from_gpt, parent_name, recast_config,
};
use loopscale::model::{
    Arch, DepthSampling, Gpt, Injection, LoopGate, LoopPlan, Looped, LoopedConfig, Mlp,
    ModelConfig, Param, RecastSplit, StateInit,
};
use loopscale::train::objectives;
use loopscale::train::{
    Batch, Corpus, RunEnd, build_recast_model, evaluate, evaluate_at_loops, evaluate_exit,
    indexed_rng, train_model,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::common::{Recorder, central_differences, max_abs_diff, moby_dick};

const CPU: Device = Device::Cpu;
const SEQ: usize = 32;

fn gpt_run(n_layers: usize, steps: u64) -> RunConfig {
    RunConfig {
        data: DataConfig {
            seq_len: SEQ,
            ..DataConfig::default()
        },
        train: TrainConfig {
            tokens: steps * 8 * SEQ as u64,
            batch_size: 8,
            lr: 2e-2,
            schedule: Schedule::Cosine,
            eval_every: 0,
            eval_tokens: 2048,
            log_every: 1,
            ..TrainConfig::default()
        },
        model: ModelConfig {
            d_model: 32,
            n_heads: 2,
            n_layers,
            mlp: Mlp::Relu2,
            mlp_ratio: 2,
            ..ModelConfig::default()
        },
        seed: 3,
        lineage: None,
    }
}

/// A looped child of `parent` with `n_prelude + n_core + n_coda` = the parent's blocks.
fn child_run(parent: &RunConfig, looped: LoopedConfig) -> RunConfig {
    let mut cfg = parent.clone();
    cfg.model.arch = Arch::Looped;
    cfg.model.looped = Some(looped);
    cfg.seed = 11;
    cfg
}

fn looped(split: (usize, usize, usize), injection: Injection) -> LoopedConfig {
    LoopedConfig {
        n_prelude: split.0,
        n_core: split.1,
        n_coda: split.2,
        injection,
        mean_recurrence: 2,
        depth_sampling: DepthSampling::Fixed,
        state_init: StateInit::Zero,
        prelude_norm: false,
        test_loops: vec![1, 2, 3],
        ..LoopedConfig::default()
    }
}

/// Trains the parent GPT and writes its parameters as a checkpoint would (`param.<name>`).
fn trained_parent(dir: &Path, cfg: &RunConfig, corpus: &Corpus) -> (Gpt, std::path::PathBuf) {
    let gpt = Gpt::new(
        &cfg.model,
        corpus.vocab_size(),
        SEQ,
        cfg.seed,
        DType::F32,
        &CPU,
    )
    .unwrap();
    let outcome = train_model(&gpt, cfg, corpus, &CPU, &mut Recorder::default()).unwrap();
    assert_eq!(outcome.end, RunEnd::Done);
    let tensors: HashMap<String, Tensor> = gpt
        .params()
        .params()
        .iter()
        .map(|p| (format!("param.{}", p.name), p.var.as_tensor().clone()))
        .collect();
    let path = dir.join("ckpt-000000040.safetensors");
    candle_core::safetensors::save(&tensors, &path).unwrap();
    (gpt, path)
}

fn val(corpus: &Corpus, cfg: &RunConfig) -> Vec<Batch> {
    corpus
        .validation_batches(SEQ, 8, cfg.train.eval_tokens, &CPU)
        .unwrap()
}

#[test]
fn a_recast_gpt_at_one_loop_is_its_parent() {
    let corpus = moby_dick(120_000, SEQ);
    let dir = tempfile::tempdir().unwrap();
    let parent_cfg = gpt_run(4, 40);
    let (gpt, ckpt) = trained_parent(dir.path(), &parent_cfg, &corpus);
    let batches = val(&corpus, &parent_cfg);
    let parent_loss = evaluate(&gpt, &batches).unwrap();
    println!("parent GPT val loss {parent_loss:.5}");

    // Exact cases: no prelude norm, no gate, the first loop's input is e.
    for (injection, tol) in [
        (Injection::None, 1e-4),
        (Injection::Add, 1e-4),
        (Injection::Diagonal, 1e-4),
        (Injection::Linear, 1e-4),
    ] {
        let mut l = looped((1, 2, 1), injection);
        l.recast_split = Some(RecastSplit::Blocks([1, 3]));
        let cfg = child_run(&parent_cfg, l);
        let (model, choice) = build_recast_model(&cfg, &parent_cfg, &ckpt, &corpus, &CPU).unwrap();
        assert_eq!(choice.split, Split { start: 1, end: 3 });
        assert!(choice.dynamics.is_none());
        let one = evaluate_at_loops(&model, &batches, 1).unwrap();
        println!(
            "{injection:?}: recast at 1 loop {one:.5} (Δ {:.2e})",
            one - parent_loss
        );
        assert!(
            (one - parent_loss).abs() < tol,
            "{injection:?}: {one} vs {parent_loss}"
        );
        // The logits themselves, not only their loss.
        let ids = &batches[0].inputs;
        let diff = no_grad(|| {
            max_abs_diff(
                &gpt.logits(ids).unwrap(),
                &model.logits_with_loops(ids, 1).unwrap(),
            )
        });
        assert!(diff < 1e-3, "{injection:?}: logits differ by {diff}");
    }

    // What differs, measured: the gate's leak, a random h0, the prelude norm.
    let mut variants: Vec<(&str, LoopedConfig)> = Vec::new();
    let mut gated = looped((1, 2, 1), Injection::None);
    gated.loop_gate = LoopGate::Selective;
    variants.push(("selective gate (leak 1e-3)", gated));
    let mut random = looped((1, 2, 1), Injection::Add);
    random.state_init = StateInit::Random;
    variants.push(("add, random h0", random));
    let mut normed = looped((1, 2, 1), Injection::None);
    normed.prelude_norm = true;
    variants.push(("prelude norm", normed));
    for (what, mut l) in variants {
        l.recast_split = Some(RecastSplit::Blocks([1, 3]));
        let cfg = child_run(&parent_cfg, l);
        let (model, _) = build_recast_model(&cfg, &parent_cfg, &ckpt, &corpus, &CPU).unwrap();
        let one = evaluate_at_loops(&model, &batches, 1).unwrap();
        println!(
            "{what}: recast at 1 loop {one:.5} (Δ {:+.2e})",
            one - parent_loss
        );
        if what.starts_with("selective") {
            assert!(
                (one - parent_loss).abs() < 1e-2,
                "{what}: {one} vs {parent_loss}"
            );
        }
    }
}

#[test]
fn the_mapping_puts_each_gpt_tensor_in_its_place() {
    let split = Split { start: 1, end: 3 };
    assert_eq!(
        parent_name("prelude.0.attn.w_qkv", split).unwrap(),
        "blocks.0.attn.w_qkv"
    );
    assert_eq!(
        parent_name("core.0.mlp.w_in", split).unwrap(),
        "blocks.1.mlp.w_in"
    );
    assert_eq!(
        parent_name("core.1.attn_norm.gain", split).unwrap(),
        "blocks.2.attn_norm.gain"
    );
    assert_eq!(
        parent_name("coda.0.mlp.w_out", split).unwrap(),
        "blocks.3.mlp.w_out"
    );
    assert_eq!(
        parent_name("token_embedding", split).unwrap(),
        "token_embedding"
    );
    assert_eq!(
        parent_name("final_norm.gain", split).unwrap(),
        "final_norm.gain"
    );
    for looped_only in [
        "readout.C",
        "injection.B",
        "gate.W_up",
        "exit_head.w",
        "prelude_norm.gain",
    ] {
        assert_eq!(parent_name(looped_only, split), None, "{looped_only}");
    }

    // On real models: a random GPT (gpt2 init: no zero matrices) recast with [1, 3).
    let mut gpt_cfg = gpt_run(4, 1).model;
    gpt_cfg.init = loopscale::model::Init::Gpt2;
    let gpt = Gpt::new(&gpt_cfg, 64, SEQ, 5, DType::F32, &CPU).unwrap();
    let parent: HashMap<String, Tensor> = gpt
        .params()
        .params()
        .iter()
        .map(|p| (p.name.clone(), p.var.as_tensor().clone()))
        .collect();
    let mut child = gpt_cfg.clone();
    child.arch = Arch::Looped;
    let mut l = looped((2, 2, 2), Injection::Diagonal);
    l.loop_gate = LoopGate::Selective;
    l.exit_head = true;
    child.looped = Some(l);
    let cfg = recast_config(&gpt_cfg, &child, split).unwrap();
    let lc = cfg.looped.as_ref().unwrap();
    assert_eq!((lc.n_prelude, lc.n_core, lc.n_coda), (1, 2, 1));
    let model = Looped::new(&cfg, 64, SEQ, 9, DType::F32, &CPU).unwrap();
    let copied = init_from_gpt(&model, &parent, split).unwrap();
    assert_eq!(copied.len(), parent.len(), "every GPT tensor is used once");
    let get = |name: &str| model.params().find(name).unwrap().var.as_tensor().clone();
    for (child_name, parent_name) in [
        ("prelude.0.attn.w_qkv", "blocks.0.attn.w_qkv"),
        ("core.0.attn.w_out", "blocks.1.attn.w_out"),
        ("core.1.mlp.w_in", "blocks.2.mlp.w_in"),
        ("coda.0.mlp.w_out", "blocks.3.mlp.w_out"),
        ("token_embedding", "token_embedding"),
    ] {
        assert_eq!(
            max_abs_diff(&get(child_name), &parent[parent_name]),
            0.0,
            "{child_name}"
        );
    }
    let c = get("readout.C");
    assert_eq!(
        max_abs_diff(&c, &Tensor::eye(32, DType::F32, &CPU).unwrap()),
        0.0
    );
    // Diagonal: Δ = softplus(dt_bias) = 1.
    let dt: Vec<f32> = get("injection.dt_bias").to_vec1().unwrap();
    assert!(
        dt.iter()
            .all(|&x| ((x as f64).exp().ln_1p() - 1.0).abs() < 1e-6)
    );
}

#[test]
fn the_automatic_split_takes_the_blocks_that_change_the_stream_least() {
    // The window rule on its own.
    let r = [0.9, 0.5, 0.1, 0.1, 0.6, 0.8];
    assert_eq!(choose_core(&r, 2).unwrap(), Split { start: 2, end: 4 });
    assert_eq!(choose_core(&r, 3).unwrap(), Split { start: 1, end: 4 });
    // One prelude and one coda block are kept when there is room: the lowest block is 0 here.
    assert_eq!(
        choose_core(&[0.0, 0.5, 0.4, 0.9], 1).unwrap(),
        Split { start: 2, end: 3 }
    );
    // Ties: the earliest window.
    assert_eq!(
        choose_core(&[1.0, 0.2, 0.2, 0.2, 1.0], 1).unwrap(),
        Split { start: 1, end: 2 }
    );
    assert!(choose_core(&r, 7).is_err());
    assert!(choose_core(&r, 0).is_err());

    // A constructed GPT: scaled-zero blocks are the identity (zero output projections) until
    // their output projections are set, so only blocks 0, 1 and 4 of 6 change the stream.
    let mut cfg = gpt_run(6, 1).model;
    cfg.d_model = 16;
    let gpt = Gpt::new(&cfg, 64, SEQ, 1, DType::F32, &CPU).unwrap();
    let mut rng = StdRng::seed_from_u64(2);
    for block in [0, 1, 4, 5] {
        for w in ["attn.w_out", "mlp.w_out"] {
            let p = gpt.params().find(&format!("blocks.{block}.{w}")).unwrap();
            let n = p.var.elem_count();
            let values: Vec<f32> = (0..n).map(|_| rng.random_range(-0.3..0.3)).collect();
            p.var
                .set(&Tensor::from_vec(values, p.var.shape(), &CPU).unwrap())
                .unwrap();
        }
    }
    let ids = Tensor::from_vec(
        (0..4 * SEQ as u32)
            .map(|i| (i * 7) % 64)
            .collect::<Vec<u32>>(),
        (4, SEQ),
        &CPU,
    )
    .unwrap();
    let dynamics = no_grad(|| block_dynamics(&gpt, &[ids])).unwrap();
    println!("relative change per block: {:?}", dynamics.relative_change);
    assert!(dynamics.relative_change[2] < 1e-6 && dynamics.relative_change[3] < 1e-6);
    assert!(dynamics.cosine[2] > 1.0 - 1e-5);
    assert!(dynamics.relative_change[0] > 1e-2);
    assert_eq!(
        choose_core(&dynamics.relative_change, 2).unwrap(),
        Split { start: 2, end: 4 }
    );
}

/// A small f64 looped model with the gate and the confidence head, their zero-initialised
/// parts moved to a generic point so every factor has a gradient.
fn loopus_model(injection: Injection, seed: u64) -> Looped {
    let mut l = looped((1, 1, 1), injection);
    l.loop_gate = LoopGate::Selective;
    l.exit_head = true;
    l.state_init = StateInit::Random;
    let cfg = ModelConfig {
        arch: Arch::Looped,
        d_model: 16,
        n_heads: 2,
        mlp: Mlp::Relu2,
        mlp_ratio: 2,
        init: loopscale::model::Init::Gpt2,
        looped: Some(l),
        ..ModelConfig::default()
    };
    let model = Looped::new(&cfg, 32, 6, seed, DType::F64, &CPU).unwrap();
    let mut rng = StdRng::seed_from_u64(seed + 100);
    for p in model.params().params() {
        if p.name.starts_with("gate.") || p.name.starts_with("exit_head.") {
            let n = p.var.elem_count();
            let values: Vec<f64> = (0..n).map(|_| 0.5 * rng.random_range(-1.0..1.0)).collect();
            p.var
                .set(&Tensor::from_vec(values, p.var.shape(), &CPU).unwrap())
                .unwrap();
        }
    }
    model
}

#[test]
fn gate_and_confidence_head_gradients_match_finite_differences() {
    for (k, injection) in [Injection::None, Injection::Diagonal]
        .into_iter()
        .enumerate()
    {
        let model = loopus_model(injection, k as u64);
        let mut rng = StdRng::seed_from_u64(40 + k as u64);
        let draw =
            |rng: &mut StdRng| -> Vec<u32> { (0..12).map(|_| rng.random_range(0..32)).collect() };
        let inputs = Tensor::from_vec(draw(&mut rng), (2, 6), &CPU).unwrap();
        let targets = Tensor::from_vec(draw(&mut rng), (2, 6), &CPU).unwrap();
        let h0 = model.initial_state(2, 6, &mut rng).unwrap();
        // Gradient through every loop: with injection `none` the prelude reaches the loss only
        // through the state it starts, which truncated backprop would detach.
        let plan = LoopPlan::new(vec![3, 2], 3);
        // The LM loss through the gate, at every parameter but the head's; the total loss
        // (LM + the head's cross-entropy) at the head's. The head reads detached inputs, so the
        // total's finite differences elsewhere see a dependence autograd rightly does not.
        let is_loopus = |p: &Param| p.name.starts_with("gate.") || p.name.starts_with("exit_head.");
        let lm = || {
            let logits = model.forward(&inputs, &plan, &h0).unwrap().logits;
            loopscale::model::lm_loss(&logits, &targets).unwrap()
        };
        let lm_samples = |p: &Param| match p.name.starts_with("exit_head.") {
            true => 0,
            false if is_loopus(p) => 6,
            false => 1,
        };
        let name = format!("loopus {injection:?}");
        let mut checked = central_differences(&name, model.params().params(), &lm, &lm_samples, 5);
        let total = || {
            objectives::supervised_loss(&model, &inputs, &targets, &plan, &h0)
                .unwrap()
                .loss
        };
        let head_samples = |p: &Param| usize::from(p.name.starts_with("exit_head.")) * 6;
        checked.extend(central_differences(
            &name,
            model.params().params(),
            &total,
            &head_samples,
            6,
        ));
        let significant = checked.iter().filter(|e| e.scale > 1e-6).count();
        println!(
            "{name}: {significant} of {} entries with a gradient",
            checked.len()
        );
        // The gate's and the head's gradients are there (not silently cut).
        let gate_grads = model
            .params()
            .params()
            .iter()
            .filter(|p| p.name.starts_with("gate.") || p.name.starts_with("exit_head."))
            .count();
        assert!(gate_grads == 7, "gate 4 tensors + head 3: {gate_grads}");
        assert!(significant > checked.len() / 2);
    }
}

#[test]
fn deep_supervision_draws_are_fixed_by_seed_and_step() {
    for mu in [1, 3, 8] {
        let draws: Vec<usize> = (0..400)
            .map(|step| draw_supervised_loops(mu, &mut indexed_rng(17, step)))
            .collect();
        let again: Vec<usize> = (0..400)
            .map(|step| draw_supervised_loops(mu, &mut indexed_rng(17, step)))
            .collect();
        assert_eq!(draws, again);
        let other: Vec<usize> = (0..400)
            .map(|step| draw_supervised_loops(mu, &mut indexed_rng(18, step)))
            .collect();
        if mu > 1 {
            assert_ne!(draws, other, "another seed, other draws");
        }
        let top = 2 * mu - 1;
        assert!(draws.iter().all(|&k| (1..=top).contains(&k)));
        for k in 1..=top {
            assert!(draws.contains(&k), "μ = {mu}: {k} never drawn");
        }
        let mean = draws.iter().sum::<usize>() as f64 / draws.len() as f64;
        assert!(
            (mean - mu as f64).abs() < 0.1 * mu as f64 + 0.05,
            "μ = {mu}: mean {mean}"
        );
    }
}

#[test]
fn early_exit_bounds_are_one_loop_and_every_loop() {
    let model = loopus_model(Injection::None, 3);
    let mut rng = StdRng::seed_from_u64(9);
    let draw: Vec<u32> = (0..24).map(|_| rng.random_range(0..32)).collect();
    let inputs = Tensor::from_vec(draw[..12].to_vec(), (2, 6), &CPU).unwrap();
    let targets = Tensor::from_vec(draw[12..].to_vec(), (2, 6), &CPU).unwrap();
    let batches = [Batch::dense(inputs, targets).unwrap()];
    // Confidence is in (0, 1): threshold 0 exits after the first loop, 1 never exits.
    let (first, loops) = evaluate_exit(&model, &batches, 4, 0.0).unwrap();
    assert_eq!(loops, 1.0);
    let one = evaluate_at_loops(&model, &batches, 1).unwrap();
    assert!((first - one).abs() < 1e-9, "{first} vs {one}");
    let (last, loops) = evaluate_exit(&model, &batches, 4, 1.0).unwrap();
    assert_eq!(loops, 4.0);
    let four = evaluate_at_loops(&model, &batches, 4).unwrap();
    assert!((last - four).abs() < 1e-9, "{last} vs {four}");
    let (_, loops) = evaluate_exit(&model, &batches, 4, 0.5).unwrap();
    assert!((1.0..=4.0).contains(&loops));
}

#[test]
fn a_recast_model_with_loopus_training_learns_and_reports_exits() {
    let corpus = moby_dick(120_000, SEQ);
    let dir = tempfile::tempdir().unwrap();
    let parent_cfg = gpt_run(4, 30);
    let (_, ckpt) = trained_parent(dir.path(), &parent_cfg, &corpus);
    let mut l = looped((1, 2, 1), Injection::None);
    l.loop_gate = LoopGate::Selective;
    l.exit_head = true;
    l.exit_thresholds = vec![0.5, 0.9];
    l.mean_recurrence = 2;
    let mut cfg = child_run(&parent_cfg, l);
    cfg.train.deep_supervision = DeepSupervision::Random;
    cfg.train.tokens = 30 * 8 * SEQ as u64;
    cfg.train.lr = 5e-3;
    let (model, choice) = build_recast_model(&cfg, &parent_cfg, &ckpt, &corpus, &CPU).unwrap();
    for line in choice.describe() {
        println!("{line}");
    }
    assert!(choice.dynamics.is_some(), "no recast_split: automatic");
    let batches = val(&corpus, &cfg);
    let before = evaluate_at_loops(&model, &batches, 2).unwrap();
    let mut rec = Recorder::default();
    let outcome = train_model(&model, &cfg, &corpus, &CPU, &mut rec).unwrap();
    assert_eq!(outcome.end, RunEnd::Done);
    let after = evaluate_at_loops(&model, &batches, 2).unwrap();
    println!("val loss at 2 loops: {before:.4} → {after:.4}");
    assert!(after < before, "{before} → {after}");
    // Two thresholds at two caps: the training depth (2) and the deepest test_loops (3).
    assert_eq!(rec.exits.len(), 4);
    for e in &rec.exits {
        println!(
            "threshold {} (at most {} loops): mean loops {:.3}, loss {:.4}",
            e.threshold, e.max_loops, e.mean_loops, e.val_loss
        );
        assert!([2, 3].contains(&e.max_loops), "{}", e.max_loops);
        assert!((1.0..=e.max_loops as f64).contains(&e.mean_loops) && e.val_loss.is_finite());
    }
    for cap in [2, 3] {
        assert_eq!(rec.exits.iter().filter(|e| e.max_loops == cap).count(), 2);
    }
    assert_eq!(
        rec.evals.iter().filter(|e| e.test_loops.is_some()).count(),
        3,
        "loss vs loops at test_loops"
    );
}

#[test]
fn recasting_refuses_what_does_not_fit() {
    let gpt = gpt_run(4, 1).model;
    let mut child = gpt.clone();
    child.arch = Arch::Looped;
    child.looped = Some(looped((1, 2, 1), Injection::None));
    let err = |r: Result<ModelConfig, String>| r.unwrap_err();
    assert!(err(recast_config(&gpt, &child, Split { start: 2, end: 5 })).contains("past"));
    assert!(err(recast_config(&gpt, &child, Split { start: 2, end: 2 })).contains("empty"));
    assert!(err(recast_config(&child, &child, Split { start: 1, end: 3 })).contains("GPT"));
    assert!(err(recast_config(&gpt, &gpt, Split { start: 1, end: 3 })).contains("looped"));
    let mut wide = child.clone();
    wide.d_model = 64;
    assert!(err(recast_config(&gpt, &wide, Split { start: 1, end: 3 })).contains("d_model"));
    let mut narrow = child.clone();
    narrow.looped.as_mut().unwrap().recurrent_dim = Some(16);
    assert!(
        err(recast_config(&gpt, &narrow, Split { start: 1, end: 3 })).contains("recurrent_dim")
    );

    // The entry point: blocks that do not add up, a parent that is not a GPT, a missing file.
    let corpus = moby_dick(20_000, SEQ);
    let dir = tempfile::tempdir().unwrap();
    let parent_cfg = gpt_run(4, 1);
    let mut cfg = child_run(&parent_cfg, looped((1, 1, 1), Injection::None));
    let missing = dir.path().join("ckpt-000000001.safetensors");
    let e = build_recast_model(&cfg, &parent_cfg, &missing, &corpus, &CPU)
        .err()
        .unwrap();
    assert!(format!("{e:#}").contains("4 blocks"), "{e:#}");
    cfg.model.looped = Some(looped((1, 2, 1), Injection::None));
    let e = build_recast_model(&cfg, &parent_cfg, &missing, &corpus, &CPU)
        .err()
        .unwrap();
    assert!(format!("{e:#}").contains("cannot read"), "{e:#}");
    let e = build_recast_model(&cfg, &cfg, &missing, &corpus, &CPU)
        .err()
        .unwrap();
    assert!(format!("{e:#}").contains("GPT"), "{e:#}");
}

/// Parses a sweep body (with a header and the fixtures' tiny corpus) in the fixtures folder.
fn sweep(body: &str) -> Result<loopscale::sweep::Sweep, loopscale::sweep::SweepError> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sweeps");
    let text = format!("[sweep]\nname = \"t\"\n[data]\ncorpus = \"tiny_corpus.txt\"\n{body}");
    loopscale::sweep::Sweep::from_str(&text, &dir.join("inline.toml"))
}

#[test]
fn loopus_keys_parse_validate_and_leave_existing_keys_alone() {
    let looped = "[model]\narch = \"looped\"\nn_prelude = 1\nn_core = 2\nn_coda = 1\n";
    let plain = sweep(looped).unwrap();
    // Written at their defaults, the new keys change no run key.
    let defaults = sweep(&format!(
        "{looped}loop_gate = \"none\"\nexit_head = false\n[train]\ndeep_supervision = \"none\"\n"
    ))
    .unwrap();
    assert_eq!(plain.runs[0].config.key(), defaults.runs[0].config.key());

    let s = sweep(&format!(
        "{looped}loop_gate = \"selective\"\nexit_head = true\nexit_thresholds = [0.5, 0.9]\n\
         recast_split = [[1, 3], \"auto\"]\n[train]\ndeep_supervision = \"random\"\n"
    ));
    // A list of lists is an axis; "auto" mixed with lists is refused as such.
    assert!(s.is_err());
    let s = sweep(&format!(
        "{looped}loop_gate = \"selective\"\nexit_head = true\nexit_thresholds = [0.5, 0.9]\n\
         recast_split = [1, 3]\n[train]\ndeep_supervision = \"random\"\n"
    ))
    .unwrap();
    let l = s.runs[0].config.model.looped.clone().unwrap();
    assert_eq!(l.loop_gate, LoopGate::Selective);
    assert_eq!(l.recast_split, Some(RecastSplit::Blocks([1, 3])));
    assert_eq!(l.exit_thresholds, vec![0.5, 0.9]);
    assert_ne!(s.runs[0].config.key(), plain.runs[0].config.key());
    let auto = sweep(&format!("{looped}recast_split = \"auto\"\n")).unwrap();
    assert!(matches!(
        auto.runs[0]
            .config
            .model
            .looped
            .as_ref()
            .unwrap()
            .recast_split,
        Some(RecastSplit::Auto(_))
    ));

    let shown = |body: &str| match sweep(body) {
        Ok(_) => panic!("expected an error for:\n{body}"),
        Err(e) => e.to_string(),
    };
    let e = shown("[model]\narch = \"gpt\"\n[train]\ndeep_supervision = \"random\"\n");
    assert!(
        e.contains("deep_supervision") && e.contains("looped"),
        "{e}"
    );
    let e = shown(&format!("{looped}exit_thresholds = [0.5]\n"));
    assert!(e.contains("exit_head"), "{e}");
    let e = shown(&format!(
        "{looped}exit_head = true\nexit_thresholds = [1.5]\n"
    ));
    assert!(e.contains("outside [0, 1]"), "{e}");
    let e = shown(&format!("{looped}recast_split = [2, 2]\n"));
    assert!(e.contains("empty core"), "{e}");
    let e = shown(&format!("{looped}recast_split = [0, 3]\n"));
    assert!(e.contains("n_prelude = 0"), "{e}");
    let e = shown(&format!("{looped}loop_gate = \"selectiv\"\n"));
    assert!(e.contains("selective"), "{e}");
    let e = shown(&format!(
        "{looped}depth_sampling = \"fixed\"\nmean_recurrence = 2\n[train]\ndeep_supervision = \"random\"\nshortcut_consistency = true\n"
    ));
    assert!(e.contains("choose one"), "{e}");
}

#[test]
fn exit_evals_are_stored_per_threshold() {
    use loopscale::store::Store;
    use loopscale::train::ExitEvalMetrics;
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
    let run = crate::common::runs::TestRun::of(gpt_run(2, 1)).new_run();
    let key = run.key.clone();
    store.register_sweep("s", "", "s.toml", "", &[run]).unwrap();
    let row = |threshold: f64, mean_loops: f64| ExitEvalMetrics {
        step: 10,
        threshold,
        max_loops: 4,
        mean_loops,
        val_loss: 2.5,
    };
    store
        .record_exit_evals(&key, &[row(0.5, 1.5), row(0.9, 3.0)])
        .unwrap();
    // The same (run, step, threshold) again replaces its row.
    store.record_exit_evals(&key, &[row(0.9, 2.5)]).unwrap();
    let rows = store
        .query("SELECT threshold, mean_loops FROM exit_evals ORDER BY threshold")
        .unwrap()
        .rows;
    assert_eq!(rows, vec![vec!["0.5", "1.5"], vec!["0.9", "2.5"]]);
}

/// Where early exit's loss comes from, token by token, on the finished LoopUS runs of a real
/// database (not run by CI): for each threshold and cap, the tokens grouped by the loops they
/// ran, each group's loss under early exit beside the same tokens' loss at 1 loop and at the
/// cap. `make loopus`, then
/// `LOOPSCALE_EXIT_DB=results/loopus_recast.sqlite cargo test --release --test suite
/// early_exit_breakdown -- --ignored --nocapture`.
#[test]
#[ignore]
fn early_exit_breakdown() {
    use loopscale::model::recast::load_params;
    use loopscale::store::{RunStatus, Store};
    use loopscale::train::{build_model, checkpoint};
    let Ok(db) = std::env::var("LOOPSCALE_EXIT_DB") else {
        println!("LOOPSCALE_EXIT_DB unset: nothing to break down");
        return;
    };
    let db = Path::new(&db);
    let store = Store::open_read_only(db).unwrap();
    let keys = store
        .query("SELECT run_key FROM runs ORDER BY run_key")
        .unwrap();
    // Per-token cross-entropy (batch, time) of `logits` for `targets`.
    let token_loss = |logits: &Tensor, targets: &Tensor| -> Tensor {
        let logp = log_softmax_last(logits);
        logp.gather(&targets.unsqueeze(2).unwrap(), 2)
            .unwrap()
            .squeeze(2)
            .unwrap()
            .neg()
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
    };
    for row in &keys.rows {
        let key = &row[0];
        let run = store.run(key).unwrap().unwrap();
        let cfg = run.config.clone();
        let Some(l) = cfg.model.looped.clone().filter(|l| l.exit_head) else {
            continue;
        };
        assert_eq!(run.status, RunStatus::Done, "{key}");
        let model = build_model(&cfg, cfg.data.io(), &CPU).unwrap();
        let weights = checkpoint::final_weights_path(&loopscale::engine::run_dir(db, key));
        let tensors = checkpoint::load_parent_params(&weights, &CPU).unwrap();
        load_params(model.params(), &tensors).unwrap();
        let looped = model.as_looped().unwrap();
        let corpus = Corpus::load(&cfg.data, Path::new(".")).unwrap();
        let batches = corpus
            .validation_batches(
                cfg.data.seq_len,
                cfg.train.batch_size,
                cfg.train.eval_tokens,
                &CPU,
            )
            .unwrap();
        let deepest = l
            .test_loops
            .iter()
            .copied()
            .max()
            .unwrap_or(l.mean_recurrence);
        println!("run {key}: trained at {} loops", l.mean_recurrence);
        for cap in [l.mean_recurrence, deepest] {
            for &threshold in &l.exit_thresholds {
                // Per group of loops run: (tokens, Σ loss early exit, Σ loss at 1, Σ loss at cap).
                let mut groups: std::collections::BTreeMap<u32, (usize, f64, f64, f64)> =
                    Default::default();
                for b in &batches {
                    let (exit_logits, used) = no_grad(|| {
                        objectives::early_exit_logits(looped, &b.inputs, cap, threshold)
                    })
                    .unwrap();
                    let at = |loops: usize| {
                        let logits =
                            no_grad(|| looped.logits_with_loops(&b.inputs, loops)).unwrap();
                        token_loss(&logits, &b.targets)
                            .flatten_all()
                            .unwrap()
                            .to_vec1::<f64>()
                            .unwrap()
                    };
                    let exit_loss = token_loss(&exit_logits, &b.targets)
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f64>()
                        .unwrap();
                    let (one, full) = (at(1), at(cap));
                    let used = used.flatten_all().unwrap().to_vec1::<f64>().unwrap();
                    for i in 0..used.len() {
                        let g = groups.entry(used[i] as u32).or_default();
                        *g = (g.0 + 1, g.1 + exit_loss[i], g.2 + one[i], g.3 + full[i]);
                    }
                }
                let n: usize = groups.values().map(|g| g.0).sum();
                let total = |f: fn(&(usize, f64, f64, f64)) -> f64| {
                    groups.values().map(f).sum::<f64>() / n as f64
                };
                println!(
                    "  cap {cap}, threshold {threshold}: loss {:.5} (1 loop {:.5}, {cap} loops {:.5}), mean loops {:.3}",
                    total(|g| g.1),
                    total(|g| g.2),
                    total(|g| g.3),
                    groups
                        .iter()
                        .map(|(k, g)| *k as f64 * g.0 as f64)
                        .sum::<f64>()
                        / n as f64
                );
                for (loops, g) in &groups {
                    let k = g.0 as f64;
                    println!(
                        "    ran {loops}: {:>5.1}% of tokens, loss {:.4} early exit, {:.4} at 1 loop, {:.4} at {cap} loops; share of the difference to 1 loop {:+.5}",
                        100.0 * k / n as f64,
                        g.1 / k,
                        g.2 / k,
                        g.3 / k,
                        (g.1 - g.2) / n as f64
                    );
                }
            }
        }
    }
}

/// log-softmax over the last dimension.
fn log_softmax_last(x: &Tensor) -> Tensor {
    let max = x.max_keepdim(2).unwrap();
    let shifted = x.broadcast_sub(&max).unwrap();
    let lse = shifted
        .exp()
        .unwrap()
        .sum_keepdim(2)
        .unwrap()
        .log()
        .unwrap();
    shifted.broadcast_sub(&lse).unwrap()
}
