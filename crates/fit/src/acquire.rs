//! The offline acquisition loop: `suggest` replayed on a table of already-measured points.
//! Every row of the pool has a cost and a measured target that stays hidden until the row is
//! bought. The loop starts from a few cheap rows, fits the law, chooses the next row exactly as
//! `suggest` chooses a run (greedy ensemble-Kalman variance reduction per unit cost over the
//! bootstrap ensemble, [`RegionEnsemble`]), reveals it, and goes on until a budget is spent.
//! Random and Cheapest buy from the same pool under the same rules, so a benchmark compares
//! them in one run.
//!
//! Budgets are checkpoints (cumulative costs, ascending): the fit reported at a checkpoint uses
//! the rows bought while the spending stayed within it, and a row that would cross it is
//! charged to a later one. Refits start from the previous optimum (added to the start grid)
//! and happen when the bought set has grown by a quarter since the last fit: between refits the
//! ensemble's own Kalman update counts the rows already chosen, as a planned batch would.
//!
//! Pure mathematics: rows, targets and costs in, the fitted θ per checkpoint out.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::bootstrap::{BootstrapOptions, rng_for};
use super::design::{RegionEnsemble, noise_sd};
use super::huber::Objective;
use super::laws::{Design, Law};
use super::parametric::{FitOptions, bootstrap_thetas};
use super::solve::{SolverOptions, multistart};

/// How the next row is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// `suggest`'s choice: the largest drop of the region target's variance per unit cost.
    Suggest,
    /// Uniform over the rows not yet bought.
    Random,
    /// The cheapest row not yet bought (ties broken at random).
    Cheapest,
}

impl Policy {
    pub fn label(self) -> &'static str {
        match self {
            Policy::Suggest => "suggest",
            Policy::Random => "Random",
            Policy::Cheapest => "Cheapest",
        }
    }
}

/// A pool of measured rows and the region whose predictions are the target.
pub struct Pool<'a> {
    /// One design row per pool row (the law's variables).
    pub rows: Vec<&'a [f64]>,
    /// The measured targets, on the law's scale (revealed when bought).
    pub y: Vec<f64>,
    pub cost: Vec<f64>,
    /// The region's rows (inputs only: their targets are never read here).
    pub region: Vec<&'a [f64]>,
}

/// Settings of the loop.
#[derive(Debug, Clone)]
pub struct LoopOptions {
    /// Huber δ of the fit (large: least squares, as on the raw scale).
    pub huber_delta: f64,
    /// Starts of the first fit and of each checkpoint's fit, drawn from the law's grid.
    pub starts: usize,
    /// Starts of an intermediate refit, besides the previous optimum.
    pub refit_starts: usize,
    /// Bootstrap resamples of the ensemble `suggest` reads.
    pub resamples: usize,
    pub solver: SolverOptions,
    /// γ of `suggest`'s choice: variance drop per cost^γ ([`RegionEnsemble::cost_exponent`]).
    pub cost_exponent: f64,
}

impl Default for LoopOptions {
    fn default() -> Self {
        LoopOptions {
            huber_delta: 1e30,
            starts: 64,
            refit_starts: 8,
            resamples: 32,
            solver: SolverOptions {
                max_iters: 400,
                ..SolverOptions::default()
            },
            cost_exponent: 1.0,
        }
    }
}

/// What one run of the loop bought and fitted.
#[derive(Debug, Clone)]
pub struct Replay {
    /// Rows bought, in order.
    pub bought: Vec<usize>,
    /// Per checkpoint: how many of `bought` its fit used, and the fitted θ (`None` when no row
    /// fitted within it).
    pub checkpoints: Vec<(usize, Option<Vec<f64>>)>,
}

/// Starts for a fit: `n` evenly spread picks from the law's grid (shuffled by `rng`), after the
/// previous optimum when there is one.
fn starts_for(
    grid: &[Vec<f64>],
    prev: Option<&[f64]>,
    n: usize,
    rng: &mut impl Rng,
) -> Vec<Vec<f64>> {
    let mut s: Vec<Vec<f64>> = prev.map(|p| vec![p.to_vec()]).unwrap_or_default();
    if grid.len() <= n {
        s.extend(grid.iter().cloned());
    } else {
        let mut idx: Vec<usize> = (0..grid.len()).collect();
        idx.shuffle(rng);
        s.extend(idx[..n].iter().map(|&i| grid[i].clone()));
    }
    s
}

/// The multi-start fit on the rows `set` (any number of them: with fewer rows than parameters
/// the optimum is one of many, as a benchmark's own fitter would return).
fn fit_on<L: Law>(
    law: &L,
    pool: &Pool<'_>,
    set: &[usize],
    starts: &[Vec<f64>],
    opts: &LoopOptions,
) -> Option<(Vec<f64>, Design)> {
    if set.is_empty() {
        return None;
    }
    let width = pool.rows[0].len();
    let design = Design {
        width,
        rows: set
            .iter()
            .flat_map(|&i| pool.rows[i].iter().copied())
            .collect(),
        log_loss: set.iter().map(|&i| pool.y[i]).collect(),
    };
    let obj = Objective::new(law, &design, opts.huber_delta);
    let ms = multistart(&obj, starts, &opts.solver);
    ms.best
        .objective
        .is_finite()
        .then_some((ms.best.theta, design))
}

/// Runs the loop for one policy and seed up to the last of `checkpoints` (cumulative costs).
pub fn replay<L: Law>(
    law: &L,
    pool: &Pool<'_>,
    checkpoints: &[f64],
    policy: Policy,
    seed: u64,
    opts: &LoopOptions,
) -> Replay {
    let n = pool.rows.len();
    let p = law.n_params();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let grid = law.start_grid();
    let last = *checkpoints.last().unwrap_or(&0.0);
    let mut bought: Vec<usize> = Vec::new();
    let mut taken = vec![false; n];
    let mut spent = 0.0;
    // Random and Cheapest draw from every row left, as a benchmark's runner does; the stream
    // stops once the last checkpoint is crossed (that row counts for none).
    let buy = |i: usize, bought: &mut Vec<usize>, taken: &mut Vec<bool>, spent: &mut f64| {
        taken[i] = true;
        bought.push(i);
        *spent += pool.cost[i];
    };
    match policy {
        Policy::Random | Policy::Cheapest => {
            while spent <= last && bought.len() < n {
                let left: Vec<usize> = (0..n).filter(|&i| !taken[i]).collect();
                let i = if policy == Policy::Random {
                    left[rng.random_range(0..left.len())]
                } else {
                    let m = left
                        .iter()
                        .map(|&i| pool.cost[i])
                        .fold(f64::INFINITY, f64::min);
                    let ties: Vec<usize> =
                        left.into_iter().filter(|&i| pool.cost[i] == m).collect();
                    ties[rng.random_range(0..ties.len())]
                };
                buy(i, &mut bought, &mut taken, &mut spent);
            }
        }
        Policy::Suggest => {
            // A few cheap rows first: one more than the parameters, while they fit the budget.
            let mut by_cost: Vec<usize> = (0..n).collect();
            by_cost.sort_by(|&a, &b| pool.cost[a].total_cmp(&pool.cost[b]));
            for &i in &by_cost {
                if bought.len() > p || spent + pool.cost[i] > last {
                    break;
                }
                buy(i, &mut bought, &mut taken, &mut spent);
            }
            let mut theta: Option<Vec<f64>> = None;
            let mut fitted_at = 0usize;
            let mut planned: Vec<usize> = Vec::new();
            let mut stage = 0usize;
            loop {
                while stage < checkpoints.len() && spent >= checkpoints[stage] {
                    stage += 1;
                }
                if stage == checkpoints.len() {
                    break;
                }
                let cap = checkpoints[stage];
                let affordable = |i: usize, s: f64| !taken[i] && s + pool.cost[i] <= cap;
                if !(0..n).any(|i| affordable(i, spent)) {
                    stage += 1;
                    continue;
                }
                if planned.is_empty() {
                    // Refit when the bought set grew by a quarter (warm from the last θ).
                    if theta.is_none() || bought.len() * 4 >= fitted_at * 5 {
                        let k = if theta.is_none() {
                            opts.starts
                        } else {
                            opts.refit_starts
                        };
                        let starts = starts_for(&grid, theta.as_deref(), k, &mut rng);
                        if let Some((th, _)) = fit_on(law, pool, &bought, &starts, opts) {
                            theta = Some(th);
                        }
                        fitted_at = bought.len();
                    }
                    planned = match theta.as_ref() {
                        Some(th) => plan(law, pool, &bought, th, opts, seed, &|i, s| {
                            affordable(i, spent + s)
                        }),
                        None => Vec::new(),
                    };
                    // Nothing teaches more per cost: the cheapest affordable row.
                    if planned.is_empty() {
                        let i = (0..n)
                            .filter(|&i| affordable(i, spent))
                            .min_by(|&a, &b| pool.cost[a].total_cmp(&pool.cost[b]))
                            .expect("an affordable row exists");
                        planned.push(i);
                    }
                    planned.reverse();
                }
                let i = planned.pop().expect("planned is not empty");
                if affordable(i, spent) {
                    buy(i, &mut bought, &mut taken, &mut spent);
                } else {
                    planned.clear();
                }
                // A batch is planned up to the next refit; the rows it chose are revealed one
                // by one.
                if bought.len() * 4 >= fitted_at * 5 {
                    planned.clear();
                }
            }
        }
    }
    // Each checkpoint's fit: the longest prefix of purchases within it, from full starts plus
    // the previous checkpoint's optimum.
    let mut out = Vec::new();
    let mut prev: Option<Vec<f64>> = None;
    for &c in checkpoints {
        let mut cum = 0.0;
        let k = bought
            .iter()
            .take_while(|&&i| {
                cum += pool.cost[i];
                cum <= c
            })
            .count();
        let starts = starts_for(&grid, prev.as_deref(), opts.starts, &mut rng);
        let th = fit_on(law, pool, &bought[..k], &starts, opts).map(|(t, _)| t);
        if th.is_some() {
            prev = th.clone();
        }
        out.push((k, th));
    }
    Replay {
        bought,
        checkpoints: out,
    }
}

/// One planned batch: the bootstrap ensemble of the fit on `bought` at `theta`, and the greedy
/// region choice among the rows `eligible(i, spent_in_batch)` allows.
fn plan<L: Law>(
    law: &L,
    pool: &Pool<'_>,
    bought: &[usize],
    theta: &[f64],
    opts: &LoopOptions,
    seed: u64,
    eligible: &dyn Fn(usize, f64) -> bool,
) -> Vec<usize> {
    let width = pool.rows[0].len();
    let design = Design {
        width,
        rows: bought
            .iter()
            .flat_map(|&i| pool.rows[i].iter().copied())
            .collect(),
        log_loss: bought.iter().map(|&i| pool.y[i]).collect(),
    };
    let fit_opts = FitOptions {
        huber_delta: opts.huber_delta,
        solver: opts.solver,
        ..FitOptions::default()
    };
    let b = BootstrapOptions {
        resamples: opts.resamples,
        level: 0.95,
        seed: rng_for(seed, bought.len() as u64).random(),
        perturbed_starts: 1,
    };
    let (members, _) = bootstrap_thetas(law, &design, theta, &fit_opts, &b);
    if members.len() < 10 {
        return Vec::new();
    }
    let ens = RegionEnsemble::new(law, &members, &pool.rows, &pool.region)
        .with_cost_exponent(opts.cost_exponent);
    if ens.members < 10 {
        return Vec::new();
    }
    let sd = noise_sd(law, &design, theta);
    // Plan as many as the next refit will reveal.
    let batch = (bought.len() / 4).max(1);
    ens.choose(&pool.cost, eligible, sd, batch, 1e-6)
        .into_iter()
        .map(|p| p.candidate)
        .collect()
}

/// R² = 1 − SS_res/SS_tot of predictions against observations about the observations' mean,
/// clipped to [−1, 1]; −1 when it is not finite or nothing is predicted (a benchmark's rule).
pub fn clipped_r2(pred: &[f64], obs: &[f64]) -> f64 {
    if obs.is_empty() || pred.len() != obs.len() {
        return -1.0;
    }
    let m = obs.iter().sum::<f64>() / obs.len() as f64;
    let ss_tot: f64 = obs.iter().map(|o| (o - m) * (o - m)).sum();
    let ss_res: f64 = pred.iter().zip(obs).map(|(p, o)| (p - o) * (p - o)).sum();
    let r2 = 1.0 - ss_res / ss_tot;
    if r2.is_finite() {
        r2.clamp(-1.0, 1.0)
    } else {
        -1.0
    }
}
