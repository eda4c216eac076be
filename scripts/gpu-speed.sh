#!/usr/bin/env bash
# GPU throughput at a busy shape (docs/gpu.md, "Speed at a GPU's shape"), one short script for a
# machine with an NVIDIA GPU: trains sweeps/gpu_speed.toml (GPT-6 and a looped 2+2+2 model at
# d_model 512 and 1024, 65,536 tokens per step, fp32 and bf16) with the built-in trainer on CUDA
# and with the PyTorch trainer on CUDA, one run at a time, then prints steady-state tokens/s
# (from the step rows after the first 4 logged steps, so start-up and compilation are out) and
# model-FLOPs utilisation against the GPU's dense peak at each precision.
#
#   scripts/gpu-speed.sh [LOOPSCALE] [DB]
#   LOOPSCALE  a loopscale built with `cargo build --release --features cuda`
#              (default target/release/loopscale)
#   DB         where the runs go (default results/gpu_speed.sqlite)
#   PEAK_FP32, PEAK_BF16  the GPU's dense peaks in FLOP/s (default: H200 SXM, 67e12 and 989e12;
#              fp32 is plain fp32 in both trainers: neither turns on TF32)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/loopscale}
db=${2:-results/gpu_speed.sqlite}
peak_fp32=${PEAK_FP32:-67e12}
peak_bf16=${PEAK_BF16:-989e12}
source scripts/cuda-libs.sh
"$bin" plan sweeps/gpu_speed.toml | tail -4
LOOPSCALE_DEVICE=cuda "$bin" run sweeps/gpu_speed.toml --db "$db" --jobs 1 --plain || true
"$bin" sql "$db" "WITH steady AS (
     SELECT m.run_key,
            (max(m.tokens) - min(m.tokens)) / (max(m.elapsed_seconds) - min(m.elapsed_seconds)) AS tok_s
     FROM metrics m
     WHERE m.step > 4 * (SELECT json_extract(r.config_json, '$.train.log_every') FROM runs r WHERE r.run_key = m.run_key)
     GROUP BY m.run_key)
   SELECT r.variant AS trainer, r.arch, r.d_model,
          coalesce(json_extract(r.config_json, '$.train.precision'), 'fp32') AS precision,
          r.status, round(s.tok_s) AS tokens_per_s,
          round(100.0 * s.tok_s * r.flops / r.tokens /
                CASE WHEN json_extract(r.config_json, '$.train.precision') = 'bf16' THEN $peak_bf16 ELSE $peak_fp32 END, 1) AS mfu_pct,
          round(r.final_val_loss, 4) AS val_loss
   FROM runs r LEFT JOIN steady s USING (run_key)
   WHERE r.sweep = 'gpu_speed'
   ORDER BY r.arch, r.d_model, precision, r.variant"
