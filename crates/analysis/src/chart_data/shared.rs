//! What every chart family uses: the [`Built`] a chart function returns, the extent of a set of
//! values, and a run's colour and rows (one colour per run in every chart).

use anyhow::Result;

use crate::columns::strs;
use crate::frames::Frames;
use loopscale_chart::Figure;

/// What a chart function returns: the figure, or why there is none.
pub type Built = Result<Result<Figure, String>>;

/// The smallest and largest of `values` (∞ and −∞ when there are none).
pub fn extent(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    values
        .into_iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        })
}

/// The colour of run `key`: its position in the runs frame, so a run has one colour in every
/// chart.
pub fn run_colour(frames: &Frames, key: &str) -> Result<usize> {
    Ok(frames
        .run_keys()?
        .iter()
        .position(|k| k == key)
        .unwrap_or(0))
}

/// Per run: its label, colour and the rows of `df` that are its.
pub fn per_run(
    frames: &Frames,
    df: &polars::prelude::DataFrame,
) -> Result<Vec<(String, usize, Vec<usize>)>> {
    let keys = frames.run_keys()?;
    let labels = strs(&frames.runs, "label")?;
    let rows = strs(df, "run_key")?;
    Ok(keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            (
                labels[i].clone(),
                i,
                (0..rows.len())
                    .filter(|&r| rows[r] == *k)
                    .collect::<Vec<_>>(),
            )
        })
        .filter(|(_, _, r)| !r.is_empty())
        .collect())
}
