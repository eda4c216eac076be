//! `loopscale report`: a self-contained report of a sweep database — every chart of the
//! chart-data stage (`loopscale_analysis::chart_data`) drawn by [`loopscale_plot`] as PNG and SVG, the runs and the fitted parameters — as `index.html` (opens
//! from disk: relative image paths, inline CSS, no scripts, no external assets) or `index.md`.
//!
//! The report only reads: the database is opened read-only and the fits are computed afresh
//! (not recorded), so a report never changes a sweep's results. With tuned keys (`--tune`, or
//! the sweep file's `[analysis] tune`) every chart and law sees the best run of each
//! configuration, and a table says which value won.

pub mod html;
pub mod markdown;
pub mod tables;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use loopscale_analysis::Frames;
use loopscale_analysis::chart_data::{final_loss_pivot, report_charts};
use loopscale_analysis::fits::ReportFits;
use loopscale_analysis::groups::{
    Metric, config_value, pooled_seed_sd, rank_within, replicate_groups,
};
use loopscale_analysis::is_database;
use loopscale_analysis::source::{load_frames, stored_tune};
use loopscale_plot::{Chart, render_all};
use loopscale_store::Store;
use loopscale_sweep::Sweep;
use tables::TextTable;

/// What `report` writes: `index.html` or `index.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Html,
    Md,
}

/// Everything a report shows, before it is written out as HTML or Markdown.
#[derive(Clone, Debug)]
pub struct Report {
    pub title: String,
    pub source: PathBuf,
    pub charts: Vec<Chart>,
    pub runs: TextTable,
    pub pivot: Option<TextTable>,
    /// With tuned keys: which value won per configuration, and how many were tried.
    pub tuning: Option<TextTable>,
    /// Replicate groups and their verdicts (or the sentence that the noise is unmeasured).
    pub groups: TextTable,
    /// Where the training attempts' time went (`attempts.seconds_*`); `None` before any
    /// attempt recorded a split.
    pub time: Option<TextTable>,
    /// Runs of the sweep that are no longer in its file (key, status): not drawn.
    pub orphaned: Vec<(String, String)>,
    pub fits: TextTable,
}

/// Where a report's data comes from: a database and (for a sweep file) its sweep.
#[derive(Clone, Debug)]
pub struct Source {
    pub db: PathBuf,
    pub sweep: Option<String>,
    /// The name in the default output path `<db dir>/<name>/report`.
    pub name: String,
    /// Keys tuned per configuration (`--tune`, else the sweep file's `[analysis] tune`; for a
    /// database, as its stored sweep files say).
    pub tune: Vec<String>,
    /// A sweep file's runs (their keys): the report draws these, and lists the sweep's runs
    /// that left the file (orphans, kept in the database) instead of drawing them. `None` for a
    /// database: every run in it.
    pub current: Option<Vec<String>>,
}

/// Resolves SOURCE: a sweep file (its database, its sweep only) or a database (every sweep in
/// it), with the keys tuned per configuration (`tune`, or what the sweep file says).
pub fn resolve(source: &Path, tune: &[String]) -> Result<Source> {
    if !source.exists() {
        bail!(
            "{}: no such file (give a sweep file or its database)",
            source.display()
        );
    }
    if is_database(source) {
        let name = source
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "sweep".into());
        let tune = if tune.is_empty() {
            stored_tune(&Store::open_read_only(source)?, None)?
        } else {
            tune.to_vec()
        };
        return Ok(Source {
            db: source.to_path_buf(),
            sweep: None,
            name,
            tune,
            current: None,
        });
    }
    let sweep = Sweep::load(source)?;
    if !sweep.db.exists() {
        bail!(
            "{}: its database {} does not exist yet; train the sweep first (`loopscale run {}`)",
            source.display(),
            sweep.db.display(),
            source.display()
        );
    }
    Ok(Source {
        db: sweep.db.clone(),
        sweep: Some(sweep.name.clone()),
        tune: if tune.is_empty() {
            sweep.analysis.tune.clone()
        } else {
            tune.to_vec()
        },
        current: Some(sweep.runs.iter().map(|r| r.key.clone()).collect()),
        name: sweep.name,
    })
}

/// The default output directory: `results/<sweep>/report` beside the database.
pub fn default_out(source: &Source) -> PathBuf {
    source
        .db
        .parent()
        .unwrap_or(Path::new("."))
        .join(&source.name)
        .join("report")
}

/// Reads the database, fits, draws every chart into `out` and builds the tables.
pub fn build(source: &Source, out: &Path) -> Result<Report> {
    let store = Store::open_read_only(&source.db)?;
    let (frames, envelope) = load_frames(
        &store,
        source.sweep.as_deref(),
        &source.tune,
        source.current.as_deref(),
    )
    .with_context(|| format!("reading {}", source.db.display()))?;
    // Runs of this sweep that left its file: listed, not drawn with the sweep.
    let orphaned: Vec<(String, String)> = match (&source.current, &source.sweep) {
        (Some(current), Some(sweep)) => store
            .runs(sweep)?
            .into_iter()
            .filter(|r| !current.contains(&r.key))
            .map(|r| (r.key, r.status.to_string()))
            .collect(),
        _ => Vec::new(),
    };
    if frames.runs.height() == 0 {
        bail!(
            "{}: no finished runs to report on; train some with `loopscale run`",
            source.db.display()
        );
    }
    let t = Instant::now();
    let laws = loopscale_analysis::written::declared_in_store(&store, source.sweep.as_deref())?;
    let fits = ReportFits::compute_tuned(&frames, envelope.as_ref(), &laws);
    eprintln!(
        "report: fitted the laws in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let charts = render_all(report_charts(&frames, &fits)?, out)?;
    eprintln!(
        "report: {} charts drawn, {} skipped, in {:.1} s",
        charts
            .iter()
            .filter(|c| matches!(c.outcome, loopscale_plot::Outcome::Drawn(_)))
            .count(),
        charts
            .iter()
            .filter(|c| matches!(c.outcome, loopscale_plot::Outcome::Skipped(_)))
            .count(),
        t.elapsed().as_secs_f64()
    );
    let mut runs = tables::runs_table(&frames)?;
    if let Some(env) = &envelope {
        runs.caption = format!(
            "The {} runs chosen by tuning {}: the best finished run of each configuration, in increasing \
             training FLOPs (every run: `SELECT * FROM final_runs`).",
            frames.runs.height(),
            env.keys.join(", ")
        );
    }
    Ok(Report {
        title: format!("loopscale report: {}", source.name),
        source: source.db.clone(),
        charts,
        runs,
        pivot: tables::pivot_table(final_loss_pivot(&frames)?),
        tuning: envelope.as_ref().map(tables::tuning_table),
        groups: groups_table(&frames)?,
        time: store
            .sweep_time_split(source.sweep.as_deref())?
            .map(tables::time_table),
        fits: tables::fits_table(&fits),
        orphaned,
    })
}

/// The report's replicate groups: ranked within each FLOP budget when the runs have budgets
/// (`train.flops`), else among all.
fn groups_table(frames: &Frames) -> Result<TextTable> {
    let groups = replicate_groups(frames)?;
    let budgets = groups
        .iter()
        .any(|g| config_value(&g.config, "train.flops") != "-");
    let within = if budgets {
        vec!["train.flops".to_string()]
    } else {
        Vec::new()
    };
    Ok(tables::groups_table(
        &rank_within(&groups, &within),
        pooled_seed_sd(&groups),
        Metric::ValLoss,
    ))
}

/// `key (status), …`: the orphaned runs as one line.
pub fn orphan_list(orphaned: &[(String, String)]) -> String {
    orphaned
        .iter()
        .map(|(key, status)| format!("{key} ({status})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The charts that were not drawn, with the sentence saying why, in report order.
pub fn skipped(charts: &[loopscale_plot::Chart]) -> Vec<(&'static str, &str)> {
    charts
        .iter()
        .filter_map(|c| match &c.outcome {
            loopscale_plot::Outcome::Skipped(why) => Some((c.title, why.as_str())),
            loopscale_plot::Outcome::Drawn(_) => None,
        })
        .collect()
}

/// Builds the report and writes `out/index.html` (or `index.md`); returns that path.
pub fn write(source: &Source, out: &Path, format: Format) -> Result<PathBuf> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let report = build(source, out)?;
    let (name, text) = match format {
        Format::Html => ("index.html", html::render(&report)),
        Format::Md => ("index.md", markdown::render(&report)),
    };
    let path = out.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// A chart's file name relative to the report (the report sits beside its images).
fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}
