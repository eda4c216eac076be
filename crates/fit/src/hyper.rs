//! Hyperparameter laws: the tuned optimum of a hyperparameter (the learning rate, the batch
//! size) against compute or parameters, η*(C) = a·C^b, as DeepSeek LLM (Bi et al. 2024) fitted
//! η_opt = 0.3118·C^−0.125 and B_opt = 0.2920·C^0.3271 from small runs. Least squares in log
//! space over one point per configuration (its refined optimum); intervals by a bootstrap over
//! configurations (pairs), seeded as every other bootstrap.

use anyhow::{Result, bail};
use rayon::prelude::*;

use super::bootstrap::{BootstrapOptions, percentile_interval, resample_weights, rng_for};
use super::estimate::{BootstrapSummary, FitReport, ParamEstimate};
use super::identify::SCALE_SPAN;
use super::isoflop::fit_line;

/// y = a·x^b over positive (x, y): `law` names the fit (`lr`, `batch`), `x_name` its variable.
/// Fewer than two distinct x is an error; with exactly two the line passes through both and
/// its interval says nothing (a note says so).
pub fn fit_optimum_law(
    law: &str,
    x_name: &str,
    x: &[f64],
    y: &[f64],
    bootstrap: Option<&BootstrapOptions>,
) -> Result<FitReport> {
    if x.len() != y.len() {
        bail!("{law}: {} x values for {} optima", x.len(), y.len());
    }
    if let Some(v) = x.iter().chain(y).find(|v| !(v.is_finite() && **v > 0.0)) {
        bail!("{law}: every {x_name} and optimum must be positive and finite; found {v}");
    }
    let lx: Vec<f64> = x.iter().map(|v| v.ln()).collect();
    let ly: Vec<f64> = y.iter().map(|v| v.ln()).collect();
    let mut distinct = lx.clone();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    if distinct.len() < 2 {
        bail!(
            "{law}: the optimum against {x_name} needs configurations at two or more distinct {x_name} with \
             an optimum inside their grid; found {} at {} value(s)",
            x.len(),
            distinct.len()
        );
    }
    let (g, b, rss) = fit_line(&lx, &ly).expect("two distinct x");
    let mut notes = Vec::new();
    if x.len() == 2 {
        notes.push(format!(
            "only two configurations: the line passes through both, so a and b are not identified beyond them \
             (tune a third {x_name} to measure the exponent)"
        ));
    }
    // Two points leave no residual: every resample is one of them or the line through both,
    // and an interval from that would look exact. None is given.
    let (draws, summary) = match bootstrap {
        Some(bo) if bo.resamples > 0 && x.len() > 2 => {
            let rows: Vec<Option<(f64, f64)>> = (0..bo.resamples)
                .into_par_iter()
                .map(|i| {
                    let w = resample_weights(x.len(), &mut rng_for(bo.seed, i as u64));
                    let (mut rx, mut ry) = (Vec::new(), Vec::new());
                    for (j, &m) in w.iter().enumerate() {
                        for _ in 0..m as usize {
                            rx.push(lx[j]);
                            ry.push(ly[j]);
                        }
                    }
                    fit_line(&rx, &ry).map(|(g, b, _)| (g.exp(), b))
                })
                .collect();
            let failed = rows.iter().filter(|r| r.is_none()).count();
            (
                rows.into_iter().flatten().collect::<Vec<_>>(),
                Some(BootstrapSummary {
                    resamples: bo.resamples,
                    failed,
                    level: bo.level,
                    seed: bo.seed,
                    starts_per_resample: 0,
                }),
            )
        }
        _ => (Vec::new(), None),
    };
    let interval = |f: fn(&(f64, f64)) -> f64| match &summary {
        Some(s) if !draws.is_empty() => {
            let col: Vec<f64> = draws.iter().map(f).collect();
            let (lo, hi) = percentile_interval(&col, s.level);
            (Some(lo), Some(hi))
        }
        _ => (None, None),
    };
    let (a_lo, a_hi) = interval(|d| d.0);
    let (b_lo, b_hi) = interval(|d| d.1);
    let mut not_identified = if x.len() == 2 {
        vec!["a".to_string(), "b".to_string()]
    } else {
        Vec::new()
    };
    // With few configurations, resamples that keep two of them swing the line: a scale whose
    // interval spans more than two orders of magnitude is not determined.
    if let (Some(lo), Some(hi)) = (a_lo, a_hi)
        && lo > 0.0
        && hi / lo > SCALE_SPAN
        && !not_identified.iter().any(|n| n == "a")
    {
        notes.push(format!(
            "not identified: a (its interval [{lo:.3e}, {hi:.3e}] spans a factor of {:.0}); quote the \
             exponent b, whose interval says how well the data determine it",
            hi / lo
        ));
        not_identified.push("a".into());
    }
    if let (Some(lo), Some(hi)) = (b_lo, b_hi)
        && lo <= 0.0
        && hi >= 0.0
    {
        notes.push(format!(
            "b's interval [{lo:.3}, {hi:.3}] reaches 0: the data do not show the optimum moving with {x_name}"
        ));
    }
    Ok(FitReport {
        law: format!("{law}[{x_name}]"),
        n_points: x.len(),
        params: vec![
            ParamEstimate {
                name: "a".into(),
                value: g.exp(),
                lo: a_lo,
                hi: a_hi,
            },
            ParamEstimate {
                name: "b".into(),
                value: b,
                lo: b_lo,
                hi: b_hi,
            },
        ],
        derived: Vec::new(),
        objective: rss,
        solver: "least squares in log space".into(),
        starts: 1,
        converged_starts: 1,
        starts_at_best: 1,
        huber_delta: None,
        theta: vec![g, b],
        theta_names: vec!["log a".into(), "b".into()],
        bootstrap: summary,
        heldout: None,
        notes,
        not_identified,
        profiles: Vec::new(),
        lack_of_fit: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_power_law_and_refuses_one_scale() {
        let c: Vec<f64> = [1e12, 1e13, 1e14, 1e15].to_vec();
        let lr: Vec<f64> = c.iter().map(|c| 0.3118 * c.powf(-0.125)).collect();
        let r = fit_optimum_law("lr", "C", &c, &lr, Some(&BootstrapOptions::default())).unwrap();
        assert!((r.value("b").unwrap() + 0.125).abs() < 1e-9);
        assert!((r.value("a").unwrap() / 0.3118 - 1.0).abs() < 1e-6);
        assert!(r.not_identified.is_empty());
        assert!(fit_optimum_law("lr", "C", &[1e12, 1e12], &[1e-3, 2e-3], None).is_err());
        let two = fit_optimum_law("lr", "C", &c[..2], &lr[..2], None).unwrap();
        assert!(!two.identified("b"));
    }
}
