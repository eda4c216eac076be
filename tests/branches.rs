//! Runs built on runs, end to end through the binary: a WSD family trains one trunk and
//! branches each of its runs from the trunk's checkpoint; a branch is bit for bit the run an
//! independent sweep trains with the same warmup and cooldown; the store records the lineage;
//! a diverged trunk blocks its branches, and they wait for it again on the next `run`; `gc`
//! keeps a trunk's checkpoints while a branch still needs them. A LoopUS recast run starts from
//! its parent GPT's final checkpoint; a recast parent that cannot be found is refused. The
//! report draws both.

use std::path::{Path, PathBuf};

use crate::common;
use common::{loopscale, moby_dick_file, text};
use loopscale::store::{RunStatus, Store};
use loopscale::sweep::Sweep;

/// Steps of the family's members (8 sequences of 32 tokens a step).
const STEPS: [u64; 3] = [40, 80, 120];

fn sweep_file(dir: &Path, name: &str, train_extra: &str, tokens: &str) -> PathBuf {
    let corpus = moby_dick_file(dir, 60_000);
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"
[sweep]
name = "{name}"
db = "{db}"

[data]
corpus = "{corpus}"
seq_len = 32
val_fraction = 0.1

[train]
tokens = {tokens}
batch_size = 8
lr = 3e-3
schedule = "wsd"
warmup_fraction = 0.1
cooldown_fraction = 0.25
eval_every = 20
eval_tokens = 1024
log_every = 1
checkpoint_every = 30
{train_extra}

[model]
d_model = 32
n_heads = 2
n_layers = 1
"#,
            db = dir.join(format!("{name}.sqlite")).display(),
            corpus = corpus.display(),
        ),
    )
    .unwrap();
    path
}

fn family_tokens() -> String {
    let t: Vec<String> = STEPS.iter().map(|s| (s * 8 * 32).to_string()).collect();
    format!("[{}]", t.join(", "))
}

#[test]
fn branches_share_one_trunk_and_each_equals_its_independent_run_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let file = sweep_file(dir.path(), "wsd", "branch = true", &family_tokens());
    let sweep = Sweep::load(&file).unwrap();
    assert_eq!(sweep.runs.len(), 4, "one trunk, three branches");
    let trunk = &sweep.runs[0];
    assert!(trunk.config.is_trunk());
    // Shared warmup: 10% of the shortest member's 40 steps; cooldowns of 25% start at 30, 60, 90.
    assert_eq!(trunk.config.train.keep_checkpoints, vec![30, 60, 90]);

    let plan = loopscale(&["plan", file.to_str().unwrap()]);
    let plan_text = text(&plan);
    assert!(plan.status.success(), "{plan_text}");
    assert!(plan_text.contains("from step 30"), "{plan_text}");
    assert!(
        plan_text.contains("if every run trained alone"),
        "{plan_text}"
    );

    let run = loopscale(&["run", file.to_str().unwrap(), "--jobs", "2", "--plain"]);
    assert!(run.status.success(), "{}", text(&run));
    let db = dir.path().join("wsd.sqlite");
    let store = Store::open_read_only(&db).unwrap();
    let runs = store.runs("wsd").unwrap();

    // `status` counts each run's own FLOPs, as `plan` does: the trunk's prefix once, not again
    // in every branch's path.
    let own: f64 = sweep
        .runs
        .iter()
        .map(|r| loopscale::train::RunCost::of(&r.config).own_flops)
        .sum();
    let path: f64 = sweep
        .runs
        .iter()
        .map(|r| loopscale::train::RunCost::of(&r.config).flops)
        .sum();
    assert!(path > 1.3 * own, "the paths overlap: {path:e} vs {own:e}");
    let status = text(&loopscale(&["status", file.to_str().unwrap()]));
    let progress = status
        .lines()
        .find(|l| l.starts_with("progress:"))
        .unwrap_or_else(|| panic!("{status}"));
    assert!(progress.starts_with("progress: 100% "), "{progress}");
    let total = progress
        .rsplit(" of ")
        .next()
        .unwrap()
        .trim_end_matches(')');
    let (digits, unit) = total.split_at(total.len() - 1);
    let scale = match unit {
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        _ => panic!("{progress}"),
    };
    let shown = digits.parse::<f64>().unwrap() * scale;
    assert!(
        (shown / own - 1.0).abs() < 0.01,
        "{progress}: own FLOPs {own:e}"
    );
    assert_eq!(runs.len(), 4);
    assert!(runs.iter().all(|r| r.status == RunStatus::Done), "{runs:?}");

    // A branch's rows start after its branch point and count tokens along the whole path.
    for (branch, start) in sweep.runs[1..].iter().zip([30u64, 60, 90]) {
        let steps: Vec<u64> = store
            .train_losses(&branch.key)
            .unwrap()
            .iter()
            .map(|(s, _)| *s)
            .collect();
        let total = branch.config.train.tokens / (8 * 32);
        assert_eq!(
            steps,
            (start + 1..=total).collect::<Vec<_>>(),
            "{}",
            branch.key
        );
    }
    let lineage = store
        .query("SELECT run_key, role, parent_run_key, parent_step, own_tokens FROM lineage ORDER BY role DESC, parent_step")
        .unwrap();
    assert_eq!(lineage.rows.len(), 4);
    assert_eq!(lineage.rows[0][1], "trunk");
    for ((row, start), steps) in lineage.rows[1..].iter().zip([30, 60, 90]).zip(STEPS) {
        assert_eq!(row[1], "branch");
        assert_eq!(row[2], trunk.key);
        assert_eq!(row[3], start.to_string());
        assert_eq!(
            row[4],
            ((steps - start) * 8 * 32).to_string(),
            "its own cooldown"
        );
    }
    // The trunk is no result of its own: fits and charts read final_runs.
    let finals = store.query("SELECT run_key FROM final_runs").unwrap();
    assert_eq!(finals.rows.len(), 3);
    assert!(finals.rows.iter().all(|r| r[0] != trunk.key));

    // The longest branch, trained alone with the family's warmup: the same numbers, bit for bit.
    let alone = sweep_file(
        dir.path(),
        "alone",
        "warmup_steps = 4",
        &(STEPS[2] * 8 * 32).to_string(),
    );
    let run = loopscale(&["run", alone.to_str().unwrap(), "--jobs", "2", "--plain"]);
    assert!(run.status.success(), "{}", text(&run));
    let alone_store = Store::open_read_only(&dir.path().join("alone.sqlite")).unwrap();
    let alone_run = &alone_store.runs("alone").unwrap()[0];
    let branch = runs.iter().find(|r| r.key == sweep.runs[3].key).unwrap();
    assert_eq!(
        alone_run.final_val_loss.map(f64::to_bits),
        branch.final_val_loss.map(f64::to_bits),
        "independent {:?} vs branch {:?}",
        alone_run.final_val_loss,
        branch.final_val_loss
    );
    let tail = |s: &Store, key: &str| -> Vec<(u64, Option<u64>)> {
        s.train_losses(key)
            .unwrap()
            .into_iter()
            .filter(|(step, _)| *step > 90)
            .map(|(step, l)| (step, l.map(f64::to_bits)))
            .collect()
    };
    assert_eq!(
        tail(&alone_store, &alone_run.key),
        tail(&store, &branch.key)
    );

    // The report draws the family against the independent runs.
    let built = loopscale::report::build(
        &loopscale::report::resolve(&db, &[]).unwrap(),
        &dir.path().join("report"),
    )
    .unwrap();
    let chart = built.charts.iter().find(|c| c.name == "branches").unwrap();
    assert!(
        matches!(chart.outcome, loopscale::plot::Outcome::Drawn(_)),
        "{:?}",
        chart.outcome
    );

    // gc: every run is done, so the trunk's branch points go too.
    drop(store);
    let gc = loopscale(&["gc", file.to_str().unwrap()]);
    assert!(gc.status.success(), "{}", text(&gc));
    let left = loopscale::train::checkpoint::files(&loopscale::engine::run_dir(&db, &trunk.key));
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_diverged_trunk_blocks_its_branches_which_wait_for_it_again_on_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    // A learning rate no model survives: the trunk diverges.
    let file = sweep_file(
        dir.path(),
        "blocked",
        "branch = true\ngrad_clip = 0.0",
        &family_tokens(),
    );
    let text_of = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text_of.replace("lr = 3e-3", "lr = 40.0")).unwrap();
    let sweep = Sweep::load(&file).unwrap();
    let run = loopscale(&["run", file.to_str().unwrap(), "--jobs", "2", "--plain"]);
    let out = text(&run);
    let db = dir.path().join("blocked.sqlite");
    let store = Store::open_read_only(&db).unwrap();
    let trunk = store.run(&sweep.runs[0].key).unwrap().unwrap();
    assert_eq!(trunk.status, RunStatus::Diverged, "{out}");
    for branch in &sweep.runs[1..] {
        let row = store.run(&branch.key).unwrap().unwrap();
        assert_eq!(row.status, RunStatus::Blocked, "{}: {out}", branch.key);
        let why = row.error.unwrap_or_default();
        assert!(
            why.contains(&trunk.key) && why.contains("diverged"),
            "{why}"
        );
        assert_eq!(row.attempts, 0, "a blocked branch never started");
    }
    let status = loopscale(&["status", file.to_str().unwrap()]);
    assert!(text(&status).contains("3 blocked"), "{}", text(&status));
    drop(store);

    // A diverged run is over, so its branches stay blocked, and say why, on every later run.
    let again = loopscale(&["run", file.to_str().unwrap(), "--jobs", "2", "--plain"]);
    assert!(text(&again).contains("blocked"), "{}", text(&again));
    let store = Store::open_read_only(&db).unwrap();
    for branch in &sweep.runs[1..] {
        let row = store.run(&branch.key).unwrap().unwrap();
        assert_eq!(row.status, RunStatus::Blocked);
        assert_eq!(row.attempts, 0);
    }
}

#[test]
fn branched_runs_need_a_wsd_schedule_adamw_and_the_built_in_trainer() {
    let dir = tempfile::tempdir().unwrap();
    for (extra, expect) in [
        (
            "branch = true\nschedule = \"cosine\"",
            "needs `train.schedule` = \"wsd\"",
        ),
        ("branch = true\noptimizer = \"muon\"", "Muon's weight decay"),
        (
            "branch = true\ncooldown_fraction = 0.0",
            "a branch is its cooldown",
        ),
    ] {
        let file = sweep_file(dir.path(), "bad", extra, &family_tokens());
        // `schedule` and `cooldown_fraction` appear twice when overridden: keep the override.
        let text_of = std::fs::read_to_string(&file).unwrap();
        let fixed = if extra.contains("schedule") {
            text_of.replacen("schedule = \"wsd\"\n", "", 1)
        } else if extra.contains("cooldown_fraction") {
            text_of.replacen("cooldown_fraction = 0.25\n", "", 1)
        } else {
            text_of
        };
        std::fs::write(&file, fixed).unwrap();
        let err = Sweep::load(&file).unwrap_err().to_string();
        assert!(err.contains(expect), "{extra}: {err}");
        assert!(
            err.contains("train.branch") || err.contains("train."),
            "{err}"
        );
        let out = loopscale(&["run", file.to_str().unwrap()]);
        assert!(!out.status.success());
        assert!(!dir.path().join("bad.sqlite").exists(), "nothing recorded");
    }
}

fn recast_sweep(dir: &Path, name: &str, recast_model: &str) -> PathBuf {
    let corpus = moby_dick_file(dir, 60_000);
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"
[sweep]
name = "{name}"
db = "{db}"
[data]
corpus = "{corpus}"
seq_len = 32
val_fraction = 0.1
[train]
batch_size = 8
lr = 3e-3
eval_every = 50
eval_tokens = 1024
[model]
d_model = 32
n_heads = 2
prelude_norm = false
state_init = "zero"
injection = "add"
n_prelude = 1
n_core = 2
n_coda = 1
mean_recurrence = 2
test_loops = [1, 2, 3]
[[variants]]
name = "gpt"
model.arch = "gpt"
model.n_layers = 4
train.tokens = 25600
[[variants]]
name = "recast"
model = {{ {recast_model} }}
train = {{ tokens = 12800, deep_supervision = "random" }}
[[variants]]
name = "scratch"
model.arch = "looped"
train.tokens = 12800
"#,
            db = dir.join(format!("{name}.sqlite")).display(),
            corpus = corpus.display(),
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_recast_run_starts_from_its_parent_gpts_end_and_is_drawn_against_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = recast_sweep(
        dir.path(),
        "recast",
        r#"arch = "looped", recast_from = "gpt", loop_gate = "selective", exit_head = true, exit_thresholds = [0.2, 0.5]"#,
    );
    let sweep = Sweep::load(&file).unwrap();
    let gpt = sweep
        .runs
        .iter()
        .find(|r| r.variant.as_deref() == Some("gpt"))
        .unwrap();
    let child = sweep
        .runs
        .iter()
        .find(|r| r.variant.as_deref() == Some("recast"))
        .unwrap();
    assert_eq!(child.config.parent(), Some(gpt.key.as_str()));
    // The parent keeps its last checkpoint (100 steps), which the child starts from.
    assert_eq!(gpt.config.train.keep_checkpoints, vec![100]);
    assert_eq!(
        child.config.lineage.as_ref().unwrap().parent_step,
        Some(100)
    );

    let run = loopscale(&["run", file.to_str().unwrap(), "--jobs", "2", "--plain"]);
    assert!(run.status.success(), "{}", text(&run));
    let db = dir.path().join("recast.sqlite");
    let store = Store::open_read_only(&db).unwrap();
    let rows = store.runs("recast").unwrap();
    assert!(rows.iter().all(|r| r.status == RunStatus::Done), "{rows:?}");
    let loss = |key: &str| {
        rows.iter()
            .find(|r| r.key == key)
            .unwrap()
            .final_val_loss
            .unwrap()
    };
    let scratch = sweep
        .runs
        .iter()
        .find(|r| r.variant.as_deref() == Some("scratch"))
        .unwrap();
    // Starting from a trained GPT is worth far more than 50 steps from scratch.
    assert!(
        loss(&child.key) < loss(&scratch.key) - 0.1,
        "recast {} vs scratch {}",
        loss(&child.key),
        loss(&scratch.key)
    );
    let log = std::fs::read_to_string(
        loopscale::engine::logs_dir(&db).join(format!("{}.log", child.key)),
    )
    .unwrap();
    assert!(log.contains("recast split [1, 3)"), "{log}");
    let exits = store
        .query(
            "SELECT count(*) FROM exit_evals WHERE run_key = :k"
                .replace(":k", &format!("'{}'", child.key))
                .as_str(),
        )
        .unwrap();
    assert_eq!(
        exits.rows[0][0], "4",
        "one row per threshold and cap (training depth 2, deepest test_loops 3)"
    );
    let built = loopscale::report::build(
        &loopscale::report::resolve(&db, &[]).unwrap(),
        &dir.path().join("report"),
    )
    .unwrap();
    let chart = built.charts.iter().find(|c| c.name == "recast").unwrap();
    assert!(
        matches!(chart.outcome, loopscale::plot::Outcome::Drawn(_)),
        "{:?}",
        chart.outcome
    );
    // Where the workers' time went, from every attempt's stored split.
    let time = built.time.as_ref().expect("the attempts' time split");
    let seconds = |row: usize| time.rows[row][1].parse::<f64>().unwrap();
    let total = seconds(time.rows.len() - 1);
    assert!(seconds(0) > 0.0 && seconds(0) < total, "{time:?}");
    assert!(
        seconds(2) > 0.0,
        "the looped runs' test-time evaluations: {time:?}"
    );
    let parts: f64 = (0..time.rows.len() - 1).map(seconds).sum();
    assert!(
        (parts - total).abs() < 0.2,
        "the parts add up to the total: {time:?}"
    );
}

#[test]
fn a_recast_parent_that_cannot_be_found_or_does_not_fit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (model, expect) in [
        (
            r#"arch = "looped", recast_from = "gtp""#,
            "names no variant",
        ),
        (
            r#"arch = "looped", recast_from = "scratch""#,
            "recasting starts from a GPT",
        ),
        (
            r#"arch = "gpt", recast_from = "gpt""#,
            "is set on a GPT run",
        ),
        (
            r#"arch = "looped", recast_from = "gpt", n_coda = 2"#,
            "the parent does not fit this run",
        ),
    ] {
        let file = recast_sweep(dir.path(), "bad_recast", model);
        let err = Sweep::load(&file).unwrap_err().to_string();
        assert!(err.contains(expect), "{model}: {err}");
        assert!(err.contains("model.recast_from"), "{err}");
    }
}
