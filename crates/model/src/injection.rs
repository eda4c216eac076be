//! Parcae's injection: how the prelude's output `e` enters the recurrent state `h` each loop.
//!
//! Four kinds ([`Injection`]):
//! - `diagonal` (Parcae): `h ← Ā ⊙ h + Δ ⊙ (B e)` with `Ā = exp(-(Δ·A + ε))`, `A = exp(A_log)`,
//!   `Δ = softplus(dt_bias)`. Every entry of `Ā` lies in `[0, exp(-ε)]`, so the map `h ↦ Ā ⊙ h`
//!   has spectral norm < 1 for *any* parameter values. `ε = MIN_DECAY_RATE` is our addition: it
//!   keeps `Ā < 1` in floating point too (without it `exp(-1e-9)` rounds to 1 in f32), and
//!   `A_log` is clamped to ±30 before `exp` so that `Δ·A` is never `0·∞`.
//!   Defaults: `A_log = 0`, `B = I`, `dt_bias` solved so that `Ā = 0.447` on every channel.
//! - `add`: `h ← h + e`; when the recurrent width `r` differs from `d_model`, `e` is first
//!   projected by a learned `B` (`d × r`, identity-shaped init).
//! - `linear` (Huginn-style concat adapter): `h ← W [h; e] = W_h h + W_e e`, `W` of shape
//!   `(r + d, r)`. Initialised to `[I; I]` plus N(0, 0.02²) noise, i.e. it starts as the additive
//!   injection and is free to learn anything, its spectral norm included.
//! - `none` (LoopFormer): no injection; the state starts as `e` (`B e` when `r ≠ d`).
//!
//! The loop-invariant part of every injection (`Δ ⊙ B e`, `W_e e`, `B e`) is computed once per
//! forward pass ([`InjectionLayer::prepare`]), not once per loop, and [`InjectionLayer::param_split`]
//! counts it once too.

use candle_core::{DType, Result, Tensor};

use super::config::Injection;
use super::grad::param;
use super::layers::{project, softplus};
use super::params::{ParamRole, ParamStore, identity_values};

/// The diagonal injection's initial per-channel decay `Ā` (Parcae's default).
pub const DEFAULT_DECAY: f64 = 0.447;
/// Floor on the decay rate `Δ·A`, so `Ā ≤ exp(-1e-4) < 1` even in f32.
pub const MIN_DECAY_RATE: f64 = 1e-4;
/// `A_log` is clamped to this range before `exp`: `e^±30` is already far past any useful decay.
const A_LOG_LIMIT: f64 = 30.0;
/// The injection's parameters.
pub enum InjectionLayer {
    /// `(r,)`, `(r,)`, `(d, r)`.
    Diagonal {
        a_log: Tensor,
        dt_bias: Tensor,
        b: Tensor,
    },
    /// `B` `(d, r)` only when `r ≠ d`.
    Add { b: Option<Tensor> },
    /// `W` `(r + d, r)`: rows `0..r` act on `h`, rows `r..r+d` on `e`.
    Linear { w: Tensor, r: usize },
    /// No injection: the state starts as `e` (`B e`, `B` `(d, r)`, only when `r ≠ d`).
    None { b: Option<Tensor> },
}

/// An injection with its loop-invariant part computed: `h ← state_map(h) + drive`; or, for
/// `injection = "none"`, the state's start `drive` and nothing per loop.
pub struct Injected {
    drive: Tensor,
    state_map: StateMap,
    per_loop: bool,
}

/// The injection's map on the state.
enum StateMap {
    Identity,
    /// Per-channel `Ā`, `(r,)`.
    Decay(Tensor),
    /// `W_h`, `(r, r)`.
    Matrix(Tensor),
}

impl Injected {
    /// One loop's injection: `h ← state_map(h) + drive` (the state as it is without one).
    pub fn apply(&self, h: &Tensor) -> Result<Tensor> {
        if !self.per_loop {
            return Ok(h.clone());
        }
        let mapped = match &self.state_map {
            StateMap::Identity => h.clone(),
            StateMap::Decay(decay) => h.broadcast_mul(decay)?,
            StateMap::Matrix(w_h) => project(h, w_h)?,
        };
        mapped + &self.drive
    }

    /// The positions `start..start + len` of this injection (a chunk of the sequence).
    pub fn narrow(&self, start: usize, len: usize) -> Result<Injected> {
        Ok(Injected {
            drive: self.drive.narrow(1, start, len)?,
            state_map: match &self.state_map {
                StateMap::Identity => StateMap::Identity,
                StateMap::Decay(a) => StateMap::Decay(a.clone()),
                StateMap::Matrix(w) => StateMap::Matrix(w.clone()),
            },
            per_loop: self.per_loop,
        })
    }

    /// The state before the first loop: `h0`, or the drive itself without a per-loop injection.
    pub fn start(&self, h0: &Tensor) -> Tensor {
        if self.per_loop {
            h0.clone()
        } else {
            self.drive.clone()
        }
    }
}

/// The injection's parameters (see the module docs).
impl InjectionLayer {
    /// `noise_std`: the linear injection's noise around `[I; I]`.
    pub fn new(
        params: &mut ParamStore,
        kind: Injection,
        d: usize,
        r: usize,
        noise_std: f64,
    ) -> Result<Self> {
        // `B` `(d, r)`, identity-shaped: the loop-invariant projection of `e`.
        let b_matrix = |params: &mut ParamStore| {
            params.constant(
                "injection.B",
                &[d, r],
                identity_values(d, r),
                ParamRole::Recurrent,
            )
        };
        Ok(match kind {
            Injection::Diagonal => {
                // Ā = exp(-(softplus(dt)·e⁰ + ε)) = 0.447  ⇒  softplus(dt) = -ln 0.447 - ε.
                let delta = -DEFAULT_DECAY.ln() - MIN_DECAY_RATE;
                let dt0 = delta.exp_m1().ln(); // softplus⁻¹
                InjectionLayer::Diagonal {
                    a_log: params.constant(
                        "injection.A_log",
                        &[r],
                        vec![0.0; r],
                        ParamRole::Recurrent,
                    )?,
                    dt_bias: params.constant(
                        "injection.dt_bias",
                        &[r],
                        vec![dt0; r],
                        ParamRole::Recurrent,
                    )?,
                    b: b_matrix(params)?,
                }
            }
            Injection::None => InjectionLayer::None {
                b: (r != d).then(|| b_matrix(params)).transpose()?,
            },
            Injection::Add => InjectionLayer::Add {
                b: (r != d).then(|| b_matrix(params)).transpose()?,
            },
            Injection::Linear => {
                let mut values = identity_values(r, r);
                values.extend(identity_values(d, r));
                let noise = params.sample_normal(values.len(), noise_std)?;
                let values = values.iter().zip(noise).map(|(v, n)| v + n).collect();
                InjectionLayer::Linear {
                    w: params.constant("injection.W", &[r + d, r], values, ParamRole::Adapter)?,
                    r,
                }
            }
        })
    }

    /// The diagonal injection's `Ā = exp(-(softplus(dt_bias)·exp(A_log) + ε))`, `(r,)`.
    fn decay(a_log: &Tensor, dt_bias: &Tensor) -> Result<Tensor> {
        let a = a_log.clamp(-A_LOG_LIMIT, A_LOG_LIMIT)?.exp()?;
        let rate = ((softplus(dt_bias)? * a)? + MIN_DECAY_RATE)?;
        rate.neg()?.exp()
    }

    /// Precomputes the loop-invariant drive from `e` `(batch, time, d)`.
    pub fn prepare(&self, e: &Tensor) -> Result<Injected> {
        Ok(match self {
            InjectionLayer::Diagonal { a_log, dt_bias, b } => {
                let (a_log, dt_bias) = (param(a_log), param(dt_bias));
                Injected {
                    drive: project(e, &param(b))?.broadcast_mul(&softplus(&dt_bias)?)?,
                    state_map: StateMap::Decay(Self::decay(&a_log, &dt_bias)?),
                    per_loop: true,
                }
            }
            InjectionLayer::Add { b } | InjectionLayer::None { b } => Injected {
                drive: match b {
                    Some(b) => project(e, &param(b))?,
                    None => e.clone(),
                },
                state_map: StateMap::Identity,
                per_loop: matches!(self, InjectionLayer::Add { .. }),
            },
            InjectionLayer::Linear { w, r } => Injected {
                drive: project(e, &param(w).narrow(0, *r, w.dim(0)? - r)?)?,
                state_map: StateMap::Matrix(param(w).narrow(0, 0, *r)?),
                per_loop: true,
            },
        })
    }

    /// The diagonal injection's per-channel `Ā` `(r,)`; `None` for the other injections.
    pub fn decay_values(&self) -> Result<Option<Tensor>> {
        match self {
            InjectionLayer::Diagonal { a_log, dt_bias, .. } => {
                Ok(Some(Self::decay(a_log, dt_bias)?))
            }
            _ => Ok(None),
        }
    }

    /// Spectral norm of the injection's map on the state: `max Ā` (diagonal), 1 (add), or the
    /// largest singular value of `W_h` by power iteration (linear).
    pub fn spectral_norm(&self) -> Result<f64> {
        match self {
            InjectionLayer::Diagonal { a_log, dt_bias, .. } => Self::decay(a_log, dt_bias)?
                .max(0)?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>(),
            InjectionLayer::Add { .. } | InjectionLayer::None { .. } => Ok(1.0),
            InjectionLayer::Linear { w, r } => {
                let w_h = w.narrow(0, 0, *r)?.to_dtype(DType::F64)?.to_vec2::<f64>()?;
                Ok(largest_singular_value(&w_h))
            }
        }
    }

    /// Non-embedding parameters of an injection of `kind` from width `d` into width `r`, as
    /// `(applied once per token, applied every loop)`: the loop-invariant matrix (`B`, or `W_e`)
    /// once; `A_log` and `dt_bias` (diagonal) or `W_h` (linear) every loop.
    pub fn param_split(kind: Injection, d: usize, r: usize) -> (u64, u64) {
        let (d, r) = (d as u64, r as u64);
        match kind {
            Injection::Diagonal => (d * r, 2 * r),
            Injection::Add | Injection::None => (if r == d { 0 } else { d * r }, 0),
            Injection::Linear => (d * r, r * r),
        }
    }
}

/// Largest singular value of a square matrix by power iteration on `MᵀM` (host f64; the
/// matrices here are at most a few hundred wide and this runs only at logged steps).
pub fn largest_singular_value(m: &[Vec<f64>]) -> f64 {
    let n = m.len();
    if n == 0 {
        return 0.0;
    }
    let cols = m[0].len();
    // A fixed, generic start vector: deterministic, and not orthogonal to the top direction
    // except on a set of measure zero.
    let mut v: Vec<f64> = (0..cols).map(|i| 1.0 + 0.01 * i as f64).collect();
    let mut sigma = 0.0;
    for _ in 0..500 {
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm == 0.0 {
            return 0.0;
        }
        v.iter_mut().for_each(|x| *x /= norm);
        let mv: Vec<f64> = m
            .iter()
            .map(|row| row.iter().zip(&v).map(|(a, b)| a * b).sum())
            .collect();
        let next_sigma = mv.iter().map(|x| x * x).sum::<f64>().sqrt();
        v = (0..cols)
            .map(|j| (0..n).map(|i| m[i][j] * mv[i]).sum())
            .collect();
        if (next_sigma - sigma).abs() <= 1e-12 * next_sigma.max(1e-300) {
            return next_sigma;
        }
        sigma = next_sigma;
    }
    sigma
}
