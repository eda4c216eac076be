//! Reads for a live view of a sweep (`loopscale serve`): what changed since the last look, a
//! run's curves, and each per-run table as text. All of it is SELECTs; the SQL lives here so the
//! dashboard above the store never writes any.

use rusqlite::params;

use super::query::QueryResult;
use super::runs::RunProgress;
use super::{Store, StoreError};

/// One logged training step, as a curve needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainPoint {
    pub step: u64,
    pub tokens: u64,
    pub flops: f64,
    /// `None` where the loss was not finite.
    pub train_loss: Option<f64>,
    pub elapsed_seconds: f64,
}

/// One validation evaluation at the training depth.
#[derive(Clone, Debug, PartialEq)]
pub struct ValPoint {
    pub step: u64,
    pub tokens: u64,
    pub flops: f64,
    pub val_loss: Option<f64>,
}

/// The per-run tables a run's page shows, one SQL statement each (`?1` the run's key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunTable {
    /// `attempts`: every start of the run and how it ended, with its error.
    Attempts,
    /// `metrics`: every logged training step.
    Metrics,
    /// `evals`: validation at the training depth and at test-time loop counts.
    Evals,
    /// `decode_evals` (schema version 8): decoding through the KV cache.
    DecodeEvals,
    /// `exit_evals`: early exit per threshold.
    ExitEvals,
    /// `icl_errors`: in-context regression error per estimator and examples.
    IclErrors,
    /// The run's parent and the runs built on it (`runs.role`, `parent_run_key`).
    Lineage,
}

impl RunTable {
    fn sql(self) -> &'static str {
        match self {
            RunTable::Attempts => {
                "SELECT attempt, status, started_at, finished_at, error, log_path FROM attempts
                 WHERE run_key = ?1 ORDER BY attempt"
            }
            RunTable::Metrics => {
                "SELECT step, tokens, flops, train_loss, lr, grad_norm, elapsed_seconds, state_norm,
                        injection_norm FROM metrics WHERE run_key = ?1 ORDER BY step"
            }
            RunTable::Evals => "SELECT * FROM evals WHERE run_key = ?1 ORDER BY step, IFNULL(test_loops, 0)",
            RunTable::DecodeEvals => {
                "SELECT step, loops, tokens, kv_bytes_per_token, peak_cache_bytes, tokens_per_s, val_loss
                 FROM decode_evals WHERE run_key = ?1 ORDER BY step, IFNULL(loops, 0)"
            }
            RunTable::ExitEvals => {
                "SELECT step, threshold, max_loops, mean_loops, val_loss FROM exit_evals
                 WHERE run_key = ?1 ORDER BY step, threshold"
            }
            RunTable::IclErrors => {
                "SELECT estimator, test_loops, n_examples, error FROM icl_errors
                 WHERE run_key = ?1 ORDER BY estimator, IFNULL(test_loops, 0), n_examples"
            }
            RunTable::Lineage => {
                "SELECT CASE WHEN run_key = ?1 THEN 'this run' ELSE 'built on it' END AS relation,
                        run_key, role, parent_run_key, parent_step, status
                 FROM runs WHERE run_key = ?1 OR parent_run_key = ?1 ORDER BY relation DESC, rowid"
            }
        }
    }
}

/// Whether SQLite refused a statement because a table or column is missing (an older store).
fn missing_schema(e: &StoreError) -> bool {
    matches!(e, StoreError::Sqlite { cause, .. }
        if cause.to_string().contains("no such table") || cause.to_string().contains("no such column"))
}

impl Store {
    /// The newest logged step of every run that has logged one: comparing two of these says
    /// which runs wrote metrics in between.
    pub fn metric_heads(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT run_key, max(step) FROM metrics GROUP BY run_key ORDER BY run_key")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// The newest logged step of every run that has one, in one query (the overview asks for
    /// all of them once a second per open page).
    pub fn latest_progress(
        &self,
    ) -> Result<std::collections::HashMap<String, RunProgress>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT m.run_key, m.step, m.tokens, m.train_loss, m.elapsed_seconds
                 FROM metrics m JOIN (SELECT run_key, max(step) AS step FROM metrics GROUP BY run_key) h
                   USING (run_key, step)",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    RunProgress {
                        step: r.get::<_, i64>(1)? as u64,
                        tokens: r.get::<_, i64>(2)? as u64,
                        train_loss: r.get::<_, Option<f64>>(3)?.unwrap_or(f64::NAN),
                        elapsed_seconds: r.get(4)?,
                    },
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// The newest validation loss at the training depth of every run that has one.
    pub fn latest_val_losses(&self) -> Result<std::collections::HashMap<String, f64>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT e.run_key, e.val_loss FROM evals e
                 JOIN (SELECT run_key, max(step) AS step FROM evals
                       WHERE test_loops IS NULL AND val_loss IS NOT NULL GROUP BY run_key) h
                   USING (run_key, step)
                 WHERE e.test_loops IS NULL AND e.val_loss IS NOT NULL",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// A run's logged steps after `after_step` (0 for all), in step order.
    pub fn train_points(&self, key: &str, after_step: u64) -> Result<Vec<TrainPoint>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT step, tokens, flops, train_loss, elapsed_seconds FROM metrics
                 WHERE run_key = ?1 AND step > ?2 ORDER BY step",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![key, after_step as i64], |r| {
                Ok(TrainPoint {
                    step: r.get::<_, i64>(0)? as u64,
                    tokens: r.get::<_, i64>(1)? as u64,
                    flops: r.get(2)?,
                    train_loss: r.get(3)?,
                    elapsed_seconds: r.get(4)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// A run's validation losses at its training depth (no test-time loop count, no named
    /// schedule), in step order.
    pub fn val_points(&self, key: &str) -> Result<Vec<ValPoint>, StoreError> {
        let sql = "SELECT step, tokens, flops, val_loss FROM evals
                   WHERE run_key = ?1 AND test_loops IS NULL AND schedule IS NULL ORDER BY step";
        let read = |sql: &str| -> Result<Vec<ValPoint>, StoreError> {
            let mut stmt = self.conn.prepare(sql).map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map([key], |r| {
                    Ok(ValPoint {
                        step: r.get::<_, i64>(0)? as u64,
                        tokens: r.get::<_, i64>(1)? as u64,
                        flops: r.get(2)?,
                        val_loss: r.get(3)?,
                    })
                })
                .map_err(|e| self.err(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
        };
        match read(sql) {
            // A store older than version 3 has no `evals.schedule`.
            Err(e) if missing_schema(&e) => read(&sql.replace(" AND schedule IS NULL", "")),
            other => other,
        }
    }

    /// One of a run's tables, every value as text; empty (no columns) where the store predates
    /// the table.
    pub fn run_table(&self, table: RunTable, key: &str) -> Result<QueryResult, StoreError> {
        let read = || -> Result<QueryResult, StoreError> {
            let mut stmt = self.conn.prepare(table.sql()).map_err(|e| self.err(e))?;
            let columns: Vec<String> = stmt.column_names().map(|c| c.to_string()).collect();
            let mut rows = Vec::new();
            let mut cursor = stmt.query([key]).map_err(|e| self.err(e))?;
            while let Some(row) = cursor.next().map_err(|e| self.err(e))? {
                rows.push(
                    (0..columns.len())
                        .map(|i| row.get_ref(i).map(super::query::render).unwrap_or_default())
                        .collect(),
                );
            }
            Ok(QueryResult { columns, rows })
        };
        match read() {
            Err(e) if missing_schema(&e) => Ok(QueryResult {
                columns: Vec::new(),
                rows: Vec::new(),
            }),
            other => other,
        }
    }
}
