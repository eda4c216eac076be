//! Decoding through the KV cache (`decode_evals`): cache bytes per token of context and the
//! decoded validation loss against loops, one line per run — looped models, MELT models (one
//! cache per core block shared by every loop) and GPTs (a level: they have no loops).

use super::shared::{Built, extent};
use crate::columns::{f64s, strs};
use crate::frames::Frames;
use loopscale_chart::{Figure, Kind, Panel, Series};

/// Two panels: KV cache bytes per token vs loops, and decoded loss vs loops.
pub fn cache_and_loss(frames: &Frames) -> Built {
    let d = &frames.decodes;
    if d.height() == 0 {
        return Ok(Err(
            "No decoding measurements in this database (decode_evals, written after training \
             by text runs since schema version 8), so there is no decoding chart."
                .into(),
        ));
    }
    let (keys, kinds, variants) = (strs(d, "run_key")?, strs(d, "kind")?, strs(d, "variant")?);
    let (loops, bytes, loss) = (
        f64s(d, "loops")?,
        f64s(d, "kv_bytes_per_token")?,
        f64s(d, "val_loss")?,
    );
    let (lo, hi) = extent(loops.iter().copied().filter(|l| l.is_finite()));
    if !lo.is_finite() {
        return Ok(Err(
            "No looped run has decoding measurements (decode_evals), so there is nothing to draw \
             against loops."
                .into(),
        ));
    }
    let mut runs: Vec<&String> = keys.iter().collect();
    runs.dedup();
    let (mut bytes_series, mut loss_series) = (Vec::new(), Vec::new());
    for (colour, key) in runs.into_iter().enumerate() {
        let rows: Vec<usize> = (0..keys.len()).filter(|&r| &keys[r] == key).collect();
        let first = rows[0];
        let name = format!(
            "{} {} ({})",
            kinds[first],
            variants[first],
            &key[..key.len().min(8)]
        );
        let points = |ys: &[f64]| -> Vec<(f64, f64)> {
            if loops[first].is_finite() {
                rows.iter()
                    .filter(|&&r| ys[r].is_finite())
                    .map(|&r| (loops[r], ys[r]))
                    .collect()
            } else if lo.is_finite() && ys[first].is_finite() {
                // A GPT: one measurement, drawn as a level across the loops.
                vec![(lo, ys[first]), (hi, ys[first])]
            } else {
                Vec::new()
            }
        };
        let kind = || {
            if loops[first].is_finite() {
                Kind::Line
            } else {
                Kind::Dashed
            }
        };
        bytes_series.push(Series::new(
            Some(name.clone()),
            colour,
            kind(),
            points(&bytes),
        ));
        loss_series.push(Series::new(Some(name), colour, kind(), points(&loss)));
    }
    let panel = |title: &str, y: &str, series| Panel {
        title: title.into(),
        x_label: "loops per token".into(),
        y_label: y.into(),
        log_x: false,
        log_y: false,
        series,
        zero_line: false,
    };
    Ok(Ok(Figure::row(vec![
        panel(
            "KV cache per token of context vs loops",
            "KV cache bytes per token",
            bytes_series,
        ),
        panel(
            "Validation loss decoding through the cache vs loops",
            "decoded validation loss (nats/token)",
            loss_series,
        ),
    ])))
}
