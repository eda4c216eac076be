//! Profiles that must leave the optimum's basin: a floor and a scale/exponent pair traded
//! against each other over a narrow range of their variable (issue 37 §0).

use loopscale_fit::{
    BootstrapOptions, FitOptions, FitReport, Points, fit_compute, fit_parcae_unified,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal};

const E: f64 = 1.9;
const X: f64 = 60.0;
const XE: f64 = 0.28;
const Y: f64 = 30.0;
const YE: f64 = 0.2;
const Z: f64 = 0.5;
const ZE: f64 = 1.0;

/// Parcae's unified law on μ ∈ {1, 2, 4} (a 4× range of N(μ)) at four budgets, T ∈ {1, …, 16}.
fn narrow_unified(sigma: f64, seed: u64) -> Points {
    let mut rng = StdRng::seed_from_u64(seed);
    let noise = Normal::new(0.0, 1.0).unwrap();
    let mut p = Points {
        n: Some(vec![]),
        d: Some(vec![]),
        c: Some(vec![]),
        loops: Some(vec![]),
        test_loops: Some(vec![]),
        curve: Some(vec![]),
        ..Default::default()
    };
    for (b, c) in [1e15f64, 4e15, 1.6e16, 6.4e16].into_iter().enumerate() {
        for mu in [1.0f64, 2.0, 4.0] {
            let n = 1e6 * mu;
            let d = c / (6.0 * n);
            for t in [1.0, 2.0, 4.0, 8.0, 16.0] {
                let l = E + X * n.powf(-XE) + Y * d.powf(-YE) + Z * (-ZE * t / mu).exp();
                p.n.as_mut().unwrap().push(n);
                p.d.as_mut().unwrap().push(d);
                p.c.as_mut().unwrap().push(c);
                p.loops.as_mut().unwrap().push(mu);
                p.test_loops.as_mut().unwrap().push(t);
                p.curve.as_mut().unwrap().push(format!("b{b}mu{mu}"));
                p.loss.push(l * (1.0 + sigma * noise.sample(&mut rng)));
            }
        }
    }
    p
}

fn covers_or_not_identified(r: &FitReport, name: &str, truth: f64) -> bool {
    let p = r.param(name).unwrap();
    let covers = p.lo.is_none_or(|lo| lo <= truth) && p.hi.is_none_or(|hi| hi >= truth);
    covers || r.not_identified.iter().any(|n| n == name)
}

/// Seed 1 puts the optimum in the basin with E at 0 and a shallow power (X ≈ 14, x ≈ 0.11);
/// a profile that only warm-starts from there called X = 14.0 [12.5, 18.9] and
/// x = 0.109 [0.093, 0.133] measured, excluding the truth (60, 0.28) that fits as well.
#[test]
fn a_floor_traded_against_a_scale_and_exponent_is_not_reported_as_measured() {
    let r = fit_parcae_unified(
        &narrow_unified(0.01, 1),
        &FitOptions {
            bootstrap: Some(BootstrapOptions {
                resamples: 30,
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .unwrap();
    eprintln!("{r}");
    for (name, truth) in [("E", E), ("X", X), ("x", XE)] {
        assert!(
            covers_or_not_identified(&r, name, truth),
            "{name} (truth {truth}) reported as measured: {r}"
        );
    }
}

/// The compute law L = E + A·C^−α over a 4× range of C, 1% noise: the floor and the power
/// trade off just as above. Every seed's report either covers the truth or says it cannot.
#[test]
fn a_compute_law_over_a_narrow_range_covers_its_truth_or_says_it_cannot() {
    let (e, a, alpha) = (1.9, 2e3, 0.2);
    for seed in 0..3 {
        let mut rng = StdRng::seed_from_u64(seed);
        let noise = Normal::new(0.0, 1.0).unwrap();
        let c: Vec<f64> = (0..12).map(|i| 1e15 * 4f64.powf(i as f64 / 11.0)).collect();
        let loss = c
            .iter()
            .map(|c| (e + a * c.powf(-alpha)) * (1.0 + 0.01 * noise.sample(&mut rng)))
            .collect();
        let points = Points {
            c: Some(c),
            loss,
            ..Default::default()
        };
        let r = fit_compute(
            &points,
            false,
            &FitOptions {
                bootstrap: None,
                ..Default::default()
            },
        )
        .unwrap();
        eprintln!("seed {seed}: {r}");
        for (name, truth) in [("E", e), ("A", a), ("alpha", alpha)] {
            assert!(
                covers_or_not_identified(&r, name, truth),
                "seed {seed}: {name} (truth {truth}) reported as measured: {r}"
            );
        }
    }
}

/// Seeds at two compute scales: eight runs, but two points of C for three parameters. Whatever
/// the optimum, nothing is determined, and the report says so.
#[test]
fn replicates_at_too_few_points_determine_nothing() {
    let mut c = Vec::new();
    let mut loss = Vec::new();
    for (k, cc) in [1e15f64, 4e15].into_iter().enumerate() {
        for s in 0..4 {
            c.push(cc);
            loss.push(
                (1.9 + 2e3 * cc.powf(-0.2)) * (1.0 + 0.002 * (s as f64 - 1.5) + 0.001 * k as f64),
            );
        }
    }
    let points = Points {
        c: Some(c),
        loss,
        ..Default::default()
    };
    let r = fit_compute(
        &points,
        false,
        &FitOptions {
            bootstrap: None,
            ..Default::default()
        },
    )
    .unwrap();
    for name in ["E", "A", "alpha"] {
        assert!(r.not_identified.iter().any(|n| n == name), "{name}: {r}");
    }
    assert!(
        r.notes.iter().any(|n| n.contains("2 distinct point")),
        "{r}"
    );
}
