"""torch.mm at the matrix shapes of a training step, for `benches/train_ref.rs` (`make bench`).

Reads shapes as `M,K,N,ta,tb` (ta/tb = 1: that operand is a transposed view, as in the
backward's dX = dY·Wᵀ and dW = Xᵀ·dY), times the product best of `--reps`, and prints one JSON
line: GFLOP/s per shape in the order given. bf16 runs under CPU autocast from f32 operands,
as the PyTorch training twin does, so the casts are inside the timing as they are in ours.
"""

import argparse
import json
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", required=True, help="M,K,N,ta,tb;M,K,N,ta,tb;...")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rates = []
    for spec in args.shapes.split(";"):
        m, k, n, ta, tb = (int(x) for x in spec.split(","))
        a = torch.randn(k, m).t() if ta else torch.randn(m, k)
        b = torch.randn(n, k).t() if tb else torch.randn(k, n)
        best = float("inf")
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            torch.mm(a, b)
            for _ in range(args.reps):
                t = time.perf_counter()
                torch.mm(a, b)
                best = min(best, time.perf_counter() - t)
        rates.append(2.0 * m * k * n / best / 1e9)
    print(json.dumps({"gflops": rates}))


if __name__ == "__main__":
    main()
