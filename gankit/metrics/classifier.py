"""A small CNN digit classifier whose penultimate layer is gankit's feature space for 28x28 grayscale data.

Inception-v3 features do not fit 28x28 digits (and need weights from the internet); a classifier
trained on the real digits sees exactly what matters there: stroke shape and class identity.
Reproduce the shipped weights with ``python -m gankit.metrics.classifier`` (see README).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from gankit.checkpoint import atomic_write_bytes

FEATURE_DIM = 128
HOLDOUT = 1000  # the last 1000 digits of mnist10k (in its fixed shuffled order) are never trained on


class DigitCNN(nn.Module):
    """Input: float (N, 1, 28, 28) in [0, 1]. ``features`` = 128-d ReLU layer before the logits."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, FEATURE_DIM), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))


def _shift(x: torch.Tensor, gen: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Random translations by up to ``max_shift`` pixels (zero padded): cheap, label-preserving."""
    n = x.shape[0]
    padded = F.pad(x, [max_shift] * 4)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    rows = (dy.view(n, 1) + torch.arange(28)).view(n, 1, 28, 1).expand(n, 1, 28, 28 + 2 * max_shift)
    out = padded.gather(2, rows)
    cols = (dx.view(n, 1) + torch.arange(28)).view(n, 1, 1, 28).expand(n, 1, 28, 28)
    return out.gather(3, cols)


def train_classifier(images: np.ndarray, labels: np.ndarray, *, epochs: int = 10, seed: int = 0,
                     batch_size: int = 128, lr: float = 2e-3) -> tuple[DigitCNN, float]:
    """Train on all but the last ``HOLDOUT`` digits; returns the model and its hold-out accuracy."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(images).float().div(255).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    x_tr, y_tr, x_te, y_te = x[:-HOLDOUT], y[:-HOLDOUT], x[-HOLDOUT:], y[-HOLDOUT:]
    model = DigitCNN()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * (len(x_tr) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x_tr), generator=gen)
        for i in range(len(x_tr) // batch_size):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            loss = F.cross_entropy(model(_shift(x_tr[idx], gen)), y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        acc = (model(x_te).argmax(1) == y_te).float().mean().item()
    return model, acc


def main() -> None:
    from safetensors.torch import save

    from gankit.data.bundled import shuffled_mnist10k

    parser = argparse.ArgumentParser(description="Train the mnist10k feature classifier.")
    parser.add_argument("--out", default=str(Path(__file__).parents[1] / "assets" / "mnist_cnn.safetensors"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    t0 = time.time()
    images, labels = shuffled_mnist10k()
    model, acc = train_classifier(images, labels, epochs=args.epochs, seed=args.seed)
    info = {"name": "mnist-cnn", "version": 1, "holdout_accuracy": round(acc, 4), "epochs": args.epochs,
            "seed": args.seed, "train_digits": len(images) - HOLDOUT, "holdout_digits": HOLDOUT}
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(Path(args.out), save(state, metadata={"info": json.dumps(info)}))
    print(json.dumps({**info, "seconds": round(time.time() - t0, 1), "out": args.out}))


if __name__ == "__main__":
    main()
