//! `loopscale fit` through the binary: Epoch AI's Chinchilla points from CSV, and a sweep
//! database whose runs follow a known compute law; fits are recorded in the `fits` table.

use std::process::Command;

use loopscale::config::RunConfig;
use loopscale::config::{DataConfig, TrainConfig};
use loopscale::model::ModelConfig;
use loopscale::store::{NewRun, Store};
use loopscale::train::{RunEnd, RunOutcome};

const BIN: &str = env!("CARGO_BIN_EXE_loopscale");

fn json_param(v: &serde_json::Value, name: &str) -> f64 {
    let params = v["reports"][0][1]["params"].as_array().unwrap();
    params
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {v}"))["value"]
        .as_f64()
        .unwrap()
}

#[test]
fn chinchilla_from_csv_reproduces_epoch() {
    let out = Command::new(BIN)
        .args([
            "fit",
            "tests/data/chinchilla_epoch_extracted.csv",
            "--law",
            "chinchilla",
            "--n-col",
            "Model Size",
            "--c-col",
            "Training FLOP",
            "--drop-top-loss",
            "5",
            "--resamples",
            "20",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (name, epoch) in [
        ("E", 1.817),
        ("A", 477.8),
        ("B", 2143.9),
        ("alpha", 0.3473),
        ("beta", 0.3672),
    ] {
        let ours = json_param(&v, name);
        assert!(
            ((ours - epoch) / epoch).abs() < 0.02,
            "{name}: {ours} vs Epoch's {epoch}"
        );
    }
}

#[test]
fn compute_law_from_a_sweep_database_recovers_known_parameters_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("law.sqlite");
    let mut store = Store::open(&db).unwrap();
    // Runs whose final loss follows L(C) = 1.5 + 40·C^(-0.12) exactly.
    let (e, a, alpha) = (1.5, 40.0, 0.12);
    let runs: Vec<(NewRun, f64)> = (0..12)
        .map(|i| {
            let config = RunConfig {
                data: DataConfig::default(),
                train: TrainConfig {
                    tokens: 10_000 * (i + 1),
                    ..TrainConfig::default()
                },
                model: ModelConfig::default(),
                seed: 0,
            };
            let flops = 1e12 * 2f64.powi(i as i32);
            let run = NewRun {
                key: config.key(),
                variant: None,
                config,
                params: 1000,
                non_embedding_params: 900,
                tokens: 1000,
                flops,
            };
            (run, e + a * flops.powf(-alpha))
        })
        .collect();
    let new: Vec<NewRun> = runs.iter().map(|(r, _)| r.clone()).collect();
    store
        .register_sweep("law", "", "law.toml", "", &new)
        .unwrap();
    for (run, loss) in &runs {
        let attempt = store.start_attempt(&run.key, None).unwrap();
        let outcome = RunOutcome {
            end: RunEnd::Done,
            steps: 1,
            tokens: 1000,
            flops: run.flops,
            final_val_loss: Some(*loss),
            final_val_bpb: None,
            final_train_loss: None,
            wall_seconds: 1.0,
            tokens_per_second: 1.0,
            loss_spikes: 0,
        };
        store
            .finish_attempt(&run.key, attempt, &[], &[], &outcome)
            .unwrap();
    }
    drop(store);

    let out = Command::new(BIN)
        .args([
            "fit",
            db.to_str().unwrap(),
            "--law",
            "compute",
            "--resamples",
            "50",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!((json_param(&v, "E") - e).abs() / e < 0.01, "{v}");
    assert!(
        (json_param(&v, "alpha") - alpha).abs() / alpha < 0.02,
        "{v}"
    );

    let store = Store::open_read_only(&db).unwrap();
    let q = store.query("SELECT law, n_points FROM fits").unwrap();
    assert_eq!(q.rows, vec![vec!["compute".to_string(), "12".to_string()]]);
    let q = store.query("SELECT count(*) FROM fit_params WHERE kind = 'param' AND lo IS NOT NULL AND lo <= value AND value <= hi AND level = 0.95").unwrap();
    assert_eq!(
        q.rows[0][0], "3",
        "E, A, alpha each with an interval around the estimate"
    );
}

#[test]
fn a_missing_source_is_a_clear_error() {
    let out = Command::new(BIN)
        .args(["fit", "no/such.csv", "--law", "compute"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no/such.csv") && err.contains("no such file"),
        "{err}"
    );
}
