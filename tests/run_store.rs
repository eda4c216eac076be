//! Run stores: a worker's own store, merged into the sweep database. Merging makes the
//! database's rows equal the run store's, and merging again changes nothing.

use loopscale::store::{RunStatus, Store};
use loopscale::train::{RunEnd, RunOutcome};

use crate::common::runs::{eval, new_run, step};

/// Everything a store holds about one run, as text, for comparing two stores.
fn dump(store: &Store, key: &str) -> String {
    let mut out = String::new();
    for sql in [
        "SELECT status, attempts, steps_done, final_train_loss, final_val_loss, final_val_bpb, wall_seconds, error FROM runs",
        "SELECT attempt, status, error, log_path FROM attempts ORDER BY attempt",
        "SELECT * FROM metrics ORDER BY step",
        "SELECT * FROM evals ORDER BY step, test_loops",
    ] {
        let sql = sql.replace(" FROM runs", &format!(" FROM runs WHERE run_key = '{key}'"));
        out += &store.query(&sql).unwrap().to_csv();
    }
    out
}

#[test]
fn merging_a_run_store_makes_the_database_equal_it_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.sqlite");
    let run_store_path = dir.path().join("s.runs/k/results.sqlite");
    let (a, b) = (new_run(0), new_run(1));
    let mut main = Store::open(&db).unwrap();
    main.register_sweep("s", "", "s.toml", "", &[a.clone(), b.clone()])
        .unwrap();

    assert!(main.seed_run_store(&a.key, &run_store_path).unwrap());
    assert!(
        !main.seed_run_store(&a.key, &run_store_path).unwrap(),
        "an existing run store is never reseeded"
    );
    // A run store uses the rollback journal: WAL needs shared memory, which network filesystems lack.
    let mode: String = rusqlite::Connection::open(&run_store_path)
        .unwrap()
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete");

    // The worker's first attempt dies after two steps.
    let mut run_store = Store::open(&run_store_path).unwrap();
    let attempt = run_store.start_attempt(&a.key, Some("a.log")).unwrap();
    run_store
        .record(&a.key, &[step(1, 3.0), step(2, 2.9)], &[eval(2, 3.1)])
        .unwrap();
    assert!(main.merge_run_store(&a.key, &run_store_path).unwrap() > 0);
    assert_eq!(
        main.run(&a.key).unwrap().unwrap().status,
        RunStatus::Running
    );
    assert_eq!(dump(&main, &a.key), dump(&run_store, &a.key));
    assert_eq!(
        main.merge_run_store(&a.key, &run_store_path).unwrap(),
        0,
        "a second merge changes nothing"
    );
    run_store
        .fail_attempt(&a.key, Some(attempt), "killed")
        .unwrap();

    // The second attempt finishes the run.
    let attempt = run_store.start_attempt(&a.key, Some("a.log")).unwrap();
    assert_eq!(attempt, 2);
    let outcome = RunOutcome {
        end: RunEnd::Done,
        steps: 3,
        tokens: 300,
        flops: 3e6,
        final_val_loss: Some(2.5),
        final_val_bpb: Some(2.5 / std::f64::consts::LN_2),
        bytes_per_token: None,
        peak_rss_bytes: None,
        text_passes: None,
        final_train_loss: Some(2.6),
        wall_seconds: 1.5,
        tokens_per_second: 200.0,
        loss_spikes: 0,
        time: Default::default(),
    };
    let steps = [step(1, 3.0), step(2, 2.8), step(3, 2.6)];
    run_store
        .finish_attempt(&a.key, attempt, &steps, &[eval(3, 2.5)], &outcome)
        .unwrap();
    let changed = main.merge_run_store(&a.key, &run_store_path).unwrap();
    assert!(changed > 0);
    assert_eq!(dump(&main, &a.key), dump(&run_store, &a.key));
    let row = main.run(&a.key).unwrap().unwrap();
    assert_eq!(
        (row.status, row.attempts, row.final_val_loss),
        (RunStatus::Done, 2, Some(2.5))
    );
    assert_eq!(
        main.train_losses(&a.key).unwrap().len(),
        3,
        "one metrics row per step, none twice"
    );
    assert_eq!(main.merge_run_store(&a.key, &run_store_path).unwrap(), 0);

    // The other run is untouched, and a run without a run store merges as nothing.
    assert_eq!(
        main.run(&b.key).unwrap().unwrap().status,
        RunStatus::Pending
    );
    assert_eq!(
        main.merge_run_store(&b.key, &dir.path().join("none.sqlite"))
            .unwrap(),
        0
    );
}

#[test]
fn a_file_that_is_not_a_store_is_never_merged() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.sqlite");
    let bogus = dir.path().join("bogus.sqlite");
    std::fs::write(&bogus, "not a database").unwrap();
    let a = new_run(0);
    let mut main = Store::open(&db).unwrap();
    main.register_sweep("s", "", "s.toml", "", std::slice::from_ref(&a))
        .unwrap();
    let err = main
        .merge_run_store(&a.key, &bogus)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bogus.sqlite") && err.contains("not a SQLite database"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&bogus).unwrap(), "not a database");
}

/// Not a test on its own (hence ignored): run in a child process by the test below, it dies
/// (abort) in the middle of a write transaction on the run store named by `RUN_STORE_TO_CRASH`, the
/// way a SIGKILLed worker does, leaving a hot rollback journal. Run any other way, it fails.
#[test]
#[ignore = "a helper process of a_run_store_left_mid_transaction_by_a_killed_worker_is_rolled_back_and_merged"]
fn crash_mid_transaction_helper() {
    let path = std::env::var("RUN_STORE_TO_CRASH")
        .expect("a helper: run by a_run_store_left_mid_transaction_by_a_killed_worker_is_rolled_back_and_merged, which sets RUN_STORE_TO_CRASH");
    let conn = rusqlite::Connection::open(&path).unwrap();
    // A one-page cache makes SQLite spill into the database file (journal first) before commit.
    conn.execute_batch("PRAGMA cache_size = 1; BEGIN;").unwrap();
    for i in 0..2000 {
        conn.execute(
            "INSERT INTO metrics (run_key, step, tokens, flops, train_loss, lr, grad_norm, elapsed_seconds) \
             SELECT run_key, 100000 + ?1, 0, 0, 1.0, 0.001, 0.5, 0 FROM runs",
            [i],
        )
        .unwrap();
    }
    std::process::abort();
}

#[test]
fn a_run_store_left_mid_transaction_by_a_killed_worker_is_rolled_back_and_merged() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.sqlite");
    let run_store_path = dir.path().join("s.runs/k/results.sqlite");
    let a = new_run(0);
    let mut main = Store::open(&db).unwrap();
    main.register_sweep("s", "", "s.toml", "", std::slice::from_ref(&a))
        .unwrap();
    main.seed_run_store(&a.key, &run_store_path).unwrap();
    let mut run_store = Store::open(&run_store_path).unwrap();
    run_store.start_attempt(&a.key, None).unwrap();
    run_store
        .record(&a.key, &[step(1, 3.0), step(2, 2.9)], &[])
        .unwrap();
    drop(run_store);

    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "run_store::crash_mid_transaction_helper",
            "--ignored",
            "--nocapture",
        ])
        .env("RUN_STORE_TO_CRASH", &run_store_path)
        .status()
        .unwrap();
    assert!(!status.success(), "the helper must die mid-transaction");
    let journal = run_store_path.with_file_name("results.sqlite-journal");
    assert!(journal.exists(), "no hot journal was left to recover");

    // The merge rolls the torn transaction back: only the two committed steps arrive.
    assert!(main.merge_run_store(&a.key, &run_store_path).unwrap() > 0);
    assert_eq!(main.train_losses(&a.key).unwrap().len(), 2);
    assert_eq!(main.merge_run_store(&a.key, &run_store_path).unwrap(), 0);
}
