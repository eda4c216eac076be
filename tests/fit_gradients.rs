//! Analytic gradients of every law and of the Huber objective against central finite
//! differences, and the Nelder–Mead path against L-BFGS.

use loopscale::fit::solve::{Method, SolverOptions, minimize};
use loopscale::fit::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn check_law<L: Law>(law: &L, design: &Design, thetas: &[Vec<f64>]) {
    let p = law.n_params();
    let mut g = vec![0.0; p];
    let mut scratch = vec![0.0; p];
    for th in thetas {
        for i in 0..design.len() {
            let row = design.row(i);
            law.log_predict(th, row, &mut g);
            for j in 0..p {
                let h = 1e-6 * th[j].abs().max(1.0);
                let (mut tp, mut tm) = (th.clone(), th.clone());
                tp[j] += h;
                tm[j] -= h;
                let fd = (law.log_predict(&tp, row, &mut scratch)
                    - law.log_predict(&tm, row, &mut scratch))
                    / (2.0 * h);
                assert!(
                    (fd - g[j]).abs() <= 1e-6 * (1.0 + fd.abs()),
                    "{} ∂/∂θ{j}: analytic {} vs fd {fd}",
                    law.name(),
                    g[j]
                );
            }
        }
        // The objective: δ chosen so residuals fall on both sides of the Huber kink.
        let obj = Objective::new(law, design, 0.05);
        let mut go = vec![0.0; p];
        obj.value_grad(th, &mut go);
        for j in 0..p {
            let h = 1e-6 * th[j].abs().max(1.0);
            let (mut tp, mut tm) = (th.clone(), th.clone());
            tp[j] += h;
            tm[j] -= h;
            let fd = (obj.value(&tp) - obj.value(&tm)) / (2.0 * h);
            assert!(
                (fd - go[j]).abs() <= 1e-5 * (1.0 + fd.abs()),
                "{} objective ∂/∂θ{j}: {} vs {fd}",
                law.name(),
                go[j]
            );
        }
    }
}

fn random_thetas(center: &[f64], spread: &[f64], k: usize) -> Vec<Vec<f64>> {
    let mut rng = StdRng::seed_from_u64(42);
    (0..k)
        .map(|_| {
            center
                .iter()
                .zip(spread)
                .map(|(c, s)| c + s * (rng.random::<f64>() * 2.0 - 1.0))
                .collect()
        })
        .collect()
}

fn chinchilla_points() -> Points {
    let mut rng = StdRng::seed_from_u64(1);
    let n: Vec<f64> = (0..30)
        .map(|_| 10f64.powf(rng.random_range(7.0..10.0)))
        .collect();
    let d: Vec<f64> = (0..30)
        .map(|_| 10f64.powf(rng.random_range(9.0..12.0)))
        .collect();
    let loss = n
        .iter()
        .zip(&d)
        .map(|(n, d)| {
            1.8 + 400.0 / n.powf(0.34) + 2000.0 / d.powf(0.3) + rng.random_range(-0.1..0.1)
        })
        .collect();
    Points {
        n: Some(n),
        d: Some(d),
        loss,
        ..Default::default()
    }
}

#[test]
fn chinchilla_gradient_matches_finite_differences() {
    let law = ChinchillaLaw;
    let design = law.design(&chinchilla_points()).unwrap();
    check_law(
        &law,
        &design,
        &random_thetas(&[0.6, 6.0, 7.6, 0.34, 0.3], &[0.5, 2.0, 2.0, 0.2, 0.2], 5),
    );
}

#[test]
fn compute_and_test_time_gradients_match_finite_differences() {
    let c: Vec<f64> = (0..20)
        .map(|i| 10f64.powf(17.0 + 0.25 * i as f64))
        .collect();
    let loss = c
        .iter()
        .enumerate()
        .map(|(i, c)| 1.7 + 30.0 * c.powf(-0.08) + 0.02 * ((i % 3) as f64 - 1.0))
        .collect();
    let pts = Points {
        c: Some(c),
        loss,
        ..Default::default()
    };
    let law = ComputeLaw;
    check_law(
        &law,
        &law.design(&pts).unwrap(),
        &random_thetas(&[0.5, 3.4, 0.08], &[0.3, 1.0, 0.05], 5),
    );

    let t: Vec<f64> = (1..=12).map(f64::from).collect();
    let curve: Vec<String> = (0..12).map(|i| format!("c{}", i % 3)).collect();
    let loss = t
        .iter()
        .map(|t| 2.5 + 1.5 * (-0.3 * t).exp() + 0.01 * t.sin())
        .collect();
    let pts = Points {
        test_loops: Some(t),
        loss,
        curve: Some(curve),
        ..Default::default()
    };
    let law = TestTimeLaw::new(&pts).unwrap();
    check_law(
        &law,
        &law.design(&pts).unwrap(),
        &random_thetas(&[0.9, 0.4, 0.3], &[0.2, 0.5, 0.2], 5),
    );
    let pooled = TestTimePooledLaw::new(&pts).unwrap();
    let center = [0.3, 0.9, 0.4, 0.95, 0.3, 0.85, 0.5];
    check_law(
        &pooled,
        &pooled.design(&pts).unwrap(),
        &random_thetas(&center, &[0.2; 7], 5),
    );
}

#[test]
fn parcae_gradients_match_finite_differences() {
    let mut rng = StdRng::seed_from_u64(3);
    let k = 24;
    let mu: Vec<f64> = (0..k).map(|i| [1.0, 2.0, 4.0, 8.0][i % 4]).collect();
    let n: Vec<f64> = mu.iter().map(|m| 1e6 * m).collect();
    let d: Vec<f64> = (0..k)
        .map(|_| 10f64.powf(rng.random_range(6.0..9.0)))
        .collect();
    let t: Vec<f64> = (0..k).map(|i| [1.0, 2.0, 4.0, 16.0][(i / 4) % 4]).collect();
    let loss = (0..k)
        .map(|i| {
            2.0 + 50.0 * n[i].powf(-0.3)
                + 30.0 * d[i].powf(-0.2)
                + 0.5 * (-t[i] / mu[i]).exp()
                + rng.random_range(-0.02..0.02)
        })
        .collect();
    let pts = Points {
        n: Some(n),
        d: Some(d),
        loops: Some(mu),
        test_loops: Some(t),
        loss,
        ..Default::default()
    };
    let law = ParcaeLaw;
    let center = [0.7, 3.9, 0.3, 3.4, 0.2];
    check_law(
        &law,
        &law.design(&pts).unwrap(),
        &random_thetas(&center, &[0.3, 1.0, 0.1, 1.0, 0.1], 5),
    );
    let law = ParcaeUnifiedLaw::new(&pts).unwrap();
    let center = [0.7, 3.9, 0.3, 3.4, 0.2, -0.7, 0.0];
    check_law(
        &law,
        &law.design(&pts).unwrap(),
        &random_thetas(&center, &[0.3, 1.0, 0.1, 1.0, 0.1, 0.5, 1.0], 5),
    );
}

#[test]
fn nelder_mead_reaches_the_lbfgs_optimum() {
    let c: Vec<f64> = (0..20)
        .map(|i| 10f64.powf(17.0 + 0.25 * i as f64))
        .collect();
    let loss = c.iter().map(|c| 1.7 + 30.0 * c.powf(-0.08)).collect();
    let pts = Points {
        c: Some(c),
        loss,
        ..Default::default()
    };
    let law = ComputeLaw;
    let design = law.design(&pts).unwrap();
    let obj = Objective::new(&law, &design, DEFAULT_HUBER_DELTA);
    let start = [0.4, 3.0, 0.07];
    let nm = minimize(
        &obj,
        &start,
        &SolverOptions {
            method: Method::NelderMead,
            ..Default::default()
        },
    );
    let lb = minimize(&obj, &start, &SolverOptions::default());
    assert!(
        nm.objective < 1e-9 && lb.objective < 1e-9,
        "NM {} L-BFGS {}",
        nm.objective,
        lb.objective
    );
    assert!((nm.theta[2] - 0.08).abs() < 1e-3 && (lb.theta[2] - 0.08).abs() < 1e-4);
}
