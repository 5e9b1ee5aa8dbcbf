#!/usr/bin/env bash
# One call that verifies a GPU (no network, under 8 minutes on one H100): the device tests on CUDA, benchmarks/bench_gpu.py,
# `sparsediff demo --device cuda`, a 3-minute full-width training and a 2-rank extract when two GPUs exist; one JSON of every figure.
# Usage: bash tools/gpu_check.sh [FOLDER]             (on a GPU machine; the JSON goes to $OUT when set, else FOLDER, else ./gpu_check)
#        bash tools/gpu_check.sh --dry-run [FOLDER]   (tiny sizes on the CPU, a few minutes on 2 cores: CI runs it)
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" tools/gpu_check.py "$@"
