//! Read-only SQL for `loopscale sql`: any query, its values as text (and as CSV), or typed
//! column by column ([`Columns`], the form the analysis turns into a polars frame and the
//! Parquet export writes).

use rusqlite::types::ValueRef;

use super::tables::{Cell, Columns};
use super::{Store, StoreError};

/// A query's result, every value rendered as text (NULL as empty).
#[derive(Clone, Debug, PartialEq)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

pub(crate) fn render(value: ValueRef) -> String {
    match value {
        ValueRef::Null => String::new(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(x) => format_real(x),
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
        ValueRef::Blob(b) => format!("<{} bytes>", b.len()),
    }
}

/// Shortest text that reads back as the same f64, so CSV output loses nothing.
fn format_real(x: f64) -> String {
    let s = format!("{x}");
    if s.contains('.') || s.contains('e') || s.contains("inf") || s.contains("NaN") {
        s
    } else {
        format!("{s}.0")
    }
}

impl Store {
    /// Runs one statement without any possibility of writing: the store is opened read-only by
    /// the caller, and `query_only` guards against a read-write handle too.
    pub fn query(&self, sql: &str) -> Result<QueryResult, StoreError> {
        self.query_limited(sql, usize::MAX, None)
            .map(|(result, _)| result)
    }

    /// [`Store::query`] with limits, for queries from untrusted hands (the dashboard's SQL box):
    /// at most `max_rows` rows are kept (the flag says whether more were left out), and a query
    /// still running after `time_limit` is interrupted with [`StoreError::TooSlow`].
    pub fn query_limited(
        &self,
        sql: &str,
        max_rows: usize,
        time_limit: Option<std::time::Duration>,
    ) -> Result<(QueryResult, bool), StoreError> {
        self.read_only(time_limit, || self.query_rows(sql, max_rows))
    }

    /// [`Store::query`] typed column by column, as [`Store::read_table`] types the analysis
    /// tables: integer, real or text by what SQLite stored, NULL as `None`. A column holding
    /// BLOBs is refused ([`StoreError::BlobColumn`]): no type would carry it faithfully.
    pub fn query_columns(&self, sql: &str) -> Result<Columns, StoreError> {
        self.read_only(None, || self.query_cells(sql))
    }

    /// Runs `read` under the rules of [`Store::query_limited`]: no writes, an optional deadline,
    /// and SQLite's errors turned into the sentences `loopscale sql` prints.
    fn read_only<T>(
        &self,
        time_limit: Option<std::time::Duration>,
        read: impl FnOnce() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.conn
            .pragma_update(None, "query_only", true)
            .map_err(|e| self.err(e))?;
        // A watchdog interrupts the statement at the deadline; dropping `stop` ends it early.
        let watchdog = time_limit.map(|limit| {
            let handle = self.conn.get_interrupt_handle();
            let (stop, wait) = std::sync::mpsc::channel::<()>();
            let thread = std::thread::spawn(move || {
                if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(limit) {
                    handle.interrupt();
                }
            });
            (stop, thread, limit)
        });
        let result = read();
        let limit = watchdog.map(|(stop, thread, limit)| {
            drop(stop);
            let _ = thread.join();
            limit
        });
        let result = result.map_err(|e| match e {
            StoreError::Sqlite { path, cause }
                if cause.sqlite_error_code() == Some(rusqlite::ErrorCode::ReadOnly) =>
            {
                StoreError::ReadOnly { path }
            }
            StoreError::Sqlite {
                path,
                cause: rusqlite::Error::MultipleStatement,
            } => StoreError::MultipleStatements { path },
            StoreError::Sqlite { path, cause }
                if cause.sqlite_error_code() == Some(rusqlite::ErrorCode::OperationInterrupted) =>
            {
                StoreError::TooSlow {
                    path,
                    seconds: limit.map_or(0.0, |l| l.as_secs_f64()),
                }
            }
            other => other,
        });
        // Leave a read-write handle writable again for its owner.
        self.conn
            .pragma_update(None, "query_only", false)
            .map_err(|e| self.err(e))?;
        result
    }

    /// The tables and views a query can read, sorted (SQLite's own `sqlite_%` tables left out).
    pub fn relations(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')
                 AND name NOT LIKE 'sqlite_%' ORDER BY name",
            )
            .map_err(|e| self.err(e))?;
        let names = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        Ok(names)
    }

    fn query_cells(&self, sql: &str) -> Result<Columns, StoreError> {
        let mut stmt = self.conn.prepare(sql).map_err(|e| self.err(e))?;
        let names: Vec<String> = stmt.column_names().map(|c| c.to_string()).collect();
        let mut cells: Vec<Vec<Cell>> = vec![Vec::new(); names.len()];
        let mut cursor = stmt.query([]).map_err(|e| self.err(e))?;
        let mut rows = 0;
        while let Some(row) = cursor.next().map_err(|e| self.err(e))? {
            for (i, col) in cells.iter_mut().enumerate() {
                let cell = Cell::of(row.get_ref(i).map_err(|e| self.err(e))?);
                if matches!(cell, Cell::Blob) {
                    return Err(StoreError::BlobColumn {
                        path: self.path.clone(),
                        column: names[i].clone(),
                    });
                }
                col.push(cell);
            }
            rows += 1;
        }
        Ok(Columns::of_cells(names, cells, rows))
    }

    fn query_rows(&self, sql: &str, max_rows: usize) -> Result<(QueryResult, bool), StoreError> {
        let mut stmt = self.conn.prepare(sql).map_err(|e| self.err(e))?;
        let columns: Vec<String> = stmt.column_names().map(|c| c.to_string()).collect();
        let n = columns.len();
        let mut rows = Vec::new();
        let mut cursor = stmt.query([]).map_err(|e| self.err(e))?;
        while let Some(row) = cursor.next().map_err(|e| self.err(e))? {
            if rows.len() == max_rows {
                return Ok((QueryResult { columns, rows }, true));
            }
            rows.push(
                (0..n)
                    .map(|i| row.get_ref(i).map(render).unwrap_or_default())
                    .collect(),
            );
        }
        Ok((QueryResult { columns, rows }, false))
    }
}

impl QueryResult {
    /// RFC 4180 CSV.
    pub fn to_csv(&self) -> String {
        fn field(s: &str) -> String {
            if s.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_string()
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.columns).chain(self.rows.iter()) {
            out.push_str(&line.iter().map(|s| field(s)).collect::<Vec<_>>().join(","));
            out.push('\n');
        }
        out
    }
}
