//! Seed noise: replicate groups (runs that differ only in their seed) summarised as mean,
//! standard deviation, standard error and n, and two groups compared with a verdict that says
//! whether their difference is larger than that noise.
//!
//! A comparison is Welch's: the difference of the means with SE = √(s₁²/n₁ + s₂²/n₂) and a
//! Student-t interval on the Welch–Satterthwaite degrees of freedom. With three seeds a group
//! has two degrees of freedom and the t quantile is large (4.3 at 95%); that width is the
//! honest one and is reported as it is. A group of one seed has no measured noise, and a
//! comparison involving one says so rather than calling anything a result.

use serde::Serialize;

/// The level of every interval and verdict here.
pub const LEVEL: f64 = 0.95;

/// One replicate group's values (one per seed) summarised.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupStats {
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation (n − 1 in the denominator); `None` for n < 2.
    pub sd: Option<f64>,
    /// Standard error of the mean, sd / √n; `None` for n < 2.
    pub se: Option<f64>,
    pub min: f64,
    pub max: f64,
}

impl GroupStats {
    /// `None` for no values; NaN and infinite values are left out.
    pub fn of(values: &[f64]) -> Option<GroupStats> {
        let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n as f64;
        let sd = (n >= 2)
            .then(|| (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt());
        Some(GroupStats {
            n,
            mean,
            sd,
            se: sd.map(|s| s / (n as f64).sqrt()),
            min: v.iter().copied().fold(f64::INFINITY, f64::min),
            max: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }

    /// `mean ± se (n = k)`, or `mean (n = 1, noise unmeasured)`.
    pub fn describe(&self, digits: usize) -> String {
        match self.se {
            Some(se) => format!("{:.digits$} ± {:.digits$} (n = {})", self.mean, se, self.n),
            None => format!("{:.digits$} (n = 1, noise unmeasured)", self.mean),
        }
    }
}

/// What a comparison of two groups says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The interval of the difference excludes zero: the first group is lower (better, for a
    /// loss) by more than the seed noise.
    Ahead,
    /// The interval of the difference excludes zero the other way.
    Behind,
    /// The interval holds zero: the difference is within the seed noise.
    WithinNoise,
    /// A group has one seed: its noise is not measured, so no verdict.
    NeedsSeeds,
}

/// Group `a` against group `b` (difference `a − b`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    pub difference: f64,
    /// Welch's standard error of the difference; `None` when a group has one seed.
    pub se: Option<f64>,
    /// Welch–Satterthwaite degrees of freedom.
    pub df: Option<f64>,
    /// The interval of the difference at [`LEVEL`].
    pub interval: Option<(f64, f64)>,
    pub verdict: Verdict,
    pub n: (usize, usize),
}

impl Comparison {
    /// The same comparison of a quantity where higher is better (an accuracy): the difference
    /// and its interval stay `a − b`, the verdict's sides swap (a higher `a` is ahead).
    pub fn higher_is_better(mut self) -> Comparison {
        self.verdict = match self.verdict {
            Verdict::Ahead => Verdict::Behind,
            Verdict::Behind => Verdict::Ahead,
            v => v,
        };
        self
    }

    /// The verdict in words, for tables and notes (lower is better: losses).
    pub fn sentence(&self) -> String {
        match self.verdict {
            Verdict::Ahead => "ahead by more than noise".into(),
            Verdict::Behind => "behind by more than noise".into(),
            Verdict::WithinNoise => "within noise".into(),
            Verdict::NeedsSeeds => format!(
                "needs more seeds (n = {}, {}): noise unmeasured",
                self.n.0, self.n.1
            ),
        }
    }
}

/// Compares `a` with `b` (Welch). When one group has a single seed but the other is measured,
/// there is still no verdict: the single seed's own spread is unknown.
pub fn compare(a: &GroupStats, b: &GroupStats) -> Comparison {
    let difference = a.mean - b.mean;
    let (Some(sa), Some(sb)) = (a.sd, b.sd) else {
        return Comparison {
            difference,
            se: None,
            df: None,
            interval: None,
            verdict: Verdict::NeedsSeeds,
            n: (a.n, b.n),
        };
    };
    let (va, vb) = (sa * sa / a.n as f64, sb * sb / b.n as f64);
    let se = (va + vb).sqrt();
    // Welch–Satterthwaite; two identical, noiseless groups give 0/0: take the pooled df.
    let df = if va + vb > 0.0 {
        (va + vb).powi(2) / (va * va / (a.n - 1) as f64 + vb * vb / (b.n - 1) as f64)
    } else {
        (a.n + b.n - 2) as f64
    };
    let half = t_quantile(0.5 + LEVEL / 2.0, df) * se;
    let interval = (difference - half, difference + half);
    let verdict = if interval.1 < 0.0 {
        Verdict::Ahead
    } else if interval.0 > 0.0 {
        Verdict::Behind
    } else {
        Verdict::WithinNoise
    };
    Comparison {
        difference,
        se: Some(se),
        df: Some(df),
        interval: Some(interval),
        verdict,
        n: (a.n, b.n),
    }
}

/// The pooled within-group variance of several groups (each group's squared deviations from
/// its own mean, over Σ(nᵢ − 1)), with its degrees of freedom; `None` without a group of two.
/// This is the seed noise a law's residuals are judged against.
pub fn pooled_variance(groups: &[&[f64]]) -> Option<(f64, usize)> {
    let (mut ss, mut df) = (0.0, 0usize);
    for g in groups {
        if g.len() < 2 {
            continue;
        }
        let mean = g.iter().sum::<f64>() / g.len() as f64;
        ss += g.iter().map(|x| (x - mean).powi(2)).sum::<f64>();
        df += g.len() - 1;
    }
    (df > 0).then(|| (ss / df as f64, df))
}

/// A law's residuals judged against the seed noise of its replicate groups (the classical
/// lack-of-fit F test): the residual sum of squares splits into pure error, the scatter of each
/// configuration's seeds around their own mean (which no law can remove), and lack of fit, the
/// rest. A law that misses its configurations by more than seed noise has F well above 1.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LackOfFit {
    /// √(SS_lof / df_lof): how far the law misses the configurations' means.
    pub lack_sd: f64,
    /// √(SS_pe / df_pe): the seed noise, pooled within configurations.
    pub noise_sd: f64,
    pub f: f64,
    pub df_lack: usize,
    pub df_noise: usize,
    /// P(F ≥ f) under a law that fits within seed noise.
    pub p_value: f64,
}

/// The lack-of-fit test of a fit with `n_params` parameters whose points have `residuals`
/// (fitted − observed) and observed `values`, point i in replicate group `groups[i]`. `None`
/// without a group of two (no seed noise measured) or without more groups than parameters.
pub fn lack_of_fit(
    residuals: &[f64],
    values: &[f64],
    groups: &[usize],
    n_params: usize,
) -> Option<LackOfFit> {
    let g = groups.iter().copied().max().map_or(0, |m| m + 1);
    let mut members: Vec<Vec<f64>> = vec![Vec::new(); g];
    for (&k, &v) in groups.iter().zip(values) {
        members[k].push(v);
    }
    let sets: Vec<&[f64]> = members.iter().map(Vec::as_slice).collect();
    let (noise_var, df_noise) = pooled_variance(&sets)?;
    let n_groups = members.iter().filter(|m| !m.is_empty()).count();
    if n_groups <= n_params {
        return None;
    }
    let df_lack = n_groups - n_params;
    let ss_res: f64 = residuals.iter().map(|r| r * r).sum();
    let ss_pe = noise_var * df_noise as f64;
    let ss_lack = (ss_res - ss_pe).max(0.0);
    let f = (ss_lack / df_lack as f64) / noise_var.max(f64::MIN_POSITIVE);
    let (d1, d2) = (df_lack as f64, df_noise as f64);
    // P(F ≥ f) = I_{d2/(d2 + d1·f)}(d2/2, d1/2).
    let p_value = incomplete_beta(d2 / 2.0, d1 / 2.0, d2 / (d2 + d1 * f));
    Some(LackOfFit {
        lack_sd: (ss_lack / df_lack as f64).sqrt(),
        noise_sd: noise_var.sqrt(),
        f,
        df_lack,
        df_noise,
        p_value,
    })
}

/// The `p` quantile of Student's t with `df` degrees of freedom (df > 0, may be fractional).
pub fn t_quantile(p: f64, df: f64) -> f64 {
    assert!(p > 0.0 && p < 1.0 && df > 0.0, "t_quantile({p}, {df})");
    if p < 0.5 {
        return -t_quantile(1.0 - p, df);
    }
    // Bisection on the CDF: monotone, and 200 halvings of [0, 1e6] are exact to f64.
    let (mut lo, mut hi) = (0.0f64, 1e6f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if t_cdf(mid, df) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// Student's t CDF: 1 − ½·I_{df/(df+t²)}(df/2, ½) for t ≥ 0.
pub fn t_cdf(t: f64, df: f64) -> f64 {
    let tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t));
    if t >= 0.0 { 1.0 - tail } else { tail }
}

/// The regularised incomplete beta function I_x(a, b), by its continued fraction (Lentz).
fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    // The fraction converges fast for x < (a + 1)/(a + b + 2); use the symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_fraction(a, b, x) / a
    } else {
        1.0 - front * beta_fraction(b, a, 1.0 - x) / b
    }
}

fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + aa / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + aa / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        let step = d * c;
        h *= step;
        if (step - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms: ~1e-15 relative).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1 − x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = G[0];
    for (i, g) in G.iter().enumerate().skip(1) {
        sum += g / (x + i as f64);
    }
    let t = x + 7.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three seeds at each of eight configurations on a straight line in x with noise 0.01; a
    /// line fits within seed noise, a constant does not.
    #[test]
    fn lack_of_fit_tells_a_missing_trend_from_seed_noise() {
        let jitter = [-0.01, 0.0, 0.01];
        let (mut x, mut y, mut g) = (Vec::new(), Vec::new(), Vec::new());
        for c in 0..8 {
            for (s, j) in jitter.iter().enumerate() {
                x.push(c as f64);
                y.push(
                    2.0 + 0.05 * c as f64
                        + j * if c % 2 == 0 { 1.0 } else { -1.0 }
                        + 0.001 * s as f64,
                );
                g.push(c);
            }
        }
        let line: Vec<f64> = x
            .iter()
            .zip(&y)
            .map(|(x, y)| 2.001 + 0.05 * x - y)
            .collect();
        let ok = lack_of_fit(&line, &y, &g, 2).unwrap();
        assert!(ok.p_value > 0.05 && ok.f < 2.0, "{ok:?}");
        assert_eq!((ok.df_lack, ok.df_noise), (6, 16));
        let mean = y.iter().sum::<f64>() / y.len() as f64;
        let flat: Vec<f64> = y.iter().map(|y| mean - y).collect();
        let bad = lack_of_fit(&flat, &y, &g, 1).unwrap();
        assert!(
            bad.p_value < 1e-6 && bad.lack_sd > 5.0 * bad.noise_sd,
            "{bad:?}"
        );
        // One seed per configuration: no noise to judge against.
        assert!(lack_of_fit(&line[..8], &y[..8], &[0, 1, 2, 3, 4, 5, 6, 7], 2).is_none());
    }
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use rand_distr::{Distribution, Normal};

    #[test]
    fn t_quantiles_match_the_tables() {
        // Two-sided 95% critical values.
        for (df, t) in [
            (1.0, 12.706_204_736),
            (2.0, 4.302_652_730),
            (4.0, 2.776_445_105),
            (10.0, 2.228_138_852),
            (30.0, 2.042_272_456),
            (1e6, 1.959_966_0),
        ] {
            let q = t_quantile(0.975, df);
            assert!((q - t).abs() < 1e-5 * t, "df {df}: {q} vs {t}");
        }
        assert!((t_quantile(0.5, 3.0)).abs() < 1e-12);
        assert!((t_quantile(0.025, 4.0) + 2.776_445_105).abs() < 1e-6);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-13);
        assert!((ln_gamma(10.0) - 362_880f64.ln()).abs() < 1e-11);
    }

    #[test]
    fn group_stats_of_known_values() {
        let g = GroupStats::of(&[1.0, 2.0, 3.0, f64::NAN]).unwrap();
        assert_eq!(g.n, 3);
        assert!((g.mean - 2.0).abs() < 1e-15);
        assert!((g.sd.unwrap() - 1.0).abs() < 1e-15);
        assert!((g.se.unwrap() - 1.0 / 3f64.sqrt()).abs() < 1e-15);
        let one = GroupStats::of(&[1.5]).unwrap();
        assert_eq!((one.sd, one.se), (None, None));
        assert!(one.describe(3).contains("noise unmeasured"));
        assert!(GroupStats::of(&[]).is_none());
        assert_eq!(compare(&one, &g).verdict, Verdict::NeedsSeeds);
        assert!(compare(&one, &g).sentence().contains("n = 1"));
    }

    fn draw(rng: &mut StdRng, mean: f64, sd: f64, n: usize) -> Vec<f64> {
        let normal = Normal::new(mean, sd).unwrap();
        (0..n).map(|_| normal.sample(rng)).collect()
    }

    #[test]
    fn the_standard_error_is_recovered_within_sampling_error() {
        // σ = 0.02, n = 5: the SE's estimate averages to about σ/√5 over many groups.
        let mut rng = StdRng::seed_from_u64(1);
        let (sigma, n) = (0.02, 5);
        let ses: Vec<f64> = (0..4000)
            .map(|_| {
                GroupStats::of(&draw(&mut rng, 3.0, sigma, n))
                    .unwrap()
                    .se
                    .unwrap()
            })
            .collect();
        // E[s²] = σ² exactly: the mean of s² is within 3% of σ² over 4000 groups.
        let mean_var = ses.iter().map(|s| s * s * n as f64).sum::<f64>() / ses.len() as f64;
        assert!(
            (mean_var / (sigma * sigma) - 1.0).abs() < 0.03,
            "{mean_var}"
        );
    }

    #[test]
    fn a_zero_difference_is_within_noise_and_a_large_one_is_not() {
        let mut rng = StdRng::seed_from_u64(2);
        let (sigma, n, draws) = (0.01, 3, 2000);
        let within = (0..draws)
            .filter(|_| {
                let a = GroupStats::of(&draw(&mut rng, 2.0, sigma, n)).unwrap();
                let b = GroupStats::of(&draw(&mut rng, 2.0, sigma, n)).unwrap();
                compare(&a, &b).verdict == Verdict::WithinNoise
            })
            .count();
        // Nominal 95%; Welch's interval is close to exact here.
        assert!(within as f64 / draws as f64 >= 0.92, "{within} of {draws}");

        // A true difference of 3 SE of the difference (SE = σ·√(2/n)), n = 10 per group: the
        // 95% interval excludes zero in about 80% of draws (t on ~18 df), and never points the
        // wrong way.
        let n = 10;
        let delta = 3.0 * sigma * (2.0 / n as f64).sqrt();
        let (mut ahead, mut wrong) = (0, 0);
        for _ in 0..draws {
            let a = GroupStats::of(&draw(&mut rng, 2.0 - delta, sigma, n)).unwrap();
            let b = GroupStats::of(&draw(&mut rng, 2.0, sigma, n)).unwrap();
            match compare(&a, &b).verdict {
                Verdict::Ahead => ahead += 1,
                Verdict::Behind => wrong += 1,
                _ => {}
            }
        }
        let power = ahead as f64 / draws as f64;
        assert!((0.72..0.90).contains(&power), "power {power}");
        assert_eq!(wrong, 0);
        // At 5 SE it is beyond noise in nearly every draw.
        let delta = 5.0 * sigma * (2.0 / n as f64).sqrt();
        let ahead = (0..draws)
            .filter(|_| {
                let a = GroupStats::of(&draw(&mut rng, 2.0 - delta, sigma, n)).unwrap();
                let b = GroupStats::of(&draw(&mut rng, 2.0, sigma, n)).unwrap();
                compare(&a, &b).verdict == Verdict::Ahead
            })
            .count();
        assert!(ahead as f64 / draws as f64 >= 0.99, "{ahead}");
    }

    #[test]
    fn pooled_variance_skips_single_seeds() {
        let groups: [&[f64]; 3] = [&[1.0, 3.0], &[5.0], &[2.0, 4.0, 6.0]];
        let (v, df) = pooled_variance(&groups).unwrap();
        // (2 + 8) / (1 + 2)
        assert_eq!(df, 3);
        assert!((v - 10.0 / 3.0).abs() < 1e-12);
        assert!(pooled_variance(&[&[1.0]]).is_none());
    }
}
