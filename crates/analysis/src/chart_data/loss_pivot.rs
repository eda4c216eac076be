//! Final validation loss pivoted over one axis, typed: one row per configuration (each run's
//! label without the axis), one column per value of the axis, the mean over seeds in each cell.
//! The variants chart and the report's pivot table both read it, so they show the same numbers.

use anyhow::Result;
use polars::prelude::DataFrame;

use crate::columns::{opt_f64s, strs};
use crate::frames::Frames;
use crate::pivot::{loss_by, variants_crossed};

/// Mean final loss by configuration and one axis.
#[derive(Clone, Debug, PartialEq)]
pub struct LossPivot {
    /// The axis whose values are the columns (`variant`, `tokens`, ...).
    pub axis: String,
    /// The columns as the pivot names them (`tokens=131072`, `variant=torch`), in order.
    pub columns: Vec<String>,
    /// Per configuration: its label and a cell per column (`None`: no finished run there).
    pub rows: Vec<(String, Vec<Option<f64>>)>,
}

impl LossPivot {
    /// The pivot of a runs frame over `axis` ([`loss_by`]).
    pub fn of(runs: &DataFrame, axis: &str) -> Result<LossPivot> {
        let table = loss_by(runs, axis)?;
        let names: Vec<String> = table
            .get_column_names()
            .iter()
            .map(|s| s.to_string())
            .collect();
        let labels = strs(&table, &names[0])?;
        let cells: Vec<Vec<Option<f64>>> = names[1..]
            .iter()
            .map(|n| opt_f64s(&table, n))
            .collect::<Result<_>>()?;
        Ok(LossPivot {
            axis: axis.to_string(),
            columns: names[1..].to_vec(),
            rows: labels
                .into_iter()
                .enumerate()
                .map(|(i, label)| (label, cells.iter().map(|c| c[i]).collect()))
                .collect(),
        })
    }

    /// Column `j`'s cells, one per configuration.
    pub fn column(&self, j: usize) -> Vec<Option<f64>> {
        self.rows.iter().map(|(_, cells)| cells[j]).collect()
    }
}

/// The report's pivot: final loss with one column per value of the sweep's last varying axis
/// and one row per combination of the others: the variants, when every configuration was run
/// under every variant (the same grid two ways, such as two backends), else tokens, learning
/// rate, seed, loops or width, whichever varies first in that order; `None` when nothing or only
/// that axis varies.
pub fn final_loss_pivot(frames: &Frames) -> Result<Option<LossPivot>> {
    let df = &frames.runs;
    let varies = |c: &str| -> bool {
        strs(df, c)
            .map(|v| v.iter().any(|x| *x != v[0]))
            .unwrap_or(false)
    };
    // Variants side by side when they are the same grid run another way (every configuration
    // under every variant: e.g. one sweep trained by two backends, sweeps/torch_compare.toml).
    let variants_cross = variants_crossed(df)?;
    let Some(axis) = variants_cross.then_some("variant").or_else(|| {
        ["tokens", "lr", "seed", "mean_recurrence", "d_model"]
            .into_iter()
            .find(|c| varies(c))
    }) else {
        return Ok(None);
    };
    let p = LossPivot::of(df, axis)?;
    // Nothing but the axis varies: one row, nothing to pivot.
    if p.rows.iter().all(|(label, _)| label == "run") {
        return Ok(None);
    }
    Ok(Some(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::Column;

    /// Two widths × two token counts, the first cell with two seeds.
    fn runs() -> DataFrame {
        DataFrame::new(
            4,
            vec![
                Column::new("arch".into(), ["looped"; 4]),
                Column::new("d_model".into(), [64i64, 64, 64, 128]),
                Column::new("tokens".into(), [1000i64, 1000, 2000, 1000]),
                Column::new("seed".into(), [0i64, 1, 0, 0]),
                Column::new("final_val_loss".into(), [1.0, 1.2, 0.9, 0.8]),
            ],
        )
        .unwrap()
    }

    #[test]
    fn cells_are_the_mean_over_seeds_and_an_unfinished_cell_is_empty() {
        let mut df = runs();
        let _ = df.drop_in_place("seed").unwrap();
        let p = LossPivot::of(&df, "tokens").unwrap();
        assert_eq!(p.axis, "tokens");
        assert_eq!(p.columns, ["tokens=1000", "tokens=2000"]);
        assert_eq!(p.rows.len(), 2, "{:?}", p.rows);
        let (first, cells) = &p.rows[0];
        assert!(first.contains("64") && !first.contains("128"), "{first}");
        assert!(
            (cells[0].unwrap() - 1.1).abs() < 1e-12,
            "the two seeds' mean"
        );
        assert_eq!(cells[1], Some(0.9));
        assert_eq!(
            p.rows[1].1,
            vec![Some(0.8), None],
            "128 never ran 2000 tokens"
        );
        assert_eq!(p.column(0).len(), 2);
        assert_eq!(p.column(1), vec![Some(0.9), None]);
    }
}
