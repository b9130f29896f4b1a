"""DiffAugment (Zhao et al. 2020): differentiable augmentations of every image D sees, real and fake.

Augmenting only the reals would teach G to produce augmented images; augmenting both, in the D and
the G step, with transforms that gradients pass through, keeps D from memorising a small dataset
while G still learns the clean distribution. Random parameters come from the generator handed in
(the trainer's), so runs are reproducible and resume bit-exactly.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from gankit.config import ConfigError

Transform = Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]


def _uniform(x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """One U(0, 1) number per sample, shaped to broadcast over (C, H, W)."""
    return torch.rand(x.shape[0], 1, 1, 1, generator=gen, device=x.device, dtype=x.dtype)


def color(x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """Random brightness (+-0.5), saturation (x0..2) and contrast (x0.5..1.5), per sample."""
    x = x + (_uniform(x, gen) - 0.5)
    mean = x.mean(1, keepdim=True)
    x = (x - mean) * (_uniform(x, gen) * 2) + mean
    mean = x.mean((1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(x, gen) + 0.5) + mean


def translation(x: torch.Tensor, gen: torch.Generator | None, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its side in x and y, filling with zeros."""
    n, c, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = torch.randint(-sh, sh + 1, (n, 1), generator=gen, device=x.device)
    tx = torch.randint(-sw, sw + 1, (n, 1), generator=gen, device=x.device)
    padded = F.pad(x, [sw, sw, sh, sh])
    rows = (torch.arange(h, device=x.device) + sh - ty).view(n, 1, h, 1).expand(n, c, h, w + 2 * sw)
    cols = (torch.arange(w, device=x.device) + sw - tx).view(n, 1, 1, w).expand(n, c, h, w)
    return padded.gather(2, rows).gather(3, cols)


def cutout(x: torch.Tensor, gen: torch.Generator | None, ratio: float = 0.5) -> torch.Tensor:
    """Zero a square of ``ratio`` of the side at a random centre (clipped at the borders), per sample."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    oy = torch.randint(0, h + (1 - ch % 2), (n, 1), generator=gen, device=x.device) - ch // 2
    ox = torch.randint(0, w + (1 - cw % 2), (n, 1), generator=gen, device=x.device) - cw // 2
    ys, xs = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    inside_y = (ys >= oy) & (ys < oy + ch)  # (n, h)
    inside_x = (xs >= ox) & (xs < ox + cw)  # (n, w)
    keep = ~(inside_y[:, :, None] & inside_x[:, None, :])
    return x * keep[:, None].to(x.dtype)


TRANSFORMS: dict[str, Transform] = {"color": color, "translation": translation, "cutout": cutout}


def parse_policy(policy: str) -> tuple[str, ...]:
    """``"translation,cutout"`` -> ("translation", "cutout"); unknown or repeated names are config errors."""
    names = tuple(p.strip() for p in policy.split(",") if p.strip())
    for name in names:
        if name not in TRANSFORMS:
            raise ConfigError(f"config: train.augment: unknown augmentation {name!r} "
                              f"(choose from {', '.join(TRANSFORMS)})")
    if len(set(names)) != len(names):
        raise ConfigError(f"config: train.augment lists an augmentation twice: {policy!r}")
    return names


class DiffAugment:
    """The transforms of a policy, applied in the order written."""

    def __init__(self, policy: str) -> None:
        self.names = parse_policy(policy)

    def __bool__(self) -> bool:
        return bool(self.names)

    def __call__(self, x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        for name in self.names:
            x = TRANSFORMS[name](x, gen)
        return x


class AugmentedDiscriminator(nn.Module):
    """D behind the augmentation: handed to the objective as D, so every image D judges (real, fake,
    and the inputs of gradient penalties) is augmented. Holds no weights of its own."""

    def __init__(self, d: nn.Module, augment: DiffAugment, gen: torch.Generator) -> None:
        super().__init__()
        self.d, self.augment, self.gen = d, augment, gen

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.d(self.augment(x, self.gen), y)
