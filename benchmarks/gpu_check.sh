#!/usr/bin/env bash
# The prepared GPU check (issue 26): every CUDA path once, within ~8 minutes of one GPU; one JSON.
#   bash benchmarks/gpu_check.sh                  # JSON: $OUT/gpu_check.json, else benchmarks/out/gpu_check.json
#   bash benchmarks/gpu_check.sh --cpu-fid benchmarks/results/gpu_check_cpu.json   # FID beside the CPU's
# The device tool copies the working tree but not .venv/: install the pinned torch if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi
"$PY" -c "import torch, gankit" 2>/dev/null || "$PY" -m pip install -q -e .
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv 2>/dev/null || true
exec timeout 540 "$PY" benchmarks/gpu_check.py --device cuda --budget 450 "$@"
