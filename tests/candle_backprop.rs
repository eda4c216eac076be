//! The vendored candle-core's backward pass (vendor/candle-core/PATCHES.md) against gradients
//! worked out by hand: a tensor reached by several paths (accumulation), through views
//! (transpose, narrow, reshape, broadcast) that now hand their gradient on without a copy into
//! a zeros tensor, and a batched matmul whose batches run in parallel.

use crate::common;

use candle_core::{DType, Device, Tensor, Var};
use common::max_abs_diff;

fn close(a: &Tensor, b: &Tensor) {
    let d = max_abs_diff(a, b);
    assert!(d < 1e-12, "gradients differ by {d:e}");
}

#[test]
fn a_tensor_reached_by_several_paths_gets_the_sum_of_their_gradients() {
    let dev = Device::Cpu;
    let x = Var::from_tensor(
        &Tensor::arange(0f64, 12.0, &dev)
            .unwrap()
            .reshape((3, 4))
            .unwrap(),
    )
    .unwrap();
    let xt = x.as_tensor();
    let w = Tensor::arange(1f64, 13.0, &dev)
        .unwrap()
        .reshape((3, 4))
        .unwrap();
    // f = Σ x⊙w + Σ xᵀ·2 + Σ x[:, 1..3]·3 + Σ (x + row) ⊙ x
    let row = Tensor::new(&[1f64, -1.0, 2.0, 0.5], &dev).unwrap();
    let f = ((xt * &w).unwrap().sum_all().unwrap()
        + xt.t().unwrap().affine(2.0, 0.0).unwrap().sum_all().unwrap()
        + xt.narrow(1, 1, 2)
            .unwrap()
            .affine(3.0, 0.0)
            .unwrap()
            .sum_all()
            .unwrap()
        + (xt.broadcast_add(&row).unwrap() * xt)
            .unwrap()
            .sum_all()
            .unwrap())
    .unwrap();
    let grads = f.backward().unwrap();
    // ∂f/∂x = w + 2 + 3·[col ∈ {1, 2}] + 2x + row
    let cols = Tensor::new(&[0f64, 3.0, 3.0, 0.0], &dev).unwrap();
    let expected = ((&w + 2.0).unwrap().broadcast_add(&cols).unwrap()
        + xt.affine(2.0, 0.0).unwrap().broadcast_add(&row).unwrap())
    .unwrap();
    close(grads.get(xt).unwrap(), &expected);
}

#[test]
fn a_batched_matmul_has_the_gradients_of_its_batches() {
    let dev = Device::Cpu;
    let a = Var::from_tensor(&Tensor::randn(0f64, 1.0, (5, 3, 4), &dev).unwrap()).unwrap();
    let b = Var::from_tensor(&Tensor::randn(0f64, 1.0, (5, 4, 2), &dev).unwrap()).unwrap();
    let g = Tensor::randn(0f64, 1.0, (5, 3, 2), &dev).unwrap();
    let f = (a.as_tensor().matmul(b.as_tensor()).unwrap() * &g)
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = f.backward().unwrap();
    for i in 0..5 {
        let (ai, bi, gi) = (
            a.as_tensor().get(i).unwrap(),
            b.as_tensor().get(i).unwrap(),
            g.get(i).unwrap(),
        );
        // ∂/∂A = G Bᵀ, ∂/∂B = Aᵀ G, batch by batch.
        close(
            &grads.get(a.as_tensor()).unwrap().get(i).unwrap(),
            &gi.matmul(&bi.t().unwrap()).unwrap(),
        );
        close(
            &grads.get(b.as_tensor()).unwrap().get(i).unwrap(),
            &ai.t().unwrap().matmul(&gi).unwrap(),
        );
    }
    // The forward product itself, batch by batch.
    let c = a.as_tensor().matmul(b.as_tensor()).unwrap();
    for i in 0..5 {
        let ci = a
            .as_tensor()
            .get(i)
            .unwrap()
            .matmul(&b.as_tensor().get(i).unwrap())
            .unwrap();
        close(&c.get(i).unwrap(), &ci);
    }
    assert_eq!(c.dtype(), DType::F64);
}
