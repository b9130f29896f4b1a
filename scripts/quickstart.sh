#!/usr/bin/env bash
# Set up, then train the default config on the bundled MNIST digits (no network) and write a grid.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# a fresh run directory each time, so running the command again trains again instead of refusing
RUN=${RUN:-runs/quickstart-$(date +%Y%m%d-%H%M%S)}
.venv/bin/gankit train configs/mnist_dcgan.yaml --run-dir "$RUN" --max-seconds "${SECONDS_BUDGET:-300}" "$@"
.venv/bin/gankit sample "$RUN" --num 100 --out "$RUN/grid.png"  # 10 x 10: one column per digit class
echo "quickstart: grid of 100 samples in $RUN/grid.png"
