//! AdamW (Loshchilov & Hutter 2019): Adam with bias correction and decoupled weight decay,
//! the decay applied only to the [`ParamRole::Matrix`] parameters; and global gradient-norm
//! clipping before the update. Each parameter's step uses the schedule's learning rate times
//! its own [`Param::lr_scale`] (μP's 1/m on hidden matrices; 1 otherwise), decay included, as
//! a per-group `lr` does in PyTorch's AdamW.
//!
//! On the CPU the update runs as in-place kernels over `θ`, `m` and `v` (`adamw_kernel`); the
//! composed tensor update below is the fallback for other devices and the reference the tests
//! compare the kernels with. `m` and `v` own their buffers (they are updated in place).

use candle_core::backprop::GradStore;
use candle_core::{DType, Result, Tensor, Var};

use super::adamw_kernel::{Moment, Update, sum_of_squares};
#[cfg(test)]
use loopscale_model::ParamRole;
use loopscale_model::{Param, ParamStore};

/// AdamW's hyperparameters (the learning rate comes with each step, from the schedule).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Whether the token embedding and an untied head are decayed too (see [`ParamRole`]).
    pub decay_embeddings: bool,
}

struct Slot {
    var: Var,
    decay: bool,
    /// The factor on the step's learning rate ([`Param::lr_scale`]).
    lr_scale: f64,
    /// First and second moment estimates.
    m: Tensor,
    v: Tensor,
}

pub struct AdamW {
    slots: Vec<Slot>,
    cfg: AdamWConfig,
    steps: i32,
}

impl AdamW {
    /// AdamW over every parameter of `params`.
    pub fn new(params: &ParamStore, cfg: AdamWConfig) -> Result<Self> {
        Self::over(params.params().iter(), cfg)
    }

    /// AdamW over the given parameters (the rest of a model may be Muon's).
    pub fn over<'a>(params: impl Iterator<Item = &'a Param>, cfg: AdamWConfig) -> Result<Self> {
        let slots = params
            .map(|p| {
                Ok(Slot {
                    var: p.var.clone(),
                    decay: p.role.decayed(cfg.decay_embeddings),
                    lr_scale: p.lr_scale,
                    m: p.var.zeros_like()?,
                    v: p.var.zeros_like()?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(AdamW {
            slots,
            cfg,
            steps: 0,
        })
    }

    /// Updates taken so far (AdamW's bias-correction count).
    pub fn steps_taken(&self) -> i32 {
        self.steps
    }

    /// The moment estimates `(m, v)` of every parameter, in the parameter store's order: with
    /// [`AdamW::steps_taken`], everything a checkpoint needs to continue exactly.
    pub fn moments(&self) -> Vec<(Tensor, Tensor)> {
        self.slots
            .iter()
            .map(|s| (s.m.clone(), s.v.clone()))
            .collect()
    }

    /// Restores a state saved with [`AdamW::moments`] and [`AdamW::steps_taken`]; the moments
    /// must match the parameters in number, shape and dtype.
    pub fn restore(&mut self, steps: i32, moments: Vec<(Tensor, Tensor)>) -> Result<()> {
        if moments.len() != self.slots.len() {
            candle_core::bail!(
                "optimizer state has {} parameters, the model {}",
                moments.len(),
                self.slots.len()
            );
        }
        for (slot, (m, v)) in self.slots.iter().zip(&moments) {
            for t in [m, v] {
                if t.shape() != slot.var.shape() || t.dtype() != slot.var.dtype() {
                    candle_core::bail!(
                        "optimizer moment {:?} {:?} does not match its parameter {:?} {:?}",
                        t.shape(),
                        t.dtype(),
                        slot.var.shape(),
                        slot.var.dtype()
                    );
                }
            }
        }
        for (slot, (m, v)) in self.slots.iter_mut().zip(moments) {
            slot.m = m.to_device(slot.var.device())?;
            slot.v = v.to_device(slot.var.device())?;
        }
        self.steps = steps;
        Ok(())
    }

    /// The global L2 norm of all parameters' gradients.
    pub fn grad_norm(&self, grads: &GradStore) -> Result<f64> {
        grad_norm(self.vars(), grads)
    }

    /// One update at learning rate `lr`, after scaling the gradient so its global norm is at
    /// most `grad_clip` (0 disables clipping). Returns the norm before clipping. A parameter
    /// without a gradient (unused in this step's graph) is left untouched.
    pub fn step(&mut self, grads: &GradStore, lr: f64, grad_clip: f64) -> Result<f64> {
        let norm = self.grad_norm(grads)?;
        self.apply(grads, lr, clip_scale(norm, grad_clip))?;
        Ok(norm)
    }

    /// One update at learning rate `lr` with the gradients scaled by `clip_scale` (the clipping
    /// decided over a whole model, of which these may be only some parameters).
    pub fn apply(&mut self, grads: &GradStore, lr: f64, clip_scale: f64) -> Result<()> {
        self.steps += 1;
        let AdamWConfig {
            beta1,
            beta2,
            eps,
            weight_decay,
            ..
        } = self.cfg;
        let m_correction = 1.0 / (1.0 - beta1.powi(self.steps));
        let v_correction = 1.0 / (1.0 - beta2.powi(self.steps));
        let base_lr = lr;
        for slot in &mut self.slots {
            let Some(grad) = grads.get(&slot.var) else {
                continue;
            };
            let lr = base_lr * slot.lr_scale;
            let theta = slot.var.as_tensor();
            if theta.device().is_cpu() {
                let grad = if grad.is_contiguous() {
                    grad.clone()
                } else {
                    grad.contiguous()?
                };
                let moment = |beta, square| Moment {
                    beta,
                    clip_scale,
                    square,
                };
                slot.m.inplace_op2(&grad, &moment(beta1, false))?;
                slot.v.inplace_op2(&grad, &moment(beta2, true))?;
                let decay = if slot.decay { weight_decay } else { 0.0 };
                let update = Update {
                    lr,
                    weight_decay: decay,
                    m_correction,
                    v_correction,
                    eps,
                };
                theta.inplace_op3(&slot.m, &slot.v, &update)?;
                continue;
            }
            let grad = grad.affine(clip_scale, 0.0)?;
            slot.m = ((slot.m.affine(beta1, 0.0)? + grad.affine(1.0 - beta1, 0.0)?)?).detach();
            slot.v =
                ((slot.v.affine(beta2, 0.0)? + grad.sqr()?.affine(1.0 - beta2, 0.0)?)?).detach();
            let denom = (slot.v.affine(v_correction, 0.0)?.sqrt()? + eps)?;
            let update = slot.m.affine(m_correction, 0.0)?.div(&denom)?;
            let theta = slot.var.as_tensor().detach();
            // Decoupled decay: shrink the weights directly, outside the adaptive update.
            let theta = if slot.decay && weight_decay > 0.0 {
                theta.affine(1.0 - lr * weight_decay, 0.0)?
            } else {
                theta
            };
            slot.var.set(&(theta - update.affine(lr, 0.0)?)?)?;
        }
        Ok(())
    }

    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.slots.iter().map(|s| &s.var)
    }
}

/// The L2 norm of the gradients of `vars` together (those without a gradient count 0).
pub fn grad_norm<'a>(vars: impl Iterator<Item = &'a Var>, grads: &GradStore) -> Result<f64> {
    let present: Vec<&Tensor> = vars.filter_map(|v| grads.get(v)).collect();
    let mut total = 0.0;
    let mut on_cpu = true;
    for g in &present {
        match sum_of_squares(g)? {
            Some(s) => total += s,
            None => on_cpu = false,
        }
    }
    if on_cpu {
        return Ok(total.sqrt());
    }
    let squares = present
        .iter()
        .map(|g| g.to_dtype(DType::F64)?.sqr()?.sum_all())
        .collect::<Result<Vec<_>>>()?;
    if squares.is_empty() {
        return Ok(0.0);
    }
    Tensor::stack(&squares, 0)?
        .sum_all()?
        .to_scalar::<f64>()
        .map(f64::sqrt)
}

/// The factor that scales gradients of global norm `norm` to at most `grad_clip` (0: never).
pub fn clip_scale(norm: f64, grad_clip: f64) -> f64 {
    if grad_clip > 0.0 && norm > grad_clip {
        grad_clip / (norm + 1e-6)
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// One AdamW step on `f(w) = Σ w²/2` (gradient `w`) against the update written out by hand.
    #[test]
    fn first_step_matches_the_formula() {
        let dev = Device::Cpu;
        let mut params = ParamStore::new(0, DType::F64, &dev);
        let w = params.normal("w", (1, 3), 1.0, ParamRole::Matrix).unwrap();
        let b = params.ones("b", 2).unwrap();
        let w0: Vec<f64> = w.flatten_all().unwrap().to_vec1().unwrap();
        let cfg = AdamWConfig {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
            decay_embeddings: false,
        };
        let mut opt = AdamW::new(&params, cfg).unwrap();
        let loss = ((w.sqr().unwrap().sum_all().unwrap() + b.sqr().unwrap().sum_all().unwrap())
            .unwrap()
            * 0.5)
            .unwrap();
        let grads = loss.backward().unwrap();
        let lr = 0.01;
        let norm = opt.step(&grads, lr, 0.0).unwrap();
        let expected_norm = (w0.iter().map(|x| x * x).sum::<f64>() + 2.0).sqrt();
        assert!((norm - expected_norm).abs() < 1e-12);
        // First step: m̂ = g, v̂ = g², so the update is lr·sign(g) (up to eps), plus decay on w only.
        let w1: Vec<f64> = w.flatten_all().unwrap().to_vec1().unwrap();
        for (a, b) in w0.iter().zip(&w1) {
            let expected = a * (1.0 - lr * 0.1) - lr * a / (a.abs() + 1e-8);
            assert!((b - expected).abs() < 1e-12, "{b} vs {expected}");
        }
        let b1: Vec<f64> = b.to_vec1().unwrap();
        assert!(b1.iter().all(|&x| (x - (1.0 - lr)).abs() < 1e-9), "{b1:?}");
    }

    /// Three steps of the in-place kernels on f32 against AdamW written out on the host in f64,
    /// with a gradient that changes every step, clipping active and decay on one parameter.
    #[test]
    fn in_place_kernels_follow_adamw_over_several_steps() {
        let dev = Device::Cpu;
        let mut params = ParamStore::new(5, DType::F32, &dev);
        let w = params.normal("w", (7, 5), 1.0, ParamRole::Matrix).unwrap();
        let cfg = AdamWConfig {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
            decay_embeddings: false,
        };
        let mut opt = AdamW::new(&params, cfg).unwrap();
        let mut theta: Vec<f64> = w
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect();
        let (mut m, mut v) = (vec![0.0; theta.len()], vec![0.0; theta.len()]);
        let (lr, clip) = (0.05, 0.5);
        for step in 1..=3 {
            // loss = Σ (k+1)·w³/3 → gradient (k+1)·w²
            let k = Tensor::arange(1f32, 36.0, &dev)
                .unwrap()
                .reshape((7, 5))
                .unwrap();
            let loss = (w.powf(3.0).unwrap() * &k).unwrap().sum_all().unwrap() / 3.0;
            let grads = loss.unwrap().backward().unwrap();
            let g: Vec<f64> = theta
                .iter()
                .enumerate()
                .map(|(i, &x)| (i + 1) as f64 * x * x)
                .collect();
            let norm = g.iter().map(|x| x * x).sum::<f64>().sqrt();
            let reported = opt.step(&grads, lr, clip).unwrap();
            assert!(
                (reported - norm).abs() < 1e-4 * norm,
                "{reported} vs {norm}"
            );
            let c = if norm > clip {
                clip / (norm + 1e-6)
            } else {
                1.0
            };
            for i in 0..theta.len() {
                m[i] = 0.9 * m[i] + 0.1 * c * g[i];
                v[i] = 0.95 * v[i] + 0.05 * (c * g[i]).powi(2);
                let mh = m[i] / (1.0 - 0.9f64.powi(step));
                let vh = v[i] / (1.0 - 0.95f64.powi(step));
                theta[i] = theta[i] * (1.0 - lr * 0.1) - lr * mh / (vh.sqrt() + 1e-8);
            }
            let got: Vec<f32> = w.flatten_all().unwrap().to_vec1().unwrap();
            for (a, b) in got.iter().zip(&theta) {
                assert!((f64::from(*a) - b).abs() < 1e-5, "step {step}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn clipping_scales_the_gradient_and_reports_the_raw_norm() {
        let dev = Device::Cpu;
        let mut params = ParamStore::new(0, DType::F64, &dev);
        let w = params.ones("w", 4).unwrap();
        let cfg = AdamWConfig {
            beta1: 0.5,
            beta2: 0.5,
            eps: 0.0,
            weight_decay: 0.0,
            decay_embeddings: false,
        };
        let mut opt = AdamW::new(&params, cfg).unwrap();
        let loss = w.affine(3.0, 0.0).unwrap().sum_all().unwrap(); // gradient 3 everywhere, norm 6
        let grads = loss.backward().unwrap();
        assert!((opt.step(&grads, 0.1, 1.0).unwrap() - 6.0).abs() < 1e-12);
        // The clipped gradient is 3/6 = 0.5 per entry, so the first moment is (1 − β1)·0.5.
        let m: Vec<f64> = opt.slots[0].m.to_vec1().unwrap();
        assert!(m.iter().all(|&x| (x - 0.25).abs() < 1e-6), "{m:?}");
    }
}
