//! Exports: `loopscale sql DB QUERY --parquet FILE` and `loopscale export DB TABLE --to FILE`.
//! A Parquet file read back with polars holds the query's rows with their types (integers,
//! reals, text, NULLs); a CSV export holds the bytes `sql --csv` prints; a bad flag, table,
//! directory or query is refused with what was expected, and leaves no file behind.

use std::path::{Path, PathBuf};

use loopscale::analysis::columns::to_frame;
use loopscale::store::{NewRun, Store};
use polars::prelude::{DataType, ParquetReader, SerReader};

use crate::common::runs::TestRun;
use crate::common::{loopscale, record_finished, text};

/// A finished run of width `d_model`, its FLOPs in proportion.
fn run(d_model: usize) -> NewRun {
    TestRun::width(d_model, 0)
        .flops(1e12 * d_model as f64)
        .new_run()
}

/// A database of three finished runs, in a fresh directory.
fn database() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("runs.sqlite");
    let runs = [(run(32), 4.5), (run(64), 4.25), (run(128), 4.0)];
    record_finished(&mut Store::open(&db).unwrap(), "exports", "", &runs);
    (dir, db)
}

fn read_parquet(path: &Path) -> polars::prelude::DataFrame {
    ParquetReader::new(std::fs::File::open(path).unwrap())
        .finish()
        .unwrap()
}

/// Integers, reals, text and NULLs in one query: a mixed column of each kind.
const TYPED: &str = "SELECT run_key, params, tokens, flops, final_val_loss, final_val_bpb, variant,
        NULL AS blank FROM final_runs ORDER BY params";

#[test]
fn a_parquet_export_holds_the_query_with_its_types() {
    let (dir, db) = database();
    let out = dir.path().join("runs.parquet");
    let done = loopscale(&[
        "sql",
        db.to_str().unwrap(),
        TYPED,
        "--parquet",
        out.to_str().unwrap(),
    ]);
    assert!(done.status.success(), "{}", text(&done));
    assert!(text(&done).contains("wrote 3 rows"), "{}", text(&done));
    let frame = read_parquet(&out);
    let dtype = |c: &str| frame.column(c).unwrap().dtype().clone();
    assert_eq!(dtype("run_key"), DataType::String);
    assert_eq!(dtype("params"), DataType::Int64);
    assert_eq!(dtype("tokens"), DataType::Int64);
    assert_eq!(dtype("flops"), DataType::Float64);
    assert_eq!(dtype("final_val_loss"), DataType::Float64);
    // NULL throughout: the type of every measurement, every value null.
    assert_eq!(dtype("final_val_bpb"), DataType::Float64);
    assert_eq!(frame.column("final_val_bpb").unwrap().null_count(), 3);
    assert_eq!(frame.column("variant").unwrap().null_count(), 3);
    assert_eq!(frame.column("blank").unwrap().null_count(), 3);
    let params: Vec<Option<i64>> = frame
        .column("params")
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(params, [Some(32_000), Some(64_000), Some(128_000)]);
    let losses: Vec<Option<f64>> = frame
        .column("final_val_loss")
        .unwrap()
        .f64()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(losses, [Some(4.5), Some(4.25), Some(4.0)]);
    // The whole frame equals the query read through the analysis's own path.
    let store = Store::open_read_only(&db).unwrap();
    let expected = to_frame(store.query_columns(TYPED).unwrap()).unwrap();
    assert!(frame.equals_missing(&expected), "{frame}\n{expected}");
}

#[test]
fn a_table_exports_whole_as_parquet_and_as_the_csv_sql_prints() {
    let (dir, db) = database();
    let db = db.to_str().unwrap();
    let parquet = dir.path().join("final.parquet");
    let csv = dir.path().join("final.csv");
    for to in [&parquet, &csv] {
        let done = loopscale(&["export", db, "final_runs", "--to", to.to_str().unwrap()]);
        assert!(done.status.success(), "{}", text(&done));
    }
    let printed = loopscale(&["sql", db, "SELECT * FROM final_runs", "--csv"]);
    assert!(printed.status.success(), "{}", text(&printed));
    assert_eq!(std::fs::read(&csv).unwrap(), printed.stdout);
    let frame = read_parquet(&parquet);
    assert_eq!(frame.height(), 3);
    let store = Store::open_read_only(Path::new(db)).unwrap();
    let expected = to_frame(store.query_columns("SELECT * FROM final_runs").unwrap()).unwrap();
    assert!(frame.equals_missing(&expected), "{frame}\n{expected}");
}

/// Runs a command that must fail; returns what it said. No file may appear in `dir` but the
/// database (and SQLite's -wal and -shm files beside it).
fn refused(dir: &Path, args: &[&str]) -> String {
    let done = loopscale(args);
    assert!(
        !done.status.success(),
        "{args:?} succeeded: {}",
        text(&done)
    );
    let left: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("runs.sqlite"))
        .collect();
    assert!(left.is_empty(), "{args:?} left {left:?} behind");
    text(&done)
}

#[test]
fn bad_exports_say_what_was_expected_and_write_nothing() {
    let (dir, db) = database();
    let d = dir.path();
    let db = db.to_str().unwrap();
    let at = |name: &str| d.join(name).to_str().unwrap().to_string();

    let said = refused(d, &["export", db, "nope", "--to", &at("x.parquet")]);
    assert!(said.contains("no table or view named `nope`"), "{said}");
    assert!(
        said.contains("final_runs") && said.contains("runs.sqlite"),
        "{said}"
    );

    let missing = at("no/such/dir/x.parquet");
    let said = refused(d, &["sql", db, "SELECT 1", "--parquet", &missing]);
    assert!(
        said.contains("--parquet")
            && said.contains("does not exist")
            && said.contains("no/such/dir"),
        "{said}"
    );
    let said = refused(d, &["export", db, "runs", "--to", &missing]);
    assert!(
        said.contains("--to") && said.contains("does not exist"),
        "{said}"
    );

    let said = refused(
        d,
        &["sql", db, "DELETE FROM runs", "--parquet", &at("x.parquet")],
    );
    assert!(said.contains("read-only query may not write"), "{said}");
    let said = refused(
        d,
        &[
            "sql",
            db,
            "SELECT * FROM nope",
            "--parquet",
            &at("x.parquet"),
        ],
    );
    assert!(said.contains("no such table: nope"), "{said}");

    let said = refused(d, &["export", db, "runs", "--to", &at("x.xlsx")]);
    assert!(
        said.contains("--to") && said.contains(".parquet or .csv"),
        "{said}"
    );
    let said = refused(d, &["sql", db, "SELECT 1", "--parquet", &at("x.csv")]);
    assert!(
        said.contains("--parquet") && said.contains(".parquet"),
        "{said}"
    );
    let said = refused(
        d,
        &[
            "sql",
            db,
            "SELECT 1",
            "--csv",
            "--parquet",
            &at("x.parquet"),
        ],
    );
    assert!(
        said.contains("--csv") && said.contains("--parquet"),
        "{said}"
    );

    let said = refused(
        d,
        &[
            "sql",
            db,
            "SELECT x'00ff' AS raw",
            "--parquet",
            &at("x.parquet"),
        ],
    );
    assert!(
        said.contains("`raw`") && said.contains("hex(raw)"),
        "{said}"
    );

    // The database is still whole.
    let count = loopscale(&["sql", db, "SELECT count(*) FROM runs", "--csv"]);
    assert_eq!(String::from_utf8_lossy(&count.stdout), "count(*)\n3\n");
}
