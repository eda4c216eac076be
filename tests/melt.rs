//! MELT (`model::melt`): one KV cache per core block shared by every loop. At α = 1 the
//! chunk-wise forward is its parent looped model exactly; decoding through the shared cache
//! gives the training forward's logits (token by token with chunks of one, chunk-aligned pieces
//! otherwise); its cache does not grow with the loops while a looped model's does; the gate's
//! gradients match finite differences.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use loopscale::model::melt::init_from_parent;
use loopscale::model::{
    Arch, Decoder, DepthSampling, Init, Injection, Looped, LoopedConfig, Mlp, ModelConfig, Param,
    StateInit,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::common::central_differences;

const CPU: Device = Device::Cpu;
const VOCAB: usize = 23;
const LEN: usize = 9;

fn looped_cfg(injection: Injection, melt_chunk: Option<usize>) -> ModelConfig {
    ModelConfig {
        arch: Arch::Looped,
        d_model: 16,
        n_heads: 2,
        mlp: Mlp::Relu2,
        mlp_ratio: 2,
        init: Init::Gpt2,
        melt_from: melt_chunk.map(|_| "parent".to_string()),
        looped: Some(LoopedConfig {
            n_prelude: 1,
            n_core: 2,
            n_coda: 1,
            injection,
            mean_recurrence: 3,
            backprop_depth: Some(3),
            depth_sampling: DepthSampling::Fixed,
            state_init: StateInit::Random,
            melt_chunk,
            ..LoopedConfig::default()
        }),
        ..ModelConfig::default()
    }
}

/// Every parameter moved off its init (the gate's further), so no block is the identity and
/// no gate sits at ½.
fn perturb(params: &[Param], seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    for p in params {
        let scale = if p.name.starts_with("melt.") {
            1.0
        } else {
            0.2
        };
        let old = p.var.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let values: Vec<f64> = old
            .iter()
            .map(|v| v + scale * rng.random_range(-1.0..1.0))
            .collect();
        p.var
            .set(&Tensor::from_vec(values, p.var.shape(), &CPU).unwrap())
            .unwrap();
    }
}

fn tensors(model: &Looped) -> HashMap<String, Tensor> {
    model
        .params()
        .params()
        .iter()
        .map(|p| (p.name.clone(), p.var.as_tensor().copy().unwrap()))
        .collect()
}

/// A perturbed parent and the MELT model built on it (its gate perturbed too).
fn parent_and_melt(injection: Injection, chunk: usize, seed: u64) -> (Looped, Looped) {
    let parent = Looped::new(
        &looped_cfg(injection, None),
        VOCAB,
        LEN,
        seed,
        DType::F64,
        &CPU,
    )
    .unwrap();
    perturb(parent.params().params(), seed + 1);
    let melt = Looped::new(
        &looped_cfg(injection, Some(chunk)),
        VOCAB,
        LEN,
        seed,
        DType::F64,
        &CPU,
    )
    .unwrap();
    init_from_parent(melt.params(), &tensors(&parent)).unwrap();
    let gate: Vec<Param> = melt
        .params()
        .params()
        .iter()
        .filter(|p| p.name.starts_with("melt."))
        .cloned()
        .collect();
    perturb(&gate, seed + 2);
    (parent, melt)
}

fn ids(seed: u64, batch: usize) -> Tensor {
    let mut rng = StdRng::seed_from_u64(seed);
    let values: Vec<u32> = (0..batch * LEN)
        .map(|_| rng.random_range(0..VOCAB as u32))
        .collect();
    Tensor::from_vec(values, (batch, LEN), &CPU).unwrap()
}

fn max_gap(a: &Tensor, b: &Tensor) -> f64 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

#[test]
fn at_alpha_one_the_chunkwise_forward_is_the_parent() {
    for injection in [Injection::Diagonal, Injection::None] {
        let (parent, melt) = parent_and_melt(injection, 4, 1);
        let x = ids(2, 2);
        for loops in [1, 3] {
            let h0 = parent.eval_state(2, LEN).unwrap();
            let expected = parent.logits_with_loops(&x, loops).unwrap();
            let (out, _) = melt.forward_shared(&x, loops, &h0, 1.0, false).unwrap();
            let gap = max_gap(&out.logits, &expected);
            assert!(gap < 1e-10, "{injection:?} at {loops} loops: {gap:e}");
            // At α = 0 the shared cache changes the result (beyond one loop).
            let (shared, _) = melt.forward_shared(&x, loops, &h0, 0.0, false).unwrap();
            let moved = max_gap(&shared.logits, &expected);
            if loops > 1 {
                assert!(
                    moved > 1e-3,
                    "{injection:?}: the shared cache changed nothing"
                );
            }
        }
    }
}

#[test]
fn decoding_with_the_shared_cache_gives_the_training_forward() {
    // Chunks of one: token by token is the training forward. Chunks of three: chunk-aligned
    // pieces (and the whole sequence at once) are.
    for (chunk, pieces) in [(1, vec![1; LEN]), (3, vec![3, 3, 3]), (3, vec![LEN])] {
        let (_, melt) = parent_and_melt(Injection::Diagonal, chunk, 3);
        let x = ids(4, 1);
        let mut bytes = Vec::new();
        for loops in [1, 2, 4] {
            let expected = melt.logits_with_loops(&x, loops).unwrap();
            let mut decoder = Decoder::new(&melt, Some(loops), LEN).unwrap();
            let mut got = Vec::new();
            let mut at = 0;
            for n in &pieces {
                got.push(decoder.feed(&x.narrow(1, at, *n).unwrap()).unwrap());
                at += n;
            }
            let got = Tensor::cat(&got, 1).unwrap();
            let gap = max_gap(&got, &expected);
            assert!(
                gap < 1e-10,
                "chunk {chunk}, pieces {pieces:?}, {loops} loops: {gap:e}"
            );
            bytes.push(decoder.cache_bytes());
        }
        // One entry per position and block (prelude, coda, 2 core blocks), 16 wide, keys and
        // values, f64, at every loop count.
        for b in bytes {
            assert_eq!(b, 4 * 2 * LEN * 16 * 8, "chunk {chunk}");
        }
    }
    // Token by token is not the chunk-3 forward: the chunk is part of the model.
    let (_, melt) = parent_and_melt(Injection::Diagonal, 3, 3);
    let x = ids(4, 1);
    let mut decoder = Decoder::new(&melt, Some(3), LEN).unwrap();
    let got: Vec<Tensor> = (0..LEN)
        .map(|i| decoder.feed(&x.narrow(1, i, 1).unwrap()).unwrap())
        .collect();
    let gap = max_gap(
        &Tensor::cat(&got, 1).unwrap(),
        &melt.logits_with_loops(&x, 3).unwrap(),
    );
    assert!(gap > 1e-6, "chunk 3 decoded token by token: {gap:e}");
}

#[test]
fn melt_gate_gradients_match_finite_differences() {
    for (k, alpha) in [0.0, 0.4].into_iter().enumerate() {
        let (_, melt) = parent_and_melt(Injection::Diagonal, 3, 10 + k as u64);
        let x = ids(20 + k as u64, 2);
        let targets = ids(30 + k as u64, 2);
        let h0 = melt.eval_state(2, LEN).unwrap();
        let loss = || {
            let (out, _) = melt.forward_shared(&x, 3, &h0, alpha, false).unwrap();
            loopscale::model::lm_loss(&out.logits, &targets).unwrap()
        };
        let (gate, rest): (Vec<Param>, Vec<Param>) = melt
            .params()
            .params()
            .iter()
            .cloned()
            .partition(|p| p.name.starts_with("melt."));
        let name = format!("melt α = {alpha}");
        // Every other parameter once; the gate's (4 tensors) eight times each.
        central_differences(&name, &rest, &loss, &|_| 1, 7);
        let gate = central_differences(&name, &gate, &loss, &|_| 8, 8);
        let live = gate.iter().filter(|e| e.scale > 1e-8).count();
        assert!(gate.len() >= 32, "{} gate entries checked", gate.len());
        assert!(
            live * 4 >= gate.len() * 3,
            "{live} of {} gate entries with a gradient",
            gate.len()
        );
    }
}

/// Parses a sweep body (with a header and the fixtures' tiny corpus) in the fixtures folder.
fn sweep(body: &str) -> Result<loopscale::sweep::Sweep, loopscale::sweep::SweepError> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sweeps");
    let text = format!(
        "[sweep]\nname = \"t\"\n[data]\ncorpus = \"tiny_corpus.txt\"\n\
         [model]\nn_prelude = 1\nn_core = 1\nn_coda = 1\n{body}"
    );
    loopscale::sweep::Sweep::from_str(&text, &dir.join("inline.toml"))
}

const VARIANTS: &str = "[[variants]]\nname = \"gpt\"\nmodel = { arch = \"gpt\", n_layers = 3 }\n\
    [[variants]]\nname = \"looped\"\nmodel = { arch = \"looped\" }\n";

#[test]
fn melt_from_links_a_child_to_its_looped_parent() {
    let s = sweep(&format!(
        "{VARIANTS}[[variants]]\nname = \"melt\"\n\
         model = {{ arch = \"looped\", melt_from = \"looped\", melt_chunk = 8, mean_recurrence = 2 }}\n"
    ))
    .unwrap();
    assert_eq!(s.runs.len(), 3);
    let of = |v: &str| {
        s.runs
            .iter()
            .find(|r| r.variant.as_deref() == Some(v))
            .unwrap()
    };
    let (parent, child) = (of("looped"), of("melt"));
    let lineage = child.config.lineage.as_ref().unwrap();
    assert_eq!(lineage.role, loopscale::config::Role::Melt);
    assert_eq!(lineage.parent.as_deref(), Some(parent.key.as_str()));
    let steps = loopscale::train::total_steps(&parent.config);
    assert_eq!(lineage.parent_step, Some(steps));
    assert!(parent.config.train.keep_checkpoints.contains(&steps));
    // The parent comes before its child in the plan (the engine orders by lineage too).
    let at = |k: &str| s.runs.iter().position(|r| r.key == k).unwrap();
    assert!(at(&parent.key) < at(&child.key));
    assert_eq!(
        child.config.model.looped.as_ref().unwrap().melt_chunk,
        Some(8)
    );
}

#[test]
fn bad_melt_parents_are_refused_with_the_file_and_key() {
    let shown = |body: &str| match sweep(body) {
        Ok(_) => panic!("expected an error for:\n{body}"),
        Err(e) => e.to_string(),
    };
    let melt = |m: &str| format!("{VARIANTS}[[variants]]\nname = \"melt\"\nmodel = {{ {m} }}\n");
    let e = shown(&melt("arch = \"looped\", melt_from = \"gpt\""));
    assert!(
        e.contains("inline.toml") && e.contains("model.melt_from") && e.contains("GPTs"),
        "{e}"
    );
    let e = shown(&melt("arch = \"looped\", melt_from = \"nope\""));
    assert!(
        e.contains("names no variant") && e.contains("looped"),
        "{e}"
    );
    let e = shown(&melt(
        "arch = \"looped\", melt_from = \"looped\", d_model = 32, n_heads = 2",
    ));
    assert!(e.contains("differs") && e.contains("model.d_model"), "{e}");
    let e = shown(&melt(
        "arch = \"gpt\", n_layers = 3, melt_from = \"looped\"",
    ));
    assert!(
        e.contains("model.melt_from") && e.contains("looped one"),
        "{e}"
    );
    let e = shown(&melt(
        "arch = \"looped\", melt_from = \"looped\", melt_chunk = 0",
    ));
    assert!(e.contains("melt_chunk"), "{e}");
    let e = shown(&melt("arch = \"looped\", melt_chunk = 4"));
    assert!(e.contains("without `model.melt_from`"), "{e}");
    // A MELT run of a MELT run.
    let e = shown(&format!(
        "{}[[variants]]\nname = \"again\"\nmodel = {{ arch = \"looped\", melt_from = \"melt\" }}\n",
        melt("arch = \"looped\", melt_from = \"looped\"")
    ));
    assert!(e.contains("a MELT run itself"), "{e}");
}

/// End to end through the binary: a looped parent, its MELT child and a GPT train in one sweep
/// (the child after its parent), `decode_evals` has a row per loop count — MELT's cache bytes
/// per token the same at every count, the looped model's growing with it, the GPT's one row —
/// and `sample` writes from the MELT run.
#[test]
fn a_melt_sweep_trains_after_its_parent_and_measures_decoding() {
    use crate::common::{loopscale, moby_dick_file, text};
    let dir = tempfile::tempdir().unwrap();
    let corpus = moby_dick_file(dir.path(), 60_000);
    let db = dir.path().join("m.sqlite");
    let file = dir.path().join("m.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[sweep]
name = "m"
db = "{db}"
[data]
corpus = "{corpus}"
seq_len = 32
[train]
tokens = 5120
batch_size = 8
lr = 3e-3
eval_every = 10
eval_tokens = 512
melt_transition_steps = 8
[model]
d_model = 32
n_heads = 2
n_prelude = 1
n_core = 1
n_coda = 1
test_loops = [1, 2, 4]
[[variants]]
name = "looped"
model = {{ arch = "looped", mean_recurrence = 2 }}
[[variants]]
name = "melt"
model = {{ arch = "looped", mean_recurrence = 2, melt_from = "looped", melt_chunk = 8 }}
[[variants]]
name = "gpt"
model = {{ arch = "gpt", n_layers = 3 }}
"#,
            db = db.display(),
            corpus = corpus.display(),
        ),
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let run = loopscale(&["run", f, "--plain", "--jobs", "2"]);
    assert!(run.status.success(), "{}", text(&run));
    let sql = loopscale(&[
        "sql",
        db.to_str().unwrap(),
        "SELECT IFNULL(r.role, r.arch) AS kind, d.loops, d.kv_bytes_per_token, d.val_loss
         FROM decode_evals d JOIN runs r USING (run_key) ORDER BY kind, d.loops",
        "--csv",
    ]);
    let out = String::from_utf8_lossy(&sql.stdout).to_string();
    assert!(sql.status.success(), "{}", text(&sql));
    let rows: Vec<Vec<String>> = out
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    let of = |kind: &str| -> Vec<(String, f64, f64)> {
        rows.iter()
            .filter(|r| r[0] == kind)
            .map(|r| (r[1].clone(), r[2].parse().unwrap(), r[3].parse().unwrap()))
            .collect()
    };
    let (gpt, melt, looped) = (of("gpt"), of("melt"), of("looped"));
    assert_eq!(gpt.len(), 1, "{out}");
    assert_eq!(melt.len(), 3, "{out}");
    assert_eq!(looped.len(), 3, "{out}");
    // Keys and values, f32, width 32: 3 blocks for the GPT and MELT; 2 + loops for looped.
    let per_block = 2.0 * 32.0 * 4.0;
    assert_eq!(gpt[0].1, 3.0 * per_block, "{out}");
    for (i, loops) in [1.0, 2.0, 4.0].into_iter().enumerate() {
        assert_eq!(melt[i].1, 3.0 * per_block, "{out}");
        assert_eq!(looped[i].1, (2.0 + loops) * per_block, "{out}");
    }
    for (_, _, loss) in gpt.iter().chain(&melt).chain(&looped) {
        assert!(*loss > 0.5 && *loss < 4.5, "{out}");
    }
    let key = loopscale(&[
        "sql",
        db.to_str().unwrap(),
        "SELECT run_key FROM runs WHERE role = 'melt'",
        "--csv",
    ]);
    let key = String::from_utf8_lossy(&key.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    let sample = loopscale(&[
        "sample",
        db.to_str().unwrap(),
        "--run",
        &key,
        "--tokens",
        "8",
    ]);
    assert!(sample.status.success(), "{}", text(&sample));
}
