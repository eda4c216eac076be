//! Runs built on a finished run of another variant: each run with `model.recast_from =
//! "<variant>"` (LoopUS) starts from the finished GPT of that variant, and each run with
//! `model.melt_from = "<variant>"` (MELT) from the finished looped model of that variant, with
//! the same values on the axes both share. The two differ only in their [`ParentLink`]: which
//! key names the parent, the lineage role, and what the parent must be.
//!
//! "Shared axes" are the sweep's axes (keys whose values differ across runs) on which both runs
//! have a value, except the keys the child's own variant sets (they describe the child, e.g.
//! its loops or shape) and `model.n_layers` (a looped run's is its block count, checked
//! against the parent's separately). Exactly one run of the named variant must match; the child's lineage
//! then names it and its last step, and the parent keeps the checkpoint of that step
//! (`train.keep_checkpoints`, operational, so the parent's key does not change).

use std::collections::{HashMap, HashSet};

use super::{LinkProblem, PlannedRun};
use loopscale_config::{Lineage, Role, RunConfig};
use loopscale_model::recast::{Split, recast_config};
use loopscale_model::{Arch, LoopedConfig, ModelConfig};
use loopscale_train::total_steps;

/// Whether a parent fits a child: `Err((message, help))`.
type Fits = fn(from: &str, parent: &RunConfig, child: &RunConfig) -> Result<(), (String, String)>;

/// One kind of run built on another: the key naming the parent variant, the child's lineage
/// role, what the help says the parent is, and whether a parent fits a child (`Err((message,
/// help))`; `from` is the parent variant's name).
pub(crate) struct ParentLink {
    pub key: &'static str,
    name: fn(&ModelConfig) -> Option<&String>,
    role: Role,
    parent_is: &'static str,
    fits: Fits,
}

/// LoopUS: a looped model recast from a finished GPT.
pub(crate) const RECAST: ParentLink = ParentLink {
    key: "model.recast_from",
    name: |m| m.recast_from.as_ref(),
    role: Role::Recast,
    parent_is: "a GPT to recast",
    fits: recast_fits,
};

/// MELT: a looped model post-trained from a finished looped model into a shared KV cache.
pub(crate) const MELT: ParentLink = ParentLink {
    key: "model.melt_from",
    name: |m| m.melt_from.as_ref(),
    role: Role::Melt,
    parent_is: "a looped run to post-train",
    fits: melt_fits,
};

/// Links every run built on a parent as `link` says. `variant_keys`: per `[[variants]]`
/// name, the keys it sets itself.
pub(crate) fn link_parents(
    mut runs: Vec<PlannedRun>,
    variant_keys: &HashMap<String, HashSet<String>>,
    link: &ParentLink,
) -> Result<Vec<PlannedRun>, LinkProblem> {
    let key = link.key;
    let children: Vec<usize> = (0..runs.len())
        .filter(|&i| (link.name)(&runs[i].config.model).is_some())
        .collect();
    for i in children {
        let child = &runs[i];
        let from = (link.name)(&child.config.model).cloned().expect("filtered");
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
                format!("`{key}` = {from:?} names no variant of this sweep"),
                format!(
                    "name one of the [[variants]] (this sweep has {names:?}), {}",
                    link.parent_is
                ),
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
                        "`{key}` = {from:?}: no run of that variant has this run's values ({})",
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
                        "`{key}` = {from:?}: {} runs of that variant fit this run ({}): {}",
                        several.len(),
                        child.label(),
                        labels.join("; ")
                    ),
                    "make the axis that tells them apart an axis of this run's variant too, or narrow the parent variant".into(),
                ));
            }
        };
        let (parent_cfg, child_cfg) = (&runs[parent].config, &child.config);
        (link.fits)(&from, parent_cfg, child_cfg).map_err(|(m, h)| problem(m, h))?;
        let steps = total_steps(parent_cfg);
        let parent_key = runs[parent].key.clone();
        let keep = &mut runs[parent].config.train.keep_checkpoints;
        if !keep.contains(&steps) {
            keep.push(steps);
        }
        let child = &mut runs[i];
        child.config.lineage = Some(Lineage {
            role: link.role,
            parent: Some(parent_key),
            parent_step: Some(steps),
            branch_points: Vec::new(),
        });
        child.key = child.config.key();
    }
    Ok(runs)
}

/// A recast child's parent is a GPT whose blocks its prelude, core and coda take.
fn recast_fits(
    from: &str,
    parent_cfg: &RunConfig,
    child_cfg: &RunConfig,
) -> Result<(), (String, String)> {
    let problem = |m: String, h: String| (m, h);
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
            })
}

/// A MELT child's parent is a looped run (not a MELT run) of the same model but the loop
/// schedule and MELT's own keys.
fn melt_fits(from: &str, parent: &RunConfig, child: &RunConfig) -> Result<(), (String, String)> {
    if parent.model.arch != Arch::Looped {
        return Err((
            format!(
                "`model.melt_from` = {from:?}: that variant's runs are GPTs; MELT post-trains a looped model"
            ),
            format!("name a looped variant, or set model.arch = \"looped\" in variant `{from}`"),
        ));
    }
    if parent.model.melt_from.is_some() {
        return Err((
            format!("`model.melt_from` = {from:?}: that variant is a MELT run itself"),
            "name the looped variant the MELT runs start from".into(),
        ));
    }
    if child.model.arch != Arch::Looped {
        return Err((
            "`model.melt_from` is set on a GPT run: a MELT model is a looped one".into(),
            "set model.arch = \"looped\" in this run's variant".into(),
        ));
    }
    let shape = |m: &ModelConfig| {
        let mut m = m.clone();
        m.melt_from = None;
        m.recast_from = None;
        if let Some(l) = m.looped.as_mut() {
            *l = LoopedConfig {
                melt_chunk: None,
                test_loops: Vec::new(),
                mean_recurrence: 0,
                backprop_depth: None,
                depth_sampling: loopscale_model::DepthSampling::Fixed,
                exit_thresholds: Vec::new(),
                ..l.clone()
            };
        }
        serde_json::to_value(m).expect("a model config serialises")
    };
    let (p, c) = (shape(&parent.model), shape(&child.model));
    if p != c {
        let differ: Vec<String> = flat(&p)
            .into_iter()
            .filter(|(k, v)| flat(&c).get(k) != Some(v))
            .map(|(k, _)| format!("model.{k}"))
            .chain(
                flat(&c)
                    .into_keys()
                    .filter(|k| !flat(&p).contains_key(k))
                    .map(|k| format!("model.{k}")),
            )
            .collect();
        return Err((
            format!(
                "`model.melt_from` = {from:?}: the parent's model differs from this run's in {}",
                differ.join(", ")
            ),
            "a MELT run keeps its parent's weights and shape: only the loop schedule (mean_recurrence, backprop_depth, depth_sampling, test_loops) and melt_chunk may differ".into(),
        ));
    }
    Ok(())
}

/// A model config's JSON as one flat map (the looped table's keys without their prefix).
fn flat(v: &serde_json::Value) -> std::collections::BTreeMap<String, serde_json::Value> {
    let mut out = std::collections::BTreeMap::new();
    if let Some(map) = v.as_object() {
        for (k, v) in map {
            match (k.as_str(), v.as_object()) {
                ("looped", Some(inner)) => {
                    out.extend(inner.iter().map(|(k, v)| (k.clone(), v.clone())))
                }
                _ => {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
    }
    out
}

/// The configured split of a recast child with `n_layers` parent blocks.
fn check_shape(looped: &LoopedConfig, n_layers: usize) -> Result<Split, String> {
    let blocks = looped.blocks();
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
