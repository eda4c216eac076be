//! Fused CPU kernels for the element-wise work of a training step, as candle custom ops with a
//! backward pass: RMSNorm, the attention heads' QK-norm + RoPE + transpose, ReLU² and GELU,
//! and cross-entropy with logits. Attention itself (scores, softmax and values in one op) is
//! [`super::fused_attention`]. The model reaches these through [`super::ops`], which picks them
//! on the CPU and the [`composed`] forms elsewhere.
//!
//! Why: candle runs each primitive as its own single-threaded pass that allocates its result,
//! and its autograd stores and replays every one of them, so a composed RMSNorm is ~8 passes
//! forward and ~20 backward. One kernel reads its inputs once, writes its output once, and its
//! backward is one more kernel. The kernels run row-parallel on rayon's global pool, which is
//! sized by `RAYON_NUM_THREADS` (the engine's per-worker thread budget), so a worker with a
//! budget of 1 runs them on one thread.
//!
//! Each op's backward is itself a kernel (applied without a graph, so there is no double
//! backward). The differentiable candle compositions they replace live in [`composed`]; the
//! tests in `tests/fused_ops.rs` check forward and gradient of each against them, and the
//! model-level finite-difference checks run through these kernels. f32 and f64 only.

use std::sync::Arc;

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, WithDType,
    bail,
};
use num_traits::{Float, Zero};
use rayon::prelude::*;

/// Elements a rayon task should at least get, so small tensors do not pay for task overhead.
const MIN_TASK_ELEMS: usize = 1 << 14;

/// Real types the kernels run in.
pub(super) trait Real:
    WithDType
    + Float
    + Send
    + Sync
    + std::iter::Sum
    + std::ops::AddAssign
    + std::ops::SubAssign
    + std::ops::MulAssign
{
    /// `xᵢ ← exp(xᵢ)` over a slice. f32 goes through [`exp_f32`], which vectorises; the
    /// softmaxes of attention and cross-entropy spend most of their time here.
    fn exp_in_place(xs: &mut [Self]) {
        xs.iter_mut().for_each(|x| *x = x.exp());
    }
}
impl Real for f32 {
    fn exp_in_place(xs: &mut [f32]) {
        xs.iter_mut().for_each(|x| *x = exp_f32(*x));
    }
}
impl Real for f64 {}

/// `e^x` for f32, written so that a loop of it vectorises even at the x86-64 baseline (SSE2,
/// no rounding instruction), where libm's `expf` is a call per element: Cody–Waite reduction
/// `x = k·ln 2 + r`, `|r| ≤ ln 2 / 2`, with `k` rounded by adding and subtracting 1.5·2²³;
/// `e^r` by its Taylor series to `r⁷` (truncation below 6·10⁻⁹ relative, under an ulp); `2^k`
/// added into the exponent bits. Within 2 ulp of the exact value (`exp_f32_is_within_two_ulp`);
/// inputs are clamped to [−87.3, 88.7], where results are normal, and NaN stays NaN.
#[inline(always)]
pub(super) fn exp_f32(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2²³: adding it leaves the nearest integer in the low bits
    const LN2_HI: f32 = 0.693_359_4; // ln 2's leading 9 bits: k · LN2_HI is exact for |k| ≤ 128
    const LN2_LO: f32 = -2.121_944_4e-4; // ln 2 − LN2_HI
    let x = x.clamp(-87.3, 88.7);
    let k = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let p = 1.0 / 5040.0;
    let p = p * r + 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    f32::from_bits((p.to_bits() as i32).wrapping_add((k as i32) << 23) as u32)
}

/// `Σ xᵢ` in [`LANES`] interleaved partial sums (see [`dot`]).
pub(super) fn sum<T: Real>(xs: &[T]) -> T {
    let mut acc = [T::zero(); LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder();
    for x in chunks {
        for l in 0..LANES {
            acc[l] += x[l];
        }
    }
    let head = acc.iter().fold(T::zero(), |s, &v| s + v);
    tail.iter().fold(head, |s, &v| s + v)
}

pub(super) fn slice<'a, T: Real>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s.as_slice::<T>()?[a..b]),
        None => bail!("{op}: expects a contiguous input"),
    }
}

fn rows_per_task(row_len: usize) -> usize {
    (MIN_TASK_ELEMS / row_len.max(1)).max(1)
}

pub(super) fn c<T: Real>(x: f64) -> T {
    T::from(x).unwrap()
}

/// Calls `$body` with `$t` bound to the storage's float type.
macro_rules! dispatch {
    ($storage:expr, $op:expr, |$t:ident| $body:expr) => {
        match $storage {
            CpuStorage::F32(_) => {
                type $t = f32;
                $body
            }
            CpuStorage::F64(_) => {
                type $t = f64;
                $body
            }
            _ => bail!("{}: f32 and f64 only", $op),
        }
    };
}
pub(super) use dispatch;

pub(super) fn contiguous(x: &Tensor) -> Result<Tensor> {
    if x.is_contiguous() {
        Ok(x.clone())
    } else {
        x.contiguous()
    }
}

// ---------------------------------------------------------------------------------------------
// RMSNorm

/// `x / sqrt(mean(x²) + eps) ⊙ gain` over the last dimension.
pub fn rms_norm(x: &Tensor, gain: &Tensor, eps: f64) -> Result<Tensor> {
    contiguous(x)?.apply_op2(gain, RmsNorm { eps })
}

struct RmsNorm {
    eps: f64,
}

/// A buffer of `n` values that the caller overwrites entirely before anything reads it: it
/// skips the zero fill, a whole extra pass over memory for the largest activations.
pub(super) fn overwritten_buffer<T: Real>(n: usize) -> Vec<T> {
    let mut v = Vec::with_capacity(n);
    // SAFETY: T is f32 or f64, for which every bit pattern is a value, and every caller writes
    // all n values before the buffer is read or handed out (as candle's own `alloc_uninit`).
    #[allow(clippy::uninit_vec)]
    unsafe {
        v.set_len(n)
    };
    v
}

/// Lanes of the partial sums in [`dot`] and [`dot3`]: one AVX2 register of f32.
const LANES: usize = 8;

/// `Σ aᵢ·bᵢ` in [`LANES`] interleaved partial sums. A single running sum is a chain of
/// dependent adds the compiler may not reorder (float addition is not associative), so it
/// runs one add per latency period; independent lanes vectorise.
pub(super) fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [T::zero(); LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail = ca.remainder().iter().zip(cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    let head = acc.iter().fold(T::zero(), |s, &v| s + v);
    tail.fold(head, |s, (&x, &y)| s + x * y)
}

/// `Σ aᵢ·bᵢ·cᵢ`, as [`dot`].
fn dot3<T: Real>(a: &[T], b: &[T], c: &[T]) -> T {
    let n = a.len().min(b.len()).min(c.len());
    let (a, b, c) = (&a[..n], &b[..n], &c[..n]);
    let mut acc = [T::zero(); LANES];
    let (ca, cb, cc) = (
        a.chunks_exact(LANES),
        b.chunks_exact(LANES),
        c.chunks_exact(LANES),
    );
    let tail = (ca.remainder().iter().zip(cb.remainder())).zip(cc.remainder());
    for ((x, y), z) in ca.zip(cb).zip(cc) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l] * z[l];
        }
    }
    let head = acc.iter().fold(T::zero(), |s, &v| s + v);
    tail.fold(head, |s, ((&x, &y), &z)| s + x * y * z)
}

fn inv_rms<T: Real>(row: &[T], eps: f64) -> T {
    let ms = dot(row, row) / c::<T>(row.len() as f64);
    (ms + c(eps)).sqrt().recip()
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "fused-rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        dispatch!(s1, self.name(), |T| {
            let x = slice::<T>(s1, l1, self.name())?;
            let g = slice::<T>(s2, l2, self.name())?;
            let n = g.len();
            if l1.dims().last() != Some(&n) {
                bail!("{}: gain of {n} for input {:?}", self.name(), l1.dims());
            }
            let mut out = overwritten_buffer::<T>(x.len());
            out.par_chunks_mut(n)
                .zip(x.par_chunks(n))
                .with_min_len(rows_per_task(n))
                .for_each(|(o, x)| {
                    let r = inv_rms(x, self.eps);
                    for ((o, &x), &g) in o.iter_mut().zip(x).zip(g) {
                        *o = x * r * g;
                    }
                });
            Ok((T::to_cpu_storage_owned(out), l1.shape().clone()))
        })
    }

    fn bwd(
        &self,
        x: &Tensor,
        gain: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let n = gain.elem_count();
        let rows = x.elem_count() / n;
        let both = x.apply_op3_no_bwd(gain, &contiguous(grad)?, &RmsNormBwd { eps: self.eps })?;
        let dx = both.narrow(0, 0, rows * n)?.reshape(x.shape())?;
        let dg = both.narrow(0, rows * n, n)?.reshape(gain.shape())?;
        Ok((Some(dx), Some(dg)))
    }
}

/// RMSNorm's gradient: `dx` (rows·n values) then `dgain` (n values), flat.
struct RmsNormBwd {
    eps: f64,
}

/// One row of RMSNorm's backward: writes `dx`, accumulates `dgain`.
fn rms_norm_row_bwd<T: Real>(x: &[T], g: &[T], dy: &[T], eps: f64, dx: &mut [T], dg: &mut [T]) {
    let len = x.len();
    let (g, dy, dx, dg) = (&g[..len], &dy[..len], &mut dx[..len], &mut dg[..len]);
    let r = inv_rms(x, eps);
    // mean(dx̂ ⊙ x̂), dx̂ = dy ⊙ g, x̂ = x·r
    let dot = dot3(dy, g, x) * r / c::<T>(len as f64);
    for i in 0..len {
        let xh = x[i] * r;
        dx[i] = r * (dy[i] * g[i] - xh * dot);
        dg[i] += dy[i] * xh;
    }
}

impl CustomOp3 for RmsNormBwd {
    fn name(&self) -> &'static str {
        "fused-rms-norm-bwd"
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
        dispatch!(s1, self.name(), |T| {
            let x = slice::<T>(s1, l1, self.name())?;
            let g = slice::<T>(s2, l2, self.name())?;
            let dy = slice::<T>(s3, l3, self.name())?;
            let n = g.len();
            let mut out = vec![T::zero(); x.len() + n];
            let (dx, dg) = out.split_at_mut(x.len());
            let block = rows_per_task(n) * n;
            let parts: Vec<Vec<T>> = dx
                .par_chunks_mut(block)
                .zip(x.par_chunks(block).zip(dy.par_chunks(block)))
                .map(|(dx, (x, dy))| {
                    let mut dg = vec![T::zero(); n];
                    for ((dx, x), dy) in dx.chunks_mut(n).zip(x.chunks(n)).zip(dy.chunks(n)) {
                        rms_norm_row_bwd(x, g, dy, self.eps, dx, &mut dg);
                    }
                    dg
                })
                .collect();
            for p in parts {
                for (a, b) in dg.iter_mut().zip(p) {
                    *a += b;
                }
            }
            let len = out.len();
            Ok((T::to_cpu_storage_owned(out), Shape::from(len)))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Attention heads: QK-norm, RoPE and the transpose to (batch, heads, time, head_dim) in one pass

/// RoPE's tables for the fused heads op, `(max_len, head_dim / 2)` row-major.
pub struct RopeTables {
    pub cos: Vec<f64>,
    pub sin: Vec<f64>,
    pub half: usize,
}

/// Queries or keys `x` `(batch, time, heads·head_dim)` as heads `(batch, heads, time, head_dim)`,
/// each head vector RMS-normalised with `gain` `(head_dim,)` and rotated by RoPE.
pub fn norm_rope_heads(
    x: &Tensor,
    gain: &Tensor,
    heads: usize,
    rope: &Arc<RopeTables>,
    eps: f64,
) -> Result<Tensor> {
    let (b, t, d) = x.dims3()?;
    let hd = gain.elem_count();
    if d != heads * hd || rope.half * 2 != hd || rope.cos.len() < t * rope.half {
        bail!(
            "norm_rope_heads: input {:?} with {heads} heads of {hd}",
            x.dims()
        );
    }
    let op = Heads {
        dims: [b, t, heads, hd],
        rope: rope.clone(),
        eps,
    };
    contiguous(x)?.apply_op2(gain, op)
}

struct Heads {
    /// batch, time, heads, head_dim
    dims: [usize; 4],
    rope: Arc<RopeTables>,
    eps: f64,
}

impl Heads {
    /// Output row `i` (of `b·h·t` rows of `hd`, in `(b, h, t)` order): its position `t` and the
    /// offset of its input row.
    fn locate(&self, i: usize) -> (usize, usize) {
        let [_, t, h, hd] = self.dims;
        let (bi, hi, ti) = (i / (h * t), (i / t) % h, i % t);
        (ti, ((bi * t + ti) * h + hi) * hd)
    }

    fn tables<T: Real>(&self) -> (Vec<T>, Vec<T>) {
        let conv = |v: &[f64]| v.iter().map(|&x| c::<T>(x)).collect::<Vec<T>>();
        (conv(&self.rope.cos), conv(&self.rope.sin))
    }
}

impl CustomOp2 for Heads {
    fn name(&self) -> &'static str {
        "fused-norm-rope-heads"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let [b, t, h, hd] = self.dims;
        let half = hd / 2;
        dispatch!(s1, self.name(), |T| {
            let x = slice::<T>(s1, l1, self.name())?;
            let g = slice::<T>(s2, l2, self.name())?;
            let (cos, sin) = self.tables::<T>();
            let mut out = overwritten_buffer::<T>(x.len());
            out.par_chunks_mut(hd)
                .enumerate()
                .with_min_len(rows_per_task(hd))
                .for_each(|(i, o)| {
                    let (ti, at) = self.locate(i);
                    let x = &x[at..at + hd];
                    let r = inv_rms(x, self.eps);
                    let (cs, sn) = (&cos[ti * half..][..half], &sin[ti * half..][..half]);
                    for j in 0..half {
                        let n1 = x[j] * r * g[j];
                        let n2 = x[j + half] * r * g[j + half];
                        o[j] = n1 * cs[j] - n2 * sn[j];
                        o[j + half] = n1 * sn[j] + n2 * cs[j];
                    }
                });
            Ok((T::to_cpu_storage_owned(out), Shape::from((b, h, t, hd))))
        })
    }

    fn bwd(
        &self,
        x: &Tensor,
        gain: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let n = x.elem_count();
        let bwd = HeadsBwd {
            fwd: Heads {
                dims: self.dims,
                rope: self.rope.clone(),
                eps: self.eps,
            },
        };
        let both = x.apply_op3_no_bwd(gain, &contiguous(grad)?, &bwd)?;
        Ok((
            Some(both.narrow(0, 0, n)?.reshape(x.shape())?),
            Some(
                both.narrow(0, n, gain.elem_count())?
                    .reshape(gain.shape())?,
            ),
        ))
    }
}

/// The heads op's gradient: `dx` (in the input's layout), then `dgain`, flat.
struct HeadsBwd {
    fwd: Heads,
}

impl CustomOp3 for HeadsBwd {
    fn name(&self) -> &'static str {
        "fused-norm-rope-heads-bwd"
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
        let [b, t, h, hd] = self.fwd.dims;
        let half = hd / 2;
        dispatch!(s1, self.name(), |T| {
            let x = slice::<T>(s1, l1, self.name())?;
            let g = slice::<T>(s2, l2, self.name())?;
            let dout = slice::<T>(s3, l3, self.name())?;
            let (cos, sin) = self.fwd.tables::<T>();
            let mut all = vec![T::zero(); x.len() + hd];
            // Output rows are walked in their (b, h, t) order and each writes its input row of
            // dx: a scatter, so the rows are written through a pointer.
            let dx_ptr = all.as_mut_ptr() as usize;
            let block = rows_per_task(hd);
            let rows = b * h * t;
            let parts: Vec<Vec<T>> = (0..rows.div_ceil(block))
                .into_par_iter()
                .map(|blk| {
                    let mut dg = vec![T::zero(); hd];
                    let mut dn = vec![T::zero(); hd];
                    for i in blk * block..((blk + 1) * block).min(rows) {
                        let (ti, at) = self.fwd.locate(i);
                        let d = &dout[i * hd..(i + 1) * hd];
                        // SAFETY: output row i maps to input row `at` one-to-one, so tasks write
                        // disjoint rows of dx (the first x.len() values of `all`, which outlives
                        // this iterator and is not otherwise touched until it ends).
                        let dx = unsafe {
                            std::slice::from_raw_parts_mut((dx_ptr as *mut T).add(at), hd)
                        };
                        let (cs, sn) = (&cos[ti * half..][..half], &sin[ti * half..][..half]);
                        for j in 0..half {
                            dn[j] = d[j] * cs[j] + d[j + half] * sn[j];
                            dn[j + half] = d[j + half] * cs[j] - d[j] * sn[j];
                        }
                        rms_norm_row_bwd(&x[at..at + hd], g, &dn, self.fwd.eps, dx, &mut dg);
                    }
                    dg
                })
                .collect();
            let dgain = &mut all[x.len()..];
            for p in parts {
                for (a, b) in dgain.iter_mut().zip(p) {
                    *a += b;
                }
            }
            let len = all.len();
            Ok((T::to_cpu_storage_owned(all), Shape::from(len)))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// MLP activations

/// An element-wise activation and its derivative.
#[derive(Clone, Copy)]
enum Activation {
    Relu2,
    /// The tanh approximation.
    Gelu,
}

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const GELU_C: f64 = 0.044_715;

impl Activation {
    fn f<T: Real>(self, x: T) -> T {
        match self {
            Activation::Relu2 => {
                let r = Float::max(x, T::zero());
                r * r
            }
            Activation::Gelu => {
                let inner = c::<T>(SQRT_2_OVER_PI) * (x + c::<T>(GELU_C) * x * x * x);
                c::<T>(0.5) * x * (T::one() + inner.tanh())
            }
        }
    }

    fn df<T: Real>(self, x: T) -> T {
        match self {
            Activation::Relu2 => c::<T>(2.0) * Float::max(x, T::zero()),
            Activation::Gelu => {
                let inner = c::<T>(SQRT_2_OVER_PI) * (x + c::<T>(GELU_C) * x * x * x);
                let th = inner.tanh();
                let dinner = c::<T>(SQRT_2_OVER_PI) * (T::one() + c::<T>(3.0 * GELU_C) * x * x);
                c::<T>(0.5) * (T::one() + th) + c::<T>(0.5) * x * (T::one() - th * th) * dinner
            }
        }
    }
}

/// `max(x, 0)²`.
pub fn relu_squared(x: &Tensor) -> Result<Tensor> {
    contiguous(x)?.apply_op1(Act(Activation::Relu2))
}

/// GELU, tanh approximation (as candle's `gelu`).
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    contiguous(x)?.apply_op1(Act(Activation::Gelu))
}

struct Act(Activation);

impl CustomOp1 for Act {
    fn name(&self) -> &'static str {
        "fused-activation"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        dispatch!(s, self.name(), |T| {
            let x = slice::<T>(s, l, self.name())?;
            let mut out = overwritten_buffer::<T>(x.len());
            out.par_chunks_mut(MIN_TASK_ELEMS)
                .zip(x.par_chunks(MIN_TASK_ELEMS))
                .for_each(|(o, x)| {
                    for (o, &x) in o.iter_mut().zip(x) {
                        *o = self.0.f(x);
                    }
                });
            Ok((T::to_cpu_storage_owned(out), l.shape().clone()))
        })
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            x.apply_op2_no_bwd(&contiguous(grad)?, &ActBwd(self.0))?,
        ))
    }
}

/// `dx = f'(x) ⊙ dy`.
struct ActBwd(Activation);

impl CustomOp2 for ActBwd {
    fn name(&self) -> &'static str {
        "fused-activation-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        dispatch!(s1, self.name(), |T| {
            let x = slice::<T>(s1, l1, self.name())?;
            let dy = slice::<T>(s2, l2, self.name())?;
            let mut out = overwritten_buffer::<T>(x.len());
            out.par_chunks_mut(MIN_TASK_ELEMS)
                .zip(
                    x.par_chunks(MIN_TASK_ELEMS)
                        .zip(dy.par_chunks(MIN_TASK_ELEMS)),
                )
                .for_each(|(o, (x, dy))| {
                    for ((o, &x), &dy) in o.iter_mut().zip(x).zip(dy) {
                        *o = self.0.df(x) * dy;
                    }
                });
            Ok((T::to_cpu_storage_owned(out), l1.shape().clone()))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Cross-entropy

/// Mean cross-entropy (nats per token) of `logits` `(n, vocab)` against u32 `targets` `(n,)`,
/// a scalar.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (n, _) = logits.dims2()?;
    if targets.elem_count() != n || targets.dtype() != DType::U32 {
        bail!(
            "cross_entropy: {:?} {:?} targets for logits {:?}",
            targets.dims(),
            targets.dtype(),
            logits.dims()
        );
    }
    contiguous(logits)?.apply_op2(&contiguous(&targets.flatten_all()?)?, CrossEntropy)
}

struct CrossEntropy;

/// `out ← exp(row − max(row))`; returns `max(row)` and `Σ out`, so that
/// `log Σ exp(row) = max + ln Σ` and `softmax(row) = out / Σ`.
fn shifted_exp<T: Real>(row: &[T], out: &mut [T]) -> (T, T) {
    let max = row.iter().fold(T::neg_infinity(), |m, &v| Float::max(m, v));
    for (e, &v) in out.iter_mut().zip(row) {
        *e = v - max;
    }
    T::exp_in_place(out);
    (max, sum(out))
}

/// `log Σ exp(row)`, using `scratch` (the row's length) for the exponentials.
fn log_sum_exp<T: Real>(row: &[T], scratch: &mut [T]) -> T {
    let (max, total) = shifted_exp(row, scratch);
    max + total.ln()
}

impl CustomOp2 for CrossEntropy {
    fn name(&self) -> &'static str {
        "fused-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let targets = match l2.contiguous_offsets() {
            Some((a, b)) => &s2.as_slice::<u32>()?[a..b],
            None => bail!("{}: expects contiguous targets", self.name()),
        };
        let n = targets.len();
        dispatch!(s1, self.name(), |T| {
            let x = slice::<T>(s1, l1, self.name())?;
            let v = x.len() / n;
            if targets.iter().any(|&k| k as usize >= v) {
                bail!("{}: a target is not below the vocabulary {v}", self.name());
            }
            // Summed in f64: n is in the thousands and this is the number everything reports.
            // Per-row losses summed in row order: the same number at any thread count.
            let losses: Vec<f64> = x
                .par_chunks(v)
                .zip(targets.par_iter())
                .with_min_len(rows_per_task(v))
                .map_init(
                    || vec![T::zero(); v],
                    |scratch, (row, &k)| {
                        WithDType::to_f64(log_sum_exp(row, scratch) - row[k as usize])
                    },
                )
                .collect();
            let total: f64 = losses.into_iter().sum();
            Ok((
                T::to_cpu_storage_owned(vec![c::<T>(total / n as f64)]),
                Shape::from(()),
            ))
        })
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let n = targets.elem_count();
        let g = grad.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let op = CrossEntropyBwd {
            scale: g / n as f64,
        };
        Ok((Some(logits.apply_op2_no_bwd(targets, &op)?), None))
    }
}

/// `dlogits = (softmax(logits) − onehot(target)) · scale`.
struct CrossEntropyBwd {
    scale: f64,
}

impl CustomOp2 for CrossEntropyBwd {
    fn name(&self) -> &'static str {
        "fused-cross-entropy-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let targets = match l2.contiguous_offsets() {
            Some((a, b)) => &s2.as_slice::<u32>()?[a..b],
            None => bail!("{}: expects contiguous targets", self.name()),
        };
        let n = targets.len();
        dispatch!(s1, self.name(), |T| {
            let x = slice::<T>(s1, l1, self.name())?;
            let v = x.len() / n;
            let scale = c::<T>(self.scale);
            let mut out = overwritten_buffer::<T>(x.len());
            out.par_chunks_mut(v)
                .zip(x.par_chunks(v).zip(targets.par_iter()))
                .with_min_len(rows_per_task(v))
                .for_each(|(o, (row, &k))| {
                    // softmax(row) · scale from one pass of exponentials.
                    let (_, total) = shifted_exp(row, o);
                    let factor = scale / total;
                    o.iter_mut().for_each(|o| *o *= factor);
                    o[k as usize] -= scale;
                });
            Ok((T::to_cpu_storage_owned(out), l1.shape().clone()))
        })
    }
}

/// The differentiable candle compositions the fused ops replace: the reference the tests
/// compare against, and what the gradient checks of the kernels' backward rest on.
pub mod composed {
    use candle_core::{D, DType, Result, Tensor};

    pub fn rms_norm(x: &Tensor, gain: &Tensor, eps: f64) -> Result<Tensor> {
        let inv_rms = (x.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?.recip()?;
        x.broadcast_mul(&inv_rms)?.broadcast_mul(gain)
    }

    /// RoPE (rotate-half) of `x` `(batch, time, heads, hd)` with tables `(max_len, hd/2)`.
    pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let (_, t, _, hd) = x.dims4()?;
        let half = hd / 2;
        let cos = cos.narrow(0, 0, t)?.reshape((t, 1, half))?;
        let sin = sin.narrow(0, 0, t)?.reshape((t, 1, half))?;
        let x1 = x.narrow(D::Minus1, 0, half)?;
        let x2 = x.narrow(D::Minus1, half, half)?;
        let rotated_1 = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
        let rotated_2 = (x1.broadcast_mul(&sin)? + x2.broadcast_mul(&cos)?)?;
        Tensor::cat(&[rotated_1, rotated_2], D::Minus1)
    }

    /// What [`super::norm_rope_heads`] computes: `(batch, heads, time, hd)`.
    pub fn norm_rope_heads(
        x: &Tensor,
        gain: &Tensor,
        heads: usize,
        cos: &Tensor,
        sin: &Tensor,
        eps: f64,
    ) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let x = x.reshape((b, t, heads, d / heads))?;
        rope(&rms_norm(&x, gain, eps)?, cos, sin)?.transpose(1, 2)
    }

    /// `(t, t)` additive mask: 0 on and below the diagonal, −∞ above it.
    pub fn causal_mask(t: usize, dtype: DType, device: &candle_core::Device) -> Result<Tensor> {
        let mask: Vec<f32> = (0..t)
            .flat_map(|i| (0..t).map(move |j| if j <= i { 0.0 } else { f32::NEG_INFINITY }))
            .collect();
        Tensor::from_vec(mask, (t, t), device)?.to_dtype(dtype)
    }

    /// Softmax over the last dimension; the row maximum is detached (the shift cancels).
    pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
        let shifted = x.broadcast_sub(&x.max_keepdim(D::Minus1)?.detach())?;
        let exp = shifted.exp()?;
        exp.broadcast_div(&exp.sum_keepdim(D::Minus1)?)
    }

    pub fn causal_softmax(scores: &Tensor, scale: f64) -> Result<Tensor> {
        let t = scores.dim(D::Minus1)?;
        let mask = causal_mask(t, scores.dtype(), scores.device())?;
        softmax_last_dim(&scores.affine(scale, 0.0)?.broadcast_add(&mask)?)
    }

    /// Causal attention of heads `q`, `k` `(b, h, t, hd)` over values `v` `(b, t, h·hd)`, as
    /// the fused [`super::super::fused_attention::causal_attention`] computes it.
    pub fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
        let (b, h, t, hd) = q.dims4()?;
        let v = v.reshape((b, t, h, hd))?.transpose(1, 2)?.contiguous()?;
        let probs = causal_softmax(&q.matmul(&k.t()?)?, scale)?;
        probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, h * hd))
    }

    pub fn relu_squared(x: &Tensor) -> Result<Tensor> {
        x.relu()?.sqr()
    }

    /// GELU (tanh approximation) from primitives: candle's own `gelu` rounds the constants of
    /// its backward to six digits, which would hide a wrong kernel at f64 tolerances.
    pub fn gelu(x: &Tensor) -> Result<Tensor> {
        let inner =
            (x + x.powf(3.0)?.affine(super::GELU_C, 0.0)?)?.affine(super::SQRT_2_OVER_PI, 0.0)?;
        (x * (inner.tanh()? + 1.0)?)?.affine(0.5, 0.0)
    }

    /// Log-softmax over the last dimension (maximum detached as above).
    pub fn log_softmax_last_dim(x: &Tensor) -> Result<Tensor> {
        let shifted = x.broadcast_sub(&x.max_keepdim(D::Minus1)?.detach())?;
        shifted.broadcast_sub(&shifted.exp()?.sum_keepdim(D::Minus1)?.log()?)
    }

    pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
        let n = targets.elem_count();
        log_softmax_last_dim(logits)?
            .gather(&targets.reshape((n, 1))?, 1)?
            .sum_all()?
            .affine(-1.0 / n as f64, 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::exp_f32;

    /// Distance in units in the last place between two positive finite f32s.
    fn ulps(a: f32, b: f32) -> u32 {
        a.to_bits().abs_diff(b.to_bits())
    }

    #[test]
    fn exp_f32_is_within_two_ulp() {
        let mut worst = (0, 0.0f32);
        let n = 2_000_001;
        for i in 0..n {
            let x = -87.0 + 175.5 * i as f32 / (n - 1) as f32;
            let exact = (x as f64).exp() as f32;
            let d = ulps(exp_f32(x), exact);
            if d > worst.0 {
                worst = (d, x);
            }
        }
        assert!(worst.0 <= 2, "{} ulp at x = {}", worst.0, worst.1);
        // The softmax's range, finely.
        for i in 0..100_000 {
            let x = -i as f32 * 1e-4;
            assert!(ulps(exp_f32(x), (x as f64).exp() as f32) <= 2, "x = {x}");
        }
    }

    #[test]
    fn exp_f32_edges() {
        assert_eq!(exp_f32(0.0), 1.0);
        assert!(exp_f32(f32::NAN).is_nan());
        assert!(exp_f32(-1e4) >= 0.0 && exp_f32(-1e4) < 1e-37);
        assert!(exp_f32(f32::NEG_INFINITY) < 1e-37);
        assert!(exp_f32(1e4).is_finite() && exp_f32(1e4) > 3e38);
    }
}
