//! Run stores: a run's own small store, written by its worker alone, merged into the sweep
//! database by the coordinator.
//!
//! A run store is an ordinary loopscale store (same schema, same `application_id`) holding one
//! run: its `sweeps` row, its `runs` row, and its `attempts`, `metrics` and `evals` rows. The
//! worker writes it with the same `Store` code it would use on the sweep database, so a run
//! does the same thing under every executor. Why SQLite rather than JSON lines: the tables
//! already have the keys that make merging idempotent (`metrics (run_key, step)`, `evals
//! (run_key, step, test_loops, schedule)`, `attempts (run_key, attempt)`), a crash mid-write is rolled
//! back by SQLite instead of leaving a torn last line, and nothing new has to be parsed.
//!
//! Run stores use the rollback journal (`journal_mode = DELETE`), not WAL: WAL needs shared memory
//! between processes, which network filesystems do not provide; a rollback journal needs only
//! POSIX byte-range locks. Each run store has exactly one writer (its worker), so locks are never
//! contended; the coordinator only reads run stores.
//!
//! Merging makes the database's rows for the run equal the run store's: it inserts what is new or
//! changed, deletes what the run store no longer has (measurements a resumed attempt discarded),
//! and counts what it changed. Merging the same run store twice changes nothing the second time.

use std::path::Path;

use rusqlite::params;

use super::{Store, StoreError};

/// The columns of `runs` that a worker changes (the rest are fixed at registration).
const RUN_STATE: &str = "status, attempts, steps_done, final_train_loss, final_val_loss, final_val_bpb, \
     bytes_per_token, peak_rss_bytes, text_passes, wall_seconds, tokens_per_second, loss_spikes, error, started_at, finished_at";

impl Store {
    /// Creates the run store of run `key` at `path` from this store's rows for the run, unless a
    /// run store is already there (it then holds the run's latest state and is left alone).
    /// Returns whether a run store was created. The file appears whole or not at all.
    pub fn seed_run_store(&self, key: &str, path: &Path) -> Result<bool, StoreError> {
        if path.exists() {
            return Ok(false);
        }
        let io = |source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(".tmp");
        let tmp = path.with_file_name(tmp_name);
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
        {
            let run_store = Store::open(&tmp)?;
            run_store
                .conn
                .pragma_update_and_check(None, "journal_mode", "delete", |_| Ok(()))
                .map_err(|e| run_store.err(e))?;
        }
        self.conn
            .execute("ATTACH DATABASE ?1 AS shard", [tmp.display().to_string()])
            .map_err(|e| self.err(e))?;
        let copied = self.conn.execute_batch(&format!(
            "BEGIN;
             INSERT INTO shard.sweeps SELECT * FROM main.sweeps WHERE name = (SELECT sweep FROM main.runs WHERE run_key = {k});
             INSERT INTO shard.runs SELECT * FROM main.runs WHERE run_key = {k};
             INSERT INTO shard.attempts SELECT * FROM main.attempts WHERE run_key = {k};
             INSERT INTO shard.metrics SELECT * FROM main.metrics WHERE run_key = {k};
             INSERT INTO shard.evals SELECT * FROM main.evals WHERE run_key = {k};
             INSERT INTO shard.exit_evals SELECT * FROM main.exit_evals WHERE run_key = {k};
             INSERT INTO shard.decode_evals SELECT * FROM main.decode_evals WHERE run_key = {k};
             INSERT INTO shard.icl_errors SELECT * FROM main.icl_errors WHERE run_key = {k};
             COMMIT;",
            k = sql_text(key)
        ));
        if copied.is_err() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        let detached = self.conn.execute("DETACH DATABASE shard", []);
        copied.map_err(|e| self.err(e))?;
        detached.map_err(|e| self.err(e))?;
        let rows: i64 = {
            let run_store = Store::open_read_only(&tmp)?;
            run_store
                .conn
                .query_row("SELECT count(*) FROM runs WHERE run_key = ?1", [key], |r| {
                    r.get(0)
                })
                .map_err(|e| run_store.err(e))?
        };
        if rows != 1 {
            let _ = std::fs::remove_file(&tmp);
            return Err(StoreError::Sqlite {
                path: self.path.clone(),
                cause: rusqlite::Error::QueryReturnedNoRows,
            });
        }
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        if let Some(dir) = path.parent() {
            let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(true)
    }

    /// Makes this store's rows for run `key` equal those of the run store at `path`. Returns the
    /// number of rows inserted, updated or deleted: 0 when the database already had it all.
    /// A missing run store (the run never started) changes nothing.
    pub fn merge_run_store(&mut self, key: &str, path: &Path) -> Result<usize, StoreError> {
        if !path.exists() {
            return Ok(0);
        }
        // Refuse anything that is not a loopscale store before attaching it. Opened writable on
        // purpose: a worker killed mid-transaction leaves a hot journal, which only a writer
        // may roll back (a read-only open fails with SQLITE_READONLY_ROLLBACK).
        drop(Store::open(path)?);
        self.conn
            .execute("ATTACH DATABASE ?1 AS shard", [path.display().to_string()])
            .map_err(|e| self.err(e))?;
        let merged = self.write(|tx| {
            let mut n = 0;
            n += tx.execute(
                &format!(
                    "UPDATE main.runs SET ({RUN_STATE}) = (SELECT {RUN_STATE} FROM shard.runs WHERE run_key = ?1)
                     WHERE run_key = ?1 AND EXISTS (SELECT 1 FROM shard.runs WHERE run_key = ?1)
                       AND ({RUN_STATE}) IS NOT (SELECT {RUN_STATE} FROM shard.runs WHERE run_key = ?1)"
                ),
                params![key],
            )?;
            for table in [
                "attempts",
                "metrics",
                "evals",
                "exit_evals",
                "decode_evals",
                "icl_errors",
            ] {
                n += tx.execute(
                    &format!(
                        "INSERT OR REPLACE INTO main.{table}
                         SELECT * FROM shard.{table} WHERE run_key = ?1
                         EXCEPT SELECT * FROM main.{table} WHERE run_key = ?1"
                    ),
                    params![key],
                )?;
            }
            n += tx.execute(
                "DELETE FROM main.attempts WHERE run_key = ?1
                 AND attempt NOT IN (SELECT attempt FROM shard.attempts WHERE run_key = ?1)",
                params![key],
            )?;
            n += tx.execute(
                "DELETE FROM main.metrics WHERE run_key = ?1
                 AND step NOT IN (SELECT step FROM shard.metrics WHERE run_key = ?1)",
                params![key],
            )?;
            n += tx.execute(
                "DELETE FROM main.evals WHERE run_key = ?1 AND NOT EXISTS (
                     SELECT 1 FROM shard.evals s WHERE s.run_key = ?1
                     AND s.step = main.evals.step AND s.test_loops IS main.evals.test_loops
                     AND s.schedule IS main.evals.schedule)",
                params![key],
            )?;
            n += tx.execute(
                "DELETE FROM main.exit_evals WHERE run_key = ?1 AND NOT EXISTS (
                     SELECT 1 FROM shard.exit_evals s WHERE s.run_key = ?1
                     AND s.step = main.exit_evals.step AND s.threshold = main.exit_evals.threshold
                     AND s.max_loops = main.exit_evals.max_loops)",
                params![key],
            )?;
            n += tx.execute(
                "DELETE FROM main.decode_evals WHERE run_key = ?1 AND NOT EXISTS (
                     SELECT 1 FROM shard.decode_evals s WHERE s.run_key = ?1
                     AND s.step = main.decode_evals.step AND s.loops IS main.decode_evals.loops)",
                params![key],
            )?;
            Ok(n)
        });
        let detached = self.conn.execute("DETACH DATABASE shard", []);
        let n = merged?;
        detached.map_err(|e| self.err(e))?;
        Ok(n)
    }
}

/// A string as an SQL literal (for the one batch that cannot take parameters).
fn sql_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
