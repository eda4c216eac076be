//! `loopscale fit`: fit a scaling law to a sweep's database or a CSV file, print it, store it.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use serde::Serialize;

use super::written;
use crate::analysis::CsvColumns;
use crate::analysis::envelope::{Envelope, Position, TunedConfig};
use crate::analysis::law_fit::{
    self, BuiltinLaw, Database, FitRequest, Fitted, LawChoice, Source, Surface, Tune,
};
use crate::analysis::source::{self, ParamCount};
use crate::analysis::tasks::{Family, accuracy_points, depth_points};
use crate::fit::depth::fit_depth;
use crate::fit::hyper::fit_optimum_law;
use crate::fit::isoflop::BudgetOptimum;
use crate::fit::isoflop_two_ways::Agreement;
use crate::fit::written::Scale;
use crate::fit::{
    BootstrapOptions, DEFAULT_HUBER_DELTA, FitOptions, HeldOutSpec, IsoflopAxis, ParamEstimate,
};
use crate::store::Store;

/// The laws `loopscale fit` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LawName {
    /// L(C) = E + A·C^(-α): loss against training FLOPs (all points, or the frontier with --frontier).
    Compute,
    /// L(N, D) = E + A/N^α + B/D^β (Hoffmann et al. 2022, approach 3).
    Chinchilla,
    /// Per FLOP budget, the optimum x* located near the lowest sampled loss (flagged when it is
    /// at or beyond the edge of the sampled x); then x*(C) = G·C^a over the located optima.
    Isoflop,
    /// L(T) = L∞ + A·exp(-k·T) over test-time loop counts, per run (or pooled with --pooled);
    /// k > 0 within what the sampled T can show, A ≥ 0; a curve without a saturating gain says so.
    TestTime,
    /// Parcae: L(μ, D) = E + X·N(μ)^(-x) + Y·D^(-y), N(μ) the unrolled parameter count (prelude
    /// and coda once, the core μ times), over looped runs; held out: the largest FLOP budget.
    Parcae,
    /// Parcae's unified law L(T | μ, D) = E + X·N(μ)^(-x) + Y·D^(-y) + Z·exp(-z·T/μ) over the
    /// test-time evaluations of every looped run together.
    ParcaeUnified,
    /// Saunshi et al.: accuracy = α·ln(effective depth) + β per family (looped k⊗L, GPT), over
    /// finished task runs (p_hop, addition) at their training depth; least squares.
    Depth,
    /// The tuned learning rate against compute and parameters, η*(C) = a·C^b and η*(N) = a·N^b,
    /// over each configuration's refined optimum (a sweep with train.lr on a grid; tunes
    /// train.lr, jointly with any --tune keys); configurations whose best lr is at the edge of
    /// their grid are left out and named.
    Lr,
    /// The same for the batch size (train.batch_size on a grid).
    Batch,
}

/// Which parameter count stands for N (database sources).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum NCount {
    /// Parameters without the token embedding (Kaplan et al.'s convention).
    NonEmbedding,
    /// All unique parameters (Hoffmann et al.'s convention).
    Total,
}

impl From<NCount> for ParamCount {
    fn from(n: NCount) -> ParamCount {
        match n {
            NCount::NonEmbedding => ParamCount::NonEmbedding,
            NCount::Total => ParamCount::Total,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum AxisName {
    Loops,
    Tokens,
    Params,
}

impl From<AxisName> for IsoflopAxis {
    fn from(axis: AxisName) -> IsoflopAxis {
        match axis {
            AxisName::Loops => IsoflopAxis::Loops,
            AxisName::Tokens => IsoflopAxis::Tokens,
            AxisName::Params => IsoflopAxis::Params,
        }
    }
}

#[derive(Args, Clone, Debug, Serialize)]
pub struct FitArgs {
    /// A sweep file (fitted from its database), a sweep database (results/NAME.sqlite) or a
    /// CSV file with a header row.
    pub source: PathBuf,
    /// Which built-in law to fit (or write one with --law-expr).
    #[arg(
        long,
        value_enum,
        required_unless_present = "law_expr",
        conflicts_with = "law_expr"
    )]
    pub law: Option<LawName>,
    /// A law written as an expression over the source's columns, e.g.
    /// 'loss = E + A*C^(-alpha)' (symbols naming a column are variables, the rest parameters,
    /// positive unless --param says otherwise), or the name of a law in the sweep file's
    /// `[analysis.laws.NAME]`, or a built-in written law (schwethelm: Schwethelm et al.'s
    /// looped law over n_once, n_rec, r and D). A database offers loss, N, D, C, r, n_once,
    /// n_rec and every numeric column of final_runs; a CSV file its numeric columns.
    #[arg(long, value_name = "EXPR|NAME")]
    pub law_expr: Option<String>,
    /// --law-expr: bounds of a parameter, NAME=LO:HI (repeatable; e.g. phi=0:1, c=-inf:inf for
    /// a parameter of either sign). Without bounds a parameter is positive.
    #[arg(long = "param", value_name = "NAME=LO:HI", requires = "law_expr")]
    pub param: Vec<String>,
    /// --law-expr: where a parameter's starts are drawn from, NAME=LO:HI (log-spaced for a
    /// positive parameter; default: 0.01 to 1000, or its bounds).
    #[arg(long = "param-start", value_name = "NAME=LO:HI", requires = "law_expr")]
    pub param_start: Vec<String>,
    /// --law-expr: a quantity derived from the parameters, NAME=EXPR (repeatable; e.g.
    /// a=beta/(alpha+beta)), reported with its interval.
    #[arg(long, value_name = "NAME=EXPR", requires = "law_expr")]
    pub derived: Vec<String>,
    /// --law-expr: read a symbol from a column of another name, SYMBOL=COLUMN (repeatable; a
    /// dotted configuration key such as model.d_model for a database).
    #[arg(long, value_name = "SYMBOL=COLUMN", requires = "law_expr")]
    pub var: Vec<String>,
    /// --law-expr: fit the target itself by least squares rather than its log, for targets
    /// that may be zero or negative (an accuracy difference, a log-loss) or laws published as
    /// least-squares fits; the Huber loss then applies to raw residuals.
    #[arg(long, requires = "law_expr")]
    pub raw_scale: bool,
    /// Database source: only this sweep's runs (default: every finished run in the file).
    #[arg(long)]
    pub sweep: Option<String>,
    /// Database source, compute, chinchilla, lr and batch laws: only this `[[variants]]` name's
    /// runs (e.g. a sweep's WSD branches, or its independently trained runs; its μP runs).
    #[arg(long)]
    pub variant: Option<String>,
    /// Database source: a key tuned per configuration (repeatable, e.g. --tune train.lr): runs
    /// that differ only in the tuned keys form one configuration, and its best finished run
    /// (lowest final validation loss) stands for it in the law. Default: the sweep file's
    /// `[analysis] tune`, as stored in the database.
    #[arg(long, value_name = "KEY")]
    pub tune: Vec<String>,
    /// Database source: which parameter count is N.
    #[arg(long, value_enum, default_value = "non-embedding")]
    pub n: NCount,
    /// compute law: fit only the compute frontier (the lowest loss at or below each C).
    #[arg(long)]
    pub frontier: bool,
    /// test-time law: one fit over all curves with a shared rate k (else one fit per curve).
    #[arg(long)]
    pub pooled: bool,
    /// isoflop law: the variable whose optimum per budget is sought.
    #[arg(long, value_enum, default_value = "loops")]
    pub axis: AxisName,
    /// isoflop law: points whose FLOPs lie within this relative distance share a budget
    /// (ignored when the CSV has a group column via --group-col).
    #[arg(long, default_value_t = 0.1)]
    pub budget_tolerance: f64,
    /// Leave out the K highest-loss points (Epoch AI dropped 5 of Chinchilla's 245).
    #[arg(long, default_value_t = 0)]
    pub drop_top_loss: usize,
    /// δ of the Huber loss on log-loss residuals.
    #[arg(long, default_value_t = DEFAULT_HUBER_DELTA)]
    pub huber_delta: f64,
    /// Bootstrap resamples for the intervals (0: no intervals).
    #[arg(long, default_value_t = 1000)]
    pub resamples: usize,
    /// Coverage of the percentile intervals.
    #[arg(long, default_value_t = 0.95)]
    pub level: f64,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Held-out check: fit without the K largest-compute points (largest T for test-time) and
    /// report the error predicting them. The Parcae laws hold out the largest FLOP budget unless
    /// this is given.
    #[arg(long)]
    pub heldout: Option<usize>,
    /// CSV column of N (parameters; for the Parcae laws N(μ), the unrolled parameter count).
    #[arg(long)]
    pub n_col: Option<String>,
    /// CSV column of D (training tokens); if absent, D = C / (6N).
    #[arg(long)]
    pub d_col: Option<String>,
    /// CSV column of C (training FLOPs).
    #[arg(long)]
    pub c_col: Option<String>,
    /// CSV column of the loss.
    #[arg(long, default_value = "loss")]
    pub loss_col: String,
    /// CSV column of the (mean training) loop count μ (needed by --law parcae-unified).
    #[arg(long)]
    pub loops_col: Option<String>,
    /// CSV column of the test-time loop count T.
    #[arg(long)]
    pub test_loops_col: Option<String>,
    /// CSV column naming each point's FLOP budget (isoflop).
    #[arg(long)]
    pub group_col: Option<String>,
    /// CSV column naming each point's curve (test-time).
    #[arg(long)]
    pub curve_col: Option<String>,
    /// Print the result as JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Record the fit in this database's `fits` table (default: the source, when it is a
    /// database; a CSV fit is not recorded unless this is given).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Do not record the fit anywhere.
    #[arg(long)]
    pub no_save: bool,
    /// The sweep file SOURCE named, once resolved to its database (its written laws are read
    /// from it).
    #[arg(skip)]
    pub sweep_file: Option<PathBuf>,
}

impl FitArgs {
    fn csv_columns(&self) -> CsvColumns {
        // With no column flags at all, loopscale's own export names are assumed.
        let d = CsvColumns::default();
        let any = self.n_col.is_some()
            || self.d_col.is_some()
            || self.c_col.is_some()
            || self.loops_col.is_some();
        let pick = |given: &Option<String>, default: Option<String>| {
            given.clone().or(if any { None } else { default })
        };
        CsvColumns {
            n: pick(&self.n_col, d.n),
            d: pick(&self.d_col, d.d),
            c: pick(&self.c_col, d.c),
            loss: self.loss_col.clone(),
            loops: pick(&self.loops_col, d.loops),
            test_loops: pick(&self.test_loops_col, d.test_loops),
            group: self.group_col.clone().or(if any { None } else { d.group }),
            curve: self.curve_col.clone().or(if any { None } else { d.curve }),
        }
    }

    /// The built-in law; only called on the built-in path (`--law-expr` takes its own).
    fn law(&self) -> LawName {
        self.law.expect("--law is given unless --law-expr is")
    }

    fn bootstrap(&self) -> Option<BootstrapOptions> {
        (self.resamples > 0).then(|| BootstrapOptions {
            resamples: self.resamples,
            level: self.level,
            seed: self.seed,
            ..BootstrapOptions::default()
        })
    }

    fn fit_options(&self) -> FitOptions {
        let parcae = matches!(self.law, Some(LawName::Parcae | LawName::ParcaeUnified));
        let heldout = match self.heldout {
            Some(k) => Some(HeldOutSpec::Count(k)),
            // The rollout Parcae reports: fit the smaller budgets, predict the largest.
            None if parcae => Some(HeldOutSpec::LargestBudget(self.budget_tolerance)),
            None => None,
        };
        FitOptions {
            huber_delta: self.huber_delta,
            bootstrap: self.bootstrap(),
            heldout,
            ..FitOptions::default()
        }
    }

    /// What the fit orchestrator is asked: `law`, and how these flags choose and fit its points.
    fn request(&self, law: LawChoice) -> FitRequest {
        FitRequest {
            law,
            n: self.n.into(),
            frontier: self.frontier,
            pooled: self.pooled,
            axis: self.axis.into(),
            budget_tolerance: self.budget_tolerance,
            drop_top_loss: self.drop_top_loss,
            replicate_groups: true,
            options: self.fit_options(),
        }
    }

    #[allow(clippy::neg_cmp_op_on_partial_ord)] // `!(x > 0)` also refuses NaN
    fn check(&self) -> Result<()> {
        if !self.source.exists() {
            bail!(
                "{}: no such file (give a sweep database or a CSV file)",
                self.source.display()
            );
        }
        if !(self.huber_delta > 0.0) {
            bail!("--huber-delta must be positive, got {}", self.huber_delta);
        }
        if !(self.level > 0.0 && self.level < 1.0) {
            bail!("--level must lie in (0, 1), got {}", self.level);
        }
        if !(self.budget_tolerance > 0.0) {
            bail!(
                "--budget-tolerance must be positive, got {}",
                self.budget_tolerance
            );
        }
        Ok(())
    }
}

impl LawName {
    /// The law as the fit orchestrator knows it; `None` for the laws that read their own data
    /// (depth: task accuracies; lr, batch: a tuned sweep's envelope).
    fn builtin(self) -> Option<BuiltinLaw> {
        Some(match self {
            LawName::Compute => BuiltinLaw::Compute,
            LawName::Chinchilla => BuiltinLaw::Chinchilla,
            LawName::Isoflop => BuiltinLaw::Isoflop,
            LawName::TestTime => BuiltinLaw::TestTime,
            LawName::Parcae => BuiltinLaw::Parcae,
            LawName::ParcaeUnified => BuiltinLaw::ParcaeUnified,
            LawName::Depth | LawName::Lr | LawName::Batch => return None,
        })
    }
}

fn law_name(law: LawName) -> &'static str {
    match (law.builtin(), law) {
        (Some(b), _) => b.name(),
        (None, LawName::Depth) => "depth",
        (None, LawName::Lr) => "lr",
        (None, _) => "batch",
    }
}

/// The key a hyperparameter law reads.
fn hyper_key(law: LawName) -> &'static str {
    match law {
        LawName::Batch => "train.batch_size",
        _ => "train.lr",
    }
}

/// The keys tuned for a database source: `--tune`, else the stored sweep files' `[analysis]
/// tune`; a hyperparameter law always tunes its own key.
fn tuned_keys(args: &FitArgs, store: &Store) -> Result<Vec<String>> {
    let mut keys = if args.tune.is_empty() {
        source::stored_tune(store, args.sweep.as_deref())?
    } else {
        args.tune.clone()
    };
    if let Some(law @ (LawName::Lr | LawName::Batch)) = args.law
        && !keys.iter().any(|k| k == hyper_key(law))
    {
        keys.push(hyper_key(law).to_string());
    }
    Ok(keys)
}

/// A sweep file as the source: its database, restricted to its sweep (unless `--sweep` says
/// otherwise). `None` when the source is a database or a CSV file.
fn from_sweep_file(args: &FitArgs) -> Result<Option<FitArgs>> {
    let is_toml = args.source.extension().is_some_and(|e| e == "toml");
    if !is_toml || source::is_database(&args.source) {
        return Ok(None);
    }
    let sweep = crate::sweep::Sweep::load(&args.source)?;
    if !sweep.db.exists() {
        bail!(
            "{}: its database {} does not exist yet; train the sweep first (`loopscale run {}`), or fit a CSV file",
            args.source.display(),
            sweep.db.display(),
            args.source.display()
        );
    }
    let mut resolved = args.clone();
    resolved.sweep_file = Some(args.source.clone());
    resolved.source = sweep.db.clone();
    resolved.sweep = args.sweep.clone().or(Some(sweep.name.clone()));
    Ok(Some(resolved))
}

/// `--law lr` / `--law batch`: the envelope's refined optima against compute and parameters.
fn hyper_fit(args: &FitArgs) -> Result<Fitted> {
    if !source::is_database(&args.source) {
        bail!(
            "--law {} reads a tuned sweep from its database, not {}",
            law_name(args.law()),
            args.source.display()
        );
    }
    let store = Store::open_read_only(&args.source)?;
    let keys = tuned_keys(args, &store)?;
    let (_, env) = source::load_frames_of(
        &store,
        args.sweep.as_deref(),
        args.variant.as_deref(),
        &keys,
        None,
    )?;
    let env = env.expect("a hyperparameter law tunes its key");
    if !args.json {
        print_envelope(&env);
    }
    let key = hyper_key(args.law());
    let optima = env.refined(key);
    let left_out: Vec<String> = env
        .notes
        .iter()
        .filter(|n| n.starts_with(crate::analysis::envelope::column_of(key)))
        .cloned()
        .collect();
    let name = law_name(args.law());
    let mut reports = Vec::new();
    for (x_name, x_of) in [
        ("C", (|c: &TunedConfig| c.flops) as fn(&TunedConfig) -> f64),
        ("N", |c: &TunedConfig| c.params),
    ] {
        let x: Vec<f64> = optima.iter().map(|(c, _)| x_of(c)).collect();
        let y: Vec<f64> = optima.iter().map(|(_, v)| *v).collect();
        let mut r = fit_optimum_law(name, x_name, &x, &y, args.bootstrap().as_ref())
            .map_err(|e| anyhow::anyhow!("{e:#}\n{}", left_out.join("\n")))?;
        if !left_out.is_empty() {
            r.notes.push(format!(
                "{} configuration(s) left out, their optimum at the edge of the grid: {}",
                left_out.len(),
                left_out.join("; ")
            ));
        }
        reports.push((Some(x_name.to_string()), r));
    }
    let source = args.source.display().to_string();
    let mut fitted = Fitted::of_reports(name, &source, reports, optima.len());
    fitted.selection = serde_json::to_value(args)?;
    fitted.envelope = Some(env);
    Ok(fitted)
}

/// Which value of each tuned key won per configuration, and how many were tried.
fn print_envelope(env: &Envelope) {
    println!(
        "tuned {} over {} configuration(s): the best run of each stands for it",
        env.keys.join(", "),
        env.configs.len()
    );
    for c in &env.configs {
        let keys: Vec<String> = c
            .keys
            .iter()
            .map(|k| {
                let refined = k
                    .refined
                    .map(|r| format!(", refined {r:.3e}"))
                    .unwrap_or_default();
                let position = match k.position {
                    Position::Inside => "inside".to_string(),
                    Position::Smallest => "at the smallest sampled".to_string(),
                    Position::Largest => "at the largest sampled".to_string(),
                    Position::Only => "only value".to_string(),
                };
                format!(
                    "{} = {} of {} tried ({position}{refined})",
                    k.key,
                    k.best_text,
                    k.tried.len().max(1)
                )
            })
            .collect();
        println!("  {:<32} loss {:.4}  {}", c.label, c.loss, keys.join("; "));
    }
    for n in &env.notes {
        println!("NOTE: {n}");
    }
}

/// Approach 3's surface and the allocation exponent two ways, in two columns.
fn print_surface(surface: &Surface) {
    let Some(report) = &surface.report else {
        if let Some(why) = &surface.why_none {
            println!("approach 3 (the loss surface): none; {why}");
        }
        return;
    };
    println!(
        "\napproach 3: the loss surface L = E + A·N^-α + B·D^-β by variable projection\n{report}"
    );
    let Some(e) = &surface.exponent else { return };
    let (of, formula) = if e.exponent == "a" {
        ("N*(C) ∝ C^a", "β/(α+β)")
    } else {
        ("D*(C) ∝ C^b", "α/(α+β)")
    };
    let level = report.bootstrap.as_ref().map(|b| b.level);
    let value = |p: &ParamEstimate, identified: bool| {
        if identified {
            format!("{:.4}", p.value)
        } else {
            "not identified".to_string()
        }
    };
    let interval = |p: &ParamEstimate| match (p.lo, p.hi) {
        (None, None) => "-".to_string(),
        (lo, hi) => {
            let end = |x: Option<f64>| x.map_or("open".into(), |v| format!("{v:.4}"));
            format!("[{}, {}]", end(lo), end(hi))
        }
    };
    println!("the exponent {} of {of}, two ways:", e.exponent);
    println!(
        "  {:<14} {:<34} approach 3 (surface, {formula})",
        "", "approach 2 (optimum per budget)"
    );
    println!(
        "  {:<14} {:<34} {}",
        "estimate",
        value(&e.approach2, true),
        value(&e.surface, e.surface_identified)
    );
    let ci = level.map_or("interval".to_string(), |l| {
        format!("{:.0}% interval", 100.0 * l)
    });
    println!(
        "  {:<14} {:<34} {}",
        ci,
        interval(&e.approach2),
        interval(&e.surface)
    );
    let verdict = match e.agreement {
        Agreement::Agree => "they agree within their intervals",
        Agreement::Disagree => "they DISAGREE beyond their intervals",
        Agreement::Undecided => "no verdict (no intervals, or the surface does not identify it)",
    };
    println!("  {verdict}");
    for note in &e.notes {
        println!("NOTE: {note}");
    }
}

/// The iso-FLOP optima as a table: each budget, where its optimum lies, and its interval.
fn print_optima(optima: &[BudgetOptimum], level: Option<f64>) {
    let ci = level.map_or("interval".to_string(), |l| {
        format!("{:.0}% interval", 100.0 * l)
    });
    println!(
        "optimum per FLOP budget:\n  {:<12} {:>6} {:>21} {:>10} {:>24}  where",
        "C", "points", "sampled", "x*", ci
    );
    let n = |x: f64| {
        if (1e-2..1e5).contains(&x.abs()) {
            format!("{x:.3}")
        } else {
            format!("{x:.3e}")
        }
    };
    for b in optima {
        let interval = match (b.lo, b.hi, level) {
            (_, _, None) => "-".to_string(),
            (lo, hi, Some(_)) => format!(
                "[{}, {}]",
                lo.map_or("open".to_string(), n),
                hi.map_or("open".to_string(), n)
            ),
        };
        let star = match b.location {
            crate::fit::isoflop::Location::Inside => n(b.x_star),
            crate::fit::isoflop::Location::AtUpperEdge => format!("> {}", n(b.window.0)),
            crate::fit::isoflop::Location::AtLowerEdge => format!("< {}", n(b.window.1)),
        };
        println!(
            "  {:<12} {:>6} {:>21} {:>10} {:>24}  {}",
            format!("{:.3e}", b.c),
            b.n_points,
            format!("{} – {}", n(b.x_min), n(b.x_max)),
            star,
            interval,
            b.where_()
        );
    }
}

/// The depth law, one fit per family with two depths or more, and the points it used.
fn depth_fit(args: &FitArgs) -> Result<Fitted> {
    if !source::is_database(&args.source) {
        bail!(
            "--law depth reads task accuracies from a sweep database, not {}",
            args.source.display()
        );
    }
    let store = Store::open_read_only(&args.source)?;
    let points = depth_points(&accuracy_points(&store, args.sweep.as_deref())?);
    if points.is_empty() {
        bail!(
            "{}: no task accuracies (evals.accuracy) in finished runs; train a p_hop or addition sweep (sweeps/p_hop_depth.toml)",
            args.source.display()
        );
    }
    let mut reports = Vec::new();
    for family in [Family::Looped, Family::Gpt] {
        let (depth, accuracy): (Vec<f64>, Vec<f64>) = points
            .iter()
            .filter(|(f, _, _)| *f == family)
            .map(|(_, d, a)| (*d, *a))
            .unzip();
        if depth.is_empty() {
            continue;
        }
        let law = format!("depth:{}", family.name());
        match fit_depth(&law, &depth, &accuracy, args.bootstrap().as_ref()) {
            Ok(report) => reports.push((Some(family.name().to_string()), report)),
            Err(e) => eprintln!("{e:#}"),
        }
    }
    if reports.is_empty() {
        bail!("no family has runs at two effective depths or more: nothing to fit");
    }
    let source = args.source.display().to_string();
    let mut fitted = Fitted::of_reports("depth", &source, reports, points.len());
    fitted.selection = serde_json::to_value(args)?;
    Ok(fitted)
}

/// The source as the fit orchestrator reads it: a database's finished runs (tuned per
/// configuration by `--tune`, else by its sweep files' `[analysis] tune`), or a CSV file.
fn open_source(args: &FitArgs) -> Result<Option<Database>> {
    if !source::is_database(&args.source) {
        if !args.tune.is_empty() {
            bail!(
                "--tune reads each run's configuration from a sweep database; {} is a CSV file",
                args.source.display()
            );
        }
        return Ok(None);
    }
    let tune = if args.tune.is_empty() {
        Tune::Stored
    } else {
        Tune::Keys(&args.tune)
    };
    Ok(Some(Database::open(
        &args.source,
        args.sweep.as_deref(),
        args.variant.as_deref(),
        tune,
    )?))
}

/// A built-in or written law through the fit orchestrator, saying (unless --json) what it
/// fits: a tuned sweep's envelope and the replicate groups before a built-in law's fit, the
/// written law's terms after its fit.
fn orchestrated_fit(args: &FitArgs, law: LawChoice) -> Result<Fitted> {
    let db = open_source(args)?;
    let columns = args.csv_columns();
    let source = match &db {
        Some(db) => Source::Database(db),
        None => Source::Csv {
            path: &args.source,
            columns: &columns,
        },
    };
    let req = args.request(law);
    let input = law_fit::load(&source, &req)?;
    let groups = input.replicate_groups();
    let say_groups = |groups: Option<(usize, usize)>| {
        if let Some((groups, runs)) = groups {
            println!(
                "bootstrap: resampling {groups} replicate groups (configurations with their seeds) of {runs} runs"
            );
        }
    };
    let written = matches!(req.law, LawChoice::Written(_));
    if !args.json && !written {
        if let Some(env) = &input.envelope {
            print_envelope(env);
        }
        say_groups(groups);
    }
    let left_out = input.curves_left_out(&req);
    if !left_out.is_empty() {
        eprintln!(
            "{} curve(s) with fewer than three evaluations or two distinct T left out: {}",
            left_out.len(),
            left_out.join(", ")
        );
    }
    let mut fitted = input.fit(&req)?;
    fitted.selection = serde_json::to_value(args)?;
    if let (Some(law), false) = (&fitted.written, args.json) {
        println!("law {}: {}\n{}", fitted.law, law.text(), law.roles());
        say_groups(groups);
    }
    Ok(fitted)
}

/// `--law-expr`: a written law over the source's columns, fitted as a built-in law is (with the
/// bootstrap by replicate group where the sweep has seeds).
fn written_fit(args: &FitArgs) -> Result<Fitted> {
    let flags = written::WrittenFlags {
        law_expr: args.law_expr.as_deref().unwrap_or_default(),
        params: &args.param,
        starts: &args.param_start,
        derived: &args.derived,
        vars: &args.var,
    };
    // A sweep file's own laws are read from the file; `args.source` is its database by now.
    let declared_in = args.sweep_file.as_deref().unwrap_or(&args.source);
    let mut spec = written::law_spec(&flags, declared_in, args.sweep.as_deref())?;
    if args.raw_scale {
        spec.scale = Scale::Raw;
    }
    orchestrated_fit(args, LawChoice::Written(spec))
}

/// `loopscale fit`.
pub fn fit(args: &FitArgs) -> Result<i32> {
    let resolved = from_sweep_file(args)?;
    let args = resolved.as_ref().unwrap_or(args);
    args.check()?;
    if args.law_expr.is_some() {
        let fitted = written_fit(args)?;
        return finish(args, fitted);
    }
    if args.law() == LawName::Depth && !args.tune.is_empty() {
        bail!(
            "--tune chooses runs by their final loss; --law depth fits task accuracies at every depth, so it takes no --tune"
        );
    }
    let fitted = match args.law().builtin() {
        Some(law) => orchestrated_fit(args, LawChoice::Builtin(law))?,
        None if args.law() == LawName::Depth => depth_fit(args)?,
        None => hyper_fit(args)?,
    };
    finish(args, fitted)
}

/// A fitted law (or laws) recorded in the `fits` table (unless --no-save) and printed.
fn finish(args: &FitArgs, mut fitted: Fitted) -> Result<i32> {
    let target: Option<&Path> = if args.no_save {
        None
    } else if let Some(db) = &args.db {
        Some(db)
    } else if source::is_database(&args.source) {
        Some(&args.source)
    } else {
        None
    };
    // The keys actually tuned (a sweep file's `[analysis] tune` when no --tune was given), so
    // the `fits` row says how its points were chosen.
    if let (Some(env), Some(sel)) = (&fitted.envelope, fitted.selection.as_object_mut()) {
        sel.insert("tune".into(), serde_json::json!(env.keys));
    }
    let mut fit_ids = Vec::new();
    if let Some(db) = target {
        let mut store = Store::open(db)?;
        for record in fitted.records()? {
            fit_ids.push(store.insert_fit(&record)?);
        }
    }

    if args.json {
        println!("{}", serde_json::to_string_pretty(&fitted)?);
        return Ok(0);
    }
    println!(
        "{} fit of {} ({} points)",
        fitted.law, fitted.source, fitted.n_points
    );
    for (curve, report) in &fitted.reports {
        if let Some(curve) = curve {
            println!("\ncurve {curve}:");
        }
        println!("{report}");
    }
    let noted = fitted
        .reports
        .iter()
        .filter(|(_, r)| !r.notes.is_empty())
        .count();
    if fitted.reports.len() > 1 && noted > 0 {
        println!(
            "{noted} of {} fits carry a NOTE (above): read them before quoting their parameters",
            fitted.reports.len()
        );
    }
    if let Some(optima) = &fitted.optima {
        let level = fitted.reports[0].1.bootstrap.as_ref().map(|b| b.level);
        print_optima(optima, level);
    }
    if let Some(surface) = &fitted.surface {
        print_surface(surface);
    }
    if let Some(gpt) = fitted.gpt_runs_left_out.filter(|g| *g > 0) {
        if args.law == Some(LawName::Isoflop) {
            println!(
                "{gpt} GPT run(s) left out: the optimal loops and tokens are located among the looped runs"
            );
        } else {
            println!("{gpt} GPT run(s) left out: Parcae's laws are fitted on looped runs");
        }
    }
    if let Some(db) = target {
        let ids: Vec<String> = fit_ids.iter().map(|i| i.to_string()).collect();
        println!(
            "recorded in {} (fits.fit_id {})",
            db.display(),
            ids.join(", ")
        );
    }
    Ok(0)
}
