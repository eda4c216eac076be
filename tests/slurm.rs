//! Against a real Slurm: a one-node cluster on this machine, started by the project's own
//! `scripts/slurm-one-node.sh` (Debian's slurm-wlm and munge, as root, no systemd).
//!
//! - A tiny sweep submitted as a job array, waited for and collected, gives the same database
//!   as a local run of the same sweep: the same run keys, the same final losses.
//! - A task Slurm requeues (what preemption does) resumes from its checkpoint and ends with
//!   the losses of a run that was never stopped.
//! - A sweep whose runs are another program (the command backend, with the test trainer that
//!   is killed once mid-run) finishes on Slurm as it does locally: each run retried once, every
//!   step recorded once.
//! - Cancelling the array mid-way and submitting again finishes the sweep without training any
//!   finished run again, and without a metrics row twice; the cancelled run resumes from the
//!   checkpoint its worker wrote when Slurm sent SIGTERM.
//!
//! - Runs built on runs (a WSD trunk and its branches) go out as one array per generation, each
//!   child array waiting for its parent's task (`afterok`), and end as a local run does.
//!
//! Where Slurm cannot start (not root, no apt, a daemon refuses), each test fails saying exactly
//! why — unless `LOOPSCALE_SKIP_SLURM=1` says to skip them, when each prints why and returns.
//! A machine without Slurm never passes these tests silently.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use loopscale::store::{RunStatus, Store};

const BIN: &str = env!("CARGO_BIN_EXE_loopscale");

/// Starts (or finds running) the one-node cluster once per test binary; `Err` says why not.
fn cluster() -> Result<(), String> {
    static STARTED: OnceLock<Result<(), String>> = OnceLock::new();
    STARTED
        .get_or_init(|| {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm-one-node.sh");
            let t = Instant::now();
            let out = Command::new("bash")
                .arg(&script)
                .arg("start")
                .output()
                .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if !out.status.success() {
                return Err(format!(
                    "{} start failed ({}): {}",
                    script.display(),
                    out.status,
                    text.trim()
                ));
            }
            eprintln!(
                "{}(cluster ready in {:.1}s)",
                text,
                t.elapsed().as_secs_f64()
            );
            Ok(())
        })
        .clone()
}

macro_rules! require_slurm {
    () => {
        if let Err(why) = cluster() {
            if std::env::var_os("LOOPSCALE_SKIP_SLURM").is_some_and(|v| v == "1") {
                eprintln!("SKIPPED (LOOPSCALE_SKIP_SLURM=1): Slurm is not available here: {why}");
                return;
            }
            panic!(
                "Slurm is not available here: {why}\n\
                 start it with `scripts/slurm-one-node.sh start` (as root), or set \
                 LOOPSCALE_SKIP_SLURM=1 to skip the Slurm tests"
            );
        }
    };
}

fn loopscale(args: &[&str]) -> Output {
    let out = Command::new(BIN).args(args).output().unwrap();
    eprintln!(
        "$ loopscale {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ok(args: &[&str]) -> String {
    let out = loopscale(args);
    assert!(out.status.success(), "loopscale {} failed", args.join(" "));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A sweep of tiny GPTs (2 widths × 2 seeds × the `tokens` axis) on the test corpus.
fn sweep_file(dir: &Path, name: &str, tokens: &str, max_parallel: u32) -> PathBuf {
    let corpus =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sweeps/tiny_corpus.txt");
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"[sweep]
name = "{name}"
seeds = [0, 1]
[data]
corpus = "{corpus}"
seq_len = 32
[train]
tokens = {tokens}
batch_size = 4
eval_every = 20
eval_tokens = 512
log_every = 5
[model]
d_model = [16, 32]
n_heads = 2
n_layers = 1
[slurm]
max_parallel = {max_parallel}
"#,
            corpus = corpus.display()
        ),
    )
    .unwrap();
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// (run key, status, attempts, final val loss, metrics rows, distinct metric steps) per run.
type RunSummary = (String, RunStatus, u32, Option<f64>, usize, usize);

fn summary(db: &Path) -> Vec<RunSummary> {
    let store = Store::open_read_only(db).unwrap();
    let name = store.sweep_names().unwrap().pop().unwrap();
    let mut rows: Vec<RunSummary> = store
        .runs(&name)
        .unwrap()
        .into_iter()
        .map(|r| {
            let losses = store.train_losses(&r.key).unwrap();
            let mut steps: Vec<u64> = losses.iter().map(|(s, _)| *s).collect();
            steps.dedup();
            (
                r.key,
                r.status,
                r.attempts,
                r.final_val_loss,
                losses.len(),
                steps.len(),
            )
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows
}

/// The same runs, each done in one attempt, with the same final validation loss, locally and on
/// Slurm.
fn assert_same_runs(local: &[RunSummary], slurm: &[RunSummary]) {
    assert_eq!(local.len(), slurm.len());
    for (l, r) in local.iter().zip(slurm) {
        assert_eq!(l.0, r.0, "same run keys");
        assert_eq!(
            (l.1, r.1),
            (RunStatus::Done, RunStatus::Done),
            "run {}",
            l.0
        );
        assert_eq!((l.2, r.2), (1, 1), "one attempt each: run {}", l.0);
        let (a, b) = (l.3.unwrap(), r.3.unwrap());
        assert!(
            (a - b).abs() < 1e-9,
            "run {}: final val loss {a} locally, {b} on Slurm",
            l.0
        );
    }
}

#[test]
fn a_sweep_on_slurm_gives_the_database_of_a_local_run() {
    require_slurm!();
    let dir = tempfile::tempdir().unwrap();
    let sweep = sweep_file(dir.path(), "array", "[4096, 8192]", 2);
    let (local_db, slurm_db) = (
        dir.path().join("local.sqlite"),
        dir.path().join("slurm.sqlite"),
    );

    let t = Instant::now();
    ok(&[
        "run",
        s(&sweep),
        "--db",
        s(&local_db),
        "--jobs",
        "2",
        "--plain",
    ]);
    let local_s = t.elapsed().as_secs_f64();

    let script = ok(&[
        "run",
        s(&sweep),
        "--db",
        s(&slurm_db),
        "--executor",
        "slurm",
        "--dry-run",
    ]);
    // MaxArraySize 5 on the one-node cluster: two arrays over one manifest, the second offset.
    for line in [
        "#SBATCH --array=0-4%2",
        "#SBATCH --array=0-2%2",
        "INDEX=$((SLURM_ARRAY_TASK_ID + 5))",
    ] {
        assert!(
            script.lines().any(|l| l == line),
            "no {line:?} in\n{script}"
        );
    }

    let t = Instant::now();
    let submitted = ok(&[
        "run",
        s(&sweep),
        "--db",
        s(&slurm_db),
        "--executor",
        "slurm",
        "--wait",
    ]);
    let slurm_s = t.elapsed().as_secs_f64();
    assert!(submitted.contains("8 run(s) submitted"), "{submitted}");
    // The one-node cluster's MaxArraySize is 5: 8 runs go out as two arrays (5 + 3 tasks).
    assert_eq!(
        submitted.matches("submitted job array").count(),
        2,
        "{submitted}"
    );
    assert!(
        submitted.contains("collected 8 run store(s)"),
        "{submitted}"
    );
    eprintln!("timings: local run {local_s:.1}s, Slurm submit+wait+collect {slurm_s:.1}s");

    let (local, slurm) = (summary(&local_db), summary(&slurm_db));
    assert_eq!(local.len(), 8);
    assert_same_runs(&local, &slurm);
    for (l, r) in local.iter().zip(&slurm) {
        assert_eq!((l.4, l.5), (r.4, r.5), "same metrics rows: run {}", l.0);
    }
    // Not just the end: every logged training loss is the same, step for step.
    let (ls, rs) = (
        Store::open_read_only(&local_db).unwrap(),
        Store::open_read_only(&slurm_db).unwrap(),
    );
    for (key, ..) in &local {
        assert_eq!(
            ls.train_losses(key).unwrap(),
            rs.train_losses(key).unwrap(),
            "run {key}"
        );
    }

    // Collecting again changes nothing; status shows both views.
    let again = ok(&["collect", s(&sweep), "--db", s(&slurm_db)]);
    assert!(again.contains("0 row(s) changed"), "{again}");
    let status = ok(&["status", s(&sweep), "--db", s(&slurm_db)]);
    assert!(
        status.contains("8 done") && status.contains("slurm"),
        "{status}"
    );
    // Nothing left to do: a second submission submits nothing.
    let resubmit = ok(&[
        "run",
        s(&sweep),
        "--db",
        s(&slurm_db),
        "--executor",
        "slurm",
    ]);
    assert!(
        resubmit.contains("nothing to submit: 8 run(s) finished"),
        "{resubmit}"
    );
}

#[test]
fn cancelling_mid_way_and_resubmitting_trains_no_run_twice() {
    require_slurm!();
    let dir = tempfile::tempdir().unwrap();
    // One run at a time, each a few seconds, so the cancel lands with some runs done, one
    // running and some pending.
    let sweep = sweep_file(dir.path(), "cancel", "65536", 1);
    let db = dir.path().join("cancel.sqlite");
    let t = Instant::now();
    ok(&["run", s(&sweep), "--db", s(&db), "--executor", "slurm"]);

    // Wait until one run is done and another has started.
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        ok(&["collect", s(&sweep), "--db", s(&db)]);
        let runs = summary(&db);
        let done = runs.iter().filter(|r| r.1 == RunStatus::Done).count();
        let running = runs
            .iter()
            .filter(|r| r.1 == RunStatus::Running && r.4 > 0)
            .count();
        if done >= 1 && running >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "no progress on Slurm: {runs:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let cancelled = ok(&["cancel", s(&sweep), "--db", s(&db)]);
    assert!(cancelled.contains("cancelled job array"), "{cancelled}");
    // The cancelled worker records its end (SIGTERM → interrupted) and leaves the queue.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = ok(&["status", s(&sweep), "--db", s(&db)]);
        if !status.contains("RUNNING")
            && !status.contains("PENDING")
            && !status.contains("COMPLETING")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cancelled tasks still in the queue"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    ok(&["collect", s(&sweep), "--db", s(&db)]);
    let before = summary(&db);
    let done_before: Vec<&RunSummary> = before.iter().filter(|r| r.1 == RunStatus::Done).collect();
    assert!(
        !done_before.is_empty() && done_before.len() < 4,
        "{before:?}"
    );
    assert!(
        before.iter().all(|r| r.1 != RunStatus::Running),
        "nothing may stay running after a cancel: {before:?}"
    );
    let cut = before
        .iter()
        .filter(|r| r.1 == RunStatus::Interrupted)
        .count();
    assert!(
        cut >= 1,
        "the running run is recorded as interrupted: {before:?}"
    );

    let resubmitted = ok(&[
        "run",
        s(&sweep),
        "--db",
        s(&db),
        "--executor",
        "slurm",
        "--wait",
    ]);
    let expect = format!(
        "{} run(s) submitted; {} finished",
        4 - done_before.len(),
        done_before.len()
    );
    assert!(
        resubmitted.contains(&expect),
        "expected {expect:?} in {resubmitted}"
    );
    eprintln!(
        "timings: submit, cancel, resubmit, finish in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    let after = summary(&db);
    let steps = 65536 / (4 * 32);
    for r in &after {
        assert_eq!(r.1, RunStatus::Done, "{r:?}");
        // Every step logged once (log_every = 5, and the last step), whatever the attempts.
        assert_eq!(r.4, r.5, "a metrics step twice: {r:?}");
        assert_eq!(r.4, steps / 5 + usize::from(steps % 5 != 0), "{r:?}");
    }
    for d in &done_before {
        let now = after.iter().find(|r| r.0 == d.0).unwrap();
        assert_eq!(
            now.2, 1,
            "run {} finished before the cancel and was trained again",
            d.0
        );
        assert_eq!(now.3, d.3, "run {} changed its result", d.0);
    }
    // The cut run resumed from the checkpoint its worker wrote on SIGTERM, not from step 0.
    for r in before.iter().filter(|r| r.1 == RunStatus::Interrupted) {
        let log =
            std::fs::read_to_string(dir.path().join(format!("cancel.logs/{}.log", r.0))).unwrap();
        let resumed = log
            .lines()
            .find(|l| l.contains("resumes from its checkpoint at step"));
        eprintln!("cut run {}: {}", r.0, resumed.unwrap_or("(no resume line)"));
        assert!(
            resumed.is_some(),
            "run {} started again from scratch:\n{log}",
            r.0
        );
        assert_eq!(
            after.iter().find(|a| a.0 == r.0).unwrap().2,
            2,
            "cut run {}: two attempts",
            r.0
        );
    }
    // Runs never started before the cancel trained exactly once; the cut run twice at most.
    let attempts: u32 = after.iter().map(|r| r.2).sum();
    assert!(
        attempts as usize <= 4 + cut,
        "attempts {attempts} for 4 runs with {cut} cut: {after:?}"
    );
}

#[test]
fn a_task_requeued_by_slurm_resumes_from_its_checkpoint_and_ends_as_if_never_stopped() {
    require_slurm!();
    let dir = tempfile::tempdir().unwrap();
    // One run: 512 steps, a few seconds.
    let sweep = sweep_file(dir.path(), "requeue", "65536", 1);
    let text = std::fs::read_to_string(&sweep).unwrap();
    std::fs::write(
        &sweep,
        text.replace("seeds = [0, 1]", "seeds = [0]")
            .replace("d_model = [16, 32]", "d_model = 32"),
    )
    .unwrap();
    let (local_db, db) = (
        dir.path().join("local.sqlite"),
        dir.path().join("requeue.sqlite"),
    );
    ok(&["run", s(&sweep), "--db", s(&local_db), "--plain"]);

    ok(&["run", s(&sweep), "--db", s(&db), "--executor", "slurm"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    let key = loop {
        ok(&["collect", s(&sweep), "--db", s(&db)]);
        let runs = summary(&db);
        if runs[0].1 == RunStatus::Running && runs[0].4 >= 20 {
            break runs[0].0.clone();
        }
        assert!(Instant::now() < deadline, "the task never ran: {runs:?}");
        std::thread::sleep(Duration::from_millis(300));
    };
    // What preemption with PreemptMode=REQUEUE does: SIGTERM, then the task goes back in the queue.
    let job = std::fs::read_to_string(dir.path().join("requeue.slurm/jobs.tsv")).unwrap();
    let job = job.split('\t').next().unwrap().to_string();
    let out = Command::new("scontrol")
        .args(["requeue", &format!("{job}_0")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scontrol requeue: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Slurm holds a requeued task back for two minutes (reason BeginTime); let it go now.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let q = Command::new("squeue")
            .args(["-h", "-r", "-j", &job, "-o", "%T %r"])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&q.stdout).contains("BeginTime") {
            let out = Command::new("scontrol")
                .args(["update", &format!("jobid={job}_0"), "starttime=now"])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "scontrol update: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the requeued task never showed up pending"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Submitting again while Slurm holds the run submits nothing; --wait sees it through.
    let again = ok(&[
        "run",
        s(&sweep),
        "--db",
        s(&db),
        "--executor",
        "slurm",
        "--wait",
    ]);
    assert!(
        again.contains("nothing to submit: 0 run(s) finished, 1 held by tasks still in the queue"),
        "{again}"
    );
    let log = std::fs::read_to_string(dir.path().join(format!("requeue.logs/{key}.log"))).unwrap();
    assert!(
        log.contains("resumes from its checkpoint at step"),
        "the requeued task started from scratch:\n{log}"
    );

    let (local, slurm) = (summary(&local_db), summary(&db));
    assert_eq!((slurm[0].1, slurm[0].2), (RunStatus::Done, 2), "{slurm:?}");
    assert_eq!(
        local[0].3, slurm[0].3,
        "final val loss differs from the uninterrupted run"
    );
    let (ls, rs) = (
        Store::open_read_only(&local_db).unwrap(),
        Store::open_read_only(&db).unwrap(),
    );
    assert_eq!(
        ls.train_losses(&key).unwrap(),
        rs.train_losses(&key).unwrap(),
        "losses differ step for step"
    );
}

/// The command backend under Slurm: two runs of the test trainer (`crash_once`: killed at step 7
/// after a checkpoint at step 5, then resumed), retried by the Slurm worker as a local run would
/// retry them; the trainer's rows come back through the run stores like built-in runs'.
#[test]
fn a_command_trainer_on_slurm_is_retried_and_recorded_once_per_step() {
    require_slurm!();
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus = root.join("tests/fixtures/sweeps/tiny_corpus.txt");
    let trainer = root.join("tests/fixtures/trainers/script_trainer.sh");
    let sweep = dir.path().join("command.toml");
    std::fs::write(
        &sweep,
        format!(
            r#"[sweep]
name = "command"
seeds = [0, 1]
retries = 1
[data]
corpus = "{corpus}"
seq_len = 32
[train]
backend = "command"
command = ["{trainer}", "crash_once", "{{metrics}}", "{{run_dir}}", "{{config}}"]
tokens = 640
batch_size = 2
[model]
d_model = 16
n_heads = 2
n_layers = 1
[slurm]
max_parallel = 2
"#,
            corpus = corpus.display(),
            trainer = trainer.display(),
        ),
    )
    .unwrap();
    let db = dir.path().join("command.sqlite");
    let submitted = ok(&[
        "run",
        s(&sweep),
        "--db",
        s(&db),
        "--executor",
        "slurm",
        "--wait",
    ]);
    assert!(submitted.contains("2 run(s) submitted"), "{submitted}");
    let runs = summary(&db);
    assert_eq!(runs.len(), 2);
    for (key, status, attempts, loss, rows, steps) in &runs {
        assert_eq!(*status, RunStatus::Done, "run {key}");
        assert_eq!(
            *attempts, 2,
            "run {key}: killed once at step 7, then resumed"
        );
        assert_eq!(*loss, Some(2.1), "run {key}: the trainer's final row");
        assert_eq!(
            (*rows, *steps),
            (10, 10),
            "run {key}: steps 6 and 7 trained twice, recorded once"
        );
    }
}

#[test]
fn branches_on_slurm_wait_for_their_trunk_and_match_a_local_run() {
    require_slurm!();
    let dir = tempfile::tempdir().unwrap();
    let corpus =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sweeps/tiny_corpus.txt");
    let sweep = dir.path().join("wsd.toml");
    std::fs::write(
        &sweep,
        format!(
            r#"[sweep]
name = "wsd"
[data]
corpus = "{corpus}"
seq_len = 32
[train]
tokens = [2560, 5120, 7680]
batch_size = 4
schedule = "wsd"
warmup_fraction = 0.1
branch = true
eval_every = 20
eval_tokens = 512
log_every = 5
[model]
d_model = 16
n_heads = 2
n_layers = 1
"#,
            corpus = corpus.display()
        ),
    )
    .unwrap();
    let (local_db, slurm_db) = (
        dir.path().join("local.sqlite"),
        dir.path().join("slurm.sqlite"),
    );
    ok(&[
        "run",
        s(&sweep),
        "--db",
        s(&local_db),
        "--jobs",
        "2",
        "--plain",
    ]);

    // The trunk first, its three branches in a second array that waits for the trunk's task.
    let dry = ok(&[
        "run",
        s(&sweep),
        "--db",
        s(&slurm_db),
        "--executor",
        "slurm",
        "--dry-run",
    ]);
    assert!(dry.contains("#SBATCH --array=0-0"), "{dry}");
    assert!(dry.contains("#SBATCH --array=0-2"), "{dry}");
    assert!(
        dry.contains("#SBATCH --dependency=afterok:<array-") && dry.contains("_0"),
        "{dry}"
    );
    assert!(dry.contains("#SBATCH --kill-on-invalid-dep=yes"), "{dry}");

    let submitted = ok(&[
        "run",
        s(&sweep),
        "--db",
        s(&slurm_db),
        "--executor",
        "slurm",
        "--wait",
    ]);
    assert_eq!(
        submitted.matches("submitted job array").count(),
        2,
        "{submitted}"
    );
    let (local, slurm) = (summary(&local_db), summary(&slurm_db));
    assert_eq!(local.len(), 4);
    assert_same_runs(&local, &slurm);
    let store = Store::open_read_only(&slurm_db).unwrap();
    let lineage = store
        .query("SELECT role, count(*) FROM lineage GROUP BY role ORDER BY role")
        .unwrap();
    assert_eq!(
        lineage.rows,
        vec![
            vec!["branch".to_string(), "3".to_string()],
            vec!["trunk".to_string(), "1".to_string()]
        ]
    );
}
