//! The command backend through the binary: runs trained by another program that speaks the
//! metrics protocol (`tests/fixtures/trainers/script_trainer.sh`, which plays every kind of
//! trainer, good and bad), recorded into the same tables as built-in runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::moby_dick_file;
use loopscale::store::{RunRow, RunStatus, Store};

const BIN: &str = env!("CARGO_BIN_EXE_loopscale");

fn trainer() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/trainers/script_trainer.sh")
}

/// A one-run sweep whose trainer is the script in `mode`.
fn sweep(dir: &Path, mode: &str, retries: u32) -> PathBuf {
    let corpus = moby_dick_file(dir, 20_000);
    let path = dir.join(format!("{mode}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"
[sweep]
name = "{mode}"
db = "{db}"
retries = {retries}

[data]
corpus = "{corpus}"
seq_len = 32

[train]
backend = "command"
command = ["{trainer}", "{mode}", "{{metrics}}", "{{run_dir}}", "{{config}}"]
tokens = 640
batch_size = 2

[model]
d_model = 16
n_heads = 2
n_layers = 1
"#,
            db = dir.join(format!("{mode}.sqlite")).display(),
            corpus = corpus.display(),
            trainer = trainer().display(),
        ),
    )
    .unwrap();
    path
}

fn loopscale(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run loopscale")
}

/// Runs the sweep of `mode`; returns the run's row and its metrics steps.
fn train(mode: &str, retries: u32) -> (RunRow, Vec<u64>, Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = sweep(dir.path(), mode, retries);
    let out = loopscale(&["run", file.to_str().unwrap(), "--plain"]);
    eprintln!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let store = Store::open_read_only(&dir.path().join(format!("{mode}.sqlite"))).unwrap();
    let run = store.runs(mode).unwrap().remove(0);
    let steps = store
        .train_losses(&run.key)
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    (run, steps, store, dir)
}

#[test]
fn a_trainer_speaking_the_protocol_fills_the_same_tables_as_the_builtin_one() {
    let (run, steps, store, _dir) = train("good", 0);
    assert_eq!(run.status, RunStatus::Done, "{:?}", run.error);
    assert_eq!(steps, (1..=10).collect::<Vec<_>>());
    assert_eq!(run.final_val_loss, Some(2.1));
    assert_eq!(run.steps_done, Some(10));
    let evals = store
        .query(&format!(
            "SELECT step, test_loops, val_loss FROM evals WHERE run_key = '{}' ORDER BY step, test_loops",
            run.key
        ))
        .unwrap()
        .to_csv();
    assert_eq!(
        evals, "step,test_loops,val_loss\n5,,2.6\n10,,2.1\n10,2,2.05\n",
        "evals at the training depth and at test-time loops"
    );
    // The trainer was given its configuration.
    let config = std::fs::read_to_string(
        _dir.path()
            .join("good.runs")
            .join(&run.key)
            .join("config.json"),
    )
    .unwrap();
    assert!(
        config.contains("\"steps\": 10") && config.contains("corpus_path"),
        "{config}"
    );
}

#[test]
fn a_trainer_killed_mid_run_and_resumed_leaves_one_row_per_step() {
    let (run, steps, _, _dir) = train("crash_once", 1);
    assert_eq!(run.status, RunStatus::Done, "{:?}", run.error);
    assert_eq!(run.attempts, 2, "the first attempt was killed at step 7");
    assert_eq!(
        steps,
        (1..=10).collect::<Vec<_>>(),
        "steps 6 and 7 were trained twice and recorded once"
    );
}

#[test]
fn every_kind_of_bad_trainer_fails_with_what_went_wrong() {
    for (mode, status, expected) in [
        (
            "no_final",
            RunStatus::Failed,
            vec!["exited 0 without a final row"],
        ),
        (
            "malformed",
            RunStatus::Failed,
            vec!["metrics.jsonl line 4: not JSON"],
        ),
        (
            "wrong_type",
            RunStatus::Failed,
            vec!["line 4", "`train_loss` must be a number, found \"low\""],
        ),
        (
            "backwards",
            RunStatus::Failed,
            vec!["step 2 goes backwards (the previous training row was step 3)"],
        ),
        (
            "crash",
            RunStatus::Failed,
            vec![
                "exited with status 7",
                "CUDA error: out of memory (pretend)",
            ],
        ),
        (
            "nan",
            RunStatus::Diverged,
            vec!["training loss is NaN at step 4"],
        ),
    ] {
        let (run, steps, store, _dir) = train(mode, 0);
        assert_eq!(run.status, status, "{mode}: {:?}", run.error);
        let error = run.error.clone().unwrap_or_default();
        for e in expected {
            assert!(error.contains(e), "{mode}: missing {e:?} in {error:?}");
        }
        // Rows before the bad one are kept.
        assert!(steps.starts_with(&[1, 2, 3]), "{mode}: {steps:?}");
        if mode == "nan" {
            let losses = store.train_losses(&run.key).unwrap();
            assert_eq!(losses[3], (4, None), "a non-finite loss is stored as NULL");
        }
    }
}

#[test]
fn plan_refuses_a_command_that_cannot_run_or_uses_an_unknown_placeholder() {
    let dir = tempfile::tempdir().unwrap();
    let file = sweep(dir.path(), "good", 0);
    let text = std::fs::read_to_string(&file).unwrap();
    for (edit, expected) in [
        (
            text.replace(&trainer().display().to_string(), "./no-such-trainer.sh"),
            "cannot run \"./no-such-trainer.sh\"",
        ),
        (
            text.replace("{metrics}", "{metric}"),
            "unknown placeholder {metric}",
        ),
        (
            text.replace("backend = \"command\"\n", ""),
            "`train.command` is set but `train.backend` is \"builtin\"",
        ),
    ] {
        std::fs::write(&file, &edit).unwrap();
        let out = loopscale(&["plan", file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in {stderr}"
        );
        assert!(stderr.contains("train.command"), "{stderr}");
    }
    // A file that exists but is not executable.
    let script = dir.path().join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\n").unwrap();
    std::fs::write(
        &file,
        text.replace(&trainer().display().to_string(), "./not-executable.sh"),
    )
    .unwrap();
    let out = loopscale(&["plan", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not executable"), "{stderr}");
}

#[test]
fn a_command_trainer_gets_the_token_shards_and_its_losses_become_bits_per_byte() {
    let dir = tempfile::tempdir().unwrap();
    let file = sweep(dir.path(), "good", 0);
    let toml = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        toml.replace("seq_len = 32", "seq_len = 32\ntokenizer = \"gpt2\""),
    )
    .unwrap();
    let out = loopscale(&["run", file.to_str().unwrap(), "--plain"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = Store::open_read_only(&dir.path().join("good.sqlite")).unwrap();
    let run = store.runs("good").unwrap().remove(0);
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            dir.path()
                .join("good.runs")
                .join(&run.key)
                .join("config.json"),
        )
        .unwrap(),
    )
    .unwrap();
    // The text's GPT-2 ids, as the tokenized-text cache's llm.c shards: one segment a split.
    assert_eq!(config["vocab_size"], 50_257);
    for split in ["train", "val"] {
        let segs = config["token_segments"][split].as_array().unwrap();
        assert_eq!(segs.len(), 1, "{config}");
        let s = &segs[0];
        assert_eq!(
            (s["offset"].as_u64(), s["width"].as_u64()),
            (Some(1024), Some(2))
        );
        assert!(std::path::Path::new(s["path"].as_str().unwrap()).is_file());
    }
    let bpt = config["bytes_per_token"].as_f64().unwrap();
    assert!((3.0..6.0).contains(&bpt), "{bpt}");
    // The trainer's last validation loss (2.1 nats/token) in bits per byte of that text.
    let bpb = store
        .query(&format!(
            "SELECT final_val_bpb, bytes_per_token FROM runs WHERE run_key = '{}'",
            run.key
        ))
        .unwrap()
        .to_csv();
    let expected = 2.1 / std::f64::consts::LN_2 / bpt;
    let got: Vec<f64> = bpb
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(
        (got[0] - expected).abs() < 1e-9 && (got[1] - bpt).abs() < 1e-12,
        "{bpb}"
    );
}
