//! Charts of a sweep, drawn with plotters to PNG (bitmap backend) and SVG from one description
//! ([`figure`]); which charts exist and what they show is [`charts`].
//!
//! Text is drawn with DejaVu Sans, embedded in the binary (`assets/fonts/`, Bitstream Vera
//! licence) and registered with plotters' ab_glyph renderer, so charts render identically on a
//! machine with no fonts and no fontconfig. A chart whose data is missing is not drawn: it comes
//! back as [`Outcome::Skipped`] with the sentence saying why.

pub mod charts;
pub mod decoding;
pub mod figure;
pub mod lineage;
pub mod suggestion;
pub mod task_charts;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow};
use plotters::prelude::*;

pub use figure::Figure;
use loopscale_analysis::Frames;
use loopscale_analysis::fits::ReportFits;

static FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");

/// Registers the embedded font as plotters' "sans-serif" (once per process).
pub fn register_font() -> Result<()> {
    // Registered once per process; the outcome is kept, so a failure is reported to every
    // caller, not only to the first.
    static REGISTERED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).map_err(|_| {
                "the embedded font assets/fonts/DejaVuSans.ttf could not be read".to_string()
            })
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

/// A drawn chart's files.
#[derive(Clone, Debug, PartialEq)]
pub struct Drawn {
    pub png: PathBuf,
    pub svg: PathBuf,
    pub width: u32,
    pub height: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Drawn(Drawn),
    /// Not drawn: the sentence says which data is missing.
    Skipped(String),
}

/// One chart of the report.
#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    /// File stem (`training_tokens` → training_tokens.png, .svg).
    pub name: &'static str,
    /// Heading in the report.
    pub title: &'static str,
    pub outcome: Outcome,
}

/// Writes `fig` as `dir/name.png` and `dir/name.svg`.
pub fn save(fig: &Figure, dir: &Path, name: &str) -> Result<Drawn> {
    register_font()?;
    let png = dir.join(format!("{name}.png"));
    let svg = dir.join(format!("{name}.svg"));
    {
        let root = BitMapBackend::new(&png, (fig.width, fig.height)).into_drawing_area();
        figure::draw(&root, fig).with_context(|| format!("drawing {}", png.display()))?;
    }
    {
        let root = SVGBackend::new(&svg, (fig.width, fig.height)).into_drawing_area();
        figure::draw(&root, fig).with_context(|| format!("drawing {}", svg.display()))?;
    }
    Ok(Drawn {
        png,
        svg,
        width: fig.width,
        height: fig.height,
    })
}

/// Every chart of the report, drawn into `dir` or skipped with its reason, in report order.
pub fn render_all(frames: &Frames, fits: &ReportFits, dir: &Path) -> Result<Vec<Chart>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let list: Vec<(&'static str, &'static str, charts::Built)> = vec![
        (
            "training_tokens",
            "Training curves: loss vs tokens",
            charts::training_curves(frames, "tokens"),
        ),
        (
            "training_flops",
            "Training curves: loss vs FLOPs",
            charts::training_curves(frames, "flops"),
        ),
        (
            "compute_law",
            "Loss vs training FLOPs with the compute law",
            charts::compute_law(frames, fits),
        ),
        (
            "bits_per_byte",
            "Bits per byte across tokenizers",
            charts::bits_per_byte(frames),
        ),
        (
            "isoflop_loops",
            "Iso-FLOP curves over loops",
            charts::isoflop_curves(&fits.isoflop_loops),
        ),
        (
            "isoflop_tokens",
            "Iso-FLOP curves over tokens",
            charts::isoflop_curves(&fits.isoflop_tokens),
        ),
        (
            "isoflop_optima",
            "Optimal loops and tokens vs FLOPs",
            charts::isoflop_optima(fits),
        ),
        (
            "test_time",
            "Test-time scaling",
            charts::test_time(frames, fits),
        ),
        (
            "budget",
            "Elastic depth: loss vs loop budget",
            charts::budget(frames),
        ),
        (
            "stability",
            "Stability: state and injection norms",
            charts::stability(frames),
        ),
        (
            "variant_parity",
            "Variants side by side: final loss per configuration",
            charts::variant_parity(frames),
        ),
        (
            "branches",
            "WSD branches against independently trained runs",
            lineage::branches(frames),
        ),
        (
            "recast",
            "Recast models: loss vs loops and early exit",
            lineage::recast(frames),
        ),
        (
            "decoding",
            "Decoding: KV cache and loss vs loops (looped, MELT, GPT)",
            decoding::cache_and_loss(frames),
        ),
        (
            "task_depth",
            "Task accuracy vs effective depth",
            task_charts::accuracy_vs_depth(frames),
        ),
        (
            "task_loops",
            "Task accuracy vs test-time loops",
            task_charts::accuracy_vs_loops(frames),
        ),
        (
            "icl_errors",
            "In-context regression error vs examples",
            task_charts::icl_errors(frames),
        ),
        (
            "optimal_lr",
            "Optimal learning rate vs compute",
            charts::hyper_optima(fits),
        ),
        (
            "seed_groups",
            "Seeds: final loss per configuration, mean ± 1 SE",
            charts::seed_groups(frames),
        ),
        (
            "residuals",
            "Residuals of the fits",
            charts::residuals(frames, fits),
        ),
        (
            "parcae_law",
            "Parcae's law L(μ, D): predicted vs measured",
            charts::parcae_law(fits),
        ),
        (
            "written_laws",
            "The sweep's own laws ([analysis.laws]): predicted vs measured",
            charts::written_laws(fits),
        ),
    ];
    let mut out = Vec::new();
    for (name, title, built) in list {
        let outcome = match built.with_context(|| format!("preparing chart {name}"))? {
            Ok(fig) => Outcome::Drawn(save(&fig, dir, name)?),
            Err(why) => {
                // A chart drawn by an earlier report into this directory would outlive its data.
                for ext in ["png", "svg"] {
                    let stale = dir.join(format!("{name}.{ext}"));
                    if stale.exists() {
                        std::fs::remove_file(&stale)
                            .with_context(|| format!("removing {}", stale.display()))?;
                    }
                }
                Outcome::Skipped(why)
            }
        };
        out.push(Chart {
            name,
            title,
            outcome,
        });
    }
    Ok(out)
}
