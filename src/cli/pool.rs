//! `loopscale suggest --pool FILE.csv`: `suggest` choosing among rows already measured (a
//! published sweep, a table of past runs) rather than new runs, with a law written as an
//! expression (`--law-expr`, as `fit` takes it). Rows whose target cell is empty are the
//! candidates; the others are fitted. `--replay` runs the whole acquisition loop offline on a
//! fully measured table (`fit::acquire`): fit, choose, reveal, refit, to each budget, beside
//! Random and Cheapest, scored on `--region`'s rows.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use super::written::{WrittenFlags, law_spec};
use crate::analysis::csv::records;
use crate::fit::BootstrapOptions;
use crate::fit::acquire::{LoopOptions, Policy, Pool, clipped_r2, replay};
use crate::fit::design::{RegionEnsemble, noise_sd};
use crate::fit::laws::Law;
use crate::fit::parametric::{FitOptions, bootstrap_thetas, fit_theta};
use crate::fit::written::{LawSpec, Scale, WrittenLaw};

/// The flags of `suggest` that `--pool` shares with choosing new runs of a sweep.
pub struct PoolRun {
    pub budget: Option<f64>,
    pub resamples: usize,
    pub level: f64,
    pub seed: u64,
}

/// The flags of `suggest --pool`.
#[derive(Args, Debug, Default)]
pub struct PoolArgs {
    /// Choose among the rows of this CSV file instead of new runs of a sweep: rows with the
    /// law's target filled are fitted, rows with it empty are the candidates.
    #[arg(long, value_name = "FILE.csv")]
    pub pool: Option<PathBuf>,
    /// The column holding each row's cost (FLOPs, GPU-hours, any positive unit the budget uses).
    #[arg(long, default_value = "cost", requires = "pool")]
    pub cost_col: String,
    /// The law, written as an expression (as `fit --law-expr`): over the file's columns with
    /// --pool, e.g. 'loss = E + A*N^(-alpha) + B*D^(-beta)'; with a sweep file, over its runs'
    /// columns (N, D, C, r, n_once, n_rec, configuration keys), or the name of one of its
    /// `[analysis.laws.NAME]` (as --law NAME).
    #[arg(long, value_name = "EXPR|NAME")]
    pub law_expr: Option<String>,
    /// Bounds of a parameter of --law-expr, NAME=LO:HI (repeat; inf and -inf allowed).
    #[arg(long = "param", value_name = "NAME=LO:HI", requires = "law_expr")]
    pub param: Vec<String>,
    /// Fit the target itself by least squares rather than its log (targets that may be zero or
    /// negative, laws published as least-squares fits).
    #[arg(long, requires = "pool")]
    pub raw_scale: bool,
    /// A CSV file of the inputs whose predictions should be settled (the extrapolation points
    /// the study cares about); by default the candidates themselves. With --replay its target
    /// column scores each fit (R²).
    #[arg(long, value_name = "FILE.csv", requires = "pool")]
    pub region: Option<PathBuf>,
    /// Replay the acquisition loop offline on a fully measured pool: start from a few cheap
    /// rows, fit, choose, reveal, refit, up to each --budget-frac; Random and Cheapest beside.
    #[arg(long, requires = "region")]
    pub replay: bool,
    /// Budgets of --replay as fractions of the pool's total cost.
    #[arg(long, value_delimiter = ',', default_value = "0.01,0.05,0.1")]
    pub budget_frac: Vec<f64>,
    /// Repeats of --replay (seeds 0, 1, …).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// γ of the choice: the largest drop of the region's variance per cost^γ. 1 is per unit
    /// cost; below 1 favours costlier rows (ScaleBench's paper uses γ ≈ 0.3–0.4), 0 ignores cost
    /// within the budget.
    #[arg(long, default_value_t = 1.0, value_name = "GAMMA", requires = "pool")]
    pub cost_exponent: f64,
}

/// A CSV file read as text cells, for columns that may be numbers, text or empty.
pub struct CsvTable {
    pub path: PathBuf,
    pub header: Vec<String>,
    pub cells: Vec<Vec<String>>,
}

impl CsvTable {
    pub fn read(path: &Path) -> Result<CsvTable> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let (header, records) =
            records(&text).with_context(|| format!("parsing {}", path.display()))?;
        let cells = records.into_iter().map(|(_, r)| r).collect();
        Ok(CsvTable {
            path: path.to_path_buf(),
            header,
            cells,
        })
    }

    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    fn index(&self, col: &str) -> Result<usize> {
        self.header.iter().position(|h| h == col).ok_or_else(|| {
            anyhow::anyhow!(
                "{}: no column `{col}` (its columns: {})",
                self.path.display(),
                self.header.join(", ")
            )
        })
    }

    /// A column as numbers; empty cells are NaN (not yet measured), text is an error.
    pub fn numbers(&self, col: &str) -> Result<Vec<f64>> {
        let j = self.index(col)?;
        self.cells
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let c = r[j].trim();
                if c.is_empty() {
                    return Ok(f64::NAN);
                }
                c.parse::<f64>().map_err(|_| {
                    anyhow::anyhow!(
                        "{} row {}: column `{col}` holds `{c}`, not a number",
                        self.path.display(),
                        i + 1
                    )
                })
            })
            .collect()
    }

    /// A column as text.
    pub fn text(&self, col: &str) -> Result<Vec<String>> {
        let j = self.index(col)?;
        Ok(self.cells.iter().map(|r| r[j].clone()).collect())
    }

    /// The names of the columns whose non-empty cells all read as numbers.
    pub fn numeric_columns(&self) -> Vec<String> {
        (0..self.header.len())
            .filter(|&j| {
                self.cells
                    .iter()
                    .all(|r| r[j].trim().is_empty() || r[j].trim().parse::<f64>().is_ok())
            })
            .map(|j| self.header[j].clone())
            .collect()
    }

    /// Every row's costs from `col`: present, finite and positive, or an error naming the file,
    /// the column and the row.
    pub fn costs(&self, col: &str) -> Result<Vec<f64>> {
        if !self.header.iter().any(|h| h == col) {
            bail!(
                "{}: no cost column `{col}` (its columns: {}); name the cost column with --cost-col",
                self.path.display(),
                self.header.join(", ")
            );
        }
        let c = self.numbers(col)?;
        if let Some((i, v)) = c
            .iter()
            .enumerate()
            .find(|(_, v)| !(v.is_finite() && **v > 0.0))
        {
            bail!(
                "{} row {}: cost column `{col}` is {v}; every row needs a positive cost (what measuring it spent)",
                self.path.display(),
                i + 1
            );
        }
        Ok(c)
    }

    /// Each row's values of the law's variables (in its design-row order), checked finite.
    pub fn rows(&self, law: &WrittenLaw) -> Result<Vec<Vec<f64>>> {
        let cols: Vec<Vec<f64>> = law
            .vars
            .iter()
            .map(|(_, c)| self.numbers(c))
            .collect::<Result<_>>()?;
        for ((s, c), v) in law.vars.iter().zip(&cols) {
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                bail!(
                    "{} row {}: variable `{s}` (column `{c}`) is empty or not finite",
                    self.path.display(),
                    i + 1
                );
            }
        }
        Ok((0..self.len())
            .map(|i| cols.iter().map(|c| c[i]).collect())
            .collect())
    }
}

/// The law of `--law-expr`, resolved against the pool's numeric columns.
pub fn pool_law(spec: &LawSpec, table: &CsvTable) -> Result<WrittenLaw> {
    WrittenLaw::new(spec, &table.numeric_columns())
        .with_context(|| format!("law over {}", table.path.display()))
}

/// `suggest --pool`: fit the law to the measured rows, then choose among the unmeasured ones
/// (or, with `--replay`, run the acquisition loop offline).
pub fn suggest_pool(p: &PoolArgs, run: &PoolRun) -> Result<i32> {
    let path = p.pool.as_ref().expect("--pool given");
    let Some(expr) = p.law_expr.as_deref() else {
        bail!(
            "--pool needs the law as an expression over its columns: --law-expr 'loss = E + A*N^(-alpha)'"
        );
    };
    if !(p.cost_exponent.is_finite() && p.cost_exponent >= 0.0) {
        bail!(
            "--cost-exponent {}: expected a number ≥ 0 (1: per unit cost; 0.3–0.4: the ScaleBench paper's)",
            p.cost_exponent
        );
    }
    let table = CsvTable::read(path)?;
    let mut spec = law_spec(
        &WrittenFlags {
            law_expr: expr,
            params: &p.param,
            starts: &[],
            derived: &[],
            vars: &[],
        },
        path,
        None,
    )?;
    if p.raw_scale {
        spec.scale = Scale::Raw;
    }
    let law = pool_law(&spec, &table)?;
    let costs = table.costs(&p.cost_col)?;
    let y = table.numbers(&law.target)?;
    let rows = table.rows(&law)?;
    let region_table = p.region.as_deref().map(CsvTable::read).transpose()?;
    let region_rows = match &region_table {
        Some(t) => Some(t.rows(&law).with_context(|| {
            format!("the region must hold the law's variables ({})", law.roles())
        })?),
        None => None,
    };
    let delta = match law.scale() {
        Scale::Raw => 1e30,
        Scale::Log => crate::fit::DEFAULT_HUBER_DELTA,
    };
    println!("law: {}\n{}", law.text(), law.roles());
    if p.replay {
        let region_table = region_table.expect("--replay requires --region");
        let region_y = region_table.numbers(&law.target)?;
        if let Some(i) = y.iter().position(|v| !v.is_finite()) {
            bail!(
                "{} row {}: --replay needs every row measured; `{}` is empty there",
                path.display(),
                i + 1,
                law.target
            );
        }
        return replay_pool(
            &law,
            &rows,
            &y,
            &costs,
            region_rows.as_deref().unwrap_or_default(),
            &region_y,
            &p.budget_frac,
            p.repeats,
            delta,
            p.cost_exponent,
        );
    }
    let Some(budget) = run.budget else {
        bail!("--pool: give --budget, the cost the chosen rows may spend (or --replay)");
    };
    let measured: Vec<usize> = (0..y.len()).filter(|&i| y[i].is_finite()).collect();
    let candidates: Vec<usize> = (0..y.len()).filter(|&i| !y[i].is_finite()).collect();
    if candidates.is_empty() {
        bail!(
            "{}: every row has `{}` measured, so there is nothing to choose; leave the target empty in the rows that could be measured next (or use --replay)",
            path.display(),
            law.target
        );
    }
    let design = law.design_of(
        measured
            .iter()
            .flat_map(|&i| rows[i].iter().copied())
            .collect(),
        &measured.iter().map(|&i| y[i]).collect::<Vec<_>>(),
    );
    if measured.len() <= law.n_params() {
        bail!(
            "{}: {} measured row(s) for {} parameters; measure more rows (the cheapest ones, say) before asking which to add",
            path.display(),
            measured.len(),
            law.n_params()
        );
    }
    let opts = FitOptions {
        huber_delta: delta,
        ..FitOptions::default()
    };
    let ms = fit_theta(&law, &design, &opts)?;
    let b = BootstrapOptions {
        resamples: run.resamples,
        level: run.level,
        seed: run.seed,
        perturbed_starts: 1,
    };
    let (members, _) = bootstrap_thetas(&law, &design, &ms.best.theta, &opts, &b);
    let cand_rows: Vec<&[f64]> = candidates.iter().map(|&i| &rows[i][..]).collect();
    let region: Vec<&[f64]> = match &region_rows {
        Some(r) => r.iter().map(|r| &r[..]).collect(),
        None => cand_rows.clone(),
    };
    let ens = RegionEnsemble::new(&law, &members, &cand_rows, &region)
        .with_cost_exponent(p.cost_exponent);
    if ens.members < 10 {
        bail!(
            "only {} bootstrap members predict every candidate and region point finitely: too few to say which rows would teach most",
            ens.members
        );
    }
    let sd = noise_sd(&law, &design, &ms.best.theta);
    let cand_cost: Vec<f64> = candidates.iter().map(|&i| costs[i]).collect();
    let picks = ens.choose(
        &cand_cost,
        &|i, spent| spent + cand_cost[i] <= budget,
        sd,
        usize::MAX,
        1e-2,
    );
    println!(
        "fitted on {} measured rows; {} candidates; ensemble of {} members; noise σ = {sd:.3e}",
        measured.len(),
        candidates.len(),
        ens.members
    );
    if picks.is_empty() {
        println!(
            "chosen: none within a budget of {budget:.3e} (no affordable row narrows the region's predictions)"
        );
        return Ok(0);
    }
    println!("chosen (data row, cost, cumulative cost, region sd left as a fraction of now):");
    for pk in &picks {
        println!(
            "  row {:>5}  {:>10.3e}  {:>10.3e}  {:.3}",
            candidates[pk.candidate] + 1,
            pk.flops,
            pk.cumulative_flops,
            pk.width_after
        );
    }
    Ok(0)
}

/// `--replay`: the offline loop for each policy and repeat, R² on the region per budget.
#[allow(clippy::too_many_arguments)]
fn replay_pool(
    law: &WrittenLaw,
    rows: &[Vec<f64>],
    y: &[f64],
    costs: &[f64],
    region_rows: &[Vec<f64>],
    region_y: &[f64],
    fracs: &[f64],
    repeats: usize,
    delta: f64,
    cost_exponent: f64,
) -> Result<i32> {
    if fracs.iter().any(|f| !(*f > 0.0 && *f <= 1.0)) || fracs.windows(2).any(|w| w[0] >= w[1]) {
        bail!("--budget-frac: fractions in (0, 1], ascending, e.g. 0.01,0.05,0.1");
    }
    let total: f64 = costs.iter().sum();
    let checkpoints: Vec<f64> = fracs.iter().map(|f| f * total).collect();
    let pool = Pool {
        rows: rows.iter().map(|r| &r[..]).collect(),
        y: y.iter().map(|&v| law.to_scale(v)).collect(),
        cost: costs.to_vec(),
        region: region_rows.iter().map(|r| &r[..]).collect(),
    };
    let opts = LoopOptions {
        huber_delta: delta,
        cost_exponent,
        ..LoopOptions::default()
    };
    println!(
        "replay: {} rows (total cost {total:.3e}), region of {} rows, {repeats} repeat(s); mean held-out R² (clipped to [-1, 1])",
        rows.len(),
        region_rows.len()
    );
    print!("{:<10}", "policy");
    for f in fracs {
        print!(" {:>8}", format!("{:.0}%", f * 100.0));
    }
    println!();
    for policy in [Policy::Suggest, Policy::Random, Policy::Cheapest] {
        let mut sums = vec![0.0; fracs.len()];
        for seed in 0..repeats as u64 {
            let r = replay(law, &pool, &checkpoints, policy, seed, &opts);
            for (k, (_, th)) in r.checkpoints.iter().enumerate() {
                sums[k] += score(law, th.as_deref(), region_rows, region_y);
            }
        }
        print!("{:<10}", policy.label());
        for s in &sums {
            print!(" {:>8.3}", s / repeats.max(1) as f64);
        }
        println!();
    }
    Ok(0)
}

/// Held-out R² of the fit θ on the region (−1 without a fit).
pub fn score(law: &WrittenLaw, theta: Option<&[f64]>, rows: &[Vec<f64>], obs: &[f64]) -> f64 {
    let Some(th) = theta else { return -1.0 };
    let pred = predictions(law, th, rows);
    clipped_r2(&pred, obs)
}

/// The law's predictions (in the target's units) at rows.
pub fn predictions(law: &WrittenLaw, theta: &[f64], rows: &[Vec<f64>]) -> Vec<f64> {
    let mut g = vec![0.0; law.n_params()];
    rows.iter()
        .map(|r| law.loss_of(law.log_predict(theta, r, &mut g)))
        .collect()
}
