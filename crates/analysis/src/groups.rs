//! Replicate groups: a sweep's finished runs that differ only in their seed, each summarised
//! by the mean, spread and standard error of its final validation loss
//! ([`loopscale_fit::noise`]), and groups compared with a verdict at the resolution of that
//! noise. The same grouping as the store's `run_groups` view: a run's configuration without its
//! seed (and without a WSD branch's parent, which names its seed's trunk).
//!
//! Comparisons are made within blocks: groups that share the values of the `within` keys (for
//! instance `train.flops`, to compare configurations at one FLOP budget) are ranked by mean and
//! each is compared with the block's best.

use anyhow::Result;
use serde::Serialize;
use serde_json::Value;

use super::columns::strs;
use super::frames::Frames;
use super::run_rows::{RunConfigs, finished_runs};
use loopscale_fit::noise::{Comparison, GroupStats, compare, pooled_variance};

/// One replicate group of finished runs.
#[derive(Clone, Debug, Serialize)]
pub struct ReplicateGroup {
    /// The runs' label without the seed (what tells this configuration from the others).
    pub label: String,
    /// The shared configuration: the runs' resolved configuration without the seed.
    #[serde(skip)]
    pub config: Value,
    pub run_keys: Vec<String>,
    pub seeds: Vec<u64>,
    /// The metric's values, one per seed, in the order of `seeds`: final validation losses
    /// unless the groups were made by another [`Metric`].
    pub losses: Vec<f64>,
    pub stats: GroupStats,
    /// Training FLOPs and tokens (the runs' mean; equal within a group unless budgets differ).
    pub flops: f64,
    pub tokens: f64,
}

/// A group ranked within its block and compared with the block's best.
#[derive(Clone, Debug, Serialize)]
pub struct Ranked {
    /// The block: the `within` keys' values shared by its groups (`train.flops=3.6e12`).
    pub block: String,
    pub rank: usize,
    pub group: ReplicateGroup,
    /// Against the block's best (`group − best`); `None` for the best itself.
    pub against_best: Option<Comparison>,
    pub best_label: String,
}

/// What a replicate group summarises over its seeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// A finished run's final validation loss (lower is better).
    ValLoss,
    /// A task run's accuracy at its training depth at its last evaluation (higher is better);
    /// runs without one (text runs) are left out.
    Accuracy,
}

impl Metric {
    pub fn higher_is_better(self) -> bool {
        self == Metric::Accuracy
    }

    /// The metric in words, for captions.
    pub fn words(self) -> &'static str {
        match self {
            Metric::ValLoss => "final validation loss",
            Metric::Accuracy => "final accuracy at the training depth",
        }
    }
}

/// The groups of the finished runs in `frames` by final validation loss, in the order their
/// first run appears.
pub fn replicate_groups(frames: &Frames) -> Result<Vec<ReplicateGroup>> {
    replicate_groups_of(frames, Metric::ValLoss)
}

/// The groups of the finished runs in `frames` that have `metric`, summarised by it.
pub fn replicate_groups_of(frames: &Frames, metric: Metric) -> Result<Vec<ReplicateGroup>> {
    let accuracy: std::collections::HashMap<&str, f64> = frames
        .accuracy
        .iter()
        .filter(|p| p.test_loops.is_none())
        .map(|p| (p.run_key.as_str(), p.accuracy))
        .collect();
    let runs = finished_runs(&frames.runs)?;
    let labels = strs(&frames.runs, "label")?;
    let configs = RunConfigs::of(&frames.configs)?;
    let mut groups: Vec<ReplicateGroup> = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let key = &run.key;
        let value = match metric {
            Metric::ValLoss => Some(run.loss),
            Metric::Accuracy => accuracy.get(key.as_str()).copied(),
        };
        let (Some(value), Some(text)) = (value, configs.get(key)) else {
            continue;
        };
        let Ok(mut config) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        let seed = config.get("seed").and_then(Value::as_u64).unwrap_or(0);
        without_seed(&mut config);
        let member = |g: &mut ReplicateGroup| {
            g.run_keys.push(key.clone());
            g.seeds.push(seed);
            g.losses.push(value);
        };
        match groups.iter_mut().find(|g| g.config == config) {
            Some(g) => member(g),
            None => {
                let mut g = ReplicateGroup {
                    label: label_without_seed(&labels[i]),
                    config,
                    run_keys: Vec::new(),
                    seeds: Vec::new(),
                    losses: Vec::new(),
                    stats: GroupStats::of(&[value]).unwrap_or(GroupStats {
                        n: 0,
                        mean: f64::NAN,
                        sd: None,
                        se: None,
                        min: f64::NAN,
                        max: f64::NAN,
                    }),
                    flops: run.flops,
                    tokens: run.tokens,
                };
                member(&mut g);
                groups.push(g);
            }
        }
    }
    for g in &mut groups {
        if let Some(stats) = GroupStats::of(&g.losses) {
            g.stats = stats;
        }
    }
    groups.retain(|g| g.stats.n > 0);
    Ok(groups)
}

/// A run's configuration as its group knows it: no seed, no parent run (a branch's parent is
/// its own seed's trunk).
pub fn without_seed(config: &mut Value) {
    if let Some(obj) = config.as_object_mut() {
        obj.remove("seed");
        if let Some(lineage) = obj.get_mut("lineage").and_then(Value::as_object_mut) {
            lineage.remove("parent");
        }
    }
}

/// A run's label without its `seed=…` part: its replicate group's label.
pub fn label_without_seed(label: &str) -> String {
    let kept: Vec<&str> = label
        .split(' ')
        .filter(|part| !part.starts_with("seed="))
        .collect();
    if kept.is_empty() {
        "run".into()
    } else {
        kept.join(" ")
    }
}

/// A dotted key's value in a stored configuration (`train.lr` → `/train/lr`); looped-model keys
/// live in `model.looped`, so `model.mean_recurrence` is found there too.
pub fn lookup<'a>(config: &'a Value, key: &str) -> Option<&'a Value> {
    let pointer = format!("/{}", key.replace('.', "/"));
    config.pointer(&pointer).or_else(|| {
        let (_, field) = key.split_once('.')?;
        config.pointer(&format!("/model/looped/{field}"))
    })
}

/// Each of `run_keys`' replicate group among `groups`, numbered 0.. in order of appearance
/// (a run in no group is a group of its own), for a bootstrap that resamples configurations
/// with all their seeds; `None` when no configuration has two seeds.
pub fn replicate_indices(groups: &[ReplicateGroup], run_keys: &[String]) -> Option<Vec<usize>> {
    if !groups.iter().any(|g| g.stats.n >= 2) {
        return None;
    }
    let mut ids: Vec<Option<usize>> = run_keys
        .iter()
        .map(|k| groups.iter().position(|g| g.run_keys.contains(k)))
        .collect();
    let mut order: Vec<Option<usize>> = Vec::new();
    let mut next_alone = groups.len();
    for id in ids.iter_mut() {
        if id.is_none() {
            *id = Some(next_alone);
            next_alone += 1;
        }
        if !order.contains(id) {
            order.push(*id);
        }
    }
    Some(
        ids.iter()
            .map(|id| order.iter().position(|o| o == id).unwrap())
            .collect(),
    )
}

/// The value of a dotted configuration key ([`lookup`]) as text; `-` when absent or null.
pub fn config_value(config: &Value, key: &str) -> String {
    match lookup(config, key).filter(|v| !v.is_null()) {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => "-".into(),
    }
}

/// A large or tiny number in exponent form (3600000000000.0 → 3.6e12); anything else as is.
fn compact(text: &str) -> String {
    match text.parse::<f64>() {
        Ok(v) if v != 0.0 && (v.abs() >= 1e5 || v.abs() < 1e-3) => format!("{v:e}"),
        _ => text.to_string(),
    }
}

/// Groups ranked by mean within blocks of equal `within` values, each compared with its
/// block's best (lowest mean loss).
pub fn rank_within(groups: &[ReplicateGroup], within: &[String]) -> Vec<Ranked> {
    rank_within_by(groups, within, Metric::ValLoss)
}

/// [`rank_within`] for groups summarised by `metric`: the best is the highest mean where higher
/// is better, and the verdicts say ahead or behind accordingly.
pub fn rank_within_by(groups: &[ReplicateGroup], within: &[String], metric: Metric) -> Vec<Ranked> {
    let block_of = |g: &ReplicateGroup| -> String {
        within
            .iter()
            .map(|k| format!("{k}={}", compact(&config_value(&g.config, k))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut blocks: Vec<(String, Vec<&ReplicateGroup>)> = Vec::new();
    for g in groups {
        let b = block_of(g);
        match blocks.iter_mut().find(|(name, _)| *name == b) {
            Some((_, members)) => members.push(g),
            None => blocks.push((b, vec![g])),
        }
    }
    let mut out = Vec::new();
    for (block, mut members) in blocks {
        members.sort_by(|a, b| a.stats.mean.total_cmp(&b.stats.mean));
        if metric.higher_is_better() {
            members.reverse();
        }
        let best = members[0];
        let against = |g: &ReplicateGroup| {
            let c = compare(&g.stats, &best.stats);
            if metric.higher_is_better() {
                c.higher_is_better()
            } else {
                c
            }
        };
        for (rank, g) in members.iter().enumerate() {
            out.push(Ranked {
                block: block.clone(),
                rank: rank + 1,
                group: (*g).clone(),
                against_best: (rank > 0).then(|| against(g)),
                best_label: best.label.clone(),
            });
        }
    }
    out
}

/// The seed noise of the final loss pooled over every group with two seeds or more: the
/// standard deviation one seed's loss has around its configuration's mean, and its degrees of
/// freedom. `None` when no configuration has two seeds.
pub fn pooled_seed_sd(groups: &[ReplicateGroup]) -> Option<(f64, usize)> {
    let values: Vec<&[f64]> = groups.iter().map(|g| g.losses.as_slice()).collect();
    pooled_variance(&values).map(|(v, df)| (v.sqrt(), df))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn group(label: &str, values: &[f64]) -> ReplicateGroup {
        ReplicateGroup {
            label: label.into(),
            config: json!({"model": {"arch": label}}),
            run_keys: (0..values.len()).map(|i| format!("{label}{i}")).collect(),
            seeds: (0..values.len() as u64).collect(),
            losses: values.to_vec(),
            stats: GroupStats::of(values).unwrap(),
            flops: 1.0,
            tokens: 1.0,
        }
    }

    #[test]
    fn accuracy_ranks_the_highest_first_and_a_lower_group_is_behind() {
        use loopscale_fit::noise::Verdict;
        let groups = [
            group("low", &[0.60, 0.61, 0.62]),
            group("high", &[0.95, 0.96, 0.97]),
            group("close", &[0.93, 0.955, 0.98]),
        ];
        let ranked = rank_within_by(&groups, &[], Metric::Accuracy);
        let order: Vec<&str> = ranked.iter().map(|r| r.group.label.as_str()).collect();
        assert_eq!(order, ["high", "close", "low"]);
        let low = ranked[2].against_best.as_ref().unwrap();
        assert!((low.difference + 0.35).abs() < 1e-12, "{}", low.difference);
        assert_eq!(low.verdict, Verdict::Behind);
        assert_eq!(
            ranked[1].against_best.as_ref().unwrap().verdict,
            Verdict::WithinNoise
        );
        // By loss the same numbers rank the other way, and the high group is behind.
        let by_loss = rank_within(&groups, &[]);
        assert_eq!(by_loss[0].group.label, "low");
        assert_eq!(
            by_loss[2].against_best.as_ref().unwrap().verdict,
            Verdict::Behind
        );
    }

    #[test]
    fn config_values_are_found_flat_or_under_looped() {
        let c = json!({"train": {"flops": 3.6e12}, "model": {"arch": "looped", "looped": {"mean_recurrence": 2}}});
        assert_eq!(config_value(&c, "train.flops"), "3600000000000.0");
        assert_eq!(config_value(&c, "model.arch"), "looped");
        assert_eq!(config_value(&c, "model.mean_recurrence"), "2");
        assert_eq!(config_value(&c, "model.nothing"), "-");
        assert_eq!(compact("3600000000000.0"), "3.6e12");
        assert_eq!(compact("0.008"), "0.008");
        assert_eq!(label_without_seed("looped μ=2 seed=1"), "looped μ=2");
        assert_eq!(label_without_seed("seed=1"), "run");
        let mut c = json!({"seed": 3, "lineage": {"role": "branch", "parent": "abc"}});
        without_seed(&mut c);
        assert_eq!(c, json!({"lineage": {"role": "branch"}}));
    }
}
