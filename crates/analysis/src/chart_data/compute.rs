//! Final loss against training compute: the compute law L(C) = E + A·C^(−α) with its band over
//! the runs (or their replicate groups), and bits per byte across tokenizers.

use super::seeds::{group_series, noise_words};
use super::shared::Built;
use crate::columns::{f64s, opt_f64s, strs};
use crate::fits::ReportFits;
use crate::frames::Frames;
use crate::group_points::{final_loss_vs_flops, seeds_measured};
use loopscale_chart::{Figure, INK, Kind, Panel, Series, tick};

/// Final validation loss against training FLOPs, with L(C) = E + A·C^(−α) and its band.
pub fn compute_law(frames: &Frames, fits: &ReportFits) -> Built {
    let fit = match &fits.compute {
        Ok(f) => f,
        Err(why) => return Ok(Err(why.clone())),
    };
    let c = f64s(&frames.runs, "flops")?;
    let l = f64s(&frames.runs, "final_val_loss")?;
    let labels = strs(&frames.runs, "label")?;
    let fc = f64s(&frames.frontier, "flops")?;
    let fl = f64s(&frames.frontier, "final_val_loss")?;
    let v = |n: &str| fit.report.param(n).map(|p| p.value).unwrap_or(f64::NAN);
    let alpha = fit.report.param("alpha");
    let interval = alpha
        .and_then(|a| Some(format!(" [{}, {}]", tick(a.lo?), tick(a.hi?))))
        .unwrap_or_default();
    let mut series = vec![Series::new(
        Some("95% band of the fit".into()),
        6,
        Kind::Band(fit.band.clone()),
        vec![],
    )];
    // Parameters the data do not determine are named as such, never quoted as findings.
    let r = &fit.report;
    let legend = if r.not_identified.is_empty() {
        format!(
            "L = {:.3} + {}·C^-{:.3}{interval}",
            v("E"),
            tick(v("A")),
            v("alpha")
        )
    } else {
        let shown: Vec<String> = ["E", "A", "alpha"]
            .iter()
            .map(|n| match r.identified(n) {
                true if *n == "alpha" => format!("α = {:.3}{interval}", v(n)),
                true => format!("{n} = {}", tick(v(n))),
                false => format!("{} not identified", if *n == "alpha" { "α" } else { n }),
            })
            .collect();
        format!("L = E + A·C^-α: {}", shown.join(", "))
    };
    series.push(Series::new(
        Some(legend),
        INK,
        Kind::Dashed,
        fit.band
            .iter()
            .map(|&(x, _, _)| (x, fit.predict(x)))
            .collect(),
    ));
    let groups = final_loss_vs_flops(frames)?;
    let seeded = seeds_measured(&groups);
    if seeded {
        group_series(&groups, &mut series);
    } else {
        // One seed per configuration: each run as before, no bars.
        for (i, label) in labels.iter().enumerate() {
            series.push(Series::new(
                Some(label.clone()),
                i,
                Kind::Markers,
                vec![(c[i], l[i])],
            ));
        }
    }
    series.push(Series::new(
        Some("compute frontier".into()),
        INK,
        Kind::Star,
        fc.iter().copied().zip(fl.iter().copied()).collect(),
    ));
    Ok(Ok(Figure::single(Panel {
        title: format!(
            "Final validation loss vs training compute, with the fitted compute law ({})",
            noise_words(&groups)
        ),
        x_label: "training FLOPs".into(),
        y_label: "final validation loss (nats/token)".into(),
        log_x: true,
        log_y: true,
        series,
        zero_line: false,
    })))
}

/// Final validation bits per byte against training FLOPs, one series per tokenizer (and data
/// source): a loss per token is not comparable across vocabularies, a loss per byte of the same
/// text is. Each run's bits per byte = nats per token / ln 2 / its measured bytes per token
/// (`runs.bytes_per_token`). Drawn when the runs use more than one tokenizer.
pub fn bits_per_byte(frames: &Frames) -> Built {
    let keys = frames.run_keys()?;
    let c = f64s(&frames.runs, "flops")?;
    let bpb = opt_f64s(&frames.runs, "final_val_bpb")?;
    let (cfg_keys, cfg_json) = (
        strs(&frames.configs, "run_key")?,
        strs(&frames.configs, "config_json")?,
    );
    // Each run's tokenizer, with "shards" when it trained on pre-tokenized files.
    let tokenizer_of = |key: &str| -> String {
        let Some(i) = cfg_keys.iter().position(|k| k == key) else {
            return "?".into();
        };
        let v: serde_json::Value = serde_json::from_str(&cfg_json[i]).unwrap_or_default();
        let name = v["data"]["tokenizer"]
            .as_str()
            .unwrap_or("bytes")
            .to_string();
        if v["data"]["tokens"].is_string() {
            format!("{name} (shards)")
        } else {
            name
        }
    };
    let mut groups: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let Some(b) = bpb[i].filter(|b| b.is_finite()) else {
            continue;
        };
        let name = tokenizer_of(key);
        match groups.iter_mut().find(|(n, _)| *n == name) {
            Some((_, pts)) => pts.push((c[i], b)),
            None => groups.push((name, vec![(c[i], b)])),
        }
    }
    let tokenizers: std::collections::BTreeSet<&str> = groups
        .iter()
        .map(|(n, _)| n.split(' ').next().unwrap_or(""))
        .collect();
    if tokenizers.len() < 2 {
        return Ok(Err(format!(
            "The runs use one tokenizer ({}), so the loss charts already compare them; bits per \
             byte is drawn when runs of different tokenizers share a report.",
            tokenizers.iter().next().copied().unwrap_or("none")
        )));
    }
    let series = groups
        .into_iter()
        .enumerate()
        .map(|(i, (name, mut pts))| {
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series::new(Some(name), i, Kind::Markers, pts)
        })
        .collect();
    Ok(Ok(Figure::single(Panel {
        title: "Validation bits per byte vs FLOPs, by tokenizer".into(),
        x_label: "training FLOPs".into(),
        y_label: "bits per byte of validation text".into(),
        log_x: true,
        log_y: false,
        series,
        zero_line: false,
    })))
}
