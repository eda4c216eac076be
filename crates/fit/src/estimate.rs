//! What a fit returns: point estimates with bootstrap intervals, solver bookkeeping, the
//! held-out check and the notes on what the estimates do not support; serialisable (for the
//! `fits` table / JSON) and printable as a table.

use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ParamEstimate {
    pub name: String,
    pub value: f64,
    /// Interval bounds: the percentile bootstrap interval, widened to the profile interval
    /// for profiled parameters (`fit::identify`); `None` when no bootstrap was run, or where
    /// the interval is open (no limit the data show on that side).
    pub lo: Option<f64>,
    pub hi: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HeldOut {
    /// Number of held-out (largest-compute) points.
    pub n: usize,
    /// Which points, in words ("the 2 largest-compute points", "the largest FLOP budget ...").
    pub what: String,
    pub mean_abs_rel_error: f64,
    pub max_abs_rel_error: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BootstrapSummary {
    pub resamples: usize,
    /// Resamples whose fit failed (non-finite objective, degenerate parabola, ...) and were
    /// left out of the intervals.
    pub failed: usize,
    pub level: f64,
    pub seed: u64,
    /// How resamples were started; see `parametric::fit_law`.
    pub starts_per_resample: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FitReport {
    pub law: String,
    pub n_points: usize,
    pub params: Vec<ParamEstimate>,
    pub derived: Vec<ParamEstimate>,
    /// Best objective: Σ Huber for Huber fits, residual sum of squares for least squares.
    pub objective: f64,
    pub solver: String,
    pub starts: usize,
    pub converged_starts: usize,
    /// Starts that ended at the best objective (within a relative 1e-9).
    pub starts_at_best: usize,
    pub huber_delta: Option<f64>,
    /// The solver-space optimum (e.g. log E, log A, ...), to predict without refitting.
    pub theta: Vec<f64>,
    pub theta_names: Vec<String>,
    pub bootstrap: Option<BootstrapSummary>,
    pub heldout: Option<HeldOut>,
    /// What the fit does not support, in words (a flat test-time curve, a rate at its bound,
    /// an iso-FLOP optimum at the edge of the sampled values, ...); empty when nothing.
    pub notes: Vec<String>,
    /// Parameters and derived quantities the data do not determine (see `fit::identify`):
    /// printed as "not identified" instead of a number, and named in `notes`.
    pub not_identified: Vec<String>,
    /// Profile intervals of the law's headline parameters (their `lo`, `hi` are the hull of
    /// the profile and percentile intervals); empty for fits without profiles.
    pub profiles: Vec<ProfileInterval>,
    /// The residuals against the seed noise, where the points are runs with seeds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lack_of_fit: Option<super::noise::LackOfFit>,
}

impl FitReport {
    pub fn param(&self, name: &str) -> Option<&ParamEstimate> {
        self.params
            .iter()
            .chain(&self.derived)
            .find(|p| p.name == name)
    }
    pub fn value(&self, name: &str) -> Option<f64> {
        self.param(name).map(|p| p.value)
    }
    /// Whether the data determine the parameter (or derived quantity) `name`.
    pub fn identified(&self, name: &str) -> bool {
        !self.not_identified.iter().any(|n| n == name)
    }
    /// `name = value` for a legend or a table, or `name not identified`.
    pub fn show(&self, name: &str, digits: usize) -> String {
        match self.value(name) {
            Some(_) if !self.identified(name) => format!("{name} not identified"),
            Some(v) => format!("{name} = {}", fmt_digits(v, digits)),
            None => format!("{name} = ?"),
        }
    }
}

/// A number with `digits` significant-looking decimals, in scientific notation when large or small.
pub fn fmt_digits(x: f64, digits: usize) -> String {
    let a = x.abs();
    if x == 0.0 || (1e-2..1e4).contains(&a) {
        format!("{x:.digits$}")
    } else {
        format!("{x:.digits$e}")
    }
}

fn fmt_num(x: f64) -> String {
    let a = x.abs();
    if x == 0.0 || (1e-3..1e5).contains(&a) {
        format!("{x:.6}")
    } else {
        format!("{x:.4e}")
    }
}

fn fmt_opt(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_string(), fmt_num)
}

impl fmt::Display for FitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "law: {}   points: {}   solver: {}",
            self.law, self.n_points, self.solver
        )?;
        write!(
            f,
            "objective: {:.6e}   starts: {} (converged {}, at best {})",
            self.objective, self.starts, self.converged_starts, self.starts_at_best
        )?;
        if let Some(d) = self.huber_delta {
            write!(f, "   huber δ: {d:e}")?;
        }
        writeln!(f)?;
        let level = self.bootstrap.as_ref().map(|b| b.level * 100.0);
        let ci = level.map_or("interval".to_string(), |l| format!("{l:.0}% lo"));
        writeln!(
            f,
            "  {:<24} {:>14} {:>14} {:>14}",
            "parameter", "estimate", ci, "hi"
        )?;
        let rows = self
            .params
            .iter()
            .map(|p| (p, ""))
            .chain(self.derived.iter().map(|p| (p, " (derived)")));
        for (p, tag) in rows {
            let name = format!("{}{}", p.name, tag);
            let profiled = self.profiles.iter().any(|q| q.name == p.name);
            let end = |x: Option<f64>| match x {
                None if profiled || self.bootstrap.is_some() => "open".to_string(),
                x => fmt_opt(x),
            };
            let value = if self.identified(&p.name) {
                fmt_num(p.value)
            } else {
                "not identified".to_string()
            };
            writeln!(
                f,
                "  {:<24} {:>14} {:>14} {:>14}",
                name,
                value,
                end(p.lo),
                end(p.hi)
            )?;
        }
        if let Some(l) = &self.lack_of_fit {
            writeln!(
                f,
                "lack of fit against seed noise: sd {:.4} vs {:.4} (log loss), F = {:.2} on {} and {} df, p = {:.3}{}",
                l.lack_sd,
                l.noise_sd,
                l.f,
                l.df_lack,
                l.df_noise,
                l.p_value,
                if l.p_value < 0.05 {
                    ""
                } else {
                    ": within seed noise"
                }
            )?;
        }
        if let Some(b) = &self.bootstrap {
            writeln!(
                f,
                "bootstrap: {} resamples ({} failed), seed {}, {} start(s) each",
                b.resamples, b.failed, b.seed, b.starts_per_resample
            )?;
        }
        if let Some(h) = &self.heldout {
            writeln!(
                f,
                "held out {}: mean |rel err| {:.4}%, max {:.4}%",
                h.what,
                100.0 * h.mean_abs_rel_error,
                100.0 * h.max_abs_rel_error
            )?;
        }
        for note in &self.notes {
            writeln!(f, "NOTE: {note}")?;
        }
        Ok(())
    }
}

/// One end of a profile interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum End {
    /// The objective crosses the threshold here.
    At(f64),
    /// The objective stays within the threshold to the parameter's bound (0, or a rate's limit).
    Bound(f64),
    /// Within the threshold to the end of the range searched: no limit the data show.
    Open,
}

impl End {
    pub fn value(self) -> Option<f64> {
        match self {
            End::At(v) | End::Bound(v) => Some(v),
            End::Open => None,
        }
    }
    /// Whether the data set this end (rather than a bound or the range searched).
    pub fn determined(self) -> bool {
        matches!(self, End::At(_))
    }
}

/// A parameter's profile interval.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProfileInterval {
    pub name: String,
    pub lo: End,
    pub hi: End,
    /// The objective rise that bounds the interval.
    pub threshold: f64,
}
