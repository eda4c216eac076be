//! A run's optimizer: AdamW over every parameter (`train.optimizer = "adamw"`), or Muon over
//! the hidden weight matrices and AdamW over the rest (`"muon"`), as the Parcae reference
//! splits them. Which group a parameter joins follows from its [`ParamRole`] alone, so every
//! parameter is in exactly one group. Gradients are clipped by their global norm over all
//! parameters before either optimizer sees them.
//!
//! The state a checkpoint needs is the update count and, per parameter, AdamW's two moments
//! (`adam_m.<name>`, `adam_v.<name>`) or Muon's momentum and second moments (`muon_m.<name>`,
//! `muon_v.<name>`); Muon's momentum and weight-decay schedules are functions of the update
//! count, so a resumed run continues bit for bit.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor};

use super::adamw::{AdamW, AdamWConfig, clip_scale, grad_norm};
use super::muon::{Muon, MuonConfig};
use loopscale_config::{OptimizerKind, TrainConfig};
use loopscale_model::{ParamRole, ParamStore};

/// The optimizer group of one parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    AdamwDecay,
    AdamwNoDecay,
    Muon,
}

/// The group `role` joins under `train`: Muon takes the hidden matrices when it is on; AdamW
/// takes everything else, decayed as [`ParamRole::decayed`] says.
pub fn group_of(role: ParamRole, train: &TrainConfig) -> Group {
    if train.optimizer == OptimizerKind::Muon && role == ParamRole::Matrix {
        Group::Muon
    } else if role.decayed(train.decay_embeddings) {
        Group::AdamwDecay
    } else {
        Group::AdamwNoDecay
    }
}

pub struct Optimizer {
    adamw: AdamW,
    muon: Option<Muon>,
    /// Names of the parameters in AdamW's and Muon's slot order, for checkpoints.
    adamw_names: Vec<String>,
    muon_names: Vec<String>,
    /// Muon's learning rate as a multiple of AdamW's (the schedule scales both).
    muon_lr_ratio: f64,
    /// Updates taken so far.
    updates: u64,
    /// Updates the run will take (Muon's weight decay reaches 0 at the last).
    total: u64,
}

impl Optimizer {
    /// The optimizer `train` asks for over `params`, for a run of `total` updates.
    pub fn new(params: &ParamStore, train: &TrainConfig, total: u64) -> Result<Self> {
        if train.optimizer == OptimizerKind::Muon
            && params.params().iter().any(|p| p.lr_scale != 1.0)
        {
            candle_core::bail!(
                "train.optimizer = \"muon\" with model.parametrization = \"mup\": μP's per-matrix \
                 Adam learning rates do not apply to Muon's orthogonalised updates; use adamw"
            );
        }
        let (muon_params, adamw_params): (Vec<_>, Vec<_>) = params
            .params()
            .iter()
            .partition(|p| group_of(p.role, train) == Group::Muon);
        let adamw = AdamW::over(
            adamw_params.iter().copied(),
            AdamWConfig {
                beta1: train.beta1,
                beta2: train.beta2,
                eps: train.adam_eps,
                weight_decay: train.weight_decay,
                decay_embeddings: train.decay_embeddings,
            },
        )?;
        let muon = match train.optimizer {
            OptimizerKind::Adamw => None,
            OptimizerKind::Muon => Some(Muon::new(
                muon_params.iter().map(|p| p.var.clone()).collect(),
                MuonConfig {
                    momentum: train.muon_momentum,
                    momentum_start: train.muon_momentum_start,
                    momentum_warmup: train.muon_momentum_warmup,
                    weight_decay: train.muon_weight_decay,
                    beta2: 0.95,
                },
            )?),
        };
        Ok(Optimizer {
            adamw,
            muon,
            adamw_names: adamw_params.iter().map(|p| p.name.clone()).collect(),
            muon_names: muon_params.iter().map(|p| p.name.clone()).collect(),
            muon_lr_ratio: train.muon_lr.unwrap_or(train.lr) / train.lr,
            updates: 0,
            total,
        })
    }

    /// One update at (AdamW's) learning rate `lr` after clipping the global gradient norm to
    /// `grad_clip` (0: no clipping); returns the norm before clipping.
    pub fn step(&mut self, grads: &GradStore, lr: f64, grad_clip: f64) -> Result<f64> {
        let vars = self
            .adamw
            .vars()
            .chain(self.muon.iter().flat_map(|m| m.vars()));
        let norm = grad_norm(vars, grads)?;
        let scale = clip_scale(norm, grad_clip);
        self.adamw.apply(grads, lr, scale)?;
        if let Some(muon) = &mut self.muon {
            muon.step(
                grads,
                lr * self.muon_lr_ratio,
                scale,
                self.updates,
                self.total,
            )?;
        }
        self.updates += 1;
        Ok(norm)
    }

    /// Updates taken so far.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// Every state tensor by checkpoint name.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (name, (m, v)) in self.adamw_names.iter().zip(self.adamw.moments()) {
            out.push((format!("adam_m.{name}"), m));
            out.push((format!("adam_v.{name}"), v));
        }
        if let Some(muon) = &self.muon {
            for (name, (m, v)) in self.muon_names.iter().zip(muon.state()) {
                out.push((format!("muon_m.{name}"), m));
                out.push((format!("muon_v.{name}"), v));
            }
        }
        out
    }

    /// Restores the state saved by [`Optimizer::state`] after `updates` updates, taking the
    /// tensors it needs out of `saved`; fails (changing nothing) when one is missing or has
    /// the wrong shape.
    pub fn restore(
        &mut self,
        updates: u64,
        saved: &mut HashMap<String, Tensor>,
    ) -> anyhow::Result<()> {
        let mut take = |key: String| {
            saved
                .remove(&key)
                .ok_or_else(|| anyhow::anyhow!("no tensor {key}"))
        };
        let adam = self
            .adamw_names
            .iter()
            .map(|n| Ok((take(format!("adam_m.{n}"))?, take(format!("adam_v.{n}"))?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let muon = self
            .muon_names
            .iter()
            .map(|n| Ok((take(format!("muon_m.{n}"))?, take(format!("muon_v.{n}"))?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        self.adamw.restore(updates as i32, adam)?;
        if let Some(m) = &mut self.muon {
            m.restore(muon)?;
        }
        self.updates = updates;
        Ok(())
    }
}
