#!/usr/bin/env bash
# The GPU check (make gpu-check): tests and times xpnet on CuPy, JAX and PyTorch on this machine's
# GPU in one offline run of under 8 minutes, results under ${OUT:-bench/results/gpu}.
#
#   bench/gpu_check.sh [PYTHON]       PYTHON (default python3) must have numpy, jax with CUDA, cupy,
#                                     torch, pytest and pytest-benchmark; the rest comes from
#                                     bench/gpu-kit, which `make gpu-check-prepare` fills elsewhere.
#   XPNET_GPU_CHECK_CPU=1 bench/gpu_check.sh .venv/bin/python    the same steps on the CPU, small.
#
# It never calls pip or the network. Exit status: 0 every step passed, 1 a step failed, 2 no GPU.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${1:-python3}"
command -v "$PYTHON" >/dev/null || { echo "gpu_check: no Python interpreter '$PYTHON'" >&2; exit 2; }
exec "$PYTHON" "$ROOT/bench/gpu_check.py" --out "${OUT:-$ROOT/bench/results/gpu}"
