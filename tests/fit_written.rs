//! Laws written as expressions through the binary: from a CSV file on the command line, from a
//! sweep database with the law in the stored sweep file's `[analysis.laws.NAME]` (Schwethelm's
//! looped law, φ recovered), recorded in `fits`; and the sweep-file errors of a written law.

use std::process::Command;

use loopscale::config::{DataConfig, RunConfig, TrainConfig};
use loopscale::model::{Arch, LoopedConfig, ModelConfig, looped_split};
use loopscale::store::{NewRun, Store};

const BIN: &str = env!("CARGO_BIN_EXE_loopscale");

fn fit_cmd(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).arg("fit").args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn param(v: &serde_json::Value, name: &str) -> f64 {
    v["reports"][0][1]["params"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {v}"))["value"]
        .as_f64()
        .unwrap()
}

#[test]
fn a_one_line_law_on_a_csv_fits_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("runs.csv");
    let mut text = String::from("C,loss,label\n");
    for i in 0..12 {
        let c = 1e15 * 1000f64.powf(i as f64 / 11.0);
        text.push_str(&format!("{c:e},{},run{i}\n", 1.7 + 300.0 * c.powf(-0.15)));
    }
    std::fs::write(&csv, text).unwrap();
    let db = dir.path().join("fits.sqlite");
    let (ok, stdout, stderr) = fit_cmd(&[
        csv.to_str().unwrap(),
        "--law-expr",
        "loss = E + A*C^(-alpha)",
        "--derived",
        "half=alpha/2",
        "--resamples",
        "0",
        "--db",
        db.to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    for (name, want) in [("E", 1.7), ("A", 300.0), ("alpha", 0.15)] {
        let got = param(&v, name);
        assert!(
            (got / want - 1.0).abs() < 1e-3,
            "{name} = {got}, truth {want}"
        );
    }
    let half = &v["reports"][0][1]["derived"][0];
    assert_eq!(half["name"], "half");
    assert!(
        (half["value"].as_f64().unwrap() - 0.075).abs() < 1e-4,
        "{half}"
    );
    let store = Store::open(&db).unwrap();
    let rows = store
        .query("SELECT f.law, p.name FROM fits f JOIN fit_params p USING (fit_id) ORDER BY p.name")
        .unwrap();
    let names: Vec<String> = rows.rows.iter().map(|r| r[1].clone()).collect();
    assert!(rows.rows.iter().all(|r| r[0] == "written"), "{names:?}");
    assert!(
        names.iter().any(|n| n == "alpha") && names.iter().any(|n| n == "half"),
        "{names:?}"
    );

    // Bad expressions and bindings: refused before fitting, naming what is wrong.
    let bad = [
        ("loss = E + A*C^(-alpha", "character"),
        ("loss = E + A*c^(-alpha)", "did you mean the column `C`"),
        ("loss = E + A*Q^(-alpha)", "reads no column"),
        ("nosuchlaw", "no law of that name"),
        (
            "loss = p0 + p1*C + p2*C^2 + p3*C^3 + p4*C^4 + p5*C^5 + p6*C^6 + p7*C^7 + p8*C^8 + p9*C^9 + p10*C^10 + p11*C^11",
            "distinct point",
        ),
    ];
    for (expr, want) in bad {
        let (ok, _, stderr) = fit_cmd(&[csv.to_str().unwrap(), "--law-expr", expr, "--no-save"]);
        assert!(!ok && stderr.contains(want), "{expr}: {stderr}");
    }
    let (ok, _, stderr) = fit_cmd(&[
        csv.to_str().unwrap(),
        "--law-expr",
        "loss = E + A*C^(-alpha)",
        "--param",
        "alpha=1:0",
        "--no-save",
    ]);
    assert!(!ok && stderr.contains("LO must be below HI"), "{stderr}");
}

const LOOPED_SWEEP: &str = r#"
[sweep]
name = "looped"
[data]
corpus = "tiny_corpus.txt"
[analysis.laws.looped]
expr = "loss = E + A*(n_once + r^phi*n_rec)^(-alpha) + B*D^(-beta)"
params.phi = { bounds = [0, 1] }
params.alpha = { start = [0.1, 1] }
params.beta = { start = [0.1, 1] }
derived = { n_opt = "beta/(alpha+beta)" }
"#;

/// Looped runs at two widths, μ ∈ {1, 2, 4, 8} and three token counts, whose final losses follow
/// Schwethelm et al.'s law with φ = 0.4 in the parameter counts the model really has.
#[test]
fn raw_scale_fits_a_target_that_crosses_zero_and_the_log_scale_refuses_it() {
    // A gain that changes sign (an accuracy difference, say): y = a + b·ln(x) with a < 0.
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("gains.csv");
    let mut text = String::from("x,gain\n");
    for i in 0..10 {
        let x = 2f64.powi(i);
        text.push_str(&format!("{x},{}\n", -0.3 + 0.1 * x.ln()));
    }
    std::fs::write(&csv, text).unwrap();
    let expr = "gain = a + b*ln(x)";
    let (ok, stdout, stderr) = fit_cmd(&[
        csv.to_str().unwrap(),
        "--law-expr",
        expr,
        "--param",
        "a=-inf:inf",
        "--raw-scale",
        "--resamples",
        "0",
        "--no-save",
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    for (name, want) in [("a", -0.3), ("b", 0.1)] {
        let got = param(&v, name);
        assert!((got - want).abs() < 1e-3, "{name} = {got}, truth {want}");
    }
    assert_eq!(
        v["selection"]["raw_scale"], true,
        "recorded in the selection"
    );
    // Without --raw-scale the log of a negative target is refused, naming the way out.
    let (ok, _, stderr) = fit_cmd(&[
        csv.to_str().unwrap(),
        "--law-expr",
        expr,
        "--param",
        "a=-inf:inf",
        "--resamples",
        "0",
        "--no-save",
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("gain") && stderr.contains("--raw-scale"),
        "{stderr}"
    );
}

#[test]
fn a_sweep_files_written_law_fits_its_database_and_recovers_phi() {
    let (e, a, phi, alpha, b, beta) = (1.9, 300.0, 0.4, 0.3, 800.0, 0.28);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("looped.sqlite");
    let mut runs: Vec<(NewRun, f64)> = Vec::new();
    for d_model in [32usize, 64, 128] {
        for mu in [1u32, 2, 4, 8] {
            for tokens in [200_000u64, 800_000, 3_200_000] {
                let model = ModelConfig {
                    d_model,
                    arch: Arch::Looped,
                    looped: Some(LoopedConfig {
                        mean_recurrence: mu as _,
                        ..LoopedConfig::default()
                    }),
                    ..ModelConfig::default()
                };
                let split = looped_split(&model);
                let (once, rec) = (
                    (split.once + split.conditioning) as f64,
                    split.per_loop as f64,
                );
                let loss = e
                    + a * (once + (mu as f64).powf(phi) * rec).powf(-alpha)
                    + b * (tokens as f64).powf(-beta);
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
                    params: 300_000,
                    non_embedding_params: 200_000,
                    tokens,
                    flops: 6.0 * (once + mu as f64 * rec) * tokens as f64,
                };
                runs.push((run, loss));
            }
        }
    }
    let mut store = Store::open(&db).unwrap();
    crate::common::record_finished(&mut store, "looped", LOOPED_SWEEP, &runs);
    drop(store);
    let (ok, stdout, stderr) = fit_cmd(&[
        db.to_str().unwrap(),
        "--law-expr",
        "looped",
        "--resamples",
        "0",
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["law"], "looped");
    // The report fits the sweep's own law and draws it, measured against predicted.
    let source = loopscale::report::resolve(&db, &[]).unwrap();
    let built = loopscale::report::build(&source, &dir.path().join("report")).unwrap();
    let chart = built
        .charts
        .iter()
        .find(|c| c.name == "written_laws")
        .unwrap();
    assert!(
        matches!(chart.outcome, loopscale::plot::Outcome::Drawn(_)),
        "{:?}",
        chart.outcome
    );
    for (name, want) in [("phi", phi), ("alpha", alpha), ("beta", beta), ("E", e)] {
        let got = param(&v, name);
        assert!(
            (got - want).abs() < 0.01 * want.max(1.0),
            "{name} = {got}, truth {want}: {v}"
        );
    }
}

#[test]
fn a_written_law_in_a_sweep_file_is_checked_where_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.toml");
    // The sweep's corpus does not exist here; only the [analysis] table is read.
    let laws = loopscale::sweep::analysis_of(LOOPED_SWEEP, &path)
        .unwrap()
        .laws;
    assert_eq!(laws.len(), 1);
    assert_eq!(laws[0].name, "looped");
    assert_eq!(
        laws[0]
            .params
            .iter()
            .find(|p| p.name == "phi")
            .unwrap()
            .bounds,
        Some((0.0, 1.0))
    );
    for (body, want) in [
        (
            "[analysis.laws.x]\nexpression = \"E\"\n",
            "unknown key `analysis.laws.x.expression`",
        ),
        (
            "[analysis.laws.x]\nparams.a = { bounds = [0, 1] }\n",
            "has no `expr`",
        ),
        (
            "[analysis.laws.x]\nexpr = \"E\"\nparams.a = { bounds = [1, 0] }\n",
            "analysis.laws.x.params.a.bounds",
        ),
        ("[analysis.laws.x]\nexpr = 3\n", "analysis.laws.x.expr"),
        (
            "[analysis.laws.x]\nexpr = \"E\"\nparams.a = { bound = [0, 1] }\n",
            "did you mean `bounds`",
        ),
    ] {
        let err = loopscale::sweep::analysis_of(body, &path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(want) && err.contains("s.toml"),
            "{body}: {err}"
        );
    }
}
