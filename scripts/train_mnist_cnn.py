"""Reproduce gankit/assets/mnist_cnn.safetensors, the ``mnist-cnn`` feature extractor.

    python scripts/train_mnist_cnn.py [--out PATH] [--epochs 10] [--seed 0]

Trains the digit classifier on the bundled mnist10k digits but the 1,000 held out, writes it (weights and
info) and prints the info with the time taken as one JSON line. ``gankit classifier --data NAME`` trains
the same network for any labelled dataset.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from gankit.metrics.classifier import save_classifier, train_mnist_cnn

ASSET = Path(__file__).resolve().parent.parent / "gankit" / "assets" / "mnist_cnn.safetensors"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the mnist10k feature classifier.")
    parser.add_argument("--out", default=str(ASSET))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    t0 = time.time()
    model, info = train_mnist_cnn(args.epochs, args.seed)
    save_classifier(model, info, args.out)
    print(json.dumps({**info, "seconds": round(time.time() - t0, 1), "out": args.out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
