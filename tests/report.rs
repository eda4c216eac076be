//! `loopscale report`: every chart renders from a small fixture database (rows inserted through
//! the store API, losses from known laws) to PNG and SVG of the expected size; charts without
//! data are skipped with their sentence; the report's tables match the database.

use std::path::{Path, PathBuf};

use loopscale::analysis::Frames;
use loopscale::analysis::fits::ReportFits;
use loopscale::config::RunConfig;
use loopscale::config::{DataConfig, TrainConfig};
use loopscale::model::{Arch, Injection, LoopedConfig, ModelConfig};
use loopscale::plot::Outcome;
use loopscale::report::{self, Format, Source};
use loopscale::store::{NewRun, Store};
use loopscale::train::{EvalMetrics, RunEnd, RunOutcome, StepMetrics};

use crate::common::assert_bars_of_three_seeds;

/// Optimal loops of budget C in the fixture: μ*(C) = 3·(C/1e12)^0.3.
fn mu_star(c: f64) -> f64 {
    3.0 * (c / 1e12).powf(0.3)
}

/// Fixture loss: a compute term plus a parabola in log μ around μ*(C) (GPT runs: no parabola).
fn loss(c: f64, mu: Option<f64>) -> f64 {
    2.0 + 0.3 * (c / 1e12).powf(-0.1)
        + mu.map_or(0.0, |m| 0.04 * (m.ln() - mu_star(c).ln()).powi(2))
}

fn config(mu: Option<usize>, d_model: usize, tokens: u64) -> RunConfig {
    let model = match mu {
        Some(m) => ModelConfig {
            arch: Arch::Looped,
            d_model,
            looped: Some(LoopedConfig {
                mean_recurrence: m,
                injection: if m == 4 {
                    Injection::Add
                } else {
                    Injection::Diagonal
                },
                ..LoopedConfig::default()
            }),
            ..ModelConfig::default()
        },
        None => ModelConfig {
            d_model,
            ..ModelConfig::default()
        },
    };
    RunConfig {
        data: DataConfig::default(),
        train: TrainConfig {
            tokens,
            ..TrainConfig::default()
        },
        model,
        seed: 0,
        lineage: None,
    }
}

/// Records a finished run with 10 logged steps, evaluations at steps 5 and 10, and (looped)
/// telemetry and test-time evaluations at T = 1, 2, 4, 8, 16.
fn finish(store: &mut Store, run: &NewRun, mu: Option<f64>) {
    finish_at(store, run, mu, loss(run.flops, mu));
}

/// [`finish`] with a given final loss.
fn finish_at(store: &mut Store, run: &NewRun, mu: Option<f64>, final_loss: f64) {
    let steps: Vec<StepMetrics> = (1..=10u64)
        .map(|s| StepMetrics {
            step: s,
            tokens: run.tokens * s / 10,
            flops: run.flops * s as f64 / 10.0,
            train_loss: final_loss + 2.0 * (-(s as f64) / 3.0).exp(),
            lr: 1e-3,
            grad_norm: 0.5,
            elapsed_seconds: s as f64,
            state_norm: mu.map(|_| 10.0 + s as f64),
            injection_norm: mu.map(|_| 0.9),
        })
        .collect();
    let eval_along = |s: u64, t: Option<usize>, v: f64, schedule: Option<&str>| EvalMetrics {
        step: s,
        tokens: run.tokens * s / 10,
        flops: run.flops * s as f64 / 10.0,
        val_loss: v,
        val_bpb: v / std::f64::consts::LN_2,
        test_loops: t,
        schedule: schedule.map(str::to_string),
        accuracy: None,
        position_accuracy: None,
    };
    let eval = |s: u64, t: Option<usize>, v: f64| eval_along(s, t, v, None);
    let mut evals = vec![eval(5, None, final_loss + 0.3), eval(10, None, final_loss)];
    if let Some(mu) = mu {
        for t in [1usize, 2, 4, 8, 16] {
            let v = final_loss + 0.5 * (-0.5 * t as f64).exp();
            // The μ = 8 runs stand for time-conditioned (LoopFormer) runs: evaluated along
            // the uniform and the coarse_fine schedule at each budget.
            if mu == 8.0 {
                evals.push(eval_along(10, Some(t), v, Some("uniform")));
                evals.push(eval_along(10, Some(t), v + 0.02, Some("coarse_fine")));
            } else {
                evals.push(eval(10, Some(t), v));
            }
        }
    }
    let attempt = store.start_attempt(&run.key, None).unwrap();
    let outcome = RunOutcome {
        end: RunEnd::Done,
        steps: 10,
        tokens: run.tokens,
        flops: run.flops,
        final_val_loss: Some(final_loss),
        final_val_bpb: Some(final_loss / std::f64::consts::LN_2),
        bytes_per_token: None,
        peak_rss_bytes: None,
        text_passes: None,
        final_train_loss: Some(final_loss + 0.01),
        wall_seconds: 3.0,
        tokens_per_second: 1000.0,
        loss_spikes: 0,
        time: Default::default(),
    };
    store
        .finish_attempt(&run.key, attempt, &steps, &evals, &outcome)
        .unwrap();
}

/// A database at `dir/fx.sqlite`. Full: two FLOP budgets (1e12, 4e12) × loops {2, 4, 8}
/// (tokens = C / (2e6·μ), so tokens differ too) plus two GPT runs; otherwise only the two GPT runs.
fn fixture(dir: &Path, full: bool) -> PathBuf {
    let path = dir.join("fx.sqlite");
    let mut store = Store::open(&path).unwrap();
    let mut runs: Vec<(NewRun, Option<f64>)> = Vec::new();
    let mut add = |mu: Option<usize>, d: usize, tokens: u64, flops: f64| {
        let config = config(mu, d, tokens);
        let run = NewRun {
            key: config.key(),
            variant: None,
            config,
            params: 100_000,
            non_embedding_params: 80_000,
            tokens,
            flops,
        };
        runs.push((run, mu.map(|m| m as f64)));
    };
    add(None, 64, 1_000_000, 2e12);
    add(None, 128, 2_000_000, 8e12);
    if full {
        for c in [1e12, 4e12] {
            for mu in [2usize, 4, 8] {
                add(Some(mu), 64, (c / (2e6 * mu as f64)) as u64, c);
            }
        }
    }
    let new_runs: Vec<NewRun> = runs.iter().map(|(r, _)| r.clone()).collect();
    store
        .register_sweep("fx", "fixture", "fx.toml", "", &new_runs)
        .unwrap();
    for (run, mu) in &runs {
        finish(&mut store, run, *mu);
    }
    path
}

fn source(db: &Path) -> Source {
    report::resolve(db, &[]).unwrap()
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[1..4], b"PNG", "{} is not a PNG", path.display());
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn every_chart_renders_from_the_fixture_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture(dir.path(), true);
    // LOOPSCALE_TEST_REPORT_DIR keeps this report for a look at the charts.
    let out = std::env::var_os("LOOPSCALE_TEST_REPORT_DIR")
        .map(PathBuf::from)
        .unwrap_or(dir.path().join("report"));
    let index = report::write(&source(&db), &out, Format::Html).unwrap();
    let built = report::build(&source(&db), &out).unwrap();
    assert_eq!(built.charts.len(), 22);
    for chart in &built.charts {
        // No variants, branches or recast runs in this fixture: see
        // variants_run_on_one_grid_are_drawn_side_by_side and tests/branches.rs; no decoding
        // measurements either (the fixture predates them).
        if ["variant_parity", "branches", "recast", "decoding"].contains(&chart.name) {
            assert!(matches!(chart.outcome, Outcome::Skipped(_)));
            continue;
        }
        if chart.name == "bits_per_byte" {
            // One tokenizer here: see tests/data_tokens.rs for byte and BPE runs together.
            let Outcome::Skipped(why) = &chart.outcome else {
                panic!("bits_per_byte drawn for one tokenizer")
            };
            assert!(why.contains("one tokenizer (bytes)"), "{why}");
            continue;
        }
        if chart.name == "seed_groups" {
            // One seed per configuration here: see tests/compare.rs.
            let Outcome::Skipped(why) = &chart.outcome else {
                panic!("seed_groups drawn without seeds")
            };
            assert!(why.contains("seed noise is unmeasured"), "{why}");
            continue;
        }
        if chart.name == "written_laws" {
            // No [analysis.laws] here: see tests/fit_written.rs.
            let Outcome::Skipped(why) = &chart.outcome else {
                panic!("written_laws drawn without a written law")
            };
            assert!(why.contains("writes no law of its own"), "{why}");
            continue;
        }
        if chart.name == "optimal_lr" {
            // Nothing tuned here: see tests/fit_tune.rs.
            let Outcome::Skipped(why) = &chart.outcome else {
                panic!("optimal_lr drawn without a tuned key")
            };
            assert!(why.contains("--tune train.lr"), "{why}");
            continue;
        }
        if ["task_depth", "task_loops", "icl_errors"].contains(&chart.name) {
            // No task runs in this fixture: see task_charts_draw_accuracy_and_icl_errors.
            let Outcome::Skipped(why) = &chart.outcome else {
                panic!("{} drawn without task runs", chart.name)
            };
            assert!(why.contains("data.task"), "{why}");
            continue;
        }
        let Outcome::Drawn(d) = &chart.outcome else {
            panic!("{} skipped: {:?}", chart.name, chart.outcome)
        };
        assert_eq!(png_size(&d.png), (d.width, d.height), "{}", chart.name);
        // A blank 960×600 PNG compresses to a few kB; axes, text and lines take far more.
        let size = std::fs::metadata(&d.png).unwrap().len();
        assert!(size > 15_000, "{}: PNG of {size} bytes", chart.name);
        let svg = std::fs::read_to_string(&d.svg).unwrap();
        assert!(
            svg.contains("<svg") && svg.contains("<text"),
            "{}",
            chart.name
        );
    }
    let expect = [
        ("training_tokens", (960, 600)),
        ("compute_law", (960, 600)),
        ("isoflop_optima", (1500, 600)),
        ("stability", (1500, 600)),
        ("residuals", (1500, 1200)),
        ("parcae_law", (1500, 1200)),
    ];
    for (name, size) in expect {
        assert_eq!(png_size(&out.join(format!("{name}.png"))), size, "{name}");
    }
    let html = std::fs::read_to_string(index).unwrap();
    // What was not drawn is listed once, after the charts: one heading, one line per chart.
    assert_eq!(html.matches("Not drawn").count(), 1, "one list");
    let not_drawn = &html[html.find("id=\"not-drawn\"").expect("the list")..];
    assert!(
        html.find("<img").unwrap() < html.find("id=\"not-drawn\"").unwrap(),
        "the list comes after the charts"
    );
    assert_eq!(
        not_drawn[..not_drawn.find("</ul>").unwrap()]
            .matches("<li>")
            .count(),
        11,
        "only the variants, branches, recast and decoding charts, the three task charts, the tuned lr, bits per byte (one tokenizer), the seed groups (one seed) and the written laws (none)"
    );
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external assets"
    );
    for chart in built
        .charts
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Drawn(_)))
    {
        assert!(
            html.contains(&format!("src=\"{}.png\"", chart.name)),
            "{}",
            chart.name
        );
    }
}

#[test]
fn the_fits_recover_the_fixture_laws() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture(dir.path(), true);
    let store = Store::open_read_only(&db).unwrap();
    let frames = Frames::load(&store, None).unwrap();
    let fits = ReportFits::compute(&frames);
    // Iso-FLOP parabolas are exact in log μ: their vertices are μ*(C).
    let iso = fits.isoflop_loops.as_ref().unwrap();
    assert_eq!(iso.budgets.len(), 2);
    for b in &iso.budgets {
        assert!(
            (b.x_star / mu_star(b.flops) - 1.0).abs() < 1e-6,
            "{} vs {}",
            b.x_star,
            mu_star(b.flops)
        );
    }
    // μ*(C) = 3·(C/1e12)^0.3 ⇒ the power law's exponent is 0.3.
    let a = iso.power_law.as_ref().unwrap().value("a").unwrap();
    assert!((a - 0.3).abs() < 1e-6, "a = {a}");
    // Test-time curves: L(T) = L + 0.5·e^(−0.5T) exactly.
    let tt = fits.test_time.as_ref().unwrap();
    assert_eq!(tt.len(), 6);
    for f in tt {
        let k = f.report.value("k").unwrap();
        assert!((k - 0.5).abs() < 1e-3, "k = {k}");
    }
    // The compute band brackets the fitted curve.
    let c = fits.compute.as_ref().unwrap();
    for &(x, lo, hi) in &c.band {
        assert!(lo <= c.predict(x) + 1e-9 && c.predict(x) <= hi + 1e-9);
    }
}

#[test]
fn charts_without_data_are_skipped_with_their_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture(dir.path(), false);
    let out = dir.path().join("report");
    // A chart left by an earlier report into the same directory goes with its data.
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("stability.png"), b"stale").unwrap();
    let built = report::build(&source(&db), &out).unwrap();
    let skipped = |name: &str| -> String {
        let chart = built.charts.iter().find(|c| c.name == name).unwrap();
        match &chart.outcome {
            Outcome::Skipped(why) => why.clone(),
            Outcome::Drawn(_) => panic!("{name} was drawn"),
        }
    };
    assert!(
        skipped("isoflop_loops").contains("no looped runs"),
        "{}",
        skipped("isoflop_loops")
    );
    assert!(skipped("test_time").contains("test-time loop counts"));
    assert!(skipped("stability").contains("looped runs only"));
    assert!(
        skipped("compute_law").contains("2 run(s) at 2 scale(s)"),
        "{}",
        skipped("compute_law")
    );
    assert!(skipped("isoflop_tokens").contains("three or more distinct training tokens"));
    assert!(
        skipped("parcae_law").contains("0 looped run(s)"),
        "{}",
        skipped("parcae_law")
    );
    assert!(!out.join("stability.png").exists() && !out.join("test_time.png").exists());
    // The training curves exist whatever the sweep.
    assert!(matches!(built.charts[0].outcome, Outcome::Drawn(_)));
    let index = report::write(&source(&db), &out, Format::Html).unwrap();
    let html = std::fs::read_to_string(index).unwrap();
    // Listed once with its reason (HTML-escaped) in the list after the charts.
    let escaped = skipped("stability")
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;");
    assert!(
        html.contains(&format!(
            "<li><b>Stability: state and injection norms</b>: {escaped}</li>"
        )),
        "{html}"
    );
}

#[test]
fn the_report_tables_match_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture(dir.path(), true);
    let out = dir.path().join("report");
    let built = report::build(&source(&db), &out).unwrap();
    let store = Store::open_read_only(&db).unwrap();
    let q = store
        .query("SELECT run_key, tokens, printf('%.4f', final_val_loss) FROM final_runs ORDER BY flops, run_key")
        .unwrap();
    assert_eq!(built.runs.rows.len(), q.rows.len());
    let col = |name: &str| built.runs.header.iter().position(|h| h == name).unwrap();
    for (row, db_row) in built.runs.rows.iter().zip(&q.rows) {
        assert_eq!(row[col("run_key")], db_row[0]);
        assert_eq!(row[col("tokens")], db_row[1]);
        assert_eq!(row[col("final val loss")], db_row[2]);
    }
    // Fitted parameters: the compute law, six test-time curves (L∞, A, k and the derived
    // gain), two iso-FLOP power laws.
    let laws: Vec<&String> = built.fits.rows.iter().map(|r| &r[0]).collect();
    assert_eq!(laws.iter().filter(|l| l.starts_with("compute")).count(), 3);
    assert_eq!(
        laws.iter().filter(|l| l.starts_with("test-time")).count(),
        24
    );
    assert!(laws.iter().any(|l| l.starts_with("iso-FLOP optimal loops")));
    // Parcae's law: E, X, x, Y, y and the two derived exponents; the unified law adds Z, z and
    // the test-time term's gain.
    assert_eq!(laws.iter().filter(|l| l.starts_with("Parcae:")).count(), 7);
    assert_eq!(
        laws.iter()
            .filter(|l| l.starts_with("Parcae unified"))
            .count(),
        10
    );
    // Four compute scales over 8× in C, with losses set by the loops, not by a compute law:
    // α is not identified, and the table says so beside its number.
    let alpha = built.fits.rows.iter().find(|r| r[1] == "alpha").unwrap();
    let value = alpha[2]
        .strip_prefix("not identified (")
        .and_then(|v| v.strip_suffix(')'))
        .unwrap_or(&alpha[2]);
    if !alpha[3].is_empty() {
        assert!(alpha[3].parse::<f64>().unwrap() <= value.parse::<f64>().unwrap());
    }
    // Markdown carries the same tables.
    let md =
        std::fs::read_to_string(report::write(&source(&db), &out, Format::Md).unwrap()).unwrap();
    for r in &q.rows {
        assert!(md.contains(&r[0]), "{}", r[0]);
    }
    assert!(md.contains("![Training curves: loss vs tokens](training_tokens.png)"));
}

#[test]
fn a_database_without_finished_runs_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("empty.sqlite");
    drop(Store::open(&db).unwrap());
    let err = report::write(&source(&db), &dir.path().join("out"), Format::Html).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("empty.sqlite") && msg.contains("no finished runs"),
        "{msg}"
    );
    assert!(report::resolve(&dir.path().join("missing.sqlite"), &[]).is_err());
}

#[test]
fn the_same_grid_under_two_variants_is_pivoted_by_variant() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two.sqlite");
    let mut store = Store::open(&path).unwrap();
    // Two GPT widths, each trained by the built-in trainer and by a command (two backends).
    let mut runs = Vec::new();
    for (variant, command) in [
        ("builtin", None),
        ("torch", Some(vec!["train.py".to_string()])),
    ] {
        for d in [64, 128] {
            let mut config = config(None, d, 1_000_000);
            if let Some(argv) = &command {
                config.train.backend = loopscale::config::Backend::Command;
                config.train.command = Some(argv.clone());
            }
            runs.push(NewRun {
                key: config.key(),
                variant: Some(variant.to_string()),
                config,
                params: 100_000,
                non_embedding_params: 80_000,
                tokens: 1_000_000,
                flops: 2e12 * (d / 64) as f64,
            });
        }
    }
    store
        .register_sweep("two", "two backends", "two.toml", "", &runs)
        .unwrap();
    for run in &runs {
        finish(&mut store, run, None);
    }
    drop(store);
    let built = report::build(&source(&path), &dir.path().join("report")).unwrap();
    let pivot = built.pivot.expect("a pivot table");
    assert_eq!(
        pivot.header,
        ["configuration", "variant=builtin", "variant=torch"],
        "{pivot:?}"
    );
    assert_eq!(pivot.rows.len(), 2, "one row per width: {pivot:?}");
    assert!(pivot.rows.iter().all(|r| r.iter().all(|c| !c.is_empty())));
}

/// The same two GPT configurations under two variants (as two backends would train them), the
/// second variant's losses higher by 0.01 and 0.03: the report pivots by variant and draws the
/// parity chart, whose title names the largest gap.
#[test]
fn variants_run_on_one_grid_are_drawn_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("variants.sqlite");
    let mut store = Store::open(&path).unwrap();
    let mut runs = Vec::new();
    for (variant, gaps) in [("builtin", [0.0, 0.0]), ("torch", [0.01, 0.03])] {
        for (d, gap) in [64usize, 128].into_iter().zip(gaps) {
            let config = config(None, d, 1_000_000);
            let run = NewRun {
                key: format!("{}-{variant}", config.key()),
                variant: Some(variant.to_string()),
                config,
                params: 100_000,
                non_embedding_params: 80_000,
                tokens: 1_000_000,
                flops: 1e12 * d as f64 / 64.0,
            };
            runs.push((run, gap));
        }
    }
    let new_runs: Vec<NewRun> = runs.iter().map(|(r, _)| r.clone()).collect();
    store
        .register_sweep("vx", "two variants", "vx.toml", "", &new_runs)
        .unwrap();
    for (run, gap) in &runs {
        finish_at(&mut store, run, None, loss(run.flops, None) + gap);
    }
    drop(store);
    let out = dir.path().join("report");
    let built = report::build(&source(&path), &out).unwrap();
    let chart = built
        .charts
        .iter()
        .find(|c| c.name == "variant_parity")
        .unwrap();
    assert!(
        matches!(chart.outcome, Outcome::Drawn(_)),
        "{:?}",
        chart.outcome
    );
    let svg = std::fs::read_to_string(out.join("variant_parity.svg")).unwrap();
    assert!(svg.contains("largest gap 0.0300"), "title names the gap");
    let pivot = built.pivot.expect("variants side by side");
    assert_eq!(
        pivot.header,
        ["configuration", "variant=builtin", "variant=torch"]
    );
    // The chart and the table read one pivot (the chart-data stage): the parity chart's points
    // are its cells, the table's rows its cells written out.
    let store = Store::open_read_only(&path).unwrap();
    let frames = Frames::load(&store, None).unwrap();
    let cells = loopscale::analysis::chart_data::final_loss_pivot(&frames)
        .unwrap()
        .expect("a pivot by variant");
    let fig = loopscale::analysis::chart_data::variants::variant_parity(&frames)
        .unwrap()
        .unwrap();
    let torch = fig.panels[0]
        .series
        .iter()
        .find(|s| s.name.as_deref().is_some_and(|n| n.starts_with("torch")))
        .unwrap();
    let pairs: Vec<(f64, f64)> = cells
        .rows
        .iter()
        .map(|(_, c)| (c[0].unwrap(), c[1].unwrap()))
        .collect();
    assert_eq!(torch.points, pairs);
    let gaps: Vec<f64> = pairs.iter().map(|(x, y)| y - x).collect();
    assert!(
        (gaps[0] - 0.01).abs() < 1e-9 && (gaps[1] - 0.03).abs() < 1e-9,
        "{gaps:?}"
    );
    for ((label, c), row) in cells.rows.iter().zip(&pivot.rows) {
        assert_eq!(row[0], *label);
        assert_eq!(row[1], format!("{:.4}", c[0].unwrap()));
        assert_eq!(row[2], format!("{:.4}", c[1].unwrap()));
    }
}

/// The compute law's residual panel, computed without drawing: one marker per run at its FLOPs,
/// observed final loss minus the fitted law's prediction there.
#[test]
fn the_compute_residuals_are_observed_minus_predicted() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture(dir.path(), true);
    let store = Store::open_read_only(&db).unwrap();
    let frames = Frames::load(&store, None).unwrap();
    let fits = ReportFits::compute(&frames);
    let fit = fits.compute.as_ref().expect("the compute law fits");
    let fig = loopscale::analysis::chart_data::residuals::residuals(&frames, &fits)
        .unwrap()
        .unwrap();
    let panel = &fig.panels[0];
    assert_eq!(panel.title, "Compute law: residuals");
    assert!(panel.zero_line);
    let flops = loopscale::analysis::f64s(&frames.runs, "flops").unwrap();
    let losses = loopscale::analysis::f64s(&frames.runs, "final_val_loss").unwrap();
    assert_eq!(panel.series.len(), flops.len(), "one marker per run");
    for (i, s) in panel.series.iter().enumerate() {
        let (x, y) = s.points[0];
        assert_eq!(x, flops[i]);
        let want = losses[i] - fit.predict(flops[i]);
        assert!((y - want).abs() < 1e-12, "run {i}: {y} vs {want}");
    }
    // Residuals of a good fit straddle zero.
    assert!(panel.series.iter().any(|s| s.points[0].1 > 0.0));
    assert!(panel.series.iter().any(|s| s.points[0].1 < 0.0));
}

/// A sweep in which looping never pays (every budget's lowest loss at its smallest μ, as in
/// `sweeps/parcae_isoflop.toml` at this scale): the report still renders, the iso-FLOP charts
/// mark each budget's optimum as a bound, and the optimal-loops chart says why it has no law.
#[test]
fn a_report_whose_optima_all_lie_at_an_edge_renders() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.sqlite");
    let mut store = Store::open(&path).unwrap();
    let mut runs = Vec::new();
    for c in [1e12, 4e12] {
        for mu in [1usize, 2, 4, 8] {
            let config = config(Some(mu), 64, (c / (2e6 * mu as f64)) as u64);
            let run = NewRun {
                key: config.key(),
                variant: None,
                config,
                params: 100_000,
                non_embedding_params: 80_000,
                tokens: (c / (2e6 * mu as f64)) as u64,
                flops: c,
            };
            // Loss rises with μ at every budget.
            let l = 2.0 + 0.3 * (c / 1e12).powf(-0.1) + 0.02 * mu as f64;
            runs.push((run, mu, l));
        }
    }
    let new_runs: Vec<NewRun> = runs.iter().map(|(r, _, _)| r.clone()).collect();
    store
        .register_sweep("edge", "all optima at an edge", "edge.toml", "", &new_runs)
        .unwrap();
    for (run, mu, l) in &runs {
        finish_at(&mut store, run, Some(*mu as f64), *l);
    }
    drop(store);
    let out = dir.path().join("report");
    let built = report::build(&source(&path), &out).unwrap();
    let outcome = |name: &str| {
        &built
            .charts
            .iter()
            .find(|c| c.name == name)
            .unwrap()
            .outcome
    };
    assert!(matches!(outcome("isoflop_loops"), Outcome::Drawn(_)));
    assert!(matches!(outcome("residuals"), Outcome::Drawn(_)));
    let Outcome::Skipped(why) = outcome("isoflop_optima") else {
        panic!("no optimum inside the samples, so no power law to draw")
    };
    assert!(why.contains("0 FLOP budget(s) of 2"), "{why}");
}

/// Task results (accuracy at the last step, ICL errors) draw the three task charts.
#[test]
fn task_charts_draw_accuracy_and_icl_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture(dir.path(), true);
    let mut store = Store::open(&db).unwrap();
    let runs = store
        .query("SELECT run_key, arch, mean_recurrence FROM runs WHERE status = 'done'")
        .unwrap()
        .rows;
    let accuracy = |step: u64, t: Option<usize>, a: f64| EvalMetrics {
        step,
        tokens: 0,
        flops: 0.0,
        val_loss: 1.0,
        val_bpb: f64::NAN,
        test_loops: t,
        schedule: None,
        accuracy: Some(a),
        position_accuracy: None,
    };
    for (i, row) in runs.iter().enumerate() {
        let a = 0.2 + 0.05 * i as f64;
        let mut evals = vec![accuracy(1_000_000, None, a)];
        if row[1] == "looped" {
            evals.extend([1, 2, 4].map(|t| accuracy(1_000_000, Some(t), a * t as f64 / 4.0)));
        }
        store.record(&row[0], &[], &evals).unwrap();
    }
    let icl =
        |estimator: &str, t: Option<usize>, k: usize, error: f64| loopscale::train::IclError {
            estimator: estimator.into(),
            test_loops: t,
            n_examples: k,
            error,
        };
    let mut errors = Vec::new();
    for k in 0..6 {
        errors.push(icl(
            "least_squares",
            None,
            k,
            if k < 3 { 1.0 - 0.3 * k as f64 } else { 0.0 },
        ));
        errors.push(icl("averaging", None, k, 1.0 - 0.05 * k as f64));
        errors.push(icl("model", Some(2), k, 1.0 - 0.1 * k as f64));
        errors.push(icl("model", Some(4), k, 1.0 - 0.15 * k as f64));
    }
    store.record_icl_errors(&runs[0][0], &errors).unwrap();
    drop(store);
    let built = report::build(&source(&db), &dir.path().join("report")).unwrap();
    for name in ["task_depth", "task_loops", "icl_errors"] {
        let chart = built.charts.iter().find(|c| c.name == name).unwrap();
        let Outcome::Drawn(d) = &chart.outcome else {
            panic!("{name} skipped: {:?}", chart.outcome)
        };
        let svg = std::fs::read_to_string(&d.svg).unwrap();
        assert!(svg.contains("<text"), "{name}");
    }
    let svg = |name: &str| {
        let chart = built.charts.iter().find(|c| c.name == name).unwrap();
        let Outcome::Drawn(d) = &chart.outcome else {
            unreachable!()
        };
        std::fs::read_to_string(&d.svg).unwrap()
    };
    assert!(svg("task_depth").contains("ln(depth)"));
    assert!(svg("icl_errors").contains("least_squares"));
    assert!(svg("icl_errors").contains("at 4 loops"));
}

#[test]
fn runs_that_left_the_sweep_file_are_listed_not_drawn() {
    use crate::common::{loopscale, moby_dick_file, text};
    let dir = tempfile::tempdir().unwrap();
    let corpus = moby_dick_file(dir.path(), 30_000);
    let file = dir.path().join("orph.toml");
    let write = |widths: &str| {
        std::fs::write(
            &file,
            format!(
                "[sweep]\nname = \"orph\"\ndb = \"{db}\"\n\n[data]\ncorpus = \"{corpus}\"\nseq_len = 32\n\n\
                 [train]\ntokens = 2048\nbatch_size = 8\neval_every = 8\neval_tokens = 512\n\n\
                 [model]\nd_model = {widths}\nn_heads = 2\nn_layers = 1\n",
                db = dir.path().join("orph.sqlite").display(),
                corpus = corpus.display(),
            ),
        )
        .unwrap();
    };
    write("[16, 24, 32]");
    let run = loopscale(&["run", file.to_str().unwrap(), "--jobs", "1", "--plain"]);
    assert!(run.status.success(), "{}", text(&run));
    let all = loopscale::sweep::Sweep::load(&file).unwrap();
    let orphan = all.runs[2].key.clone();
    // The widest run leaves the file: the database keeps it.
    write("[16, 24]");
    let out = dir.path().join("report");
    let built = report::build(&report::resolve(&file, &[]).unwrap(), &out).unwrap();
    assert_eq!(built.runs.rows.len(), 2, "{:?}", built.runs.rows);
    assert!(built.runs.rows.iter().all(|r| !r.contains(&orphan)));
    assert_eq!(built.orphaned, vec![(orphan.clone(), "done".to_string())]);
    let index = report::write(&report::resolve(&file, &[]).unwrap(), &out, Format::Html).unwrap();
    let html = std::fs::read_to_string(index).unwrap();
    assert!(html.contains("no longer in its file"), "{html}");
    assert!(html.contains(&format!("{orphan} (done)")));
    // From the database, every run is the sweep.
    let db = dir.path().join("orph.sqlite");
    let whole = report::build(&source(&db), &dir.path().join("all")).unwrap();
    assert_eq!(whole.runs.rows.len(), 3);
    assert!(whole.orphaned.is_empty());
}

type Panelled = (
    String,
    Vec<loopscale::chart::Series>,
    String,
    Vec<loopscale::chart::Series>,
);
/// The test-time chart's title and series, and the task accuracy-vs-loops and -depth charts'.
type SeededCharts = (String, Vec<loopscale::chart::Series>, Option<Panelled>);

/// The test-time and accuracy-vs-loops charts of two looped configurations (μ = 2, 4 at 1e12 FLOPs) with `seeds`
/// seeds each, the seeds' losses 0, +0.01, −0.01 around the fixture's: its title and series.
fn test_time_chart(seeds: usize, task: bool) -> SeededCharts {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seeds.sqlite");
    let mut store = Store::open(&path).unwrap();
    let mut runs = Vec::new();
    for mu in [2usize, 4] {
        for seed in 0..seeds {
            let mut config = config(Some(mu), 64, (1e12 / (2e6 * mu as f64)) as u64);
            config.seed = seed as u64;
            runs.push((
                NewRun {
                    key: config.key(),
                    variant: None,
                    tokens: config.train.tokens,
                    config,
                    params: 100_000,
                    non_embedding_params: 80_000,
                    flops: 1e12,
                },
                mu as f64,
                [0.0, 0.01, -0.01][seed],
            ));
        }
    }
    let new_runs: Vec<NewRun> = runs.iter().map(|(r, _, _)| r.clone()).collect();
    store
        .register_sweep("seeds", "", "seeds.toml", "", &new_runs)
        .unwrap();
    for (run, mu, wobble) in &runs {
        finish_at(&mut store, run, Some(*mu), loss(1e12, Some(*mu)) + wobble);
        if !task {
            continue;
        }
        // Task accuracy at T = 1, 2, 4: 0.5 + the same wobble (a later step: these
        // evaluations replace the test-time ones, so the task chart has its own database).
        let evals: Vec<EvalMetrics> = [None, Some(1usize), Some(2), Some(4)]
            .map(|t| EvalMetrics {
                step: 1_000_000,
                tokens: 0,
                flops: 0.0,
                val_loss: 1.0,
                val_bpb: f64::NAN,
                test_loops: t,
                schedule: None,
                accuracy: Some(0.5 + wobble),
                position_accuracy: None,
            })
            .to_vec();
        store.record(&run.key, &[], &evals).unwrap();
    }
    let frames = Frames::load(&store, None).unwrap();
    let fits = ReportFits::compute(&frames);
    let fig = loopscale::analysis::chart_data::test_time::test_time(&frames, &fits)
        .unwrap()
        .unwrap_or_else(|why| panic!("test-time chart not drawn: {why}"));
    let panel = fig.panels.into_iter().next().unwrap();
    let task = task.then(|| {
        let fig = loopscale::analysis::chart_data::tasks::accuracy_vs_loops(&frames)
            .unwrap()
            .unwrap_or_else(|why| panic!("accuracy chart not drawn: {why}"));
        let p = fig.panels.into_iter().next().unwrap();
        let fig = loopscale::analysis::chart_data::tasks::accuracy_vs_depth(&frames)
            .unwrap()
            .unwrap_or_else(|why| panic!("accuracy-vs-depth chart not drawn: {why}"));
        let depth = fig.panels.into_iter().next().unwrap();
        (p.title, p.series, depth.title, depth.series)
    });
    (panel.title, panel.series, task)
}

#[test]
fn the_test_time_chart_draws_group_means_with_standard_error_bars() {
    let (title, series, _) = test_time_chart(3, false);
    assert!(title.contains("mean ± 1 SE over 3 seeds"), "{title}");
    // A bar at each of T = 1, 2, 4, 8, 16.
    assert_bars_of_three_seeds(&series, 2, 5);
    let (_, _, task) = test_time_chart(3, true);
    let (title, series, depth_title, depth) = task.unwrap();
    assert!(title.contains("mean ± 1 SE over 3 seeds"), "{title}");
    assert_bars_of_three_seeds(&series, 2, 3);
    // Accuracy vs depth: one looped line through the two configurations' means.
    assert!(
        depth_title.contains("mean ± 1 SE over 3 seeds"),
        "{depth_title}"
    );
    assert_bars_of_three_seeds(&depth, 1, 2);
}

#[test]
fn a_test_time_chart_of_single_seeds_draws_no_bars() {
    use loopscale::chart::Kind;
    let (title, series, _) = test_time_chart(1, false);
    assert!(title.contains("noise unmeasured"), "{title}");
    let (task_title, task, depth_title, depth) = test_time_chart(1, true).2.unwrap();
    assert!(task_title.contains("noise unmeasured"), "{task_title}");
    assert!(depth_title.contains("noise unmeasured"), "{depth_title}");
    assert!(
        !depth
            .iter()
            .any(|s| matches!(s.kind, Kind::ErrorBars(_) | Kind::Faint)),
        "no bars on the accuracy-vs-depth chart"
    );
    assert!(
        !task
            .iter()
            .any(|s| matches!(s.kind, Kind::ErrorBars(_) | Kind::Faint)),
        "no bars on the accuracy chart either"
    );
    assert!(
        !series
            .iter()
            .any(|s| matches!(s.kind, Kind::ErrorBars(_) | Kind::Faint)),
        "no bars, no pale seeds"
    );
    assert_eq!(
        series.iter().filter(|s| s.kind == Kind::Markers).count(),
        2,
        "each run's points as before"
    );
}

/// Frames of a sweep with `seeds` seeds per configuration: two FLOP budgets (1e12, 4e12) × loops
/// {2, 4, 8} (the μ = 8 runs evaluated along two schedules) and a GPT per budget, each seed's
/// losses 0, +0.01, −0.01 from the fixture's (sd 0.01, SE 0.01/√3 over three seeds), with
/// decoding measurements and in-context errors carrying the same offsets; and its fits.
fn seeded_sweep(seeds: usize) -> (Frames, ReportFits) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("seeded.sqlite")).unwrap();
    let mut runs = Vec::new();
    for c in [1e12, 4e12] {
        for mu in [Some(2usize), Some(4), Some(8), None] {
            for seed in 0..seeds {
                let tokens = (c / (2e6 * mu.unwrap_or(1) as f64)) as u64;
                let mut config = config(mu, 64, tokens);
                config.seed = seed as u64;
                let run = NewRun {
                    key: config.key(),
                    variant: None,
                    tokens: config.train.tokens,
                    config,
                    params: 100_000,
                    non_embedding_params: 80_000,
                    flops: c,
                };
                runs.push((run, mu.map(|m| m as f64), [0.0, 0.01, -0.01][seed]));
            }
        }
    }
    let new_runs: Vec<NewRun> = runs.iter().map(|(r, _, _)| r.clone()).collect();
    store
        .register_sweep("seeded", "", "seeded.toml", "", &new_runs)
        .unwrap();
    for (run, mu, wobble) in &runs {
        let final_loss = loss(run.flops, *mu) + wobble;
        finish_at(&mut store, run, *mu, final_loss);
        let decode = |loops: Option<usize>| loopscale::train::DecodeEvalMetrics {
            step: 10,
            loops,
            tokens: 100,
            kv_bytes_per_token: 256.0 * loops.unwrap_or(1) as f64,
            peak_cache_bytes: 1000,
            tokens_per_s: 50.0,
            val_loss: final_loss + 0.1 * loops.unwrap_or(1) as f64,
        };
        let decodes: Vec<_> = match mu {
            Some(_) => [1usize, 2, 4].map(|l| decode(Some(l))).to_vec(),
            None => vec![decode(None)],
        };
        store.record_decode_evals(&run.key, &decodes).unwrap();
        let icl = |estimator: &str, k: usize, error: f64| loopscale::train::IclError {
            estimator: estimator.into(),
            test_loops: mu.map(|m| m as usize),
            n_examples: k,
            error,
        };
        let errors: Vec<_> = (0..4)
            .flat_map(|k| {
                [
                    icl("model", k, 0.5 - 0.1 * k as f64 + wobble),
                    icl("averaging", k, 1.0 - 0.05 * k as f64),
                ]
            })
            .collect();
        store.record_icl_errors(&run.key, &errors).unwrap();
    }
    let frames = Frames::load(&store, None).unwrap();
    let fits = ReportFits::compute(&frames);
    (frames, fits)
}

/// The charts that draw their runs by replicate group when the sweep has seeds, by name.
fn seeded_charts(seeds: usize) -> Vec<(&'static str, loopscale::chart::Figure)> {
    use loopscale::analysis::chart_data::{decoding, isoflop, tasks, test_time, training};
    let (frames, fits) = seeded_sweep(seeds);
    let drawn = |name: &'static str, built: loopscale::analysis::chart_data::Built| {
        let fig = built
            .unwrap()
            .unwrap_or_else(|why| panic!("{name} not drawn: {why}"));
        (name, fig)
    };
    vec![
        drawn("training", training::training_curves(&frames, "tokens")),
        drawn("decoding", decoding::cache_and_loss(&frames)),
        drawn(
            "isoflop",
            isoflop::isoflop_curves(&frames, &fits.isoflop_loops),
        ),
        drawn("budget", test_time::budget(&frames)),
        drawn("icl", tasks::icl_errors(&frames)),
    ]
}

#[test]
fn with_three_seeds_the_remaining_charts_draw_bars_of_one_standard_error() {
    use loopscale::chart::Kind;
    let se = 0.01 / 3f64.sqrt();
    for (name, fig) in seeded_charts(3) {
        let mut bars = 0;
        for panel in &fig.panels {
            assert!(
                panel.title.contains("± 1 SE over"),
                "{name}: {}",
                panel.title
            );
            for s in &panel.series {
                let (Kind::ErrorBars(b) | Kind::Band(b)) = &s.kind else {
                    continue;
                };
                for &(x, lo, hi) in b {
                    // The cache's bytes do not depend on the seed: a bar of nothing.
                    let half = (hi - lo) / 2.0;
                    let bytes = panel.title.starts_with("KV cache");
                    let want = if bytes { 0.0 } else { se };
                    assert!(
                        (half - want).abs() < 1e-9,
                        "{name} at {x}: ±{half}, not ±{want}"
                    );
                    bars += 1;
                }
            }
            let faint = panel.series.iter().any(|s| s.kind == Kind::Faint);
            assert!(
                faint || name == "training",
                "{name}: seeds pale behind the means"
            );
        }
        assert!(bars > 0, "{name} drew no bars");
    }
}

#[test]
fn with_one_seed_the_remaining_charts_draw_their_runs_as_before_with_no_bars() {
    use loopscale::chart::Kind;
    for (name, fig) in seeded_charts(1) {
        for panel in &fig.panels {
            assert!(!panel.title.contains("SE"), "{name}: {}", panel.title);
            assert!(
                !panel
                    .series
                    .iter()
                    .any(|s| matches!(s.kind, Kind::ErrorBars(_) | Kind::Faint | Kind::Band(_))),
                "{name}: no bars, bands or pale seeds for single seeds"
            );
        }
    }
}
