//! Iso-FLOP analysis (Hoffmann et al.'s approach 2, as Parcae uses it for loop counts):
//! group points into FLOP budgets; within each budget fit loss as a parabola in log x
//! (x = loops, tokens or parameters) and take its vertex x*; then fit x*(C) = G·C^a by least
//! squares in log space. Intervals come from a bootstrap that resamples points within each
//! budget, refitting every parabola and the power law.

use anyhow::{Result, anyhow, bail};
use rayon::prelude::*;
use serde::Serialize;

use super::bootstrap::{BootstrapOptions, percentile_interval, rng_for, stratified_weights};
use super::points::Points;
use super::estimate::{BootstrapSummary, FitReport, ParamEstimate};

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

#[derive(Debug, Clone, Serialize)]
pub struct BudgetOptimum {
    pub label: String,
    pub c: f64,
    pub x_star: f64,
    pub loss_at_x_star: f64,
    pub n_points: usize,
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

fn solve3(m: [[f64; 3]; 3], t: [f64; 3]) -> Option<[f64; 3]> {
    let det = |m: [[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let d = det(m);
    if !d.is_finite() || d.abs() < 1e-300 {
        return None;
    }
    let mut out = [0.0; 3];
    for (k, o) in out.iter_mut().enumerate() {
        let mut mk = m;
        for r in 0..3 {
            mk[r][k] = t[r];
        }
        *o = det(mk) / d;
    }
    Some(out)
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

/// Per-budget vertices under point weights `w`; `None` if any budget's parabola is degenerate.
fn optima(budgets: &[Budget], u: &[f64], loss: &[f64], w: &[f64]) -> Option<Vec<(f64, Parabola)>> {
    budgets
        .iter()
        .map(|b| {
            let bu: Vec<f64> = b.idx.iter().map(|&i| u[i]).collect();
            let by: Vec<f64> = b.idx.iter().map(|&i| loss[i]).collect();
            let bw: Vec<f64> = b.idx.iter().map(|&i| w[i]).collect();
            let p = fit_parabola(&bu, &by, &bw)?;
            Some((p.vertex()?, p))
        })
        .collect()
}

pub fn fit_isoflop(points: &Points, opts: &IsoflopOptions) -> Result<IsoflopReport> {
    points.validate()?;
    let budgets = group_budgets(points, opts.budgeting)?;
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
    let opt = optima(&budgets, &u, &points.loss, &ones).ok_or_else(|| {
        anyhow!("a budget's parabola has fewer than 3 distinct x or opens downward")
    })?;
    let log_c: Vec<f64> = budgets.iter().map(|b| b.c.ln()).collect();
    let log_x: Vec<f64> = opt.iter().map(|(v, _)| *v).collect();
    let (g, a, rss) = fit_line(&log_c, &log_x).ok_or_else(|| anyhow!("budgets share one C"))?;

    let strata: Vec<Vec<usize>> = budgets.iter().map(|b| b.idx.clone()).collect();
    let (draws, summary) = match &opts.bootstrap {
        Some(b) if b.resamples > 0 => {
            let rows: Vec<Option<Vec<f64>>> = (0..b.resamples)
                .into_par_iter()
                .map(|i| {
                    let mut rng = rng_for(b.seed, i as u64);
                    let w = stratified_weights(points.len(), &strata, &mut rng);
                    let o = optima(&budgets, &u, &points.loss, &w)?;
                    let lx: Vec<f64> = o.iter().map(|(v, _)| *v).collect();
                    let (g, a, _) = fit_line(&log_c, &lx)?;
                    Some(
                        [g.exp(), a]
                            .into_iter()
                            .chain(lx.iter().map(|v| v.exp()))
                            .collect(),
                    )
                })
                .collect();
            let failed = rows.iter().filter(|r| r.is_none()).count();
            let draws: Vec<Vec<f64>> = rows.into_iter().flatten().collect();
            let s = BootstrapSummary {
                resamples: b.resamples,
                failed,
                level: b.level,
                seed: b.seed,
                starts_per_resample: 0,
            };
            (draws, Some(s))
        }
        _ => (Vec::new(), None),
    };
    // Columns of a draw: G, a, then x* of each budget.
    let interval = |j: usize| match &summary {
        Some(s) if !draws.is_empty() => {
            let (lo, hi) =
                percentile_interval(&draws.iter().map(|d| d[j]).collect::<Vec<_>>(), s.level);
            (Some(lo), Some(hi))
        }
        _ => (None, None),
    };
    let (g_lo, g_hi) = interval(0);
    let (a_lo, a_hi) = interval(1);
    let axis = match opts.axis {
        IsoflopAxis::Loops => "loops",
        IsoflopAxis::Tokens => "tokens",
        IsoflopAxis::Params => "params",
    };
    let report = FitReport {
        law: format!("isoflop[{axis}]"),
        n_points: points.len(),
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
        derived: budgets
            .iter()
            .zip(&opt)
            .enumerate()
            .map(|(k, (b, (v, _)))| {
                let (lo, hi) = interval(2 + k);
                ParamEstimate {
                    name: format!("x*@C={:.3e}", b.c),
                    value: v.exp(),
                    lo,
                    hi,
                }
            })
            .collect(),
        objective: rss,
        solver: "per-budget least-squares parabolas; least squares in log space".into(),
        starts: budgets.len(),
        converged_starts: budgets.len(),
        starts_at_best: budgets.len(),
        huber_delta: None,
        theta: vec![g, a],
        theta_names: vec!["log G".into(), "a".into()],
        bootstrap: summary,
        heldout: None,
        notes: Vec::new(),
    };
    let optima = budgets
        .iter()
        .zip(&opt)
        .map(|(b, (v, p))| BudgetOptimum {
            label: b.label.clone(),
            c: b.c,
            x_star: v.exp(),
            loss_at_x_star: p.c0 + p.c1 * v + p.c2 * v * v,
            n_points: b.idx.len(),
        })
        .collect();
    Ok(IsoflopReport {
        axis: opts.axis,
        optima,
        report,
    })
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
