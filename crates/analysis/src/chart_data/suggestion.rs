//! The chart of a `loopscale suggest` answer: where the chosen runs sit among the runs already
//! trained and the other candidates (in the law's covariates, tokens D against parameters N),
//! and how the target's expected interval narrows as the batch's FLOPs are spent.

use loopscale_chart::{Figure, INK, Kind, Panel, Series};

/// What the chart needs, in plain numbers: (D, N) of the trained runs, of the candidates and of
/// the chosen ones (in the order chosen), and (cumulative FLOPs, expected width) from the
/// current width on.
pub struct SuggestionPlot<'a> {
    pub target: &'a str,
    pub n_label: &'a str,
    pub trained: Vec<(f64, f64)>,
    pub candidates: Vec<(f64, f64)>,
    pub chosen: Vec<(f64, f64)>,
    pub widths: Vec<(f64, f64)>,
}

pub fn suggestion(p: &SuggestionPlot) -> Figure {
    let design = Panel {
        title: "Runs trained, candidates, and the chosen next runs".into(),
        x_label: "training tokens D".into(),
        y_label: p.n_label.into(),
        log_x: true,
        log_y: true,
        series: vec![
            Series::new(
                Some("candidate".into()),
                6,
                Kind::Markers,
                p.candidates.clone(),
            ),
            Series::new(Some("trained".into()), 0, Kind::Markers, p.trained.clone()),
            Series::new(Some("chosen".into()), 1, Kind::Star, p.chosen.clone()),
        ],
        zero_line: false,
    };
    let narrowing = Panel {
        title: format!("Expected interval of {} as the batch is trained", p.target),
        x_label: "FLOPs spent on the new runs".into(),
        y_label: "expected interval width".into(),
        log_x: false,
        log_y: false,
        series: vec![
            Series::new(None, INK, Kind::Line, p.widths.clone()),
            Series::new(
                Some("after each chosen run".into()),
                1,
                Kind::Markers,
                p.widths.clone(),
            ),
        ],
        zero_line: false,
    };
    Figure::row(vec![design, narrowing])
}
