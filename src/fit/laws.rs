//! The laws, each written as log L̂ = LSE(terms), with positive scale parameters
//! (E, A, B, L∞) carried as their logarithms so the solver works unconstrained.
//!
//! A law owns: its parameter vector θ (solver space), the covariates it needs per point
//! (a `Design` row), log L̂ and its analytic gradient ∂ log L̂ / ∂θ, the map from θ to the
//! natural parameters a paper reports, derived quantities, and its default start grid.

use anyhow::{Result, bail};

use super::points::Points;

/// Covariates of a fit, one fixed-width row per point, plus the observed log loss.
/// Rows hold logs of N, D, C (the laws are linear in them) so each evaluation spends
/// no time on `ln`.
#[derive(Debug, Clone)]
pub struct Design {
    pub width: usize,
    pub rows: Vec<f64>,
    pub log_loss: Vec<f64>,
}

impl Design {
    pub fn len(&self) -> usize {
        self.log_loss.len()
    }
    pub fn is_empty(&self) -> bool {
        self.log_loss.is_empty()
    }
    pub fn row(&self, i: usize) -> &[f64] {
        &self.rows[i * self.width..(i + 1) * self.width]
    }
    /// The design restricted to the points `idx`, in that order.
    pub fn subset(&self, idx: &[usize]) -> Design {
        let mut rows = Vec::with_capacity(idx.len() * self.width);
        for &i in idx {
            rows.extend_from_slice(self.row(i));
        }
        Design {
            width: self.width,
            rows,
            log_loss: idx.iter().map(|&i| self.log_loss[i]).collect(),
        }
    }
}

/// A scaling law in log-sum-exp form.
pub trait Law: Sync {
    /// Short name, as used on the command line and in the `fits` table.
    fn name(&self) -> String;
    /// Names of the solver-space parameters θ (e.g. `e = log E`).
    fn theta_names(&self) -> Vec<String>;
    fn n_params(&self) -> usize {
        self.theta_names().len()
    }
    /// log L̂ at one design row; overwrites `grad` with ∂ log L̂ / ∂θ.
    fn log_predict(&self, theta: &[f64], row: &[f64], grad: &mut [f64]) -> f64;
    /// The parameters as reported (E, A, α, ...), in a fixed order.
    fn natural(&self, theta: &[f64]) -> Vec<(String, f64)>;
    /// Quantities derived from the parameters (allocation exponents, ...).
    fn derived(&self, _theta: &[f64]) -> Vec<(String, f64)> {
        Vec::new()
    }
    /// Default multi-start grid (solver space).
    fn start_grid(&self) -> Vec<Vec<f64>>;
}

/// log Σ exp(t_j) and the softmax weights ∂LSE/∂t_j, computed around the max so that
/// terms like a − α log N ≈ 25 − 0 never overflow.
#[inline]
pub fn lse<const K: usize>(t: [f64; K]) -> (f64, [f64; K]) {
    let m = t.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut w = [0.0; K];
    let mut s = 0.0;
    for j in 0..K {
        // exp(0) = 1 for the max term: one transcendental call fewer per point, which is
        // most of the cost of an evaluation.
        w[j] = if t[j] == m { 1.0 } else { (t[j] - m).exp() };
        s += w[j];
    }
    for wj in w.iter_mut() {
        *wj /= s;
    }
    (m + s.ln(), w)
}

/// Cartesian product of per-coordinate value lists, first coordinate slowest.
pub fn grid(axes: &[&[f64]]) -> Vec<Vec<f64>> {
    let mut out: Vec<Vec<f64>> = vec![Vec::new()];
    for axis in axes {
        out = out
            .iter()
            .flat_map(|prefix| {
                axis.iter().map(move |&v| {
                    let mut p = prefix.clone();
                    p.push(v);
                    p
                })
            })
            .collect();
    }
    out
}

fn positive(name: &str, v: &[f64]) -> Result<()> {
    if let Some(x) = v.iter().find(|x| !(x.is_finite() && **x > 0.0)) {
        bail!("column {name} must be positive and finite; found {x}");
    }
    Ok(())
}

fn log_loss(points: &Points) -> Result<Vec<f64>> {
    positive("loss", &points.loss)?;
    Ok(points.loss.iter().map(|l| l.ln()).collect())
}

// ---------------------------------------------------------------------------------------

/// L(C) = E + A·C^(−α); θ = (e, a, α), log L̂ = LSE(e, a − α log C).
#[derive(Debug, Clone, Copy, Default)]
pub struct ComputeLaw;

impl ComputeLaw {
    pub fn design(&self, points: &Points) -> Result<Design> {
        let c = points.compute()?;
        positive("C", &c)?;
        Ok(Design {
            width: 1,
            rows: c.iter().map(|c| c.ln()).collect(),
            log_loss: log_loss(points)?,
        })
    }
}

impl Law for ComputeLaw {
    fn name(&self) -> String {
        "compute".into()
    }
    fn theta_names(&self) -> Vec<String> {
        ["e", "a", "alpha"].map(String::from).to_vec()
    }
    #[inline]
    fn log_predict(&self, th: &[f64], row: &[f64], g: &mut [f64]) -> f64 {
        let ln_c = row[0];
        let (v, w) = lse([th[0], th[1] - th[2] * ln_c]);
        g[0] = w[0];
        g[1] = w[1];
        g[2] = -w[1] * ln_c;
        v
    }
    fn natural(&self, th: &[f64]) -> Vec<(String, f64)> {
        vec![
            ("E".into(), th[0].exp()),
            ("A".into(), th[1].exp()),
            ("alpha".into(), th[2]),
        ]
    }
    /// Loss-vs-compute exponents are small (≈0.05) and log C ≈ 40–55, so the grid covers
    /// small α finely and lets a = log A reach α·log C.
    fn start_grid(&self) -> Vec<Vec<f64>> {
        grid(&[
            &[-1.0, -0.5, 0.0, 0.5, 1.0, 1.5],
            &[0.0, 2.5, 5.0, 10.0, 15.0, 20.0, 25.0],
            &[0.0, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 1.0],
        ])
    }
}

// ---------------------------------------------------------------------------------------

/// L(N, D) = E + A/N^α + B/D^β (Hoffmann et al. 2022, approach 3);
/// θ = (e, a, b, α, β), log L̂ = LSE(a − α log N, b − β log D, e).
#[derive(Debug, Clone, Copy, Default)]
pub struct ChinchillaLaw;

impl ChinchillaLaw {
    pub fn design(&self, points: &Points) -> Result<Design> {
        let n = points.params()?;
        let d = points.tokens()?;
        positive("N", &n)?;
        positive("D", &d)?;
        let rows = n
            .iter()
            .zip(&d)
            .flat_map(|(n, d)| [n.ln(), d.ln()])
            .collect();
        Ok(Design {
            width: 2,
            rows,
            log_loss: log_loss(points)?,
        })
    }
}

impl Law for ChinchillaLaw {
    fn name(&self) -> String {
        "chinchilla".into()
    }
    fn theta_names(&self) -> Vec<String> {
        ["e", "a", "b", "alpha", "beta"].map(String::from).to_vec()
    }
    #[inline]
    fn log_predict(&self, th: &[f64], row: &[f64], g: &mut [f64]) -> f64 {
        let (ln_n, ln_d) = (row[0], row[1]);
        let (v, w) = lse([th[0], th[1] - th[3] * ln_n, th[2] - th[4] * ln_d]);
        g[0] = w[0];
        g[1] = w[1];
        g[2] = w[2];
        g[3] = -w[1] * ln_n;
        g[4] = -w[2] * ln_d;
        v
    }
    fn natural(&self, th: &[f64]) -> Vec<(String, f64)> {
        vec![
            ("E".into(), th[0].exp()),
            ("A".into(), th[1].exp()),
            ("B".into(), th[2].exp()),
            ("alpha".into(), th[3]),
            ("beta".into(), th[4]),
        ]
    }
    /// Minimising L at fixed C = 6ND gives N* = G·(C/6)^a, D* = G⁻¹·(C/6)^b with
    /// a = β/(α+β), b = α/(α+β), G = (αA / βB)^(1/(α+β)) (Hoffmann et al., eq. 4).
    fn derived(&self, th: &[f64]) -> Vec<(String, f64)> {
        let (alpha, beta) = (th[3], th[4]);
        let s = alpha + beta;
        let log_g = ((alpha / beta).ln() + th[1] - th[2]) / s;
        vec![
            ("a_opt".into(), beta / s),
            ("b_opt".into(), alpha / s),
            ("G".into(), log_g.exp()),
        ]
    }
    /// Epoch AI's grid (their `data_analysis.ipynb`): e ∈ {−1, −.5, …, 1}, a, b ∈ {0, 5, …, 25},
    /// α, β ∈ {0, .5, …, 2}: 5·6·6·5·5 = 4,500 starts.
    fn start_grid(&self) -> Vec<Vec<f64>> {
        let e = [-1.0, -0.5, 0.0, 0.5, 1.0];
        let ab = [0.0, 5.0, 10.0, 15.0, 20.0, 25.0];
        let exps = [0.0, 0.5, 1.0, 1.5, 2.0];
        grid(&[&e, &ab, &ab, &exps, &exps])
    }
}

/// A coarser Chinchilla grid (e ∈ {0, 1}, a, b ∈ {0, 10, 20}, α, β ∈ {0, .5, 1}: 162
/// starts) for tests in the unoptimised profile; it reaches the same optimum on Epoch's data.
pub fn chinchilla_coarse_grid() -> Vec<Vec<f64>> {
    grid(&[
        &[0.0, 1.0],
        &[0.0, 10.0, 20.0],
        &[0.0, 10.0, 20.0],
        &[0.0, 0.5, 1.0],
        &[0.0, 0.5, 1.0],
    ])
}

// ---------------------------------------------------------------------------------------

/// L(T) = L∞ + A·exp(−k·T) over test-time loop counts T of one curve;
/// θ = (l, a, k), log L̂ = LSE(l, a − k·T).
#[derive(Debug, Clone, Copy, Default)]
pub struct TestTimeLaw;

impl TestTimeLaw {
    pub fn design(&self, points: &Points) -> Result<Design> {
        let t = points
            .test_loops
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("test-time law needs a test-loops column"))?;
        Ok(Design {
            width: 1,
            rows: t.clone(),
            log_loss: log_loss(points)?,
        })
    }
}

const TT_L: [f64; 6] = [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5];
const TT_A: [f64; 6] = [-4.0, -3.0, -2.0, -1.0, 0.0, 1.0];
const TT_K: [f64; 7] = [0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0];

impl Law for TestTimeLaw {
    fn name(&self) -> String {
        "test-time".into()
    }
    fn theta_names(&self) -> Vec<String> {
        ["l", "a", "k"].map(String::from).to_vec()
    }
    #[inline]
    fn log_predict(&self, th: &[f64], row: &[f64], g: &mut [f64]) -> f64 {
        let t = row[0];
        let (v, w) = lse([th[0], th[1] - th[2] * t]);
        g[0] = w[0];
        g[1] = w[1];
        g[2] = -w[1] * t;
        v
    }
    fn natural(&self, th: &[f64]) -> Vec<(String, f64)> {
        vec![
            ("L_inf".into(), th[0].exp()),
            ("A".into(), th[1].exp()),
            ("k".into(), th[2]),
        ]
    }
    /// k starts strictly positive: at k = 0 the two terms are interchangeable and the
    /// gradient in k carries no information about which one decays.
    fn start_grid(&self) -> Vec<Vec<f64>> {
        grid(&[&TT_L, &TT_A, &TT_K])
    }
}

/// Test-time curves pooled with one shared rate k and per-curve (L∞_c, A_c);
/// θ = (k, l_1, a_1, …, l_m, a_m). Design rows are (T, curve index).
#[derive(Debug, Clone)]
pub struct TestTimePooledLaw {
    pub curves: Vec<String>,
    /// Per-curve θ = (l, a, k) to start from (from separate per-curve fits); empty means
    /// start every curve from (l, a) = (0, −1).
    pub curve_starts: Vec<[f64; 3]>,
}

impl TestTimePooledLaw {
    /// Curve ids from the `curve` column (or `group` if there is none), in first-seen order.
    pub fn new(points: &Points) -> Result<Self> {
        let ids = points.curve_ids()?;
        let mut curves: Vec<String> = Vec::new();
        for id in ids {
            if !curves.contains(id) {
                curves.push(id.clone());
            }
        }
        Ok(TestTimePooledLaw {
            curves,
            curve_starts: Vec::new(),
        })
    }
    pub fn design(&self, points: &Points) -> Result<Design> {
        let t = points
            .test_loops
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("test-time law needs a test-loops column"))?;
        let ids = points.curve_ids()?;
        let mut rows = Vec::with_capacity(2 * t.len());
        for (t, id) in t.iter().zip(ids) {
            let c = self
                .curves
                .iter()
                .position(|c| c == id)
                .expect("curve list built from these points");
            rows.extend_from_slice(&[*t, c as f64]);
        }
        Ok(Design {
            width: 2,
            rows,
            log_loss: log_loss(points)?,
        })
    }
}

impl Law for TestTimePooledLaw {
    fn name(&self) -> String {
        "test-time-pooled".into()
    }
    fn theta_names(&self) -> Vec<String> {
        let mut v = vec!["k".to_string()];
        for c in &self.curves {
            v.push(format!("l[{c}]"));
            v.push(format!("a[{c}]"));
        }
        v
    }
    #[inline]
    fn log_predict(&self, th: &[f64], row: &[f64], g: &mut [f64]) -> f64 {
        let (t, c) = (row[0], row[1] as usize);
        let (il, ia) = (1 + 2 * c, 2 + 2 * c);
        let (v, w) = lse([th[il], th[ia] - th[0] * t]);
        g.fill(0.0);
        g[0] = -w[1] * t;
        g[il] = w[0];
        g[ia] = w[1];
        v
    }
    fn natural(&self, th: &[f64]) -> Vec<(String, f64)> {
        let mut v = vec![("k".to_string(), th[0])];
        for (i, c) in self.curves.iter().enumerate() {
            v.push((format!("L_inf[{c}]"), th[1 + 2 * i].exp()));
            v.push((format!("A[{c}]"), th[2 + 2 * i].exp()));
        }
        v
    }
    /// A full grid is exponential in the number of curves, so each start sets the shared k
    /// (from the k grid and from every per-curve fit) and takes each curve's (l, a) from its
    /// own fit.
    fn start_grid(&self) -> Vec<Vec<f64>> {
        let mut ks: Vec<f64> = TT_K.to_vec();
        ks.extend(self.curve_starts.iter().map(|s| s[2]));
        ks.iter()
            .map(|&k| {
                let mut th = vec![k];
                for i in 0..self.curves.len() {
                    let s = self.curve_starts.get(i).copied().unwrap_or([0.0, -1.0, k]);
                    th.extend_from_slice(&[s[0], s[1]]);
                }
                th
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lse_is_stable_and_exact() {
        let (v, w) = lse([1000.0, 1000.0]);
        assert!((v - (1000.0 + 2f64.ln())).abs() < 1e-12);
        assert_eq!(w, [0.5, 0.5]);
        let (v, _) = lse([0.0_f64.ln(), 1.0_f64.ln(), 2.0_f64.ln()]);
        assert!((v - 3f64.ln()).abs() < 1e-15);
    }

    #[test]
    fn chinchilla_prediction_and_allocation() {
        let law = ChinchillaLaw;
        let th = [1.8f64.ln(), 400f64.ln(), 2000f64.ln(), 0.34, 0.28];
        let (n, d) = (1e9f64, 2e10f64);
        let mut g = [0.0; 5];
        let v = law.log_predict(&th, &[n.ln(), d.ln()], &mut g).exp();
        assert!((v - (1.8 + 400.0 / n.powf(0.34) + 2000.0 / d.powf(0.28))).abs() < 1e-12);
        let der = law.derived(&th);
        assert!((der[0].1 - 0.28 / 0.62).abs() < 1e-12 && (der[1].1 - 0.34 / 0.62).abs() < 1e-12);
        assert_eq!(law.start_grid().len(), 4500);
    }

    #[test]
    fn grid_is_a_cartesian_product() {
        let g = grid(&[&[1.0, 2.0], &[3.0, 4.0, 5.0]]);
        assert_eq!(g.len(), 6);
        assert_eq!(g[0], vec![1.0, 3.0]);
        assert_eq!(g[5], vec![2.0, 5.0]);
    }
}
