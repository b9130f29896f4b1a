"""2D datasets: the Gaussian mixtures of the PacGAN protocol, `ring` (8 modes) and `grid` (25 modes), a
few more shapes for watching a game in `gankit playground` (`gaussians`, `line`, `moons`), and `points`,
a set the user drew (data.points)."""
from __future__ import annotations

import math

import torch

from gankit.config import DataConfig
from gankit.data.registry import DATASETS, DatasetFacts, register_facts
from gankit.data.source import TensorSource


def ring_modes(n: int = 8, radius: float = 1.0) -> torch.Tensor:
    angles = torch.arange(n, dtype=torch.float64) * (2 * math.pi / n)
    return torch.stack([radius * torch.cos(angles), radius * torch.sin(angles)], 1).float()


def grid_modes(values: tuple[float, ...] = (-4.0, -2.0, 0.0, 2.0, 4.0)) -> torch.Tensor:
    v = torch.tensor(values)
    return torch.cartesian_prod(v, v)


def gaussians_modes() -> torch.Tensor:
    return torch.tensor([[-1.0, -0.6], [1.0, -0.6], [0.0, 1.0]])


MIXTURES = {"ring": (ring_modes, 0.01), "grid": (grid_modes, 0.05), "gaussians": (gaussians_modes, 0.15)}
TRAIN_SEED = 1234  # the fixed training set; evaluation draws its test points with another seed
for _name in MIXTURES:  # 2D points are their own features; `test` is a fresh draw
    register_facts(_name, DatasetFacts(("train", "test"), extractor="points"))


def mixture_modes(name: str) -> torch.Tensor | None:
    """The centres of a named mixture (ring, grid, gaussians); None for a dataset without modes."""
    return MIXTURES[name][0]() if name in MIXTURES else None


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


@DATASETS.register("gaussians")
def gaussians(cfg: DataConfig) -> TensorSource:
    return _mixture("gaussians", cfg)


def _jittered(points: torch.Tensor, std: float, cfg: DataConfig) -> TensorSource:
    gen = torch.Generator().manual_seed(TRAIN_SEED)
    which = torch.randint(len(points), (cfg.num_points,), generator=gen)
    return TensorSource(points[which] + std * torch.randn(cfg.num_points, 2, generator=gen), None, cfg.normalize)


@DATASETS.register("line")
def line(cfg: DataConfig) -> TensorSource:
    """A segment from (-1, -0.5) to (1, 0.5): no modes to count, one shape to match."""
    t = torch.linspace(-1.0, 1.0, 2001)
    return _jittered(torch.stack([t, 0.5 * t], 1), 0.02, cfg)


@DATASETS.register("moons")
def moons(cfg: DataConfig) -> TensorSource:
    """scikit-learn's two interleaving half circles, centred on the origin."""
    t = torch.linspace(0.0, math.pi, 1001, dtype=torch.float64)
    upper = torch.stack([torch.cos(t), torch.sin(t)], 1)
    lower = torch.stack([1 - torch.cos(t), 0.5 - torch.sin(t)], 1)
    return _jittered((torch.cat([upper, lower]) - torch.tensor([0.5, 0.25], dtype=torch.float64)).float(), 0.05, cfg)


@DATASETS.register("points")
def points(cfg: DataConfig) -> TensorSource:
    """data.points (the points drawn in `gankit playground`), each jittered by a Gaussian of std 0.02."""
    from gankit.config import ConfigError

    try:
        xy = torch.tensor(cfg.points, dtype=torch.float32)
    except (TypeError, ValueError):
        xy = torch.empty(0)
    if xy.dim() != 2 or xy.shape[1] != 2 or len(xy) == 0 or not torch.isfinite(xy).all():
        raise ConfigError("config: data.points: the `points` dataset needs a list of finite [x, y] pairs, "
                          f"got {str(cfg.points)[:60]}")
    return _jittered(xy, 0.02, cfg)
