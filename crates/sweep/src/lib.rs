//! Sweep files: TOML spec → validated grid of runs, each with a stable key.
//!
//! A sweep file is the user's main interface. Example:
//!
//! ```toml
//! [sweep]
//! name = "quickstart"               # required; letters, digits, _ and -
//! description = "first look"        # optional
//! seeds = [0, 1]                    # default [0]; the innermost grid axis
//! db = "results/quickstart.sqlite"  # default results/<name>.sqlite; relative to the CWD
//! zip = [["model.d_model", "model.n_heads"]]  # pair these axes element-wise
//! retries = 1                       # default 0; used by the engine
//! max_passes = 1                    # optional; refuse runs that read their text more often
//!
//! [data]
//! corpus = "moby-dick"              # the shipped corpus, or a path relative to this file's folder
//! seq_len = 128
//! [train]
//! tokens = [100_000, 200_000]       # a list is a grid axis
//! [model]
//! d_model = [64, 128]
//! n_heads = [2, 4]
//! mean_recurrence = 4               # looped-only keys are written flat here
//!
//! [[variants]]
//! name = "gpt"
//! model.arch = "gpt"
//! [[variants]]
//! name = "parcae"
//! model = { arch = "looped", injection = "diagonal", mean_recurrence = [2, 4] }
//! ```
//!
//! | Table          | Keys                                                                  |
//! |----------------|-----------------------------------------------------------------------|
//! | `[sweep]`      | `name` (required), `description`, `seeds`, `db`, `zip`, `retries`, `max_passes` |
//! | `[data]`       | the fields of `DataConfig`                                            |
//! | `[train]`      | the fields of `TrainConfig`                                           |
//! | `[model]`      | the fields of `ModelConfig`, plus `LoopedConfig`'s fields flat        |
//! | `[[variants]]` | `name` (required, unique), `seeds` (in place of `sweep.seeds`), and `data.*`, `train.*`, `model.*` overrides |
//! | `[slurm]`      | `partition`, `time`, `gpus_per_run`, `cpus_per_run`, `max_parallel`, `sbatch_args` (see `slurm`) |
//! | `[analysis]`   | `tune`: keys chosen per configuration by `fit` and `report`; `laws`: laws written as expressions (see `analysis_table`) |
//!
//! [`valid_keys`] lists every key with its default.
//!
//! Semantics:
//! - Any value may be a list: a grid axis. Axes are crossed in file order (the first key is the
//!   outermost loop), seeds innermost. `test_loops` is itself a list: a list of lists is its axis.
//! - `sweep.zip` groups pair axes element-wise (equal lengths required); the group sits where
//!   its first key appears.
//! - With `[[variants]]`, each variant is the base grid with its keys overriding (an override may
//!   be a list, i.e. an axis); variants are the outermost loop, in file order.
//! - Looped-only keys apply to `arch = "looped"` runs and are dropped from GPT runs; runs that
//!   resolve to the same config (same key) are kept once ([`Sweep::collapsed`] counts the rest).
//! - `model.mup_base_width` applies to `model.parametrization = "mup"` runs and is dropped from
//!   standard ones, so their keys are those of runs from before μP.
//! - `train.branch = true` (WSD branches): runs that differ only in their budget share one
//!   constant-learning-rate trunk, a run of its own that `runs` lists before its branches
//!   (`branches`).
//! - Paths: `data.corpus` is relative to the sweep file's folder; `sweep.db` to the working
//!   directory the command runs in.
//!
//! Modules: `spec` (TOML → typed settings), `slurm` (the `[slurm]` table), `expand` (settings → grid), `validate` (per-run
//! checks), `branches` (WSD trunks shared by branched runs), `keys` (the accepted keys, derived from the structs), `error` (messages).

mod analysis_table;
mod branches;
mod error;
mod expand;
pub mod extend;
pub mod flops;
mod keys;
mod parents;
mod problem;
mod slurm_table;
mod spec;
mod task_checks;
mod validate;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

pub use analysis_table::{
    AnalysisSettings, WrittenLawToml, WrittenParam, analysis_of, check_tune_key,
};
pub use error::{ErrorDetails, ErrorKind, SweepError};
pub use keys::valid_keys;
pub use loopscale_config::RunConfig;
pub use slurm_table::{SlurmSettings, is_slurm_time};

use error::Source;
use keys::{Section, display_value, schema};

/// A parsed, expanded and validated sweep.
#[derive(Clone, Debug)]
pub struct Sweep {
    pub name: String,
    pub description: String,
    /// The sweep file, as given.
    pub path: PathBuf,
    /// The sweep file's folder: relative corpus paths are resolved against it.
    pub base_dir: PathBuf,
    /// The results database; relative paths are relative to the working directory.
    pub db: PathBuf,
    pub retries: u32,
    /// `[sweep] max_passes`: the most passes over its training text a run may make; `plan`
    /// and `run` refuse a sweep with a run past it, naming the run.
    pub max_passes: Option<f64>,
    /// The `[slurm]` table (resources for `run --executor slurm`); empty when absent.
    pub slurm: SlurmSettings,
    /// The `[analysis]` table (how `fit` and `report` read the runs); empty when absent.
    pub analysis: AnalysisSettings,
    /// Dotted keys whose values differ across runs (`seed` included when it varies), in grid order.
    pub axes: Vec<String>,
    /// Distinct runs in grid order.
    pub runs: Vec<PlannedRun>,
    /// Grid points dropped because they resolved to an earlier run's config (e.g. looped-only
    /// axes crossed with GPT runs).
    pub collapsed: usize,
    /// Things that are legal but probably not meant (a looped key with no looped run), for
    /// `plan` to print.
    pub warnings: Vec<String>,
}

/// A run that cannot be linked to the run it starts from (a WSD branch to its trunk, a recast
/// run to its parent GPT): which variant it came from, what is wrong and what to do.
#[derive(Clone, Debug)]
pub(crate) struct LinkProblem {
    pub variant: Option<String>,
    pub message: String,
    pub help: String,
}

/// One run of the grid.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedRun {
    /// `config.key()`.
    pub key: String,
    pub config: RunConfig,
    /// The `[[variants]]` name it came from (the first, if several variants give the same run).
    pub variant: Option<String>,
    /// This run's values of `Sweep::axes`, display-ready (`"-"` where a key does not apply).
    pub varying: Vec<(String, String)>,
}

impl PlannedRun {
    /// `variant d_model=64 n_heads=2 seed=0`: a short label for progress lines and tables.
    pub fn label(&self) -> String {
        let mut parts: Vec<String> = self.variant.iter().cloned().collect();
        parts.extend(
            self.varying
                .iter()
                .map(|(k, v)| format!("{}={v}", k.rsplit('.').next().unwrap_or(k))),
        );
        parts.join(" ")
    }
}

/// What `load_with` / `from_str_with` check beyond the file itself.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Check what lies outside the file: each run's corpus exists and is big enough for its
    /// `seq_len`, and a command trainer's program can be run (default true).
    pub check_corpus: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { check_corpus: true }
    }
}

impl Sweep {
    /// Read, parse, expand and validate a sweep file.
    pub fn load(path: &Path) -> Result<Sweep, SweepError> {
        Sweep::load_with(path, &LoadOptions::default())
    }

    pub fn load_with(path: &Path, options: &LoadOptions) -> Result<Sweep, SweepError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            SweepError::new(
                ErrorKind::Io,
                path,
                format!("cannot read sweep file {}: {e}", path.display()),
            )
            .with_help(if e.kind() == std::io::ErrorKind::NotFound {
                "check the path; sweep files usually live in sweeps/"
            } else {
                "check that the file is readable UTF-8 text"
            })
        })?;
        Sweep::from_str_with(&text, path, options)
    }

    /// Parse sweep text as if read from `path` (used for messages and relative corpus paths).
    pub fn from_str(text: &str, path: &Path) -> Result<Sweep, SweepError> {
        Sweep::from_str_with(text, path, &LoadOptions::default())
    }

    pub fn from_str_with(
        text: &str,
        path: &Path,
        options: &LoadOptions,
    ) -> Result<Sweep, SweepError> {
        let src = Source { path, text };
        let spec = spec::parse(&src)?;
        let mut grid = expand::expand(&src, &spec)?;
        // A run's budget is tokens or FLOPs, never both.
        for spans in &grid.spans {
            if let (Some(tokens), Some(flops)) =
                (spans.get("train.tokens"), spans.get("train.flops"))
            {
                let (line, _) = src.line_col(tokens.key.start);
                return Err(src
                    .error(
                        ErrorKind::InvalidRun,
                        flops.key.clone(),
                        "`train.tokens` and `train.flops` are both set: a run's budget is one or the other",
                    )
                    .with_key("train.flops")
                    .with_note(format!("`train.tokens` is set on line {line}"))
                    .with_help(
                        "keep `train.flops` to give every run the same compute (its tokens follow from its FLOPs per token), or `train.tokens` to give it the same data",
                    ));
            }
        }
        for point in &mut grid.points {
            flops::resolve(&mut point.config);
        }
        let base_dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let total = grid.points.len();
        let points = dedup(grid.points);
        let collapsed = total - points.len();
        let (axes, runs) = describe(&grid.keys, &points, &spec);
        if let Some(err) = first_failure(&src, &grid.spans, &runs, &points, &base_dir, options) {
            return Err(err);
        }
        // A run that cannot be linked to its parent: the error points at the key in its variant.
        let located = |key: &'static str, p: LinkProblem| {
            let index = p
                .variant
                .as_ref()
                .and_then(|name| spec.variants.iter().position(|v| &v.name == name))
                .unwrap_or(0);
            let span = grid.spans[index].get(key).map(|s| s.key.clone());
            src.error_at(ErrorKind::InvalidRun, span, p.message)
                .with_key(key)
                .with_help(p.help)
        };
        // WSD branches: each family of branched runs becomes its trunk and its branches.
        let runs = branches::share_trunks(runs).map_err(|p| located("train.branch", p))?;
        let variant_keys = spec
            .variants
            .iter()
            .map(|v| {
                let keys = v.settings.iter().map(|s| s.key.dotted.clone()).collect();
                (v.name.clone(), keys)
            })
            .collect();
        // Runs built on a finished run of another variant: LoopUS's recast GPTs, MELT's
        // post-trained looped models.
        let mut runs = runs;
        for link in [&parents::RECAST, &parents::MELT] {
            runs = parents::link_parents(runs, &variant_keys, link)
                .map_err(|p| located(link.key, p))?;
        }
        let warnings = warnings(&grid.keys, &runs);
        let db = spec.header.db.clone().unwrap_or_else(|| {
            PathBuf::from("results").join(format!("{}.sqlite", spec.header.name))
        });
        Ok(Sweep {
            name: spec.header.name,
            description: spec.header.description,
            path: path.to_path_buf(),
            base_dir,
            db,
            retries: spec.header.retries,
            max_passes: spec.header.max_passes,
            slurm: spec.slurm,
            analysis: spec.analysis,
            axes,
            runs,
            collapsed,
            warnings,
        })
    }
}

/// The grid points with distinct run keys, first occurrence kept, order preserved.
fn dedup(points: Vec<expand::Point>) -> Vec<(String, expand::Point)> {
    let mut seen = HashSet::new();
    points
        .into_iter()
        .filter_map(|p| {
            let key = p.config.key();
            seen.insert(key.clone()).then_some((key, p))
        })
        .collect()
}

/// The axes (keys set in the file that take two or more values across the runs; a looped key
/// merely absent from GPT runs does not count) and the runs with their values of them.
fn describe(
    keys: &[String],
    points: &[(String, expand::Point)],
    spec: &spec::Spec,
) -> (Vec<String>, Vec<PlannedRun>) {
    let values: Vec<Vec<Option<String>>> = points
        .iter()
        .map(|(_, p)| {
            let json = serde_json::to_value(&p.config).expect("RunConfig always serialises");
            keys.iter().map(|k| lookup(&json, k)).collect()
        })
        .collect();
    let varying: Vec<usize> = (0..keys.len())
        .filter(|&i| {
            let mut present = values.iter().filter_map(|v| v[i].as_ref());
            present
                .next()
                .is_some_and(|first| present.any(|x| x != first))
        })
        .collect();
    let axes = varying.iter().map(|&i| keys[i].clone()).collect();
    let runs = points
        .iter()
        .zip(&values)
        .map(|((key, p), vals)| PlannedRun {
            key: key.clone(),
            config: p.config.clone(),
            variant: p.variant.map(|i| spec.variants[i].name.clone()),
            varying: varying
                .iter()
                .map(|&i| {
                    (
                        keys[i].clone(),
                        vals[i].clone().unwrap_or_else(|| "-".into()),
                    )
                })
                .collect(),
        })
        .collect();
    (axes, runs)
}

/// Validate every run; the first failing one becomes the error, in full, and the rest a count.
fn first_failure(
    src: &Source,
    spans: &[HashMap<String, expand::KeySpans>],
    runs: &[PlannedRun],
    points: &[(String, expand::Point)],
    base_dir: &Path,
    options: &LoadOptions,
) -> Option<SweepError> {
    let mut sizes = HashMap::new();
    let mut failing = runs
        .iter()
        .zip(points)
        .enumerate()
        .filter_map(|(i, (run, (_, p)))| {
            let mut problems = validate::check_run(&run.config);
            // Corpus problems only once the run itself is sane (its seq_len may be the bad value).
            if options.check_corpus && problems.is_empty() {
                problems.extend(validate::check_corpus(&run.config, base_dir, &mut sizes));
                problems.extend(validate::check_command_program(&run.config, base_dir));
            }
            (!problems.is_empty()).then_some((i, run, p.variant, problems))
        });
    let (i, run, variant, problems) = failing.next()?;
    let others = failing.count();
    let spans = &spans[variant.unwrap_or(0)];
    let first = &problems[0];
    // Point at the offending value of an axis if we can tell which it is, else at the key.
    let span = first.keys.iter().find_map(|k| {
        let set = spans.get(*k)?;
        let shown = dotted_get(&run.config, k);
        let value = set
            .values
            .iter()
            .find(|(v, _)| Some(display_value(v)) == shown);
        Some(value.map_or(set.key.clone(), |(_, span)| span.clone()))
    });
    let mut err = src
        .error_at(first.kind, span, first.message.clone())
        .with_key(first.keys[0]);
    if runs.len() > 1 || run.variant.is_some() {
        let mut what = format!("in run {} of {}", i + 1, runs.len());
        if let Some(v) = &run.variant {
            what.push_str(&format!(" (variant `{v}`)"));
        }
        let vals: Vec<String> = run
            .varying
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect();
        if !vals.is_empty() {
            what.push_str(&format!(": {}", vals.join(", ")));
        }
        err.notes.push(what);
    }
    for p in &problems[1..] {
        err.notes.push(format!("this run also has: {}", p.message));
    }
    if others > 0 {
        err.notes.push(format!(
            "{others} more run(s) fail validation; run `loopscale plan` again after fixing this one"
        ));
    }
    err.help = Some(first.help.clone());
    Some(err)
}

/// What to know before training: keys set in the file that no run reads.
fn warnings(keys: &[String], runs: &[PlannedRun]) -> Vec<String> {
    let looped = runs
        .iter()
        .filter(|r| r.config.model.looped.is_some())
        .count();
    let mut out = Vec::new();
    for key in keys {
        let Some(info) = schema().get(key) else {
            continue;
        };
        if info.section == Section::Looped && looped == 0 {
            out.push(format!(
                "`{key}` is set but no run has arch = \"looped\", so it has no effect"
            ));
        }
        if key == "model.mup_base_width"
            && !runs
                .iter()
                .any(|r| r.config.model.mup_width_mult().is_some())
        {
            out.push(format!(
                "`{key}` is set but no run has parametrization = \"mup\", so it has no effect"
            ));
        }
        if key == "model.n_layers" && looped == runs.len() && looped > 0 {
            out.push(format!(
                "`{key}` is set but every run has arch = \"looped\", which counts n_prelude + n_core + n_coda instead"
            ));
        }
    }
    out
}

/// A run's value for a dotted key (`model.d_model`, `model.mean_recurrence`, `seed`), as
/// displayed in tables; `None` for an unknown key or one that does not apply (a looped key on a
/// GPT run, an unset option).
pub fn dotted_get(config: &RunConfig, key: &str) -> Option<String> {
    lookup(&serde_json::to_value(config).ok()?, key)
}

/// `dotted_get` on a config already serialised to JSON (serialise once, look up many keys).
fn lookup(json: &serde_json::Value, key: &str) -> Option<String> {
    if key == "seed" {
        return Some(json["seed"].to_string());
    }
    let info = schema().get(key)?;
    let table = match info.section {
        Section::Looped => json.get("model")?.get("looped")?,
        _ => json.get(info.section.table())?,
    };
    // Keys the canonical form omits at their default (so that adding them kept old run keys)
    // but that a sweep may set to the default as one value of an axis: show the default, so
    // that `precision = ["fp32", "bf16"]` is an axis and its runs are told apart. Other absent
    // keys (an unset option, a looped key in a GPT run) stay absent.
    const OMITTED_DEFAULTS: &[(&str, &str)] = &[("train.precision", "fp32")];
    let shown = match table.get(info.field) {
        Some(v) => display_value(v),
        None => OMITTED_DEFAULTS
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, shown)| shown.to_string())?,
    };
    // The trapezoid schedule is stored under its old name (so old run keys stay), but the
    // docs and sweep files call it `wsd`: show that.
    Some(match (key, shown.as_str()) {
        ("train.schedule", "trapezoid") => "wsd".to_string(),
        _ => shown,
    })
}
