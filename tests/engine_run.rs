//! End to end through the binary: a tiny sweep trains real GPTs into SQLite; an interrupted
//! sweep resumes without training any run twice; `plan`, `status` and `sql` work on it; a
//! database that is not ours is refused and left untouched.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common;
use common::{loopscale, moby_dick_file, text};
use loopscale::store::{RunStatus, Store};

const BIN: &str = env!("CARGO_BIN_EXE_loopscale");

/// A few kilobytes of the shipped corpus, so the runs are tiny but the text is real.
fn sweep_file(dir: &Path, name: &str, seeds: &str, tokens: u64) -> PathBuf {
    let corpus = moby_dick_file(dir, 60_000);
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"
[sweep]
name = "{name}"
seeds = {seeds}
db = "{db}"

[data]
corpus = "{corpus}"
seq_len = 32
val_fraction = 0.1

[train]
tokens = {tokens}
batch_size = 8
lr = 3e-3
eval_every = 20
eval_tokens = 1024
log_every = 5

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

#[test]
fn a_sweep_trains_real_models_into_sqlite_and_can_be_queried() {
    let dir = tempfile::tempdir().unwrap();
    let file = sweep_file(dir.path(), "tiny", "[0, 1]", 16_000);
    let f = file.to_str().unwrap();

    let plan = loopscale(&["plan", f]);
    assert!(plan.status.success(), "{}", text(&plan));
    assert!(text(&plan).contains("2 runs"), "{}", text(&plan));

    let run = loopscale(&["run", f, "--plain"]);
    assert!(run.status.success(), "{}", text(&run));

    let store = Store::open_read_only(&dir.path().join("tiny.sqlite")).unwrap();
    let runs = store.runs("tiny").unwrap();
    assert_eq!(runs.len(), 2);
    for r in &runs {
        assert_eq!(r.status, RunStatus::Done, "{r:?}");
        let losses: Vec<f64> = store
            .train_losses(&r.key)
            .unwrap()
            .into_iter()
            .map(|(_, l)| l.unwrap())
            .collect();
        assert!(losses.len() >= 5);
        let first = losses[..2].iter().sum::<f64>() / 2.0;
        let last = losses[losses.len() - 2..].iter().sum::<f64>() / 2.0;
        assert!(
            last < first - 1.0,
            "training loss must fall: {first:.3} → {last:.3}"
        );
        let val = r.final_val_loss.unwrap();
        assert!(
            val < 3.5 && val > 0.5,
            "final val loss {val} (ln 256 = 5.55)"
        );
    }

    // Running again trains nothing.
    let again = loopscale(&["run", f, "--plain"]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(text(&again).contains("0 trained now"), "{}", text(&again));
    let store = Store::open_read_only(&dir.path().join("tiny.sqlite")).unwrap();
    assert!(store.runs("tiny").unwrap().iter().all(|r| r.attempts == 1));

    let status = loopscale(&["status", f]);
    assert!(status.status.success(), "{}", text(&status));
    assert!(
        text(&status).contains("2 runs: 2 done"),
        "{}",
        text(&status)
    );

    let db = dir.path().join("tiny.sqlite");
    let sql = loopscale(&[
        "sql",
        db.to_str().unwrap(),
        "SELECT count(*) AS n FROM runs WHERE status = 'done'",
        "--csv",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&sql.stdout),
        "n\n2\n",
        "{}",
        text(&sql)
    );
}

#[test]
fn an_interrupted_sweep_resumes_and_trains_no_run_twice() {
    let dir = tempfile::tempdir().unwrap();
    let file = sweep_file(dir.path(), "resume", "[0, 1, 2]", 24_000);
    let db = dir.path().join("resume.sqlite");
    let mut coordinator = Command::new(BIN)
        .args(["run", file.to_str().unwrap(), "--plain"])
        .env("RAYON_NUM_THREADS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // Kill the coordinator (SIGKILL: no chance to clean up) once the first run is done.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        assert!(Instant::now() < deadline, "first run never finished");
        std::thread::sleep(Duration::from_millis(100));
        let done = Store::open_read_only(&db)
            .and_then(|s| s.runs("resume"))
            .map(|runs| runs.iter().filter(|r| r.status == RunStatus::Done).count())
            .unwrap_or(0);
        if done >= 1 {
            break;
        }
    }
    coordinator.kill().unwrap();
    coordinator.wait().unwrap();
    let before: Vec<_> = Store::open_read_only(&db).unwrap().runs("resume").unwrap();
    let done_before: Vec<String> = before
        .iter()
        .filter(|r| r.status == RunStatus::Done)
        .map(|r| r.key.clone())
        .collect();
    assert!(
        done_before.len() < 3,
        "the kill came too late to test resuming"
    );

    // The orphaned worker notices its coordinator is gone and stops; a new coordinator waits for
    // nothing and finishes the rest.
    let out = loopscale(&["run", file.to_str().unwrap(), "--plain"]);
    assert!(out.status.success(), "{}", text(&out));

    let store = Store::open_read_only(&db).unwrap();
    let after = store.runs("resume").unwrap();
    assert_eq!(after.len(), 3);
    for r in &after {
        assert_eq!(r.status, RunStatus::Done, "{r:?}");
        if done_before.contains(&r.key) {
            assert_eq!(r.attempts, 1, "a finished run was trained again: {r:?}");
        }
        let steps: Vec<u64> = store
            .train_losses(&r.key)
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        let mut unique = steps.clone();
        unique.dedup();
        assert_eq!(steps, unique, "duplicate metric rows");
        assert_eq!(
            *steps.last().unwrap(),
            r.steps_done.unwrap(),
            "metrics reach the final step"
        );
    }
}

#[test]
fn a_database_that_is_not_ours_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let file = sweep_file(dir.path(), "foreign", "[0]", 1_000);
    let other = dir.path().join("thesis.sqlite");
    std::fs::write(&other, b"not a database at all").unwrap();
    let out = loopscale(&[
        "run",
        file.to_str().unwrap(),
        "--db",
        other.to_str().unwrap(),
        "--plain",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("not a SQLite database"),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read(&other).unwrap(), b"not a database at all");
}

#[test]
fn ctrl_c_stops_workers_cleanly_and_records_the_run_as_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let file = sweep_file(dir.path(), "ctrlc", "[0, 1]", 400_000);
    let db = dir.path().join("ctrlc.sqlite");
    let coordinator = Command::new(BIN)
        .args(["run", file.to_str().unwrap(), "--plain"])
        .env("RAYON_NUM_THREADS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the first run has logged a few steps, then press Ctrl-C (SIGINT to the
    // coordinator alone: it must forward it to its workers itself).
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        assert!(Instant::now() < deadline, "no progress recorded");
        std::thread::sleep(Duration::from_millis(100));
        let logged = Store::open_read_only(&db)
            .and_then(|s| {
                let runs = s.runs("ctrlc")?;
                Ok(runs
                    .iter()
                    .map(|r| s.progress(&r.key).ok().flatten().map_or(0, |p| p.step))
                    .max()
                    .unwrap_or(0))
            })
            .unwrap_or(0);
        if logged >= 10 {
            break;
        }
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(coordinator.id() as i32, libc::SIGINT) };
    let out = coordinator.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("run the same command again"));

    let store = Store::open_read_only(&db).unwrap();
    let runs = store.runs("ctrlc").unwrap();
    let interrupted: Vec<_> = runs
        .iter()
        .filter(|r| r.status == RunStatus::Interrupted)
        .collect();
    assert_eq!(
        interrupted.len(),
        1,
        "the active run is recorded as interrupted: {runs:?}"
    );
    let steps_done = interrupted[0].steps_done.unwrap();
    assert!(steps_done >= 10, "its steps so far are kept");
    // It wrote a checkpoint at the step it stopped at, which the next `run` resumes from.
    let dir = loopscale::engine::run_dir(&db, &interrupted[0].key);
    let newest = loopscale::train::checkpoint::list(&dir);
    assert_eq!(
        newest.first().map(|c| c.step),
        Some(steps_done),
        "checkpoints in {}",
        dir.display()
    );

    // `status` shows the stop step, the checkpoint, and the sweep's progress and ETA.
    let status = loopscale(&["status", file.to_str().unwrap()]);
    let shown = text(&status);
    assert!(status.status.success(), "{shown}");
    assert!(
        shown.contains("ckpt") && shown.contains(&format!("{steps_done}/")),
        "{shown}"
    );
    assert!(
        shown.contains("progress: ") && shown.contains("ETA "),
        "{shown}"
    );

    // `gc` never touches an unfinished run's checkpoints: they are how it resumes.
    let gc = loopscale(&["gc", file.to_str().unwrap()]);
    assert!(
        gc.status.success() && text(&gc).contains("kept the checkpoints of 1 unfinished run(s)"),
        "{}",
        text(&gc)
    );
    assert_eq!(loopscale::train::checkpoint::list(&dir).len(), newest.len());
}

#[test]
fn a_second_ctrl_c_stops_at_once_and_the_run_is_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let file = sweep_file(dir.path(), "twice", "[0]", 4_000_000);
    let db = dir.path().join("twice.sqlite");
    let coordinator = Command::new(BIN)
        .args(["run", file.to_str().unwrap(), "--plain"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        assert!(Instant::now() < deadline, "no progress recorded");
        std::thread::sleep(Duration::from_millis(100));
        let logged = Store::open_read_only(&db)
            .and_then(|s| {
                Ok(s.runs("twice")?
                    .first()
                    .and_then(|r| s.progress(&r.key).ok().flatten())
                    .map_or(0, |p| p.step))
            })
            .unwrap_or(0);
        if logged >= 5 {
            break;
        }
    }
    let pressed = Instant::now();
    // SAFETY: kill(2) on our own child, twice.
    unsafe { libc::kill(coordinator.id() as i32, libc::SIGINT) };
    std::thread::sleep(Duration::from_millis(20));
    unsafe { libc::kill(coordinator.id() as i32, libc::SIGINT) };
    let out = coordinator.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    assert!(
        pressed.elapsed() < Duration::from_secs(5),
        "stopped after {:?}",
        pressed.elapsed()
    );
    let runs = Store::open_read_only(&db).unwrap().runs("twice").unwrap();
    assert_eq!(runs[0].status, RunStatus::Interrupted, "{:?}", runs[0]);
    assert!(
        runs.iter()
            .all(|r| r.status != RunStatus::Done && r.status != RunStatus::Running)
    );
}

#[test]
fn plan_shows_memory_and_run_refuses_a_run_that_cannot_fit_before_recording_anything() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = moby_dick_file(dir.path(), 60_000);
    let db = dir.path().join("huge.sqlite");
    // About 6·10¹² parameters: ~100 TB of weights and optimizer state.
    let path = dir.path().join("huge.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[sweep]
name = "huge"
db = "{db}"

[data]
corpus = "{corpus}"
seq_len = 32

[train]
tokens = 1024
batch_size = 8

[model]
d_model = 16384
n_heads = 128
n_layers = 2000
"#,
            db = db.display(),
            corpus = corpus.display(),
        ),
    )
    .unwrap();
    let file = path.to_str().unwrap();

    let plan = loopscale(&["plan", file]);
    let out = String::from_utf8_lossy(&plan.stdout);
    assert!(plan.status.success(), "{out}");
    assert!(out.contains("memory"), "{out}");
    assert!(out.contains("the largest run needs about"), "{out}");
    assert!(out.contains("e5 GiB") || out.contains("e4 GiB"), "{out}");

    let run = loopscale(&["run", file]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{err}");
    let key = Store::open_read_only(&db).err();
    assert!(
        key.is_some(),
        "nothing was recorded: the database does not exist"
    );
    assert!(
        err.contains("needs about") && err.contains("this machine has"),
        "{err}"
    );
    assert!(err.contains("loopscale plan"), "{err}");
}

/// `LOOPSCALE_DEVICE` picks the training device; a value loopscale cannot honour is refused
/// before anything is recorded, saying what was expected.
#[test]
fn a_bad_training_device_is_refused_before_anything_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let file = sweep_file(dir.path(), "device", "[0]", 2048);
    let db = dir.path().join("device.sqlite");
    let with_device = |device: &str| {
        Command::new(BIN)
            .args(["run", file.to_str().unwrap(), "--plain"])
            .env("LOOPSCALE_DEVICE", device)
            .output()
            .expect("run loopscale")
    };
    let out = with_device("tpu");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(r#"LOOPSCALE_DEVICE="tpu": expected "cpu" or "cuda""#),
        "{}",
        text(&out)
    );
    assert!(!db.exists(), "nothing was recorded");
    if !cfg!(feature = "cuda") {
        let out = with_device("cuda");
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains("--features cuda"), "{}", text(&out));
        assert!(!db.exists(), "nothing was recorded");
    }
    // `cpu` is always honoured.
    let out = with_device("cpu");
    assert!(out.status.success(), "{}", text(&out));
    assert!(db.exists());
}
