//! Decoding through the KV cache (`decode_evals`): cache bytes per token of context and the
//! decoded validation loss against loops, one line per run — looped models, MELT models (one
//! cache per core block shared by every loop) and GPTs (a level: they have no loops). With
//! seeds, one line per replicate group: its means with ±1 SE bars, its seeds pale behind.

use super::seeds::{barred, group_colour, means, sweep_has_seeds};
use super::shared::{Built, extent};
use crate::columns::{f64s, strs};
use crate::frames::Frames;
use crate::group_points::{GroupCurve, group_curves, se_over};
use crate::groups::{ReplicateGroup, replicate_groups};
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
    let groups = replicate_groups(frames)?;
    if sweep_has_seeds(&groups) {
        return grouped_cache_and_loss(frames, &groups, (lo, hi));
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

/// The decoding chart of a sweep with seeds: per replicate group, the mean cache bytes and
/// decoded loss at each loop count with ±1 SE bars (a GPT's mean as a level in a ±1 SE band).
fn grouped_cache_and_loss(
    frames: &Frames,
    groups: &[ReplicateGroup],
    (lo, hi): (f64, f64),
) -> Built {
    let d = &frames.decodes;
    let (keys, kinds) = (strs(d, "run_key")?, strs(d, "kind")?);
    let (loops, bytes, loss) = (
        f64s(d, "loops")?,
        f64s(d, "kv_bytes_per_token")?,
        f64s(d, "val_loss")?,
    );
    let mut panels = Vec::new();
    for (ys, title, y_label) in [
        (
            &bytes,
            "KV cache per token vs loops",
            "KV cache bytes per token",
        ),
        (
            &loss,
            "Decoded validation loss vs loops",
            "decoded validation loss (nats/token)",
        ),
    ] {
        // A GPT has no loops: its one measurement is grouped at x = 0 and drawn as a level.
        let rows: Vec<(String, f64, f64)> = (0..keys.len())
            .filter(|&r| ys[r].is_finite())
            .map(|r| {
                (
                    keys[r].clone(),
                    if loops[r].is_finite() { loops[r] } else { 0.0 },
                    ys[r],
                )
            })
            .collect();
        let curves: Vec<GroupCurve> = group_curves(groups, &rows, |k| k.to_string());
        let mut series = Vec::new();
        for (j, c) in curves.iter().enumerate() {
            let Some(first) = c
                .run_keys
                .iter()
                .find_map(|k| keys.iter().position(|r| r == k))
            else {
                continue;
            };
            let name = format!("{}: {} (n = {})", kinds[first], c.label, c.n);
            let colour = group_colour(groups, c, j);
            if loops[first].is_finite() {
                series.extend(barred(c, colour, Some(name)));
                series.push(Series::new(None, colour, Kind::Line, means(c)));
            } else if let Some(p) = c.points.first() {
                let se = p.se.unwrap_or(0.0);
                series.push(Series::new(
                    None,
                    colour,
                    Kind::Band(vec![
                        (lo, p.mean - se, p.mean + se),
                        (hi, p.mean - se, p.mean + se),
                    ]),
                    vec![],
                ));
                series.push(Series::new(
                    Some(name),
                    colour,
                    Kind::Dashed,
                    vec![(lo, p.mean), (hi, p.mean)],
                ));
            }
        }
        panels.push(Panel {
            title: format!("{title} ({})", se_over(&curves)),
            x_label: "loops per token".into(),
            y_label: y_label.into(),
            log_x: false,
            log_y: false,
            series,
            zero_line: false,
        });
    }
    Ok(Ok(Figure::row(panels)))
}
