//! `loopscale suggest`: which runs to train next so that a law's target quantity gets settled
//! for the fewest FLOPs. Reads the sweep file and its database, fits the law (built in, or
//! written in the sweep's `[analysis.laws.NAME]` or `--law-expr`) with its bootstrap ensemble,
//! lays the sweep's axes out one step further as candidates (`sweep::extend`) beside another
//! seed of each finished configuration, chooses a batch within the budget (`fit::design`) with
//! the measured seed noise, and writes the extended sweep file.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

use crate::analysis::groups::{ReplicateGroup, replicate_groups, without_seed};
use crate::analysis::law_fit::{
    self, BuiltinLaw, Database, FitInput, FitRequest, LawChoice, Source, Tune,
};
use crate::analysis::source::{ParamCount, unrolled_params};
use crate::analysis::written::{planned_row, spec_of};
use crate::config::RunConfig;
use crate::fit::bootstrap::BootstrapOptions;
use crate::fit::design::{self, Allocation, Candidate, RowOf, Suggestion, TargetSpec};
use crate::fit::laws::{ChinchillaLaw, ComputeLaw, Design, Law, ParcaeLaw};
use crate::fit::parametric::{FitOptions, bootstrap_thetas};
use crate::fit::written::{LawSpec, WrittenLaw};
use crate::fit::{FitReport, Resampling};
use crate::model::Arch;
use crate::store::RunStatus;
use crate::sweep::extend::{
    CandidatePoint, CandidateSetting, SweptAxis, extend_values, extended_text,
};
use crate::sweep::{PlannedRun, Sweep, dotted_get};
use crate::train::RunCost;

#[derive(Args, Debug)]
pub struct SuggestArgs {
    /// The sweep file (TOML) whose runs are fitted and extended (not with --pool).
    #[arg(required_unless_present = "pool")]
    pub file: Option<PathBuf>,
    /// Database to read instead of the sweep's own ([sweep].db or results/<name>.sqlite).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// The law whose uncertainty the new runs should reduce: a built-in law (parcae: Parcae's
    /// L(μ, D) over the looped runs; chinchilla: L(N, D) over every run; compute: L(C) over
    /// every run), or the name of a law the sweep writes in `[analysis.laws.NAME]` (or the
    /// built-in written law schwethelm). With --pool, --law-expr instead.
    #[arg(long, value_name = "NAME", required_unless_present_any = ["pool", "law_expr"])]
    pub law: Option<String>,
    /// What to settle: a parameter or derived quantity of the law (`x`, `y`, `alpha`,
    /// `n_opt_exponent`, a written law's own parameters and `derived` names), the
    /// compute-optimal loops or tokens at C FLOPs (`mu_opt@1e14`, `d_opt@1e14`, Parcae's law),
    /// the FLOPs where M loops start to beat one (`crossing@2`), or the loss at a point
    /// (`loss@mu=4,tokens=1e7`; `loss@n=1e6,tokens=1e8` for Chinchilla's law, `loss@c=1e15` for
    /// the compute law, every variable of a written law: `loss@n_once=…,n_rec=…,r=4,D=1e8`).
    /// With --pool the target is the prediction over a region (see --region).
    #[arg(long, required_unless_present = "pool")]
    pub target: Option<String>,
    /// Training FLOPs the new runs may spend in all (every run of a tuned candidate counted);
    /// with --pool, the cost (in --cost-col's units) the chosen rows may spend.
    #[arg(long, allow_negative_numbers = true)]
    pub budget: Option<f64>,
    /// The values a candidate axis takes, instead of the sweep's axes one step outward and
    /// between: `KEY=V1,V2,…` (repeat for several keys; zipped keys each need their values).
    #[arg(long = "candidates", value_name = "KEY=V1,V2,…")]
    pub candidates: Vec<String>,
    /// Only this `[[variants]]` name's runs are extended.
    #[arg(long)]
    pub variant: Option<String>,
    /// Admit candidates that would read their training text more than once.
    #[arg(long)]
    pub allow_repeats: bool,
    /// Write the extended sweep file here: the source with the chosen runs as new variants
    /// (`loopscale run` on it trains only those).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Bootstrap resamples of the ensemble.
    #[arg(long, default_value_t = 200)]
    pub resamples: usize,
    /// Coverage of the reported intervals.
    #[arg(long, default_value_t = 0.95)]
    pub level: f64,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub pool: super::pool::PoolArgs,
}

/// The sweep-file form of `suggest`, its required arguments present.
struct SweepArgs {
    file: PathBuf,
    db: Option<PathBuf>,
    law: LawPick,
    target: String,
    budget: f64,
    candidates: Vec<String>,
    variant: Option<String>,
    allow_repeats: bool,
    out: Option<PathBuf>,
    resamples: usize,
    level: f64,
    seed: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SuggestLaw {
    /// Parcae's training law L(μ, D) over the looped runs (N(μ) the unrolled parameters).
    Parcae,
    /// Chinchilla's L(N, D) over every run (N the non-embedding parameters).
    Chinchilla,
    /// L(C) = E + A·C^(−α) over every run.
    Compute,
}

/// The law `suggest` settles a target of: built in, or written as an expression.
#[derive(Clone, Debug)]
enum LawPick {
    Builtin(SuggestLaw),
    Written(LawSpec),
}

impl LawPick {
    fn is(&self, law: SuggestLaw) -> bool {
        matches!(self, LawPick::Builtin(l) if *l == law)
    }

    fn label(&self) -> String {
        match self {
            LawPick::Builtin(l) => law_label(*l).to_string(),
            LawPick::Written(spec) => format!("law `{}`", spec.name),
        }
    }
}

/// `--law NAME`: a built-in law, a law of the sweep file's `[analysis.laws.NAME]`, or a
/// built-in written law; otherwise an error listing them.
fn resolve_law(name: &str, file: &Path) -> Result<LawPick> {
    if let Ok(l) = SuggestLaw::from_str(name, true) {
        return Ok(LawPick::Builtin(l));
    }
    let declared = super::written::declared(file, None)?;
    if let Some(t) = declared.iter().find(|l| l.name == name) {
        let spec =
            spec_of(t).with_context(|| format!("{}: [analysis.laws.{name}]", file.display()))?;
        return Ok(LawPick::Written(spec));
    }
    if let Some(spec) = super::written::builtin(name) {
        return Ok(LawPick::Written(spec));
    }
    let builtins: Vec<String> = SuggestLaw::value_variants()
        .iter()
        .filter_map(|v| v.to_possible_value().map(|p| p.get_name().to_string()))
        .collect();
    let written: Vec<&str> = declared.iter().map(|l| l.name.as_str()).collect();
    bail!(
        "--law {name}: no such law. Built in: {}; written in {} ([analysis.laws.NAME]): {}; built-in written: {}; or write one with --law-expr 'loss = …'",
        builtins.join(", "),
        file.display(),
        if written.is_empty() {
            "none".to_string()
        } else {
            written.join(", ")
        },
        super::written::BUILTIN.join(", ")
    )
}

/// A candidate with what it costs and where the law reads it.
struct Priced {
    point: CandidatePoint,
    /// A run of it (not a trunk), whose configuration a written law reads.
    config: RunConfig,
    /// 0 for a new configuration; n for another seed of one whose n seeds are measured.
    seeds_done: usize,
    /// The runs it adds that the database does not hold finished.
    new_runs: Vec<PlannedRun>,
    flops: f64,
    /// The law's covariates of its runs (they differ only in tuned keys).
    n: f64,
    d: f64,
    c: f64,
}

pub fn suggest(args: &SuggestArgs) -> Result<i32> {
    if args.pool.pool.is_some() {
        let run = super::pool::PoolRun {
            budget: args.budget,
            resamples: args.resamples,
            level: args.level,
            seed: args.seed,
        };
        return super::pool::suggest_pool(&args.pool, &run);
    }
    let (Some(file), Some(target), Some(budget)) = (&args.file, &args.target, args.budget) else {
        bail!(
            "suggest needs a sweep file, --law, --target and --budget (or --pool FILE.csv to choose among measured rows)"
        );
    };
    let law = match (&args.law, &args.pool.law_expr) {
        (Some(_), Some(_)) => bail!("give --law NAME or --law-expr EXPR, not both"),
        (Some(name), None) => resolve_law(name, file)?,
        (None, Some(expr)) => {
            let flags = super::written::WrittenFlags {
                law_expr: expr,
                params: &args.pool.param,
                starts: &[],
                derived: &[],
                vars: &[],
            };
            LawPick::Written(super::written::law_spec(&flags, file, None)?)
        }
        (None, None) => bail!("suggest needs --law NAME or --law-expr EXPR"),
    };
    let args = &SweepArgs {
        file: file.clone(),
        db: args.db.clone(),
        law,
        target: target.clone(),
        budget,
        candidates: args.candidates.clone(),
        variant: args.variant.clone(),
        allow_repeats: args.allow_repeats,
        out: args.out.clone(),
        resamples: args.resamples,
        level: args.level,
        seed: args.seed,
    };
    #[allow(clippy::neg_cmp_op_on_partial_ord)] // `!(x > 0)` also refuses NaN
    if !(args.budget > 0.0 && args.budget.is_finite()) {
        bail!(
            "--budget must be a positive number of FLOPs, got {}",
            args.budget
        );
    }
    if !(args.level > 0.0 && args.level < 1.0) {
        bail!("--level must lie in (0, 1), got {}", args.level);
    }
    if args.resamples < 20 {
        bail!(
            "--resamples must be at least 20 (the ensemble is what the choice reads), got {}",
            args.resamples
        );
    }
    let target = TargetSpec::parse(&args.target)?;
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read sweep file {}", args.file.display()))?;
    let sweep = Sweep::load(&args.file)?;
    let db_path = args.db.clone().unwrap_or_else(|| sweep.db.clone());
    if !db_path.exists() {
        bail!(
            "{}: no database yet; train the sweep first (`loopscale run {}`), then ask what to add",
            db_path.display(),
            args.file.display()
        );
    }
    let tune = sweep.analysis.tune.clone();
    let db = Database::open(&db_path, Some(&sweep.name), None, Tune::Keys(&tune))?;
    let choice = match &args.law {
        LawPick::Builtin(SuggestLaw::Parcae) => LawChoice::Builtin(BuiltinLaw::Parcae),
        LawPick::Builtin(SuggestLaw::Chinchilla) => LawChoice::Builtin(BuiltinLaw::Chinchilla),
        LawPick::Builtin(SuggestLaw::Compute) => LawChoice::Builtin(BuiltinLaw::Compute),
        LawPick::Written(spec) => LawChoice::Written(spec.clone()),
    };
    let boot = BootstrapOptions {
        resamples: args.resamples,
        level: args.level,
        seed: args.seed,
        ..BootstrapOptions::default()
    };
    // Seeds of a configuration are resampled together (`FitRequest`'s default), as `fit` does.
    let request = FitRequest::new(
        choice,
        FitOptions {
            bootstrap: Some(boot),
            ..FitOptions::default()
        },
    );
    let input = law_fit::load(&Source::Database(&db), &request)?;
    let points = &input.points;
    let done: HashSet<String> = db
        .store
        .runs(&sweep.name)?
        .into_iter()
        .filter(|r| r.status == RunStatus::Done)
        .map(|r| r.key)
        .collect();
    let groups = replicate_groups(&db.frames)?;
    let (priced, left_out) = price_candidates(args, &sweep, &text, &done, &groups)?;
    eprintln!(
        "suggest: fitting {} on {} points of sweep `{}` ({} bootstrap resamples{})",
        args.law.label(),
        db.frames.runs.height(),
        sweep.name,
        args.resamples,
        if tune.is_empty() {
            String::new()
        } else {
            format!("; {} tuned per configuration", tune.join(", "))
        }
    );
    let ctx = LawInputs {
        args,
        target: &target,
        input: &input,
        request: &request,
        priced: &priced,
        allocation: allocation(&sweep),
        seed_noise: log_seed_noise(&groups),
    };
    let (chosen, trained) = match &args.law {
        LawPick::Builtin(SuggestLaw::Parcae) => {
            (run_law(&ParcaeLaw, &ParcaeLaw.design(points)?, &ctx)?, None)
        }
        LawPick::Builtin(SuggestLaw::Chinchilla) => (
            run_law(&ChinchillaLaw, &ChinchillaLaw.design(points)?, &ctx)?,
            None,
        ),
        LawPick::Builtin(SuggestLaw::Compute) => (
            run_law(&ComputeLaw, &ComputeLaw.design(points)?, &ctx)?,
            None,
        ),
        LawPick::Written(_) => run_written(&ctx)?,
    };
    let Chosen {
        report,
        suggestion,
        residual,
    } = chosen;
    print_suggestion(args, &target, &report, &suggestion, &priced, &left_out);
    print_noise(ctx.seed_noise, residual);
    if let Some(out) = &args.out {
        write_extended(args, &sweep, &text, out, &suggestion, &priced)?;
        let stem = out.with_extension("");
        let name = format!(
            "{}.suggest",
            stem.file_name()
                .map_or("next".into(), |n| n.to_string_lossy())
        );
        let dir = out
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let trained = trained.unwrap_or_else(|| match (&points.n, points.tokens()) {
            (Some(n), Ok(d)) => d.iter().copied().zip(n.iter().copied()).collect(),
            _ => Vec::new(),
        });
        let chart = chart(&target, trained, &suggestion, &priced, &args.law);
        let drawn = crate::plot::save(&chart, dir, &name)?;
        println!("chart: {}", drawn.png.display());
    }
    Ok(0)
}

/// The suggestion as a chart ([`crate::analysis::chart_data::suggestion`]).
fn chart(
    target: &TargetSpec,
    trained: Vec<(f64, f64)>,
    s: &Suggestion,
    priced: &[Priced],
    law: &LawPick,
) -> crate::chart::Figure {
    let mut widths = vec![(0.0, s.width)];
    widths.extend(s.picks.iter().map(|p| (p.cumulative_flops, p.width_after)));
    crate::analysis::chart_data::suggestion::suggestion(
        &crate::analysis::chart_data::suggestion::SuggestionPlot {
            target: &target.label(),
            n_label: if law.is(SuggestLaw::Parcae) {
                "unrolled parameters N(μ)"
            } else {
                "non-embedding parameters N"
            },
            trained,
            candidates: priced.iter().map(|p| (p.d, p.n)).collect(),
            chosen: s
                .picks
                .iter()
                .map(|p| (priced[p.candidate].d, priced[p.candidate].n))
                .collect(),
            widths,
        },
    )
}

/// The pooled seed noise of log loss over the sweep's replicate groups.
fn log_seed_noise(groups: &[ReplicateGroup]) -> Option<(f64, usize)> {
    let logs: Vec<Vec<f64>> = groups
        .iter()
        .map(|g| g.losses.iter().map(|l| l.ln()).collect())
        .collect();
    let slices: Vec<&[f64]> = logs.iter().map(Vec::as_slice).collect();
    crate::fit::noise::pooled_variance(&slices).map(|(v, df)| (v.sqrt(), df))
}

/// Which noise the choice assumed, and whether it was measured.
fn print_noise(seed_noise: Option<(f64, usize)>, residual: f64) {
    match seed_noise {
        Some((sd, df)) => {
            println!(
                "noise: σ = {:.4} in log loss, the seed noise measured over the sweep's replicate groups ({df} degrees of freedom); the fit's residual scale is {residual:.4}",
                sd.max(design::MIN_NOISE_SD)
            );
            if residual > 2.0 * sd {
                println!(
                    "NOTE: the law's residuals scatter {:.1}× the seed noise: it misfits the runs beyond their seed noise, which the choice does not count",
                    residual / sd
                );
            }
        }
        None => println!(
            "noise: σ = {residual:.4} in log loss is an assumption, the fit's residual scale: seed noise unmeasured (no configuration has two seeds; `[sweep] seeds = [0, 1]` measures it)"
        ),
    }
}

/// What the law-generic part needs.
struct LawInputs<'a> {
    args: &'a SweepArgs,
    target: &'a TargetSpec,
    /// The sweep's points of the law, and how the orchestrator fits them.
    input: &'a FitInput,
    request: &'a FitRequest,
    priced: &'a [Priced],
    allocation: Option<Allocation>,
    /// The seed noise of one run's log loss, pooled over the sweep's replicate groups, with its
    /// degrees of freedom; `None` without a configuration of two seeds.
    seed_noise: Option<(f64, usize)>,
}

/// What the choice made of the law: its fit, the batch, and the fit's residual scale.
struct Chosen {
    report: FitReport,
    suggestion: Suggestion,
    residual: f64,
}

fn law_label(law: SuggestLaw) -> &'static str {
    match law {
        SuggestLaw::Parcae => "Parcae's law",
        SuggestLaw::Chinchilla => "Chinchilla's law",
        SuggestLaw::Compute => "the compute law",
    }
}

/// A built-in law: fit (through the orchestrator, as `loopscale fit` fits), the candidates' rows
/// in its covariates, the choice.
fn run_law<L: Law>(law: &L, design: &Design, ctx: &LawInputs) -> Result<Chosen> {
    let args = ctx.args;
    let LawPick::Builtin(which) = args.law.clone() else {
        unreachable!("a built-in law")
    };
    let report = ctx
        .input
        .fit(ctx.request)
        .map(|mut f| f.reports.swap_remove(0).1)
        .with_context(|| {
            format!(
                "fitting {} to the {} finished configuration(s) of the sweep (train more of it first, or choose a law with fewer parameters)",
                law_label(which),
                design.len()
            )
        })?;
    let rows: Vec<Vec<f64>> = ctx
        .priced
        .iter()
        .map(|p| match which {
            SuggestLaw::Parcae | SuggestLaw::Chinchilla => vec![p.n.ln(), p.d.ln()],
            SuggestLaw::Compute => vec![p.c.ln()],
        })
        .collect();
    let row_of = |pairs: &[(String, f64)]| -> Result<Vec<f64>> {
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
        let want = |keys: &str| bail!("--target loss@…: the {} reads {keys}", law_label(which));
        match which {
            SuggestLaw::Parcae => {
                let (Some(mu), Some(d)) = (get("mu"), get("tokens")) else {
                    return want("mu=…,tokens=…");
                };
                let Some(alloc) = &ctx.allocation else {
                    bail!("the sweep has no looped run to count N(μ) from");
                };
                let n = alloc
                    .mu
                    .iter()
                    .position(|m| (*m - mu).abs() < 1e-9)
                    .map(|i| alloc.unrolled_params[i])
                    .context(
                        "--target loss@mu=…: μ must be a whole number of loops from 1 to 64",
                    )?;
                Ok(vec![n.ln(), d.ln()])
            }
            SuggestLaw::Chinchilla => match (get("n"), get("tokens")) {
                (Some(n), Some(d)) => Ok(vec![n.ln(), d.ln()]),
                _ => want("n=…,tokens=…"),
            },
            SuggestLaw::Compute => match get("c") {
                Some(c) => Ok(vec![c.ln()]),
                None => want("c=…"),
            },
        }
    };
    let allocation = match which {
        SuggestLaw::Parcae => ctx.allocation.as_ref(),
        _ => None,
    };
    choose(law, design, report, ctx, &rows, &row_of, allocation)
}

/// The trained runs as (D, N), where the chart of the choice can place them.
type TrainedAt = Option<Vec<(f64, f64)>>;

/// A written law: fit through the orchestrator, each candidate as a row of the law's variables
/// read from its configuration as a finished run's are read from the store
/// (`analysis::written::planned_row`), the choice. Also the trained runs as (D, N), for the chart.
fn run_written(ctx: &LawInputs) -> Result<(Chosen, TrainedAt)> {
    let fitted = ctx.input.fit(ctx.request).with_context(|| {
        format!(
            "fitting {} to the finished runs of the sweep (train more of it first, or write a law with fewer parameters)",
            ctx.args.law.label()
        )
    })?;
    let law: WrittenLaw = fitted.written.clone().context("a written law's fit")?;
    let report = fitted.reports[0].1.clone();
    let column = |name: &str| {
        ctx.input
            .columns
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let design = law.design(&column)?;
    let rows: Vec<Vec<f64>> = ctx
        .priced
        .iter()
        .map(|p| planned_row(&law, &p.config, ctx.request.n))
        .collect::<Result<_>>()?;
    let row_of = |pairs: &[(String, f64)]| -> Result<Vec<f64>> {
        law.vars
            .iter()
            .map(|(sym, col)| {
                pairs
                    .iter()
                    .find(|(k, _)| k == sym || k == col)
                    .map(|(_, v)| *v)
                    .with_context(|| {
                        format!(
                            "--target loss@…: {} reads {}; give each, e.g. loss@{}",
                            ctx.args.law.label(),
                            law.vars
                                .iter()
                                .map(|(s, _)| s.as_str())
                                .collect::<Vec<_>>()
                                .join(", "),
                            law.vars
                                .iter()
                                .map(|(s, _)| format!("{s}=…"))
                                .collect::<Vec<_>>()
                                .join(",")
                        )
                    })
            })
            .collect()
    };
    let trained = match (column("D"), column("N")) {
        (Some(d), Some(n)) => Some(d.into_iter().zip(n).collect()),
        _ => None,
    };
    let chosen = choose(&law, &design, report, ctx, &rows, &row_of, None)?;
    Ok((chosen, trained))
}

/// Ensemble (resampling replicate groups where the sweep has seeds), target, noise, choice,
/// and what the fit does not identify.
fn choose<L: Law>(
    law: &L,
    design: &Design,
    report: FitReport,
    ctx: &LawInputs,
    rows: &[Vec<f64>],
    row_of: &RowOf<'_>,
    allocation: Option<&Allocation>,
) -> Result<Chosen> {
    let args = ctx.args;
    let mut opts = ctx.request.options.clone();
    if let Some(groups) = &ctx.input.replicates {
        // A resample takes or leaves a configuration with all its seeds, as the fit's did.
        opts.replicates = Some(groups.clone());
        opts.resampling = Resampling::Groups(groups.clone());
    }
    let boot = opts.bootstrap.expect("suggest fits with a bootstrap");
    let (members, failed) = bootstrap_thetas(law, design, &report.theta, &opts, &boot);
    if failed * 2 > args.resamples {
        eprintln!(
            "suggest: {failed} of {} bootstrap resamples failed",
            args.resamples
        );
    }
    let candidates: Vec<Candidate> = ctx
        .priced
        .iter()
        .zip(rows)
        .map(|(p, row)| Candidate {
            row: row.clone(),
            flops: p.flops,
            seeds_done: p.seeds_done,
        })
        .collect();
    let target = design::target_fn(law, ctx.target, allocation, row_of)?;
    // A new run's log loss scatters around the law by the seed noise where the sweep's seeds
    // measure it; elsewhere the fit's residual scale (which holds any lack of fit too) stands in.
    let residual = design::noise_sd(law, design, &report.theta);
    let noise = match ctx.seed_noise {
        Some((seed, _)) => seed.max(design::MIN_NOISE_SD),
        None => residual,
    };
    let mut suggestion = design::suggest(
        law,
        &report.theta,
        &members,
        target.as_ref(),
        ctx.target.log_scale(),
        &candidates,
        args.budget,
        noise,
        args.level,
    )?;
    // What the fit itself does not determine, the ensemble cannot promise to settle.
    let depends: Vec<String> = match ctx.target {
        TargetSpec::Parameter(p) => {
            let mut d: Vec<String> = law.depends(p);
            d.push(p.clone());
            d
        }
        _ => report.params.iter().map(|p| p.name.clone()).collect(),
    };
    let unsure: Vec<&String> = report
        .not_identified
        .iter()
        .filter(|n| depends.contains(n))
        .collect();
    if !unsure.is_empty() {
        let how = match &args.law {
            LawPick::Builtin(_) => format!("--law {}", law.name()),
            LawPick::Written(spec) => format!("--law-expr {}", spec.name),
        };
        suggestion.notes.push(format!(
            "the current runs do not identify {} (see `loopscale fit {how}`): the ensemble's spread there is not the data's, so the expected narrowing is optimistic",
            unsure.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
        ));
    }
    Ok(Chosen {
        report,
        suggestion,
        residual,
    })
}

/// N(μ) and training FLOPs per token of the sweep's looped shape at μ = 1…64, for μ* and D*.
fn allocation(sweep: &Sweep) -> Option<Allocation> {
    let base = sweep
        .runs
        .iter()
        .find(|r| r.config.model.arch == Arch::Looped && r.config.model.looped.is_some())?;
    let explicit_backprop = base.config.model.looped.as_ref()?.backprop_depth.is_some();
    let mut alloc = Allocation {
        mu: Vec::new(),
        unrolled_params: Vec::new(),
        flops_per_token: Vec::new(),
    };
    for mu in 1..=64usize {
        let mut c: RunConfig = base.config.clone();
        let looped = c.model.looped.as_mut()?;
        looped.mean_recurrence = mu;
        if !explicit_backprop {
            looped.backprop_depth = None;
        }
        alloc.mu.push(mu as f64);
        alloc.unrolled_params.push(unrolled_params(
            &c.model,
            mu as f64,
            0.0,
            ParamCount::NonEmbedding,
        ));
        alloc.flops_per_token.push(c.train_flops_per_token());
    }
    Some(alloc)
}

/// The candidates (given or the sweep's axes extended, and another seed of each finished
/// configuration), each expanded into its runs and priced; and, in words, those left out and why.
fn price_candidates(
    args: &SweepArgs,
    sweep: &Sweep,
    text: &str,
    done: &HashSet<String>,
    groups: &[ReplicateGroup],
) -> Result<(Vec<Priced>, Vec<String>)> {
    let tune = &sweep.analysis.tune;
    let mut axes = sweep.swept_axes(text, tune)?;
    if let Some(v) = &args.variant {
        if !axes
            .iter()
            .any(|(name, _)| name.as_deref() == Some(v.as_str()))
        {
            bail!(
                "--variant {v}: {} has no such variant (it has {})",
                args.file.display(),
                axes.iter()
                    .map(|(n, _)| n.clone().unwrap_or_else(|| "none".into()))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        axes.retain(|(name, _)| name.as_deref() == Some(v.as_str()));
    }
    let given = parse_candidate_values(&args.candidates)?;
    let pricing = Pricing {
        args,
        sweep,
        text,
        done,
        corpora: super::corpora::load_corpora(sweep),
    };
    let mut priced = Vec::new();
    let mut tally = Tally::default();
    for (variant, swept) in &axes {
        let looped = sweep
            .runs
            .iter()
            .filter(|r| &r.variant == variant)
            .any(|r| r.config.model.arch == Arch::Looped);
        if args.law.is(SuggestLaw::Parcae) && !looped {
            tally.not_law += 1;
            continue;
        }
        let extended = candidate_axes(swept, &given, &args.file)?;
        if extended.is_empty() {
            continue;
        }
        for point in product(variant, &extended) {
            priced.extend(pricing.price(point, 0, &mut tally));
        }
        priced.extend(pricing.repeats(variant, swept, groups, &mut tally));
    }
    let mut left_out = Vec::new();
    if tally.observed > 0 {
        left_out.push(format!("{} already trained", tally.observed));
    }
    if tally.repeats > 0 {
        left_out.push(format!(
            "{} would read their training text more than once (a larger corpus admits them; --allow-repeats admits them anyway)",
            tally.repeats
        ));
    }
    if tally.not_law > 0 {
        left_out.push(format!(
            "{} variant(s) without looped runs (Parcae's law is about looped runs)",
            tally.not_law
        ));
    }
    if !tally.invalid.is_empty() {
        left_out.push(format!(
            "{} not valid runs (e.g. {})",
            tally.invalid.len(),
            tally.invalid[0]
        ));
    }
    if priced.is_empty() {
        bail!(
            "no candidate run to choose from ({}); give some with --candidates KEY=V1,V2,…",
            if left_out.is_empty() {
                "the sweep has no numeric axis to extend".to_string()
            } else {
                left_out.join("; ")
            }
        );
    }
    Ok((priced, left_out))
}

/// Candidates left out, by why.
#[derive(Default)]
struct Tally {
    observed: usize,
    repeats: usize,
    not_law: usize,
    invalid: Vec<String>,
}

/// What pricing a candidate reads.
struct Pricing<'a> {
    args: &'a SweepArgs,
    sweep: &'a Sweep,
    text: &'a str,
    done: &'a HashSet<String>,
    corpora: super::corpora::Corpora,
}

impl Pricing<'_> {
    /// A candidate expanded into its runs as `plan` would, those not yet finished priced; `None`
    /// (counted in `tally`) when it is not a valid run, already trained, or would repeat text.
    fn price(&self, point: CandidatePoint, seeds_done: usize, tally: &mut Tally) -> Option<Priced> {
        let runs = match self
            .sweep
            .candidate_runs(self.text, &point, "suggest-candidate")
        {
            Ok(r) => r,
            Err(e) => {
                tally
                    .invalid
                    .push(format!("{}: {}", point.label(), first_line(&e.to_string())));
                return None;
            }
        };
        let new_runs: Vec<PlannedRun> = runs
            .into_iter()
            .filter(|r| !self.done.contains(&r.key))
            .collect();
        let Some(first) = new_runs.iter().find(|r| !r.config.is_trunk()) else {
            tally.observed += 1;
            return None;
        };
        let cost = RunCost::of(&first.config);
        if !self.args.allow_repeats
            && super::corpora::text_passes(&self.corpora, &first.config).is_some_and(|p| p > 1.0)
        {
            tally.repeats += 1;
            return None;
        }
        let mu = first
            .config
            .model
            .looped
            .as_ref()
            .filter(|_| first.config.model.arch == Arch::Looped)
            .map(|l| l.mean_recurrence as f64);
        let n = match (self.args.law.is(SuggestLaw::Parcae), mu) {
            (true, Some(mu)) => {
                unrolled_params(&first.config.model, mu, 0.0, ParamCount::NonEmbedding)
            }
            (true, None) => return None,
            _ => cost.non_embedding_params as f64,
        };
        Some(Priced {
            config: first.config.clone(),
            seeds_done,
            point,
            flops: new_runs
                .iter()
                .map(|r| RunCost::of(&r.config).own_flops)
                .sum(),
            n,
            d: cost.tokens as f64,
            c: cost.flops,
            new_runs,
        })
    }

    /// Another seed of each finished configuration of `variant` (the smallest seed the sweep
    /// does not use there), written as a variant that pins every swept axis to the
    /// configuration's values with `seeds = [k]`; tuned keys keep their whole list, so the new
    /// seed is tuned as the old ones were. A configuration the pinned axes do not single out
    /// (an axis that is not numeric) gets none.
    fn repeats(
        &self,
        variant: &Option<String>,
        swept: &[SweptAxis],
        groups: &[ReplicateGroup],
        tally: &mut Tally,
    ) -> Vec<Priced> {
        let tune = &self.sweep.analysis.tune;
        let mut out = Vec::new();
        for group in groups {
            let Some(run) = self
                .sweep
                .runs
                .iter()
                .find(|r| &r.variant == variant && group.run_keys.contains(&r.key))
            else {
                continue;
            };
            let used: HashSet<u64> = self
                .sweep
                .runs
                .iter()
                .filter(|r| same_configuration(&r.config, &run.config, tune))
                .map(|r| r.config.seed)
                .chain(group.seeds.iter().copied())
                .collect();
            let seed = (0..).find(|k| !used.contains(k)).unwrap_or(0);
            let mut settings = Vec::new();
            for axis in swept {
                for (key, whole) in axis.keys.iter().zip(&axis.integer) {
                    let Some(value) = dotted_get(&run.config, key).and_then(|v| v.parse().ok())
                    else {
                        continue;
                    };
                    settings.push(CandidateSetting {
                        key: key.clone(),
                        value,
                        whole: *whole,
                    });
                }
            }
            let point = CandidatePoint {
                variant: variant.clone(),
                settings,
                seeds: Some(vec![seed]),
            };
            let Some(p) = self.price(point, group.stats.n, tally) else {
                continue;
            };
            let pinned = p
                .new_runs
                .iter()
                .all(|r| r.config.is_trunk() || same_configuration(&r.config, &run.config, tune));
            if pinned {
                out.push(p);
            }
        }
        out
    }
}

/// Whether two runs are one configuration: equal but for the seed and the tuned keys.
fn same_configuration(a: &RunConfig, b: &RunConfig, tune: &[String]) -> bool {
    let strip = |c: &RunConfig| {
        let mut v = serde_json::to_value(c).unwrap_or_default();
        without_seed(&mut v);
        for key in tune {
            let (table, field) = key.split_once('.').unwrap_or(("", key));
            for at in [format!("/{table}"), format!("/{table}/looped")] {
                if let Some(t) = v.pointer_mut(&at).and_then(|t| t.as_object_mut()) {
                    t.remove(field);
                }
            }
        }
        v
    };
    strip(a) == strip(b)
}

fn first_line(s: &str) -> String {
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .to_string()
}

/// `--candidates KEY=V1,V2,…` as (key, values).
fn parse_candidate_values(given: &[String]) -> Result<Vec<(String, Vec<f64>)>> {
    given
        .iter()
        .map(|g| {
            let Some((key, values)) = g.split_once('=') else {
                bail!(
                    "--candidates {g}: expected KEY=V1,V2,… (e.g. model.mean_recurrence=1,2,4,8,16)"
                );
            };
            let key = key.trim().to_string();
            if crate::sweep::check_tune_key(&key).is_err() {
                bail!("--candidates {g}: `{key}` is not a sweep key (`loopscale keys` lists them)");
            }
            let values = values
                .split(',')
                .map(|v| {
                    v.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|x| x.is_finite() && *x > 0.0)
                        .with_context(|| {
                            format!("--candidates {g}: `{v}` is not a positive number")
                        })
                })
                .collect::<Result<Vec<f64>>>()?;
            Ok((key, values))
        })
        .collect()
}

/// A variant's candidate axes: its swept axes, each extended one step (or given), plus any
/// given key it does not sweep.
fn candidate_axes(
    swept: &[SweptAxis],
    given: &[(String, Vec<f64>)],
    file: &Path,
) -> Result<Vec<SweptAxis>> {
    let mut out = Vec::new();
    for axis in swept {
        let chosen: Vec<&(String, Vec<f64>)> = given
            .iter()
            .filter(|(k, _)| axis.keys.contains(k))
            .collect();
        if chosen.is_empty() {
            out.push(SweptAxis {
                values: extend_values(&axis.values, &axis.integer),
                ..axis.clone()
            });
            continue;
        }
        if chosen.len() != axis.keys.len()
            || chosen.iter().any(|(_, v)| v.len() != chosen[0].1.len())
        {
            bail!(
                "--candidates: {} are zipped in {}; give each of them, with as many values",
                axis.keys.join(" and "),
                file.display()
            );
        }
        let values = (0..chosen[0].1.len())
            .map(|i| {
                axis.keys
                    .iter()
                    .map(|k| {
                        chosen
                            .iter()
                            .find(|(c, _)| c == k)
                            .map_or(0.0, |(_, v)| v[i])
                    })
                    .collect()
            })
            .collect();
        out.push(SweptAxis {
            values,
            ..axis.clone()
        });
    }
    for (key, values) in given {
        if swept.iter().any(|a| a.keys.contains(key)) {
            continue;
        }
        out.push(SweptAxis {
            keys: vec![key.clone()],
            values: values.iter().map(|v| vec![*v]).collect(),
            integer: vec![values.iter().all(|v| v.fract() == 0.0) && !key.ends_with("flops")],
        });
    }
    Ok(out)
}

/// Every combination of the axes' values, as candidate points of `variant`.
fn product(variant: &Option<String>, axes: &[SweptAxis]) -> Vec<CandidatePoint> {
    let mut points = vec![Vec::<CandidateSetting>::new()];
    for axis in axes {
        points = points
            .into_iter()
            .flat_map(|prefix| {
                axis.values.iter().map(move |tuple| {
                    let mut p = prefix.clone();
                    for ((key, v), whole) in axis.keys.iter().zip(tuple).zip(&axis.integer) {
                        p.push(CandidateSetting {
                            key: key.clone(),
                            value: *v,
                            whole: *whole,
                        });
                    }
                    p
                })
            })
            .collect();
    }
    points
        .into_iter()
        .map(|settings| CandidatePoint {
            variant: variant.clone(),
            settings,
            seeds: None,
        })
        .collect()
}

fn print_suggestion(
    args: &SweepArgs,
    target: &TargetSpec,
    report: &FitReport,
    s: &Suggestion,
    priced: &[Priced],
    left_out: &[String],
) {
    println!(
        "{} on {} points; noise σ = {:.4} in log loss",
        args.law.label(),
        report.n_points,
        s.noise_sd
    );
    println!(
        "target {}: {} now, {:.0}% interval [{}, {}] (width {}) over {} bootstrap members",
        target.label(),
        num(s.value),
        args.level * 100.0,
        num(s.interval.0),
        num(s.interval.1),
        num(s.width),
        s.members
    );
    println!(
        "candidates: {}{}",
        priced.len(),
        if left_out.is_empty() {
            String::new()
        } else {
            format!(" (left out: {})", left_out.join("; "))
        }
    );
    if s.picks.is_empty() {
        println!("chosen: none within {:.3e} FLOPs", args.budget);
    } else {
        println!(
            "chosen within {:.3e} FLOPs, in the order the greedy batch took them:",
            args.budget
        );
        println!(
            "  {:>2}  {:<44} {:>4}  {:>10}  {:>10}  {:>14}",
            "#", "candidate", "runs", "FLOPs", "cumulative", "expected width"
        );
        for (i, p) in s.picks.iter().enumerate() {
            let c = &priced[p.candidate];
            println!(
                "  {:>2}  {:<44} {:>4}  {:>10.3e}  {:>10.3e}  {:>14}",
                i + 1,
                c.point.label(),
                c.new_runs.len(),
                p.flops,
                p.cumulative_flops,
                num(p.width_after)
            );
        }
        println!(
            "expected: width {} → {} ({:.0}% narrower) for {:.3e} FLOPs",
            num(s.width),
            num(s.width_after()),
            100.0 * (1.0 - s.width_after() / s.width),
            s.picks.last().map_or(0.0, |p| p.cumulative_flops)
        );
    }
    for n in &s.notes {
        println!("NOTE: {n}");
    }
}

fn num(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e4 || v.abs() < 1e-3) {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

/// The source sweep with the chosen candidates as new variants; checked by loading it as
/// `plan` would.
fn write_extended(
    args: &SweepArgs,
    sweep: &Sweep,
    text: &str,
    out: &Path,
    s: &Suggestion,
    priced: &[Priced],
) -> Result<()> {
    if s.picks.is_empty() {
        bail!("nothing chosen, so {} is not written", out.display());
    }
    let taken: HashSet<String> = sweep
        .runs
        .iter()
        .filter_map(|r| r.variant.clone())
        .collect();
    let mut names: Vec<String> = Vec::new();
    let mut k = 1;
    for p in &s.picks {
        let base = priced[p.candidate]
            .point
            .variant
            .clone()
            .unwrap_or_else(|| "grid".into());
        let mut name = format!("{base}-next-{k}");
        while taken.contains(&name) {
            k += 1;
            name = format!("{base}-next-{k}");
        }
        k += 1;
        names.push(name);
    }
    let points: Vec<CandidatePoint> = s
        .picks
        .iter()
        .map(|p| priced[p.candidate].point.clone())
        .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut body = extended_text(text, &args.file, &points, &refs)?;
    if let Some(db) = &args.db
        && *db != sweep.db
    {
        body = with_db(&body, db);
    }
    let header = format!(
        "# Written by `loopscale suggest` from {} ({}, target {}, budget {:.3e} FLOPs):\n\
         # the source sweep, unchanged, and {} chosen run(s) as new variants at the end. Runs already\n\
         # in the database keep their keys; `loopscale run` on this file trains only the new ones.\n",
        args.file.display(),
        args.law.label(),
        args.target,
        args.budget,
        s.picks.len()
    );
    let full = format!("{header}{body}");
    // What `plan` will say, before anything is written over.
    let check = Sweep::from_str(&full, out)
        .map_err(|e| anyhow::anyhow!("the extended sweep does not load ({e}); nothing written"))?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(out, full).with_context(|| format!("cannot write {}", out.display()))?;
    let new: usize = s
        .picks
        .iter()
        .map(|p| priced[p.candidate].new_runs.len())
        .sum();
    println!(
        "wrote {}: {} runs, {new} of them new; `loopscale plan {}` lists them, `loopscale run {}` trains only the new ones",
        out.display(),
        check.runs.len(),
        out.display(),
        out.display()
    );
    Ok(())
}

/// The text with `db = "…"` in its `[sweep]` table (after the header line).
fn with_db(text: &str, db: &Path) -> String {
    let mut out = String::new();
    let mut in_sweep = false;
    let mut placed = false;
    for line in text.lines() {
        let t = line.trim_start();
        if in_sweep && t.starts_with("db") && t[2..].trim_start().starts_with('=') {
            continue; // replaced below
        }
        out.push_str(line);
        out.push('\n');
        if t.starts_with('[') {
            in_sweep = t.starts_with("[sweep]");
            if in_sweep && !placed {
                out.push_str(&format!("db = {:?}\n", db.display().to_string()));
                placed = true;
            }
        }
    }
    out
}
