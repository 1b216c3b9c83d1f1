#!/usr/bin/env bash
# Scorer throughput on random-init Llama-style models (135M, 1B, 7B): run it on a GPU machine.
#   benchmarks/gpu_check.sh                      # cuda, all sizes, bf16 and fp32
#   DEVICE=cpu SIZES=135m DTYPES=float32 benchmarks/gpu_check.sh   # a CPU smoke run
# Needs a CUDA build of torch for cuda (this repo's Makefile installs a CPU build).
set -euo pipefail
PY=${PYTHON:-.venv/bin/python}
DEVICE=${DEVICE:-cuda}
SIZES=${SIZES:-135m 1b 7b}
DTYPES=${DTYPES:-bfloat16 float32}
if [ "$DEVICE" != cpu ]; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true; fi
# shellcheck disable=SC2086
exec $PY benchmarks/gpu_check.py --device "$DEVICE" --sizes $SIZES --dtypes $DTYPES "$@"
