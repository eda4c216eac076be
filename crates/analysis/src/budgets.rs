//! FLOP budgets (iso-FLOP groups): runs whose training FLOPs lie within a relative tolerance of
//! each other share a budget, as `loopscale fit --law isoflop` groups them
//! ([`loopscale_fit::isoflop::group_budgets`], the one implementation of the grouping).

use anyhow::Result;
use polars::prelude::{Column, DataFrame};

use super::columns::f64s;
use loopscale_fit::isoflop::group_budgets;
use loopscale_fit::{Budgeting, Points};

/// The default relative tolerance of a budget (`loopscale fit --budget-tolerance`).
pub const BUDGET_TOLERANCE: f64 = 0.1;

/// `runs` with two more columns: `budget` (its label, the budget's FLOPs as text) and
/// `budget_flops` (the geometric mean of its runs' FLOPs).
pub fn with_budgets(runs: &DataFrame, tolerance: f64) -> Result<DataFrame> {
    let c = f64s(runs, "flops")?;
    let points = Points {
        loss: vec![0.0; c.len()],
        c: Some(c.clone()),
        ..Points::default()
    };
    let mut label = vec![None; c.len()];
    let mut flops = vec![None; c.len()];
    if !c.is_empty() {
        for b in group_budgets(&points, Budgeting::RelativeTolerance(tolerance))? {
            for &i in &b.idx {
                label[i] = Some(b.label.clone());
                flops[i] = Some(b.c);
            }
        }
    }
    let mut out = runs.clone();
    out.with_column(Column::new("budget".into(), label))?;
    out.with_column(Column::new("budget_flops".into(), flops))?;
    Ok(out)
}
