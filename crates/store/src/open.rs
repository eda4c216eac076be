//! Opening a store safely: recognise our own files, refuse anything else, migrate old schemas.

use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `PRAGMA application_id` of every loopscale store: the bytes "LOOP".
pub const APPLICATION_ID: i32 = 0x4c4f_4f50;

/// Schema version this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i32 = 11;

/// The oldest schema a read-only open accepts: every later version only adds columns that
/// readers (status, sql, fit, report) do not need, so an older store is read as it is.
const READABLE_FROM: i32 = 1;

/// Schema migrations: `MIGRATIONS[i]` takes a store from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    include_str!("schema.sql"),
    include_str!("migrate_v2.sql"),
    include_str!("migrate_v3.sql"),
    include_str!("migrate_lineage.sql"),
    include_str!("migrate_exit_evals.sql"),
    include_str!("migrate_tasks.sql"),
    include_str!("migrate_position_accuracy.sql"),
    include_str!("migrate_melt.sql"),
    include_str!("migrate_bytes_per_token.sql"),
    include_str!("migrate_text_passes.sql"),
    include_str!("migrate_time_split.sql"),
];

/// The views (`CREATE VIEW IF NOT EXISTS ...`), not a migration: every open makes sure they exist.
const VIEWS: &str = include_str!("views.sql");

/// Every view of `views.sql`.
const VIEW_NAMES: [&str; 9] = [
    "final_runs",
    "compute_frontier",
    "test_time_curves",
    "budget_curves",
    "latest_fits",
    "lr_envelope",
    "lineage",
    "run_groups",
    "group_curves",
];

/// Creates the views a store lacks (each is
/// `IF NOT EXISTS`): in the file on a read-write handle, as TEMP views (in
/// memory, this connection only) on a read-only one, so stores made before the views existed
/// answer them too and are never modified by a reader.
fn ensure_views(conn: &Connection, path: &Path, read_only: bool) -> Result<(), StoreError> {
    let present: i64 = conn
        .query_row(
            &format!(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'view' AND name IN ({})",
                VIEW_NAMES.map(|v| format!("'{v}'")).join(", ")
            ),
            [],
            |r| r.get(0),
        )
        .map_err(|e| StoreError::sqlite(path, e))?;
    if present == VIEW_NAMES.len() as i64 {
        return Ok(());
    }
    let mut sql = if read_only {
        VIEWS.replace("CREATE VIEW", "CREATE TEMP VIEW")
    } else {
        VIEWS.to_string()
    };
    // A store older than version 3 (read as it is) has no `evals.schedule`: none of its evals
    // followed a named schedule.
    if !has_column(conn, path, "evals", "schedule")? {
        sql = sql.replace("e.schedule", "NULL");
    }
    // Nor, before the lineage migration, runs built on runs: no trunk to leave out, no lineage.
    if !has_column(conn, path, "runs", "role")? {
        sql = sql.replace("AND IFNULL(role, '') <> 'trunk'", "");
        if let Some(at) = sql.find("-- Runs built on runs") {
            sql.truncate(at);
        }
    }
    conn.execute_batch(&sql)
        .map_err(|e| StoreError::sqlite(path, e))
}

/// Whether `table` has `column` (stores read as they are may predate it).
fn has_column(
    conn: &Connection,
    path: &Path,
    table: &str,
    column: &str,
) -> Result<bool, StoreError> {
    conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
        [table, column],
        |r| r.get(0),
    )
    .map_err(|e| StoreError::sqlite(path, e))
}

/// Why a store could not be opened. Each message names the file and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "{path}: not a SQLite database; loopscale will not overwrite it. Choose another --db path or move the file away."
    )]
    NotSqlite { path: PathBuf },
    #[error(
        "{path}: a SQLite database that loopscale did not create (application_id {found:#x}); refusing to touch it. Choose another --db path."
    )]
    Foreign { path: PathBuf, found: i32 },
    #[error(
        "{path}: written by a newer loopscale (schema version {found}; this build knows up to {SCHEMA_VERSION}). Upgrade loopscale to use it."
    )]
    NewerSchema { path: PathBuf, found: i32 },
    #[error(
        "{path}: written by an older loopscale (schema version {found}; this build reads version {SCHEMA_VERSION}). A command that writes the database upgrades it in place: `loopscale collect SWEEP.toml --db {path}` (or `run`, or `fit` without --no-save)."
    )]
    OlderSchema { path: PathBuf, found: i32 },
    #[error("{path}: no such database. Run `loopscale run SWEEP.toml` first, or check the path.")]
    Missing { path: PathBuf },
    // SQLite's own errors are shown once: the field is not the error's `source`, because
    // rusqlite's error carries SQLite's message and its source again (an error chain printed
    // with `{:#}` would say the same sentence three times).
    #[error("{path}: the database is locked by another process: {cause}")]
    Locked {
        path: PathBuf,
        cause: rusqlite::Error,
    },
    #[error(
        "{path}: a read-only query may not write (`loopscale sql` refuses INSERT, UPDATE, DELETE, DROP, ...). Results change only through loopscale's commands (`run`, `gc`, `fit`); to edit the file yourself, open a copy with sqlite3."
    )]
    ReadOnly { path: PathBuf },
    #[error(
        "{path}: one statement at a time: the query holds a second statement after the first `;`. Run them one by one."
    )]
    MultipleStatements { path: PathBuf },
    #[error(
        "{path}: the query ran past its {seconds:.0} s limit and was stopped. Narrow it (a WHERE clause, a LIMIT), or run it with `loopscale sql`."
    )]
    TooSlow { path: PathBuf, seconds: f64 },
    #[error(
        "{path}: column `{column}` holds BLOB values, which an export cannot type; select hex({column}) instead, or leave the column out"
    )]
    BlobColumn { path: PathBuf, column: String },
    #[error("{path}: {cause}")]
    Sqlite {
        path: PathBuf,
        cause: rusqlite::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl StoreError {
    pub(crate) fn sqlite(path: &Path, cause: rusqlite::Error) -> StoreError {
        let path = path.to_path_buf();
        match cause.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                StoreError::Locked { path, cause }
            }
            _ => StoreError::Sqlite { path, cause },
        }
    }
}

/// The first 16 bytes of every SQLite 3 file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Checks an existing file's header before SQLite sees it, so a foreign file is never modified.
fn check_header(path: &Path) -> Result<bool, StoreError> {
    use std::io::Read;
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(source) => {
            return Err(StoreError::Io {
                path: path.into(),
                source,
            });
        }
    };
    let mut head = [0u8; 16];
    let n = file.read(&mut head).map_err(|source| StoreError::Io {
        path: path.into(),
        source,
    })?;
    if n == 0 {
        return Ok(false); // an empty file is an empty database
    }
    if n < 16 || &head != SQLITE_MAGIC {
        return Err(StoreError::NotSqlite { path: path.into() });
    }
    Ok(true)
}

fn configure(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    // Workers write concurrently: wait for the writer lock rather than fail at once.
    conn.busy_timeout(Duration::from_secs(60))
        .map_err(|e| StoreError::sqlite(path, e))?;
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(|e| StoreError::sqlite(path, e))?;
    Ok(())
}

fn pragma_i32(conn: &Connection, path: &Path, name: &str) -> Result<i32, StoreError> {
    conn.pragma_query_value(None, name, |r| r.get(0))
        .map_err(|e| {
            if e.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) {
                StoreError::NotSqlite { path: path.into() }
            } else {
                StoreError::sqlite(path, e)
            }
        })
}

/// Identifies the file as ours (or as a brand-new empty database) and returns its schema version.
fn identify(conn: &Connection, path: &Path) -> Result<i32, StoreError> {
    let app_id = pragma_i32(conn, path, "application_id")?;
    let version = pragma_i32(conn, path, "user_version")?;
    if app_id == 0 {
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
            .map_err(|e| StoreError::sqlite(path, e))?;
        if tables > 0 {
            return Err(StoreError::Foreign {
                path: path.into(),
                found: app_id,
            });
        }
        return Ok(0);
    }
    if app_id != APPLICATION_ID {
        return Err(StoreError::Foreign {
            path: path.into(),
            found: app_id,
        });
    }
    if version > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.into(),
            found: version,
        });
    }
    Ok(version)
}

pub(super) fn open_read_write(path: &Path) -> Result<Connection, StoreError> {
    check_header(path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.into(),
            source,
        })?;
    }
    let mut conn = Connection::open(path).map_err(|e| StoreError::sqlite(path, e))?;
    configure(&conn, path)?;
    let version = identify(&conn, path)?;
    if version < SCHEMA_VERSION {
        // WAL lets readers (status, sql, progress) run while workers write.
        conn.pragma_update_and_check(None, "journal_mode", "wal", |_| Ok(()))
            .map_err(|e| StoreError::sqlite(path, e))?;
        // A migration may rebuild a table others refer to (SQLite's documented procedure for
        // schema changes ALTER TABLE cannot make): foreign keys are off while it runs (the
        // pragma is ignored inside a transaction) and checked once it has.
        conn.pragma_update(None, "foreign_keys", false)
            .map_err(|e| StoreError::sqlite(path, e))?;
        let tx = conn
            .transaction()
            .map_err(|e| StoreError::sqlite(path, e))?;
        // Views are not migrated: every open recreates them (`ensure_views`). Dropping them
        // first lets a migration rebuild a table a view reads.
        for view in VIEW_NAMES {
            tx.execute_batch(&format!("DROP VIEW IF EXISTS {view};"))
                .map_err(|e| StoreError::sqlite(path, e))?;
        }
        for migration in &MIGRATIONS[version as usize..] {
            tx.execute_batch(migration)
                .map_err(|e| StoreError::sqlite(path, e))?;
        }
        tx.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(|e| StoreError::sqlite(path, e))?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(|e| StoreError::sqlite(path, e))?;
        let broken: i64 = tx
            .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })
            .map_err(|e| StoreError::sqlite(path, e))?;
        if broken > 0 {
            // Rolled back on drop: the store is left as it was.
            return Err(StoreError::sqlite(
                path,
                rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY),
                    Some(format!(
                        "migrating to schema version {SCHEMA_VERSION} would leave {broken} row(s) referring to nothing"
                    )),
                ),
            ));
        }
        tx.commit().map_err(|e| StoreError::sqlite(path, e))?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(|e| StoreError::sqlite(path, e))?;
    }
    ensure_views(&conn, path, false)?;
    // NORMAL is durable with WAL. A run store (`store::run_store`) keeps the rollback journal for network
    // filesystems, where NORMAL could lose a committed transaction on power loss: FULL there.
    let journal: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .map_err(|e| StoreError::sqlite(path, e))?;
    let sync = if journal.eq_ignore_ascii_case("wal") {
        "NORMAL"
    } else {
        "FULL"
    };
    conn.pragma_update(None, "synchronous", sync)
        .map_err(|e| StoreError::sqlite(path, e))?;
    Ok(conn)
}

pub(super) fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    if !check_header(path)? {
        return Err(StoreError::Missing { path: path.into() });
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::sqlite(path, e))?;
    configure(&conn, path)?;
    let version = identify(&conn, path)?;
    if version < READABLE_FROM {
        // Version 0 is a database nothing was ever written to; anything else is ours, older.
        let ours: i32 = pragma_i32(&conn, path, "application_id")?;
        return Err(if ours == APPLICATION_ID {
            StoreError::OlderSchema {
                path: path.into(),
                found: version,
            }
        } else {
            StoreError::Missing { path: path.into() }
        });
    }
    ensure_views(&conn, path, true)?;
    Ok(conn)
}
