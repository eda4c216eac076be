//! A chart as data: a [`Figure`] is a grid of [`Panel`]s; a panel has axes (linear or log, with
//! labels that carry units) and [`Series`]: lines, dashed fitted curves, markers, interval bands,
//! error bars. Colours are indices into the plot crate's palette ([`INK`] is black), so the data
//! says which series share a colour and the drawing says what the colour is.

/// How a series is drawn.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// A measured curve.
    Line,
    /// A fitted curve.
    Dashed,
    /// Measured points.
    Markers,
    /// A highlighted point (an optimum): a larger ring.
    Star,
    /// A shaded interval (x, lo, hi); `points` is ignored.
    Band(Vec<(f64, f64, f64)>),
    /// Points (`points`: a group's mean) with vertical bars (x, lo, hi) through them.
    ErrorBars(Vec<(f64, f64, f64)>),
    /// Small, pale points drawn behind the others (the single seeds under their group's mean).
    Faint,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend entry; `None` keeps it out of the legend.
    pub name: Option<String>,
    /// Index into the palette.
    pub colour: usize,
    pub kind: Kind,
    pub points: Vec<(f64, f64)>,
}

impl Series {
    pub fn new(name: Option<String>, colour: usize, kind: Kind, points: Vec<(f64, f64)>) -> Series {
        Series {
            name,
            colour,
            kind,
            points,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_x: bool,
    pub log_y: bool,
    pub series: Vec<Series>,
    /// Draw a horizontal line at y = 0 (residual plots).
    pub zero_line: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    pub panels: Vec<Panel>,
    /// Panels per row.
    pub columns: usize,
    pub width: u32,
    pub height: u32,
}

/// Palette index drawn in black (reference marks: the frontier, fitted laws).
pub const INK: usize = usize::MAX;

/// A one-panel figure's size in pixels.
pub const WIDTH: u32 = 960;
pub const HEIGHT: u32 = 600;
/// Two panels side by side.
pub const WIDE: u32 = 1500;

impl Figure {
    /// One panel.
    pub fn single(panel: Panel) -> Figure {
        Figure {
            panels: vec![panel],
            columns: 1,
            width: WIDTH,
            height: HEIGHT,
        }
    }

    /// Panels two to a row.
    pub fn row(panels: Vec<Panel>) -> Figure {
        let n = panels.len().max(1);
        Figure {
            columns: n.min(2),
            width: if n > 1 { WIDE } else { WIDTH },
            height: HEIGHT * n.div_ceil(2) as u32,
            panels,
        }
    }
}

/// One chart of the report as data: its file stem (`training_tokens` → training_tokens.png,
/// .svg), its heading, and its figure or the sentence saying which data is missing.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportChart {
    pub name: &'static str,
    pub title: &'static str,
    pub figure: Result<Figure, String>,
}
