//! `loopscale fit` through the binary: Epoch AI's Chinchilla points from CSV, and a sweep
//! database whose runs follow a known compute law; fits are recorded in the `fits` table.

use std::process::Command;

use loopscale::config::RunConfig;
use loopscale::config::{DataConfig, TrainConfig};
use loopscale::model::ModelConfig;
use loopscale::store::{NewRun, Store};

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
                lineage: None,
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
    record_finished(&db, "law", &runs);

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
    drop(store);

    // The sweep file stands for its database: the same law from the same runs.
    let sweep = dir.path().join("law.toml");
    std::fs::write(
        &sweep,
        format!(
            "[sweep]\nname = \"law\"\ndb = \"{}\"\n\n[model]\narch = \"gpt\"\n",
            db.display()
        ),
    )
    .unwrap();
    let (ok, stdout, stderr) = fit_cmd(&[
        sweep.to_str().unwrap(),
        "--law",
        "compute",
        "--resamples",
        "20",
        "--json",
        "--no-save",
    ]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!((json_param(&v, "E") - e).abs() / e < 0.01, "{v}");
    // A sweep file whose database does not exist yet says to train it, not "no loss column".
    let untrained = dir.path().join("untrained.toml");
    std::fs::write(
        &untrained,
        format!(
            "[sweep]\nname = \"untrained\"\ndb = \"{}\"\n\n[model]\narch = \"gpt\"\n",
            dir.path().join("none.sqlite").display()
        ),
    )
    .unwrap();
    let (ok, _, stderr) = fit_cmd(&[untrained.to_str().unwrap(), "--law", "compute"]);
    assert!(!ok);
    assert!(
        stderr.contains("does not exist yet") && stderr.contains("loopscale run"),
        "{stderr}"
    );
}

#[test]
fn with_seeds_the_bootstrap_resamples_configurations_not_runs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("seeds.sqlite");
    // Six configurations on L(C) = 1.5 + 40·C^(-0.12), two seeds each, ±0.5% apart.
    let runs: Vec<(NewRun, f64)> = (0..6)
        .flat_map(|i| {
            (0..2u64).map(move |seed| {
                let config = RunConfig {
                    data: DataConfig::default(),
                    train: TrainConfig {
                        tokens: 10_000 * (i + 1),
                        ..TrainConfig::default()
                    },
                    model: ModelConfig::default(),
                    seed,
                    lineage: None,
                };
                let flops = 1e12 * 4f64.powi(i as i32);
                let loss =
                    (1.5 + 40.0 * flops.powf(-0.12)) * (1.0 + 0.005 * (2.0 * seed as f64 - 1.0));
                let run = NewRun {
                    key: config.key(),
                    variant: None,
                    config,
                    params: 1000,
                    non_embedding_params: 900,
                    tokens: 1000,
                    flops,
                };
                (run, loss)
            })
        })
        .collect();
    record_finished(&db, "seeds", &runs);
    let (ok, stdout, stderr) = fit_cmd(&[
        db.to_str().unwrap(),
        "--law",
        "compute",
        "--resamples",
        "30",
        "--no-save",
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(
            "bootstrap: resampling 6 replicate groups (configurations with their seeds) of 12 runs"
        ),
        "{stdout}"
    );
    // The law is the truth up to the seeds' ±0.5%: its residuals are the seed noise itself.
    assert!(
        stdout.contains("lack of fit against seed noise")
            && stdout.contains("on 3 and 6 df")
            && stdout.contains("within seed noise"),
        "{stdout}"
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

/// Runs `loopscale fit ARGS`, returning (success, stdout, stderr).
/// A sweep database at `db` holding `runs` of sweep `name`, each finished with its loss.
fn record_finished(db: &std::path::Path, name: &str, runs: &[(NewRun, f64)]) {
    crate::common::record_finished(&mut Store::open(db).unwrap(), name, "", runs);
}

fn fit_cmd(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).arg("fit").args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Points of a Parcae-shaped law, L = 2 + 50·N(μ)^-0.3 + 30·D^-0.2 + z·e^(-T/μ), N(μ) = 1e6·μ,
/// D = C/(6·N(μ)), four budgets × μ ∈ `mus` × T ∈ `ts`, as CSV.
fn parcae_csv(mus: &[f64], ts: &[f64], z: f64) -> String {
    let mut s = String::from("n_mu,tokens,flops,mu,t,loss\n");
    for c in [1e15, 4e15, 1.6e16, 6.4e16] {
        for &mu in mus {
            let n = 1e6 * mu;
            let d = c / (6.0 * n);
            for &t in ts {
                let l = 2.0 + 50.0 * n.powf(-0.3) + 30.0 * d.powf(-0.2) + z * (-t / mu).exp();
                s.push_str(&format!("{n},{d},{c},{mu},{t},{l}\n"));
            }
        }
    }
    s
}

#[test]
fn parcae_law_from_csv_is_reported_with_its_names_and_rollout_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("parcae.csv");
    std::fs::write(&csv, parcae_csv(&[1.0, 2.0, 4.0, 8.0, 16.0], &[1.0], 0.0)).unwrap();
    let db = dir.path().join("fits.sqlite");
    let base = [
        csv.to_str().unwrap(),
        "--law",
        "parcae",
        "--n-col",
        "n_mu",
        "--d-col",
        "tokens",
        "--c-col",
        "flops",
        "--resamples",
        "20",
        "--db",
        db.to_str().unwrap(),
    ];
    let (ok, stdout, stderr) = fit_cmd(&[&base[..], &["--json"]].concat());
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    for (name, want) in [("E", 2.0), ("X", 50.0), ("x", 0.3), ("Y", 30.0), ("y", 0.2)] {
        let got = json_param(&v, name);
        assert!(
            (got / want - 1.0).abs() < 1e-3,
            "{name} = {got}, truth {want}"
        );
    }
    let h = &v["reports"][0][1]["heldout"];
    assert_eq!(h["n"], 5, "{v}");
    assert!(h["what"].as_str().unwrap().contains("largest C budget"));
    let (ok, stdout, stderr) = fit_cmd(&base);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("held out the largest C budget"), "{stdout}");
    let store = Store::open_read_only(&db).unwrap();
    let q = store
        .query("SELECT law, n_points, heldout_n FROM fits ORDER BY fit_id")
        .unwrap();
    assert_eq!(q.rows[0], vec!["parcae", "20", "5"]);
}

#[test]
fn laws_without_their_columns_name_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("parcae.csv");
    std::fs::write(&csv, parcae_csv(&[1.0, 2.0, 4.0], &[1.0, 2.0, 4.0], 0.5)).unwrap();
    let path = csv.to_str().unwrap();
    let common = [
        path,
        "--law",
        "parcae-unified",
        "--n-col",
        "n_mu",
        "--d-col",
        "tokens",
    ];
    let (ok, _, err) = fit_cmd(&[&common[..], &["--test-loops-col", "t"]].concat());
    assert!(!ok);
    assert!(
        err.contains("--loops-col") && err.contains("parcae-unified"),
        "{err}"
    );
    let (ok, _, err) = fit_cmd(&[&common[..], &["--loops-col", "mu"]].concat());
    assert!(!ok);
    assert!(err.contains("--test-loops-col"), "{err}");
    let (ok, _, err) = fit_cmd(&[path, "--law", "parcae", "--d-col", "tokens"]);
    assert!(!ok);
    assert!(err.contains("--n-col") && err.contains("N(μ)"), "{err}");
    let (ok, _, err) =
        fit_cmd(&[&common[..], &["--loops-col", "mu", "--test-loops-col", "T"]].concat());
    assert!(!ok);
    assert!(
        err.contains("\"T\""),
        "a missing named column is named: {err}"
    );
    let (ok, _, err) = fit_cmd(&[path, "--law", "isoflop", "--c-col", "flops"]);
    assert!(!ok);
    assert!(
        err.contains("--law isoflop") && err.contains("--loops-col"),
        "{err}"
    );
}

/// The iso-FLOP fit flags a budget whose lowest loss is at the largest loops sampled, in its
/// output and in `fits.notes`; a flat test-time curve is called flat the same way.
#[test]
fn edge_optima_and_flat_curves_are_flagged_in_output_and_fits() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fits.sqlite");
    // Loops 1..12 and budgets whose μ* reaches past 12 (μ* ∝ C^0.4, ≈ 3 at 1e15, ≈ 16 at 6.4e16).
    let csv = dir.path().join("iso.csv");
    std::fs::write(
        &csv,
        parcae_csv(&[1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0], &[1.0], 0.0)
            .replace("mu,t,loss", "loops,t,loss")
            .replace("n_mu,", "n,"),
    )
    .unwrap();
    let (ok, stdout, stderr) = fit_cmd(&[
        csv.to_str().unwrap(),
        "--law",
        "isoflop",
        "--n-col",
        "n",
        "--c-col",
        "flops",
        "--loops-col",
        "loops",
        "--resamples",
        "20",
        "--db",
        db.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("at or beyond the largest sampled (12)"),
        "{stdout}"
    );
    assert!(stdout.contains("NOTE: budget C = 6.400e16"), "{stdout}");

    let flat = dir.path().join("flat.csv");
    let rows: String = [2.251, 2.238, 2.246, 2.232, 2.257, 2.243]
        .iter()
        .zip([1, 2, 4, 8, 16, 32])
        .map(|(l, t)| format!("{t},{l}\n"))
        .collect();
    std::fs::write(&flat, format!("test_loops,loss\n{rows}")).unwrap();
    let (ok, stdout, stderr) = fit_cmd(&[
        flat.to_str().unwrap(),
        "--law",
        "test-time",
        "--resamples",
        "50",
        "--db",
        db.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("NOTE: no saturating gain"), "{stdout}");

    let store = Store::open_read_only(&db).unwrap();
    let q = store
        .query("SELECT law, notes FROM fits ORDER BY fit_id")
        .unwrap();
    assert_eq!(q.rows[0][0], "isoflop");
    assert!(
        q.rows[0][1].contains("largest loops sampled (12)"),
        "{:?}",
        q.rows
    );
    assert_eq!(q.rows[1][0], "test-time");
    assert!(
        q.rows[1][1].starts_with("no saturating gain"),
        "{:?}",
        q.rows
    );
}

/// A store of schema version 1 (before `fits.notes`) is read as it is and migrated by a fit
/// that records into it.
#[test]
fn a_version_1_store_is_read_and_then_migrated_by_fit() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v1.sqlite");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(include_str!("../crates/store/src/schema.sql"))
            .unwrap();
        conn.pragma_update(None, "application_id", loopscale::store::APPLICATION_ID)
            .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
    }
    drop(Store::open_read_only(&db).expect("a version-1 store reads"));
    let csv = dir.path().join("flat.csv");
    std::fs::write(
        &csv,
        "test_loops,loss\n1,2.3\n2,2.2\n4,2.15\n8,2.13\n16,2.125\n",
    )
    .unwrap();
    let (ok, _, stderr) = fit_cmd(&[
        csv.to_str().unwrap(),
        "--law",
        "test-time",
        "--resamples",
        "0",
        "--db",
        db.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let store = Store::open_read_only(&db).unwrap();
    let q = store
        .query("SELECT count(*), count(notes) FROM fits")
        .unwrap();
    assert_eq!(q.rows[0], vec!["1", "0"], "a saturating curve has no notes");
}

/// `--law parcae` on a database: N(μ) is counted from each looped run's configuration (the
/// prelude and coda once, the core μ times, as `model::looped_split` splits them), GPT runs are
/// left out and counted, and a law built on that count is recovered.
#[test]
fn parcae_law_from_a_database_counts_unrolled_parameters() {
    use loopscale::model::{Arch, LoopedConfig, looped_split};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("parcae.sqlite");
    let (e, x, xe, y, ye) = (2.0, 50.0, 0.3, 30.0, 0.2);
    let mut runs: Vec<(NewRun, f64)> = Vec::new();
    for (i, mu) in [None, Some(1), Some(2), Some(4), Some(8)]
        .into_iter()
        .enumerate()
    {
        for tokens in [100_000u64, 400_000, 1_600_000] {
            let model = match mu {
                Some(m) => ModelConfig {
                    arch: Arch::Looped,
                    looped: Some(LoopedConfig {
                        mean_recurrence: m,
                        ..LoopedConfig::default()
                    }),
                    ..ModelConfig::default()
                },
                None => ModelConfig::default(),
            };
            // The count the law is about, written out here from the model's split.
            let n = match mu {
                Some(m) => {
                    let split = looped_split(&model);
                    split.once as f64 + m as f64 * split.per_loop as f64
                }
                None => 1e5,
            };
            let config = RunConfig {
                data: DataConfig::default(),
                train: TrainConfig {
                    tokens,
                    ..TrainConfig::default()
                },
                model,
                seed: 0,
                lineage: None,
            };
            let run = NewRun {
                key: config.key(),
                variant: None,
                config,
                params: 200_000,
                non_embedding_params: 100_000,
                tokens,
                flops: 6.0 * n * tokens as f64 * (1.0 + 0.01 * i as f64),
            };
            let loss = e + x * n.powf(-xe) + y * (tokens as f64).powf(-ye);
            // GPT runs get a loss off the law: if they were fitted, the fit would be off.
            runs.push((run, if mu.is_some() { loss } else { loss + 0.5 }));
        }
    }
    record_finished(&db, "parcae", &runs);
    let (ok, stdout, stderr) = fit_cmd(&[
        db.to_str().unwrap(),
        "--law",
        "parcae",
        "--resamples",
        "0",
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["gpt_runs_left_out"], 3, "{v}");
    assert_eq!(v["reports"][0][1]["n_points"], 12, "{v}");
    for (name, want) in [("E", e), ("x", xe), ("y", ye)] {
        let got = json_param(&v, name);
        assert!(
            (got / want - 1.0).abs() < 1e-3,
            "{name} = {got}, truth {want}"
        );
    }
}

/// `--law isoflop` on a database of looped runs beside GPT runs (a Parcae sweep): the optima
/// over loops and over tokens are located among the looped runs, GPT runs left out and counted.
/// Looped losses are parabolas in ln μ around μ*(C) = 2·(C/10¹²)^0.5, and the GPTs' losses are
/// lower than every looped run's: had they been counted, the tokens optimum of every budget
/// would sit at the GPT's token count, the edge.
#[test]
fn isoflop_from_a_database_locates_optima_among_the_looped_runs() {
    use loopscale::model::{Arch, LoopedConfig};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("iso.sqlite");
    let mu_star = |c: f64| 2.0 * (c / 1e12).powf(0.5);
    let mut runs: Vec<(NewRun, f64)> = Vec::new();
    for c in [1e12, 4e12, 16e12] {
        for mu in [None, Some(1usize), Some(2), Some(4), Some(8), Some(16)] {
            let model = match mu {
                Some(m) => ModelConfig {
                    arch: Arch::Looped,
                    looped: Some(LoopedConfig {
                        mean_recurrence: m,
                        ..LoopedConfig::default()
                    }),
                    ..ModelConfig::default()
                },
                None => ModelConfig::default(),
            };
            let tokens = (c / (1e6 * mu.unwrap_or(1) as f64)) as u64;
            let config = RunConfig {
                data: DataConfig::default(),
                train: TrainConfig {
                    tokens,
                    ..TrainConfig::default()
                },
                model,
                seed: 0,
                lineage: None,
            };
            let loss = match mu {
                Some(m) => {
                    3.0 - 0.1 * (c / 1e12).ln() + 0.05 * ((m as f64).ln() - mu_star(c).ln()).powi(2)
                }
                None => 2.0 - 0.1 * (c / 1e12).ln(),
            };
            let run = NewRun {
                key: config.key(),
                variant: None,
                config,
                params: 200_000,
                non_embedding_params: 100_000,
                tokens,
                flops: c,
            };
            runs.push((run, loss));
        }
    }
    record_finished(&db, "iso", &runs);
    for (axis, want) in [("loops", 0.5), ("tokens", 0.5)] {
        let (ok, stdout, stderr) = fit_cmd(&[
            db.to_str().unwrap(),
            "--law",
            "isoflop",
            "--axis",
            axis,
            "--resamples",
            "0",
            "--json",
        ]);
        assert!(ok, "--axis {axis}: {stderr}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(v["gpt_runs_left_out"], 3, "{v}");
        // D*(C) = C/(10⁶·μ*(C)) ∝ C^0.5 as well.
        let a = json_param(&v, "a");
        assert!(
            (a - want).abs() < 0.05,
            "--axis {axis}: a = {a}, truth {want}"
        );
    }
}

/// `--law isoflop --axis params` on a CSV prints approach 2 and the surface side by side, and
/// records the surface as its own fit. The points follow L = 1.8 + 2000·N^-0.6 + 300·D^-0.2
/// (N*(C) ∝ C^0.25) on a grid whose offset from each budget's optimum drifts with C, two seeds
/// a point: approach 2 reads a steeper exponent, the surface recovers 0.25.
#[test]
fn isoflop_prints_approach_2_and_the_surface_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let (csv, db) = (dir.path().join("iso.csv"), dir.path().join("fits.sqlite"));
    let (e, a, b, alpha, beta): (f64, f64, f64, f64, f64) = (1.8, 2000.0, 300.0, 0.6, 0.2);
    let g = (alpha * a / (beta * b)).powf(1.0 / (alpha + beta));
    let mut rows = String::from("params,tokens,flops,loss\n");
    for k in 0..5 {
        let c = 1e18 * 10f64.powi(k);
        for j in [-1, 0, 1, 2, 3] {
            for seed in [-1.0, 1.0] {
                let n = g * (c / 6.0).powf(0.25) * (c / 1e18).powf(-0.15) * 4f64.powi(j);
                let d = c / (6.0 * n);
                let l = (e + a * n.powf(-alpha) + b * d.powf(-beta)) * (1.0 + 0.001 * seed);
                rows.push_str(&format!("{n},{d},{c},{l}\n"));
            }
        }
    }
    std::fs::write(&csv, rows).unwrap();
    let (ok, stdout, stderr) = fit_cmd(&[
        csv.to_str().unwrap(),
        "--law",
        "isoflop",
        "--axis",
        "params",
        "--n-col",
        "params",
        "--d-col",
        "tokens",
        "--c-col",
        "flops",
        "--resamples",
        "50",
        "--db",
        db.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("the exponent a of N*(C) ∝ C^a, two ways:"),
        "{stdout}"
    );
    let row = |label: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no {label} row in {stdout}"))
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let header = stdout
        .lines()
        .find(|l| l.contains("approach 2 (optimum per budget)"))
        .unwrap();
    assert!(header.contains("approach 3 (surface, β/(α+β))"), "{header}");
    let estimates = row("estimate");
    let (approach2, surface): (f64, f64) =
        (estimates[1].parse().unwrap(), estimates[2].parse().unwrap());
    assert!((surface - 0.25).abs() < 0.005, "{stdout}");
    assert!(approach2 - 0.25 > 0.02, "{stdout}");
    assert_eq!(row("95% interval").len(), 6, "two intervals: {stdout}");

    let store = Store::open_read_only(&db).unwrap();
    let q = store.query("SELECT law FROM fits ORDER BY fit_id").unwrap();
    let laws: Vec<&str> = q.rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(laws, ["isoflop", "isoflop-surface"]);
}
