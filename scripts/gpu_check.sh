#!/usr/bin/env bash
# One prepared GPU check (about 5 minutes on one H100): the CUDA tests, then training throughput
# of the paper's three experiments in three variants. JSON results land in $OUT (default
# results/gpu_check); copy them to docs/benchmarks/ with the device they name.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/gpu_check}
mkdir -p "$OUT"
export PYTHONPATH=src:${PYTHONPATH:-}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python -m pytest -q tests/test_gpu.py 2>&1 | tee "$OUT/test_gpu.log"
python -m nnboundary benchmark train --device cuda --steps 30 --output "$OUT/train_cuda_fp32.json"
python -m nnboundary benchmark train --device cuda --steps 30 --amp bf16 \
    --output "$OUT/train_cuda_bf16.json"
python -m nnboundary benchmark train --device cuda --steps 30 --amp bf16 --compile \
    --output "$OUT/train_cuda_bf16_compile.json"
