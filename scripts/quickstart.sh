#!/usr/bin/env bash
# Set up, then train the default config on the bundled MNIST digits (no network) and write a grid.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
RUN=${RUN:-runs/quickstart}
.venv/bin/gankit train configs/mnist_dcgan.yaml --run-dir "$RUN" --max-seconds "${SECONDS_BUDGET:-300}" "$@"
.venv/bin/gankit sample "$RUN" --num 64 --out "$RUN/grid.png"
