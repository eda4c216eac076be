//! Mixed precision: which arithmetic a training step's matrix products use, and the scope
//! (`autocast`) that sets it for the code run inside, as PyTorch's `torch.autocast` does.
//!
//! The precision is a property of the step rather than of the network: the same weights are
//! trained in bf16 and evaluated in fp32, so the layers do not carry it. [`autocast`] sets it
//! for the calling thread while a closure runs; [`super::ops::matmul`] reads it, and an op
//! run under bf16 remembers that for its backward pass, which candle runs later, outside the
//! scope.

use std::cell::Cell;

use serde::{Deserialize, Serialize};

/// The arithmetic of a training step's matrix products (`train.precision`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    Fp32,
    /// Mixed precision: the matrix products of the forward and backward pass take their
    /// operands rounded to bfloat16 and sum in f32; weights, activations, gradients and the
    /// optimizer state stay f32 (PyTorch's CPU autocast rounds the same products). On a CPU
    /// it needs AVX512-BF16 ([`bf16_available`]); on a GPU, candle's bf16 matmul.
    Bf16,
}

impl Precision {
    pub fn is_fp32(&self) -> bool {
        *self == Precision::Fp32
    }

    /// The name a sweep file writes.
    pub fn name(&self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }
}

thread_local! {
    static CURRENT: Cell<Precision> = const { Cell::new(Precision::Fp32) };
}

/// Runs `f` with the matrix products it makes on this thread at `precision`; the previous
/// precision is restored afterwards, also when `f` panics.
pub fn autocast<R>(precision: Precision, f: impl FnOnce() -> R) -> R {
    struct Restore(Precision);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(CURRENT.with(|c| c.replace(precision)));
    f()
}

/// The precision [`autocast`] set for this thread (fp32 outside any scope).
pub fn current() -> Precision {
    CURRENT.with(|c| c.get())
}

/// Whether this CPU runs bf16 matrix products: x86-64 with AVX512-BF16. Setting the
/// environment variable `LOOPSCALE_NO_CPU_BF16` makes it say no (to test the error a CPU
/// without it gives).
pub fn bf16_available() -> bool {
    std::env::var_os("LOOPSCALE_NO_CPU_BF16").is_none() && super::bf16_gemm::available()
}
