//! Recast parents (LoopUS): each run with `model.recast_from = "<variant>"` starts from the
//! finished GPT of that variant with the same values on the axes both share.
//!
//! "Shared axes" are the sweep's axes (keys whose values differ across runs) on which both runs
//! have a value, except the keys the child's own variant sets (they describe the child, e.g.
//! its loops or shape) and `model.n_layers` (a looped run's is its block count, checked
//! against the parent's separately). Exactly one run of the named variant must match; the child's lineage
//! then names it and its last step, and the parent keeps the checkpoint of that step
//! (`train.keep_checkpoints`, operational, so the parent's key does not change).

use std::collections::{HashMap, HashSet};

use super::{LinkProblem, PlannedRun};
use crate::config::{Lineage, Role};
use crate::model::recast::{Split, recast_config};
use crate::model::{Arch, LoopedConfig};
use crate::train::total_steps;

/// Links every recast run to its parent. `variant_keys`: per `[[variants]]` name, the keys it
/// sets itself.
pub(crate) fn link_parents(
    mut runs: Vec<PlannedRun>,
    variant_keys: &HashMap<String, HashSet<String>>,
) -> Result<Vec<PlannedRun>, LinkProblem> {
    let children: Vec<usize> = (0..runs.len())
        .filter(|&i| runs[i].config.model.recast_from.is_some())
        .collect();
    for i in children {
        let child = &runs[i];
        let from = child.config.model.recast_from.clone().expect("filtered");
        let problem = |message: String, help: String| LinkProblem {
            variant: child.variant.clone(),
            message,
            help,
        };
        let own = child
            .variant
            .as_ref()
            .and_then(|v| variant_keys.get(v))
            .cloned()
            .unwrap_or_default();
        let shared = |parent: &PlannedRun| -> bool {
            child.varying.iter().all(|(key, value)| {
                // A looped run's n_layers is its prelude + core + coda: the shape check below
                // compares it with the parent's.
                own.contains(key)
                    || key == "model.n_layers"
                    || value == "-"
                    || parent
                        .varying
                        .iter()
                        .find(|(k, _)| k == key)
                        .is_none_or(|(_, v)| v == "-" || v == value)
            })
        };
        let of_variant: Vec<usize> = (0..runs.len())
            .filter(|&j| runs[j].variant.as_deref() == Some(from.as_str()))
            .collect();
        if of_variant.is_empty() {
            let names: Vec<&String> = variant_keys.keys().collect();
            return Err(problem(
                format!("`model.recast_from` = {from:?} names no variant of this sweep"),
                format!("name one of the [[variants]] (this sweep has {names:?}), a GPT to recast"),
            ));
        }
        let matches: Vec<usize> = of_variant
            .into_iter()
            .filter(|&j| shared(&runs[j]))
            .collect();
        let parent = match matches.as_slice() {
            [one] => *one,
            [] => {
                return Err(problem(
                    format!(
                        "`model.recast_from` = {from:?}: no run of that variant has this run's values ({})",
                        child.label()
                    ),
                    format!(
                        "give variant `{from}` the same values on the axes both share, or set the axis in this run's variant"
                    ),
                ));
            }
            several => {
                let labels: Vec<String> = several.iter().map(|&j| runs[j].label()).collect();
                return Err(problem(
                    format!(
                        "`model.recast_from` = {from:?}: {} runs of that variant fit this run ({}): {}",
                        several.len(),
                        child.label(),
                        labels.join("; ")
                    ),
                    "make the axis that tells them apart an axis of this run's variant too, or narrow the parent variant".into(),
                ));
            }
        };
        let (parent_cfg, child_cfg) = (&runs[parent].config, &child.config);
        if parent_cfg.model.arch != Arch::Gpt {
            return Err(problem(
                format!(
                    "`model.recast_from` = {from:?}: that variant's runs are looped models; recasting starts from a GPT"
                ),
                format!("set model.arch = \"gpt\" in variant `{from}`"),
            ));
        }
        let Some(looped) = child_cfg.model.looped.as_ref() else {
            return Err(problem(
                "`model.recast_from` is set on a GPT run: the recast model is a looped one".into(),
                "set model.arch = \"looped\" in this run's variant".into(),
            ));
        };
        check_shape(looped, parent_cfg.model.n_layers)
            .and_then(|split| recast_config(&parent_cfg.model, &child_cfg.model, split).map(|_| ()))
            .map_err(|e| {
                problem(
                    format!("`model.recast_from` = {from:?}: the parent does not fit this run: {e}"),
                    "a recast model keeps its parent's widths and blocks: n_prelude + n_core + n_coda = the parent's n_layers".into(),
                )
            })?;
        let steps = total_steps(parent_cfg);
        let parent_key = runs[parent].key.clone();
        let keep = &mut runs[parent].config.train.keep_checkpoints;
        if !keep.contains(&steps) {
            keep.push(steps);
        }
        let child = &mut runs[i];
        child.config.lineage = Some(Lineage {
            role: Role::Recast,
            parent: Some(parent_key),
            parent_step: Some(steps),
            branch_points: Vec::new(),
        });
        child.key = child.config.key();
    }
    Ok(runs)
}

/// The configured split of a recast child with `n_layers` parent blocks.
fn check_shape(looped: &LoopedConfig, n_layers: usize) -> Result<Split, String> {
    let blocks = looped.n_prelude + looped.n_core + looped.n_coda;
    if blocks != n_layers {
        return Err(format!(
            "n_prelude + n_core + n_coda = {} + {} + {} = {blocks}, the parent has {n_layers} blocks",
            looped.n_prelude, looped.n_core, looped.n_coda
        ));
    }
    Ok(Split {
        start: looped.n_prelude,
        end: looped.n_prelude + looped.n_core,
    })
}
