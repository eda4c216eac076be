//! WSD branches: runs with `train.branch = true` that differ only in their token budget form a
//! family that shares one constant-learning-rate trunk (Hägele et al. 2024).
//!
//! For a family of runs with `s_i` total steps each:
//! - every member warms up for the same `W` steps: `warmup_fraction` of the *shortest* member's
//!   steps (so no member's warmup reaches into its cooldown), written into each config as
//!   `train.warmup_steps`;
//! - member `i`'s cooldown starts at step `b_i` (`train::cooldown_start`): up to there its
//!   learning rate is exactly the trunk's;
//! - the trunk is a run of its own, `max b_i` steps of the same config with no cooldown
//!   (`cooldown_fraction = 0`), which writes and keeps a checkpoint at every `b_i`
//!   (`train.keep_checkpoints`); its lineage role is `trunk`, so fits and charts leave it out;
//! - member `i` is the branch: it starts from the trunk's checkpoint at `b_i` and trains steps
//!   `b_i + 1 … s_i`. Its lineage names the trunk's key and `b_i`, so its key changes whenever
//!   the trunk does. Its tokens and FLOPs are those of the whole path, as an independent run's.
//!
//! The trunk's key includes its branch points, so changing the family (a member added or
//! removed) gives a new trunk, and its branches train again: a finished trunk never lacks the
//! checkpoint a new branch needs. That is the price of keys that say exactly what a run
//! computed.

use std::collections::BTreeMap;

use super::{LinkProblem, PlannedRun};
use loopscale_config::{Lineage, Role, RunConfig};
use loopscale_train::{cooldown_start, total_steps, warmup_steps};

/// Replaces every family of branched runs by its trunk followed by its branches (in the
/// family's first member's place). Runs without `train.branch` are left as they are.
pub(crate) fn share_trunks(runs: Vec<PlannedRun>) -> Result<Vec<PlannedRun>, LinkProblem> {
    // Families by everything but the budget, in order of first appearance.
    let mut families: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut first_of: Vec<(usize, String)> = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        if !run.config.train.branch {
            continue;
        }
        let family = family_key(&run.config);
        let members = families.entry(family.clone()).or_default();
        if members.is_empty() {
            first_of.push((i, family));
        }
        members.push(i);
    }
    if families.is_empty() {
        return Ok(runs);
    }
    let mut replaced: BTreeMap<usize, Vec<PlannedRun>> = BTreeMap::new();
    for (first, family) in &first_of {
        replaced.insert(*first, family_runs(&runs, &families[family])?);
    }
    let mut out = Vec::new();
    for (i, run) in runs.into_iter().enumerate() {
        if let Some(family) = replaced.remove(&i) {
            out.extend(family);
        } else if !run.config.train.branch {
            out.push(run);
        }
    }
    Ok(out)
}

/// What makes runs one family: the config without its budget.
fn family_key(config: &RunConfig) -> String {
    let mut c = config.clone();
    c.train.tokens = 0;
    c.train.flops = None;
    c.canonical_json()
}

/// The trunk and branches of one family (`members`: indices into `runs`, any order).
fn family_runs(runs: &[PlannedRun], members: &[usize]) -> Result<Vec<PlannedRun>, LinkProblem> {
    let mut members = members.to_vec();
    members.sort_by_key(|&i| total_steps(&runs[i].config));
    let shortest = &runs[members[0]].config;
    let warmup = warmup_steps(&shortest.train, total_steps(shortest));

    let mut branches = Vec::new();
    let mut points = Vec::new();
    for &i in &members {
        let mut config = runs[i].config.clone();
        config.train.warmup_steps = Some(warmup);
        let steps = total_steps(&config);
        let start = cooldown_start(&config.train, steps);
        if start == 0 {
            return Err(LinkProblem {
                variant: runs[i].variant.clone(),
                message: format!(
                    "this branched run's cooldown starts at step 0 of {steps}: there is no trunk to share"
                ),
                help: "give the run more tokens, or a smaller cooldown_fraction and warmup".into(),
            });
        }
        points.push(start);
        branches.push((i, config, start));
    }
    points.sort_unstable();
    points.dedup();
    let longest = *points.last().expect("a family has a member");

    // The trunk: the longest prefix needed, at the peak learning rate after the shared warmup.
    let template = &runs[members[0]];
    let mut trunk = template.config.clone();
    let per_step = (trunk.train.batch_size * trunk.data.seq_len) as u64;
    trunk.train.tokens = longest * per_step;
    trunk.train.flops = None;
    trunk.train.warmup_steps = Some(warmup);
    trunk.train.cooldown_fraction = 0.0;
    trunk.train.keep_checkpoints = points.clone();
    trunk.lineage = Some(Lineage {
        role: Role::Trunk,
        parent: None,
        parent_step: None,
        branch_points: points.clone(),
    });
    let trunk_key = trunk.key();
    let mut out = vec![PlannedRun {
        key: trunk_key.clone(),
        varying: relabel(&template.varying, trunk.train.tokens),
        config: trunk,
        variant: template.variant.clone(),
    }];
    // Branches in the sweep's own order.
    branches.sort_by_key(|(i, _, _)| *i);
    for (i, mut config, start) in branches {
        config.lineage = Some(Lineage {
            role: Role::Branch,
            parent: Some(trunk_key.clone()),
            parent_step: Some(start),
            branch_points: Vec::new(),
        });
        out.push(PlannedRun {
            key: config.key(),
            config,
            variant: runs[i].variant.clone(),
            varying: runs[i].varying.clone(),
        });
    }
    Ok(out)
}

/// A trunk's axis values: its family's, with its own token count.
fn relabel(varying: &[(String, String)], tokens: u64) -> Vec<(String, String)> {
    varying
        .iter()
        .map(|(k, v)| {
            if k == "train.tokens" {
                (k.clone(), tokens.to_string())
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use loopscale_config::{DataConfig, Schedule, TrainConfig};
    use loopscale_model::ModelConfig;
    use loopscale_train::learning_rate;

    fn member(tokens: u64, seed: u64) -> PlannedRun {
        let config = RunConfig {
            data: DataConfig {
                seq_len: 8,
                ..DataConfig::default()
            },
            train: TrainConfig {
                tokens,
                batch_size: 2,
                schedule: Schedule::Trapezoid,
                warmup_fraction: 0.1,
                cooldown_fraction: 0.2,
                branch: true,
                ..TrainConfig::default()
            },
            model: ModelConfig::default(),
            seed,
            lineage: None,
        };
        PlannedRun {
            key: config.key(),
            config,
            variant: None,
            varying: vec![("train.tokens".into(), tokens.to_string())],
        }
    }

    #[test]
    fn a_family_shares_one_trunk_whose_learning_rate_each_branch_follows_until_its_cooldown() {
        // 50, 100, 200 steps of 16 tokens; another seed is another family.
        let runs = vec![
            member(800, 0),
            member(1600, 0),
            member(3200, 0),
            member(800, 1),
        ];
        let out = share_trunks(runs).unwrap();
        assert_eq!(out.len(), 6, "two trunks + four branches");
        let trunk = &out[0];
        assert!(trunk.config.is_trunk());
        // Shared warmup: 10% of the shortest (50 steps) = 5; cooldown starts at 40, 80, 160.
        assert_eq!(trunk.config.train.keep_checkpoints, vec![40, 80, 160]);
        assert_eq!(total_steps(&trunk.config), 160);
        for (branch, start, steps) in [(&out[1], 40, 50), (&out[2], 80, 100), (&out[3], 160, 200)] {
            let lineage = branch.config.lineage.as_ref().unwrap();
            assert_eq!(lineage.role, Role::Branch);
            assert_eq!(lineage.parent.as_deref(), Some(trunk.key.as_str()));
            assert_eq!(lineage.parent_step, Some(start));
            assert_eq!(total_steps(&branch.config), steps);
            for step in 0..start {
                assert_eq!(
                    learning_rate(&branch.config.train, step, steps),
                    learning_rate(&trunk.config.train, step, 160),
                    "step {step}"
                );
            }
            assert!(learning_rate(&branch.config.train, start, steps) < branch.config.train.lr);
        }
        assert!(out[4].config.is_trunk());
        assert_eq!(out[5].config.parent(), Some(out[4].key.as_str()));
    }

    #[test]
    fn changing_the_trunk_changes_every_branch_key() {
        let short = share_trunks(vec![member(800, 0), member(1600, 0)]).unwrap();
        let long = share_trunks(vec![member(800, 0), member(3200, 0)]).unwrap();
        assert_ne!(short[0].key, long[0].key, "a longer trunk is another run");
        assert_ne!(short[1].key, long[1].key, "so is the branch cut from it");
        // A shorter member added: the trunk's length is the same, but it must keep one more
        // checkpoint, so it is another run too.
        let more = share_trunks(vec![member(400, 0), member(800, 0), member(1600, 0)]).unwrap();
        assert_eq!(total_steps(&more[0].config), total_steps(&short[0].config));
        assert_ne!(more[0].key, short[0].key);
    }
}
