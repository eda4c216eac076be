//! Pivot tables: one row per value of an index column, one column per value of another, the
//! mean of a value column in each cell (e.g. final loss by width × tokens). Polars' own pivot
//! lives in its lazy engine, which loopscale does not build (compile time); this is the eager
//! equivalent on the frame's columns.

use anyhow::Result;
use polars::prelude::{Column, DataFrame};

use super::columns::{opt_f64s, strs};

/// Mean of `values` per (`index`, `columns`) pair. Rows and columns come in increasing
/// numeric order when the keys are numbers, else in order of first appearance; an empty cell
/// is NULL.
pub fn pivot_mean(df: &DataFrame, index: &str, columns: &str, values: &str) -> Result<DataFrame> {
    let rows = strs(df, index)?;
    let cols = strs(df, columns)?;
    let vals = opt_f64s(df, values)?;
    let row_keys = ordered(&rows);
    let col_keys = ordered(&cols);
    let mut sum = vec![vec![(0.0, 0usize); col_keys.len()]; row_keys.len()];
    for ((r, c), v) in rows.iter().zip(&cols).zip(&vals) {
        if let Some(v) = v {
            let i = row_keys
                .iter()
                .position(|k| k == r)
                .expect("key collected above");
            let j = col_keys
                .iter()
                .position(|k| k == c)
                .expect("key collected above");
            sum[i][j].0 += v;
            sum[i][j].1 += 1;
        }
    }
    let mut out = vec![Column::new(index.into(), row_keys.clone())];
    for (j, key) in col_keys.iter().enumerate() {
        let cells: Vec<Option<f64>> = sum
            .iter()
            .map(|row| (row[j].1 > 0).then(|| row[j].0 / row[j].1 as f64))
            .collect();
        out.push(Column::new(format!("{columns}={key}").into(), cells));
    }
    Ok(DataFrame::new(row_keys.len(), out)?)
}

fn ordered(keys: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for k in keys {
        if !out.contains(k) {
            out.push(k.clone());
        }
    }
    if out.iter().all(|k| k.parse::<f64>().is_ok()) {
        out.sort_by(|a, b| {
            a.parse::<f64>()
                .unwrap()
                .total_cmp(&b.parse::<f64>().unwrap())
        });
    }
    out
}

/// Whether a runs frame is one grid run several ways: the `variant` column varies, and every
/// configuration (the run labels without the variant) ran under every variant, as when one
/// sweep is trained by two backends (`sweeps/torch_compare.toml`). The report then puts the
/// variants side by side.
pub fn variants_crossed(runs: &DataFrame) -> Result<bool> {
    let variants = strs(runs, "variant")?;
    if variants.iter().all(|v| *v == variants[0]) {
        return Ok(false);
    }
    let configs = super::labels::run_labels(&runs.drop("variant")?)?;
    let pairs: std::collections::HashSet<(&String, &String)> =
        configs.iter().zip(&variants).collect();
    let distinct = |v: &[String]| v.iter().collect::<std::collections::HashSet<_>>().len();
    Ok(pairs.len() == distinct(&configs) * distinct(&variants) && distinct(&configs) > 1)
}

/// Mean final validation loss of a runs frame with one row per configuration (the column
/// `configuration`: each run's label without `axis`) and one column per value of `axis`.
pub fn loss_by(runs: &DataFrame, axis: &str) -> Result<DataFrame> {
    let configs = super::labels::run_labels(&runs.drop(axis)?)?;
    let mut with_index = runs.clone();
    with_index.with_column(Column::new("configuration".into(), configs))?;
    pivot_mean(&with_index, "configuration", axis, "final_val_loss")
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::Column;

    #[test]
    fn pivot_averages_cells_and_orders_numbers() {
        let df = DataFrame::new(
            4,
            vec![
                Column::new("d".into(), [128i64, 64, 64, 64]),
                Column::new("t".into(), [1i64, 2, 1, 1]),
                Column::new("loss".into(), [1.0, 2.0, 3.0, 5.0]),
            ],
        )
        .unwrap();
        let p = pivot_mean(&df, "d", "t", "loss").unwrap();
        assert_eq!(strs(&p, "d").unwrap(), ["64", "128"]);
        assert_eq!(opt_f64s(&p, "t=1").unwrap(), [Some(4.0), Some(1.0)]);
        assert_eq!(opt_f64s(&p, "t=2").unwrap(), [Some(2.0), None]);
    }
}
