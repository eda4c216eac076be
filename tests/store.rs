//! The store: refusing files that are not ours, schema versions, transactional run records,
//! read-only queries, and the sweep lock.

use loopscale::engine::SweepLock;
use loopscale::store::{
    APPLICATION_ID, FitParamKind, FitParamRecord, FitRecord, NewRun, RunStatus, SCHEMA_VERSION,
    Store, StoreError, Table,
};
use loopscale::train::{EvalMetrics, IclError, RunEnd, RunOutcome, StepMetrics, TimeSplit};

use crate::common::runs::{config, new_run, step};

fn outcome() -> RunOutcome {
    RunOutcome {
        end: RunEnd::Done,
        steps: 3,
        tokens: 300,
        flops: 3e6,
        final_val_loss: Some(2.0),
        final_val_bpb: Some(2.0 / std::f64::consts::LN_2),
        bytes_per_token: None,
        peak_rss_bytes: None,
        text_passes: None,
        final_train_loss: Some(2.1),
        wall_seconds: 1.5,
        tokens_per_second: 200.0,
        loss_spikes: 0,
        time: Default::default(),
    }
}

#[test]
fn creates_a_new_store_with_our_identity() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/dir/s.sqlite");
    Store::open(&path).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let app: i32 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .unwrap();
    let ver: i32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(app, APPLICATION_ID);
    assert_eq!(ver, SCHEMA_VERSION);
    // Reopening is a no-op, not a second migration.
    Store::open(&path).unwrap();
}

#[test]
fn refuses_a_file_that_is_not_sqlite_and_leaves_it_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.sqlite");
    std::fs::write(&path, "my precious notes, not a database\n").unwrap();
    let err = Store::open(&path).err().expect("must refuse");
    assert!(matches!(err, StoreError::NotSqlite { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("notes.sqlite") && msg.contains("not a SQLite database"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "my precious notes, not a database\n"
    );
}

#[test]
fn refuses_a_foreign_sqlite_database_and_leaves_it_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.sqlite");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE customers (id INTEGER); INSERT INTO customers VALUES (7);",
        )
        .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = Store::open(&path).err().expect("must refuse");
    assert!(matches!(err, StoreError::Foreign { .. }), "{err}");
    assert!(err.to_string().contains("did not create"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert!(matches!(
        Store::open_read_only(&path).err(),
        Some(StoreError::Foreign { .. })
    ));
}

#[test]
fn refuses_a_store_from_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.sqlite");
    Store::open(&path).unwrap();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
    }
    let err = Store::open(&path).err().expect("must refuse");
    assert!(
        matches!(err, StoreError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1),
        "{err}"
    );
    assert!(err.to_string().contains("Upgrade loopscale"), "{err}");
}

#[test]
fn read_only_open_of_a_missing_file_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let err = Store::open_read_only(&dir.path().join("none.sqlite"))
        .err()
        .unwrap();
    assert!(err.to_string().contains("loopscale run"), "{err}");
    assert!(
        !dir.path().join("none.sqlite").exists(),
        "a read must not create the file"
    );
}

#[test]
fn read_only_open_of_an_older_schema_says_how_to_upgrade_and_leaves_it_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.sqlite");
    {
        // A store of ours from before schema versions: our application_id, user_version 0.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .unwrap();
        conn.execute_batch("CREATE TABLE runs (run_key TEXT PRIMARY KEY);")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = Store::open_read_only(&path).err().unwrap();
    assert!(
        matches!(err, StoreError::OlderSchema { found: 0, .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("older loopscale") && text.contains("loopscale collect"),
        "{text}"
    );
    assert!(!text.contains("no such database"), "{text}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "a read must not migrate"
    );
}

#[test]
fn registering_twice_adds_only_new_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
    assert_eq!(
        store
            .register_sweep("s", "", "s.toml", "", &[new_run(0), new_run(1)])
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .register_sweep("s", "", "s.toml", "", &[new_run(0), new_run(1), new_run(2)])
            .unwrap(),
        1
    );
    let runs = store.runs("s").unwrap();
    assert_eq!(runs.len(), 3);
    assert!(runs.iter().all(|r| r.status == RunStatus::Pending));
    assert_eq!(
        runs[0].config,
        config(0),
        "config round-trips through config_json"
    );
}

#[test]
fn a_finished_attempt_has_its_metrics_and_a_resume_discards_rows_after_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
    let run = new_run(0);
    store
        .register_sweep("s", "", "s.toml", "", std::slice::from_ref(&run))
        .unwrap();

    // First attempt dies after recording three steps and an eval (its checkpoint was at step 1).
    assert_eq!(store.start_attempt(&run.key, None).unwrap(), 1);
    store.discard_after(&run.key, 0).unwrap();
    let early = EvalMetrics {
        step: 2,
        tokens: 200,
        flops: 2e6,
        val_loss: 9.0,
        val_bpb: 9.0,
        test_loops: None,
        schedule: None,
        accuracy: None,
        position_accuracy: None,
    };
    store
        .record(
            &run.key,
            &[step(1, 5.0), step(2, 4.5), step(3, 4.4)],
            &[early],
        )
        .unwrap();
    store.release_stale_runs("s").unwrap();
    assert_eq!(
        store.run(&run.key).unwrap().unwrap().status,
        RunStatus::Interrupted
    );

    // Second attempt resumes from the checkpoint at step 1, re-measures step 2 on, finishes.
    assert_eq!(store.start_attempt(&run.key, None).unwrap(), 2);
    store.discard_after(&run.key, 1).unwrap();
    assert_eq!(
        store.train_losses(&run.key).unwrap(),
        vec![(1, Some(5.0))],
        "rows after the checkpoint are gone"
    );
    let q = store.query("SELECT count(*) FROM evals").unwrap();
    assert_eq!(q.rows[0][0], "0", "so is the eval after it");
    let eval = EvalMetrics {
        step: 3,
        tokens: 300,
        flops: 3e6,
        val_loss: 2.0,
        val_bpb: 2.885,
        test_loops: None,
        schedule: None,
        accuracy: None,
        position_accuracy: None,
    };
    store
        .finish_attempt(
            &run.key,
            2,
            &[step(2, 4.0), step(3, f64::NAN)],
            &[eval],
            &outcome(),
        )
        .unwrap();

    let row = store.run(&run.key).unwrap().unwrap();
    assert_eq!(row.status, RunStatus::Done);
    assert_eq!(row.attempts, 2);
    assert_eq!(row.final_val_loss, Some(2.0));
    let losses = store.train_losses(&run.key).unwrap();
    assert_eq!(
        losses,
        vec![(1, Some(5.0)), (2, Some(4.0)), (3, None)],
        "one row per step, the resumed attempt's"
    );
    let q = store
        .query("SELECT count(*) AS n, sum(train_loss IS NULL) AS nulls FROM metrics")
        .unwrap();
    assert_eq!(
        q.rows,
        vec![vec!["3".to_string(), "1".to_string()]],
        "NaN is stored as NULL"
    );
    let q = store
        .query("SELECT attempt, status FROM attempts ORDER BY attempt")
        .unwrap();
    assert_eq!(
        q.rows,
        vec![
            vec!["1".to_string(), "interrupted".into()],
            vec!["2".to_string(), "done".into()]
        ]
    );
}

#[test]
fn each_attempts_time_split_is_stored_and_summed_over_the_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
    let runs = [new_run(0), new_run(1), new_run(2)];
    store.register_sweep("s", "", "s.toml", "", &runs).unwrap();
    assert_eq!(store.sweep_time_split(Some("s")).unwrap(), None);
    let split = |k: f64| TimeSplit {
        steps: 10.0 * k,
        evals: 1.0 * k,
        test_evals: 0.5 * k,
        decode_evals: 0.25 * k,
        checkpoints: 2.0 * k,
        records: 0.125 * k,
        total: 14.0 * k,
    };
    for (run, k) in runs.iter().zip([1.0, 2.0]) {
        store.start_attempt(&run.key, None).unwrap();
        let outcome = RunOutcome {
            time: split(k),
            ..outcome()
        };
        store
            .finish_attempt(&run.key, 1, &[], &[], &outcome)
            .unwrap();
    }
    // A trainer that does not split its time (another program) leaves NULLs, not zeros.
    store.start_attempt(&runs[2].key, None).unwrap();
    store
        .finish_attempt(&runs[2].key, 1, &[], &[], &outcome())
        .unwrap();
    let (sum, attempts) = store.sweep_time_split(Some("s")).unwrap().unwrap();
    assert_eq!(attempts, 2);
    assert_eq!(sum, split(3.0));
    assert!((sum.other() - 3.0 * 0.125).abs() < 1e-12, "{}", sum.other());
    assert_eq!(sum.since(&split(1.0)), split(2.0));
    let nulls = store
        .query("SELECT count(*) FROM attempts WHERE seconds_total IS NULL")
        .unwrap();
    assert_eq!(nulls.rows, vec![vec!["1".to_string()]]);
}

#[test]
fn stability_telemetry_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite");
    let mut store = Store::open(&path).unwrap();
    let run = new_run(0);
    store
        .register_sweep("s", "", "s.toml", "", std::slice::from_ref(&run))
        .unwrap();
    store.start_attempt(&run.key, None).unwrap();
    let looped = StepMetrics {
        state_norm: Some(12.5),
        injection_norm: Some(0.447),
        ..step(1, 5.0)
    };
    let blown = StepMetrics {
        state_norm: Some(f64::INFINITY),
        injection_norm: Some(2.5),
        ..step(2, 4.0)
    };
    let outcome = RunOutcome {
        loss_spikes: 3,
        ..outcome()
    };
    store
        .finish_attempt(&run.key, 1, &[looped, blown, step(3, 3.0)], &[], &outcome)
        .unwrap();
    assert_eq!(store.run(&run.key).unwrap().unwrap().loss_spikes, Some(3));
    let q = store
        .query("SELECT step, state_norm, injection_norm FROM metrics ORDER BY step")
        .unwrap();
    let row = |a: &str, b: &str, c: &str| vec![a.to_string(), b.to_string(), c.to_string()];
    assert_eq!(
        q.rows,
        vec![
            row("1", "12.5", "0.447"),
            row("2", "", "2.5"),
            row("3", "", "")
        ],
        "{:?}",
        q.rows
    );
    // A restart clears the count with the rest of the outcome. (`query` leaves its handle
    // query-only, so write through a fresh one.)
    let mut store = Store::open(&path).unwrap();
    store.start_attempt(&run.key, None).unwrap();
    assert_eq!(store.run(&run.key).unwrap().unwrap().loss_spikes, None);
}

#[test]
fn sql_queries_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite");
    let mut store = Store::open(&path).unwrap();
    store
        .register_sweep("s", "", "s.toml", "", &[new_run(0)])
        .unwrap();
    drop(store);
    let store = Store::open_read_only(&path).unwrap();
    for write in ["DELETE FROM runs", "DROP TABLE runs"] {
        // The rule, said once: not SQLite's message repeated down an error chain.
        let err = anyhow::Error::from(store.query(write).err().unwrap());
        let chain = format!("{err:#}");
        assert!(chain.contains("read-only query may not write"), "{chain}");
        assert_eq!(chain.matches("readonly").count(), 0, "{chain}");
    }
    let q = store.query("SELECT count(*) FROM runs").unwrap();
    assert_eq!(q.rows[0][0], "1");
    assert_eq!(q.to_csv(), "count(*)\n1\n");
    // A bad query is an error that names the file, not a panic.
    let err = store.query("SELEC nonsense").err().unwrap();
    assert!(err.to_string().contains("s.sqlite"), "{err}");
    // SQLite's message appears once in the whole chain.
    let chain = format!(
        "{:#}",
        anyhow::Error::from(store.query("SELECT * FROM nope").err().unwrap())
    );
    assert_eq!(chain.matches("no such table: nope").count(), 1, "{chain}");
}

#[test]
fn a_second_coordinator_is_refused_by_the_sweep_lock() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.sqlite");
    let first = SweepLock::acquire(&db).unwrap();
    let err = SweepLock::acquire(&db)
        .err()
        .expect("second lock must fail");
    let msg = err.to_string();
    assert!(
        msg.contains("already running") && msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
    drop(first);
    SweepLock::acquire(&db).expect("free again once the first is dropped");
    // A database in a folder that does not exist yet: the lock makes the folder.
    let nested = dir.path().join("new/results/s.sqlite");
    SweepLock::acquire(&nested).expect("the lock creates the database's folder");
}

#[test]
fn views_answer_the_common_questions() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
    // Three runs: (flops, final loss) = (1e7, 3.0), (2e7, 3.5), (3e7, 2.5); the second is off
    // the frontier. A fourth is left unfinished.
    let runs: Vec<NewRun> = (0..4)
        .map(|i| NewRun {
            flops: 1e7 * (i + 1) as f64,
            ..new_run(i)
        })
        .collect();
    store.register_sweep("s", "", "s.toml", "", &runs).unwrap();
    for (run, loss) in runs.iter().zip([3.0, 3.5, 2.5]) {
        let attempt = store.start_attempt(&run.key, None).unwrap();
        let evals: Vec<EvalMetrics> = [1usize, 2, 4]
            .iter()
            .map(|&t| EvalMetrics {
                step: 3,
                tokens: 300,
                flops: run.flops,
                val_loss: loss + 0.1 / t as f64,
                val_bpb: 0.0,
                test_loops: Some(t),
                schedule: None,
                accuracy: None,
                position_accuracy: None,
            })
            .collect();
        store
            .finish_attempt(
                &run.key,
                attempt,
                &[],
                &evals,
                &RunOutcome {
                    final_val_loss: Some(loss),
                    ..outcome()
                },
            )
            .unwrap();
    }
    let q = store.query("SELECT count(*) FROM final_runs").unwrap();
    assert_eq!(q.rows[0][0], "3");
    let q = store
        .query("SELECT final_val_loss FROM compute_frontier ORDER BY flops")
        .unwrap();
    assert_eq!(
        q.rows,
        vec![vec!["3.0".to_string()], vec!["2.5".to_string()]]
    );
    let q = store
        .query("SELECT count(*), count(DISTINCT run_key) FROM test_time_curves")
        .unwrap();
    assert_eq!(q.rows[0], vec!["9".to_string(), "3".to_string()]);
    // The fit reads through the same views.
    assert_eq!(
        store.read_table(Table::FinalRuns, Some("s")).unwrap().rows,
        3
    );
    assert_eq!(
        store.read_table(Table::TestTimeCurves, None).unwrap().rows,
        9
    );
}

#[test]
fn stores_made_before_the_views_answer_them_and_readers_leave_them_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.sqlite");
    let mut store = Store::open(&path).unwrap();
    store
        .register_sweep("s", "", "s.toml", "", &[new_run(0)])
        .unwrap();
    drop(store);
    // A store written before the views existed: same schema version, no views.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "DROP VIEW final_runs; DROP VIEW compute_frontier; DROP VIEW test_time_curves;
         DROP VIEW budget_curves; DROP VIEW lineage; DROP VIEW latest_fits; DROP VIEW lr_envelope;
         DROP VIEW run_groups; DROP VIEW group_curves;",
    )
    .unwrap();
    let views = |conn: &rusqlite::Connection| -> i64 {
        conn.query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'view'",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert_eq!(views(&conn), 0);
    // A reader gets them for its session only; the file is not modified.
    let reader = Store::open_read_only(&path).unwrap();
    assert_eq!(
        reader
            .query("SELECT count(*) FROM final_runs")
            .unwrap()
            .rows[0][0],
        "0"
    );
    assert_eq!(
        reader.read_table(Table::TestTimeCurves, None).unwrap().rows,
        0
    );
    drop(reader);
    assert_eq!(views(&conn), 0);
    // A writer adds them to the file.
    drop(Store::open(&path).unwrap());
    assert_eq!(views(&conn), 9);
}

fn fit(law: &str, source: &str, sweep: &str, curve: Option<&str>, alpha: f64) -> FitRecord {
    FitRecord {
        law: law.into(),
        source: source.into(),
        selection_json: format!(r#"{{"sweep":"{sweep}","law":"{law}","resamples":1000,"seed":0}}"#),
        curve: curve.map(String::from),
        n_points: 8,
        objective: 1e-4,
        starts: 10,
        converged_starts: 10,
        heldout: None,
        params: vec![FitParamRecord {
            name: "alpha".into(),
            kind: FitParamKind::Param,
            value: alpha,
            lo: Some(alpha - 0.01),
            hi: Some(alpha + 0.01),
            level: Some(0.95),
        }],
        notes: vec![],
        report_json: "{}".into(),
    }
}

/// `fits` keeps every fit (history); `latest_fits` holds the newest of each law, source, point
/// selection and curve, so a query of it sees one compute law per database however often
/// `make parcae-isoflop` refitted it.
#[test]
fn latest_fits_holds_the_newest_fit_of_each_kind() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
    let first = store
        .insert_fit(&fit("compute", "a.sqlite", "s", None, 0.05))
        .unwrap();
    let newer = store
        .insert_fit(&fit("compute", "a.sqlite", "s", None, 0.07))
        .unwrap();
    let other_sweep = store
        .insert_fit(&fit("compute", "a.sqlite", "t", None, 0.09))
        .unwrap();
    let other_source = store
        .insert_fit(&fit("compute", "b.sqlite", "s", None, 0.11))
        .unwrap();
    let curve_1 = store
        .insert_fit(&fit("test-time", "a.sqlite", "s", Some("k1"), 1.0))
        .unwrap();
    let curve_2 = store
        .insert_fit(&fit("test-time", "a.sqlite", "s", Some("k2"), 2.0))
        .unwrap();
    let curve_1_again = store
        .insert_fit(&fit("test-time", "a.sqlite", "s", Some("k1"), 3.0))
        .unwrap();
    let ids = |sql: &str| -> Vec<String> {
        store
            .query(sql)
            .unwrap()
            .rows
            .into_iter()
            .map(|r| r[0].clone())
            .collect()
    };
    assert_eq!(ids("SELECT count(*) FROM fits"), ["7"]);
    let latest = ids("SELECT fit_id FROM latest_fits ORDER BY fit_id");
    let want: Vec<String> = [newer, other_sweep, other_source, curve_2, curve_1_again]
        .iter()
        .map(|i| i.to_string())
        .collect();
    assert_eq!(latest, want);
    assert!(!latest.contains(&first.to_string()) && !latest.contains(&curve_1.to_string()));
    // The documented query: the latest compute-law exponent of a database.
    let q = store
        .query(
            "SELECT p.value FROM latest_fits f JOIN fit_params p USING (fit_id)
             WHERE f.law = 'compute' AND f.source = 'a.sqlite' AND p.name = 'alpha'
               AND json_extract(f.selection, '$.sweep') = 's'",
        )
        .unwrap();
    assert_eq!(q.rows, vec![vec!["0.07".to_string()]]);
}

/// `lr_envelope`: the runs differing only in train.lr form one configuration, the best run
/// stands for it with how many learning rates it tried and its grid's ends.
#[test]
fn lr_envelope_keeps_the_best_run_of_each_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
    // Two configurations (seeds 0 and 1), three learning rates each.
    let mut runs = Vec::new();
    let mut losses = Vec::new();
    for (seed, best) in [(0u64, 1), (1, 2)] {
        for (i, lr) in [1e-3, 3e-3, 1e-2].into_iter().enumerate() {
            let mut config = config(seed);
            config.train.lr = lr;
            runs.push(NewRun {
                key: config.key(),
                config,
                ..new_run(seed)
            });
            losses.push(if i == best { 2.0 } else { 2.5 + i as f64 * 0.1 });
        }
    }
    store.register_sweep("s", "", "s.toml", "", &runs).unwrap();
    for (run, loss) in runs.iter().zip(&losses) {
        let attempt = store.start_attempt(&run.key, None).unwrap();
        store
            .finish_attempt(
                &run.key,
                attempt,
                &[],
                &[],
                &RunOutcome {
                    final_val_loss: Some(*loss),
                    ..outcome()
                },
            )
            .unwrap();
    }
    let q = store
        .query("SELECT seed, lr, final_val_loss, lr_tried, lr_min, lr_max FROM lr_envelope ORDER BY seed")
        .unwrap();
    assert_eq!(
        q.rows,
        vec![
            ["0", "0.003", "2.0", "3", "0.001", "0.01"]
                .map(String::from)
                .to_vec(),
            ["1", "0.01", "2.0", "3", "0.001", "0.01"]
                .map(String::from)
                .to_vec(),
        ]
    );
}

/// A time-conditioned run (LoopFormer) has one eval per budget and schedule; the test-time view
/// reads the uniform schedule only, and a version-2 store gains `evals.schedule` when opened
/// for writing (readable as it is before).
#[test]
fn schedules_are_stored_per_eval_and_version_2_stores_migrate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite");
    let mut store = Store::open(&path).unwrap();
    let run = new_run(0);
    store
        .register_sweep("s", "", "s.toml", "", std::slice::from_ref(&run))
        .unwrap();
    let attempt = store.start_attempt(&run.key, None).unwrap();
    let eval = |t: Option<usize>, schedule: Option<&str>, loss: f64| EvalMetrics {
        step: 3,
        tokens: 300,
        flops: 3e7,
        val_loss: loss,
        val_bpb: 0.0,
        test_loops: t,
        schedule: schedule.map(str::to_string),
        accuracy: None,
        position_accuracy: None,
    };
    let evals = vec![
        eval(None, None, 2.5),
        eval(Some(1), Some("uniform"), 3.0),
        eval(Some(1), Some("coarse_fine"), 3.0),
        eval(Some(2), Some("uniform"), 2.7),
        eval(Some(2), Some("coarse_fine"), 2.8),
    ];
    store
        .finish_attempt(
            &run.key,
            attempt,
            &[],
            &evals,
            &RunOutcome {
                final_val_loss: Some(2.5),
                ..outcome()
            },
        )
        .unwrap();
    let q = store
        .query("SELECT test_loops, schedule, val_loss FROM evals WHERE schedule IS NOT NULL ORDER BY test_loops, schedule")
        .unwrap();
    assert_eq!(q.rows.len(), 4);
    assert_eq!(
        q.rows[2],
        vec!["2".to_string(), "coarse_fine".into(), "2.8".into()]
    );
    let curves = store
        .query("SELECT test_loops, val_loss FROM test_time_curves ORDER BY test_loops")
        .unwrap();
    assert_eq!(
        curves.rows,
        vec![
            vec!["1".to_string(), "3.0".into()],
            vec!["2".to_string(), "2.7".into()]
        ]
    );
    drop(store);

    // Back to version 2: no schedule column, the old index and view.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "DELETE FROM evals WHERE schedule IS NOT NULL;
         DROP VIEW test_time_curves; DROP VIEW budget_curves; DROP INDEX evals_unique;
         ALTER TABLE evals DROP COLUMN schedule;
         ALTER TABLE evals DROP COLUMN position_accuracy;
         ALTER TABLE evals DROP COLUMN accuracy; DROP TABLE icl_errors;
         ALTER TABLE attempts DROP COLUMN seconds_steps; ALTER TABLE attempts DROP COLUMN seconds_evals;
         ALTER TABLE attempts DROP COLUMN seconds_test_evals; ALTER TABLE attempts DROP COLUMN seconds_decode_evals;
         ALTER TABLE attempts DROP COLUMN seconds_checkpoints; ALTER TABLE attempts DROP COLUMN seconds_records;
         ALTER TABLE attempts DROP COLUMN seconds_total;
         CREATE UNIQUE INDEX evals_unique ON evals(run_key, step, IFNULL(test_loops, -1));
         PRAGMA user_version = 2;",
    )
    .unwrap();
    drop(conn);
    // Read as it is (the views are made in memory, without the column) ...
    let reader = Store::open_read_only(&path).unwrap();
    assert_eq!(
        reader
            .query("SELECT count(*) FROM test_time_curves")
            .unwrap()
            .rows[0],
        vec!["0".to_string()]
    );
    drop(reader);
    // ... and upgraded by a writer.
    let store = Store::open(&path).unwrap();
    let version: i32 = rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    assert_eq!(
        store
            .query("SELECT count(*) FROM evals WHERE schedule IS NULL")
            .unwrap()
            .rows[0],
        vec!["1".to_string()]
    );
}

/// A version-3 store (before runs built on runs) is read as it is — no trunks to leave out, no
/// lineage — and migrated by a writer: `runs` is rebuilt with `role`, `parent_run_key`,
/// `parent_step` and the `blocked` status, keeping every row, its order and the measurements
/// that refer to it.
#[test]
fn version_3_stores_gain_lineage_and_the_blocked_status() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v3.sqlite");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(concat!(
        include_str!("../crates/store/src/schema.sql"),
        include_str!("../crates/store/src/migrate_v2.sql"),
        include_str!("../crates/store/src/migrate_v3.sql"),
    ))
    .unwrap();
    conn.execute_batch(
        "PRAGMA application_id = 1280266064; PRAGMA user_version = 3;
         INSERT INTO sweeps VALUES ('s', '', 's.toml', '', 't', 't');",
    )
    .unwrap();
    for (i, key) in ["bbbb", "aaaa"].iter().enumerate() {
        let config = serde_json::to_string(&new_run(i as u64).config).unwrap();
        conn.execute(
            "INSERT INTO runs (run_key, sweep, config_json, arch, d_model, n_heads, n_layers, mlp,
               seq_len, batch_size, lr, seed, params, non_embedding_params, tokens, flops, status,
               final_val_loss, created_at)
             VALUES (?1, 's', ?2, 'gpt', 16, 2, 1, 'relu2', 8, 2, 0.01, ?3, 10, 5, 100, 1e6, 'done', 2.5, 't')",
            rusqlite::params![key, config, i as i64],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO metrics (run_key, step, tokens, flops, train_loss, lr, elapsed_seconds)
             VALUES (?1, 1, 16, 1e4, 3.0, 0.01, 0.1)",
            [key],
        )
        .unwrap();
    }
    drop(conn);

    let reader = Store::open_read_only(&path).unwrap();
    assert_eq!(
        reader
            .query("SELECT count(*) FROM final_runs")
            .unwrap()
            .rows[0],
        vec!["2".to_string()]
    );
    drop(reader);

    let mut store = Store::open(&path).unwrap();
    let version: i32 = rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let keys: Vec<String> = store
        .runs("s")
        .unwrap()
        .into_iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(keys, vec!["bbbb", "aaaa"], "rows and their order kept");
    assert_eq!(
        store.query("SELECT count(*) FROM metrics").unwrap().rows[0],
        vec!["2".to_string()]
    );
    assert_eq!(
        store
            .query("SELECT count(*) FROM runs WHERE role IS NULL AND parent_run_key IS NULL")
            .unwrap()
            .rows[0],
        vec!["2".to_string()]
    );
    store
        .block_run("aaaa", "its parent run x diverged")
        .unwrap();
    assert_eq!(
        store.run("aaaa").unwrap().unwrap().status,
        RunStatus::Blocked
    );
    assert_eq!(
        store.query("SELECT count(*) FROM lineage").unwrap().rows[0],
        vec!["0".to_string()],
        "standalone runs have no lineage"
    );
    let fk: Vec<Vec<String>> = store.query("PRAGMA foreign_key_check").unwrap().rows;
    assert!(fk.is_empty(), "{fk:?}");
}

/// Task runs store accuracy (of answers, and of every scored position) per eval and in-context
/// errors per (estimator, loops, examples); all survive a run store round trip; a version-3 store
/// gains them when opened for writing.
#[test]
fn accuracy_and_icl_errors_are_stored_and_version_3_stores_migrate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite");
    let mut store = Store::open(&path).unwrap();
    let run = new_run(0);
    store
        .register_sweep("s", "", "s.toml", "", std::slice::from_ref(&run))
        .unwrap();
    let attempt = store.start_attempt(&run.key, None).unwrap();
    let eval = |t: Option<usize>, accuracy: Option<f64>| EvalMetrics {
        step: 3,
        tokens: 300,
        flops: 3e7,
        val_loss: 0.5,
        val_bpb: f64::NAN,
        test_loops: t,
        schedule: None,
        accuracy,
        position_accuracy: accuracy.map(|a| a + 0.125),
    };
    let evals = vec![eval(None, Some(0.75)), eval(Some(2), Some(0.5))];
    store
        .finish_attempt(&run.key, attempt, &[step(3, 1.0)], &evals, &outcome())
        .unwrap();
    let icl = |estimator: &str, t: Option<usize>, k: usize, error: f64| IclError {
        estimator: estimator.into(),
        test_loops: t,
        n_examples: k,
        error,
    };
    store
        .record_icl_errors(
            &run.key,
            &[
                icl("model", Some(2), 0, 1.0),
                icl("model", Some(2), 1, 0.6),
                icl("least_squares", None, 1, 0.5),
            ],
        )
        .unwrap();
    // Recording again replaces rather than duplicates.
    store
        .record_icl_errors(&run.key, &[icl("model", Some(2), 1, 0.4)])
        .unwrap();
    let rows = |s: &Store, sql: &str| s.query(sql).unwrap().rows;
    assert_eq!(
        rows(
            &store,
            "SELECT test_loops, accuracy, position_accuracy, val_bpb FROM evals ORDER BY IFNULL(test_loops, 0)"
        ),
        vec![
            vec!["".to_string(), "0.75".into(), "0.875".into(), "".into()],
            vec!["2".to_string(), "0.5".into(), "0.625".into(), "".into()]
        ]
    );
    let icl_query = "SELECT estimator, test_loops, n_examples, error FROM icl_errors ORDER BY estimator, n_examples";
    let expected = vec![
        vec![
            "least_squares".to_string(),
            "".into(),
            "1".into(),
            "0.5".into(),
        ],
        vec!["model".to_string(), "2".into(), "0".into(), "1.0".into()],
        vec!["model".to_string(), "2".into(), "1".into(), "0.4".into()],
    ];
    assert_eq!(rows(&store, icl_query), expected);
    // A run store carries them, and merging it into another store reproduces them.
    let run_store = dir.path().join("run_store.sqlite");
    assert!(store.seed_run_store(&run.key, &run_store).unwrap());
    let other_path = dir.path().join("other.sqlite");
    let mut other = Store::open(&other_path).unwrap();
    other
        .register_sweep("s", "", "s.toml", "", std::slice::from_ref(&run))
        .unwrap();
    other.merge_run_store(&run.key, &run_store).unwrap();
    assert_eq!(rows(&other, icl_query), expected);
    assert_eq!(
        rows(&other, "SELECT sum(position_accuracy) FROM evals"),
        vec![vec!["1.5".to_string()]]
    );
    assert_eq!(other.merge_run_store(&run.key, &run_store).unwrap(), 0);
    drop((store, other));

    // Back to version 3: no accuracy column, no icl_errors table.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "ALTER TABLE attempts DROP COLUMN seconds_steps; ALTER TABLE attempts DROP COLUMN seconds_evals;
         ALTER TABLE attempts DROP COLUMN seconds_test_evals; ALTER TABLE attempts DROP COLUMN seconds_decode_evals;
         ALTER TABLE attempts DROP COLUMN seconds_checkpoints; ALTER TABLE attempts DROP COLUMN seconds_records;
         ALTER TABLE attempts DROP COLUMN seconds_total;
         ALTER TABLE evals DROP COLUMN position_accuracy; ALTER TABLE evals DROP COLUMN accuracy;
         DROP TABLE icl_errors; PRAGMA user_version = 3;",
    )
    .unwrap();
    drop(conn);
    let store = Store::open(&path).unwrap();
    let version: i32 = rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    assert_eq!(SCHEMA_VERSION, 11);
    // Version 8: `decode_evals`, and `runs` rebuilt so that a run's role may be 'melt' (the
    // rebuilt table keeps every run).
    let conn = rusqlite::Connection::open(&path).unwrap();
    let decodes: i64 = conn
        .query_row("SELECT count(*) FROM decode_evals", [], |r| r.get(0))
        .unwrap();
    assert_eq!(decodes, 0);
    let before: i64 = conn
        .query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
        .unwrap();
    assert!(before > 0);
    conn.execute("UPDATE runs SET role = 'melt'", []).unwrap();
    assert!(conn.execute("UPDATE runs SET role = 'other'", []).is_err());
    drop(conn);
    assert_eq!(
        rows(
            &store,
            "SELECT count(*), count(accuracy), count(position_accuracy) FROM evals"
        ),
        vec![vec!["2".to_string(), "0".into(), "0".into()]]
    );
    assert_eq!(
        rows(&store, "SELECT count(*) FROM icl_errors"),
        vec![vec!["0".to_string()]]
    );
}
