//! The matrix product under `train.precision = "bf16"` on a CPU: a candle custom op whose
//! forward and backward products all run in [`super::bf16_gemm`] (operands rounded to
//! bfloat16, sums in f32), as PyTorch's CPU autocast runs `x @ W` and its two gradients.
//!
//! Operands and result stay f32 tensors: only the products' inputs are rounded, inside the
//! kernel's packing, so the weights the optimizer updates, the activations the element-wise
//! kernels read and every gradient are f32 (fp32 master weights, no loss scaling needed:
//! bfloat16 has f32's exponent range). Operands may be strided views (`W_qkv`'s column blocks,
//! a transposed embedding): the packing reads any strides, so nothing is copied.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, bail};

use super::bf16_gemm::{self, MatRef};
use super::fused::overwritten_buffer;

/// `a · b` for 2-D f32 CPU tensors `a` (m × k) and `b` (k × n), products in bf16.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    a.apply_op2(b, Bf16Matmul)
}

/// The same product without a backward pass (the gradients' own products).
fn matmul_no_grad(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    a.apply_op2_no_bwd(b, &Bf16Matmul)
}

struct Bf16Matmul;

fn view<'a>(s: &'a CpuStorage, l: &Layout, which: &str) -> Result<MatRef<'a>> {
    let data = match s {
        CpuStorage::F32(v) => v.as_slice(),
        _ => bail!("bf16 matmul: {which} must be f32"),
    };
    let (&[rows, cols], &[row_stride, col_stride]) = (l.dims(), l.stride()) else {
        bail!(
            "bf16 matmul: {which} must be a matrix, found shape {:?}",
            l.dims()
        );
    };
    Ok(MatRef {
        data,
        offset: l.start_offset(),
        rows,
        cols,
        row_stride,
        col_stride,
    })
}

impl CustomOp2 for Bf16Matmul {
    fn name(&self) -> &'static str {
        "bf16-matmul"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (a, b) = (
            view(s1, l1, "the left operand")?,
            view(s2, l2, "the right operand")?,
        );
        if a.cols != b.rows {
            bail!(
                "bf16 matmul: shapes {:?} and {:?} do not chain",
                l1.dims(),
                l2.dims()
            );
        }
        let mut out = overwritten_buffer::<f32>(a.rows * b.cols);
        bf16_gemm::gemm_bf16(a, b, &mut out);
        Ok((CpuStorage::F32(out), Shape::from((a.rows, b.cols))))
    }

    /// `d a = g · bᵀ`, `d b = aᵀ · g`, both in bf16 (transposes are views).
    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let da = matmul_no_grad(grad, &b.t()?)?;
        let db = matmul_no_grad(&a.t()?, grad)?;
        Ok((Some(da), Some(db)))
    }
}
