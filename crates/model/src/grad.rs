//! Forward passes without an autograd graph, for evaluation.
//!
//! candle records every op that has a variable among its inputs, and the record keeps each
//! intermediate tensor alive until the result is dropped. Evaluation never calls `backward`, so
//! inside [`no_grad`] the layers read their parameters through [`param`], which then hands out
//! detached views of the same buffers (no copy): nothing downstream is recorded and every
//! intermediate is freed as soon as the next op has read it.

use std::cell::Cell;

use candle_core::Tensor;

thread_local! {
    static NO_GRAD: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with gradient recording off on this thread (restored afterwards, even on panic).
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            NO_GRAD.with(|g| g.set(self.0));
        }
    }
    let _restore = Restore(NO_GRAD.with(|g| g.replace(true)));
    f()
}

/// A parameter as a layer should use it: itself, or a detached view inside [`no_grad`].
pub fn param(t: &Tensor) -> Tensor {
    if NO_GRAD.with(Cell::get) {
        t.detach()
    } else {
        t.clone()
    }
}
