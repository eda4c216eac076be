//! Recording fitted laws: one `fits` row and its `fit_params` rows, from a [`FitRecord`] of
//! plain values (the store does not know `loopscale_fit`'s types; `loopscale_analysis::record` makes
//! the record from a fit's result). The points a fit needs are read through `tables` and the
//! analysis frames.

use rusqlite::params;

use super::{NOW, Store, StoreError};

/// Whether a `fit_params` row is a fitted parameter or a quantity derived from them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FitParamKind {
    Param,
    Derived,
}

impl FitParamKind {
    fn as_str(self) -> &'static str {
        match self {
            FitParamKind::Param => "param",
            FitParamKind::Derived => "derived",
        }
    }
}

/// One `fit_params` row.
#[derive(Clone, Debug, PartialEq)]
pub struct FitParamRecord {
    pub name: String,
    pub kind: FitParamKind,
    pub value: f64,
    /// Percentile-interval bounds and coverage; `None` without a bootstrap.
    pub lo: Option<f64>,
    pub hi: Option<f64>,
    pub level: Option<f64>,
}

/// The held-out check of a fit: points predicted and the relative errors.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeldOutRecord {
    pub n: usize,
    pub mean_abs_rel_error: f64,
    pub max_abs_rel_error: f64,
}

/// One `fits` row with its parameters, as plain values.
#[derive(Clone, Debug, PartialEq)]
pub struct FitRecord {
    pub law: String,
    pub source: String,
    pub selection_json: String,
    pub curve: Option<String>,
    pub n_points: usize,
    /// Best objective; a non-finite one is stored as NULL.
    pub objective: f64,
    pub starts: usize,
    pub converged_starts: usize,
    pub heldout: Option<HeldOutRecord>,
    pub params: Vec<FitParamRecord>,
    /// What the fit does not support, in words; stored joined by "; ", NULL when empty.
    pub notes: Vec<String>,
    pub report_json: String,
}

impl Store {
    /// Records a fitted law and its parameters in one transaction; returns its `fit_id`.
    pub fn insert_fit(&mut self, fit: &FitRecord) -> Result<i64, StoreError> {
        let path = self.path.clone();
        let err = |e| StoreError::sqlite(&path, e);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        tx.execute(
            &format!(
                "INSERT INTO fits (law, source, selection, curve, n_points, objective, starts, converged_starts,
                    heldout_n, heldout_mean_abs_rel_error, heldout_max_abs_rel_error, report_json, notes, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, {NOW})"
            ),
            params![
                fit.law,
                fit.source,
                fit.selection_json,
                fit.curve,
                fit.n_points as i64,
                fit.objective.is_finite().then_some(fit.objective),
                fit.starts as i64,
                fit.converged_starts as i64,
                fit.heldout.as_ref().map(|h| h.n as i64),
                fit.heldout.as_ref().map(|h| h.mean_abs_rel_error),
                fit.heldout.as_ref().map(|h| h.max_abs_rel_error),
                fit.report_json,
                (!fit.notes.is_empty()).then(|| fit.notes.join("; ")),
            ],
        )
        .map_err(err)?;
        let fit_id = tx.last_insert_rowid();
        {
            let mut insert = tx
                .prepare("INSERT INTO fit_params (fit_id, name, kind, value, lo, hi, level) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
                .map_err(err)?;
            for p in &fit.params {
                insert
                    .execute(params![
                        fit_id,
                        p.name,
                        p.kind.as_str(),
                        p.value,
                        p.lo,
                        p.hi,
                        p.lo.and(p.level)
                    ])
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        Ok(fit_id)
    }
}
