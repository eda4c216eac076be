//! Fault injection through the binary: a small sweep whose workers are SIGKILLed at random
//! moments, several times, and whose coordinator is SIGKILLed once, is run again until it
//! completes. Every run must end `done` exactly once, with exactly one metrics row per step and
//! one eval per evaluation step, and with losses bit-identical to an uninterrupted sweep of the
//! same file (same thread count per worker, and every random draw indexed by step, so a resumed
//! run repeats exactly the arithmetic of an uninterrupted one). Then `gc` frees the checkpoints.
//!
//! The kill moments (steps of the victim's run, read from its worker's own run store as it trains, so
//! they do not depend on the machine's speed) and the victims come from a seeded RNG: a failure
//! names its seed and replays.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common;
use common::moby_dick_file;
use loopscale::store::{RunStatus, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const BIN: &str = env!("CARGO_BIN_EXE_loopscale");
const SEED: u64 = 20_261_129;
const WORKER_KILLS: usize = 6;
/// The coordinator is killed after this many worker kills.
const COORDINATOR_KILL_AFTER: usize = 3;
const STEPS: u64 = 120;
/// `train.checkpoint_every` of the sweep: a kill after it makes the run resume, not restart.
const CHECKPOINT_EVERY: u64 = 7;
/// The damaged-checkpoint run is longer: it must still be training when the test, which sees
/// progress only as often as the coordinator merges it (about once a second), sends Ctrl-C.
/// (600 steps took 1.2 s on an AMD Zen 5 with gemm's AVX-512 kernels: done before Ctrl-C.)
const DAMAGED_STEPS: u64 = 4000;

fn sweep_file(dir: &Path) -> PathBuf {
    sweep_file_with(dir, "faults", "[0, 1, 2, 3]", "[32, 48]", STEPS)
}

fn sweep_file_with(dir: &Path, name: &str, seeds: &str, d_model: &str, steps: u64) -> PathBuf {
    let corpus = moby_dick_file(dir, 60_000);
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"
[sweep]
name = "{name}"
seeds = {seeds}
retries = 50                    # killed workers are retried at once, from their checkpoint

[data]
corpus = "{corpus}"
seq_len = 32
val_fraction = 0.1

[train]
tokens = {tokens}
batch_size = 8
lr = 3e-3
eval_every = 20
eval_tokens = 512
log_every = 1
checkpoint_every = 7

[model]
d_model = {d_model}
n_heads = 2
n_layers = 1
"#,
            corpus = corpus.display(),
            tokens = steps * 8 * 32,
        ),
    )
    .unwrap();
    path
}

fn coordinator(file: &Path, db: &Path) -> Child {
    coordinator_with(file, db, "2")
}

fn coordinator_with(file: &Path, db: &Path, jobs: &str) -> Child {
    Command::new(BIN)
        .args([
            "run",
            file.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
            "--jobs",
            jobs,
            "--plain",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Live `loopscale worker` children of `parent`: pid → run key (from /proc).
fn workers_of(parent: u32) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command name, which is in parentheses: state, ppid, ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() == Some(&"Z")
            || fields.get(1).and_then(|p| p.parse::<u32>().ok()) != Some(parent)
        {
            continue;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a == "worker")
            && let Some(i) = args.iter().position(|a| a == "--run")
        {
            out.push((pid, args[i + 1].clone()));
        }
    }
    out.sort();
    out
}

/// An eval row: (step, test_loops, val loss bits).
type Eval = (i64, Option<i64>, Option<u64>);
/// Per run: (status, final val loss bits, every metrics row (step, train loss bits), evals).
type Outcome = HashMap<String, (RunStatus, Option<u64>, Vec<(u64, Option<u64>)>, Vec<Eval>)>;

/// The newest step a run's worker has recorded in its own run store (written as it trains, so no
/// merge lag); 0 before the run store exists.
fn run_store_step(db: &Path, key: &str) -> u64 {
    let path = loopscale::engine::run_stores::run_store_path(db, key);
    if !path.exists() {
        return 0;
    }
    Store::open_read_only(&path)
        .ok()
        .and_then(|s| s.query("SELECT coalesce(max(step), 0) FROM metrics").ok())
        .and_then(|r| r.rows.first().and_then(|row| row[0].parse().ok()))
        .unwrap_or(0)
}

/// Whether process `pid` is alive (not exited, not a zombie).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .map(|rest| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Waits until run `key` has recorded step `at`.
fn wait_for_step(db: &Path, key: &str, at: u64, deadline: Instant) {
    while run_store_step(db, key) < at && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// SIGKILLs worker `pid` once its run has recorded step `at`; false when it exited first.
fn kill_at_step(db: &Path, key: &str, pid: i32, at: u64, deadline: Instant) -> bool {
    while Instant::now() < deadline {
        if !alive(pid) {
            return false;
        }
        if run_store_step(db, key) >= at {
            // SAFETY: kill(2) on a worker process of our own coordinator.
            return unsafe { libc::kill(pid, libc::SIGKILL) } == 0;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

fn outcome(db: &Path) -> Outcome {
    outcome_of(db, "faults")
}

fn outcome_of(db: &Path, sweep: &str) -> Outcome {
    let store = Store::open_read_only(db).unwrap();
    let evals = store
        .query("SELECT run_key, step, test_loops, val_loss FROM evals ORDER BY run_key, step")
        .unwrap();
    let mut by_run: HashMap<String, Vec<Eval>> = HashMap::new();
    for row in evals.rows {
        by_run.entry(row[0].clone()).or_default().push((
            row[1].parse().unwrap(),
            row[2].parse().ok(),
            row[3].parse::<f64>().ok().map(f64::to_bits),
        ));
    }
    store
        .runs(sweep)
        .unwrap()
        .into_iter()
        .map(|r| {
            let losses = store
                .train_losses(&r.key)
                .unwrap()
                .into_iter()
                .map(|(s, l)| (s, l.map(f64::to_bits)))
                .collect();
            let evals = by_run.remove(&r.key).unwrap_or_default();
            (
                r.key.clone(),
                (r.status, r.final_val_loss.map(f64::to_bits), losses, evals),
            )
        })
        .collect()
}

#[test]
fn a_sweep_survives_killed_workers_and_a_killed_coordinator_with_identical_results() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let file = sweep_file(dir.path());

    // The uninterrupted sweep.
    let reference_db = dir.path().join("reference.sqlite");
    let status = coordinator(&file, &reference_db).wait().unwrap();
    assert!(status.success());
    let reference = outcome(&reference_db);
    let reference_seconds = started.elapsed().as_secs_f64();
    assert_eq!(reference.len(), 8);

    // The same sweep under fire.
    let db = dir.path().join("faults.sqlite");
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut child = coordinator(&file, &db);
    let (mut worker_kills, mut coordinator_kills) = (Vec::new(), 0);
    let deadline = Instant::now() + Duration::from_secs(240);
    while worker_kills.len() < WORKER_KILLS {
        assert!(
            Instant::now() < deadline,
            "seed {SEED}: the sweep did not get through its kills in time"
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "seed {SEED}: the sweep finished ({status}) before all {WORKER_KILLS} kills; make it longer"
            );
        }
        let workers = workers_of(child.id());
        if workers.is_empty() {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let (pid, key) = workers[rng.random_range(0..workers.len())].clone();
        // Driven by progress, not time: the victim dies at a seeded step a little ahead of
        // where its own run store says it is (no merge lag), past its first checkpoint, so the kill
        // lands mid-run on a fast or a loaded machine alike.
        let now = run_store_step(&db, &key);
        if now + 2 >= STEPS {
            std::thread::sleep(Duration::from_millis(5));
            continue; // about to finish: pick again
        }
        let at = (now.max(CHECKPOINT_EVERY) + rng.random_range(1..=12)).min(STEPS - 1);
        if kill_at_step(&db, &key, pid, at, deadline) {
            worker_kills.push(key);
        }
        if worker_kills.len() == COORDINATOR_KILL_AFTER {
            // The coordinator dies a seeded number of steps of some worker later.
            if let Some((_, key)) = workers_of(child.id()).first().cloned() {
                let at = run_store_step(&db, &key) + rng.random_range(1..=6);
                wait_for_step(&db, &key, at, deadline);
            }
            child.kill().unwrap();
            child.wait().unwrap();
            coordinator_kills += 1;
            child = coordinator(&file, &db);
        }
    }
    // Let it finish; run again while anything is left (the coordinator's retries normally do it).
    let mut reruns = 0;
    loop {
        child.wait().unwrap();
        let unfinished = outcome(&db)
            .values()
            .filter(|o| o.0 != RunStatus::Done)
            .count();
        if unfinished == 0 {
            break;
        }
        reruns += 1;
        assert!(
            reruns <= 5,
            "seed {SEED}: {unfinished} runs still unfinished after {reruns} reruns"
        );
        child = coordinator(&file, &db);
    }
    let faulty_seconds = started.elapsed().as_secs_f64() - reference_seconds;

    // Every run done exactly once, with the uninterrupted sweep's numbers, row for row.
    let faulty = outcome(&db);
    let store = Store::open_read_only(&db).unwrap();
    let done_attempts = store
        .query("SELECT run_key, count(*) FROM attempts WHERE status = 'done' GROUP BY run_key")
        .unwrap();
    assert_eq!(done_attempts.rows.len(), 8);
    assert!(
        done_attempts.rows.iter().all(|r| r[1] == "1"),
        "one done attempt per run: {:?}",
        done_attempts.rows
    );
    for (key, (status, val, losses, evals)) in &reference {
        assert_eq!(*status, RunStatus::Done);
        let steps: Vec<u64> = losses.iter().map(|l| l.0).collect();
        assert_eq!(
            steps,
            (1..=STEPS).collect::<Vec<_>>(),
            "reference run {key}: one row per step"
        );
        let got = &faulty[key];
        assert_eq!(got.0, RunStatus::Done, "seed {SEED}: run {key}");
        assert_eq!(
            &got.2, losses,
            "seed {SEED}: run {key}: every step once, with the same training loss bit for bit"
        );
        assert_eq!(
            &got.3, evals,
            "seed {SEED}: run {key}: every evaluation once, bit for bit"
        );
        assert_eq!(
            got.1, *val,
            "seed {SEED}: run {key}: the same final validation loss bit for bit"
        );
    }

    // The kills really interrupted training: runs resumed from checkpoints, several times.
    let logs = loopscale::engine::logs_dir(&db);
    let resumes: usize = std::fs::read_dir(&logs)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .map(|e| {
            std::fs::read_to_string(e.path())
                .unwrap()
                .matches("resuming from the checkpoint")
                .count()
        })
        .sum();
    let attempts: u32 = store
        .runs("faults")
        .unwrap()
        .iter()
        .map(|r| r.attempts)
        .sum();
    assert!(
        resumes >= 3,
        "seed {SEED}: only {resumes} resumes from a checkpoint; kills landed between runs"
    );
    assert!(
        attempts >= 8 + 3,
        "seed {SEED}: {attempts} attempts for 8 runs"
    );

    // gc frees the finished runs' checkpoints (a dry run only lists them).
    let count = || -> usize {
        reference
            .keys()
            .map(|k| loopscale::train::checkpoint::files(&loopscale::engine::run_dir(&db, k)).len())
            .sum()
    };
    let before = count();
    assert!(before >= 8, "every run left checkpoints: {before}");
    let dry = Command::new(BIN)
        .args([
            "gc",
            file.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
            "--dry-run",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&dry.stdout)
            .contains("would remove the checkpoints of 8 finished run(s)")
    );
    assert_eq!(count(), before, "a dry run deletes nothing");
    let out = Command::new(BIN)
        .args(["gc", file.to_str().unwrap(), "--db", db.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("removed the checkpoints of"),
        "{text}"
    );
    for key in reference.keys() {
        let left = loopscale::train::checkpoint::files(&loopscale::engine::run_dir(&db, key));
        assert!(left.is_empty(), "run {key}: {left:?}");
    }
    eprintln!(
        "seed {SEED}: {} worker kills ({} distinct runs) + {coordinator_kills} coordinator kill, {reruns} extra \
         `run`s, {attempts} attempts, {resumes} resumes from a checkpoint; reference sweep {reference_seconds:.1} s, \
         sweep under fire {faulty_seconds:.1} s; all 8 runs bit-identical ({} metric rows, {} evals)",
        worker_kills.len(),
        worker_kills
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len(),
        reference.values().map(|r| r.2.len()).sum::<usize>(),
        reference.values().map(|r| r.3.len()).sum::<usize>(),
    );
}

#[test]
fn a_damaged_checkpoint_is_reported_and_the_run_resumes_from_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = sweep_file_with(dir.path(), "damaged", "[5]", "32", DAMAGED_STEPS);
    let reference_db = dir.path().join("reference.sqlite");
    assert!(
        coordinator_with(&file, &reference_db, "1")
            .wait()
            .unwrap()
            .success()
    );
    let reference = outcome_of(&reference_db, "damaged");

    // Ctrl-C part-way: the run stops with a checkpoint at its stop step and one before it.
    let db = dir.path().join("damaged.sqlite");
    let child = coordinator_with(&file, &db, "1");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "no progress recorded");
        std::thread::sleep(Duration::from_millis(50));
        let step = Store::open_read_only(&db)
            .and_then(|s| {
                Ok(s.runs("damaged")?
                    .first()
                    .and_then(|r| s.progress(&r.key).ok().flatten())
                    .map_or(0, |p| p.step))
            })
            .unwrap_or(0);
        if step >= 30 {
            break;
        }
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(child.wait_with_output().unwrap().status.code(), Some(130));
    let key = reference.keys().next().unwrap().clone();
    let run_dir = loopscale::engine::run_dir(&db, &key);
    let found = loopscale::train::checkpoint::list(&run_dir);
    assert!(
        found.len() == 2 && found[0].step < DAMAGED_STEPS,
        "{found:?}"
    );

    // A flipped bit in the newest checkpoint.
    let mut bytes = std::fs::read(&found[0].tensors).unwrap();
    let at = bytes.len() * 2 / 3;
    bytes[at] ^= 0x10;
    std::fs::write(&found[0].tensors, &bytes).unwrap();

    let out = Command::new(BIN)
        .args([
            "run",
            file.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
            "--jobs",
            "1",
            "--plain",
        ])
        .output()
        .unwrap();
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("warning: checkpoint") && shown.contains("SHA-256 mismatch"),
        "the sweep reports it:\n{shown}"
    );
    let log = std::fs::read_to_string(loopscale::engine::logs_dir(&db).join(format!("{key}.log")))
        .unwrap();
    assert!(
        log.contains(&format!(
            "resuming from the checkpoint at step {}/",
            found[1].step
        )),
        "{log}"
    );
    assert_eq!(
        outcome_of(&db, "damaged"),
        reference,
        "the same rows and losses, bit for bit, as the uninterrupted run"
    );
}

/// Runs built on runs under fire: a WSD family (two seeds: two trunks, six branches) whose
/// workers — trunks and branches alike — are killed at random moments, and whose coordinator is
/// killed once, ends with every run `done` once and every number bit-identical to an
/// uninterrupted sweep. A branch killed before its first checkpoint starts again from its
/// trunk's; one killed later resumes from its own.
#[test]
fn killing_trunks_and_branches_at_random_moments_changes_no_number() {
    const BRANCH_STEPS: [u64; 3] = [60, 120, 180];
    const KILLS: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let corpus = moby_dick_file(dir.path(), 60_000);
    let file = dir.path().join("branches.toml");
    let tokens: Vec<String> = BRANCH_STEPS
        .iter()
        .map(|s| (s * 8 * 32).to_string())
        .collect();
    std::fs::write(
        &file,
        format!(
            r#"
[sweep]
name = "branches"
seeds = [0, 1]
retries = 50

[data]
corpus = "{corpus}"
seq_len = 32
val_fraction = 0.1

[train]
tokens = [{tokens}]
batch_size = 8
lr = 3e-3
schedule = "wsd"
warmup_fraction = 0.1
cooldown_fraction = 0.25
branch = true
eval_every = 20
eval_tokens = 512
log_every = 1
checkpoint_every = 7

[model]
d_model = 32
n_heads = 2
n_layers = 1
"#,
            corpus = corpus.display(),
            tokens = tokens.join(", "),
        ),
    )
    .unwrap();
    let reference_db = dir.path().join("reference.sqlite");
    assert!(coordinator(&file, &reference_db).wait().unwrap().success());
    let reference = outcome_of(&reference_db, "branches");
    assert_eq!(reference.len(), 8, "two trunks and six branches");

    let db = dir.path().join("faults.sqlite");
    let mut rng = StdRng::seed_from_u64(SEED + 1);
    let mut child = coordinator(&file, &db);
    let mut kills: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(240);
    while kills.len() < KILLS {
        assert!(
            Instant::now() < deadline,
            "seed {}: the sweep did not get through its kills in time",
            SEED + 1
        );
        if child.try_wait().unwrap().is_some() {
            panic!(
                "seed {}: the sweep finished before all {KILLS} kills; make it longer",
                SEED + 1
            );
        }
        let workers = workers_of(child.id());
        if workers.is_empty() {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let (pid, key) = workers[rng.random_range(0..workers.len())].clone();
        // A seeded number of steps past where the victim's run store says it is (and past its first
        // checkpoint); a run that ends first is not counted, and another is picked.
        let at = run_store_step(&db, &key).max(CHECKPOINT_EVERY) + rng.random_range(1..=8);
        if !kill_at_step(&db, &key, pid, at, deadline) {
            continue;
        }
        kills.push(key);
        if kills.len() == 2 {
            child.kill().unwrap();
            child.wait().unwrap();
            child = coordinator(&file, &db);
        }
    }
    let mut reruns = 0;
    loop {
        child.wait().unwrap();
        let unfinished = outcome_of(&db, "branches")
            .values()
            .filter(|o| o.0 != RunStatus::Done)
            .count();
        if unfinished == 0 {
            break;
        }
        reruns += 1;
        assert!(
            reruns <= 5,
            "{unfinished} runs unfinished after {reruns} reruns"
        );
        child = coordinator(&file, &db);
    }
    let faulty = outcome_of(&db, "branches");
    let store = Store::open_read_only(&db).unwrap();
    let done_attempts = store
        .query("SELECT run_key, count(*) FROM attempts WHERE status = 'done' GROUP BY run_key")
        .unwrap();
    assert_eq!(done_attempts.rows.len(), 8);
    assert!(
        done_attempts.rows.iter().all(|r| r[1] == "1"),
        "{:?}",
        done_attempts.rows
    );
    let trunks = store
        .query("SELECT run_key FROM lineage WHERE role = 'trunk'")
        .unwrap()
        .rows
        .len();
    assert_eq!(trunks, 2);
    // Replicate groups after the faults: each branch configuration once, with both seeds (a
    // branch's parent is its own seed's trunk, which does not split the group), none twice.
    let groups = store
        .query("SELECT n, seeds FROM run_groups WHERE sweep = 'branches' ORDER BY tokens")
        .unwrap()
        .rows;
    assert_eq!(groups.len(), 3, "{groups:?}");
    for g in &groups {
        let mut seeds: Vec<&str> = g[1].split(',').collect();
        seeds.sort_unstable();
        assert_eq!((g[0].as_str(), seeds), ("2", vec!["0", "1"]), "{groups:?}");
    }
    for (key, (status, val, losses, evals)) in &reference {
        assert_eq!(*status, RunStatus::Done);
        let got = &faulty[key];
        assert_eq!(got.0, RunStatus::Done, "run {key}");
        assert_eq!(&got.2, losses, "run {key}: every step once, bit for bit");
        assert_eq!(
            &got.3, evals,
            "run {key}: every evaluation once, bit for bit"
        );
        assert_eq!(got.1, *val, "run {key}: the same final validation loss");
    }
    eprintln!(
        "seed {}: {KILLS} kills ({:?}) + 1 coordinator kill, {reruns} extra runs; 8 runs bit-identical",
        SEED + 1,
        kills
    );
}
