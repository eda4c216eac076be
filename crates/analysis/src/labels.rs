//! Run labels that say what tells runs apart: only the configuration values that vary across
//! the runs of a frame are named, so a width × tokens sweep reads `d_model=64 tokens=131k` and
//! an injection comparison reads `looped add lr=0.003`.

use anyhow::Result;
use polars::prelude::DataFrame;

use super::columns::strs;

/// Configuration columns, in the order they appear in a label.
const LABEL_COLUMNS: [&str; 10] = [
    "arch",
    "injection",
    "variant",
    "d_model",
    "n_layers",
    "mean_recurrence",
    "mlp",
    "lr",
    "tokens",
    "seed",
];

/// Compact number: 131072 → 131k, 0.003 → 0.003.
pub fn short_number(text: &str) -> String {
    match text.parse::<f64>() {
        Ok(v) if v.fract() == 0.0 && v.abs() >= 10_000.0 => {
            if v.abs() >= 1e6 {
                format!("{}M", trim(v / 1e6))
            } else {
                format!("{}k", trim(v / 1e3))
            }
        }
        _ => text.to_string(),
    }
}

/// Three significant digits, trailing zeros dropped: 131.072 → 131, 16.384 → 16.4, 2.5 → 2.5.
fn trim(v: f64) -> String {
    let decimals = (2 - v.abs().log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// One label per row of a `final_runs` frame.
pub fn run_labels(runs: &DataFrame) -> Result<Vec<String>> {
    let n = runs.height();
    let mut parts: Vec<Vec<String>> = vec![Vec::new(); n];
    for name in LABEL_COLUMNS {
        let Ok(values) = strs(runs, name) else {
            continue;
        };
        let first = values.first().cloned().unwrap_or_default();
        if values.iter().all(|v| *v == first) {
            continue;
        }
        for (p, v) in parts.iter_mut().zip(&values) {
            if v.is_empty() {
                continue;
            }
            // Categorical values read on their own; numbers need their name.
            match name {
                "arch" | "injection" | "variant" | "mlp" => p.push(v.clone()),
                "mean_recurrence" => p.push(format!("μ={v}")),
                _ => p.push(format!("{name}={}", short_number(v))),
            }
        }
    }
    Ok(parts
        .into_iter()
        .map(|p| {
            // `looped looped` when the variant is named like the arch: keep the first.
            let mut seen: Vec<String> = Vec::new();
            for s in p {
                if !seen.contains(&s) {
                    seen.push(s);
                }
            }
            if seen.is_empty() {
                "run".to_string()
            } else {
                seen.join(" ")
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::Column;

    #[test]
    fn labels_name_only_what_varies() {
        let df = DataFrame::new(
            3,
            vec![
                Column::new("arch".into(), ["gpt", "gpt", "gpt"]),
                Column::new("d_model".into(), [64i64, 96, 64]),
                Column::new("tokens".into(), [131072i64, 131072, 262144]),
                Column::new("lr".into(), [0.003, 0.003, 0.003]),
            ],
        )
        .unwrap();
        assert_eq!(
            run_labels(&df).unwrap(),
            [
                "d_model=64 tokens=131k",
                "d_model=96 tokens=131k",
                "d_model=64 tokens=262k"
            ]
        );
        assert_eq!(short_number("2500000"), "2.5M");
        assert_eq!(short_number("16384"), "16.4k");
        assert_eq!(short_number("0.003"), "0.003");
    }
}
