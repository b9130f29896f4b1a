"""A small CNN classifier whose penultimate layer is a feature space for small labelled images.

Inception-v3 features do not fit 28x28 digits (and need weights from the internet); a classifier
trained on the real data sees exactly what matters there: stroke shape and class identity. The shipped
``mnist-cnn`` is this network trained on the bundled digits (reproduce it with
``python scripts/train_mnist_cnn.py``); ``gankit classifier --data NAME`` trains one for any labelled
dataset, usable as the extractor ``classifier:PATH``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from gankit.checkpoint import atomic_write_bytes
from gankit.data.registry import dataset_facts, dataset_splits
from gankit.metrics.errors import EvalError
from gankit.metrics.reference import reference_images
from gankit.metrics.store import safetensors_metadata

FEATURE_DIM = 128
VERSION = 1  # of the architecture and recipe of `gankit classifier`; part of reference-cache keys


class DigitCNN(nn.Module):
    """Input: float (N, C, R, R) in [0, 1]. ``features`` = 128-d ReLU layer before the logits."""

    def __init__(self, num_classes: int = 10, channels: int = 1, resolution: int = 28) -> None:
        super().__init__()
        side = resolution // 4  # two 2x2 max-pools, flooring like nn.MaxPool2d
        if side < 1:
            raise EvalError(f"a classifier needs images of at least 4 px, got {resolution}")
        self.channels, self.resolution, self.num_classes = channels, resolution, num_classes
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * side * side, FEATURE_DIM), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))


def _shift(x: torch.Tensor, gen: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Random translations by up to ``max_shift`` pixels (zero padded): cheap, label-preserving."""
    n, c, h, w = x.shape
    padded = F.pad(x, [max_shift] * 4)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    rows = (dy.view(n, 1) + torch.arange(h)).view(n, 1, h, 1).expand(n, c, h, w + 2 * max_shift)
    out = padded.gather(2, rows)
    cols = (dx.view(n, 1) + torch.arange(w)).view(n, 1, 1, w).expand(n, c, h, w)
    return out.gather(3, cols)


@torch.no_grad()
def accuracy(model: DigitCNN, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy on uint8 (N, C, R, R) images."""
    model.eval()
    correct = sum(int((model(x.float().div(255)).argmax(1) == y).sum())
                  for x, y in zip(images.split(batch_size), labels.split(batch_size)))
    return correct / len(labels)


def train_classifier(images: torch.Tensor, labels: torch.Tensor, test_images: torch.Tensor,
                     test_labels: torch.Tensor, *, num_classes: int | None = None, epochs: int = 10,
                     seed: int = 0, batch_size: int = 128, lr: float = 2e-3) -> tuple[DigitCNN, float]:
    """Train on uint8 (N, C, R, R) ``images``; returns the model and its accuracy on the test images."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    y = labels.long()
    num_classes = num_classes or int(max(int(y.max()), int(test_labels.max()))) + 1
    model = DigitCNN(num_classes, images.shape[1], images.shape[-1])
    batch_size = min(batch_size, len(images))
    per_epoch = len(images) // batch_size
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * per_epoch)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(images), generator=gen)
        for i in range(per_epoch):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            loss = F.cross_entropy(model(_shift(images[idx].float().div(255), gen)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model, accuracy(model, test_images, test_labels.long())


def labelled_splits(data: str, *, root: str = "data", download: bool = False
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train images, labels, test images, labels) of a registered dataset: its test split when it has
    one, else its last 10 % (for mnist10k exactly the 1000 held-out digits)."""
    x, y = reference_images(data, "train", root=root, download=download)
    if x.dim() != 4:
        raise EvalError(f"{data} holds 2D points, not images; a classifier needs a labelled image dataset")
    if y is None:
        raise EvalError(f"{data} has no labels; a classifier needs a labelled image dataset")
    if "test" in dataset_splits(data):
        x_te, y_te = reference_images(data, "test", root=root, download=download)
        assert y_te is not None
        return x, y, x_te, y_te
    held = max(1, len(x) // 10)
    return x[:-held], y[:-held], x[-held:], y[-held:]


def train_for_dataset(data: str, *, root: str = "data", download: bool = False, epochs: int = 10,
                      seed: int = 0, limit: int | None = None) -> tuple[DigitCNN, dict[str, Any]]:
    """Train a classifier on ``data`` (``limit``: only its first N training images); returns it and its info."""
    x, y, x_te, y_te = labelled_splits(data, root=root, download=download)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    num_classes = int(max(int(y.max()), int(y_te.max()))) + 1
    model, acc = train_classifier(x, y, x_te, y_te, num_classes=num_classes, epochs=epochs, seed=seed)
    info = {"name": "classifier", "version": VERSION, "dataset": data, "channels": int(x.shape[1]),
            "resolution": int(x.shape[-1]), "num_classes": num_classes, "test_accuracy": round(acc, 4),
            "epochs": epochs, "seed": seed, "train_images": len(x), "test_images": len(x_te)}
    return model, info


def save_classifier(model: DigitCNN, info: dict[str, Any], path: str | Path) -> Path:
    """Weights and ``info`` (JSON in the header) as one safetensors file, written atomically."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(Path(path), save(state, metadata={"info": json.dumps(info)}))
    return Path(path)


def classifier_from_bytes(raw: bytes, where: str) -> tuple[DigitCNN, dict[str, Any]]:
    """Rebuild a saved classifier (eval mode) and its info; anything else raises EvalError."""
    from safetensors.torch import load

    meta = safetensors_metadata(raw, where)
    try:
        info = json.loads(meta.get("info", "{}"))
        state = load(raw)
        num_classes = int(info.get("num_classes", state["head.weight"].shape[0]))
        model = DigitCNN(num_classes, int(info.get("channels", 1)), int(info.get("resolution", 28)))
        model.load_state_dict(state)
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EvalError(f"{where} is not a gankit classifier ({first})") from None
    return model.eval(), info


def train_mnist_cnn(epochs: int = 10, seed: int = 0) -> tuple[DigitCNN, dict[str, Any]]:
    """The shipped ``mnist-cnn`` (gankit/assets/mnist_cnn.safetensors): trained on mnist10k but its held-out
    digits, which measure its accuracy; returns it and its info (scripts/train_mnist_cnn.py writes both)."""
    from gankit.data.bundled import shuffled_mnist10k

    held = dataset_facts("mnist10k").holdout
    images, labels = shuffled_mnist10k()
    x = torch.from_numpy(images).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    model, acc = train_classifier(x[:-held], y[:-held], x[-held:], y[-held:], epochs=epochs, seed=seed)
    info = {"name": "mnist-cnn", "version": 1, "holdout_accuracy": round(acc, 4), "epochs": epochs,
            "seed": seed, "train_digits": len(images) - held, "holdout_digits": held}
    return model, info
