//! The SQLite store: schema, migrations, and the only code in loopscale that writes SQL.
//!
//! One file per sweep. A store is recognised by its `application_id` ("LOOP"); any other file is
//! refused untouched, as is a store from a newer schema than this build knows. Writes that must
//! agree (a run's final rows and its `done` status) share one transaction, so a crash can never
//! leave a run `done` without its metrics. The schema itself, with a comment on every column,
//! is `schema.sql` (tables) and `views.sql` (views, present in every store, old ones included);
//! `docs/schema.md` is the user's guide to them.

mod fits;
mod live;
mod open;
mod query;
mod run_store;
mod runs;
mod tables;

pub use fits::{FitParamKind, FitParamRecord, FitRecord, HeldOutRecord};
pub use live::{RunTable, TrainPoint, ValPoint};
pub use open::{APPLICATION_ID, SCHEMA_VERSION, StoreError};
pub use query::QueryResult;
pub use runs::{NewRun, RunProgress, RunRow, RunStatus};
pub use tables::{ColumnData, Columns, Table};

use rusqlite::Connection;
use std::path::{Path, PathBuf};

/// An open loopscale database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if absent) the store at `path`, migrating an older schema.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        open::open_read_write(path).map(|conn| Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Opens an existing store without the ability to change it (for `sql`, `status`).
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        open::open_read_only(path).map(|conn| Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        StoreError::sqlite(&self.path, e)
    }

    /// Runs `body` in one write transaction and commits it. The transaction is IMMEDIATE: it
    /// takes the write lock up front, waiting (busy_timeout) for other writers, so it can never
    /// fail half-way on a read lock that cannot be upgraded. If SQLite still answers busy
    /// (another writer held the lock past the timeout), the whole transaction is retried.
    fn write<T>(
        &mut self,
        mut body: impl FnMut(&rusqlite::Transaction) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut attempt = 0u32;
        loop {
            let result = (|| {
                let tx = self
                    .conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let value = body(&tx)?;
                tx.commit()?;
                Ok(value)
            })();
            match result {
                Err(e) if is_busy(&e) && attempt < WRITE_RETRIES => {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50 * attempt as u64));
                }
                other => return other.map_err(|e| self.err(e)),
            }
        }
    }
}

/// Times a write transaction is retried after SQLite reports the database busy or locked.
const WRITE_RETRIES: u32 = 5;

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Current time as the store writes it: ISO-8601 UTC, second resolution.
const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%SZ','now')";
