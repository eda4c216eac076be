//! Reading the points a fit needs out of the runs, and recording fitted laws.

use rusqlite::params;

use super::{Store, StoreError, NOW};
use crate::fit::FitReport;

/// One finished run, as a point for a scaling law.
#[derive(Clone, Debug, PartialEq)]
pub struct RunPoint {
    pub run_key: String,
    pub params: f64,
    pub non_embedding_params: f64,
    pub tokens: f64,
    pub flops: f64,
    pub final_val_loss: f64,
    /// Mean training recurrence (looped runs only).
    pub mean_recurrence: Option<f64>,
}

/// One point of a test-time curve: a run's final validation loss at `test_loops` loops.
#[derive(Clone, Debug, PartialEq)]
pub struct TestTimePoint {
    pub run_key: String,
    pub test_loops: f64,
    pub val_loss: f64,
    pub mean_recurrence: Option<f64>,
}

impl Store {
    /// Finished runs with a final validation loss, of one sweep or of all.
    pub fn run_points(&self, sweep: Option<&str>) -> Result<Vec<RunPoint>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT run_key, params, non_embedding_params, tokens, flops, final_val_loss, mean_recurrence
                 FROM final_runs WHERE ?1 IS NULL OR sweep = ?1 ORDER BY flops, run_key",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([sweep], |r| {
                Ok(RunPoint {
                    run_key: r.get(0)?,
                    params: r.get::<_, i64>(1)? as f64,
                    non_embedding_params: r.get::<_, i64>(2)? as f64,
                    tokens: r.get::<_, i64>(3)? as f64,
                    flops: r.get(4)?,
                    final_val_loss: r.get(5)?,
                    mean_recurrence: r.get::<_, Option<i64>>(6)?.map(|v| v as f64),
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Test-time curves: each finished run's evaluations at explicit loop counts, taken at its
    /// last evaluated step.
    pub fn test_time_points(&self, sweep: Option<&str>) -> Result<Vec<TestTimePoint>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT run_key, test_loops, val_loss, mean_recurrence FROM test_time_curves
                 WHERE val_loss IS NOT NULL AND (?1 IS NULL OR sweep = ?1) ORDER BY run_key, test_loops",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([sweep], |r| {
                Ok(TestTimePoint {
                    run_key: r.get(0)?,
                    test_loops: r.get::<_, i64>(1)? as f64,
                    val_loss: r.get(2)?,
                    mean_recurrence: r.get::<_, Option<i64>>(3)?.map(|v| v as f64),
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Records a fitted law and its parameters in one transaction; returns its `fit_id`.
    pub fn insert_fit(
        &mut self,
        law: &str,
        source: &str,
        selection_json: &str,
        curve: Option<&str>,
        report: &FitReport,
        report_json: &str,
    ) -> Result<i64, StoreError> {
        let path = self.path.clone();
        let err = |e| StoreError::sqlite(&path, e);
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute(
            &format!(
                "INSERT INTO fits (law, source, selection, curve, n_points, objective, starts, converged_starts,
                    heldout_n, heldout_mean_abs_rel_error, heldout_max_abs_rel_error, report_json, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, {NOW})"
            ),
            params![
                law,
                source,
                selection_json,
                curve,
                report.n_points as i64,
                report.objective.is_finite().then_some(report.objective),
                report.starts as i64,
                report.converged_starts as i64,
                report.heldout.as_ref().map(|h| h.n as i64),
                report.heldout.as_ref().map(|h| h.mean_abs_rel_error),
                report.heldout.as_ref().map(|h| h.max_abs_rel_error),
                report_json,
            ],
        )
        .map_err(err)?;
        let fit_id = tx.last_insert_rowid();
        let level = report.bootstrap.as_ref().map(|b| b.level);
        {
            let mut insert = tx
                .prepare("INSERT INTO fit_params (fit_id, name, kind, value, lo, hi, level) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
                .map_err(err)?;
            for (kind, list) in [("param", &report.params), ("derived", &report.derived)] {
                for p in list {
                    insert
                        .execute(params![fit_id, p.name, kind, p.value, p.lo, p.hi, p.lo.and(level)])
                        .map_err(err)?;
                }
            }
        }
        tx.commit().map_err(err)?;
        Ok(fit_id)
    }
}
