//! Replicate groups through the store's `run_groups` view and `loopscale compare`: runs that
//! differ only in their seed form a group with its mean, variance and n; a difference far
//! beyond the seed noise is called so, a small one "within noise", and a configuration of one
//! seed "needs more seeds".

use loopscale::store::{NewRun, Store};

use crate::common::runs::TestRun;
use crate::common::{assert_bars_of_three_seeds, loopscale, record_finished, text};

/// A finished run of width `d_model` and seed `seed`.
fn run(d_model: usize, seed: u64) -> NewRun {
    TestRun::width(d_model, seed).new_run()
}

fn record(db: &std::path::Path, runs: &[(NewRun, f64)]) {
    record_finished(&mut Store::open(db).unwrap(), "groups", "", runs);
}

#[test]
fn groups_are_summarised_and_compared_at_the_resolution_of_their_noise() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("groups.sqlite");
    // d_model 64: the best (2.00 ± 0.006); 96: 0.10 behind, far beyond noise; 128: 0.005
    // behind, within it; 160: one seed.
    let mut runs = Vec::new();
    for (d, losses) in [
        (64, vec![2.00, 2.01, 1.99]),
        (96, vec![2.10, 2.11, 2.09]),
        (128, vec![2.005, 1.995, 2.015]),
        (160, vec![2.3]),
    ] {
        for (seed, loss) in losses.into_iter().enumerate() {
            runs.push((run(d, seed as u64), loss));
        }
    }
    record(&db, &runs);

    let store = Store::open_read_only(&db).unwrap();
    let q = store
        .query("SELECT d_model, n, seeds, mean_val_loss, var_val_loss FROM run_groups ORDER BY d_model")
        .unwrap();
    assert_eq!(q.rows.len(), 4, "{:?}", q.rows);
    assert_eq!(q.rows[0][..3], ["64", "3", "0,1,2"]);
    let mean: f64 = q.rows[0][3].parse().unwrap();
    let var: f64 = q.rows[0][4].parse().unwrap();
    assert!(
        (mean - 2.0).abs() < 1e-12 && (var - 1e-4).abs() < 1e-9,
        "{:?}",
        q.rows[0]
    );
    assert_eq!(q.rows[3][1], "1");
    assert_eq!(q.rows[3][4], "", "no variance from one seed");
    drop(store);

    let out = loopscale(&["compare", db.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    let line = |d: &str| {
        said.lines()
            .find(|l| l.contains(&format!("d_model={d} ")) || l.ends_with(&format!("d_model={d}")))
            .unwrap_or_else(|| panic!("no group d_model={d}: {said}"))
            .to_string()
    };
    assert!(
        line("64").contains("best") && line("64").contains("2.0000 ± 0.0058"),
        "{said}"
    );
    assert!(
        line("96").contains("behind d_model=64 by more than noise"),
        "{said}"
    );
    assert!(line("128").contains("within noise of d_model=64"), "{said}");
    assert!(line("160").contains("needs more seeds"), "{said}");
    assert!(said.contains("pooled over 6 degrees of freedom"), "{said}");

    let out = loopscale(&["compare", db.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["groups"].as_array().unwrap().len(), 4);
    assert_eq!(v["pooled_df"], 6);

    // The report: the same table with its verdicts, and the chart of means with error bars.
    let source = loopscale::report::resolve(&db, &[]).unwrap();
    let built = loopscale::report::build(&source, &dir.path().join("report")).unwrap();
    let verdicts: Vec<&str> = built.groups.rows.iter().map(|r| r[9].as_str()).collect();
    assert!(
        verdicts.iter().any(|v| v.contains("by more than noise")),
        "{verdicts:?}"
    );
    assert!(
        verdicts.iter().any(|v| v.contains("within noise")),
        "{verdicts:?}"
    );
    assert!(
        built.groups.caption.contains("pooled over 6"),
        "{}",
        built.groups.caption
    );
    let chart = built
        .charts
        .iter()
        .find(|c| c.name == "seed_groups")
        .unwrap();
    let loopscale::plot::Outcome::Drawn(d) = &chart.outcome else {
        panic!("seed_groups not drawn: {:?}", chart.outcome)
    };
    assert!(std::fs::metadata(&d.png).unwrap().len() > 15_000);
}

#[test]
fn a_sweep_without_seeds_says_its_noise_is_unmeasured_and_a_bad_source_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("one.sqlite");
    record(&db, &[(run(64, 0), 2.0), (run(96, 0), 2.1)]);
    let out = loopscale(&["compare", db.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("Seed noise is unmeasured"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("needs more seeds"), "{}", text(&out));

    let out = loopscale(&["compare", "no/such.sqlite"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("no/such.sqlite"), "{}", text(&out));

    // Text runs have no accuracy: comparing them by it is refused, saying what to do instead.
    let out = loopscale(&["compare", db.to_str().unwrap(), "--metric", "accuracy"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("has an accuracy") && text(&out).contains("--metric loss"),
        "{}",
        text(&out)
    );
}

/// A run of width 64 trained on `k` × 4096 tokens (k × 1e12 FLOPs) with seed `seed`.
fn budget_run(k: u64, seed: u64) -> NewRun {
    TestRun::width(64, seed)
        .train(|t| t.tokens = 4096 * k)
        .tokens(4096 * k)
        .flops(1e12 * k as f64)
        .new_run()
}

/// The compute chart's series of kind `ErrorBars` and `Faint` from a database of `seeds` per
/// budget (losses on a compute law, the seeds ±0.01 around it).
fn compute_chart(seeds: usize) -> (String, Vec<loopscale::chart::Series>) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("law.sqlite");
    let mut runs = Vec::new();
    for k in [1u64, 2, 4, 8, 16, 32] {
        let law = 2.0 + 0.5 * (k as f64).powf(-0.3);
        for seed in 0..seeds {
            let wobble = [0.0, 0.01, -0.01][seed];
            runs.push((budget_run(k, seed as u64), law + wobble));
        }
    }
    record(&db, &runs);
    let store = Store::open_read_only(&db).unwrap();
    let frames = loopscale::analysis::Frames::load(&store, None).unwrap();
    let fits = loopscale::analysis::fits::ReportFits::compute(&frames);
    let fig = loopscale::analysis::chart_data::compute::compute_law(&frames, &fits)
        .unwrap()
        .unwrap_or_else(|why| panic!("compute chart not drawn: {why}"));
    let panel = fig.panels.into_iter().next().unwrap();
    (panel.title, panel.series)
}

#[test]
fn the_compute_chart_draws_group_means_with_standard_error_bars() {
    let (title, series) = compute_chart(3);
    assert!(title.contains("mean ± 1 SE over 3 seeds"), "{title}");
    // Seeds at law − 0.01, law, law + 0.01: sd = 0.01, SE = 0.01/√3 (checked by the common
    // assertion), centred on the law; one mean per budget, every seed drawn pale behind it.
    for (s, b) in assert_bars_of_three_seeds(&series, 6, 1) {
        let (x, _, _) = b[0];
        let law = 2.0 + 0.5 * (x / 1e12).powf(-0.3);
        let mean = s.points[0].1;
        assert!((mean - law).abs() < 1e-12, "{mean} vs {law}");
        assert!(
            s.name.as_deref().unwrap().ends_with("(n = 3)"),
            "{:?}",
            s.name
        );
    }
}

#[test]
fn a_compute_chart_of_single_seeds_draws_no_bars_and_says_the_noise_is_unmeasured() {
    use loopscale::chart::Kind;
    let (title, series) = compute_chart(1);
    assert!(title.contains("noise unmeasured"), "{title}");
    assert!(
        !series
            .iter()
            .any(|s| matches!(s.kind, Kind::ErrorBars(_) | Kind::Faint)),
        "no bars, no pale seeds"
    );
    let runs = series
        .iter()
        .filter(|s| s.kind == Kind::Markers && s.points.len() == 1)
        .count();
    assert_eq!(runs, 6, "one marker per run, as before");
}
