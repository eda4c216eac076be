//! The laws, each written as log L̂ = LSE(terms), with positive scale parameters
//! (E, A, B, L∞) carried as their logarithms so the solver works unconstrained.
//!
//! A law owns: its parameter vector θ (solver space), the covariates it needs per point
//! (a `Design` row), log L̂ and its analytic gradient ∂ log L̂ / ∂θ, the map from θ to the
//! natural parameters a paper reports, derived quantities, and its default start grid.

use anyhow::{Result, bail};

use super::estimate::ParamEstimate;
use super::points::Points;
use super::profile_spec::{Kind, ProfileSpec};
pub use super::rates::{Bound, RateBounds};

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
    /// How many distinct rows (points of the law's variables) the design holds: replicates of
    /// one configuration are one point.
    pub fn distinct_rows(&self) -> usize {
        let mut rows: Vec<&[f64]> = (0..self.len()).map(|i| self.row(i)).collect();
        rows.sort_by(|a, b| {
            a.iter()
                .zip(b.iter())
                .map(|(x, y)| x.total_cmp(y))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        rows.dedup();
        rows.len()
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
    /// What the fitted parameters and derived quantities (with their intervals) do not
    /// support, in words: a saturating term without a gain, a rate at its bound, ...
    fn notes(&self, _estimates: &[ParamEstimate]) -> Vec<String> {
        Vec::new()
    }
    /// The headline parameters profiled for their intervals and judged for identifiability
    /// (see `fit::identify`); none by default.
    fn profiled(&self) -> Vec<ProfileSpec> {
        Vec::new()
    }
    /// The loss from what [`Law::log_predict`] returns: its exp for the laws in log form (all
    /// but a written law on the raw scale, which returns L̂ itself).
    fn loss_of(&self, v: f64) -> f64 {
        v.exp()
    }
    /// The natural parameters a derived quantity depends on: it is not identified when one of
    /// them is not. A quantity the data measure directly (a curve's gain over its sampled
    /// range) depends on none.
    fn depends(&self, _derived: &str) -> Vec<String> {
        Vec::new()
    }
}

/// Owned names, for [`Law::depends`].
pub fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
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
    fn profiled(&self) -> Vec<ProfileSpec> {
        vec![
            ProfileSpec::new("E", 0, Kind::Floor),
            ProfileSpec::new("A", 1, Kind::Scale),
            ProfileSpec::new("alpha", 2, Kind::Exponent),
        ]
    }
}

// ---------------------------------------------------------------------------------------

/// L(N, D) = E + A/N^α + B/D^β (Hoffmann et al. 2022, approach 3);
/// θ = (e, a, b, α, β), log L̂ = LSE(a − α log N, b − β log D, e).
#[derive(Debug, Clone, Copy, Default)]
pub struct ChinchillaLaw;

impl ChinchillaLaw {
    pub fn design(&self, points: &Points) -> Result<Design> {
        two_powers_design(&points.params()?, "N", points)
    }
}

/// The design of a law in two powers, `E + A·N^−α + B·D^−β` (Chinchilla's over N, Parcae's
/// over N(μ)): rows `(ln N, ln D)`.
fn two_powers_design(n: &[f64], what: &str, points: &Points) -> Result<Design> {
    let d = points.tokens()?;
    positive(what, n)?;
    positive("D", &d)?;
    Ok(Design {
        width: 2,
        rows: n
            .iter()
            .zip(&d)
            .flat_map(|(n, d)| [n.ln(), d.ln()])
            .collect(),
        log_loss: log_loss(points)?,
    })
}

/// `ln(E + A·N^−α + B·D^−β)` at the row `(ln N, ln D)` and its gradient, in log-sum-exp form;
/// `at` gives the θ indices of `(e, ln A, α, ln B, β)` (each law keeps its own order).
#[inline]
fn two_powers(th: &[f64], at: [usize; 5], row: &[f64], g: &mut [f64]) -> f64 {
    let [e, ln_a, alpha, ln_b, beta] = at;
    let (ln_n, ln_d) = (row[0], row[1]);
    let (v, w) = lse([
        th[e],
        th[ln_a] - th[alpha] * ln_n,
        th[ln_b] - th[beta] * ln_d,
    ]);
    g[e] = w[0];
    g[ln_a] = w[1];
    g[alpha] = -w[1] * ln_n;
    g[ln_b] = w[2];
    g[beta] = -w[2] * ln_d;
    v
}

impl Law for ChinchillaLaw {
    fn name(&self) -> String {
        "chinchilla".into()
    }
    fn theta_names(&self) -> Vec<String> {
        ["e", "a", "b", "alpha", "beta"].map(String::from).to_vec()
    }
    /// θ = (e, ln A, ln B, α, β).
    #[inline]
    fn log_predict(&self, th: &[f64], row: &[f64], g: &mut [f64]) -> f64 {
        two_powers(th, [0, 1, 3, 2, 4], row, g)
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
    fn profiled(&self) -> Vec<ProfileSpec> {
        vec![
            ProfileSpec::new("E", 0, Kind::Floor),
            ProfileSpec::new("A", 1, Kind::Scale),
            ProfileSpec::new("B", 2, Kind::Scale),
            ProfileSpec::new("alpha", 3, Kind::Exponent),
            ProfileSpec::new("beta", 4, Kind::Exponent),
        ]
    }
    fn depends(&self, derived: &str) -> Vec<String> {
        match derived {
            "a_opt" | "b_opt" => names(&["alpha", "beta"]),
            _ => names(&["A", "B", "alpha", "beta"]),
        }
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

/// A fitted gain no larger than this fraction of the loss is no gain (far below the noise of
/// any validation loss loopscale measures).
pub const NO_GAIN_FRACTION: f64 = 1e-3;

/// The estimate called `name`, if the fit has one.
pub fn find<'a>(params: &'a [ParamEstimate], name: &str) -> Option<&'a ParamEstimate> {
    params.iter().find(|p| p.name == name)
}

/// A note when a saturating term's gain over the samples (estimate, or its interval's lower
/// end when there is one) is no larger than [`NO_GAIN_FRACTION`] of `loss`. `term` names the
/// curve ("the curve", "curve X", "Z·e^(−z·T/μ)").
pub fn gain_note(term: &str, gain: &ParamEstimate, loss: f64) -> Option<String> {
    let floor = NO_GAIN_FRACTION * loss;
    let reach = gain.lo.unwrap_or(gain.value);
    if reach > floor {
        return None;
    }
    let why = if gain.value <= floor {
        format!("its fitted gain is {:.1e}", gain.value)
    } else {
        format!(
            "its gain is {:.3} but the interval reaches {reach:.1e}",
            gain.value
        )
    };
    Some(format!(
        "no saturating gain: {term} does not fall measurably ({why}, under {NO_GAIN_FRACTION:.0e} of the \
         loss); read its asymptote as the level of the data, not a limit"
    ))
}

/// A note when a saturating term's rate sits at a bound of its [`RateBounds`]: a rate at the
/// lower bound has not saturated within the samples, one at the upper bound is a single step.
pub fn rate_note(
    term: &str,
    rate: (&str, f64),
    bounds: &RateBounds,
    variable: &str,
) -> Option<String> {
    let (name, k) = rate;
    match bounds.at_bound(k)? {
        Bound::Lower => Some(format!(
            "no saturating gain: {term} still falls at the largest sampled {variable} ({name} = {k:.3} at its \
             lower bound 1/({variable} range) = {:.3}), so its asymptote is an extrapolation",
            bounds.min
        )),
        Bound::Upper => Some(format!(
            "no saturating gain: {term} drops once, by the second sampled {variable}, and is flat after \
             ({name} = {k:.3} at its upper bound {:.3}, so {name} is not determined)",
            bounds.max
        )),
    }
}

/// The note of one saturating term, if any: a gain of (about) zero is "no saturating gain"; a
/// gain with its rate at a bound is described by the bound (a step, or no saturation), with
/// a word when the gain's interval also reaches zero; otherwise an interval reaching zero is
/// "no saturating gain".
pub fn saturation_note(
    term: &str,
    gain: &ParamEstimate,
    loss: f64,
    rate: (&str, f64),
    bounds: &RateBounds,
    variable: &str,
) -> Option<String> {
    if gain.value <= NO_GAIN_FRACTION * loss {
        return gain_note(term, gain, loss);
    }
    match rate_note(term, rate, bounds, variable) {
        Some(note) if gain_note(term, gain, loss).is_some() => Some(format!(
            "{note}; the gain's interval reaches {:.1e}: it rests on the smallest {variable} alone",
            gain.lo.unwrap_or(gain.value)
        )),
        Some(note) => Some(note),
        None => gain_note(term, gain, loss),
    }
}

/// L(T) = L∞ + A·exp(−k·T) over test-time loop counts T of one curve;
/// θ = (l, a, κ), log L̂ = LSE(l, a − k(κ)·T), k within [`RateBounds`] of the sampled T:
/// L∞, A > 0 by construction (A → 0 is a flat curve), k > 0 and within what the T's show.
#[derive(Debug, Clone, Copy, Default)]
pub struct TestTimeLaw {
    pub rate: RateBounds,
}

fn test_loops(points: &Points) -> Result<&Vec<f64>> {
    points
        .test_loops
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("test-time law needs a test-loops column"))
}

impl TestTimeLaw {
    /// The law with k's range set by the points' test-time loop counts.
    pub fn new(points: &Points) -> Result<Self> {
        Ok(TestTimeLaw {
            rate: RateBounds::of(test_loops(points)?, "test-time loops T")?,
        })
    }
    pub fn design(&self, points: &Points) -> Result<Design> {
        Ok(Design {
            width: 1,
            rows: test_loops(points)?.clone(),
            log_loss: log_loss(points)?,
        })
    }
}

const TT_L: [f64; 6] = [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5];
const TT_A: [f64; 6] = [-4.0, -3.0, -2.0, -1.0, 0.0, 1.0];
const TT_K: [f64; 7] = [0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0];

/// The T range's ends, stored in no design: the gain is measured between them.
fn gain(a: f64, k: f64, (t_lo, t_hi): (f64, f64)) -> f64 {
    a * ((-k * t_lo).exp() - (-k * t_hi).exp())
}

impl Law for TestTimeLaw {
    fn name(&self) -> String {
        "test-time".into()
    }
    fn theta_names(&self) -> Vec<String> {
        ["l", "a", "kappa"].map(String::from).to_vec()
    }
    #[inline]
    fn log_predict(&self, th: &[f64], row: &[f64], g: &mut [f64]) -> f64 {
        let t = row[0];
        let (k, dk) = self.rate.rate(th[2]);
        let (v, w) = lse([th[0], th[1] - k * t]);
        g[0] = w[0];
        g[1] = w[1];
        g[2] = -w[1] * t * dk;
        v
    }
    fn natural(&self, th: &[f64]) -> Vec<(String, f64)> {
        vec![
            ("L_inf".into(), th[0].exp()),
            ("A".into(), th[1].exp()),
            ("k".into(), self.rate.rate(th[2]).0),
        ]
    }
    /// The loss the curve gains between the smallest and the largest sampled T.
    fn derived(&self, th: &[f64]) -> Vec<(String, f64)> {
        let k = self.rate.rate(th[2]).0;
        vec![(
            "gain".into(),
            gain(th[1].exp(), k, (self.rate.lo, self.rate.hi)),
        )]
    }
    /// k starts strictly inside its range: at a bound the gradient in κ vanishes.
    fn start_grid(&self) -> Vec<Vec<f64>> {
        let kappas: Vec<f64> = TT_K.iter().map(|&k| self.rate.kappa(k)).collect();
        grid(&[&TT_L, &TT_A, &kappas])
    }
    fn notes(&self, params: &[ParamEstimate]) -> Vec<String> {
        let (Some(l), Some(k), Some(g)) = (
            find(params, "L_inf"),
            find(params, "k"),
            find(params, "gain"),
        ) else {
            return Vec::new();
        };
        saturation_note("the curve", g, l.value, ("k", k.value), &self.rate, "T")
            .into_iter()
            .collect()
    }
    fn profiled(&self) -> Vec<ProfileSpec> {
        vec![
            ProfileSpec::new("L_inf", 0, Kind::Floor),
            ProfileSpec::new("A", 1, Kind::Scale),
            ProfileSpec::new("k", 2, Kind::Rate(self.rate)),
        ]
    }
}

/// Test-time curves pooled with one shared rate k and per-curve (L∞_c, A_c);
/// θ = (κ, l_1, a_1, …, l_m, a_m). Design rows are (T, curve index). k's range is set by
/// every curve's T together.
#[derive(Debug, Clone)]
pub struct TestTimePooledLaw {
    pub curves: Vec<String>,
    /// Per-curve θ = (l, a, κ) to start from (from separate per-curve fits, κ in this law's
    /// range); empty means start every curve from (l, a) = (0, −1).
    pub curve_starts: Vec<[f64; 3]>,
    pub rate: RateBounds,
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
            rate: RateBounds::of(test_loops(points)?, "test-time loops T")?,
        })
    }
    pub fn design(&self, points: &Points) -> Result<Design> {
        let t = test_loops(points)?;
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
        let mut v = vec!["kappa".to_string()];
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
        let (k, dk) = self.rate.rate(th[0]);
        let (v, w) = lse([th[il], th[ia] - k * t]);
        g.fill(0.0);
        g[0] = -w[1] * t * dk;
        g[il] = w[0];
        g[ia] = w[1];
        v
    }
    fn natural(&self, th: &[f64]) -> Vec<(String, f64)> {
        let mut v = vec![("k".to_string(), self.rate.rate(th[0]).0)];
        for (i, c) in self.curves.iter().enumerate() {
            v.push((format!("L_inf[{c}]"), th[1 + 2 * i].exp()));
            v.push((format!("A[{c}]"), th[2 + 2 * i].exp()));
        }
        v
    }
    /// Each curve's gain between the smallest and the largest sampled T (of all curves).
    fn derived(&self, th: &[f64]) -> Vec<(String, f64)> {
        let k = self.rate.rate(th[0]).0;
        self.curves
            .iter()
            .enumerate()
            .map(|(i, c)| {
                (
                    format!("gain[{c}]"),
                    gain(th[2 + 2 * i].exp(), k, (self.rate.lo, self.rate.hi)),
                )
            })
            .collect()
    }
    /// A full grid is exponential in the number of curves, so each start sets the shared k
    /// (from the k grid and from every per-curve fit) and takes each curve's (l, a) from its
    /// own fit.
    fn start_grid(&self) -> Vec<Vec<f64>> {
        let mut kappas: Vec<f64> = TT_K.iter().map(|&k| self.rate.kappa(k)).collect();
        kappas.extend(self.curve_starts.iter().map(|s| s[2]));
        kappas
            .iter()
            .map(|&kappa| {
                let mut th = vec![kappa];
                for i in 0..self.curves.len() {
                    let s = self
                        .curve_starts
                        .get(i)
                        .copied()
                        .unwrap_or([0.0, -1.0, kappa]);
                    th.extend_from_slice(&[s[0], s[1]]);
                }
                th
            })
            .collect()
    }
    /// A note per curve without a saturating gain, and one when the shared rate is at a bound.
    fn notes(&self, params: &[ParamEstimate]) -> Vec<String> {
        let Some(k) = find(params, "k") else {
            return Vec::new();
        };
        let mut notes: Vec<String> = self
            .curves
            .iter()
            .filter_map(|c| {
                let l = find(params, &format!("L_inf[{c}]"))?;
                let g = find(params, &format!("gain[{c}]"))?;
                gain_note(&format!("curve {c}"), g, l.value)
            })
            .collect();
        notes.extend(rate_note("every curve", ("k", k.value), &self.rate, "T"));
        notes
    }
    fn profiled(&self) -> Vec<ProfileSpec> {
        vec![ProfileSpec::new("k", 0, Kind::Rate(self.rate))]
    }
}

// ---------------------------------------------------------------------------------------

/// Parcae's training law L(μ, D) = E + X·N(μ)^(−x) + Y·D^(−y), N(μ) the unrolled parameter
/// count (what the points' N column holds; see `analysis::source` for what is counted);
/// θ = (e, x̃, x, ỹ, y) with X = e^x̃, Y = e^ỹ; log L̂ = LSE(e, x̃ − x·log N, ỹ − y·log D).
/// The same form as Chinchilla's law in N(μ); reported with Parcae's names.
#[derive(Debug, Clone, Copy, Default)]
pub struct ParcaeLaw;

impl ParcaeLaw {
    pub fn design(&self, points: &Points) -> Result<Design> {
        let n = points.n.clone().ok_or_else(|| {
            anyhow::anyhow!("the Parcae law needs N(μ), the unrolled parameter count (--n-col)")
        })?;
        two_powers_design(&n, "N(μ)", points)
    }
}

/// The exponents of the compute-optimal split of C ≈ 6·N(μ)·D between N(μ) and D:
/// N(μ)* ∝ C^(y/(x+y)), D* ∝ C^(x/(x+y)) (as Chinchilla's a, b). With N(μ) = N_once + μ·N_core
/// and N_once ≪ μ·N_core, μ* follows N(μ)*.
fn parcae_derived(x: f64, y: f64) -> Vec<(String, f64)> {
    vec![
        ("n_opt_exponent".into(), y / (x + y)),
        ("d_opt_exponent".into(), x / (x + y)),
    ]
}

/// Notes on exponents that say loss does not fall with N(μ) or D.
fn exponent_notes(params: &[ParamEstimate]) -> Vec<String> {
    let mut notes = Vec::new();
    for (name, what) in [("x", "N(μ)"), ("y", "D")] {
        if let Some(p) = find(params, name)
            && p.lo.unwrap_or(p.value) <= 0.0
        {
            notes.push(format!(
                "{name} = {:.3}{}: the data do not show loss falling with {what}",
                p.value,
                p.lo.map(|lo| format!(" (interval from {lo:.3})"))
                    .unwrap_or_default()
            ));
        }
    }
    notes
}

const PARCAE_E: [f64; 5] = [-1.0, -0.5, 0.0, 0.5, 1.0];
const PARCAE_SCALE: [f64; 6] = [0.0, 5.0, 10.0, 15.0, 20.0, 25.0];
const PARCAE_EXP: [f64; 5] = [0.0, 0.5, 1.0, 1.5, 2.0];

impl ParcaeLaw {
    /// A 72-start grid (e ∈ {−0.5, 0.5}, x̃, ỹ ∈ {0, 10, 20}, x, y ∈ {0.25, 0.75}) for fits made
    /// often, as the report's; `loopscale fit` uses the full [`Law::start_grid`].
    pub fn coarse_grid() -> Vec<Vec<f64>> {
        grid(&[
            &[-0.5, 0.5],
            &[0.0, 10.0, 20.0],
            &[0.25, 0.75],
            &[0.0, 10.0, 20.0],
            &[0.25, 0.75],
        ])
    }
}

impl Law for ParcaeLaw {
    fn name(&self) -> String {
        "parcae".into()
    }
    fn theta_names(&self) -> Vec<String> {
        ["e", "log X", "x", "log Y", "y"].map(String::from).to_vec()
    }
    /// θ = (e, ln X, x, ln Y, y): Chinchilla's law over N(μ), its parameters in Parcae's order.
    #[inline]
    fn log_predict(&self, th: &[f64], row: &[f64], g: &mut [f64]) -> f64 {
        two_powers(th, [0, 1, 2, 3, 4], row, g)
    }
    fn natural(&self, th: &[f64]) -> Vec<(String, f64)> {
        vec![
            ("E".into(), th[0].exp()),
            ("X".into(), th[1].exp()),
            ("x".into(), th[2]),
            ("Y".into(), th[3].exp()),
            ("y".into(), th[4]),
        ]
    }
    fn derived(&self, th: &[f64]) -> Vec<(String, f64)> {
        parcae_derived(th[2], th[4])
    }
    /// Epoch AI's Chinchilla grid, in this law's order: 4,500 starts.
    fn start_grid(&self) -> Vec<Vec<f64>> {
        grid(&[
            &PARCAE_E,
            &PARCAE_SCALE,
            &PARCAE_EXP,
            &PARCAE_SCALE,
            &PARCAE_EXP,
        ])
    }
    fn notes(&self, params: &[ParamEstimate]) -> Vec<String> {
        exponent_notes(params)
    }
    fn profiled(&self) -> Vec<ProfileSpec> {
        parcae_profiled()
    }
    fn depends(&self, _derived: &str) -> Vec<String> {
        names(&["x", "y"])
    }
}

/// The training law's parameters, profiled: E, X, x, Y, y (θ indices 0 to 4).
fn parcae_profiled() -> Vec<ProfileSpec> {
    vec![
        ProfileSpec::new("E", 0, Kind::Floor),
        ProfileSpec::new("X", 1, Kind::Scale),
        ProfileSpec::new("x", 2, Kind::Exponent),
        ProfileSpec::new("Y", 3, Kind::Scale),
        ProfileSpec::new("y", 4, Kind::Exponent),
    ]
}

/// Parcae's unified law over test-time loops T of runs trained at mean recurrence μ:
/// L(T | μ, D) = E + X·N(μ)^(−x) + Y·D^(−y) + Z·exp(−z·T/μ);
/// θ = (e, x̃, x, ỹ, y, z̃, ζ), Z = e^z̃ ≥ 0, z within [`RateBounds`] of the sampled T/μ.
/// Design rows are (log N(μ), log D, T/μ).
#[derive(Debug, Clone, Copy, Default)]
pub struct ParcaeUnifiedLaw {
    pub rate: RateBounds,
}

impl ParcaeUnifiedLaw {
    /// T/μ of every point (μ: the points' loops column; T: test-time loops).
    fn ratio(points: &Points) -> Result<Vec<f64>> {
        let t = test_loops(points)?;
        let mu = points.loops.as_ref().ok_or_else(|| {
            anyhow::anyhow!(
                "the unified Parcae law needs each run's training loops μ (--loops-col)"
            )
        })?;
        positive("loops μ", mu)?;
        Ok(t.iter().zip(mu).map(|(t, m)| t / m).collect())
    }
    /// The law with z's range set by the points' T/μ.
    pub fn new(points: &Points) -> Result<Self> {
        Ok(ParcaeUnifiedLaw {
            rate: RateBounds::of(&Self::ratio(points)?, "T/μ")?,
        })
    }
    pub fn design(&self, points: &Points) -> Result<Design> {
        let base = ParcaeLaw.design(points)?;
        let r = Self::ratio(points)?;
        let rows = (0..base.len())
            .flat_map(|i| [base.rows[2 * i], base.rows[2 * i + 1], r[i]])
            .collect();
        Ok(Design {
            width: 3,
            rows,
            log_loss: base.log_loss,
        })
    }
}

impl ParcaeUnifiedLaw {
    /// [`ParcaeLaw::coarse_grid`] crossed with Z̃ ∈ {−2, 0} and z ∈ {0.5, 2}: 288 starts.
    pub fn coarse_grid(&self) -> Vec<Vec<f64>> {
        let zetas = [self.rate.kappa(0.5), self.rate.kappa(2.0)];
        ParcaeLaw::coarse_grid()
            .into_iter()
            .flat_map(|base| {
                let mut out = Vec::new();
                for lz in [-2.0, 0.0] {
                    for zeta in zetas {
                        let mut th = base.clone();
                        th.extend([lz, zeta]);
                        out.push(th);
                    }
                }
                out
            })
            .collect()
    }
}

impl Law for ParcaeUnifiedLaw {
    fn name(&self) -> String {
        "parcae-unified".into()
    }
    fn theta_names(&self) -> Vec<String> {
        ["e", "log X", "x", "log Y", "y", "log Z", "zeta"]
            .map(String::from)
            .to_vec()
    }
    #[inline]
    fn log_predict(&self, th: &[f64], row: &[f64], g: &mut [f64]) -> f64 {
        let (ln_n, ln_d, r) = (row[0], row[1], row[2]);
        let (z, dz) = self.rate.rate(th[6]);
        let (v, w) = lse([
            th[0],
            th[1] - th[2] * ln_n,
            th[3] - th[4] * ln_d,
            th[5] - z * r,
        ]);
        g[0] = w[0];
        g[1] = w[1];
        g[2] = -w[1] * ln_n;
        g[3] = w[2];
        g[4] = -w[2] * ln_d;
        g[5] = w[3];
        g[6] = -w[3] * r * dz;
        v
    }
    fn natural(&self, th: &[f64]) -> Vec<(String, f64)> {
        vec![
            ("E".into(), th[0].exp()),
            ("X".into(), th[1].exp()),
            ("x".into(), th[2]),
            ("Y".into(), th[3].exp()),
            ("y".into(), th[4]),
            ("Z".into(), th[5].exp()),
            ("z".into(), self.rate.rate(th[6]).0),
        ]
    }
    /// The training-law exponents, and the test-time term's gain between the smallest and
    /// largest sampled T/μ.
    fn derived(&self, th: &[f64]) -> Vec<(String, f64)> {
        let z = self.rate.rate(th[6]).0;
        let mut d = parcae_derived(th[2], th[4]);
        d.push((
            "test_time_gain".into(),
            gain(th[5].exp(), z, (self.rate.lo, self.rate.hi)),
        ));
        d
    }
    /// A coarser grid than the training law's (seven parameters): 3⁵ starts for the training
    /// terms times 3 scales and 2 rates for the test-time term, 1,458 starts.
    fn start_grid(&self) -> Vec<Vec<f64>> {
        let zetas = [self.rate.kappa(0.5), self.rate.kappa(2.0)];
        grid(&[
            &[-0.5, 0.0, 0.5],
            &[0.0, 10.0, 20.0],
            &[0.25, 0.5, 1.0],
            &[0.0, 10.0, 20.0],
            &[0.25, 0.5, 1.0],
            &[-3.0, -1.5, 0.0],
            &zetas,
        ])
    }
    fn notes(&self, params: &[ParamEstimate]) -> Vec<String> {
        let mut notes = exponent_notes(params);
        if let (Some(e), Some(z), Some(g)) = (
            find(params, "E"),
            find(params, "z"),
            find(params, "test_time_gain"),
        ) {
            let term = "the test-time term Z·e^(−z·T/μ)";
            notes.extend(saturation_note(
                term,
                g,
                e.value,
                ("z", z.value),
                &self.rate,
                "T/μ",
            ));
        }
        notes
    }
    fn profiled(&self) -> Vec<ProfileSpec> {
        let mut p = parcae_profiled();
        p.push(ProfileSpec::new("Z", 5, Kind::Scale));
        p.push(ProfileSpec::new("z", 6, Kind::Rate(self.rate)));
        p
    }
    fn depends(&self, derived: &str) -> Vec<String> {
        match derived {
            "test_time_gain" => Vec::new(),
            _ => names(&["x", "y"]),
        }
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
