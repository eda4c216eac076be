//! Laws a researcher writes as an expression (`L = E + A*(n_once + r^phi*n_rec)^(-alpha) +
//! B*D^(-beta)`), fitted by the same procedure as the built-in laws: multi-start L-BFGS on the
//! Huber loss of log residuals, bootstrap, profiles and "not identified" verdicts, derived
//! quantities, and `suggest`.
//!
//! A written law is a [`LawSpec`] (the text, each parameter's range and starting range, the
//! derived quantities as expressions over the parameters) resolved against the columns a source
//! offers into a [`WrittenLaw`]. Which symbols are variables and which parameters: a symbol that
//! names a column (or that `vars` binds to one) is a variable, a declared parameter is a
//! parameter, and any other symbol is a parameter taken positive — so a one-line law on the
//! command line needs no declarations. A symbol that differs from a column only in case is
//! refused rather than silently made a parameter.
//!
//! Each parameter lives in the solver's unconstrained space by its range: positive (the default)
//! as its logarithm, an interval [lo, hi] through a logistic map, a free parameter as itself.
//! The gradient is exact: the expression's reverse-mode gradient ([`super::expr`]) times the
//! map's derivative, divided by L̂ for log L̂.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use super::expr::{Bound, Expr};
use super::laws::{Design, Law};
use super::profile_spec::{Kind, ProfileSpec, interval_theta, interval_value};

/// Where a parameter may lie.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub enum Range {
    /// P > 0 (the default): scales, exponents of a falling power, floors.
    #[default]
    Positive,
    /// lo ≤ P ≤ hi.
    Interval(f64, f64),
    /// Any real P.
    Free,
}

impl Range {
    /// From optional bounds as a sweep file or the command line gives them: none or [0, ∞) is
    /// positive, (−∞, ∞) free, two finite ends an interval.
    pub fn from_bounds(name: &str, bounds: Option<(f64, f64)>) -> Result<Range> {
        let Some((lo, hi)) = bounds else {
            return Ok(Range::Positive);
        };
        if lo.is_nan() || hi.is_nan() || lo >= hi {
            bail!("parameter `{name}`: bounds [{lo}, {hi}] must have lo < hi");
        }
        Ok(match (lo.is_finite(), hi.is_finite()) {
            (true, true) => Range::Interval(lo, hi),
            (false, false) => Range::Free,
            (true, false) if lo == 0.0 => Range::Positive,
            _ => bail!(
                "parameter `{name}`: bounds [{lo}, {hi}] have one infinite end; give both ends, \
                 [0, inf] for a positive parameter or [-inf, inf] for a free one"
            ),
        })
    }
    fn value(self, th: f64) -> (f64, f64) {
        match self {
            Range::Positive => {
                let p = th.clamp(-700.0, 700.0).exp();
                (p, p)
            }
            Range::Interval(lo, hi) => {
                let s = 1.0 / (1.0 + (-th).exp());
                (interval_value(lo, hi, th), (hi - lo) * s * (1.0 - s))
            }
            Range::Free => (th, 1.0),
        }
    }
    fn theta(self, p: f64) -> f64 {
        match self {
            Range::Positive => p.max(1e-300).ln(),
            Range::Interval(lo, hi) => interval_theta(lo, hi, p),
            Range::Free => p,
        }
    }
    fn kind(self) -> Kind {
        match self {
            Range::Positive => Kind::Scale,
            Range::Interval(lo, hi) => Kind::Interval(lo, hi),
            Range::Free => Kind::Free,
        }
    }
    /// Default starting values when none are given.
    fn default_starts(self) -> Vec<f64> {
        match self {
            Range::Positive => vec![0.01, 0.1, 1.0, 10.0, 100.0, 1000.0],
            // A positive interval spanning decades (a scale in [1e-3, 1e9]) is started on a
            // log-spaced grid, as its magnitude is what is unknown.
            Range::Interval(lo, hi) if lo > 0.0 && hi / lo >= 1e3 => (1..=4)
                .map(|k| lo * (hi / lo).powf(k as f64 / 5.0))
                .collect(),
            Range::Interval(lo, hi) => (1..=4).map(|k| lo + (hi - lo) * k as f64 / 5.0).collect(),
            Range::Free => vec![-1.0, 0.0, 1.0],
        }
    }
}

/// On what scale the law is fitted and its predictions compared with the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Scale {
    /// log L̂ against log L (the default): losses are positive and their errors relative.
    #[default]
    Log,
    /// L̂ itself against L: for targets that may be zero or negative (a loss normalised by a
    /// unigram baseline, a log-ratio) and for published laws fitted by least squares on the
    /// raw target. `log_predict` then returns L̂, and the design holds raw targets.
    Raw,
}

/// One parameter as declared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamSpec {
    pub name: String,
    pub range: Range,
    /// Where its starts are drawn from (log-spaced for a positive parameter), if not the default.
    pub start: Option<(f64, f64)>,
}

/// A law as written: the expression (with or without `target =` in front), declared parameters,
/// variables bound to columns by another name, and derived quantities over the parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LawSpec {
    pub name: String,
    pub expr: String,
    pub params: Vec<ParamSpec>,
    /// Symbol → column, for variables whose column has another name.
    pub vars: Vec<(String, String)>,
    pub derived: Vec<(String, String)>,
    /// Log (the default) or raw scale.
    #[serde(default)]
    pub scale: Scale,
}

/// A written law resolved against a source's columns.
#[derive(Debug, Clone)]
pub struct WrittenLaw {
    name: String,
    text: String,
    /// The column the law predicts (the left-hand side, or `loss`).
    pub target: String,
    /// Variables in design-row order: (symbol, column).
    pub vars: Vec<(String, String)>,
    params: Vec<ParamSpec>,
    /// The expression reading slots [params..., vars...].
    expr: Bound,
    derived: Vec<(String, Bound, Vec<String>)>,
    scale: Scale,
}

/// Splits `target = expression`; a bare expression predicts `loss`.
fn split_target(text: &str) -> (String, &str) {
    if let Some((lhs, rhs)) = text.split_once('=') {
        let lhs = lhs.trim();
        if !lhs.is_empty() && lhs.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return (lhs.to_string(), rhs);
        }
    }
    ("loss".to_string(), text)
}

impl WrittenLaw {
    /// Resolves `spec` against the columns a source offers (`columns`, every name a variable
    /// may be bound to). `target_alias` is the column a target named `L`/`loss` reads.
    pub fn new(spec: &LawSpec, columns: &[String]) -> Result<WrittenLaw> {
        let (target, body) = split_target(&spec.expr);
        let expr = Expr::parse(body)
            .map_err(|e| anyhow::anyhow!("law `{}`: {}", spec.name, e.pointing(body.trim_end())))?;
        let list = columns.join(", ");
        for (sym, col) in &spec.vars {
            if !columns.contains(col) {
                bail!(
                    "law `{}`: variable `{sym}` is bound to `{col}`, which is not a column here; the columns are: {list}",
                    spec.name
                );
            }
        }
        for p in &spec.params {
            if !expr.symbols().contains(&p.name) {
                bail!(
                    "law `{}`: parameter `{}` is declared but the expression `{}` does not use it",
                    spec.name,
                    p.name,
                    expr.text()
                );
            }
        }
        let mut params: Vec<ParamSpec> = Vec::new();
        let mut vars: Vec<(String, String)> = Vec::new();
        for sym in expr.symbols() {
            if let Some(p) = spec.params.iter().find(|p| p.name == *sym) {
                params.push(p.clone());
            } else if let Some((_, col)) = spec.vars.iter().find(|(s, _)| s == sym) {
                vars.push((sym.clone(), col.clone()));
            } else if columns.contains(sym) {
                vars.push((sym.clone(), sym.clone()));
            } else if let Some(col) = columns.iter().find(|c| c.eq_ignore_ascii_case(sym)) {
                bail!(
                    "law `{}`: `{sym}` is not a column (did you mean the column `{col}`?); if it is a parameter, declare it (--param {sym}=0:inf, or params.{sym} in the sweep file)",
                    spec.name
                );
            } else {
                params.push(ParamSpec {
                    name: sym.clone(),
                    range: Range::Positive,
                    start: None,
                });
            }
        }
        if vars.is_empty() {
            bail!(
                "law `{}`: the expression `{}` reads no column (its symbols {} would all be parameters); the columns are: {list}",
                spec.name,
                expr.text(),
                expr.symbols().join(", ")
            );
        }
        if params.is_empty() {
            bail!(
                "law `{}`: the expression `{}` has no parameter to fit",
                spec.name,
                expr.text()
            );
        }
        for p in &params {
            if let (Range::Interval(lo, hi), Some((a, b))) = (p.range, p.start)
                && (b < lo || a > hi)
            {
                bail!(
                    "law `{}`: parameter `{}` starts in [{a}, {b}], outside its bounds [{lo}, {hi}]: no start is allowed",
                    spec.name,
                    p.name
                );
            }
            if let (Range::Positive, Some((a, _))) = (p.range, p.start)
                && a <= 0.0
            {
                bail!(
                    "law `{}`: parameter `{}` is positive but starts from {a}; give a positive start range or bounds that allow it",
                    spec.name,
                    p.name
                );
            }
        }
        let slot = |sym: &String| {
            params
                .iter()
                .position(|p| p.name == *sym)
                .unwrap_or_else(|| params.len() + vars.iter().position(|(s, _)| s == sym).unwrap())
        };
        let slots: Vec<usize> = expr.symbols().iter().map(slot).collect();
        let bound = expr.bind(&slots);
        let mut derived = Vec::new();
        for (dname, dtext) in &spec.derived {
            let d = Expr::parse(dtext).map_err(|e| {
                anyhow::anyhow!(
                    "law `{}`, derived `{dname}`: {}",
                    spec.name,
                    e.pointing(dtext)
                )
            })?;
            let mut to = Vec::new();
            for sym in d.symbols() {
                match params.iter().position(|p| p.name == *sym) {
                    Some(k) => to.push(k),
                    None => bail!(
                        "law `{}`, derived `{dname}`: `{sym}` is not a parameter of the law (its parameters: {})",
                        spec.name,
                        params
                            .iter()
                            .map(|p| p.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }
            }
            derived.push((dname.clone(), d.bind(&to), d.symbols().to_vec()));
        }
        Ok(WrittenLaw {
            name: spec.name.clone(),
            text: format!("{target} = {}", expr.text()),
            target,
            vars,
            params,
            expr: bound,
            derived,
            scale: spec.scale,
        })
    }

    /// Log or raw scale (see [`Scale`]).
    pub fn scale(&self) -> Scale {
        self.scale
    }

    /// The design of points whose values are already known to be usable (the offline
    /// acquisition loop builds one per refit): rows of variable values, targets on the law's
    /// scale. No checks: the caller validated the source once.
    pub fn design_of(&self, rows: Vec<f64>, y: &[f64]) -> Design {
        Design {
            width: self.vars.len(),
            rows,
            log_loss: y.iter().map(|&v| self.to_scale(v)).collect(),
        }
    }

    /// An observed target on the fit's scale (its log, or itself).
    pub fn to_scale(&self, y: f64) -> f64 {
        match self.scale {
            Scale::Log => y.ln(),
            Scale::Raw => y,
        }
    }

    /// The law as written, `target = expression`.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Which symbols are parameters and which variables, in words (printed with the fit).
    pub fn roles(&self) -> String {
        let vars: Vec<String> = self
            .vars
            .iter()
            .map(|(s, c)| {
                if s == c {
                    s.clone()
                } else {
                    format!("{s} = {c}")
                }
            })
            .collect();
        let params: Vec<String> = self
            .params
            .iter()
            .map(|p| match p.range {
                Range::Positive => format!("{} > 0", p.name),
                Range::Interval(lo, hi) => format!("{} in [{lo}, {hi}]", p.name),
                Range::Free => format!("{} free", p.name),
            })
            .collect();
        format!(
            "variables: {}; parameters: {}",
            vars.join(", "),
            params.join(", ")
        )
    }

    /// The design: one row of variable values per point (columns named as [`Self::vars`]), and
    /// the observed target. Every target value must be positive (the fit is in log loss).
    pub fn design(&self, column: &dyn Fn(&str) -> Option<Vec<f64>>) -> Result<Design> {
        let y = column(&self.target).ok_or_else(|| {
            anyhow::anyhow!(
                "law `{}`: the target column `{}` is missing",
                self.name,
                self.target
            )
        })?;
        let cols: Vec<Vec<f64>> = self
            .vars
            .iter()
            .map(|(s, c)| {
                column(c).ok_or_else(|| {
                    anyhow::anyhow!("law `{}`: column `{c}` of `{s}` is missing", self.name)
                })
            })
            .collect::<Result<_>>()?;
        let usable = |v: f64| v.is_finite() && (self.scale == Scale::Raw || v > 0.0);
        if let Some(bad) = y.iter().find(|v| !usable(**v)) {
            bail!(
                "law `{}`: the target `{}` must be positive and finite (the fit is in log {}; a target that may be zero or negative is fitted on the raw scale: `fit --law-expr … --raw-scale`, `suggest --pool … --raw-scale`); found {bad}",
                self.name,
                self.target,
                self.target
            );
        }
        for ((s, c), v) in self.vars.iter().zip(&cols) {
            if let Some(bad) = v.iter().find(|v| !v.is_finite()) {
                bail!(
                    "law `{}`: variable `{s}` (column `{c}`) has a non-finite value {bad}",
                    self.name
                );
            }
        }
        let rows = (0..y.len())
            .flat_map(|i| cols.iter().map(move |c| c[i]))
            .collect();
        let design = Design {
            width: self.vars.len(),
            rows,
            log_loss: y.iter().map(|&v| self.to_scale(v)).collect(),
        };
        let distinct = design.distinct_rows();
        if distinct <= self.params.len() {
            bail!(
                "law `{}` has {} parameters but the data hold {distinct} distinct point(s) of ({}): a fit needs more points than parameters",
                self.name,
                self.params.len(),
                self.vars
                    .iter()
                    .map(|(s, _)| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Ok(design)
    }

    fn natural_values(&self, th: &[f64]) -> Vec<f64> {
        self.params
            .iter()
            .zip(th)
            .map(|(p, &t)| p.range.value(t).0)
            .collect()
    }

    /// The natural values of a θ as the solver's starting point (inverse of the range maps).
    pub fn theta_of(&self, natural: &[f64]) -> Vec<f64> {
        self.params
            .iter()
            .zip(natural)
            .map(|(p, &v)| p.range.theta(v))
            .collect()
    }

    /// L̂ (not its log) at a row, for a θ.
    pub fn predict(&self, th: &[f64], row: &[f64]) -> f64 {
        let mut x = self.natural_values(th);
        x.extend_from_slice(row);
        self.expr.value(&x)
    }
}

/// log L̂ where the expression has no positive finite value.
const OUT_OF_DOMAIN: f64 = 50.0;

/// L̂ on the raw scale where the expression has no finite value: far from any target, finite.
const OUT_OF_DOMAIN_RAW: f64 = 1e6;

/// At most this many starts: a law of six parameters on six values each would have 46,656.
const MAX_STARTS: usize = 512;

thread_local! {
    static SCRATCH: std::cell::RefCell<(Vec<f64>, Vec<f64>, Vec<f64>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
}

impl Law for WrittenLaw {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn theta_names(&self) -> Vec<String> {
        self.params
            .iter()
            .map(|p| match p.range {
                Range::Positive => format!("log {}", p.name),
                Range::Interval(..) => format!("logit {}", p.name),
                Range::Free => p.name.clone(),
            })
            .collect()
    }
    fn log_predict(&self, th: &[f64], row: &[f64], g: &mut [f64]) -> f64 {
        SCRATCH.with(|s| {
            let (x, grad, tape) = &mut *s.borrow_mut();
            let np = self.params.len();
            x.clear();
            let mut dp = [0.0f64; 64];
            for (k, (p, &t)) in self.params.iter().zip(th).enumerate() {
                let (v, d) = p.range.value(t);
                x.push(v);
                if k < dp.len() {
                    dp[k] = d;
                }
            }
            x.extend_from_slice(row);
            grad.clear();
            grad.resize(x.len(), 0.0);
            let l = self.expr.eval_grad(x, grad, tape);
            if self.scale == Scale::Raw {
                if !l.is_finite() {
                    g[..np].fill(0.0);
                    return OUT_OF_DOMAIN_RAW;
                }
                for k in 0..np {
                    let d = if k < dp.len() {
                        dp[k]
                    } else {
                        self.params[k].range.value(th[k]).1
                    };
                    // A slope that is not finite (0^c differentiated in c) gives no direction.
                    let v = grad[k] * d;
                    g[k] = if v.is_finite() { v } else { 0.0 };
                }
                return l;
            }
            if !(l > 0.0 && l.is_finite()) {
                // No log of a non-positive or overflowed prediction: a large finite log loss
                // (a NaN stalls the line search) with no slope, so the search steps back.
                g[..np].fill(0.0);
                return OUT_OF_DOMAIN;
            }
            for k in 0..np {
                let d = if k < dp.len() {
                    dp[k]
                } else {
                    self.params[k].range.value(th[k]).1
                };
                g[k] = grad[k] * d / l;
            }
            l.ln()
        })
    }
    fn loss_of(&self, v: f64) -> f64 {
        match self.scale {
            Scale::Log => v.exp(),
            Scale::Raw => v,
        }
    }
    fn natural(&self, th: &[f64]) -> Vec<(String, f64)> {
        self.params
            .iter()
            .zip(self.natural_values(th))
            .map(|(p, v)| (p.name.clone(), v))
            .collect()
    }
    fn derived(&self, th: &[f64]) -> Vec<(String, f64)> {
        let x = self.natural_values(th);
        self.derived
            .iter()
            .map(|(n, e, _)| (n.clone(), e.value(&x)))
            .collect()
    }
    /// Each parameter's starting values (its start range, log-spaced for a positive one, or
    /// its range's default), crossed; above [`MAX_STARTS`] an evenly strided, reproducible
    /// subset of the product that still visits every value of every parameter.
    fn start_grid(&self) -> Vec<Vec<f64>> {
        let axes: Vec<Vec<f64>> = self
            .params
            .iter()
            .map(|p| {
                let values = match (p.start, p.range) {
                    (Some((a, b)), Range::Positive) => {
                        (0..4).map(|k| a * (b / a).powf(k as f64 / 3.0)).collect()
                    }
                    (Some((a, b)), _) => (0..4).map(|k| a + (b - a) * k as f64 / 3.0).collect(),
                    (None, r) => r.default_starts(),
                };
                values.into_iter().map(|v| p.range.theta(v)).collect()
            })
            .collect();
        let total: usize = axes.iter().map(Vec::len).product();
        let pick = |mut index: usize| -> Vec<f64> {
            let mut th = vec![0.0; axes.len()];
            for (k, axis) in axes.iter().enumerate().rev() {
                th[k] = axis[index % axis.len()];
                index /= axis.len();
            }
            th
        };
        if total <= MAX_STARTS {
            return (0..total).map(pick).collect();
        }
        // A stride coprime to the product walks it without repeating, and successive picks
        // differ in every coordinate (the golden-ratio stride of a low-discrepancy sequence).
        let mut stride = ((total as f64) * 0.618_033_988_75) as usize | 1;
        while gcd(stride, total) != 1 {
            stride += 2;
        }
        (0..MAX_STARTS).map(|i| pick(i * stride % total)).collect()
    }
    fn profiled(&self) -> Vec<ProfileSpec> {
        self.params
            .iter()
            .enumerate()
            .map(|(k, p)| ProfileSpec::new(&p.name, k, p.range.kind()))
            .collect()
    }
    fn depends(&self, derived: &str) -> Vec<String> {
        self.derived
            .iter()
            .find(|(n, _, _)| n == derived)
            .map(|(_, _, on)| on.clone())
            .unwrap_or_default()
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The looped law of Schwethelm et al. (arXiv 2604.21106): parameters run once (`n_once`:
/// embeddings, prelude, coda) and parameters of the looped block (`n_rec`) run `r` times count
/// as N_once + r^φ·N_rec; φ = 1 makes a loop worth a unique layer, φ = 0 worthless. φ in [0, 1].
pub fn schwethelm() -> LawSpec {
    LawSpec {
        name: "schwethelm".into(),
        expr: "loss = E + A*(n_once + r^phi*n_rec)^(-alpha) + B*D^(-beta)".into(),
        params: vec![
            ParamSpec {
                name: "phi".into(),
                range: Range::Interval(0.0, 1.0),
                start: None,
            },
            ParamSpec {
                name: "alpha".into(),
                range: Range::Positive,
                start: Some((0.1, 1.0)),
            },
            ParamSpec {
                name: "beta".into(),
                range: Range::Positive,
                start: Some((0.1, 1.0)),
            },
            ParamSpec {
                name: "E".into(),
                range: Range::Positive,
                start: Some((0.5, 3.0)),
            },
            ParamSpec {
                name: "A".into(),
                range: Range::Positive,
                start: Some((1.0, 1e5)),
            },
            ParamSpec {
                name: "B".into(),
                range: Range::Positive,
                start: Some((1.0, 1e5)),
            },
        ],
        vars: Vec::new(),
        derived: vec![
            ("n_opt_exponent".into(), "beta/(alpha+beta)".into()),
            ("d_opt_exponent".into(), "alpha/(alpha+beta)".into()),
        ],
        scale: Scale::Log,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn symbols_split_into_variables_and_parameters() {
        let spec = LawSpec {
            name: "t".into(),
            expr: "L = E + A*C^(-alpha)".into(),
            ..Default::default()
        };
        let law = WrittenLaw::new(&spec, &cols(&["C", "L", "N"])).unwrap();
        assert_eq!(law.target, "L");
        assert_eq!(law.vars, vec![("C".to_string(), "C".to_string())]);
        assert_eq!(law.theta_names(), ["log E", "log A", "log alpha"]);
        // The gradient of log L̂ against central differences, through the log maps.
        let th = [0.5f64.ln(), 30f64.ln(), 0.2f64.ln()];
        let row = [1e6];
        let mut g = [0.0; 3];
        let v = law.log_predict(&th, &row, &mut g);
        assert!((v - (0.5 + 30.0 * 1e6f64.powf(-0.2)).ln()).abs() < 1e-12);
        for k in 0..3 {
            let (mut a, mut b) = (th, th);
            a[k] += 1e-6;
            b[k] -= 1e-6;
            let fd = (law.log_predict(&a, &row, &mut [0.0; 3])
                - law.log_predict(&b, &row, &mut [0.0; 3]))
                / 2e-6;
            assert!((g[k] - fd).abs() < 1e-7, "{k}: {} vs {fd}", g[k]);
        }
    }

    #[test]
    fn bad_laws_are_refused_before_fitting() {
        let c = cols(&["C", "loss"]);
        let law = |expr: &str| LawSpec {
            name: "t".into(),
            expr: expr.into(),
            ..Default::default()
        };
        let err = WrittenLaw::new(&law("E + A*c^(-alpha)"), &c).unwrap_err();
        assert!(
            err.to_string().contains("did you mean the column `C`"),
            "{err}"
        );
        let err = WrittenLaw::new(&law("E + A*Q^(-alpha)"), &c).unwrap_err();
        assert!(
            err.to_string().contains("reads no column") && err.to_string().contains("C, loss"),
            "{err}"
        );
        let err = WrittenLaw::new(&law("E + A*C^(-alpha"), &c).unwrap_err();
        assert!(err.to_string().contains("character 16"), "{err}");
        let mut s = law("E + A*C^(-alpha)");
        s.params.push(ParamSpec {
            name: "alpha".into(),
            range: Range::Interval(0.0, 1.0),
            start: Some((2.0, 3.0)),
        });
        let err = WrittenLaw::new(&s, &c).unwrap_err();
        assert!(err.to_string().contains("outside its bounds"), "{err}");
        let mut s = law("E + A*C^(-alpha)");
        s.vars.push(("C".into(), "flops".into()));
        let err = WrittenLaw::new(&s, &c).unwrap_err();
        assert!(err.to_string().contains("not a column here"), "{err}");
        // Three distinct points for three parameters.
        let ok = WrittenLaw::new(&law("E + A*C^(-alpha)"), &c).unwrap();
        let data = |name: &str| match name {
            "C" => Some(vec![1.0, 2.0, 3.0, 3.0]),
            "loss" => Some(vec![3.0, 2.5, 2.2, 2.21]),
            _ => None,
        };
        let err = ok.design(&data).unwrap_err();
        assert!(err.to_string().contains("3 distinct point"), "{err}");
        assert!(Range::from_bounds("x", Some((0.0, f64::INFINITY))).unwrap() == Range::Positive);
        assert!(Range::from_bounds("x", Some((1.0, f64::INFINITY))).is_err());
        assert!(Range::from_bounds("x", Some((2.0, 1.0))).is_err());
    }

    #[test]
    fn a_large_product_of_starts_is_subsampled_evenly() {
        let spec = schwethelm();
        let law = WrittenLaw::new(&spec, &cols(&["n_once", "n_rec", "r", "D", "loss"])).unwrap();
        let g = law.start_grid();
        assert_eq!(g.len(), MAX_STARTS);
        // Every value of every axis is visited.
        for k in 0..law.n_params() {
            let mut v: Vec<f64> = g.iter().map(|t| t[k]).collect();
            v.sort_by(f64::total_cmp);
            v.dedup();
            assert!(v.len() >= 4, "axis {k} visits {} values", v.len());
        }
    }
}
