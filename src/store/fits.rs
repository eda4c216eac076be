//! Recording fitted laws (the points a fit needs are read through `tables` and the analysis
//! frames).

use rusqlite::params;

use super::{NOW, Store, StoreError};
use crate::fit::FitReport;

impl Store {
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
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
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
                        .execute(params![
                            fit_id,
                            p.name,
                            kind,
                            p.value,
                            p.lo,
                            p.hi,
                            p.lo.and(level)
                        ])
                        .map_err(err)?;
                }
            }
        }
        tx.commit().map_err(err)?;
        Ok(fit_id)
    }
}
