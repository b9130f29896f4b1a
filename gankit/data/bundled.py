"""`mnist10k`: 10,000 real MNIST digits shipped inside the package (provenance in the README)."""
from __future__ import annotations

from importlib import resources

import numpy as np
import torch

from gankit.config import DataConfig
from gankit.data.registry import DATASETS, DatasetFacts, register_facts
from gankit.data.source import TensorSource, fit_images


def load_mnist10k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The raw uint8 images (10000, 28, 28) and labels (10000,)."""
    from gankit.data.npz import read_arrays

    with resources.files("gankit.assets").joinpath("mnist10k.npz").open("rb") as fh:
        arrays = read_arrays(fh, ("images", "labels"), "gankit/assets/mnist10k.npz")
    return arrays["images"], arrays["labels"]


def shuffled_mnist10k() -> tuple[np.ndarray, np.ndarray]:
    """The digits in one fixed random order: the file is sorted by label, so any prefix
    (``data.limit``) or hold-out slice of the raw order would hold only a few classes."""
    images, labels = load_mnist10k_arrays()
    order = np.random.default_rng(0).permutation(len(images))
    return images[order], labels[order]


def images_source(images: np.ndarray, labels: np.ndarray | None, cfg: DataConfig) -> TensorSource:
    """A TensorSource from uint8 NHW or NHWC arrays, fitted to the config's resolution and channels."""
    x = torch.from_numpy(np.ascontiguousarray(images))
    x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
    y = None if labels is None else torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if cfg.limit is not None:
        x = x[:cfg.limit]
        y = None if y is None else y[:cfg.limit]
    x = fit_images(x, cfg.resolution, cfg.channels)
    num_classes = None if y is None else int(y.max()) + 1
    return TensorSource(x, y, cfg.normalize, num_classes)


@DATASETS.register("mnist10k")
def mnist10k(cfg: DataConfig) -> TensorSource:
    images, labels = shuffled_mnist10k()
    return images_source(images, labels, cfg)


HOLDOUT = 1000  # the last 1000 digits of mnist10k (in its fixed shuffled order) are never trained on
register_facts("mnist10k", DatasetFacts(("train", "holdout"), holdout=HOLDOUT, extractor="mnist-cnn"))
