"""The 2D Gaussian mixtures of the PacGAN protocol: `ring` (8 modes) and `grid` (25 modes)."""
from __future__ import annotations

import math

import torch

from gankit.config import DataConfig
from gankit.data.registry import DATASETS
from gankit.data.source import TensorSource


def ring_modes(n: int = 8, radius: float = 1.0) -> torch.Tensor:
    angles = torch.arange(n, dtype=torch.float64) * (2 * math.pi / n)
    return torch.stack([radius * torch.cos(angles), radius * torch.sin(angles)], 1).float()


def grid_modes(values: tuple[float, ...] = (-4.0, -2.0, 0.0, 2.0, 4.0)) -> torch.Tensor:
    v = torch.tensor(values)
    return torch.cartesian_prod(v, v)


MIXTURES = {"ring": (ring_modes, 0.01), "grid": (grid_modes, 0.05)}
TRAIN_SEED = 1234  # the fixed training set; evaluation draws its test points with another seed


def mixture_points(modes: torch.Tensor, std: float, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    which = torch.randint(len(modes), (n,), generator=gen)
    return modes[which] + std * torch.randn(n, 2, generator=gen), which


def _mixture(name: str, cfg: DataConfig) -> TensorSource:
    modes_fn, std = MIXTURES[name]
    points, which = mixture_points(modes_fn(), std, cfg.num_points, seed=TRAIN_SEED)
    return TensorSource(points, which, cfg.normalize, num_classes=len(modes_fn()))


@DATASETS.register("ring")
def ring(cfg: DataConfig) -> TensorSource:
    return _mixture("ring", cfg)


@DATASETS.register("grid")
def grid(cfg: DataConfig) -> TensorSource:
    return _mixture("grid", cfg)
