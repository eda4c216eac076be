//! `loopscale suggest` (`fit::design`) on synthetic data from the Parcae-shaped law of
//! `fit_parcae`, with known truth: L(μ, D) = E + X·N(μ)^−x + Y·D^−y, N(μ) = N_CORE·μ,
//! C = 6·N(μ)·D, whose iso-FLOP optimum μ*(C) is known in closed form. The first round samples
//! μ ∈ {1, 2, 4} at three budgets whose true optima are μ* = 2, 4 and 8, so the target (μ* at the
//! largest budget) lies past the sampled loops. Over many noise seeds, the runs `suggest` picks
//! shrink the target's interval more than the uniform extension of the same FLOPs (μ = 8 at every
//! budget), and the intervals after it still cover the truth at about their level.

use crate::fit_parcae::{E, N_CORE, X, XE, Y, YE, budget_for, train_loss};
use loopscale::fit::bootstrap::{BootstrapOptions, percentile_interval};
use loopscale::fit::design::{self, Allocation, Candidate, TargetSpec};
use loopscale::fit::laws::ParcaeLaw;
use loopscale::fit::parametric::{FitOptions, bootstrap_thetas, fit_theta};
use loopscale::fit::{Design, Points};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal};

const SIGMA: f64 = 0.01;
const LEVEL: f64 = 0.9;

fn loss(mu: f64, c: f64) -> f64 {
    let n = N_CORE * mu;
    train_loss(n, c / (6.0 * n))
}

/// The law's shape as `suggest` reads it: N(μ) = N_CORE·μ and 6·N(μ) FLOPs per token, μ = 1…64.
fn allocation() -> Allocation {
    let mu: Vec<f64> = (1..=64).map(f64::from).collect();
    Allocation {
        unrolled_params: mu.iter().map(|m| N_CORE * m).collect(),
        flops_per_token: mu.iter().map(|m| 6.0 * N_CORE * m).collect(),
        mu,
    }
}

fn observe(runs: &[(f64, f64)], rng: &mut StdRng) -> Points {
    let z = Normal::new(0.0, SIGMA).unwrap();
    Points {
        n: Some(runs.iter().map(|(mu, _)| N_CORE * mu).collect()),
        d: Some(runs.iter().map(|(mu, c)| c / (6.0 * N_CORE * mu)).collect()),
        c: Some(runs.iter().map(|(_, c)| *c).collect()),
        loss: runs
            .iter()
            .map(|&(mu, c)| loss(mu, c) * z.sample(rng).exp())
            .collect(),
        ..Points::default()
    }
}

fn options(seed: u64) -> (FitOptions, BootstrapOptions) {
    let boot = BootstrapOptions {
        resamples: 60,
        level: LEVEL,
        seed,
        ..BootstrapOptions::default()
    };
    let opts = FitOptions {
        starts: Some(ParcaeLaw::coarse_grid()),
        bootstrap: Some(boot),
        heldout: None,
        profile: false,
        ..FitOptions::default()
    };
    (opts, boot)
}

/// Fit, ensemble, and the target's interval (μ*, linear units) over the ensemble.
fn fit(points: &Points, seed: u64) -> (Design, Vec<f64>, Vec<Vec<f64>>, (f64, f64)) {
    let (opts, boot) = options(seed);
    let design = ParcaeLaw.design(points).unwrap();
    let best = fit_theta(&ParcaeLaw, &design, &opts).unwrap().best.theta;
    let (members, _) = bootstrap_thetas(&ParcaeLaw, &design, &best, &opts, &boot);
    let alloc = allocation();
    let c = budget_for(8.0);
    let mus: Vec<f64> = members
        .iter()
        .filter_map(|th| alloc.optimum(&ParcaeLaw, th, c).map(|(m, _, _)| m.exp()))
        .collect();
    let interval = percentile_interval(&mus, LEVEL);
    (design, best, members, interval)
}

#[test]
fn suggested_runs_narrow_the_optimum_more_than_a_uniform_extension_and_cover_the_truth() {
    let budgets = [budget_for(2.0), budget_for(4.0), budget_for(8.0)];
    let first: Vec<(f64, f64)> = budgets
        .iter()
        .flat_map(|&c| [1.0, 2.0, 4.0].map(|mu| (mu, c)))
        .collect();
    // Candidates: the axes one step outward and between, as `suggest` lays them out.
    let mut cand_budgets = vec![budgets[0] / 5.66, budgets[2] * 5.66];
    for w in budgets.windows(2) {
        cand_budgets.push((w[0] * w[1]).sqrt());
    }
    cand_budgets.extend(budgets);
    let candidates: Vec<(f64, f64)> = cand_budgets
        .iter()
        .flat_map(|&c| [1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0].map(|mu| (mu, c)))
        .filter(|r| !first.contains(r))
        .collect();
    let uniform: Vec<(f64, f64)> = budgets.iter().map(|&c| (8.0, c)).collect();
    let budget: f64 = uniform.iter().map(|(_, c)| c).sum();
    let alloc = allocation();
    let spec = TargetSpec::MuOpt(budgets[2]);
    let theta = [E.ln(), X.ln(), XE, Y.ln(), YE];
    let truth = alloc
        .optimum(&ParcaeLaw, &theta, budgets[2])
        .unwrap()
        .0
        .exp();
    assert!(
        (truth - 8.0).abs() < 0.5,
        "the true optimum is μ* = 8, got {truth}"
    );

    let seeds = 24;
    let (mut narrower, mut covered, mut expected_ok) = (0, 0, 0);
    let (mut w_suggest, mut w_uniform) = (Vec::new(), Vec::new());
    for seed in 0..seeds {
        let mut rng = StdRng::seed_from_u64(1000 + seed);
        let points = observe(&first, &mut rng);
        let (design, best, members, _) = fit(&points, seed);
        let rows: Vec<Candidate> = candidates
            .iter()
            .map(|&(mu, c)| Candidate {
                row: alloc.row(mu as usize - 1, c).to_vec(),
                flops: c,
                seeds_done: 0,
            })
            .collect();
        let target =
            design::target_fn(&ParcaeLaw, &spec, Some(&alloc), &|_| unreachable!()).unwrap();
        let noise = design::noise_sd(&ParcaeLaw, &design, &best);
        let s = design::suggest(
            &ParcaeLaw,
            &best,
            &members,
            target.as_ref(),
            spec.log_scale(),
            &rows,
            budget,
            noise,
            LEVEL,
        )
        .unwrap();
        assert!(!s.picks.is_empty(), "seed {seed}: nothing chosen");
        let spent: f64 = s.picks.iter().map(|p| p.flops).sum();
        assert!(spent <= budget * (1.0 + 1e-12), "seed {seed}: over budget");
        let chosen: Vec<(f64, f64)> = s.picks.iter().map(|p| candidates[p.candidate]).collect();
        // Train both designs: the same noise stream draws both rounds' losses.
        let after = |extra: &[(f64, f64)], rng_seed: u64| {
            let mut rng = StdRng::seed_from_u64(rng_seed);
            let all: Vec<(f64, f64)> = first.iter().chain(extra).copied().collect();
            let pts = observe(&all, &mut rng);
            fit(&pts, seed).3
        };
        let (lo_s, hi_s) = after(&chosen, 1000 + seed);
        let (lo_u, hi_u) = after(&uniform, 1000 + seed);
        w_suggest.push(hi_s - lo_s);
        w_uniform.push(hi_u - lo_u);
        if hi_s - lo_s < hi_u - lo_u {
            narrower += 1;
        }
        if lo_s <= truth && truth <= hi_s {
            covered += 1;
        }
        // The promised width is a forecast, not a bound: it should be of the right size.
        let ratio = (hi_s - lo_s) / s.width_after();
        if (0.33..3.0).contains(&ratio) {
            expected_ok += 1;
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (ms, mu) = (median(&mut w_suggest), median(&mut w_uniform));
    eprintln!(
        "median width of μ* after: suggested {ms:.3}, uniform {mu:.3}; narrower in {narrower}/{seeds}; covered {covered}/{seeds}; forecast within 3× in {expected_ok}/{seeds}"
    );
    assert!(ms < 0.8 * mu, "suggested {ms:.3} vs uniform {mu:.3}");
    assert!(
        narrower * 3 >= seeds * 2,
        "narrower in only {narrower}/{seeds}"
    );
    // Nominal 90%: with 24 seeds, fewer than 17 covered would be very unlikely (p < 0.01).
    assert!(covered >= 17, "covered {covered}/{seeds}");
    assert!(
        expected_ok * 3 >= seeds * 2,
        "forecast off in {}/{seeds}",
        seeds - expected_ok
    );
}

/// A tiny trained sweep: GPTs at two widths × three token budgets.
fn trained_sweep(dir: &std::path::Path) -> std::path::PathBuf {
    let corpus = crate::common::moby_dick_file(dir, 60_000);
    let path = dir.join("grow.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[sweep]
name = "grow"
db = "{db}"

[data]
corpus = "{corpus}"
seq_len = 32
val_fraction = 0.1

[train]
tokens = [2048, 4096, 8192]
batch_size = 8
lr = 3e-3
eval_every = 64
eval_tokens = 1024
log_every = 8

[model]
d_model = [16, 32]
n_heads = 2
n_layers = 1
"#,
            db = dir.join("grow.sqlite").display(),
            corpus = corpus.display(),
        ),
    )
    .unwrap();
    let out = crate::common::loopscale(&["run", path.to_str().unwrap(), "--jobs", "2"]);
    assert!(out.status.success(), "{}", crate::common::text(&out));
    path
}

fn done_keys(db: &std::path::Path) -> Vec<(String, u32)> {
    let store = loopscale::store::Store::open_read_only(db).unwrap();
    store
        .runs("grow")
        .unwrap()
        .into_iter()
        .filter(|r| r.status == loopscale::store::RunStatus::Done)
        .map(|r| (r.key, r.attempts))
        .collect()
}

#[test]
fn suggest_writes_a_sweep_that_plan_accepts_and_run_extends_with_only_the_new_runs() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = trained_sweep(dir.path());
    let db = dir.path().join("grow.sqlite");
    let before = done_keys(&db);
    assert_eq!(before.len(), 6);
    let next = dir.path().join("next.toml");
    let out = crate::common::loopscale(&[
        "suggest",
        sweep.to_str().unwrap(),
        "--law",
        "chinchilla",
        "--target",
        "alpha",
        "--budget",
        "3e9",
        "--resamples",
        "40",
        "--out",
        next.to_str().unwrap(),
    ]);
    let said = crate::common::text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("target alpha") && said.contains("expected"),
        "{said}"
    );
    // One seed per configuration: the noise a new run is expected to scatter by is the fit's.
    assert!(said.contains("seed noise unmeasured"), "{said}");
    // `plan` accepts the extended file: the old runs plus the chosen ones, nothing else.
    let planned = loopscale::sweep::Sweep::load(&next).unwrap();
    let chosen = planned
        .runs
        .iter()
        .filter(|r| r.variant.as_deref().is_some_and(|v| v.contains("-next-")))
        .count();
    assert!(chosen >= 1, "{said}");
    assert_eq!(planned.runs.len(), 6 + chosen, "{said}");
    for (key, _) in &before {
        assert!(
            planned.runs.iter().any(|r| &r.key == key),
            "run {key} lost its key"
        );
    }
    assert!(dir.path().join("next.suggest.png").exists(), "{said}");
    assert!(dir.path().join("next.suggest.svg").exists(), "{said}");
    let out = crate::common::loopscale(&["plan", next.to_str().unwrap()]);
    assert!(out.status.success(), "{}", crate::common::text(&out));

    // `run` trains only the new ones: old runs keep one attempt, no key twice.
    let out = crate::common::loopscale(&["run", next.to_str().unwrap(), "--jobs", "2"]);
    assert!(out.status.success(), "{}", crate::common::text(&out));
    let after = done_keys(&db);
    assert_eq!(after.len(), 6 + chosen);
    let mut keys: Vec<&String> = after.iter().map(|(k, _)| k).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), after.len(), "a run was stored twice");
    for (key, attempts) in &before {
        let again = after.iter().find(|(k, _)| k == key).unwrap();
        assert_eq!(again.1, *attempts, "run {key} was trained again");
    }
}

#[test]
fn bad_suggest_input_is_a_clear_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = trained_sweep(dir.path());
    let next = dir.path().join("next.toml");
    let s = sweep.to_str().unwrap();
    let n = next.to_str().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (
            &["--target", "alpha", "--budget", "-1"],
            "--budget must be a positive number",
        ),
        (
            &["--target", "zeta", "--budget", "1e9"],
            "has no parameter `zeta`",
        ),
        (
            &["--target", "mu_opt@1e12", "--budget", "1e9"],
            "Parcae's law",
        ),
        (
            &[
                "--target",
                "alpha",
                "--budget",
                "1e9",
                "--candidates",
                "model.d_model",
            ],
            "expected KEY=V1,V2",
        ),
        (
            &[
                "--target",
                "alpha",
                "--budget",
                "1e9",
                "--candidates",
                "model.width=1,2",
            ],
            "not a sweep key",
        ),
    ];
    for (extra, expect) in cases {
        let mut args = vec![
            "suggest",
            s,
            "--law",
            "chinchilla",
            "--resamples",
            "20",
            "--out",
            n,
        ];
        args.extend_from_slice(extra);
        let out = crate::common::loopscale(&args);
        let said = crate::common::text(&out);
        assert!(!out.status.success(), "{extra:?} succeeded: {said}");
        assert!(said.contains(expect), "{extra:?}: {said}");
        assert!(!next.exists(), "{extra:?} wrote {n}");
    }
    // A sweep not trained yet has no database to fit.
    let fresh = dir.path().join("fresh.toml");
    let text = std::fs::read_to_string(&sweep)
        .unwrap()
        .replace("grow.sqlite", "fresh.sqlite");
    std::fs::write(&fresh, text).unwrap();
    let out = crate::common::loopscale(&[
        "suggest",
        fresh.to_str().unwrap(),
        "--law",
        "chinchilla",
        "--target",
        "alpha",
        "--budget",
        "1e9",
    ]);
    assert!(
        crate::common::text(&out).contains("no database yet"),
        "{}",
        crate::common::text(&out)
    );
}

#[test]
fn the_crossing_is_where_two_loops_start_to_beat_one_on_the_same_flops() {
    let alloc = allocation();
    let theta = [E.ln(), X.ln(), XE, Y.ln(), YE];
    let c = alloc.crossing(&ParcaeLaw, &theta, 1).unwrap();
    // Just below it one loop wins, just above it two do.
    assert!(loss(1.0, c * 0.99) < loss(2.0, c * 0.99), "{c:e}");
    assert!(loss(2.0, c * 1.01) < loss(1.0, c * 1.01), "{c:e}");
    // μ* passes 1.5 near there (μ* = 2 at budget_for(2), past the crossing).
    assert!(c < budget_for(2.0) && c > budget_for(1.0), "{c:e}");
    // A law in which loops do nothing (x = 0) never crosses: the end of the range.
    let flat = [E.ln(), X.ln(), 0.0, Y.ln(), YE];
    assert_eq!(
        alloc.crossing(&ParcaeLaw, &flat, 1),
        Some(design::CROSSING_RANGE.1)
    );
}
