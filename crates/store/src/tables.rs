//! Whole views and tables read column by column, for the analysis frames built above the store.
//!
//! Each [`Table`] names one question the report and the fits ask of a database; the SQL for it
//! lives here, so `analysis` builds its polars frames without writing SQL. Columns come back
//! typed by what SQLite stored (integer, real, text), NULL as `None`.

use rusqlite::types::ValueRef;

use super::{Store, StoreError};

/// The questions the analysis asks, one SQL statement each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// The `final_runs` view: finished runs with their final losses.
    FinalRuns,
    /// Every logged training step of finished runs (`metrics`), in step order.
    TrainingSteps,
    /// Validation evaluations of finished runs at their training depth (`evals` with
    /// `test_loops IS NULL`), in step order.
    ValidationEvals,
    /// The `compute_frontier` view.
    ComputeFrontier,
    /// The `test_time_curves` view, rows with a loss.
    TestTimeCurves,
    /// The `budget_curves` view (loss vs loop budget per run and schedule), rows with a loss.
    BudgetCurves,
    /// Each finished run's resolved configuration (`runs.config_json`), for what the views do
    /// not carry (the split of a looped model's parameters behind N(μ)).
    RunConfigs,
    /// Runs built on runs (the `lineage` view): each run's role, parent and parent step,
    /// trunks included (they are not in `final_runs`).
    Lineage,
    /// LoopUS early exit of finished runs (`exit_evals`) at each run's last evaluated step.
    ExitEvals,
    /// Decoding through the KV cache (`decode_evals`, schema version 8) of finished runs at their
    /// last measured step, with each run's kind (`gpt`, `looped`, or its role: `melt`, …).
    DecodeEvals,
    /// Task accuracy of finished runs at their last evaluated step (`evals.accuracy`, schema
    /// version 6), with what effective depth is made of: one row per run and `test_loops`.
    TaskAccuracy,
    /// In-context regression errors of finished runs (`icl_errors`, schema version 6).
    IclErrors,
    /// The sweep files run into the database (`sweeps`: `name`, `spec_toml`), for what they
    /// say about their analysis (`[analysis] tune`).
    SweepFiles,
}

impl Table {
    fn sql(self) -> &'static str {
        // ?1 is the sweep, NULL for every sweep in the file.
        match self {
            Table::FinalRuns => "SELECT * FROM final_runs WHERE ?1 IS NULL OR sweep = ?1 ORDER BY flops, run_key",
            Table::TrainingSteps => {
                "SELECT m.run_key, m.step, m.tokens, m.flops, m.train_loss, m.lr, m.grad_norm,
                        m.state_norm, m.injection_norm
                 FROM metrics m JOIN final_runs r USING (run_key)
                 WHERE ?1 IS NULL OR r.sweep = ?1 ORDER BY m.run_key, m.step"
            }
            Table::ValidationEvals => {
                "SELECT e.run_key, e.step, e.tokens, e.flops, e.val_loss, e.val_bpb
                 FROM evals e JOIN final_runs r USING (run_key)
                 WHERE e.test_loops IS NULL AND (?1 IS NULL OR r.sweep = ?1) ORDER BY e.run_key, e.step"
            }
            Table::ComputeFrontier => {
                "SELECT * FROM compute_frontier WHERE ?1 IS NULL OR sweep = ?1 ORDER BY sweep, flops"
            }
            Table::TestTimeCurves => {
                "SELECT * FROM test_time_curves WHERE val_loss IS NOT NULL AND (?1 IS NULL OR sweep = ?1)
                 ORDER BY run_key, test_loops"
            }
            Table::BudgetCurves => {
                "SELECT run_key, test_loops, schedule, val_loss FROM budget_curves
                 WHERE val_loss IS NOT NULL AND (?1 IS NULL OR sweep = ?1)
                 ORDER BY run_key, schedule, test_loops"
            }
            Table::TaskAccuracy => {
                "SELECT e.run_key, r.sweep, r.variant, r.arch, r.n_layers, r.n_prelude, r.n_core, r.n_coda,
                        r.mean_recurrence, e.test_loops, e.accuracy, e.val_loss
                 FROM evals e JOIN runs r USING (run_key)
                 WHERE r.status = 'done' AND e.accuracy IS NOT NULL AND IFNULL(e.schedule, 'uniform') = 'uniform'
                   AND (?1 IS NULL OR r.sweep = ?1)
                   AND e.step = (SELECT max(step) FROM evals x WHERE x.run_key = e.run_key)
                 ORDER BY e.run_key, IFNULL(e.test_loops, 0)"
            }
            Table::IclErrors => {
                "SELECT i.run_key, r.sweep, r.variant, r.arch, r.n_layers, r.mean_recurrence,
                        i.estimator, i.test_loops, i.n_examples, i.error
                 FROM icl_errors i JOIN runs r USING (run_key)
                 WHERE r.status = 'done' AND (?1 IS NULL OR r.sweep = ?1)
                 ORDER BY i.run_key, i.estimator, IFNULL(i.test_loops, 0), i.n_examples"
            }
            Table::RunConfigs => {
                "SELECT r.run_key, r.config_json FROM runs r JOIN final_runs f USING (run_key)
                 WHERE ?1 IS NULL OR f.sweep = ?1 ORDER BY r.run_key"
            }
            Table::SweepFiles => {
                "SELECT name, spec_toml FROM sweeps WHERE ?1 IS NULL OR name = ?1 ORDER BY name"
            }
            Table::Lineage => {
                "SELECT run_key, role, parent_run_key, parent_step, status, tokens, final_val_loss
                 FROM lineage WHERE ?1 IS NULL OR sweep = ?1 ORDER BY run_key"
            }
            Table::DecodeEvals => {
                "SELECT d.run_key, IFNULL(r.role, r.arch) AS kind, r.variant, d.loops,
                        d.kv_bytes_per_token, d.peak_cache_bytes, d.tokens_per_s, d.val_loss
                 FROM decode_evals d JOIN runs r USING (run_key)
                 WHERE r.status = 'done' AND (?1 IS NULL OR r.sweep = ?1)
                   AND d.step = (SELECT max(step) FROM decode_evals y WHERE y.run_key = d.run_key)
                 ORDER BY d.run_key, IFNULL(d.loops, 0)"
            }
            Table::ExitEvals => {
                "SELECT x.run_key, x.threshold, x.max_loops, x.mean_loops, x.val_loss
                 FROM exit_evals x JOIN final_runs r USING (run_key)
                 WHERE x.val_loss IS NOT NULL AND (?1 IS NULL OR r.sweep = ?1)
                   AND x.step = (SELECT max(step) FROM exit_evals y WHERE y.run_key = x.run_key)
                 ORDER BY x.run_key, x.max_loops, x.threshold"
            }
        }
    }
}

/// One column of a [`Columns`] result.
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnData {
    Int(Vec<Option<i64>>),
    Real(Vec<Option<f64>>),
    Text(Vec<Option<String>>),
}

/// A query's result, column by column.
#[derive(Clone, Debug, PartialEq)]
pub struct Columns {
    pub names: Vec<String>,
    pub data: Vec<ColumnData>,
    pub rows: usize,
}

impl Store {
    /// Reads one of the analysis tables, of one sweep or (`None`) of every sweep in the file.
    pub fn read_table(&self, table: Table, sweep: Option<&str>) -> Result<Columns, StoreError> {
        let mut stmt = self.conn.prepare(table.sql()).map_err(|e| self.err(e))?;
        let names: Vec<String> = stmt.column_names().map(|c| c.to_string()).collect();
        let n = names.len();
        // Values are collected untyped first: a column's type is what its non-NULL values are
        // (SQLite types values, not columns), decided once all rows are in.
        let mut cells: Vec<Vec<Cell>> = vec![Vec::new(); n];
        let mut cursor = stmt.query([sweep]).map_err(|e| self.err(e))?;
        let mut rows = 0;
        while let Some(row) = cursor.next().map_err(|e| self.err(e))? {
            for (i, col) in cells.iter_mut().enumerate() {
                col.push(Cell::of(row.get_ref(i).map_err(|e| self.err(e))?));
            }
            rows += 1;
        }
        Ok(Columns::of_cells(names, cells, rows))
    }
}

/// One value as SQLite stored it; [`Columns::of_cells`] decides each column's type from them.
/// Shared by the analysis tables and `loopscale sql`'s exports, so both type columns alike.
#[derive(Clone, Debug)]
pub(crate) enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    /// Nothing reads BLOBs as values: the analysis reads them as NULL, exports refuse them.
    Blob,
}

impl Cell {
    pub(crate) fn of(value: ValueRef) -> Cell {
        match value {
            ValueRef::Null => Cell::Null,
            ValueRef::Integer(v) => Cell::Int(v),
            ValueRef::Real(v) => Cell::Real(v),
            ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(_) => Cell::Blob,
        }
    }
}

impl Columns {
    /// Columns typed from their cells (`cells[column][row]`), each by [`typed`].
    pub(crate) fn of_cells(names: Vec<String>, cells: Vec<Vec<Cell>>, rows: usize) -> Columns {
        let data = cells.into_iter().map(typed).collect();
        Columns { names, data, rows }
    }
}

/// Text if any value is text, else real if any is real, else integer (an all-NULL column is
/// real, the type of every measurement).
fn typed(col: Vec<Cell>) -> ColumnData {
    let any = |f: fn(&Cell) -> bool| col.iter().any(f);
    if any(|c| matches!(c, Cell::Text(_))) {
        ColumnData::Text(
            col.into_iter()
                .map(|c| match c {
                    Cell::Null | Cell::Blob => None,
                    Cell::Int(v) => Some(v.to_string()),
                    Cell::Real(v) => Some(v.to_string()),
                    Cell::Text(t) => Some(t),
                })
                .collect(),
        )
    } else if any(|c| matches!(c, Cell::Int(_))) && !any(|c| matches!(c, Cell::Real(_))) {
        ColumnData::Int(
            col.into_iter()
                .map(|c| if let Cell::Int(v) = c { Some(v) } else { None })
                .collect(),
        )
    } else {
        ColumnData::Real(
            col.into_iter()
                .map(|c| match c {
                    Cell::Int(v) => Some(v as f64),
                    Cell::Real(v) => Some(v),
                    _ => None,
                })
                .collect(),
        )
    }
}
