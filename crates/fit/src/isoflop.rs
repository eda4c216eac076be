//! Iso-FLOP analysis (Hoffmann et al.'s approach 2, as Parcae uses it for loop counts):
//! group points into FLOP budgets; locate each budget's optimum x* (x = loops, tokens or
//! parameters) where the data can support it; then fit x*(C) = G·C^a by least squares in log
//! space over the budgets whose optimum was located. Intervals come from a bootstrap that
//! resamples points within each budget and repeats the whole procedure.
//!
//! **Locating an optimum.** Loss against log x is a parabola only near its minimum (a
//! Parcae-shaped law L = E + X·N(μ)^−x + Y·D^−y at fixed C is skewed), so a parabola through a
//! whole wide grid puts its vertex off the minimum, and through a grid that stops short of the
//! minimum it extrapolates a vertex nothing supports. Instead: the sampled x with the lowest
//! (mean) loss is found; if it is the smallest or largest sampled x, the optimum is *at or
//! beyond the edge* of the samples: it is not located, it is reported as a bound, flagged, and
//! left out of the power law. Otherwise a parabola in log x through that x and its neighbours
//! (two on each side where the grid has them, else one) gives the vertex, which lies between
//! the neighbours. In the bootstrap an optimum at an edge counts as unbounded on that side,
//! so a budget whose optimum the resamples push to an edge gets an open interval.

use anyhow::{Result, anyhow, bail};
use rayon::prelude::*;
use serde::Serialize;

use super::bootstrap::{BootstrapOptions, percentile_interval, rng_for, stratified_weights};
use super::estimate::{BootstrapSummary, FitReport, ParamEstimate};
use super::points::Points;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum IsoflopAxis {
    Loops,
    Tokens,
    Params,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub enum Budgeting {
    /// Use the `group` column as the budget label.
    Labels,
    /// Sort by C and start a new budget whenever C exceeds the budget's smallest C by more
    /// than this relative tolerance.
    RelativeTolerance(f64),
}

#[derive(Debug, Clone, Serialize)]
pub struct IsoflopOptions {
    pub axis: IsoflopAxis,
    pub budgeting: Budgeting,
    pub bootstrap: Option<BootstrapOptions>,
}

impl Default for IsoflopOptions {
    fn default() -> Self {
        IsoflopOptions {
            axis: IsoflopAxis::Loops,
            budgeting: Budgeting::RelativeTolerance(0.05),
            bootstrap: Some(BootstrapOptions::default()),
        }
    }
}

/// One FLOP budget: its compute (geometric mean of its points' C) and its points.
#[derive(Debug, Clone, Serialize)]
pub struct Budget {
    pub label: String,
    pub c: f64,
    pub idx: Vec<usize>,
}

/// loss ≈ c0 + c1·u + c2·u², u = log x.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Parabola {
    pub c0: f64,
    pub c1: f64,
    pub c2: f64,
}

impl Parabola {
    /// The minimiser u* = −c1 / (2·c2); `None` unless the parabola opens upward.
    pub fn vertex(&self) -> Option<f64> {
        (self.c2 > 0.0).then(|| -self.c1 / (2.0 * self.c2))
    }
}

/// Where a budget's optimum lies relative to the values it sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Location {
    /// Between the sampled values: located by a parabola near the lowest sampled loss.
    Inside,
    /// The lowest loss is at the smallest sampled x: the optimum is there or below it.
    AtLowerEdge,
    /// The lowest loss is at the largest sampled x: the optimum is there or beyond it.
    AtUpperEdge,
}

/// One budget's optimum, from its points under some weights.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Optimum {
    pub location: Location,
    /// log x*: the local parabola's vertex (inside), or log x of the edge.
    pub u_star: f64,
    /// The parabola's loss at the vertex, or the mean loss at the edge.
    pub loss_star: f64,
    /// The local parabola (inside only), valid over `window`.
    pub parabola: Option<Parabola>,
    /// log x of the lowest and highest sampled value the parabola went through; at an edge,
    /// the edge and its neighbour (the optimum lies beyond the neighbour).
    pub window: (f64, f64),
}

/// Locates the optimum of one budget's points (u = log x, loss, weights; see the module
/// docs). `None` when fewer than three distinct x carry weight.
pub fn locate(u: &[f64], y: &[f64], w: &[f64]) -> Option<Optimum> {
    // Distinct u (weighted points only), each with its weighted mean loss.
    let mut idx: Vec<usize> = (0..u.len()).filter(|&i| w[i] > 0.0).collect();
    idx.sort_by(|&i, &j| u[i].total_cmp(&u[j]));
    let mut xs: Vec<(f64, f64, f64)> = Vec::new(); // (u, Σ w·y, Σ w)
    for i in idx {
        match xs.last_mut() {
            Some(last) if last.0 == u[i] => {
                last.1 += w[i] * y[i];
                last.2 += w[i];
            }
            _ => xs.push((u[i], w[i] * y[i], w[i])),
        }
    }
    if xs.len() < 3 {
        return None;
    }
    let mean = |k: usize| xs[k].1 / xs[k].2;
    let last = xs.len() - 1;
    let j = (0..=last).fold(0, |b, k| if mean(k) < mean(b) { k } else { b });
    // At an edge, a convex curve has its minimum past the edge's neighbour: the window is the
    // edge and that neighbour, the bound the data give.
    if j == 0 || j == last {
        let (location, window) = if j == 0 {
            (Location::AtLowerEdge, (xs[0].0, xs[1].0))
        } else {
            (Location::AtUpperEdge, (xs[last - 1].0, xs[last].0))
        };
        return Some(Optimum {
            location,
            u_star: xs[j].0,
            loss_star: mean(j),
            parabola: None,
            window,
        });
    }
    // Two neighbours on each side where the grid has them; one if that parabola does not
    // put its minimum inside its window (always true with one: the middle point is lowest).
    for h in [j.min(last - j).min(2), 1] {
        let (lo, hi) = (xs[j - h].0, xs[j + h].0);
        let sel: Vec<usize> = (0..u.len())
            .filter(|&i| w[i] > 0.0 && u[i] >= lo && u[i] <= hi)
            .collect();
        let pu: Vec<f64> = sel.iter().map(|&i| u[i]).collect();
        let py: Vec<f64> = sel.iter().map(|&i| y[i]).collect();
        let pw: Vec<f64> = sel.iter().map(|&i| w[i]).collect();
        let Some(p) = fit_parabola(&pu, &py, &pw) else {
            continue;
        };
        let Some(v) = p.vertex() else { continue };
        if v >= lo && v <= hi {
            return Some(Optimum {
                location: Location::Inside,
                u_star: v,
                loss_star: p.c0 + p.c1 * v + p.c2 * v * v,
                parabola: Some(p),
                window: (lo, hi),
            });
        }
    }
    // Only ties can get here (a flat minimum): take the lowest sampled point.
    Some(Optimum {
        location: Location::Inside,
        u_star: xs[j].0,
        loss_star: mean(j),
        parabola: None,
        window: (xs[j - 1].0, xs[j + 1].0),
    })
}

/// One budget's optimum as reported.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetOptimum {
    pub label: String,
    pub c: f64,
    pub n_points: usize,
    pub location: Location,
    /// The located optimum, or the edge value for an optimum at or beyond an edge.
    pub x_star: f64,
    pub loss_at_x_star: f64,
    /// Percentile-bootstrap interval of x*. `None` at an end: unbounded there (the optimum
    /// was at or beyond that edge of the samples in more than the tail's share of resamples),
    /// or no bootstrap.
    pub lo: Option<f64>,
    pub hi: Option<f64>,
    /// Share of bootstrap resamples in which the optimum was at an edge.
    pub edge_share: Option<f64>,
    /// The sampled values of x: smallest and largest.
    pub x_min: f64,
    pub x_max: f64,
    /// The local parabola in log x and the x range it was fitted over (inside only).
    pub parabola: Option<Parabola>,
    pub window: (f64, f64),
}

impl BudgetOptimum {
    /// Where the optimum is, in words, for tables: "inside", "≤ 1 (smallest sampled)", ...
    pub fn where_(&self) -> String {
        match self.location {
            Location::Inside => "inside the sampled values".into(),
            Location::AtLowerEdge => {
                format!("at or below the smallest sampled ({})", num(self.x_min))
            }
            Location::AtUpperEdge => {
                format!("at or beyond the largest sampled ({})", num(self.x_max))
            }
        }
    }
}

fn num(x: f64) -> String {
    if (1e-2..1e5).contains(&x.abs()) {
        format!("{}", (x * 1000.0).round() / 1000.0)
    } else {
        format!("{x:.3e}")
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct IsoflopReport {
    pub axis: IsoflopAxis,
    pub optima: Vec<BudgetOptimum>,
    pub report: FitReport,
}

pub fn group_budgets(points: &Points, budgeting: Budgeting) -> Result<Vec<Budget>> {
    let c = points.compute()?;
    let geo_mean =
        |idx: &[usize]| (idx.iter().map(|&i| c[i].ln()).sum::<f64>() / idx.len() as f64).exp();
    let mut budgets = Vec::new();
    match budgeting {
        Budgeting::Labels => {
            let labels = points
                .group
                .as_ref()
                .ok_or_else(|| anyhow!("budget labels need a group column"))?;
            let mut seen: Vec<(String, Vec<usize>)> = Vec::new();
            for (i, l) in labels.iter().enumerate() {
                match seen.iter_mut().find(|(s, _)| s == l) {
                    Some((_, v)) => v.push(i),
                    None => seen.push((l.clone(), vec![i])),
                }
            }
            for (label, idx) in seen {
                budgets.push(Budget {
                    label,
                    c: geo_mean(&idx),
                    idx,
                });
            }
        }
        Budgeting::RelativeTolerance(tol) => {
            let mut idx: Vec<usize> = (0..c.len()).collect();
            idx.sort_by(|&i, &j| c[i].total_cmp(&c[j]));
            let mut cur: Vec<usize> = Vec::new();
            for i in idx {
                if let Some(&first) = cur.first()
                    && c[i] > c[first] * (1.0 + tol)
                {
                    let c_b = geo_mean(&cur);
                    budgets.push(Budget {
                        label: format!("{c_b:.3e}"),
                        c: c_b,
                        idx: std::mem::take(&mut cur),
                    });
                }
                cur.push(i);
            }
            if !cur.is_empty() {
                let c_b = geo_mean(&cur);
                budgets.push(Budget {
                    label: format!("{c_b:.3e}"),
                    c: c_b,
                    idx: cur,
                });
            }
        }
    }
    budgets.sort_by(|a, b| a.c.total_cmp(&b.c));
    Ok(budgets)
}

/// Weighted least-squares parabola through (u, y): solves the 3×3 normal equations.
/// `None` when fewer than three distinct u carry weight (the parabola is not determined).
pub fn fit_parabola(u: &[f64], y: &[f64], w: &[f64]) -> Option<Parabola> {
    let mut distinct: Vec<f64> = u
        .iter()
        .zip(w)
        .filter(|(_, w)| **w > 0.0)
        .map(|(u, _)| *u)
        .collect();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    if distinct.len() < 3 {
        return None;
    }
    // Centre u so the normal equations stay well conditioned (u = log x can be ~20).
    let sw: f64 = w.iter().sum();
    let mu = u.iter().zip(w).map(|(u, w)| u * w).sum::<f64>() / sw;
    let mut s = [0.0; 5];
    let mut t = [0.0; 3];
    for ((&ui, &yi), &wi) in u.iter().zip(y).zip(w) {
        let v = ui - mu;
        let mut p = wi;
        for (k, sk) in s.iter_mut().enumerate() {
            *sk += p;
            if k < 3 {
                t[k] += p * yi;
            }
            p *= v;
        }
    }
    let m = [[s[0], s[1], s[2]], [s[1], s[2], s[3]], [s[2], s[3], s[4]]];
    let [b0, b1, b2] = solve3(m, t)?;
    // Back from centred v = u − μ to u.
    Some(Parabola {
        c0: b0 - b1 * mu + b2 * mu * mu,
        c1: b1 - 2.0 * b2 * mu,
        c2: b2,
    })
}

/// Solves the 3 × 3 normal equations m·b = t; `None` when m is singular (|det| < 1e-300) or
/// not finite.
fn solve3(m: [[f64; 3]; 3], t: [f64; 3]) -> Option<[f64; 3]> {
    let a = nalgebra::Matrix3::from_fn(|i, j| m[i][j]);
    let d = a.determinant();
    if !d.is_finite() || d.abs() < 1e-300 {
        return None;
    }
    let b = a.lu().solve(&nalgebra::Vector3::from(t))?;
    Some([b[0], b[1], b[2]])
}

/// Ordinary least squares y = g + a·x; returns (g, a, residual sum of squares).
pub fn fit_line(x: &[f64], y: &[f64]) -> Option<(f64, f64, f64)> {
    let n = x.len() as f64;
    if x.len() < 2 {
        return None;
    }
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let sxx: f64 = x.iter().map(|x| (x - mx).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let sxy: f64 = x.iter().zip(y).map(|(x, y)| (x - mx) * (y - my)).sum();
    let a = sxy / sxx;
    let g = my - a * mx;
    let rss = x.iter().zip(y).map(|(x, y)| (y - g - a * x).powi(2)).sum();
    Some((g, a, rss))
}

fn axis_values(points: &Points, axis: IsoflopAxis) -> Result<Vec<f64>> {
    match axis {
        IsoflopAxis::Loops => points
            .loops
            .clone()
            .ok_or_else(|| anyhow!("iso-FLOP over loops needs a loops column")),
        IsoflopAxis::Tokens => points.tokens(),
        IsoflopAxis::Params => points.params(),
    }
}

fn axis_name(axis: IsoflopAxis) -> &'static str {
    match axis {
        IsoflopAxis::Loops => "loops",
        IsoflopAxis::Tokens => "tokens",
        IsoflopAxis::Params => "params",
    }
}

/// Each budget's optimum under point weights `w`; `None` for a budget with fewer than three
/// distinct x carrying weight.
fn optima(budgets: &[Budget], u: &[f64], loss: &[f64], w: &[f64]) -> Vec<Option<Optimum>> {
    budgets
        .iter()
        .map(|b| {
            let bu: Vec<f64> = b.idx.iter().map(|&i| u[i]).collect();
            let by: Vec<f64> = b.idx.iter().map(|&i| loss[i]).collect();
            let bw: Vec<f64> = b.idx.iter().map(|&i| w[i]).collect();
            locate(&bu, &by, &bw)
        })
        .collect()
}

/// x*(C) = G·C^a by least squares over the budgets whose optimum is inside their samples:
/// (log G, a, rss, budgets used); `None` with fewer than two.
fn power_law(log_c: &[f64], opt: &[Option<Optimum>]) -> Option<(f64, f64, f64, usize)> {
    let (x, y): (Vec<f64>, Vec<f64>) = log_c
        .iter()
        .zip(opt)
        .filter_map(|(c, o)| match o {
            Some(o) if o.location == Location::Inside => Some((*c, o.u_star)),
            _ => None,
        })
        .unzip();
    let (g, a, rss) = fit_line(&x, &y)?;
    Some((g, a, rss, x.len()))
}

/// x* of a budget in a bootstrap resample, for percentiles: −∞ at or below the lower edge, +∞
/// at or beyond the upper one, NaN when the budget could not be fitted.
fn censored_x(o: &Option<Optimum>) -> f64 {
    match o {
        Some(o) if o.location == Location::Inside => o.u_star.exp(),
        Some(o) if o.location == Location::AtLowerEdge => f64::NEG_INFINITY,
        Some(_) => f64::INFINITY,
        None => f64::NAN,
    }
}

/// Percentile interval of censored values (±∞ stand for "at or beyond an edge"): an end whose
/// order statistic is censored is `None`, unbounded on that side.
pub fn censored_interval(values: &[f64], level: f64) -> (Option<f64>, Option<f64>) {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return (None, None);
    }
    v.sort_by(f64::total_cmp);
    let tail = (1.0 - level) / 2.0;
    let end = |q: f64, lower: bool| {
        let h = q * (v.len() - 1) as f64;
        let (a, b) = (v[h.floor() as usize], v[h.ceil() as usize]);
        let x = if a.is_finite() && b.is_finite() {
            a + (h - h.floor()) * (b - a)
        } else if lower {
            a
        } else {
            b
        };
        x.is_finite().then_some(x)
    };
    (end(tail, true), end(1.0 - tail, false))
}

/// The budgets and their optima without the power law: what the report draws even when fewer
/// than two budgets have an optimum inside their samples.
pub fn budget_optima(
    points: &Points,
    axis: IsoflopAxis,
    budgeting: Budgeting,
) -> Result<Vec<(Budget, Option<Optimum>)>> {
    points.validate()?;
    let budgets = group_budgets(points, budgeting)?;
    let x = axis_values(points, axis)?;
    if !x.iter().all(|v| v.is_finite() && *v > 0.0) {
        bail!("iso-FLOP axis values must be positive");
    }
    let u: Vec<f64> = x.iter().map(|v| v.ln()).collect();
    let opt = optima(&budgets, &u, &points.loss, &vec![1.0; points.len()]);
    Ok(budgets.into_iter().zip(opt).collect())
}

/// The iso-FLOP fit in its steps: group the points into budgets, locate each budget's optimum,
/// fit x*(C) = G·C^a over the located ones, resample for intervals, then say in notes what the
/// data could not support.
pub fn fit_isoflop(points: &Points, opts: &IsoflopOptions) -> Result<IsoflopReport> {
    points.validate()?;
    let budgets = group_budgets(points, opts.budgeting)?;
    let axis = axis_name(opts.axis);
    if budgets.len() < 2 {
        bail!(
            "iso-FLOP fit needs at least two budgets, found {}",
            budgets.len()
        );
    }
    let x = axis_values(points, opts.axis)?;
    if !x.iter().all(|v| v.is_finite() && *v > 0.0) {
        bail!("iso-FLOP axis values must be positive");
    }
    let u: Vec<f64> = x.iter().map(|v| v.ln()).collect();
    let ones = vec![1.0; points.len()];
    let opt = optima(&budgets, &u, &points.loss, &ones);
    let log_c: Vec<f64> = budgets.iter().map(|b| b.c.ln()).collect();
    let mut notes = edge_notes(&budgets, &opt, &x, axis);
    let Some((g, a, rss, used)) = power_law(&log_c, &opt) else {
        bail!(
            "iso-FLOP fit needs an optimum inside the sampled {axis} at two or more budgets; {} of {} have one:\n  {}",
            opt.iter()
                .filter(|o| matches!(o, Some(o) if o.location == Location::Inside))
                .count(),
            budgets.len(),
            notes.join("\n  ")
        );
    };
    let draws = match &opts.bootstrap {
        Some(b) if b.resamples > 0 => Draws::resample(points, &budgets, &u, &log_c, b),
        _ => Draws::none(),
    };
    let optima = reported_optima(&budgets, &opt, &x, &draws);
    notes.extend(interval_notes(&optima, axis));
    notes.extend(law_notes(&optima, g, a, axis));
    if used < budgets.len() {
        notes.push(format!(
            "{axis}*(C) = G·C^a is fitted on {used} of {} budgets (those with an optimum inside their samples)",
            budgets.len()
        ));
    }
    let report = law_report(
        points.len(),
        budgets.len(),
        axis,
        (g, a, rss),
        &optima,
        draws,
        notes,
    );
    Ok(IsoflopReport {
        axis: opts.axis,
        optima,
        report,
    })
}

/// The smallest and largest x sampled in budget `b`.
fn sampled_range(b: &Budget, x: &[f64]) -> (f64, f64) {
    b.idx.iter().fold((f64::INFINITY, 0.0f64), |(l, h), &i| {
        (l.min(x[i]), h.max(x[i]))
    })
}

/// A note for each budget whose optimum is not located: too few distinct x, or the lowest loss
/// at an edge of the samples (then the optimum is only bounded, and left out of the law).
fn edge_notes(budgets: &[Budget], opt: &[Option<Optimum>], x: &[f64], axis: &str) -> Vec<String> {
    let mut notes = Vec::new();
    for (b, o) in budgets.iter().zip(opt) {
        let (lo, hi) = sampled_range(b, x);
        match o {
            None => notes.push(format!(
                "budget C = {:.3e}: fewer than three distinct {axis} sampled, so no optimum; left out",
                b.c
            )),
            Some(o) if o.location == Location::AtUpperEdge => notes.push(format!(
                "budget C = {:.3e}: the lowest loss is at the largest {axis} sampled ({}), so the optimum lies above \
                 {} and may be beyond {}; left out of {axis}*(C) = G·C^a (sample larger {axis} to locate it)",
                b.c,
                num(hi),
                num(o.window.0.exp()),
                num(hi)
            )),
            Some(o) if o.location == Location::AtLowerEdge => notes.push(format!(
                "budget C = {:.3e}: the lowest loss is at the smallest {axis} sampled ({}), so the optimum lies below \
                 {} and may be below {}; left out of {axis}*(C) = G·C^a (sample smaller {axis} to locate it)",
                b.c,
                num(lo),
                num(o.window.1.exp()),
                num(lo)
            )),
            Some(_) => {}
        }
    }
    notes
}

/// The bootstrap's draws: per resample G, a (NaN without two located budgets), then each
/// budget's censored x*; empty without a bootstrap.
struct Draws {
    rows: Vec<Vec<f64>>,
    summary: Option<BootstrapSummary>,
}

impl Draws {
    fn none() -> Draws {
        Draws {
            rows: Vec::new(),
            summary: None,
        }
    }

    /// Resamples the points within each budget and repeats the location and the law.
    fn resample(
        points: &Points,
        budgets: &[Budget],
        u: &[f64],
        log_c: &[f64],
        b: &BootstrapOptions,
    ) -> Draws {
        let strata: Vec<Vec<usize>> = budgets.iter().map(|b| b.idx.clone()).collect();
        let rows: Vec<Vec<f64>> = (0..b.resamples)
            .into_par_iter()
            .map(|i| {
                let mut rng = rng_for(b.seed, i as u64);
                let w = stratified_weights(points.len(), &strata, &mut rng);
                let o = optima(budgets, u, &points.loss, &w);
                let (g, a) =
                    power_law(log_c, &o).map_or((f64::NAN, f64::NAN), |(g, a, ..)| (g.exp(), a));
                [g, a].into_iter().chain(o.iter().map(censored_x)).collect()
            })
            .collect();
        let failed = rows.iter().filter(|r| r[1].is_nan()).count();
        let summary = BootstrapSummary {
            resamples: b.resamples,
            failed,
            level: b.level,
            seed: b.seed,
            starts_per_resample: 0,
        };
        Draws {
            rows,
            summary: Some(summary),
        }
    }

    /// The bootstrap level, where there are draws to read.
    fn level(&self) -> Option<f64> {
        self.summary
            .as_ref()
            .filter(|_| !self.rows.is_empty())
            .map(|s| s.level)
    }

    fn column(&self, j: usize) -> Vec<f64> {
        self.rows.iter().map(|d| d[j]).collect()
    }

    /// The percentile interval of column `j` over its finite draws.
    fn interval(&self, j: usize) -> (Option<f64>, Option<f64>) {
        let Some(level) = self.level() else {
            return (None, None);
        };
        let col: Vec<f64> = self
            .column(j)
            .into_iter()
            .filter(|v| v.is_finite())
            .collect();
        if col.is_empty() {
            return (None, None);
        }
        let (lo, hi) = percentile_interval(&col, level);
        (Some(lo), Some(hi))
    }
}

/// Each located or bounded budget's optimum, with its bootstrap interval and how often the
/// resamples put it at an edge.
fn reported_optima(
    budgets: &[Budget],
    opt: &[Option<Optimum>],
    x: &[f64],
    draws: &Draws,
) -> Vec<BudgetOptimum> {
    budgets
        .iter()
        .zip(opt)
        .enumerate()
        .filter_map(|(k, (b, o))| {
            let o = o.as_ref()?;
            let (x_min, x_max) = sampled_range(b, x);
            let (lo, hi, edge_share) = match draws.level() {
                Some(level) => {
                    let col = draws.column(2 + k);
                    let (mut lo, mut hi) = censored_interval(&col, level);
                    // At an edge the data bound the optimum on the inner side: it lies past
                    // the edge's neighbour.
                    let (inner_lo, inner_hi) = (o.window.0.exp(), o.window.1.exp());
                    match o.location {
                        Location::AtUpperEdge => {
                            lo = Some(lo.map_or(inner_lo, |l| l.min(inner_lo)))
                        }
                        Location::AtLowerEdge => {
                            hi = Some(hi.map_or(inner_hi, |h| h.max(inner_hi)))
                        }
                        Location::Inside => {}
                    }
                    let edges = col.iter().filter(|v| v.is_infinite()).count();
                    (lo, hi, Some(edges as f64 / col.len() as f64))
                }
                None => (None, None, None),
            };
            Some(BudgetOptimum {
                label: b.label.clone(),
                c: b.c,
                n_points: b.idx.len(),
                location: o.location,
                x_star: o.u_star.exp(),
                loss_at_x_star: o.loss_star,
                lo,
                hi,
                edge_share,
                x_min,
                x_max,
                parabola: o.parabola,
                window: (o.window.0.exp(), o.window.1.exp()),
            })
        })
        .collect()
}

/// A note for each located optimum whose interval the resamples leave open on a side.
fn interval_notes(optima: &[BudgetOptimum], axis: &str) -> Vec<String> {
    let mut notes = Vec::new();
    for b in optima {
        if b.location == Location::Inside
            && let Some(share) = b.edge_share
            && (b.lo.is_none() || b.hi.is_none())
        {
            notes.push(format!(
                "budget C = {:.3e}: the optimum at {axis} = {} moves to an edge of the samples in {:.0}% of \
                 resamples, so its interval is open on that side",
                b.c,
                num(b.x_star),
                100.0 * share
            ));
        }
    }
    notes
}

/// A note for each bounded optimum the fitted law x* = exp(g)·C^a contradicts: an optimum
/// beyond the largest sample is a bound the law must respect.
fn law_notes(optima: &[BudgetOptimum], g: f64, a: f64, axis: &str) -> Vec<String> {
    let mut notes = Vec::new();
    for b in optima.iter().filter(|b| b.location != Location::Inside) {
        let predicted = g.exp() * b.c.powf(a);
        let contradicts = match b.location {
            Location::AtUpperEdge => predicted < b.window.0,
            _ => predicted > b.window.1,
        };
        if contradicts {
            notes.push(format!(
                "budget C = {:.3e}: the fitted law puts its optimum at {axis} = {}, but its samples put it {}",
                b.c,
                num(predicted),
                b.where_()
            ));
        }
    }
    notes
}

/// The law x*(C) = G·C^a as a fit report: G and a with their intervals, each budget's x* as a
/// derived estimate; `(g, a, rss)` is the fit in log space.
fn law_report(
    n_points: usize,
    n_budgets: usize,
    axis: &str,
    (g, a, rss): (f64, f64, f64),
    optima: &[BudgetOptimum],
    draws: Draws,
    notes: Vec<String>,
) -> FitReport {
    let (g_lo, g_hi) = draws.interval(0);
    let (a_lo, a_hi) = draws.interval(1);
    FitReport {
        law: format!("isoflop[{axis}]"),
        n_points,
        params: vec![
            ParamEstimate {
                name: "G".into(),
                value: g.exp(),
                lo: g_lo,
                hi: g_hi,
            },
            ParamEstimate {
                name: "a".into(),
                value: a,
                lo: a_lo,
                hi: a_hi,
            },
        ],
        derived: optima
            .iter()
            .map(|b| ParamEstimate {
                name: format!("x*@C={:.3e}", b.c),
                value: b.x_star,
                lo: b.lo,
                hi: b.hi,
            })
            .collect(),
        objective: rss,
        solver:
            "per-budget parabolas in log x near the lowest sampled loss; least squares in log space"
                .into(),
        // Not solver starts: one closed-form fit per budget (how many were located is a note).
        starts: n_budgets,
        converged_starts: n_budgets,
        starts_at_best: n_budgets,
        huber_delta: None,
        theta: vec![g, a],
        theta_names: vec!["log G".into(), "a".into()],
        bootstrap: draws.summary,
        heldout: None,
        notes,
        not_identified: Vec::new(),
        profiles: Vec::new(),
        lack_of_fit: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parabola_recovers_vertex_far_from_origin() {
        let u: Vec<f64> = (0..7).map(|i| 20.0 + 0.5 * i as f64).collect();
        let y: Vec<f64> = u.iter().map(|u| 2.0 + 0.3 * (u - 21.3).powi(2)).collect();
        let p = fit_parabola(&u, &y, &[1.0; 7]).unwrap();
        assert!((p.vertex().unwrap() - 21.3).abs() < 1e-8);
        assert!(fit_parabola(&u[..2], &y[..2], &[1.0; 2]).is_none());
        let down: Vec<f64> = y.iter().map(|y| -y).collect();
        assert!(
            fit_parabola(&u, &down, &[1.0; 7])
                .unwrap()
                .vertex()
                .is_none()
        );
    }

    #[test]
    fn groups_by_relative_tolerance() {
        let p = Points {
            c: Some(vec![1e18, 1.02e18, 1e19, 0.99e18, 1.03e19]),
            loss: vec![1.0; 5],
            ..Default::default()
        };
        let b = group_budgets(&p, Budgeting::RelativeTolerance(0.05)).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].idx, vec![3, 0, 1]);
        assert_eq!(b[1].idx, vec![2, 4]);
    }
}
