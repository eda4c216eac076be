//! Saunshi et al.'s depth law: accuracy = α·ln(effective depth) + β, fitted per model family
//! (looped k⊗L against plain GPTs), by ordinary least squares in ln depth, with percentile
//! bootstrap intervals over resampled runs.
//!
//! Effective depth is the number of blocks a token passes through: `k·L` for a k-layer block
//! looped L times, the layer count for a GPT. Their claim is that looped and plain models lie
//! on lines of similar slope, accuracy growing with the log of depth whichever way it is built.

use anyhow::{Result, bail};
use rand::Rng;

use super::bootstrap::{BootstrapOptions, percentile_interval, rng_for};
use super::estimate::{BootstrapSummary, FitReport, ParamEstimate};
use super::isoflop::fit_line;

/// `(α, β)` of accuracy = α·ln(depth) + β by least squares, and the residual sum of squares.
pub fn depth_line(depth: &[f64], accuracy: &[f64]) -> Option<(f64, f64, f64)> {
    let ln: Vec<f64> = depth.iter().map(|d| d.ln()).collect();
    fit_line(&ln, accuracy).map(|(beta, alpha, rss)| (alpha, beta, rss))
}

/// The depth law over one family's `(effective depth, accuracy)` points (`law` names it, e.g.
/// `depth:looped`); bootstrap intervals when `bootstrap` is given.
pub fn fit_depth(
    law: &str,
    depth: &[f64],
    accuracy: &[f64],
    bootstrap: Option<&BootstrapOptions>,
) -> Result<FitReport> {
    if depth.iter().any(|&d| !(d >= 1.0 && d.is_finite())) {
        bail!("{law}: effective depths must be at least 1, found {depth:?}");
    }
    let Some((alpha, beta, rss)) = depth_line(depth, accuracy) else {
        bail!(
            "{law}: {} point(s) at {} distinct depth(s); the line needs two depths at least",
            depth.len(),
            {
                let mut d = depth.to_vec();
                d.sort_by(f64::total_cmp);
                d.dedup();
                d.len()
            }
        );
    };
    let mut params = vec![
        ParamEstimate {
            name: "alpha".into(),
            value: alpha,
            lo: None,
            hi: None,
        },
        ParamEstimate {
            name: "beta".into(),
            value: beta,
            lo: None,
            hi: None,
        },
    ];
    let mut notes = Vec::new();
    if depth.len() < 3 {
        notes.push("two points determine the line exactly: no residual to judge it by".into());
    }
    let summary = bootstrap.map(|b| {
        let n = depth.len();
        let (mut alphas, mut betas, mut failed) = (Vec::new(), Vec::new(), 0);
        for r in 0..b.resamples as u64 {
            let mut rng = rng_for(b.seed, r);
            let idx: Vec<usize> = (0..n).map(|_| rng.random_range(0..n)).collect();
            let d: Vec<f64> = idx.iter().map(|&i| depth[i]).collect();
            let a: Vec<f64> = idx.iter().map(|&i| accuracy[i]).collect();
            match depth_line(&d, &a) {
                Some((al, be, _)) => {
                    alphas.push(al);
                    betas.push(be);
                }
                None => failed += 1, // every draw at one depth
            }
        }
        if !alphas.is_empty() {
            for (p, values) in params.iter_mut().zip([&alphas, &betas]) {
                let (lo, hi) = percentile_interval(values, b.level);
                (p.lo, p.hi) = (Some(lo), Some(hi));
            }
        }
        BootstrapSummary {
            resamples: b.resamples,
            failed,
            level: b.level,
            seed: b.seed,
            starts_per_resample: 1,
        }
    });
    Ok(FitReport {
        law: law.to_string(),
        n_points: depth.len(),
        params,
        derived: Vec::new(),
        objective: rss,
        solver: "ordinary least squares in ln(depth)".into(),
        starts: 1,
        converged_starts: 1,
        starts_at_best: 1,
        huber_delta: None,
        theta: vec![alpha, beta],
        theta_names: vec!["alpha".into(), "beta".into()],
        bootstrap: summary,
        heldout: None,
        notes,
        not_identified: Vec::new(),
        profiles: Vec::new(),
        lack_of_fit: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_log_line_and_brackets_it() {
        let depth = [1.0, 2.0, 4.0, 8.0, 1.0, 2.0, 4.0, 8.0];
        let noise = [0.01, -0.02, 0.015, -0.005, -0.01, 0.02, -0.015, 0.005];
        let acc: Vec<f64> = depth
            .iter()
            .zip(noise)
            .map(|(d, e)| 0.3 + 0.2 * f64::ln(*d) + e)
            .collect();
        let b = BootstrapOptions {
            resamples: 200,
            ..BootstrapOptions::default()
        };
        let r = fit_depth("depth:looped", &depth, &acc, Some(&b)).unwrap();
        let alpha = r.param("alpha").unwrap();
        assert!((alpha.value - 0.2).abs() < 0.01, "{alpha:?}");
        assert!(
            alpha.lo.unwrap() < 0.2 && 0.2 < alpha.hi.unwrap(),
            "{alpha:?}"
        );
        assert!((r.value("beta").unwrap() - 0.3).abs() < 0.02);
        assert!(fit_depth("d", &[2.0, 2.0], &[0.1, 0.2], None).is_err());
    }
}
