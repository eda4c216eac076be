//! AdamW's update as in-place CPU kernels over the parameter and moment buffers.
//!
//! The composed update ([`super::adamw`]'s fallback for other devices) allocates about ten
//! parameter-sized tensors per parameter per step; these kernels write `m`, `v` and `θ` where
//! they are, in three passes and no allocation. Row-parallel on rayon's global pool, so they
//! follow the worker's `RAYON_NUM_THREADS` budget. f32 and f64.

use candle_core::{CpuStorage, InplaceOp2, InplaceOp3, Layout, Result, Tensor, bail};
use rayon::prelude::*;

/// Elements per rayon task.
const CHUNK: usize = 1 << 15;

fn dst_slice<'a, T: candle_core::WithDType>(
    s: &'a mut CpuStorage,
    l: &Layout,
) -> Result<&'a mut [T]> {
    let Some((a, b)) = l.contiguous_offsets() else {
        bail!("adamw kernel: a non-contiguous buffer")
    };
    let all: &mut [T] = match s {
        CpuStorage::F32(v) => bytemuck_mut(v)?,
        CpuStorage::F64(v) => bytemuck_mut(v)?,
        _ => bail!("adamw kernel: f32 and f64 only"),
    };
    Ok(&mut all[a..b])
}

/// `&mut [U]` as `&mut [T]` when `T` and `U` are the same type (checked by the dtype).
fn bytemuck_mut<T: candle_core::WithDType, U: candle_core::WithDType>(
    v: &mut [U],
) -> Result<&mut [T]> {
    if T::DTYPE != U::DTYPE {
        bail!(
            "adamw kernel: dtype mismatch {:?} vs {:?}",
            T::DTYPE,
            U::DTYPE
        )
    }
    // SAFETY: T and U are the same type (same candle dtype), so the cast is the identity.
    Ok(unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut T, v.len()) })
}

fn src_slice<'a, T: candle_core::WithDType>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [T]> {
    let Some((a, b)) = l.contiguous_offsets() else {
        bail!("adamw kernel: a non-contiguous buffer")
    };
    Ok(&s.as_slice::<T>()?[a..b])
}

/// `m ← β·m + (1 − β)·(c·g)^p` for `p` 1 (first moment) or 2 (second).
pub struct Moment {
    pub beta: f64,
    /// The gradient-clipping scale `c`.
    pub clip_scale: f64,
    pub square: bool,
}

impl Moment {
    fn run<T: candle_core::WithDType + num_traits::Float + Send + Sync>(
        &self,
        m: &mut [T],
        g: &[T],
    ) {
        let beta = T::from(self.beta).unwrap();
        let one_minus = T::from(1.0 - self.beta).unwrap();
        let c = T::from(self.clip_scale).unwrap();
        let square = self.square;
        m.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .for_each(|(m, g)| {
                for (m, &g) in m.iter_mut().zip(g) {
                    let g = c * g;
                    *m = beta * *m + one_minus * if square { g * g } else { g };
                }
            });
    }
}

impl InplaceOp2 for Moment {
    fn name(&self) -> &'static str {
        "adamw-moment"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        g: &CpuStorage,
        gl: &Layout,
    ) -> Result<()> {
        match g {
            CpuStorage::F32(_) => self.run(dst_slice::<f32>(dst, dst_l)?, src_slice(g, gl)?),
            CpuStorage::F64(_) => self.run(dst_slice::<f64>(dst, dst_l)?, src_slice(g, gl)?),
            _ => bail!("adamw kernel: f32 and f64 only"),
        }
        Ok(())
    }
}

/// `θ ← θ·(1 − lr·wd) − lr · (m·mc) / (sqrt(v·vc) + ε)`: decoupled decay, bias-corrected step.
pub struct Update {
    pub lr: f64,
    pub weight_decay: f64,
    pub m_correction: f64,
    pub v_correction: f64,
    pub eps: f64,
}

impl Update {
    fn run<T: candle_core::WithDType + num_traits::Float + Send + Sync>(
        &self,
        theta: &mut [T],
        m: &[T],
        v: &[T],
    ) {
        let t = |x: f64| T::from(x).unwrap();
        let (shrink, lr, mc, vc, eps) = (
            t(1.0 - self.lr * self.weight_decay),
            t(self.lr),
            t(self.m_correction),
            t(self.v_correction),
            t(self.eps),
        );
        theta
            .par_chunks_mut(CHUNK)
            .zip(m.par_chunks(CHUNK).zip(v.par_chunks(CHUNK)))
            .for_each(|(theta, (m, v))| {
                for ((w, &m), &v) in theta.iter_mut().zip(m).zip(v) {
                    *w = *w * shrink - lr * (m * mc) / ((v * vc).sqrt() + eps);
                }
            });
    }
}

impl InplaceOp3 for Update {
    fn name(&self) -> &'static str {
        "adamw-update"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        m: &CpuStorage,
        ml: &Layout,
        v: &CpuStorage,
        vl: &Layout,
    ) -> Result<()> {
        match m {
            CpuStorage::F32(_) => self.run(
                dst_slice::<f32>(dst, dst_l)?,
                src_slice(m, ml)?,
                src_slice(v, vl)?,
            ),
            CpuStorage::F64(_) => self.run(
                dst_slice::<f64>(dst, dst_l)?,
                src_slice(m, ml)?,
                src_slice(v, vl)?,
            ),
            _ => bail!("adamw kernel: f32 and f64 only"),
        }
        Ok(())
    }
}

/// `Σ x²` of a CPU tensor in f64, without allocating; `None` for a tensor elsewhere.
pub fn sum_of_squares(x: &Tensor) -> Result<Option<f64>> {
    if !x.device().is_cpu() {
        return Ok(None);
    }
    let x = if x.is_contiguous() {
        x.clone()
    } else {
        x.contiguous()?
    };
    let (storage, layout) = x.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        return Ok(None);
    };
    Ok(Some(match cpu {
        CpuStorage::F32(_) => ordered_sum(
            src_slice::<f32>(cpu, layout)?
                .par_chunks(CHUNK)
                .map(|c| c.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>()),
        ),
        CpuStorage::F64(_) => ordered_sum(
            src_slice::<f64>(cpu, layout)?
                .par_chunks(CHUNK)
                .map(|c| c.iter().map(|&v| v * v).sum::<f64>()),
        ),
        _ => return Ok(None),
    }))
}

/// Sums per-chunk partial sums in chunk order, so the result does not depend on how rayon
/// scheduled the chunks (runs are bit-reproducible at any thread count).
fn ordered_sum(parts: impl IndexedParallelIterator<Item = f64>) -> f64 {
    parts.collect::<Vec<_>>().into_iter().sum()
}
