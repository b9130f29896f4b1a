#!/usr/bin/env bash
# Create .venv/ (reused when present) and install gankit with its pinned PyTorch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import torch, torchvision, torchmetrics, gankit" >/dev/null 2>&1; then
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  # Exact versions: on the project machines these install from local disk, no large download.
  .venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
  .venv/bin/python -m pip install -q -e ".[tensorboard,test,translation]"
fi
