//! μP's sweep keys: `model.parametrization` and `model.mup_base_width` leave every existing run
//! key as it was, the base width is dropped from standard runs, and each kind of bad input is
//! refused before anything trains with the file, the line and the key.

use std::path::{Path, PathBuf};

use loopscale::config::{DataConfig, RunConfig, TrainConfig};
use loopscale::model::{ModelConfig, Parametrization};
use loopscale::sweep::{Sweep, SweepError};

fn path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sweeps/inline.toml")
}

fn sweep(body: &str) -> Result<Sweep, SweepError> {
    Sweep::from_str(
        &format!("[sweep]\nname = \"t\"\n[data]\ncorpus = \"tiny_corpus.txt\"\n{body}"),
        &path(),
    )
}

fn refused(body: &str, parts: &[&str]) {
    let shown = match sweep(body) {
        Ok(s) => panic!("expected an error, got {} runs for:\n{body}", s.runs.len()),
        Err(e) => e.to_string(),
    };
    for p in ["inline.toml"].iter().chain(parts) {
        assert!(shown.contains(p), "missing {p:?} in:\n{shown}");
    }
}

#[test]
fn default_run_keys_are_unchanged_by_the_mup_keys() {
    // The key of this configuration before μP existed (`loopscale plan` at commit cf6afe9). Its
    // windows were drawn with replacement, as every run's before `data.order`: that order is
    // left out of the canonical form, so the key is still the one it had.
    let run = RunConfig {
        data: DataConfig {
            order: loopscale::config::DataOrder::Replacement,
            ..DataConfig::default()
        },
        train: TrainConfig {
            tokens: 1000,
            ..TrainConfig::default()
        },
        model: ModelConfig::default(),
        seed: 0,
        lineage: None,
    };
    assert_eq!(run.key(), "437a2ea88760b768");
    let json = run.canonical_json();
    assert!(
        !json.contains("\"parametrization\"") && !json.contains("\"mup_base_width\""),
        "{json}"
    );
    // Through a sweep file, with the keys written at their standard values: the same key.
    let s = sweep(
        "[train]\ntokens = 1000\n[model]\nparametrization = \"standard\"\nmup_base_width = 32\n",
    )
    .unwrap();
    let planned = &s.runs[0].config;
    assert_eq!(
        planned.model.mup_base_width, None,
        "dropped from a standard run"
    );
    let mut expected = run.clone();
    expected.data.corpus = planned.data.corpus.clone();
    expected.data.order = planned.data.order;
    assert_eq!(planned.key(), expected.key());
    assert!(
        s.warnings
            .iter()
            .any(|w| w.contains("model.mup_base_width"))
    );
    // μP is a different run.
    let mup = RunConfig {
        model: ModelConfig {
            parametrization: Parametrization::Mup,
            mup_base_width: Some(32),
            ..ModelConfig::default()
        },
        ..run.clone()
    };
    assert_ne!(mup.key(), run.key());
    assert!(
        mup.canonical_json()
            .contains("\"parametrization\":\"mup\",\"mup_base_width\":32")
    );
}

#[test]
fn a_mup_sweep_plans_gpt_and_looped_runs() {
    let s = sweep(
        "[train]\ntokens = 1000\n[model]\nd_model = [32, 64]\nn_heads = 2\nparametrization = \"mup\"\nmup_base_width = 32\n\
         [[variants]]\nname = \"gpt\"\n[[variants]]\nname = \"looped\"\nmodel.arch = \"looped\"\n",
    )
    .unwrap();
    assert_eq!(s.runs.len(), 4);
    for r in &s.runs {
        assert_eq!(r.config.model.parametrization, Parametrization::Mup);
        assert_eq!(r.config.model.mup_base_width, Some(32));
    }
}

#[test]
fn mup_without_a_base_width_is_refused() {
    refused(
        "[model]\nparametrization = \"mup\"\n",
        &[
            "model.parametrization",
            "model.mup_base_width",
            "mup_base_width = 64",
        ],
    );
}

#[test]
fn a_zero_base_width_is_refused() {
    refused(
        "[model]\nparametrization = \"mup\"\nmup_base_width = 0\n",
        &["model.mup_base_width", "at least 1"],
    );
}

#[test]
fn mup_with_muon_is_refused() {
    refused(
        "[train]\noptimizer = \"muon\"\n[model]\nparametrization = \"mup\"\nmup_base_width = 32\n",
        &["train.optimizer", "muon", "adamw"],
    );
}

#[test]
fn an_unknown_parametrization_lists_the_allowed_values() {
    refused(
        "[model]\nparametrization = \"mu-p\"\n",
        &["model.parametrization", "standard", "mup"],
    );
}

#[test]
fn a_negative_base_width_is_a_type_error() {
    refused(
        "[model]\nparametrization = \"mup\"\nmup_base_width = -32\n",
        &["model.mup_base_width"],
    );
}

#[test]
fn mup_with_parts_it_does_not_classify_is_refused() {
    for (key, value) in [
        ("loop_conditioning", "\"time_step\""),
        ("loop_gate", "\"selective\""),
        ("exit_head", "true"),
    ] {
        refused(
            &format!(
                "[model]\narch = \"looped\"\nparametrization = \"mup\"\nmup_base_width = 32\n{key} = {value}\n"
            ),
            &[&format!("model.{key}"), "mup"],
        );
    }
}
