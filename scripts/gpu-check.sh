#!/usr/bin/env bash
# The GPU check of docs/gpu.md, one short script for a machine with an NVIDIA GPU: trains
# sweeps/gpu_check.toml with the built-in trainer on CUDA and with the PyTorch trainer on CUDA,
# then prints their final losses and throughput side by side.
#
#   scripts/gpu-check.sh [LOOPSCALE] [DB]
#   LOOPSCALE  a loopscale built with `cargo build --release --features cuda`
#              (default target/release/loopscale)
#   DB         where the runs go (default results/gpu_check.sqlite)
#
# The built-in trainer links the CUDA runtime (libcudart) and loads the rest at run time (dynamic
# loading): libcuda from the driver, and cuBLAS, cuBLASLt, cuRAND and NVRTC of the CUDA major
# version the binary was built with, from the CUDA toolkit or from PyTorch's nvidia-* wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/loopscale}
db=${2:-results/gpu_check.sqlite}
source scripts/cuda-libs.sh
"$bin" plan sweeps/gpu_check.toml | tail -4
LOOPSCALE_DEVICE=cuda "$bin" run sweeps/gpu_check.toml --db "$db" --jobs 2 --plain
"$bin" sql "$db" "SELECT arch, d_model,
   round(max(CASE WHEN variant = 'builtin' THEN final_val_loss END), 4) AS builtin_cuda,
   round(max(CASE WHEN variant = 'torch' THEN final_val_loss END), 4) AS torch_cuda,
   round(max(CASE WHEN variant = 'builtin' THEN tokens_per_second END)) AS builtin_tok_s,
   round(max(CASE WHEN variant = 'torch' THEN tokens_per_second END)) AS torch_tok_s
 FROM runs WHERE sweep = 'gpu_check' GROUP BY arch, d_model ORDER BY arch, d_model"
