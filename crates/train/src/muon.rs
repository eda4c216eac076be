//! Muon (Jordan et al. 2024) as the Parcae reference trains with it: momentum orthogonalised by
//! a Newton–Schulz iteration for the hidden weight matrices, with a per-row (or per-column)
//! second-moment rescale (NorMuon), a shape-dependent learning-rate factor and cautious
//! decoupled weight decay. Every other parameter stays with AdamW (see [`super::adamw`]).
//!
//! One update of a matrix `W` with gradient `G` (already scaled by the global clip factor), at
//! momentum `μ`, learning rate `η` and weight decay `λ`:
//!
//! ```text
//! M ← μ·M + (1 − μ)·G                       momentum buffer
//! U ← (1 − μ)·G + μ·M                       Nesterov look-ahead
//! X ← U / (1.02·‖U‖_F + 1e-6)               singular values into (0, 1)
//! 5×: A ← X·Xᵀ;  X ← a·X + (b·A + c·A²)·X   on the wide orientation (rows ≤ cols)
//! v ← β₂·v + (1 − β₂)·mean(X², over the reduced axis)          one entry per row or column
//! X ← X ⊙ v^(-1/2) · ‖X‖_F / ‖X ⊙ v^(-1/2)‖_F                  rescale, Frobenius norm kept
//! W ← W − η'·X − η'·λ·W ⊙ [X ⊙ W ≥ 0],      η' = η·√max(1, fan_out / fan_in)
//! ```
//!
//! The five `(a, b, c)` are the "Polar Express" coefficients (Amsel, Persson, Musco, Gower
//! 2025), each step tuned for the worst case of the singular values left by the previous ones:
//! (8.1566, −22.4833, 15.8788), (4.0429, −2.8089, 0.5000), (3.8917, −2.7725, 0.5061),
//! (3.2858, −2.3681, 0.4645), (2.3465, −1.7098, 0.4232). They map every singular value in
//! (0, 1] close to 1, so `X` is near the orthogonal polar factor of `U`.
//!
//! Momentum warms up linearly from `momentum_start` to `momentum` over `momentum_warmup`
//! updates, and `λ` decays linearly to 0 over the run; both are functions of the update index,
//! so a resumed run continues exactly. The reduced axis: the rescale keeps one second moment
//! per output unit when a matrix has at least as many outputs as inputs, else per input unit.
//! Weights are stored `(in, out)` here, so outputs are columns.

use candle_core::backprop::GradStore;
use candle_core::{DType, Result, Tensor, Var};

/// Newton–Schulz ("Polar Express") coefficients `(a, b, c)`, one triple per step.
pub const POLAR_EXPRESS: [(f64, f64, f64); 5] = [
    (
        8.156_554_524_902_461,
        -22.483_292_927_557_95,
        15.878_769_915_207_462,
    ),
    (
        4.042_929_935_166_739,
        -2.808_917_465_908_714,
        0.500_017_845_105_131_6,
    ),
    (
        3.891_667_802_292_660_7,
        -2.772_484_153_217_685,
        0.506_064_817_850_339_3,
    ),
    (
        3.285_753_657_755_655,
        -2.368_129_493_342_537_6,
        0.464_490_242_330_031_06,
    ),
    (
        2.346_541_325_859_637_7,
        -1.709_782_838_268_708_1,
        0.423_235_511_693_053_23,
    ),
];

/// Muon's hyperparameters (the learning rate comes with each step, from the schedule).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MuonConfig {
    /// Momentum after the warm-up.
    pub momentum: f64,
    /// Momentum at the first update.
    pub momentum_start: f64,
    /// Updates over which momentum rises linearly from `momentum_start` to `momentum`.
    pub momentum_warmup: u64,
    /// Cautious decoupled weight decay at the first update; it falls linearly to 0 at the last.
    pub weight_decay: f64,
    /// The second-moment rescale's decay.
    pub beta2: f64,
}

struct Slot {
    var: Var,
    /// Momentum, shaped like the parameter.
    m: Tensor,
    /// Second moments: `(1, out)` per output unit or `(in, 1)` per input unit.
    v: Tensor,
    /// The axis the second moment is averaged over (0: rows, giving one per column).
    reduce: usize,
    /// `√max(1, fan_out / fan_in)`.
    lr_scale: f64,
}

/// Muon over a set of 2-D parameters.
pub struct Muon {
    slots: Vec<Slot>,
    cfg: MuonConfig,
}

impl Muon {
    /// Muon for `vars`, each a `(in, out)` matrix.
    pub fn new(vars: Vec<Var>, cfg: MuonConfig) -> Result<Self> {
        let slots = vars
            .into_iter()
            .map(|var| {
                let (fan_in, fan_out) = var.dims2()?;
                let reduce = if fan_out >= fan_in { 0 } else { 1 };
                let v_shape = if reduce == 0 {
                    (1, fan_out)
                } else {
                    (fan_in, 1)
                };
                Ok(Slot {
                    m: var.zeros_like()?,
                    v: Tensor::zeros(v_shape, var.dtype(), var.device())?,
                    reduce,
                    lr_scale: (fan_out as f64 / fan_in as f64).max(1.0).sqrt(),
                    var,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Muon { slots, cfg })
    }

    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.slots.iter().map(|s| &s.var)
    }

    /// Momentum at update `update` (0-based).
    pub fn momentum_at(&self, update: u64) -> f64 {
        let c = &self.cfg;
        if c.momentum_warmup == 0 {
            return c.momentum;
        }
        let frac = (update as f64 / c.momentum_warmup as f64).min(1.0);
        c.momentum_start + frac * (c.momentum - c.momentum_start)
    }

    /// Weight decay at update `update` of `total` (linear to 0).
    pub fn weight_decay_at(&self, update: u64, total: u64) -> f64 {
        (self.cfg.weight_decay * (1.0 - update as f64 / total.max(1) as f64)).max(0.0)
    }

    /// One update (the `update`-th, 0-based, of `total`) at learning rate `lr`, the gradients
    /// scaled by `clip_scale`. A parameter without a gradient is left untouched.
    pub fn step(
        &mut self,
        grads: &GradStore,
        lr: f64,
        clip_scale: f64,
        update: u64,
        total: u64,
    ) -> Result<()> {
        let mu = self.momentum_at(update);
        let wd = self.weight_decay_at(update, total);
        let beta2 = self.cfg.beta2;
        for slot in &mut self.slots {
            let Some(grad) = grads.get(&slot.var) else {
                continue;
            };
            let g = grad.affine(clip_scale, 0.0)?;
            slot.m = (slot.m.affine(mu, 0.0)? + g.affine(1.0 - mu, 0.0)?)?.detach();
            let u = (g.affine(1.0 - mu, 0.0)? + slot.m.affine(mu, 0.0)?)?;
            let x = orthogonalise(&u)?;

            // NorMuon: per-row/column second moments, then restore the Frobenius norm.
            let n = x.dim(slot.reduce)? as f64;
            let v_mean = x.sqr()?.mean_keepdim(slot.reduce)?;
            let norm_before = (v_mean.sum_all()? * n)?.sqrt()?;
            slot.v = (slot.v.affine(beta2, 0.0)? + v_mean.affine(1.0 - beta2, 0.0)?)?.detach();
            let scale = slot.v.clamp(1e-10, f64::INFINITY)?.sqrt()?.recip()?;
            let norm_after = (v_mean.broadcast_mul(&scale.sqr()?)?.sum_all()? * n)?.sqrt()?;
            let ratio = norm_before.div(&norm_after.clamp(1e-10, f64::INFINITY)?)?;
            let x = x.broadcast_mul(&scale)?.broadcast_mul(&ratio)?;

            let lr = lr * slot.lr_scale;
            let theta = slot.var.as_tensor().detach();
            // Cautious decay: only where the update and the weight agree in sign.
            let agree = x.mul(&theta)?.ge(0.0)?.to_dtype(theta.dtype())?;
            let decay = theta.mul(&agree)?.affine(lr * wd, 0.0)?;
            let next = ((theta - x.affine(lr, 0.0)?)? - decay)?;
            slot.var.set(&next)?;
        }
        Ok(())
    }

    /// Every slot's `(momentum, second moment)`, in the order of [`Muon::vars`].
    pub fn state(&self) -> Vec<(Tensor, Tensor)> {
        self.slots
            .iter()
            .map(|s| (s.m.clone(), s.v.clone()))
            .collect()
    }

    /// Restores buffers saved with [`Muon::state`].
    pub fn restore(&mut self, state: Vec<(Tensor, Tensor)>) -> Result<()> {
        if state.len() != self.slots.len() {
            candle_core::bail!(
                "Muon state has {} matrices, the model {}",
                state.len(),
                self.slots.len()
            );
        }
        for (slot, (m, v)) in self.slots.iter().zip(&state) {
            if m.shape() != slot.m.shape() || v.shape() != slot.v.shape() {
                candle_core::bail!(
                    "Muon state {:?}/{:?} does not match {:?}/{:?}",
                    m.shape(),
                    v.shape(),
                    slot.m.shape(),
                    slot.v.shape()
                );
            }
        }
        for (slot, (m, v)) in self.slots.iter_mut().zip(state) {
            slot.m = m.to_device(slot.var.device())?.to_dtype(slot.var.dtype())?;
            slot.v = v.to_device(slot.var.device())?.to_dtype(slot.var.dtype())?;
        }
        Ok(())
    }
}

/// The near-orthogonal polar factor of `u` by five Polar Express Newton–Schulz steps, computed
/// on the wide orientation (the Gram matrix on the short side) in f32.
pub fn orthogonalise(u: &Tensor) -> Result<Tensor> {
    let dtype = u.dtype();
    let (rows, cols) = u.dims2()?;
    let tall = rows > cols;
    let u = u.to_dtype(DType::F32)?;
    let mut x = if tall { u.t()?.contiguous()? } else { u };
    let norm = x.sqr()?.sum_all()?.sqrt()?;
    x = x.broadcast_div(&(norm * 1.02)?.affine(1.0, 1e-6)?)?;
    for (a, b, c) in POLAR_EXPRESS {
        let gram = x.matmul(&x.t()?)?;
        let poly = (gram.affine(b, 0.0)? + gram.matmul(&gram)?.affine(c, 0.0)?)?;
        x = (x.affine(a, 0.0)? + poly.matmul(&x)?)?;
    }
    let x = if tall { x.t()?.contiguous()? } else { x };
    x.to_dtype(dtype)
}
