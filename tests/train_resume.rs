//! Checkpoints and resuming at the trainer level: a run stopped (gracefully, or by a crash
//! that loses everything after its last checkpoint) and resumed ends with bit-identical
//! losses to the uninterrupted run, GPT and looped (sampled depths) alike, and a MELT model
//! post-trained from its parent across both phases, with AdamW or Muon
//! (momentum warm-up and decaying weight decay spanning the checkpoints); a damaged newest
//! checkpoint (flipped byte, truncated file) is detected by its checksum, reported, and the run
//! resumes from the one before, or from scratch, still to the same numbers.

use std::path::Path;

use candle_core::Device;
use loopscale::config::RunConfig;
use loopscale::config::{DataConfig, OptimizerKind, Schedule, TrainConfig};
use loopscale::model::CausalLm;
use loopscale::model::{Arch, DepthSampling, Injection, LoopedConfig, Mlp, ModelConfig, StateInit};
use loopscale::train::{
    Checkpointing, EvalMetrics, RunEnd, RunObserver, RunOutcome, StepMetrics, build_melt_model,
    checkpoint, train, train_model, train_model_resumable, train_resumable,
};

/// Builds a run's model afresh for each attempt (as a worker does); `None`: from its config.
type Build<'a> = &'a dyn Fn() -> Option<Box<dyn CausalLm>>;

use crate::common;
use common::moby_dick;

const STEPS: u64 = 30;

fn config(arch: Arch) -> RunConfig {
    RunConfig {
        data: DataConfig {
            seq_len: 32,
            ..DataConfig::default()
        },
        train: TrainConfig {
            tokens: STEPS * 8 * 32,
            batch_size: 8,
            lr: 1e-2,
            schedule: Schedule::Cosine,
            eval_every: 10,
            eval_tokens: 1024,
            log_every: 1,
            checkpoint_every: 8,
            ..TrainConfig::default()
        },
        model: ModelConfig {
            arch,
            d_model: 32,
            n_heads: 2,
            n_layers: 1,
            mlp: Mlp::Relu2,
            tie_embeddings: arch == Arch::Gpt,
            looped: (arch == Arch::Looped).then(|| LoopedConfig {
                n_prelude: 1,
                n_core: 1,
                n_coda: 1,
                recurrent_dim: None,
                injection: Injection::Diagonal,
                mean_recurrence: 3,
                backprop_depth: Some(2),
                depth_sampling: DepthSampling::Poisson,
                state_init: StateInit::Random,
                prelude_norm: true,
                test_loops: vec![1, 4],
                loop_conditioning: Default::default(),
                ..LoopedConfig::default()
            }),
            ..ModelConfig::default()
        },
        seed: 7,
        lineage: None,
    }
}

/// Records measurements like the store does: a resume discards rows after its step.
#[derive(Default)]
struct Rows {
    steps: Vec<StepMetrics>,
    evals: Vec<EvalMetrics>,
    /// Stop gracefully once this step is done.
    stop_at: Option<u64>,
    /// Fail (a crash: no checkpoint, nothing more recorded) once this step is done.
    crash_at: Option<u64>,
    resumed_at: Vec<u64>,
    notes: Vec<String>,
}

impl RunObserver for Rows {
    fn on_step(&mut self, m: &StepMetrics) -> anyhow::Result<()> {
        self.steps.push(m.clone());
        if self.crash_at == Some(m.step) {
            anyhow::bail!("simulated crash after step {}", m.step);
        }
        Ok(())
    }
    fn on_eval(&mut self, e: &EvalMetrics) -> anyhow::Result<()> {
        self.evals.push(e.clone());
        Ok(())
    }
    fn should_stop(&mut self) -> bool {
        self.stop_at
            .is_some_and(|s| self.steps.last().is_some_and(|m| m.step >= s))
    }
    fn on_resume(&mut self, step: u64) -> anyhow::Result<()> {
        self.resumed_at.push(step);
        self.steps.retain(|m| m.step <= step);
        self.evals.retain(|e| e.step <= step);
        Ok(())
    }
    fn note(&mut self, line: &str) {
        self.notes.push(line.to_string());
    }
}

fn losses(rows: &Rows) -> Vec<(u64, u64)> {
    rows.steps
        .iter()
        .map(|m| (m.step, m.train_loss.to_bits()))
        .collect()
}

fn run(cfg: &RunConfig, rows: &mut Rows, dir: &Path) -> anyhow::Result<RunOutcome> {
    run_built(cfg, rows, dir, &|| None)
}

fn run_built(
    cfg: &RunConfig,
    rows: &mut Rows,
    dir: &Path,
    build: Build,
) -> anyhow::Result<RunOutcome> {
    let corpus = moby_dick(60_000, cfg.data.seq_len);
    let ck = Checkpointing::new(
        dir.to_path_buf(),
        cfg.train.checkpoint_every as u64,
        cfg.key(),
    );
    match build() {
        Some(model) => {
            train_model_resumable(model.as_ref(), cfg, &corpus, &Device::Cpu, rows, Some(&ck))
        }
        None => train_resumable(cfg, &corpus, &Device::Cpu, rows, Some(&ck)),
    }
}

fn reference(cfg: &RunConfig, build: Build) -> (Rows, RunOutcome) {
    let corpus = moby_dick(60_000, cfg.data.seq_len);
    let mut rows = Rows::default();
    let out = match build() {
        Some(model) => train_model(model.as_ref(), cfg, &corpus, &Device::Cpu, &mut rows),
        None => train(cfg, &corpus, &Device::Cpu, &mut rows),
    }
    .unwrap();
    (rows, out)
}

fn assert_same(label: &str, rows: &Rows, out: &RunOutcome, ref_rows: &Rows, ref_out: &RunOutcome) {
    assert_eq!(out.end, RunEnd::Done, "{label}");
    assert_eq!(out.steps, STEPS, "{label}");
    assert_eq!(
        losses(rows),
        losses(ref_rows),
        "{label}: every step's training loss, bit for bit"
    );
    let ev = |r: &Rows| {
        r.evals
            .iter()
            .map(|e| (e.step, e.test_loops, e.val_loss.to_bits()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ev(rows),
        ev(ref_rows),
        "{label}: every evaluation, bit for bit"
    );
    assert_eq!(
        out.final_val_loss.map(f64::to_bits),
        ref_out.final_val_loss.map(f64::to_bits),
        "{label}"
    );
    assert_eq!(
        out.final_train_loss.map(f64::to_bits),
        ref_out.final_train_loss.map(f64::to_bits),
        "{label}"
    );
    assert_eq!(out.loss_spikes, ref_out.loss_spikes, "{label}");
}

fn stop_crash_and_resume(arch: Arch) {
    stop_crash_and_resume_with(config(arch));
}

fn stop_crash_and_resume_with(cfg: RunConfig) {
    stop_crash_and_resume_built(cfg, &|| None);
}

fn stop_crash_and_resume_built(cfg: RunConfig, build: Build) {
    let arch = cfg.model.arch;
    let (ref_rows, ref_out) = reference(&cfg, build);
    let dir = tempfile::tempdir().unwrap();

    // Ctrl-C after step 13: a checkpoint at 13 (besides the periodic one at 8).
    let mut rows = Rows {
        stop_at: Some(13),
        ..Rows::default()
    };
    let out = run_built(&cfg, &mut rows, dir.path(), build).unwrap();
    assert_eq!((out.end.clone(), out.steps), (RunEnd::Interrupted, 13));
    let steps: Vec<u64> = checkpoint::list(dir.path())
        .iter()
        .map(|c| c.step)
        .collect();
    assert_eq!(steps, vec![13, 8]);

    // Resumed, then crashes after step 22: its last checkpoint is 16; rows 17..22 are void.
    rows.stop_at = None;
    rows.crash_at = Some(22);
    assert!(run_built(&cfg, &mut rows, dir.path(), build).is_err());
    let steps: Vec<u64> = checkpoint::list(dir.path())
        .iter()
        .map(|c| c.step)
        .collect();
    assert_eq!(steps, vec![16, 13], "the newest two are kept");

    rows.crash_at = None;
    let out = run_built(&cfg, &mut rows, dir.path(), build).unwrap();
    assert_eq!(rows.resumed_at, vec![0, 13, 16]);
    assert_same(
        &format!("{arch:?} stopped at 13, crashed at 22"),
        &rows,
        &out,
        &ref_rows,
        &ref_out,
    );
}

#[test]
fn a_gpt_resumed_after_a_stop_and_a_crash_ends_bit_identical() {
    stop_crash_and_resume(Arch::Gpt);
}

#[test]
fn a_looped_model_resumed_after_a_stop_and_a_crash_ends_bit_identical() {
    stop_crash_and_resume(Arch::Looped);
}

/// MELT post-trained from a finished looped parent: the transition ends at step 12, so the stop
/// at 13 and the crash at 22 both fall in the distillation, which resumes with its teacher.
#[test]
fn a_melt_model_resumed_after_a_stop_and_a_crash_ends_bit_identical() {
    let mut parent = config(Arch::Looped);
    parent.train.tokens = 6 * 8 * 32;
    let parent_dir = tempfile::tempdir().unwrap();
    run(&parent, &mut Rows::default(), parent_dir.path()).unwrap();
    let weights = checkpoint::final_weights_path(parent_dir.path());

    let mut child = config(Arch::Looped);
    child.model.melt_from = Some("parent".into());
    let l = child.model.looped.as_mut().unwrap();
    l.melt_chunk = Some(8);
    l.depth_sampling = DepthSampling::Fixed;
    child.train.melt_transition_steps = Some(12);
    let build = || -> Option<Box<dyn CausalLm>> {
        let vocab = moby_dick(60_000, 32).vocab_size();
        let model = build_melt_model(&child, &parent, &weights, vocab, &Device::Cpu).unwrap();
        Some(Box::new(model))
    };
    stop_crash_and_resume_built(child.clone(), &build);
}

/// Muon's momentum warms up over 12 steps and its weight decay falls every step: both must be
/// continued exactly from the update count, and its buffers restored, for the same numbers.
fn with_muon(arch: Arch) -> RunConfig {
    let mut cfg = config(arch);
    cfg.train.optimizer = OptimizerKind::Muon;
    cfg.train.muon_momentum_warmup = 12;
    cfg.train.muon_lr = Some(2e-2);
    cfg
}

#[test]
fn a_muon_gpt_resumed_after_a_stop_and_a_crash_ends_bit_identical() {
    stop_crash_and_resume_with(with_muon(Arch::Gpt));
}

#[test]
fn a_muon_looped_model_resumed_after_a_stop_and_a_crash_ends_bit_identical() {
    stop_crash_and_resume_with(with_muon(Arch::Looped));
}

/// Mixed precision changes no state but the arithmetic: a bf16 run resumes bit-identically too
/// (the bf16 kernel gives the same sums at any thread count and on every call).
#[test]
fn a_bf16_looped_model_resumed_after_a_stop_and_a_crash_ends_bit_identical() {
    if !loopscale::model::bf16_available() {
        eprintln!("note: this CPU has no AVX512-BF16; bf16 resume not tested here");
        return;
    }
    let mut cfg = config(Arch::Looped);
    cfg.train.precision = loopscale::model::Precision::Bf16;
    stop_crash_and_resume_with(cfg);
}

#[test]
fn damaged_checkpoints_are_detected_and_the_run_falls_back() {
    let cfg = config(Arch::Gpt);
    let (ref_rows, ref_out) = reference(&cfg, &|| None);
    let dir = tempfile::tempdir().unwrap();
    let mut rows = Rows {
        crash_at: Some(20),
        ..Rows::default()
    };
    assert!(run(&cfg, &mut rows, dir.path()).is_err());
    let found = checkpoint::list(dir.path());
    assert_eq!(
        found.iter().map(|c| c.step).collect::<Vec<_>>(),
        vec![16, 8]
    );

    // A flipped byte in the newest: the checksum catches it, the run resumes from step 8.
    let mut bytes = std::fs::read(&found[0].tensors).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&found[0].tensors, &bytes).unwrap();
    rows.crash_at = Some(12);
    assert!(run(&cfg, &mut rows, dir.path()).is_err());
    assert_eq!(rows.resumed_at, vec![0, 8]);
    let warning = rows
        .notes
        .iter()
        .find(|n| n.starts_with("warning"))
        .expect("a warning about the damaged checkpoint");
    assert!(
        warning.contains("ckpt-000000016") && warning.contains("SHA-256 mismatch"),
        "{warning}"
    );
    assert!(
        dir.path()
            .join("ckpt-000000016.safetensors.corrupt")
            .exists(),
        "set aside, not deleted"
    );

    // Truncate the only one left (8; the crash at 12 came before the next): with no good
    // checkpoint the run starts again from scratch.
    let found = checkpoint::list(dir.path());
    assert_eq!(found.iter().map(|c| c.step).collect::<Vec<_>>(), vec![8]);
    let len = std::fs::metadata(&found[0].tensors).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&found[0].tensors)
        .unwrap()
        .set_len(len / 3)
        .unwrap();
    rows.notes.clear();
    rows.crash_at = None;
    let out = run(&cfg, &mut rows, dir.path()).unwrap();
    assert_eq!(rows.resumed_at, vec![0, 8, 0]);
    assert!(
        rows.notes
            .iter()
            .any(|n| n.starts_with("warning") && n.contains("ckpt-000000008")),
        "{:?}",
        rows.notes
    );
    assert_same(
        "after a flipped byte and a truncation",
        &rows,
        &out,
        &ref_rows,
        &ref_out,
    );
}

#[test]
fn a_checkpoint_of_another_run_is_refused() {
    let cfg = config(Arch::Gpt);
    let dir = tempfile::tempdir().unwrap();
    let mut rows = Rows {
        stop_at: Some(5),
        ..Rows::default()
    };
    run(&cfg, &mut rows, dir.path()).unwrap();
    let mut other = cfg.clone();
    other.seed = 8;
    let mut rows = Rows::default();
    let out = run(&other, &mut rows, dir.path()).unwrap();
    assert_eq!(rows.resumed_at, vec![0]);
    assert_eq!(out.end, RunEnd::Done);
    assert!(
        rows.notes.iter().any(|n| n.contains("belongs to run")),
        "{:?}",
        rows.notes
    );
}
