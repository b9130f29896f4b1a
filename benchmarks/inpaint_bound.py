"""How much of a digit's identity survives the inpainting task's centre 14x14 box: the shipped classifier's
recipe trained directly on the masked training digits (the first 9,000, masked exactly as the `inpaint`
task's inputs) and tested on the 1,000 held-out masked digits. An inpainter only sees the same pixels, so
the accuracy of its completions can exceed this only by as much as a better classifier of masked digits could.

    taskset -c 1 python benchmarks/inpaint_bound.py --epochs 10 20 --json benchmarks/results/inpaint_bound.json
    taskset -c 1 python benchmarks/inpaint_bound.py --epochs 20 --seeds 0 1 2 \
        --json benchmarks/results/inpaint_bound_ensemble.json

With several ``--seeds`` a row per seed, then the ensemble of those classifiers (mean softmax), a
stronger classifier of the same pixels than any one of them.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from gankit.metrics.classifier import accuracy, train_classifier
from gankit.translation.tasks import HOLDOUT, MASK_FILL, digits, make_masks


def masked(images: torch.Tensor) -> torch.Tensor:
    """The inpaint task's inputs: the centre box filled with its grey, as G sees them."""
    m = make_masks("centre", len(images), images.shape[-1], torch.Generator())
    return torch.where(m.bool(), torch.full_like(images, MASK_FILL), images)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, nargs="+", default=[10, 20])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", required=True)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    x, y = digits()
    train_x, train_y, test_x, test_y = x[:-HOLDOUT], y[:-HOLDOUT], x[-HOLDOUT:], y[-HOLDOUT:]
    train_in, test_in = masked(train_x), masked(test_x)
    rows = []
    for epochs in args.epochs:
        probs = []
        for seed in args.seeds:
            t0 = time.perf_counter()
            model, acc_masked = train_classifier(train_in, train_y, test_in, test_y, epochs=epochs, seed=seed)
            with torch.no_grad():
                probs.append(model(test_in.float().div(255)).softmax(1))
            rows.append({"epochs": epochs, "seed": seed, "accuracy_on_masked_heldout": round(acc_masked, 4),
                         "accuracy_on_complete_heldout": round(accuracy(model, test_x, test_y), 4),
                         "seconds": round(time.perf_counter() - t0, 1)})
            print(f"epochs {epochs:3d}  seed {seed}  masked held-out accuracy {acc_masked:.3f}  "
                  f"({rows[-1]['seconds']} s)", flush=True)
            write(args.json, len(train_x), len(test_x), rows)
        if len(probs) > 1:
            acc = float((torch.stack(probs).mean(0).argmax(1) == test_y.long()).float().mean())
            rows.append({"epochs": epochs, "ensemble_of_seeds": args.seeds, "accuracy_on_masked_heldout": round(acc, 4)})
            print(f"epochs {epochs:3d}  ensemble of {len(probs)}  masked held-out accuracy {acc:.3f}", flush=True)
            write(args.json, len(train_x), len(test_x), rows)


def write(path: str, train_images: int, test_images: int, rows: list[dict]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({
        "what": "classifier (gankit's DigitCNN recipe) trained on the masked first 9,000 digits, "
                "tested on the 1,000 held-out masked digits (centre 14x14 box, grey fill)",
        "train_images": train_images, "test_images": test_images, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
