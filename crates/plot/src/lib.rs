//! Charts drawn with plotters to PNG (bitmap backend) and SVG from one description
//! ([`loopscale_chart::Figure`], [`draw`]). Plot only draws: what each chart shows (its series,
//! legends, titles, or the sentence saying why it is not drawn) is computed by the analysis
//! (`loopscale_analysis::chart_data`), so this crate knows neither frames nor fits.
//!
//! Text is drawn with DejaVu Sans, embedded in the binary (`assets/fonts/`, Bitstream Vera
//! licence) and registered with plotters' ab_glyph renderer, so charts render identically on a
//! machine with no fonts and no fontconfig. A chart whose data is missing is not drawn: it comes
//! back as [`Outcome::Skipped`] with the sentence saying why.

pub mod draw;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow};
use plotters::prelude::*;

use loopscale_chart::{Figure, ReportChart};

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
        draw::draw(&root, fig).with_context(|| format!("drawing {}", png.display()))?;
    }
    {
        let root = SVGBackend::new(&svg, (fig.width, fig.height)).into_drawing_area();
        draw::draw(&root, fig).with_context(|| format!("drawing {}", svg.display()))?;
    }
    Ok(Drawn {
        png,
        svg,
        width: fig.width,
        height: fig.height,
    })
}

/// Every chart of the report (`charts`, in report order) drawn into `dir`, or skipped with its
/// reason.
pub fn render_all(charts: Vec<ReportChart>, dir: &Path) -> Result<Vec<Chart>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut out = Vec::new();
    for ReportChart {
        name,
        title,
        figure,
    } in charts
    {
        let outcome = match figure {
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
