"""`stacked-mnist`: three independently drawn MNIST digits stacked as the R, G and B channels.

The mode-collapse benchmark of Metz et al. (Unrolled GAN), VEEGAN and PacGAN: a sample's class is the
digit triple, ``100 * r + 10 * g + b``, so the data has 1000 equally likely modes. The training set is
a fixed draw (seed ``TRAIN_SEED``, size ``data.stacked_size``) from the bundled ``mnist10k`` digits, or
from torchvision's 60,000 MNIST training digits under ``data.root`` with ``data.stacked_digits: mnist``.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from gankit.config import DataConfig
from gankit.data.registry import DATASETS, DatasetFacts, register_facts
from gankit.data.source import TensorSource, fit_images

NUM_MODES = 1000
TRAIN_SEED = 2718  # the fixed training set; real-data floors draw with their own seeds
register_facts("stacked-mnist", DatasetFacts(extractor="mnist-cnn-stacked"))


def mode_of(digits: torch.Tensor) -> torch.Tensor:
    """The class of digit triples (N, 3), in R, G, B order: 100 r + 10 g + b (the triple read as a number)."""
    return (digits.long() * torch.tensor([100, 10, 1], device=digits.device)).sum(1)


def stack_digits(images: torch.Tensor, labels: torch.Tensor, num: int, seed: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``num`` stacked samples, uint8 (num, 3, H, W), and their classes 100 r + 10 g + b, from uint8
    digits (M, H, W) and their labels; the three channels are drawn independently and uniformly."""
    gen = torch.Generator().manual_seed(seed)
    which = torch.randint(len(images), (num, 3), generator=gen)
    return images[which], mode_of(labels[which])


def source_digits(cfg: DataConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 digits (M, 28, 28) and labels (M,) that ``cfg.stacked_digits`` names."""
    if cfg.stacked_digits == "mnist":
        from gankit.data.vision import load_split

        # the plain 28 px grayscale digits: resizing and channels apply to the stacked images
        src = load_split("mnist", replace(cfg, limit=None, resolution=None, channels=None))
        assert src.labels is not None
        return src.data[:, 0], src.labels
    from gankit.data.bundled import shuffled_mnist10k

    images, labels = shuffled_mnist10k()
    return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels.astype(np.int64))


@DATASETS.register("stacked-mnist")
def stacked_mnist(cfg: DataConfig) -> TensorSource:
    images, labels = source_digits(cfg)
    num = cfg.stacked_size if cfg.limit is None else min(cfg.limit, cfg.stacked_size)
    x, y = stack_digits(images, labels, num, TRAIN_SEED)
    return TensorSource(fit_images(x, cfg.resolution, cfg.channels), y, cfg.normalize, NUM_MODES)
