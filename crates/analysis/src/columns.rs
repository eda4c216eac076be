//! Frame columns as plain vectors (what plotters and the fits consume), with errors that name
//! the missing or mistyped column; and a store result as a frame ([`to_frame`]). A leaf of
//! `analysis`: it imports no other analysis module.

use anyhow::{Context, Result};
use polars::prelude::{BooleanChunked, Column, DataFrame, DataType, NewChunkedArray};

use loopscale_store::{ColumnData, Columns};

/// A store result as a DataFrame, columns typed as stored.
pub fn to_frame(columns: Columns) -> Result<DataFrame> {
    let cols: Vec<Column> = columns
        .names
        .iter()
        .zip(columns.data)
        .map(|(name, data)| match data {
            ColumnData::Int(v) => Column::new(name.as_str().into(), v),
            ColumnData::Real(v) => Column::new(name.as_str().into(), v),
            ColumnData::Text(v) => Column::new(name.as_str().into(), v),
        })
        .collect();
    Ok(DataFrame::new(columns.rows, cols)?)
}

/// A numeric column as `Option<f64>` values (integers are converted; NULL is `None`).
pub fn opt_f64s(df: &DataFrame, name: &str) -> Result<Vec<Option<f64>>> {
    let col = df
        .column(name)
        .with_context(|| format!("frame has no column `{name}`"))?;
    let col = col
        .cast(&DataType::Float64)
        .with_context(|| format!("column `{name}` is not numeric"))?;
    Ok(col.f64()?.iter().collect())
}

/// A numeric column with NULL as NaN.
pub fn f64s(df: &DataFrame, name: &str) -> Result<Vec<f64>> {
    Ok(opt_f64s(df, name)?
        .into_iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect())
}

/// A column rendered as text (NULL as the empty string).
pub fn strs(df: &DataFrame, name: &str) -> Result<Vec<String>> {
    let col = df
        .column(name)
        .with_context(|| format!("frame has no column `{name}`"))?;
    let col = col
        .cast(&DataType::String)
        .with_context(|| format!("column `{name}` is not text"))?;
    Ok(col
        .str()?
        .iter()
        .map(|v| v.unwrap_or_default().to_string())
        .collect())
}

/// The rows where `keep` is true.
pub fn filter_rows(df: &DataFrame, keep: &[bool]) -> Result<DataFrame> {
    let mask = BooleanChunked::from_slice("keep".into(), keep);
    Ok(df.filter(&mask)?)
}
