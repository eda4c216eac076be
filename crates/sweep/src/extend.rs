//! Extending a sweep for `loopscale suggest`: the numeric axes each variant sweeps, those axes
//! one step outward and filled in between (the default candidates), a candidate written as a
//! `[[variants]]` block, and the extended sweep file around the source text.
//!
//! A candidate is a set of scalar settings laid over one of the source's variants (or over the
//! base grid of a file without variants). It is written as a new variant that repeats its
//! source variant's settings with the candidate's values in place of the axes', so its runs
//! expand, validate and get their keys exactly as any other run of the file: a run the
//! database already holds keeps its key, and `loopscale run` on the extended file trains only
//! what is new. Tuned keys (`[analysis] tune`) are not candidate axes: each candidate inherits
//! their whole list, so a new point is tuned as the old ones were.

use std::path::Path;

use anyhow::{Result, bail};
use serde_json::Value;

use super::error::{Source, toml_literal};
use super::spec::{self, Spec};
use super::{LoadOptions, PlannedRun, Sweep, dotted_get};

/// One axis a variant sweeps: its dotted keys (several when zipped, moving together) and the
/// values sampled, one tuple per position, sorted by the first key.
#[derive(Debug, Clone, PartialEq)]
pub struct SweptAxis {
    pub keys: Vec<String>,
    pub values: Vec<Vec<f64>>,
    /// Per key: whether its values are whole numbers (loop counts, widths), kept whole when
    /// extended.
    pub integer: Vec<bool>,
}

/// A point that could be trained next: settings over a source variant.
#[derive(Debug, Clone, PartialEq)]
pub struct CandidatePoint {
    /// The source `[[variants]]` name; `None` for the base grid of a file without variants.
    pub variant: Option<String>,
    pub settings: Vec<CandidateSetting>,
    /// Its own seeds (`seeds = [k]` in its variant): another seed of a configuration already
    /// trained. `None`: the source variant's seeds (or the sweep's).
    pub seeds: Option<Vec<u64>>,
}

/// One setting of a candidate: a dotted key and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct CandidateSetting {
    pub key: String,
    pub value: f64,
    /// A whole-number key (a width, a loop count): written as a TOML integer.
    pub whole: bool,
}

impl CandidateSetting {
    /// The value as a TOML literal of the key's type.
    fn literal(&self) -> String {
        if self.whole {
            format!("{}", self.value.round() as i64)
        } else {
            format!("{:e}", self.value)
        }
    }
}

impl CandidatePoint {
    /// `variant train.flops=6.4e12 model.mean_recurrence=16`.
    pub fn label(&self) -> String {
        let mut parts: Vec<String> = self.variant.iter().cloned().collect();
        parts.extend(self.settings.iter().map(|c| {
            format!(
                "{}={}",
                c.key.rsplit('.').next().unwrap_or(&c.key),
                short(c.value)
            )
        }));
        if let Some(seeds) = &self.seeds {
            let list: Vec<String> = seeds.iter().map(u64::to_string).collect();
            parts.push(format!("seed={}", list.join(",")));
        }
        parts.join(" ")
    }
}

/// A number as a sweep file would write it: whole numbers bare, others in short scientific form.
pub fn short(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e7 {
        format!("{}", v as i64)
    } else {
        format!("{:e}", three_digits(v))
    }
}

/// `v` to three significant digits (a new budget of 1.27e12, not 1.2727922061357856e12).
fn three_digits(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    // Through the decimal text, so the value prints back as written (5.66e11, not 5.660000000000001e11).
    format!("{v:.2e}").parse().unwrap_or(v)
}

/// One step outward at each end and the geometric midpoint between neighbours, for a sorted
/// list of tuples (a zip group moves together); whole-number keys are rounded and kept ≥ 1.
/// The sampled values are kept; duplicates after rounding are dropped.
pub fn extend_values(values: &[Vec<f64>], integer: &[bool]) -> Vec<Vec<f64>> {
    let n = values.len();
    if n < 2 {
        return values.to_vec();
    }
    // Zipped whole numbers in a fixed ratio (d_model = 32 · n_heads: a fixed head width) keep
    // it: the smallest key is extended and rounded, the others follow by the ratio.
    if values[0].len() > 1 && integer.iter().all(|w| *w) {
        let ratios: Vec<f64> = values[0].iter().map(|v| v / values[0][0]).collect();
        let fixed = values.iter().all(|t| {
            t.iter()
                .zip(&ratios)
                .all(|(v, r)| (v / t[0] - r).abs() < 1e-9 * r.abs().max(1.0))
        });
        let small = (0..ratios.len()).min_by(|&a, &b| ratios[a].total_cmp(&ratios[b]));
        if let (true, Some(j)) = (fixed, small) {
            let column: Vec<Vec<f64>> = values.iter().map(|t| vec![t[j]]).collect();
            return extend_values(&column, &[true])
                .into_iter()
                .map(|c| ratios.iter().map(|r| c[0] * r / ratios[j]).collect())
                .filter(|t: &Vec<f64>| t.iter().all(|v| v.fract() == 0.0))
                .collect();
        }
    }
    let scale = |a: &[f64], b: &[f64], power: f64| -> Vec<f64> {
        // a · (b/a)^power per coordinate.
        a.iter()
            .zip(b)
            .map(|(x, y)| x * (y / x).powf(power))
            .collect()
    };
    let mut out = vec![scale(&values[0], &values[1], -1.0)];
    for i in 0..n - 1 {
        out.push(values[i].clone());
        out.push(scale(&values[i], &values[i + 1], 0.5));
    }
    out.push(values[n - 1].clone());
    out.push(scale(&values[n - 1], &values[n - 2], -1.0));
    let mut kept: Vec<Vec<f64>> = Vec::new();
    for mut t in out {
        for (v, whole) in t.iter_mut().zip(integer) {
            *v = if *whole { v.round() } else { three_digits(*v) };
        }
        let valid = t
            .iter()
            .zip(integer)
            .all(|(v, whole)| v.is_finite() && *v > 0.0 && (!whole || *v >= 1.0));
        if valid && !kept.contains(&t) {
            kept.push(t);
        }
    }
    kept.sort_by(|a, b| a[0].total_cmp(&b[0]));
    kept
}

impl Sweep {
    /// The numeric axes each variant sweeps (two or more values among its runs), zipped keys
    /// together, leaving out `skip` (tuned keys) and seeds. `text` is this sweep's file text.
    pub fn swept_axes(
        &self,
        text: &str,
        skip: &[String],
    ) -> Result<Vec<(Option<String>, Vec<SweptAxis>)>> {
        let spec = parse_spec(text, &self.path)?;
        let zips: Vec<Vec<String>> = spec
            .header
            .zip
            .iter()
            .map(|g| g.keys.iter().map(|(k, _)| k.clone()).collect())
            .collect();
        let mut variants: Vec<Option<String>> = Vec::new();
        for run in &self.runs {
            if !variants.contains(&run.variant) {
                variants.push(run.variant.clone());
            }
        }
        let mut out = Vec::new();
        for variant in variants {
            let runs: Vec<&PlannedRun> = self
                .runs
                .iter()
                .filter(|r| r.variant == variant && !r.config.is_trunk())
                .collect();
            let mut axes: Vec<SweptAxis> = Vec::new();
            for key in &self.axes {
                if key == "seed" || skip.contains(key) || axes.iter().any(|a| a.keys.contains(key))
                {
                    continue;
                }
                let keys: Vec<String> = zips
                    .iter()
                    .find(|g| g.contains(key))
                    .cloned()
                    .unwrap_or_else(|| vec![key.clone()]);
                if let Some(axis) = axis_of(&runs, &keys) {
                    axes.push(axis);
                }
            }
            out.push((variant, axes));
        }
        Ok(out)
    }

    /// The runs a candidate adds: the sweep text with the candidate as a new variant named
    /// `name`, expanded and validated; its runs (trunks of branched runs included). Corpora are
    /// not read (the caller counts epochs once).
    pub fn candidate_runs(
        &self,
        text: &str,
        candidate: &CandidatePoint,
        name: &str,
    ) -> Result<Vec<PlannedRun>> {
        let extended = extended_text(text, &self.path, std::slice::from_ref(candidate), &[name])?;
        let sweep = Sweep::from_str_with(
            &extended,
            &self.path,
            &LoadOptions {
                check_corpus: false,
            },
        )?;
        Ok(sweep
            .runs
            .into_iter()
            .filter(|r| r.variant.as_deref() == Some(name))
            .collect())
    }
}

/// The values of `keys` (moving together) among `runs`, when numeric and two or more.
fn axis_of(runs: &[&PlannedRun], keys: &[String]) -> Option<SweptAxis> {
    let mut values: Vec<Vec<f64>> = Vec::new();
    let mut integer = vec![true; keys.len()];
    for run in runs {
        let json = serde_json::to_value(&run.config).ok()?;
        let mut tuple = Vec::new();
        for (j, key) in keys.iter().enumerate() {
            let shown = dotted_get(&run.config, key)?;
            let v: f64 = shown.parse().ok()?;
            if !is_whole_json(&json, key) {
                integer[j] = false;
            }
            tuple.push(v);
        }
        if !values.contains(&tuple) {
            values.push(tuple);
        }
    }
    values.sort_by(|a, b| a[0].total_cmp(&b[0]));
    (values.len() >= 2).then(|| SweptAxis {
        keys: keys.to_vec(),
        values,
        integer,
    })
}

/// Whether a key's stored value is a JSON integer (a whole-number field such as a width).
fn is_whole_json(json: &Value, key: &str) -> bool {
    let (table, field) = key.split_once('.').unwrap_or(("", key));
    let found = json.get(table).and_then(|t| {
        t.get(field)
            .or_else(|| t.get("looped").and_then(|l| l.get(field)))
    });
    found.is_some_and(|v| v.is_u64() || v.is_i64())
}

fn parse_spec(text: &str, path: &Path) -> Result<Spec> {
    Ok(spec::parse(&Source { path, text })?)
}

/// The source text with `candidates` appended as `[[variants]]` blocks named `names`. A file
/// without variants first gets a `grid` variant with no overrides (its base grid, unchanged,
/// so its runs keep their keys).
pub fn extended_text(
    text: &str,
    path: &Path,
    candidates: &[CandidatePoint],
    names: &[&str],
) -> Result<String> {
    let spec = parse_spec(text, path)?;
    let zipped: Vec<String> = spec
        .header
        .zip
        .iter()
        .flat_map(|g| g.keys.iter().map(|(k, _)| k.clone()))
        .collect();
    let mut out = text.trim_end().to_string();
    out.push('\n');
    if spec.variants.is_empty() && !candidates.is_empty() {
        out.push_str(
            "\n# The source's own grid, as a variant (the file had none): its runs keep their keys.\n[[variants]]\nname = \"grid\"\n",
        );
    }
    for (candidate, name) in candidates.iter().zip(names) {
        let source = match &candidate.variant {
            Some(v) => match spec.variants.iter().find(|s| &s.name == v) {
                Some(s) => Some(s),
                None => bail!("{}: no variant `{v}` to extend", path.display()),
            },
            None => None,
        };
        out.push_str(&format!(
            "\n[[variants]]\nname = {name:?}                # {}\n",
            candidate.label()
        ));
        let seeds: Option<Vec<u64>> = candidate.seeds.clone().or_else(|| {
            source
                .and_then(|s| s.seeds.as_ref())
                .map(|s| s.iter().map(|(k, _)| *k).collect())
        });
        if let Some(seeds) = seeds {
            let list: Vec<String> = seeds.iter().map(u64::to_string).collect();
            out.push_str(&format!("seeds = [{}]\n", list.join(", ")));
        }
        let overridden = |k: &str| candidate.settings.iter().any(|c| c.key == k);
        for setting in source.into_iter().flat_map(|s| &s.settings) {
            if overridden(&setting.key.dotted) {
                continue;
            }
            let value = if setting.axis {
                Value::Array(setting.values.iter().map(|(v, _)| v.clone()).collect())
            } else {
                setting.values[0].0.clone()
            };
            out.push_str(&format!(
                "{} = {}\n",
                setting.key.dotted,
                toml_literal(&value)
            ));
        }
        for setting in &candidate.settings {
            // A zipped key must stay a list (of one) beside its partners.
            let (key, literal) = (&setting.key, setting.literal());
            if zipped.contains(key) {
                out.push_str(&format!("{key} = [{literal}]\n"));
            } else {
                out.push_str(&format!("{key} = {literal}\n"));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_extend_one_step_outward_and_between() {
        let v = extend_values(&[vec![4e11], vec![8e11], vec![1.6e12]], &[false]);
        let got: Vec<f64> = v.iter().map(|t| t[0]).collect();
        // Midpoints are geometric, to three significant digits.
        let want = [2e11, 4e11, 5.66e11, 8e11, 1.13e12, 1.6e12, 3.2e12];
        assert_eq!(got.len(), want.len(), "{got:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((g / w - 1.0).abs() < 1e-12, "{got:?}");
        }
        // Loop counts stay whole and at least 1; rounding duplicates are dropped.
        let v = extend_values(&[vec![1.0], vec![2.0], vec![4.0], vec![8.0]], &[true]);
        let got: Vec<f64> = v.iter().map(|t| t[0]).collect();
        assert_eq!(got, vec![1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0]);
        // A zip group moves together; a fixed ratio (the head width) is kept.
        let v = extend_values(&[vec![64.0, 2.0], vec![128.0, 4.0]], &[true, true]);
        assert_eq!(
            v,
            vec![
                vec![32.0, 1.0],
                vec![64.0, 2.0],
                vec![96.0, 3.0],
                vec![128.0, 4.0],
                vec![256.0, 8.0]
            ]
        );
        let v = extend_values(&[vec![64.0, 5.0], vec![128.0, 7.0]], &[true, true]);
        assert_eq!(v[0], vec![32.0, 4.0], "{v:?}");
    }
}
