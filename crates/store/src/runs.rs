//! Runs and their measurements: registering a sweep's runs, a worker's life cycle
//! (start → metrics → finish), and reading state back for status and progress.

use rusqlite::{OptionalExtension, Row, params};

use super::{NOW, Store, StoreError};
use loopscale_config::RunConfig;
use loopscale_model::Arch;
use loopscale_train::{
    DecodeEvalMetrics, EvalMetrics, ExitEvalMetrics, IclError, RunEnd, RunOutcome, StepMetrics,
    TimeSplit,
};

/// Life cycle of a run. `done`, `diverged` are final; the others are picked up by the next `run`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStatus {
    Pending,
    Running,
    Done,
    Failed,
    Diverged,
    Interrupted,
    /// Waits on a parent run that failed or diverged (`error` says which, and why); the next
    /// `run` tries again once the parent can be trained again.
    Blocked,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Done => "done",
            RunStatus::Failed => "failed",
            RunStatus::Diverged => "diverged",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Blocked => "blocked",
        }
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        Some(match s {
            "pending" => RunStatus::Pending,
            "running" => RunStatus::Running,
            "done" => RunStatus::Done,
            "failed" => RunStatus::Failed,
            "diverged" => RunStatus::Diverged,
            "interrupted" => RunStatus::Interrupted,
            "blocked" => RunStatus::Blocked,
            _ => return None,
        })
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A planned run, as registered before training.
#[derive(Clone, Debug)]
pub struct NewRun {
    pub key: String,
    pub variant: Option<String>,
    pub config: RunConfig,
    pub params: u64,
    pub non_embedding_params: u64,
    pub tokens: u64,
    pub flops: f64,
}

/// A run as the store knows it.
#[derive(Clone, Debug)]
pub struct RunRow {
    pub key: String,
    pub sweep: String,
    pub variant: Option<String>,
    pub config: RunConfig,
    pub params: u64,
    pub non_embedding_params: u64,
    pub tokens: u64,
    pub flops: f64,
    pub status: RunStatus,
    pub attempts: u32,
    pub steps_done: Option<u64>,
    pub final_train_loss: Option<f64>,
    pub final_val_loss: Option<f64>,
    pub final_val_bpb: Option<f64>,
    pub wall_seconds: Option<f64>,
    pub tokens_per_second: Option<f64>,
    pub error: Option<String>,
    pub loss_spikes: Option<u32>,
}

/// The newest measurement of a run, for progress displays.
#[derive(Clone, Debug, Default)]
pub struct RunProgress {
    pub step: u64,
    pub tokens: u64,
    pub train_loss: f64,
    pub elapsed_seconds: f64,
}

const RUN_COLUMNS: &str = "run_key, sweep, variant, config_json, params, non_embedding_params, tokens, flops, \
     status, attempts, steps_done, final_train_loss, final_val_loss, final_val_bpb, wall_seconds, \
     tokens_per_second, error, loss_spikes";

fn run_row(row: &Row) -> rusqlite::Result<RunRow> {
    let config_json: String = row.get(3)?;
    let config: RunConfig = serde_json::from_str(&config_json).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e))
    })?;
    let status: String = row.get(8)?;
    Ok(RunRow {
        key: row.get(0)?,
        sweep: row.get(1)?,
        variant: row.get(2)?,
        config,
        params: row.get::<_, i64>(4)? as u64,
        non_embedding_params: row.get::<_, i64>(5)? as u64,
        tokens: row.get::<_, i64>(6)? as u64,
        flops: row.get(7)?,
        status: RunStatus::parse(&status).unwrap_or(RunStatus::Failed),
        attempts: row.get::<_, i64>(9)? as u32,
        steps_done: row.get::<_, Option<i64>>(10)?.map(|v| v as u64),
        final_train_loss: row.get(11)?,
        final_val_loss: row.get(12)?,
        final_val_bpb: row.get(13)?,
        wall_seconds: row.get(14)?,
        tokens_per_second: row.get(15)?,
        error: row.get(16)?,
        loss_spikes: row.get::<_, Option<i64>>(17)?.map(|v| v as u32),
    })
}

fn arch_str(arch: Arch) -> &'static str {
    match arch {
        Arch::Gpt => "gpt",
        Arch::Looped => "looped",
    }
}

fn enum_str<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

impl Store {
    /// Records the sweep file and registers its runs; runs already present are left as they are.
    /// Returns how many runs were new.
    pub fn register_sweep(
        &mut self,
        name: &str,
        description: &str,
        spec_path: &str,
        spec_toml: &str,
        runs: &[NewRun],
    ) -> Result<usize, StoreError> {
        self.write(|tx| {
        tx.execute(
            &format!(
                "INSERT INTO sweeps (name, description, spec_path, spec_toml, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, {NOW}, {NOW})
                 ON CONFLICT(name) DO UPDATE SET description = ?2, spec_path = ?3, spec_toml = ?4, updated_at = {NOW}"
            ),
            params![name, description, spec_path, spec_toml],
        )
        ?;
        let mut added = 0;
        {
            let mut insert = tx
                .prepare(&format!(
                    "INSERT OR IGNORE INTO runs (run_key, sweep, variant, config_json, arch, d_model, n_heads,
                        n_layers, mlp, seq_len, batch_size, lr, seed, injection, n_prelude, n_core, n_coda,
                        mean_recurrence, backprop_depth, params, non_embedding_params, tokens, flops, role,
                        parent_run_key, parent_step, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
                        ?20, ?21, ?22, ?23, ?24, ?25, ?26, {NOW})"
                ))
                ?;
            for run in runs {
                let c = &run.config;
                let m = &c.model;
                let looped = m.looped.as_ref();
                let n_layers = m.distinct_blocks();
                added += insert
                    .execute(params![
                        run.key,
                        name,
                        run.variant,
                        c.canonical_json(),
                        arch_str(m.arch),
                        m.d_model as i64,
                        m.n_heads as i64,
                        n_layers as i64,
                        enum_str(&m.mlp),
                        c.data.seq_len as i64,
                        c.train.batch_size as i64,
                        c.train.lr,
                        c.seed as i64,
                        looped.map(|l| enum_str(&l.injection)),
                        looped.map(|l| l.n_prelude as i64),
                        looped.map(|l| l.n_core as i64),
                        looped.map(|l| l.n_coda as i64),
                        looped.map(|l| l.mean_recurrence as i64),
                        looped.map(|l| l.backprop_depth() as i64),
                        run.params as i64,
                        run.non_embedding_params as i64,
                        run.tokens as i64,
                        run.flops,
                        c.lineage.as_ref().map(|l| l.role.as_str()),
                        c.parent(),
                        c.lineage.as_ref().and_then(|l| l.parent_step).map(|s| s as i64),
                    ])
                    ?;
            }
        }
        Ok(added)
        })
    }

    /// All runs of a sweep, in registration order.
    pub fn runs(&self, sweep: &str) -> Result<Vec<RunRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE sweep = ?1 ORDER BY rowid"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([sweep], run_row).map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// One run by key.
    pub fn run(&self, key: &str) -> Result<Option<RunRow>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE run_key = ?1"),
                [key],
                run_row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Names of the sweeps recorded in this store.
    pub fn sweep_names(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name FROM sweeps ORDER BY created_at")
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Runs left `running` by a coordinator that is gone become `interrupted`. Call only while
    /// holding the sweep lock, when no worker of this store can be alive.
    pub fn release_stale_runs(&mut self, sweep: &str) -> Result<usize, StoreError> {
        self.write(|tx| {
            tx.execute(
                &format!(
                    "UPDATE attempts SET status = 'interrupted', finished_at = {NOW}, error = 'worker vanished'
                     WHERE status = 'running' AND run_key IN (SELECT run_key FROM runs WHERE sweep = ?1 AND status = 'running')"
                ),
                [sweep],
            )?;
            tx.execute("UPDATE runs SET status = 'interrupted' WHERE sweep = ?1 AND status = 'running'", [sweep])
        })
    }

    /// Every run built on `key`, transitively (children before grandchildren), that is not
    /// over (`done`, `diverged`) or already `blocked`.
    pub fn unfinished_descendants(&self, key: &str) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT run_key FROM runs WHERE parent_run_key = ?1
                 AND status NOT IN ('done', 'diverged', 'blocked') ORDER BY rowid",
            )
            .map_err(|e| self.err(e))?;
        let mut out: Vec<String> = Vec::new();
        let mut next = 0;
        let mut parent = key.to_string();
        loop {
            let children: Vec<String> = stmt
                .query_map([&parent], |r| r.get(0))
                .and_then(|rows| rows.collect())
                .map_err(|e| self.err(e))?;
            out.extend(children.into_iter().filter(|c| c != key));
            let Some(p) = out.get(next) else {
                return Ok(out);
            };
            parent = p.clone();
            next += 1;
        }
    }

    /// A run that cannot start because its parent has no result: `blocked`, with `why`.
    pub fn block_run(&mut self, key: &str, why: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE runs SET status = 'blocked', error = ?2 WHERE run_key = ?1",
                params![key, why],
            )
            .map(|_| ())
        })
    }

    /// A blocked run waits again (`pending`): its parent is to be retried.
    pub fn unblock_run(&mut self, key: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE runs SET status = 'pending', error = NULL WHERE run_key = ?1 AND status = 'blocked'",
                [key],
            )
            .map(|_| ())
        })
    }

    /// A worker takes a run: a new attempt begins. Returns the attempt number. Measurements of
    /// earlier attempts stay; the trainer says from which step it continues, and
    /// [`Store::discard_after`] drops what comes after.
    pub fn start_attempt(&mut self, key: &str, log_path: Option<&str>) -> Result<u32, StoreError> {
        self.write(|tx| {
            tx.execute(
                &format!(
                    "UPDATE runs SET status = 'running', attempts = attempts + 1, started_at = {NOW}, finished_at = NULL,
                     error = NULL, steps_done = 0, final_train_loss = NULL, final_val_loss = NULL, final_val_bpb = NULL,
                     wall_seconds = NULL, tokens_per_second = NULL, loss_spikes = NULL WHERE run_key = ?1"
                ),
                [key],
            )?;
            let attempt: i64 = tx.query_row("SELECT attempts FROM runs WHERE run_key = ?1", [key], |r| r.get(0))?;
            tx.execute(
                &format!("INSERT INTO attempts (run_key, attempt, started_at, status, log_path) VALUES (?1, ?2, {NOW}, 'running', ?3)"),
                params![key, attempt, log_path],
            )?;
            Ok(attempt as u32)
        })
    }

    /// Deletes a run's measurements after step `step` (all of them for 0): a resumed run
    /// continues from a checkpoint at `step`, and rows a dead attempt wrote after it are void.
    pub fn discard_after(&mut self, key: &str, step: u64) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM metrics WHERE run_key = ?1 AND step > ?2",
                params![key, step as i64],
            )?;
            tx.execute(
                "DELETE FROM evals WHERE run_key = ?1 AND step > ?2",
                params![key, step as i64],
            )?;
            tx.execute(
                "DELETE FROM exit_evals WHERE run_key = ?1 AND step > ?2",
                params![key, step as i64],
            )?;
            tx.execute(
                "DELETE FROM decode_evals WHERE run_key = ?1 AND step > ?2",
                params![key, step as i64],
            )?;
            Ok(())
        })
    }

    /// Records a finished regression run's in-context errors (replacing any it had).
    pub fn record_icl_errors(&mut self, key: &str, errors: &[IclError]) -> Result<(), StoreError> {
        self.write(|tx| {
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO icl_errors (run_key, estimator, test_loops, n_examples, error)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for e in errors {
                insert.execute(params![
                    key,
                    e.estimator,
                    e.test_loops.map(|t| t as i64),
                    e.n_examples as i64,
                    finite(e.error)
                ])?;
            }
            Ok(())
        })
    }

    /// Appends measurements of a running run (one transaction).
    pub fn record(
        &mut self,
        key: &str,
        steps: &[StepMetrics],
        evals: &[EvalMetrics],
    ) -> Result<(), StoreError> {
        self.write(|tx| insert_measurements(tx, key, steps, evals))
    }

    /// Records early-exit evaluations (LoopUS), replacing any earlier row of the same run,
    /// step, threshold and cap (one transaction).
    pub fn record_exit_evals(
        &mut self,
        key: &str,
        evals: &[ExitEvalMetrics],
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            for e in evals {
                tx.execute(
                    "INSERT OR REPLACE INTO exit_evals
                     (run_key, step, threshold, max_loops, mean_loops, val_loss)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        key,
                        e.step as i64,
                        e.threshold,
                        e.max_loops as i64,
                        e.mean_loops,
                        finite(e.val_loss)
                    ],
                )?;
            }
            Ok(())
        })
    }

    /// Records decoding measurements, replacing any earlier row of the same run, step and loop
    /// count (one transaction).
    pub fn record_decode_evals(
        &mut self,
        key: &str,
        evals: &[DecodeEvalMetrics],
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            for e in evals {
                tx.execute(
                    "DELETE FROM decode_evals WHERE run_key = ?1 AND step = ?2 AND loops IS ?3",
                    params![key, e.step as i64, e.loops.map(|l| l as i64)],
                )?;
                tx.execute(
                    "INSERT INTO decode_evals
                     (run_key, step, loops, tokens, kv_bytes_per_token, peak_cache_bytes,
                      tokens_per_s, val_loss)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        key,
                        e.step as i64,
                        e.loops.map(|l| l as i64),
                        e.tokens as i64,
                        e.kv_bytes_per_token,
                        e.peak_cache_bytes as i64,
                        finite(e.tokens_per_s),
                        finite(e.val_loss)
                    ],
                )?;
            }
            Ok(())
        })
    }

    /// Ends an attempt: the remaining measurements and the run's outcome in one transaction.
    pub fn finish_attempt(
        &mut self,
        key: &str,
        attempt: u32,
        steps: &[StepMetrics],
        evals: &[EvalMetrics],
        outcome: &RunOutcome,
    ) -> Result<(), StoreError> {
        let (status, error) = match &outcome.end {
            RunEnd::Done => (RunStatus::Done, None),
            RunEnd::Diverged(why) => (RunStatus::Diverged, Some(why.clone())),
            RunEnd::Interrupted => (RunStatus::Interrupted, None),
        };
        self.write(|tx| {
            insert_measurements(tx, key, steps, evals)?;
            tx.execute(
                &format!(
                    "UPDATE runs SET status = ?2, steps_done = ?3, final_train_loss = ?4, final_val_loss = ?5,
                     final_val_bpb = ?6, wall_seconds = ?7, tokens_per_second = ?8, error = ?9,
                     loss_spikes = ?10, bytes_per_token = ?11, peak_rss_bytes = ?12, text_passes = ?13,
                     finished_at = {NOW}
                     WHERE run_key = ?1"
                ),
                params![
                    key,
                    status.as_str(),
                    outcome.steps as i64,
                    outcome.final_train_loss.and_then(finite),
                    outcome.final_val_loss.and_then(finite),
                    outcome.final_val_bpb.and_then(finite),
                    outcome.wall_seconds,
                    outcome.tokens_per_second,
                    error,
                    outcome.loss_spikes,
                    outcome.bytes_per_token.and_then(finite),
                    outcome.peak_rss_bytes.map(|b| b as i64),
                    outcome.text_passes.and_then(finite),
                ],
            )?;
            let t = &outcome.time;
            // A trainer that does not split its time (another program) leaves the columns NULL.
            let seconds = |x: f64| (t.total > 0.0).then_some(x);
            tx.execute(
                &format!(
                    "UPDATE attempts SET status = ?3, error = ?4, finished_at = {NOW},
                     seconds_steps = ?5, seconds_evals = ?6, seconds_test_evals = ?7,
                     seconds_decode_evals = ?8, seconds_checkpoints = ?9, seconds_records = ?10,
                     seconds_total = ?11
                     WHERE run_key = ?1 AND attempt = ?2"
                ),
                params![
                    key,
                    attempt,
                    status.as_str(),
                    error,
                    seconds(t.steps),
                    seconds(t.evals),
                    seconds(t.test_evals),
                    seconds(t.decode_evals),
                    seconds(t.checkpoints),
                    seconds(t.records),
                    seconds(t.total),
                ],
            )?;
            Ok(())
        })
    }

    /// The time split of every attempt of `sweep` (every sweep's, with `None`) that recorded
    /// one, summed, with how many attempts it covers (`None` when no attempt recorded a split).
    pub fn sweep_time_split(
        &self,
        sweep: Option<&str>,
    ) -> Result<Option<(TimeSplit, u64)>, StoreError> {
        self.conn
            .query_row(
                "SELECT COUNT(*), SUM(a.seconds_steps), SUM(a.seconds_evals), SUM(a.seconds_test_evals),
                        SUM(a.seconds_decode_evals), SUM(a.seconds_checkpoints), SUM(a.seconds_records),
                        SUM(a.seconds_total)
                 FROM attempts a JOIN runs r USING (run_key)
                 WHERE (?1 IS NULL OR r.sweep = ?1) AND a.seconds_total IS NOT NULL",
                params![sweep],
                |row| {
                    let n: i64 = row.get(0)?;
                    let s = |i| row.get::<_, Option<f64>>(i).map(Option::unwrap_or_default);
                    Ok((n > 0).then_some((
                        TimeSplit {
                            steps: s(1)?,
                            evals: s(2)?,
                            test_evals: s(3)?,
                            decode_evals: s(4)?,
                            checkpoints: s(5)?,
                            records: s(6)?,
                            total: s(7)?,
                        },
                        n as u64,
                    )))
                },
            )
            .map_err(|e| self.err(e))
    }

    /// Ends an attempt that failed with an error (not a divergence).
    pub fn fail_attempt(
        &mut self,
        key: &str,
        attempt: Option<u32>,
        error: &str,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                &format!("UPDATE runs SET status = 'failed', error = ?2, finished_at = {NOW} WHERE run_key = ?1"),
                params![key, error],
            )?;
            let attempt = match attempt {
                Some(a) => a as i64,
                None => tx.query_row("SELECT attempts FROM runs WHERE run_key = ?1", [key], |r| r.get(0))?,
            };
            tx.execute(
                &format!(
                    "UPDATE attempts SET status = 'failed', error = ?3, finished_at = {NOW}
                     WHERE run_key = ?1 AND attempt = ?2 AND status = 'running'"
                ),
                params![key, attempt, error],
            )?;
            Ok(())
        })
    }

    /// Ends the running attempt of a run that was stopped on purpose without recording its end
    /// (a second Ctrl-C): the run is `interrupted`, to resume from its last checkpoint.
    pub fn interrupt_attempt(&mut self, key: &str, why: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                &format!("UPDATE runs SET status = 'interrupted', error = ?2, finished_at = {NOW} WHERE run_key = ?1"),
                params![key, why],
            )?;
            tx.execute(
                &format!(
                    "UPDATE attempts SET status = 'interrupted', error = ?2, finished_at = {NOW}
                     WHERE run_key = ?1 AND status = 'running'"
                ),
                params![key, why],
            )?;
            Ok(())
        })
    }

    /// Newest logged step of a run, if any.
    pub fn progress(&self, key: &str) -> Result<Option<RunProgress>, StoreError> {
        self.conn
            .query_row(
                "SELECT step, tokens, train_loss, elapsed_seconds FROM metrics WHERE run_key = ?1 ORDER BY step DESC LIMIT 1",
                [key],
                |r| {
                    Ok(RunProgress {
                        step: r.get::<_, i64>(0)? as u64,
                        tokens: r.get::<_, i64>(1)? as u64,
                        train_loss: r.get::<_, Option<f64>>(2)?.unwrap_or(f64::NAN),
                        elapsed_seconds: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Training losses of a run in step order (`None` where the loss was not finite).
    pub fn train_losses(&self, key: &str) -> Result<Vec<(u64, Option<f64>)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT step, train_loss FROM metrics WHERE run_key = ?1 ORDER BY step")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([key], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }
}

fn insert_measurements(
    tx: &rusqlite::Transaction,
    key: &str,
    steps: &[StepMetrics],
    evals: &[EvalMetrics],
) -> rusqlite::Result<()> {
    let mut step_insert = tx.prepare_cached(
        "INSERT OR REPLACE INTO metrics (run_key, step, tokens, flops, train_loss, lr, grad_norm, elapsed_seconds,
         state_norm, injection_norm)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    for m in steps {
        step_insert.execute(params![
            key,
            m.step as i64,
            m.tokens as i64,
            m.flops,
            finite(m.train_loss),
            m.lr,
            finite(m.grad_norm),
            m.elapsed_seconds,
            m.state_norm.and_then(finite),
            m.injection_norm.and_then(finite)
        ])?;
    }
    let mut eval_insert = tx.prepare_cached(
        "INSERT OR REPLACE INTO evals (run_key, step, tokens, flops, test_loops, val_loss, val_bpb,
         schedule, accuracy, position_accuracy)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    for e in evals {
        eval_insert.execute(params![
            key,
            e.step as i64,
            e.tokens as i64,
            e.flops,
            e.test_loops.map(|t| t as i64),
            finite(e.val_loss),
            finite(e.val_bpb),
            e.schedule,
            e.accuracy.and_then(finite),
            e.position_accuracy.and_then(finite)
        ])?;
    }
    Ok(())
}

/// SQLite has no NaN or infinity (it stores NaN as NULL anyway); say so explicitly.
fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}
