//! `loopscale suggest` with a written law and with seeds, on sweep databases whose losses come
//! from a known law (no training): a sweep's `[analysis.laws.NAME]` (Schwethelm's looped law)
//! chooses among the sweep's candidate runs, read as the store reads finished runs, and the
//! interval after training the choice is narrower; an unknown law and a variable that only
//! training measures are named; and another seed of a finished configuration is chosen where
//! the seed noise is large at the point the target hangs on, not where it is tiny.

use std::path::{Path, PathBuf};

use loopscale::model::looped_split;
use loopscale::store::{NewRun, Store};
use loopscale::sweep::Sweep;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

/// A sweep file's text with its database under `dir`. The corpus is the shipped Moby-Dick, by
/// name: a corpus path under `dir` would enter every run key, and key order (replicate groups,
/// bootstrap draws) would change from one run of the test to the next.
fn sweep_file(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        "[sweep]\nname = \"{name}\"\ndb = \"{}\"\n{body}",
        dir.join(format!("{name}.sqlite")).display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Every run of `sweep` not in the database yet, recorded finished with the loss `truth` gives
/// it times exp(σ·z).
fn record(sweep_path: &Path, truth: &dyn Fn(&NewRun) -> f64, sigma: f64, seed: u64) {
    let sweep = Sweep::load(sweep_path).unwrap();
    let mut store = Store::open(&sweep.db).unwrap();
    let have: Vec<String> = store
        .runs(&sweep.name)
        .map(|r| r.into_iter().map(|r| r.key).collect())
        .unwrap_or_default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let z = Normal::new(0.0, 1.0).unwrap();
    let mut fresh: Vec<NewRun> = loopscale::engine::plan_runs(&sweep)
        .into_iter()
        .filter(|r| !have.contains(&r.key))
        .collect();
    // The noise goes to runs in an order of their settings, not of their keys.
    fresh.sort_by_key(|r| {
        let mu = r.config.model.looped.as_ref().map(|l| l.mean_recurrence);
        (r.tokens, r.config.model.d_model, mu, r.config.seed)
    });
    let runs: Vec<(NewRun, f64)> = fresh
        .into_iter()
        .map(|r| {
            let loss = truth(&r) * (sigma * z.sample(&mut rng)).exp();
            (r, loss)
        })
        .collect();
    let text = std::fs::read_to_string(sweep_path).unwrap();
    crate::common::record_finished(&mut store, &sweep.name, &text, &runs);
}

fn suggest(args: &[&str]) -> (bool, String) {
    let out = crate::common::loopscale(&[&["suggest"], args].concat());
    (out.status.success(), crate::common::text(&out))
}

/// The current interval's width `suggest` prints (`… (width W) over …`).
fn width_now(said: &str) -> f64 {
    let at = said.find("(width ").expect("a width") + 7;
    said[at..].split(')').next().unwrap().parse().unwrap()
}

const LOOPED: &str = r#"
seeds = [0, 1]
[data]
corpus = "moby-dick"
seq_len = 32
[train]
tokens = [51200, 204800, 819200]
batch_size = 8
[model]
arch = "looped"
d_model = [32, 64]
n_heads = 2
mean_recurrence = [1, 2, 4]
[analysis.laws.looped]
expr = "loss = E + A*(n_once + r^phi*n_rec)^(-alpha) + B*D^(-beta)"
params.phi = { bounds = [0, 1] }
params.alpha = { start = [0.1, 1] }
params.beta = { start = [0.1, 1] }
params.E = { start = [0.5, 3] }
derived = { n_opt = "beta/(alpha+beta)" }
"#;

/// Schwethelm's law with φ = 0.5 in the parameter counts the model has.
fn looped_truth(r: &NewRun) -> f64 {
    let (e, a, phi, alpha, b, beta) = (1.9, 300.0, 0.5, 0.35, 900.0, 0.3);
    let model = &r.config.model;
    let mu = model.looped.as_ref().unwrap().mean_recurrence as f64;
    let split = looped_split(model);
    let once = (split.once + split.conditioning) as f64;
    e + a * (once + mu.powf(phi) * split.per_loop as f64).powf(-alpha)
        + b * (r.tokens as f64).powf(-beta)
}

#[test]
fn a_sweeps_written_law_chooses_among_its_candidates_and_the_interval_narrows() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = sweep_file(dir.path(), "looped", LOOPED);
    record(&sweep, &looped_truth, 0.01, 1);
    let next = dir.path().join("next.toml");
    let s = sweep.to_str().unwrap();
    let args = [
        s,
        "--law",
        "looped",
        "--target",
        "phi",
        "--budget",
        "4e11",
        "--resamples",
        "40",
        "--allow-repeats",
    ];
    let (ok, said) = suggest(&[&args[..], &["--out", next.to_str().unwrap()]].concat());
    assert!(ok, "{said}");
    assert!(
        said.contains("target phi") && said.contains("expected: width"),
        "{said}"
    );
    assert!(said.contains("seed noise measured"), "{said}");
    let before = width_now(&said);
    // Train the choice (from the truth) and ask again: the interval is narrower.
    let planned = Sweep::load(&next).unwrap();
    let chosen = planned
        .runs
        .iter()
        .filter(|r| r.variant.as_deref().is_some_and(|v| v.contains("-next-")))
        .count();
    assert!(chosen >= 1, "{said}");
    record(&next, &looped_truth, 0.01, 2);
    let (ok, again) = suggest(&args);
    assert!(ok, "{again}");
    let after = width_now(&again);
    eprintln!("phi's interval width: {before} before, {after} after the {chosen} chosen runs");
    assert!(after < before, "{before} → {after}\n{said}\n{again}");

    // A law the sweep does not have, named with the ones it has.
    let (ok, err) = suggest(&[s, "--law", "nosuch", "--target", "phi", "--budget", "1e11"]);
    assert!(!ok);
    assert!(
        err.contains("no such law") && err.contains("looped") && err.contains("chinchilla"),
        "{err}"
    );
    // A variable a run has only once trained: refused for the candidates, named.
    let (ok, err) = suggest(&[
        s,
        "--law-expr",
        "loss = E + A*N^(-alpha) + B*D^(-beta)*wall_seconds",
        "--target",
        "alpha",
        "--budget",
        "1e11",
        "--resamples",
        "20",
        "--allow-repeats",
    ]);
    assert!(!ok);
    assert!(
        err.contains("`wall_seconds`") && err.contains("only training measures"),
        "{err}"
    );
}

const TOKENS: &str = r#"
seeds = [0, 1]
[data]
corpus = "moby-dick"
seq_len = 32
[train]
tokens = [25600, 51200, 102400, 204800]
batch_size = 8
[model]
d_model = 32
n_heads = 2
n_layers = 1
[analysis.laws.data]
expr = "loss = E + B*D^(-beta)"
params.E = { start = [0.5, 3] }
params.beta = { start = [0.1, 1] }
"#;

/// A data law with a small bend the law does not have (1% of the loss).
fn data_truth(r: &NewRun) -> f64 {
    let d = r.tokens as f64;
    (2.0 + 400.0 * d.powf(-0.4)) * (1.0 + 0.01 * (d.ln() - 11.0).powi(2) / 4.0)
}

/// The chosen runs' labels, in order.
fn picks(said: &str) -> Vec<String> {
    said.lines()
        .skip_while(|l| !l.contains("expected width"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(str::to_string)
        .collect()
}

#[test]
fn another_seed_is_chosen_where_seed_noise_dominates_and_not_where_it_is_tiny() {
    // The target is the loss at the largest trained point; the only new point costs twice it.
    let run = |sigma: f64| {
        let dir = tempfile::tempdir().unwrap();
        let sweep = sweep_file(dir.path(), "tokens", TOKENS);
        record(&sweep, &data_truth, sigma, 3);
        let next = dir.path().join("next.toml");
        let (ok, said) = suggest(&[
            sweep.to_str().unwrap(),
            "--law",
            "data",
            "--target",
            "loss@D=204800",
            "--budget",
            "1e11",
            "--candidates",
            "train.tokens=409600",
            "--resamples",
            "60",
            "--allow-repeats",
            "--out",
            next.to_str().unwrap(),
        ]);
        (ok, said, next, dir)
    };
    let (ok, said, next, _dir) = run(0.05);
    assert!(ok, "{said}");
    // Per FLOP, a third seed of a finished configuration beats the one new point (twice the
    // largest budget): the first choice is a repeat, at whichever budget narrows most per FLOP.
    let chosen = picks(&said);
    let first = chosen.first().expect("a choice");
    assert!(first.contains(" seed=2"), "noisy: {chosen:?}\n{said}");
    let tokens: u64 = first
        .split("tokens=")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|t| t.parse().ok())
        .expect("the choice's tokens");
    // The extended file trains that configuration with seed 2.
    let planned = Sweep::load(&next).unwrap();
    assert!(
        planned
            .runs
            .iter()
            .any(|r| r.config.seed == 2 && r.config.train.tokens == tokens),
        "{}",
        std::fs::read_to_string(&next).unwrap()
    );
    // Seeds that agree: a repeat adds nothing to what they showed (here nothing is worth its
    // FLOPs, so nothing is written).
    let (ok, said, _, _dir) = run(1e-4);
    assert!(ok || said.contains("nothing chosen"), "{said}");
    let chosen = picks(&said);
    assert!(
        chosen.iter().all(|p| !p.contains("seed=")),
        "tiny noise: {chosen:?}\n{said}"
    );
}
