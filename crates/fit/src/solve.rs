//! Minimisation: L-BFGS (argmin, Moré–Thuente line search, memory 10 as in SciPy) from
//! each start of a grid, in parallel with rayon; Nelder–Mead (argmin) for objectives used
//! without a gradient. The best start wins; we count how many starts converged.

use std::cell::RefCell;

use argmin::core::{CostFunction, Error, Executor, Gradient, State, TerminationReason};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::neldermead::NelderMead;
use argmin::solver::quasinewton::LBFGS;
use rayon::prelude::*;
use serde::Serialize;

use super::huber::Objective;
use super::laws::Law;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Method {
    Lbfgs,
    NelderMead,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct SolverOptions {
    pub method: Method,
    pub max_iters: u64,
    /// Stop when ‖∇‖₂ falls below this. The objective is a sum of Huber terms of size
    /// ~δ·|r| ≈ 1e-5 per point, so tolerances are far below SciPy's defaults: Epoch AI
    /// found loose tolerances to be one cause of Hoffmann et al.'s implausible intervals.
    pub tol_grad: f64,
    /// Stop when an iteration lowers the objective by less than this (absolute).
    pub tol_cost: f64,
    pub lbfgs_memory: usize,
}

impl Default for SolverOptions {
    fn default() -> Self {
        SolverOptions {
            method: Method::Lbfgs,
            max_iters: 1000,
            tol_grad: 1e-10,
            tol_cost: 1e-15,
            lbfgs_memory: 10,
        }
    }
}

/// Outcome of one start.
#[derive(Debug, Clone, Serialize)]
pub struct Solution {
    pub theta: Vec<f64>,
    pub objective: f64,
    pub converged: bool,
    pub iterations: u64,
}

/// Outcome of a multi-start run.
#[derive(Debug, Clone, Serialize)]
pub struct MultiStart {
    pub best: Solution,
    pub starts: usize,
    /// Starts whose solver reported convergence (a small gradient or a stalled objective:
    /// a start can converge to a worse stationary point or plateau).
    pub converged: usize,
    /// Starts that ended within a relative 1e-9 of the best objective.
    pub at_best: usize,
}

/// argmin calls `cost` then `gradient` at the same point during line searches; one
/// evaluation produces both, so the last one is cached.
struct Problem<'o, 'a, L: Law> {
    obj: &'o Objective<'a, L>,
    last: RefCell<Option<Evaluation>>,
}

/// θ, objective, gradient.
type Evaluation = (Vec<f64>, f64, Vec<f64>);

impl<L: Law> Problem<'_, '_, L> {
    fn eval(&self, theta: &[f64]) -> (f64, Vec<f64>) {
        if let Some((t, v, g)) = self.last.borrow().as_ref()
            && t.as_slice() == theta
        {
            return (*v, g.clone());
        }
        let mut g = vec![0.0; theta.len()];
        let v = self.obj.value_grad(theta, &mut g);
        *self.last.borrow_mut() = Some((theta.to_vec(), v, g.clone()));
        (v, g)
    }
}

impl<L: Law> CostFunction for Problem<'_, '_, L> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, p: &Vec<f64>) -> Result<f64, Error> {
        Ok(self.eval(p).0)
    }
}

impl<L: Law> Gradient for Problem<'_, '_, L> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, p: &Vec<f64>) -> Result<Vec<f64>, Error> {
        Ok(self.eval(p).1)
    }
}

/// Minimise from one start. A start whose run errors (e.g. a non-finite objective at the
/// start) is reported as not converged with an infinite objective rather than aborting.
pub fn minimize<L: Law>(obj: &Objective<'_, L>, start: &[f64], opts: &SolverOptions) -> Solution {
    let failed = || Solution {
        theta: start.to_vec(),
        objective: f64::INFINITY,
        converged: false,
        iterations: 0,
    };
    let problem = Problem {
        obj,
        last: RefCell::new(None),
    };
    match opts.method {
        Method::Lbfgs => {
            let Ok(solver) = LBFGS::new(MoreThuenteLineSearch::new(), opts.lbfgs_memory)
                .with_tolerance_grad(opts.tol_grad)
                .and_then(|s| s.with_tolerance_cost(opts.tol_cost))
            else {
                return failed();
            };
            let run = Executor::new(problem, solver)
                .configure(|s| s.param(start.to_vec()).max_iters(opts.max_iters))
                .timer(false)
                .run();
            match run {
                Ok(res) => finish(res.state(), start),
                Err(_) => failed(),
            }
        }
        Method::NelderMead => {
            // Initial simplex: the start plus a step along each axis, scaled to the coordinate.
            let mut simplex = vec![start.to_vec()];
            for j in 0..start.len() {
                let mut v = start.to_vec();
                v[j] += 0.1 * start[j].abs().max(0.5);
                simplex.push(v);
            }
            let Ok(solver) = NelderMead::new(simplex).with_sd_tolerance(1e-14) else {
                return failed();
            };
            let run = Executor::new(problem, solver)
                .configure(|s| s.max_iters(opts.max_iters.max(5000)))
                .timer(false)
                .run();
            match run {
                Ok(res) => finish(res.state(), start),
                Err(_) => failed(),
            }
        }
    }
}

fn finish<S>(state: &S, start: &[f64]) -> Solution
where
    S: State<Param = Vec<f64>, Float = f64>,
{
    let theta = state
        .get_best_param()
        .cloned()
        .unwrap_or_else(|| start.to_vec());
    let objective = state.get_best_cost();
    let converged = matches!(
        state.get_termination_reason(),
        Some(TerminationReason::SolverConverged)
    ) && objective.is_finite();
    Solution {
        theta,
        objective,
        converged,
        iterations: state.get_iter(),
    }
}

/// Minimise from every start in parallel and keep the lowest objective (ties go to the
/// earlier start, so the result does not depend on thread scheduling).
pub fn multistart<L: Law>(
    obj: &Objective<'_, L>,
    starts: &[Vec<f64>],
    opts: &SolverOptions,
) -> MultiStart {
    let sols: Vec<Solution> = starts.par_iter().map(|s| minimize(obj, s, opts)).collect();
    best_of(sols)
}

/// Same, sequentially: for use inside an already-parallel loop (bootstrap resamples).
pub fn multistart_seq<L: Law>(
    obj: &Objective<'_, L>,
    starts: &[Vec<f64>],
    opts: &SolverOptions,
) -> MultiStart {
    best_of(starts.iter().map(|s| minimize(obj, s, opts)).collect())
}

fn best_of(sols: Vec<Solution>) -> MultiStart {
    let starts = sols.len();
    let converged = sols.iter().filter(|s| s.converged).count();
    let best_obj = sols
        .iter()
        .map(|s| s.objective)
        .fold(f64::INFINITY, f64::min);
    let at_best = sols
        .iter()
        .filter(|s| s.objective - best_obj <= 1e-9 * best_obj.abs())
        .count();
    let best = sols
        .into_iter()
        .filter(|s| s.objective.is_finite())
        .reduce(|a, b| if b.objective < a.objective { b } else { a })
        .unwrap_or(Solution {
            theta: Vec::new(),
            objective: f64::INFINITY,
            converged: false,
            iterations: 0,
        });
    MultiStart {
        best,
        starts,
        converged,
        at_best,
    }
}
