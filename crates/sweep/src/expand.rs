//! [`Spec`] → the grid: every combination of axis values, per variant, as a `RunConfig`.
//!
//! Order is deterministic and follows the file: variants outermost (in file order), then axes
//! in the order their keys appear (a zip group sits where its first key appears; a variant's
//! override keeps the base key's place, its new keys come after the base's), seeds innermost.
//! The last axis varies fastest, so runs that differ only by seed are adjacent.
//!
//! Looped-only keys are collected into `model.looped` for `arch = "looped"` runs and dropped for
//! GPT runs, so a GPT run's config (and key) does not depend on them; `mod.rs` then removes the
//! duplicate runs this creates. `model.mup_base_width` is dropped likewise from runs that are not
//! `parametrization = "mup"`.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::RunConfig;
use super::error::toml_literal;
use super::error::{ErrorKind, Source, SweepError};
use super::keys::{Section, schema};
use super::spec::{Setting, Span, Spec};
use loopscale_config::Targets;

/// More grid points than this is almost surely a mistake (and would take forever to plan).
const MAX_POINTS: u128 = 1_000_000;

/// One grid point before deduplication.
pub(crate) struct Point {
    pub config: RunConfig,
    /// Index into `Spec::variants`.
    pub variant: Option<usize>,
}

pub(crate) struct Grid {
    pub points: Vec<Point>,
    /// Every key set anywhere, in file order (base first, then keys only variants set), then `seed`.
    pub keys: Vec<String>,
    /// Per variant (or one entry when there are none): where each key was set (the key, and
    /// each value of an axis), for messages.
    pub spans: Vec<HashMap<String, KeySpans>>,
}

#[derive(Clone, Debug)]
pub(crate) struct KeySpans {
    pub key: Span,
    /// For axes: each value with its span.
    pub values: Vec<(Value, Span)>,
}

/// An axis (or zip group of axes) in grid order: its keys and, per position, their values.
struct Group<'a> {
    settings: Vec<&'a Setting>,
    len: usize,
}

pub(crate) fn expand(src: &Source, spec: &Spec) -> Result<Grid, SweepError> {
    let mut keys: Vec<String> = spec.base.iter().map(|s| s.key.dotted.clone()).collect();
    let variants: Vec<(Option<usize>, Vec<Setting>)> = if spec.variants.is_empty() {
        vec![(None, spec.base.clone())]
    } else {
        spec.variants
            .iter()
            .enumerate()
            .map(|(i, v)| (Some(i), overlay(&spec.base, &v.settings)))
            .collect()
    };
    for (_, settings) in &variants {
        for s in settings {
            if !keys.contains(&s.key.dotted) {
                keys.push(s.key.dotted.clone());
            }
        }
    }
    keys.push("seed".into());

    let mut points = Vec::new();
    let mut spans = Vec::new();
    let mut total: u128 = 0;
    for (variant, settings) in &variants {
        let vname = variant.map(|i| spec.variants[i].name.as_str());
        // A variant's own seeds (another seed of a configuration, as `suggest` writes it) take
        // the place of the sweep's.
        let seeds = variant
            .and_then(|i| spec.variants[i].seeds.as_ref())
            .unwrap_or(&spec.header.seeds);
        let groups = group(src, spec, settings, vname)?;
        let n = groups
            .iter()
            .fold(seeds.len() as u128, |acc, g| acc * g.len as u128);
        total += n;
        if total > MAX_POINTS {
            return Err(SweepError::new(
                ErrorKind::TooLarge,
                src.path,
                format!("the grid has more than {MAX_POINTS} points"),
            )
            .with_help("cross fewer or shorter axes, or pair axes with `sweep.zip` instead of crossing them"));
        }
        spans.push(
            settings
                .iter()
                .map(|s| {
                    let values = if s.axis { s.values.clone() } else { Vec::new() };
                    (
                        s.key.dotted.clone(),
                        KeySpans {
                            key: s.key_span.clone(),
                            values,
                        },
                    )
                })
                .collect(),
        );
        let constants: Vec<&Setting> = settings.iter().filter(|s| !s.axis).collect();
        // Mixed-radix count over the groups, the last group turning fastest.
        let combos: usize = groups.iter().map(|g| g.len).product();
        for combo in 0..combos {
            let mut index = vec![0usize; groups.len()];
            let mut rest = combo;
            for (k, g) in groups.iter().enumerate().rev() {
                index[k] = rest % g.len;
                rest /= g.len;
            }
            for &(seed, _) in seeds {
                let assigned = constants.iter().map(|s| (*s, &s.values[0].0)).chain(
                    groups
                        .iter()
                        .zip(&index)
                        .flat_map(|(g, &i)| g.settings.iter().map(move |s| (*s, &s.values[i].0))),
                );
                let config = build(src, assigned, seed)?;
                points.push(Point {
                    config,
                    variant: *variant,
                });
            }
        }
    }
    Ok(Grid {
        points,
        keys,
        spans,
    })
}

/// The base settings with a variant's overrides: an override takes the base key's place.
fn overlay(base: &[Setting], over: &[Setting]) -> Vec<Setting> {
    let mut out = base.to_vec();
    for s in over {
        match out.iter_mut().find(|b| b.key.dotted == s.key.dotted) {
            Some(b) => *b = s.clone(),
            None => out.push(s.clone()),
        }
    }
    out
}

/// The axes in grid order, zip groups merged, with their lengths checked.
fn group<'a>(
    src: &Source,
    spec: &Spec,
    settings: &'a [Setting],
    variant: Option<&str>,
) -> Result<Vec<Group<'a>>, SweepError> {
    let whose = variant
        .map(|v| format!(" (in variant `{v}`)"))
        .unwrap_or_default();
    let find = |key: &str| settings.iter().find(|s| s.key.dotted == key);
    // Check every zip group that this variant touches: all its keys set, all lists, equal lengths.
    for zg in &spec.header.zip {
        if zg.keys.iter().all(|(k, _)| find(k).is_none()) {
            continue;
        }
        let mut first: Option<&Setting> = None;
        for (key, span) in &zg.keys {
            let Some(s) = find(key) else {
                return Err(src
                    .error(
                        ErrorKind::Zip,
                        span.clone(),
                        format!("`sweep.zip` names `{key}`, which is not set{whose}"),
                    )
                    .with_key(key.clone())
                    .with_help(format!(
                        "give `{key}` a list of values to pair, or remove it from the zip group"
                    )));
            };
            if !s.axis {
                return Err(src
                    .error(
                        ErrorKind::Zip,
                        span.clone(),
                        format!(
                            "`sweep.zip` names `{key}`, which is not a list (it is {}){whose}",
                            toml_literal(&s.values[0].0)
                        ),
                    )
                    .with_key(key.clone())
                    .with_note(format!("`{key}` is set at {}", at(src, &s.key_span)))
                    .with_help(format!(
                        "zip pairs list axes element-wise: make `{key}` a list, or remove it from the zip group"
                    )));
            }
            if let Some(f) = first.filter(|f| f.values.len() != s.values.len()) {
                return Err(src
                    .error(
                        ErrorKind::Zip,
                        span.clone(),
                        format!(
                            "`sweep.zip` pairs `{}` ({} values) with `{key}` ({} values){whose}: zipped axes need equal lengths",
                            f.key.dotted,
                            f.values.len(),
                            s.values.len()
                        ),
                    )
                    .with_key(key.clone())
                    .with_note(format!("`{}` is set at {}", f.key.dotted, at(src, &f.key_span)))
                    .with_note(format!("`{key}` is set at {}", at(src, &s.key_span)))
                    .with_help("give both lists the same number of values, or remove the zip to cross them"));
            }
            first = first.or(Some(s));
        }
    }
    let mut groups: Vec<Group> = Vec::new();
    let mut placed: Vec<usize> = Vec::new();
    for s in settings.iter().filter(|s| s.axis) {
        match spec
            .header
            .zip
            .iter()
            .position(|zg| zg.keys.iter().any(|(k, _)| *k == s.key.dotted))
        {
            Some(z) if placed.contains(&z) => {}
            Some(z) => {
                placed.push(z);
                let members: Vec<&Setting> = spec.header.zip[z]
                    .keys
                    .iter()
                    .filter_map(|(k, _)| find(k))
                    .collect();
                groups.push(Group {
                    len: members[0].values.len(),
                    settings: members,
                });
            }
            None => groups.push(Group {
                settings: vec![s],
                len: s.values.len(),
            }),
        }
    }
    Ok(groups)
}

fn at(src: &Source, span: &Span) -> String {
    let (l, c) = src.line_col(span.start);
    format!("{}:{l}:{c}", src.path.display())
}

/// One run's config from its assigned values; unassigned keys keep their defaults.
fn build<'a>(
    src: &Source,
    assigned: impl Iterator<Item = (&'a Setting, &'a Value)>,
    seed: u64,
) -> Result<RunConfig, SweepError> {
    let d = &schema().defaults;
    let (mut data, mut train, mut model, mut looped) = (
        d.data.clone(),
        d.train.clone(),
        d.model.clone(),
        d.looped.clone(),
    );
    for (s, v) in assigned {
        let table: &mut Map<String, Value> = match s.key.section {
            Section::Data => &mut data,
            Section::Train => &mut train,
            Section::Model => &mut model,
            Section::Looped => &mut looped,
        };
        table.insert(s.key.field.to_string(), v.clone());
    }
    // p-hop scores every defined position unless told otherwise; the choice is written into
    // the run, so runs trained before `data.targets` existed (on the last position) keep keys
    // of their own and are not mistaken for these.
    if data.get("task").and_then(Value::as_str) == Some("p_hop") && !data.contains_key("targets") {
        data.insert("targets".into(), Value::from(Targets::default().name()));
    }
    // A task's examples are generated, never read from a text: the order of text windows
    // means nothing to it, and leaving it out keeps task runs' keys as they were.
    if data
        .get("task")
        .and_then(Value::as_str)
        .is_some_and(|t| t != "lm")
    {
        data.remove("order");
    }
    if model.get("parametrization").and_then(Value::as_str) != Some("mup") {
        // μP's base width means nothing to a standard run: dropped, so setting it in a sweep
        // that also trains standard runs cannot split one of them into two keys.
        model.remove("mup_base_width");
    }
    if model.get("arch").and_then(Value::as_str) == Some("looped") {
        // A looped model's blocks are its prelude, core and coda; n_layers says the same, so an
        // unused GPT depth can neither split one run into two keys nor mislead a table.
        let blocks: u64 = ["n_prelude", "n_core", "n_coda"]
            .iter()
            .filter_map(|k| looped.get(*k)?.as_u64())
            .sum();
        model.insert("n_layers".into(), Value::from(blocks));
        model.insert("looped".into(), Value::Object(looped));
    }
    let mut run = Map::new();
    run.insert("data".into(), Value::Object(data));
    run.insert("train".into(), Value::Object(train));
    run.insert("model".into(), Value::Object(model));
    run.insert("seed".into(), Value::from(seed));
    // Every value was type-checked on its own already; this can only fail on a bug here.
    serde_json::from_value(Value::Object(run)).map_err(|e| {
        SweepError::new(
            ErrorKind::InvalidRun,
            src.path,
            format!("internal error building a run: {e}"),
        )
    })
}
