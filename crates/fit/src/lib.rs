//! Fitting scaling laws to sweep results.
//!
//! Parametric laws (`compute`, `chinchilla`, `test-time`, pooled `test-time`, `parcae`,
//! `parcae-unified`) follow Epoch AI's replication of Hoffmann et al.'s approach 3 (Besiroglu
//! et al. 2024): each law is written as log L̂ = LSE(terms) with positive scales in log space;
//! the objective is the Huber loss (δ = 1e-3) of log-loss residuals; L-BFGS runs from a grid
//! of starts in parallel and the best optimum wins; a seeded bootstrap gives percentile
//! intervals for every parameter and derived quantity; a held-out check predicts the
//! largest-compute points (or the largest FLOP budget) from a fit on the rest. Each law is
//! constrained to its meaning (a saturating exponential's rate to what the samples can show)
//! and says in notes what its estimates do not support. The iso-FLOP procedure (approach 2)
//! is in [`isoflop`]; the tuned optimum of a hyperparameter against compute in [`hyper`].
//!
//! This module is pure mathematics over [`points::Points`]: it reads no database or file
//! (the analysis module turns a store or a CSV file into points) and records nothing (the
//! store records a fit from its own plain record type). It imports no other loopscale module.
//!
//! Modules, in the order the data flows: [`points`] the observations; [`laws`] defines each
//! law; [`huber`] the objective; [`solve`] the minimisers; [`bootstrap`] resampling and
//! intervals; [`identify`] profile intervals and what the data cannot pin down ("not
//! identified"); [`parametric`] the whole procedure; [`expr`] and [`written`] laws a
//! researcher writes as an expression, fitted by the same procedure; [`isoflop`] approach 2;
//! [`projection`] the loss surface by variable projection (approach 3 without starts) and
//! [`isoflop_two_ways`] its allocation exponents beside approach 2's; [`estimate`] the
//! serialisable result; [`design`] which runs to train next. The small dense solves (the
//! design's Cholesky, the NNLS inner solve, the iso-FLOP parabola) go through nalgebra, the one
//! linear-algebra crate of the workspace, not hand-written eliminations.

pub mod acquire;
pub mod bootstrap;
pub mod depth;
pub mod design;
pub mod estimate;
pub mod expr;
pub mod huber;
pub mod hyper;
pub mod identify;
pub mod isoflop;
pub mod isoflop_two_ways;
pub mod laws;
pub mod noise;
pub mod parametric;
pub mod points;
pub mod profile_spec;
pub mod projection;
pub mod rates;
pub mod solve;
pub mod written;

pub use bootstrap::BootstrapOptions;
pub use estimate::{FitReport, HeldOut, ParamEstimate};
pub use huber::{DEFAULT_HUBER_DELTA, Objective};
pub use isoflop::{Budgeting, IsoflopAxis, IsoflopOptions, IsoflopReport, fit_isoflop};
pub use isoflop_two_ways::{Agreement, ExponentTwoWays, TwoWays, fit_isoflop_two_ways};
pub use laws::{
    ChinchillaLaw, ComputeLaw, Design, Law, ParcaeLaw, ParcaeUnifiedLaw, RateBounds, TestTimeLaw,
    TestTimePooledLaw,
};
pub use noise::{Comparison, GroupStats, Verdict, compare};
pub use parametric::{
    FitOptions, HeldOutSpec, Resampling, fit_chinchilla, fit_compute, fit_law, fit_parcae,
    fit_parcae_unified, fit_test_time, fit_test_time_pooled,
};
pub use points::{Points, compute_frontier};
pub use solve::{Method, SolverOptions};
pub use written::{LawSpec, ParamSpec, Range, WrittenLaw};
