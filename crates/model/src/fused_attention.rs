//! Fused causal attention for CPU training: `softmax(scale · Q Kᵀ, causal) · V` as one candle
//! custom op with its backward pass, computing only the score blocks on or below the diagonal.
//!
//! Why a kernel of its own: composed from candle primitives, attention is two batched matmuls
//! over the full `time × time` square (half of it masked away afterwards), a softmax pass, and a
//! transpose copy on either side to get between the `(batch, time, heads·head_dim)` residual
//! layout and the per-head layout. Here each head's scores are cut into row blocks of
//! [`BLOCK`] queries; a row block only meets the keys up to its last query, so the matmuls do
//! about `(n + 1) / 2n` of the square's work for `n` blocks (5/8 at `time` 256). Values are read
//! and the output written straight in the residual layout (gemm takes strides), so the two
//! transpose copies are gone too. Batches run in parallel on rayon's pool, each with
//! single-threaded gemms.
//!
//! The probabilities are kept in the op for the backward pass (as the composed version keeps
//! its softmax output), so backward does not recompute them:
//! `dV = Pᵀ dO`, `dP = dO Vᵀ`, `dS = P ⊙ (dP − rowsum(P ⊙ dP))`, `dQ = scale · dS K`,
//! `dK = scale · dSᵀ Q`, again block by block below the diagonal.
//!
//! Checked against the composition (`composed::causal_attention`) in `tests/fused_ops.rs`,
//! forward and gradient, f32 and f64.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Storage, Tensor, WithDType, bail};
use gemm::Parallelism;
use num_traits::{Float, Zero};
use rayon::prelude::*;

use super::fused::{Real, c, contiguous, dispatch, dot, overwritten_buffer, slice, sum};

/// Queries per row block of the score matrix.
pub const BLOCK: usize = 64;

/// Causal attention of heads `q`, `k` `(batch, heads, time, head_dim)` over values `v`
/// `(batch, time, heads·head_dim)`; returns `(batch, time, heads·head_dim)`, the layout the
/// output projection takes.
pub fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    let (b, h, t, hd) = q.dims4()?;
    if k.dims() != q.dims() || v.dims() != [b, t, h * hd] {
        bail!(
            "causal_attention: q {:?}, k {:?}, v {:?}: expected q = k = (b, h, t, hd) and v = (b, t, h·hd)",
            q.dims(),
            k.dims(),
            v.dims()
        );
    }
    let op = CausalAttention {
        dims: Dims { b, h, t, hd },
        scale,
        probs: Mutex::new(None),
    };
    contiguous(q)?.apply_op3(&contiguous(k)?, &contiguous(v)?, op)
}

#[derive(Clone, Copy)]
struct Dims {
    b: usize,
    h: usize,
    t: usize,
    hd: usize,
}

impl Dims {
    fn d(&self) -> usize {
        self.h * self.hd
    }
}

struct CausalAttention {
    dims: Dims,
    scale: f64,
    /// `(batch, heads, time, time)` probabilities from the forward pass; entries above the
    /// diagonal are never read.
    probs: Mutex<Option<CpuStorage>>,
}

/// `dst (m × n) = a (m × k) · b (k × n)`, or `dst += …` with `accumulate`; each operand given by
/// its pointer and (row, column) strides. Single-threaded: callers parallelise over heads.
///
/// # Safety
/// Every pointer must address the whole strided matrix it describes, and `dst` must not alias
/// `a` or `b`.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm<T: Real>(
    (m, n, k): (usize, usize, usize),
    dst: *mut T,
    dst_rs: usize,
    accumulate: bool,
    a: *const T,
    (a_rs, a_cs): (usize, usize),
    b: *const T,
    (b_rs, b_cs): (usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: forwarded from the caller.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            a,
            a_cs as isize,
            a_rs as isize,
            b,
            b_cs as isize,
            b_rs as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}

/// Row blocks `(r0, r1)` of a `t × t` score matrix.
fn row_blocks(t: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..t)
        .step_by(BLOCK)
        .map(move |r0| (r0, (r0 + BLOCK).min(t)))
}

/// One batch's forward: scores, causal softmax and `P V` for each head.
/// `q`, `k`: `(h, t, hd)`; `v`, `out`: `(t, d)`; `p`: `(h, t, t)`.
fn forward_batch<T: Real>(
    dm: Dims,
    scale: T,
    q: &[T],
    k: &[T],
    v: &[T],
    p: &mut [T],
    out: &mut [T],
) {
    let Dims { h, t, hd, .. } = dm;
    let d = dm.d();
    for head in 0..h {
        let (qh, kh) = (&q[head * t * hd..], &k[head * t * hd..]);
        let ph = &mut p[head * t * t..(head + 1) * t * t];
        for (r0, r1) in row_blocks(t) {
            // SAFETY: rows r0..r1 of P (row stride t) and of Q, keys 0..r1 of K; all in bounds.
            unsafe {
                gemm(
                    (r1 - r0, r1, hd),
                    ph[r0 * t..].as_mut_ptr(),
                    t,
                    false,
                    qh[r0 * hd..].as_ptr(),
                    (hd, 1),
                    kh.as_ptr(),
                    (1, hd),
                );
            }
            for i in r0..r1 {
                let row = &mut ph[i * t..i * t + r1];
                let (live, masked) = row.split_at_mut(i + 1);
                let max = live
                    .iter()
                    .fold(T::neg_infinity(), |m, &s| Float::max(m, s));
                live.iter_mut().for_each(|s| *s = (*s - max) * scale);
                T::exp_in_place(live);
                let inv = sum(live).recip();
                live.iter_mut().for_each(|s| *s *= inv);
                masked.iter_mut().for_each(|s| *s = T::zero());
            }
            // SAFETY: out rows r0..r1, columns head·hd.. (row stride d); V rows 0..r1 likewise.
            unsafe {
                gemm(
                    (r1 - r0, hd, r1),
                    out[r0 * d + head * hd..].as_mut_ptr(),
                    d,
                    false,
                    ph[r0 * t..].as_ptr(),
                    (t, 1),
                    v[head * hd..].as_ptr(),
                    (d, 1),
                );
            }
        }
    }
}

/// What one batch's backward reads: `q`, `k` `(h, t, hd)`; `v`, `dout` `(t, d)`;
/// `p` `(h, t, t)`.
struct Saved<'a, T> {
    q: &'a [T],
    k: &'a [T],
    v: &'a [T],
    p: &'a [T],
    dout: &'a [T],
}

/// One batch's backward into `dq`, `dk` `(h, t, hd)` and `dv` `(t, d)`. `dk` and `dv` must
/// come in zeroed (they are accumulated block by block).
fn backward_batch<T: Real>(
    dm: Dims,
    scale: T,
    saved: Saved<T>,
    dq: &mut [T],
    dk: &mut [T],
    dv: &mut [T],
) {
    let Saved { q, k, v, p, dout } = saved;
    let Dims { h, t, hd, .. } = dm;
    let d = dm.d();
    let mut ds = vec![T::zero(); BLOCK * t];
    for head in 0..h {
        let off = head * t * hd;
        let ph = &p[head * t * t..(head + 1) * t * t];
        for (r0, r1) in row_blocks(t) {
            let rows = r1 - r0;
            let pb = &ph[r0 * t..];
            // SAFETY (all four gemms): the operands are rows r0..r1 (or 0..r1) of matrices
            // inside their slices, with the row strides used to index them; ds is local.
            unsafe {
                // dV[0..r1] += P[r0..r1, 0..r1]ᵀ · dO[r0..r1]
                gemm(
                    (r1, hd, rows),
                    dv[head * hd..].as_mut_ptr(),
                    d,
                    true,
                    pb.as_ptr(),
                    (1, t),
                    dout[r0 * d + head * hd..].as_ptr(),
                    (d, 1),
                );
                // dP = dO[r0..r1] · V[0..r1]ᵀ, into ds
                gemm(
                    (rows, r1, hd),
                    ds.as_mut_ptr(),
                    t,
                    false,
                    dout[r0 * d + head * hd..].as_ptr(),
                    (d, 1),
                    v[head * hd..].as_ptr(),
                    (1, d),
                );
            }
            for i in 0..rows {
                let live = r0 + i + 1;
                let (pr, dr) = (&pb[i * t..i * t + live], &mut ds[i * t..i * t + r1]);
                let dot = dot(pr, dr);
                for (g, &pv) in dr[..live].iter_mut().zip(pr) {
                    *g = scale * pv * (*g - dot);
                }
                dr[live..].iter_mut().for_each(|g| *g = T::zero());
            }
            unsafe {
                // dQ[r0..r1] = dS · K[0..r1]
                gemm(
                    (rows, hd, r1),
                    dq[off + r0 * hd..].as_mut_ptr(),
                    hd,
                    false,
                    ds.as_ptr(),
                    (t, 1),
                    k[off..].as_ptr(),
                    (hd, 1),
                );
                // dK[0..r1] += dSᵀ · Q[r0..r1]
                gemm(
                    (r1, hd, rows),
                    dk[off..].as_mut_ptr(),
                    hd,
                    true,
                    ds.as_ptr(),
                    (1, t),
                    q[off + r0 * hd..].as_ptr(),
                    (hd, 1),
                );
            }
        }
    }
}

fn cpu(s: &Storage) -> Result<&CpuStorage> {
    match s {
        Storage::Cpu(c) => Ok(c),
        _ => bail!("fused-causal-attention: CPU tensors only"),
    }
}

impl CustomOp3 for CausalAttention {
    fn name(&self) -> &'static str {
        "fused-causal-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dm = self.dims;
        let Dims { b, h, t, .. } = dm;
        let d = dm.d();
        dispatch!(s1, self.name(), |T| {
            let q = slice::<T>(s1, l1, self.name())?;
            let k = slice::<T>(s2, l2, self.name())?;
            let v = slice::<T>(s3, l3, self.name())?;
            let scale = c::<T>(self.scale);
            // Every row block writes its rows of P up to its last key (the only part backward
            // reads) and every output value.
            let mut p = overwritten_buffer::<T>(b * h * t * t);
            let mut out = overwritten_buffer::<T>(b * t * d);
            p.par_chunks_mut(h * t * t)
                .zip(out.par_chunks_mut(t * d))
                .zip(q.par_chunks(t * d).zip(k.par_chunks(t * d)))
                .zip(v.par_chunks(t * d))
                .for_each(|(((p, out), (q, k)), v)| forward_batch(dm, scale, q, k, v, p, out));
            *self.probs.lock().unwrap() = Some(T::to_cpu_storage_owned(p));
            Ok((T::to_cpu_storage_owned(out), Shape::from((b, t, d))))
        })
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dm = self.dims;
        let Dims { b, h, t, hd } = dm;
        let d = dm.d();
        let grad = contiguous(grad)?;
        let probs = self.probs.lock().unwrap();
        let Some(probs) = probs.as_ref() else {
            bail!("{}: backward before forward", self.name())
        };
        let (sq, lq) = q.storage_and_layout();
        let (sk, lk) = k.storage_and_layout();
        let (sv, lv) = v.storage_and_layout();
        let (sg, lg) = grad.storage_and_layout();
        let (sq, sk, sv, sg) = (cpu(&sq)?, cpu(&sk)?, cpu(&sv)?, cpu(&sg)?);
        let device = q.device();
        dispatch!(sq, self.name(), |T| {
            let q = slice::<T>(sq, lq, self.name())?;
            let k = slice::<T>(sk, lk, self.name())?;
            let v = slice::<T>(sv, lv, self.name())?;
            let dout = slice::<T>(sg, lg, self.name())?;
            let p = probs.as_slice::<T>()?;
            let scale = c::<T>(self.scale);
            let mut dq = overwritten_buffer::<T>(b * t * d);
            let mut dk = vec![T::zero(); b * t * d];
            let mut dv = vec![T::zero(); b * t * d];
            dq.par_chunks_mut(t * d)
                .zip(dk.par_chunks_mut(t * d))
                .zip(dv.par_chunks_mut(t * d))
                .enumerate()
                .for_each(|(i, ((dq, dk), dv))| {
                    let span = i * t * d..(i + 1) * t * d;
                    let saved = Saved {
                        q: &q[span.clone()],
                        k: &k[span.clone()],
                        v: &v[span.clone()],
                        p: &p[i * h * t * t..(i + 1) * h * t * t],
                        dout: &dout[span],
                    };
                    backward_batch(dm, scale, saved, dq, dk, dv)
                });
            let heads = (b, h, t, hd);
            Ok((
                Some(Tensor::from_vec(dq, heads, device)?),
                Some(Tensor::from_vec(dk, heads, device)?),
                Some(Tensor::from_vec(dv, (b, t, d), device)?),
            ))
        })
    }
}
