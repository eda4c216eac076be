//! Decoding through KV caches: feeding a sequence a token at a time gives, at every position,
//! the logits a forward pass over the whole prefix gives there — for the GPT and for looped
//! models at every loop count, with each variant's parts (LoopFormer's conditioning, LoopUS's
//! gate) and each injection — and the cache grows with the loops as it should. Sampling is
//! seeded, greedy at temperature 0 and respects top-k.

use candle_core::{DType, Device, Tensor};
use loopscale::model::generate::draw;
use loopscale::model::{
    Arch, Decoder, DepthSampling, Gpt, Init, Injection, LoopConditioning, LoopGate, Looped,
    LoopedConfig, Mlp, ModelConfig, Parametrization, Sampling, StateInit, generate,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CPU: Device = Device::Cpu;
const VOCAB: usize = 23;
const LEN: usize = 9;

fn gpt_cfg() -> ModelConfig {
    ModelConfig {
        arch: Arch::Gpt,
        d_model: 16,
        n_heads: 2,
        n_layers: 2,
        mlp: Mlp::Swiglu,
        mlp_ratio: 2,
        init: Init::Gpt2,
        ..ModelConfig::default()
    }
}

fn looped_cfg(injection: Injection, conditioning: LoopConditioning, gate: LoopGate) -> ModelConfig {
    ModelConfig {
        arch: Arch::Looped,
        d_model: 16,
        n_heads: 2,
        mlp: Mlp::Relu2,
        mlp_ratio: 2,
        init: Init::Gpt2,
        looped: Some(LoopedConfig {
            n_prelude: 1,
            n_core: 2,
            n_coda: 1,
            injection,
            mean_recurrence: 3,
            backprop_depth: Some(3),
            depth_sampling: DepthSampling::Fixed,
            state_init: StateInit::Random,
            loop_conditioning: conditioning,
            loop_gate: gate,
            ..LoopedConfig::default()
        }),
        ..ModelConfig::default()
    }
}

/// Every parameter moved off its init, so no block is the identity and no gate is closed.
fn perturb(params: &loopscale::model::ParamStore, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    for p in params.params() {
        let old = p.var.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let values: Vec<f64> = old
            .iter()
            .map(|v| v + 0.2 * rng.random_range(-1.0..1.0))
            .collect();
        p.var
            .set(&Tensor::from_vec(values, p.var.shape(), &CPU).unwrap())
            .unwrap();
    }
}

fn tokens(seed: u64) -> Vec<u32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..LEN)
        .map(|_| rng.random_range(0..VOCAB as u32))
        .collect()
}

/// Largest |cached − recomputed| over the logits of every position, feeding `ids` one token at
/// a time (after a two-token prompt) to `decoder`; `full(prefix)` recomputes a prefix.
fn worst_gap(mut decoder: Decoder, ids: &[u32], full: &dyn Fn(&Tensor) -> Tensor) -> f64 {
    let mut worst: f64 = 0.0;
    let mut compare = |cached: Tensor, upto: usize| {
        let prefix = Tensor::new(&ids[..upto], &CPU)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let t = cached.dim(1).unwrap();
        let expected = full(&prefix).narrow(1, upto - t, t).unwrap();
        let gap = (cached - expected)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        worst = worst.max(gap);
    };
    let prompt = Tensor::new(&ids[..2], &CPU).unwrap().unsqueeze(0).unwrap();
    compare(decoder.feed(&prompt).unwrap(), 2);
    for i in 2..ids.len() {
        let next = Tensor::new(&ids[i..=i], &CPU)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        compare(decoder.feed(&next).unwrap(), i + 1);
    }
    worst
}

#[test]
fn a_cached_gpt_gives_the_logits_of_recomputing_the_prefix() {
    let model = Gpt::new(&gpt_cfg(), VOCAB, LEN, 1, DType::F64, &CPU).unwrap();
    perturb(model.params(), 2);
    let ids = tokens(3);
    let decoder = Decoder::new(&model, None, LEN).unwrap();
    let gap = worst_gap(decoder, &ids, &|x| model.logits(x).unwrap());
    assert!(gap < 1e-10, "cached vs recomputed: {gap:e}");
    // Nothing to loop: a loop count is refused.
    assert!(Decoder::new(&model, Some(2), LEN).is_err());
}

#[test]
fn under_mup_cached_decoding_uses_the_same_attention_and_logit_scales() {
    // Width 32 over base 8: attention ∝ 1/d_head and logits × 1/4, in both paths.
    for arch in [Arch::Gpt, Arch::Looped] {
        let base = if arch == Arch::Gpt {
            gpt_cfg()
        } else {
            looped_cfg(Injection::Diagonal, LoopConditioning::None, LoopGate::None)
        };
        let cfg = ModelConfig {
            d_model: 32,
            parametrization: Parametrization::Mup,
            mup_base_width: Some(8),
            ..base
        };
        let ids = tokens(5);
        let gap = if arch == Arch::Gpt {
            let model = Gpt::new(&cfg, VOCAB, LEN, 1, DType::F64, &CPU).unwrap();
            perturb(model.params(), 2);
            let decoder = Decoder::new(&model, None, LEN).unwrap();
            worst_gap(decoder, &ids, &|x| model.logits(x).unwrap())
        } else {
            let model = Looped::new(&cfg, VOCAB, LEN, 1, DType::F64, &CPU).unwrap();
            perturb(model.params(), 2);
            let decoder = Decoder::new(&model, Some(3), LEN).unwrap();
            worst_gap(decoder, &ids, &|x| model.logits_with_loops(x, 3).unwrap())
        };
        assert!(
            gap < 1e-10,
            "{arch:?} cached vs recomputed under μP: {gap:e}"
        );
    }
}

#[test]
fn a_cached_looped_model_gives_the_logits_of_recomputing_the_prefix_at_every_loop_count() {
    let variants = [
        (Injection::Diagonal, LoopConditioning::None, LoopGate::None),
        (Injection::Linear, LoopConditioning::None, LoopGate::None),
        (Injection::Add, LoopConditioning::None, LoopGate::Selective),
        (Injection::None, LoopConditioning::TimeStep, LoopGate::None),
    ];
    for (v, (injection, conditioning, gate)) in variants.into_iter().enumerate() {
        let cfg = looped_cfg(injection, conditioning, gate);
        let model = Looped::new(&cfg, VOCAB, LEN, 4, DType::F64, &CPU).unwrap();
        perturb(model.params(), 5 + v as u64);
        let ids = tokens(6);
        let mut bytes = Vec::new();
        for loops in [1, 2, 4] {
            let decoder = Decoder::new(&model, Some(loops), LEN).unwrap();
            let gap = worst_gap(decoder, &ids, &|x| {
                model.logits_with_loops(x, loops).unwrap()
            });
            assert!(
                gap < 1e-10,
                "{injection:?} {conditioning:?} {gate:?} at {loops} loops: {gap:e}"
            );
            let mut decoder = Decoder::new(&model, Some(loops), LEN).unwrap();
            decoder
                .feed(&Tensor::new(&ids[..], &CPU).unwrap().unsqueeze(0).unwrap())
                .unwrap();
            bytes.push(decoder.cache_bytes());
        }
        // Keys and values of 9 positions, 16 wide, f64: (prelude + coda + 2 core blocks × loops).
        for (b, loops) in bytes.iter().zip([1, 2, 4]) {
            let applications = 2 + 2 * loops;
            assert_eq!(
                *b,
                applications * 2 * LEN * 16 * 8,
                "{injection:?} at {loops} loops"
            );
        }
    }
}

#[test]
fn greedy_generation_is_the_argmax_of_recomputed_logits_and_sampling_is_seeded() {
    let model = Looped::new(
        &looped_cfg(Injection::Diagonal, LoopConditioning::None, LoopGate::None),
        VOCAB,
        16,
        7,
        DType::F64,
        &CPU,
    )
    .unwrap();
    perturb(model.params(), 8);
    let prompt = [3u32, 1, 4];
    let greedy = Sampling {
        temperature: 0.0,
        top_k: None,
        seed: 0,
    };
    let out = generate(&model, &prompt, 6, greedy, Some(2), &CPU).unwrap();
    // The same tokens, one full forward pass per step.
    let mut seq = prompt.to_vec();
    for &token in &out {
        let x = Tensor::new(&seq[..], &CPU).unwrap().unsqueeze(0).unwrap();
        let logits = model.logits_with_loops(&x, 2).unwrap();
        let last = logits
            .narrow(1, seq.len() - 1, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .argmax(0)
            .unwrap()
            .to_scalar::<u32>()
            .unwrap();
        assert_eq!(token, last);
        seq.push(token);
    }
    let warm = Sampling {
        temperature: 1.0,
        top_k: Some(5),
        seed: 11,
    };
    let a = generate(&model, &prompt, 8, warm, None, &CPU).unwrap();
    let b = generate(&model, &prompt, 8, warm, None, &CPU).unwrap();
    assert_eq!(a, b, "the same seed draws the same text");
    assert!(
        generate(&model, &[], 3, warm, None, &CPU).is_err(),
        "an empty prompt"
    );
}

#[test]
fn draws_respect_top_k_and_temperature() {
    let logits = [0.0, 5.0, 1.0, 4.9, -3.0];
    let mut rng = StdRng::seed_from_u64(1);
    let top2 = Sampling {
        temperature: 1.0,
        top_k: Some(2),
        seed: 0,
    };
    let mut seen = [0usize; 5];
    for _ in 0..2000 {
        seen[draw(&logits, top2, &mut rng) as usize] += 1;
    }
    assert_eq!(
        seen[0] + seen[2] + seen[4],
        0,
        "only the two most likely: {seen:?}"
    );
    // exp(5) : exp(4.9) ≈ 0.525 : 0.475.
    let share = seen[1] as f64 / 2000.0;
    assert!((share - 0.525).abs() < 0.04, "{seen:?}");
    let cold = Sampling {
        temperature: 0.0,
        top_k: None,
        seed: 0,
    };
    assert_eq!(draw(&logits, cold, &mut rng), 1);
}

/// A sweep of one GPT and one looped run, a few steps each, trained through the binary.
fn trained_sweep(dir: &std::path::Path) -> (std::path::PathBuf, Vec<(String, bool)>) {
    use crate::common::{loopscale, moby_dick_file, text};
    let corpus = moby_dick_file(dir, 40_000);
    let file = dir.join("gen.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[sweep]
name = "gen"
db = "{db}"

[data]
corpus = "{corpus}"
seq_len = 32
val_fraction = 0.1

[train]
tokens = 4096
batch_size = 8
lr = 3e-3
eval_every = 8
eval_tokens = 512
checkpoint_every = 8

[model]
d_model = 32
n_heads = 2
n_layers = 2

[[variants]]
name = "gpt"

[[variants]]
name = "looped"
model.arch = "looped"
model.n_prelude = 1
model.n_core = 1
model.n_coda = 1
model.mean_recurrence = 2
"#,
            db = dir.join("gen.sqlite").display(),
            corpus = corpus.display(),
        ),
    )
    .unwrap();
    let run = loopscale(&["run", file.to_str().unwrap(), "--jobs", "1", "--plain"]);
    assert!(run.status.success(), "{}", text(&run));
    let store = loopscale::store::Store::open_read_only(&dir.join("gen.sqlite")).unwrap();
    let runs = store
        .runs("gen")
        .unwrap()
        .into_iter()
        .map(|r| (r.key, r.config.model.looped.is_some()))
        .collect();
    (file, runs)
}

#[test]
fn sample_writes_text_from_a_finished_gpt_and_looped_run_and_refuses_what_it_cannot() {
    use crate::common::{loopscale, text};
    let dir = tempfile::tempdir().unwrap();
    let (file, runs) = trained_sweep(dir.path());
    let db = dir.path().join("gen.sqlite");
    for (key, looped) in &runs {
        // Greedy decoding is deterministic; a prefix of the key names the run.
        let args = |extra: &[&str]| {
            let mut a: Vec<&str> = vec![
                "sample",
                db.to_str().unwrap(),
                "--run",
                &key[..10],
                "--prompt",
                "Call me",
                "--tokens",
                "24",
                "--temperature",
                "0",
            ];
            a.extend_from_slice(extra);
            loopscale(&a)
        };
        let out = args(&[]);
        assert!(out.status.success(), "{}", text(&out));
        let stdout = out.stdout.clone();
        assert!(stdout.starts_with(b"Call me"), "{}", text(&out));
        assert_eq!(stdout.len(), "Call me".len() + 24 + 1, "{}", text(&out));
        assert_eq!(args(&[]).stdout, stdout, "greedy decoding repeats");
        assert!(text(&out).contains("tokens/s"));
        if *looped {
            let deeper = args(&["--loops", "4"]);
            assert!(deeper.status.success(), "{}", text(&deeper));
            assert!(text(&deeper).contains("at 4 loops"), "{}", text(&deeper));
        } else {
            let refused = args(&["--loops", "2"]);
            assert!(!refused.status.success());
            assert!(text(&refused).contains("is a GPT"), "{}", text(&refused));
        }
    }
    // The sweep file works as the source too.
    let by_file = loopscale(&[
        "sample",
        file.to_str().unwrap(),
        "--run",
        &runs[0].0,
        "--tokens",
        "5",
    ]);
    assert!(by_file.status.success(), "{}", text(&by_file));
    // An unknown run, an empty prompt, a run without final weights: clear errors.
    let unknown = loopscale(&["sample", db.to_str().unwrap(), "--run", "zzzz"]);
    assert!(!unknown.status.success());
    assert!(
        text(&unknown).contains("no run `zzzz`"),
        "{}",
        text(&unknown)
    );
    let empty = loopscale(&[
        "sample",
        db.to_str().unwrap(),
        "--run",
        &runs[0].0,
        "--prompt",
        "",
    ]);
    assert!(
        text(&empty).contains("--prompt is empty"),
        "{}",
        text(&empty)
    );
    let weights = dir
        .path()
        .join("gen.runs")
        .join(&runs[0].0)
        .join("final.safetensors");
    assert!(weights.exists(), "{}", weights.display());
    std::fs::remove_file(&weights).unwrap();
    let gone = loopscale(&["sample", db.to_str().unwrap(), "--run", &runs[0].0]);
    assert!(!gone.status.success());
    assert!(text(&gone).contains("no final weights"), "{}", text(&gone));
}
