//! Concurrent writers: several workers, each with its own connection, record metrics into one
//! store as fast as they can (small transactions, the worst case for lock contention) while a
//! reader polls progress. No write may fail (no "database is locked"), no row may be lost.

use std::sync::{Arc, Barrier};
use std::time::Instant;

use loopscale::store::{NewRun, RunStatus, Store};
use loopscale::train::{RunEnd, RunOutcome, StepMetrics};

use crate::common::runs::{self, TestRun};

const WRITERS: usize = 8;
const ROWS_PER_WRITER: u64 = 1500;

/// A run of the default configuration, recorded with 1 parameter, 1 token and 1 FLOP.
fn new_run(seed: u64) -> NewRun {
    TestRun::seed(seed)
        .params(1, 1)
        .tokens(1)
        .flops(1.0)
        .new_run()
}

/// A step at loss 5/step.
fn step(step: u64) -> StepMetrics {
    StepMetrics {
        grad_norm: 1.0,
        ..runs::step(step, 5.0 / step as f64)
    }
}

#[test]
fn concurrent_writers_lose_no_row_and_never_see_a_locked_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("stress.sqlite");
    let runs: Vec<NewRun> = (0..WRITERS as u64).map(new_run).collect();
    Store::open(&db)
        .unwrap()
        .register_sweep("stress", "", "stress.toml", "", &runs)
        .unwrap();

    let barrier = Arc::new(Barrier::new(WRITERS + 1));
    let start = Instant::now();
    let writers: Vec<_> = runs
        .iter()
        .map(|run| {
            let (db, key, barrier) = (db.clone(), run.key.clone(), barrier.clone());
            std::thread::spawn(move || -> Result<u64, String> {
                let mut store = Store::open(&db).map_err(|e| e.to_string())?;
                barrier.wait();
                let attempt = store.start_attempt(&key, None).map_err(|e| e.to_string())?;
                store.discard_after(&key, 0).map_err(|e| e.to_string())?;
                let (mut next, mut transactions) = (1u64, 0u64);
                while next <= ROWS_PER_WRITER {
                    // Transactions of 1 to 4 rows, cycling: mostly tiny, as contended as it gets.
                    let n = (transactions % 4 + 1).min(ROWS_PER_WRITER - next + 1);
                    let batch: Vec<StepMetrics> = (next..next + n).map(step).collect();
                    store.record(&key, &batch, &[]).map_err(|e| e.to_string())?;
                    next += n;
                    transactions += 1;
                }
                let outcome = RunOutcome {
                    end: RunEnd::Done,
                    steps: ROWS_PER_WRITER,
                    tokens: 1,
                    flops: 1.0,
                    final_val_loss: Some(1.0),
                    final_val_bpb: Some(1.0),
                    bytes_per_token: None,
                    peak_rss_bytes: None,
                    text_passes: None,
                    final_train_loss: Some(1.0),
                    wall_seconds: 1.0,
                    tokens_per_second: 1.0,
                    loss_spikes: 0,
                    time: Default::default(),
                };
                store
                    .finish_attempt(&key, attempt, &[], &[], &outcome)
                    .map_err(|e| e.to_string())?;
                Ok(transactions + 3)
            })
        })
        .collect();
    // A reader polling like the coordinator's progress display, all the while.
    let reader = {
        let (db, keys, barrier) = (
            db.clone(),
            runs.iter().map(|r| r.key.clone()).collect::<Vec<_>>(),
            barrier.clone(),
        );
        std::thread::spawn(move || -> Result<u64, String> {
            let store = Store::open(&db).map_err(|e| e.to_string())?;
            barrier.wait();
            let mut polls = 0;
            loop {
                let mut done = 0;
                for k in &keys {
                    store.progress(k).map_err(|e| e.to_string())?;
                    if store.run(k).map_err(|e| e.to_string())?.unwrap().status == RunStatus::Done {
                        done += 1;
                    }
                    polls += 1;
                }
                if done == keys.len() {
                    return Ok(polls);
                }
            }
        })
    };
    let mut transactions = 0;
    for w in writers {
        transactions += w
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("a writer failed: {e}"));
    }
    let polls = reader
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("the reader failed: {e}"));
    let seconds = start.elapsed().as_secs_f64();

    let store = Store::open_read_only(&db).unwrap();
    let total = WRITERS as u64 * ROWS_PER_WRITER;
    for run in &runs {
        let steps: Vec<u64> = store
            .train_losses(&run.key)
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(
            steps,
            (1..=ROWS_PER_WRITER).collect::<Vec<_>>(),
            "run {}: every row, once, in order",
            run.key
        );
        assert_eq!(
            store.run(&run.key).unwrap().unwrap().status,
            RunStatus::Done
        );
    }
    let q = store.query("SELECT count(*) FROM metrics").unwrap();
    assert_eq!(q.rows[0][0], total.to_string());
    eprintln!(
        "{WRITERS} writers: {total} rows in {transactions} transactions in {seconds:.2} s \
         ({:.0} rows/s, {:.0} transactions/s), {polls} progress reads alongside, no error",
        total as f64 / seconds,
        transactions as f64 / seconds
    );
}
