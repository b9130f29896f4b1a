#!/usr/bin/env bash
# Create .venv/ (reused when present) and install gankit with its pinned PyTorch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import torch, torchvision, torchmetrics, gankit, starlette, uvicorn, websockets, selenium, onnx, onnxruntime, huggingface_hub, nbclient, nbformat, ipykernel, wandb, mlflow" >/dev/null 2>&1; then
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  # Exact versions: on the project machines these install from local disk, no large download.
  .venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
  .venv/bin/python -m pip install -q -e ".[tensorboard,test,playground,export,translation,notebook,wandb,mlflow]"
fi
# the playground's browser test drives Debian's chromium through its driver (selenium)
if ! command -v chromedriver >/dev/null 2>&1 || ! { command -v chromium || command -v chromium-browser; } >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "setup: chromium and chromium-driver are missing (apt-get install chromium chromium-driver)" >&2
  fi
fi
