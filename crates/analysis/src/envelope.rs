//! Hyperparameter envelopes: runs that differ only in the tuned keys (`[analysis] tune`,
//! `--tune train.lr`) form one configuration, and its best finished run (lowest final validation
//! loss) stands for it in every law, iso-FLOP curve and chart, as Chinchilla, Porian et al.
//! (2024) and DeepSeek LLM (Bi et al. 2024) fitted their laws to the best run per scale.
//!
//! Per configuration and tuned key this says which value won and how many were tried; where the
//! winner is the smallest or largest value sampled, the optimum may lie beyond it (a note names
//! the configuration and the side); where it is interior, a parabola in log(value) through the
//! winner and its neighbours (as an iso-FLOP budget's optimum is located,
//! [`loopscale_fit::isoflop::locate`]) refines it. A configuration is the run's whole resolved
//! configuration (`runs.config_json`) without the tuned keys and without the seed: with seeds,
//! each tuned value is judged by its replicate group's mean loss (`analysis::groups`), every
//! seed of the winning value stands for the configuration, and a note says when the best two
//! values are within their seed noise (Welch, 95%).

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::Value;

use super::columns::strs;
use super::frames::Frames;
use super::groups::{label_without_seed, lookup, without_seed};
use super::run_rows::{RunConfigs, finished_runs};
use loopscale_fit::isoflop::{Location, locate};
use loopscale_fit::noise::{GroupStats, Verdict, compare};
use loopscale_sweep::check_tune_key;

/// Where a configuration's best value lies among the values it tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Position {
    /// Between the smallest and the largest value sampled: refined by a parabola.
    Inside,
    /// The smallest value sampled: the optimum may lie below.
    Smallest,
    /// The largest value sampled: the optimum may lie above.
    Largest,
    /// One value only (or values that are not positive numbers): nothing to choose between.
    Only,
}

/// One tuned key of one configuration.
#[derive(Clone, Debug, Serialize)]
pub struct KeyOptimum {
    /// The dotted key (`train.lr`).
    pub key: String,
    /// (value, final loss) of each value tried along this key, the other tuned keys at the
    /// winner's values; ascending in value.
    pub tried: Vec<(f64, f64)>,
    /// The winning value (NaN when it is not a number) and its text.
    pub best: f64,
    pub best_text: String,
    pub position: Position,
    /// The parabola's optimum in log(value), inside only.
    pub refined: Option<f64>,
}

/// One configuration of an envelope.
#[derive(Clone, Debug, Serialize)]
pub struct TunedConfig {
    /// The configuration's label among the chosen runs (what tells it from the others).
    pub label: String,
    /// The run that stands for it (with seeds: the winning value's best seed).
    pub best_run: String,
    /// Finished runs of this configuration (values tried over every tuned key, every seed).
    pub runs: usize,
    /// Seeds of the winning value: every one stands for the configuration.
    pub seeds: usize,
    pub flops: f64,
    /// Non-embedding parameters.
    pub params: f64,
    pub tokens: f64,
    /// The winning value's loss: its mean over seeds.
    pub loss: f64,
    pub keys: Vec<KeyOptimum>,
}

/// The chosen runs of a tuned sweep.
#[derive(Clone, Debug, Serialize)]
pub struct Envelope {
    pub keys: Vec<String>,
    pub configs: Vec<TunedConfig>,
    /// Optima at the edge of their grid, by configuration and side.
    pub notes: Vec<String>,
}

impl Envelope {
    /// The configurations whose optimum of `key` is inside its grid: (config, refined value).
    pub fn refined(&self, key: &str) -> Vec<(&TunedConfig, f64)> {
        self.configs
            .iter()
            .filter_map(|c| {
                let k = c.keys.iter().find(|k| k.key == key)?;
                Some((c, k.refined?))
            })
            .collect()
    }
}

/// The column of `final_runs` a tuned key appears as (`train.lr` → `lr`), for labels.
pub fn column_of(key: &str) -> &str {
    key.rsplit('.').next().unwrap_or(key)
}

fn remove(config: &mut Value, key: &str) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let Some(last) = parts.pop() else { return };
    let parent = parts.iter().try_fold(&mut *config, |v, p| v.get_mut(*p));
    if let Some(Value::Object(m)) = parent
        && m.remove(last).is_some()
    {
        return;
    }
    if let Some(Value::Object(m)) = config.pointer_mut("/model/looped") {
        m.remove(last);
    }
}

fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

/// The envelope of `frames` over `keys`, and the frames restricted to its chosen runs.
pub fn envelope(frames: &Frames, keys: &[String]) -> Result<(Frames, Envelope)> {
    check_tune_keys(keys)?;
    let runs = finished_runs(&frames.runs)?;
    let run_keys: Vec<String> = runs.iter().map(|r| r.key.clone()).collect();
    let loss: Vec<f64> = runs.iter().map(|r| r.loss).collect();
    let configs = RunConfigs::of(&frames.configs)?;
    let (cfg_keys, cfg_json) = configs.columns();
    let (groups, values) = group_configurations(&run_keys, cfg_keys, cfg_json, keys)?;
    for (k, key) in keys.iter().enumerate() {
        if !values.iter().any(|v| v[k].is_some()) {
            bail!("--tune {key}: no finished run's configuration has {key}");
        }
    }
    let tuned = Tuned {
        keys,
        values: &values,
        loss: &loss,
    };
    let by_value: Vec<Vec<ValueRuns>> = groups
        .iter()
        .map(|(_, idx)| tuned.values_by_mean(idx))
        .collect();
    // The run that labels each configuration: the winning value's best seed.
    let best: Vec<usize> = by_value.iter().map(|vals| tuned.best_seed(vals)).collect();
    let chosen: Vec<String> = by_value
        .iter()
        .flat_map(|vals| vals[0].0.iter().map(|&i| run_keys[i].clone()))
        .collect();
    let columns: Vec<&str> = keys.iter().map(|k| column_of(k)).collect();
    let restricted = frames.restrict(&chosen, &columns)?;
    let (r_keys, r_labels) = (
        strs(&restricted.runs, "run_key")?,
        strs(&restricted.runs, "label")?,
    );
    let mut configs = Vec::new();
    let mut notes = Vec::new();
    for (((_, idx), &b), vals) in groups.iter().zip(&best).zip(&by_value) {
        let label = label_without_seed(
            &r_keys
                .iter()
                .position(|k| *k == run_keys[b])
                .map(|i| r_labels[i].clone())
                .unwrap_or_default(),
        );
        notes.extend(tuned.noise_note(&label, vals));
        let optima = (0..keys.len())
            .map(|k| tuned.key_optimum(idx, k, b, &label, &mut notes))
            .collect();
        configs.push(TunedConfig {
            label,
            best_run: run_keys[b].clone(),
            runs: idx.len(),
            seeds: vals[0].1.n,
            flops: runs[b].flops,
            params: runs[b].non_embedding_params,
            tokens: runs[b].tokens,
            loss: vals[0].1.mean,
            keys: optima,
        });
    }
    Ok((
        restricted,
        Envelope {
            keys: keys.to_vec(),
            configs,
            notes,
        },
    ))
}

/// Every `--tune` key names a sweep key.
fn check_tune_keys(keys: &[String]) -> Result<()> {
    for key in keys {
        if let Err(near) = check_tune_key(key) {
            bail!(
                "--tune {key}: not a sweep key{}; name a key of [data], [train] or [model] with its table, e.g. train.lr",
                near.map(|n| format!(" (did you mean {n}?)"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// Runs grouped by configuration: (configuration id, run indices), first seen first.
type Configurations = Vec<(String, Vec<usize>)>;
/// Per run, its value of each tuned key (`None` where its configuration lacks the key).
type TunedValues = Vec<Vec<Option<Value>>>;
/// The runs of one tuned value (its seeds) and their loss statistics.
type ValueRuns = (Vec<usize>, GroupStats);

/// Per run: its configuration without the tuned keys and the seed (runs that share one form a
/// group), and its tuned values.
fn group_configurations(
    run_keys: &[String],
    cfg_keys: &[String],
    cfg_json: &[String],
    keys: &[String],
) -> Result<(Configurations, TunedValues)> {
    let mut groups: Configurations = Vec::new();
    let mut values: TunedValues = Vec::new();
    for (i, key) in run_keys.iter().enumerate() {
        let j = cfg_keys
            .iter()
            .position(|k| k == key)
            .with_context(|| format!("run {key}: no stored configuration"))?;
        let mut config: Value = serde_json::from_str(&cfg_json[j])
            .with_context(|| format!("run {key}: its stored configuration is not JSON"))?;
        values.push(keys.iter().map(|k| lookup(&config, k).cloned()).collect());
        for k in keys {
            remove(&mut config, k);
        }
        without_seed(&mut config);
        let id = config.to_string();
        match groups.iter_mut().find(|(g, _)| *g == id) {
            Some((_, v)) => v.push(i),
            None => groups.push((id, vec![i])),
        }
    }
    Ok((groups, values))
}

/// The tuned keys, every run's values of them and every run's final loss.
struct Tuned<'a> {
    keys: &'a [String],
    values: &'a [Vec<Option<Value>>],
    loss: &'a [f64],
}

impl Tuned<'_> {
    /// The runs `idx` of one configuration by tuned value (its seeds), best mean first.
    fn values_by_mean(&self, idx: &[usize]) -> Vec<ValueRuns> {
        let (values, loss) = (self.values, self.loss);
        let mut seeds: Vec<Vec<usize>> = Vec::new();
        for &i in idx {
            match seeds.iter_mut().find(|s| values[s[0]] == values[i]) {
                Some(s) => s.push(i),
                None => seeds.push(vec![i]),
            }
        }
        let mut out: Vec<ValueRuns> = seeds
            .into_iter()
            .filter_map(|s| {
                let stats = GroupStats::of(&s.iter().map(|&i| loss[i]).collect::<Vec<_>>())?;
                Some((s, stats))
            })
            .collect();
        out.sort_by(|a, b| a.1.mean.total_cmp(&b.1.mean));
        out
    }

    /// The winning value's best seed.
    fn best_seed(&self, vals: &[ValueRuns]) -> usize {
        *vals[0]
            .0
            .iter()
            .min_by(|&&a, &&b| self.loss[a].total_cmp(&self.loss[b]))
            .expect("a value has a run")
    }

    /// With seeds, a note when the winner is not ahead of the runner-up by more than their
    /// noise.
    fn noise_note(&self, label: &str, vals: &[ValueRuns]) -> Option<String> {
        let [(_, first), (second_runs, second), ..] = vals else {
            return None;
        };
        let c = compare(second, first);
        let runner_up = self
            .keys
            .iter()
            .enumerate()
            .map(|(k, key)| {
                format!(
                    "{} {}",
                    column_of(key),
                    text(self.values[second_runs[0]][k].as_ref())
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        match c.verdict {
            Verdict::WithinNoise => Some(format!(
                "{label}: the best tuned value and the runner-up ({runner_up}) are within noise \
                 (difference {:+.4}, 95% interval [{:+.4}, {:+.4}], n = {} and {})",
                c.difference,
                c.interval.map_or(f64::NAN, |i| i.0),
                c.interval.map_or(f64::NAN, |i| i.1),
                c.n.1,
                c.n.0
            )),
            Verdict::NeedsSeeds if first.n > 1 || second.n > 1 => Some(format!(
                "{label}: the runner-up ({runner_up}) has one seed, so the choice is not told from noise"
            )),
            _ => None,
        }
    }

    /// Tuned key `k` of the configuration of runs `idx` whose winner is run `b`; an optimum at
    /// the edge of its grid adds a note to `notes`.
    fn key_optimum(
        &self,
        idx: &[usize],
        k: usize,
        b: usize,
        label: &str,
        notes: &mut Vec<String>,
    ) -> KeyOptimum {
        let key = &self.keys[k];
        let tried = self.mean_loss_along(idx, k, b);
        let best_value = self.values[b][k].as_ref().and_then(Value::as_f64);
        let (position, refined) = locate_best(&tried);
        let best_text = text(self.values[b][k].as_ref());
        match position {
            Position::Smallest => notes.push(format!(
                "{} {best_text} is the smallest sampled for {label}: the optimum may lie below",
                column_of(key)
            )),
            Position::Largest => notes.push(format!(
                "{} {best_text} is the largest sampled for {label}: the optimum may lie above",
                column_of(key)
            )),
            _ => {}
        }
        KeyOptimum {
            key: key.clone(),
            tried,
            best: best_value.unwrap_or(f64::NAN),
            best_text,
            position,
            refined,
        }
    }

    /// (value, mean loss over seeds) along key `k` through the winner `b`, ascending in value;
    /// empty unless every value there is a positive finite number.
    fn mean_loss_along(&self, idx: &[usize], k: usize, b: usize) -> Vec<(f64, f64)> {
        let (values, loss) = (self.values, self.loss);
        // The slice through the winner along this key.
        let slice: Vec<usize> = idx
            .iter()
            .copied()
            .filter(|&i| (0..self.keys.len()).all(|m| m == k || values[i][m] == values[b][m]))
            .collect();
        let numeric: Option<Vec<(f64, f64)>> = slice
            .iter()
            .map(|&i| {
                let v = values[i][k].as_ref()?.as_f64()?;
                (v > 0.0 && v.is_finite()).then_some((v, loss[i]))
            })
            .collect();
        let mut tried = numeric.unwrap_or_default();
        tried.sort_by(|a, b| a.0.total_cmp(&b.0));
        // One loss per value: its mean over seeds, as the configuration is judged.
        let mut means: Vec<(f64, f64, usize)> = Vec::new();
        for (v, l) in tried {
            match means.last_mut() {
                Some(m) if m.0 == v => {
                    m.1 += l;
                    m.2 += 1;
                }
                _ => means.push((v, l, 1)),
            }
        }
        means.iter().map(|m| (m.0, m.1 / m.2 as f64)).collect()
    }
}

/// Where the lowest loss of `tried` (ascending in value) lies, and, inside the grid, the
/// parabola's optimum in log(value).
fn locate_best(tried: &[(f64, f64)]) -> (Position, Option<f64>) {
    match tried.len() {
        0 | 1 => (Position::Only, None),
        2 => {
            if tried[0].1 <= tried[1].1 {
                (Position::Smallest, None)
            } else {
                (Position::Largest, None)
            }
        }
        _ => {
            let u: Vec<f64> = tried.iter().map(|t| t.0.ln()).collect();
            let y: Vec<f64> = tried.iter().map(|t| t.1).collect();
            match locate(&u, &y, &vec![1.0; u.len()]) {
                Some(o) if o.location == Location::Inside => {
                    (Position::Inside, Some(o.u_star.exp()))
                }
                Some(o) if o.location == Location::AtLowerEdge => (Position::Smallest, None),
                Some(_) => (Position::Largest, None),
                None => (Position::Only, None),
            }
        }
    }
}
