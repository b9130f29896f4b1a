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
    """The transforms of a policy, applied in the order written: to every image, or, with ``adaptive``
    (ADA), each to each image with the controller's probability ``p``."""

    def __init__(self, policy: str, adaptive: "AdaptiveAugment | None" = None) -> None:
        self.names = parse_policy(policy)
        self.adaptive = adaptive

    def __bool__(self) -> bool:
        return bool(self.names)

    def __call__(self, x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        for name in self.names:
            if self.adaptive is None:
                x = TRANSFORMS[name](x, gen)
                continue
            if self.adaptive.p <= 0.0:  # nothing to apply, nothing drawn (p is the same on resume)
                continue
            keep = torch.rand(x.shape[0], 1, 1, 1, generator=gen, device=x.device) >= self.adaptive.p
            x = torch.where(keep, x, TRANSFORMS[name](x, gen))
        return x


class AugmentedDiscriminator(nn.Module):
    """D behind the augmentation: handed to the objective as D, so every image D judges (real, fake,
    and the inputs of gradient penalties) is augmented. Holds no weights of its own."""

    def __init__(self, d: nn.Module, augment: DiffAugment, gen: torch.Generator) -> None:
        super().__init__()
        self.d, self.augment, self.gen = d, augment, gen

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.d(self.augment(x, self.gen), y)


class AdaptiveAugment:
    """ADA's controller (Karras et al. 2020) for the probability ``p`` with which each transform of a
    policy is applied to each image D judges.

    D overfitting shows as D ranking the training images above the fakes too surely. ADA watches
    r_t = E[sign(D(real))]; gankit's losses include relativistic ones, whose D output has no fixed zero,
    so r_t here is the sign of the paired difference, E[sign(D(real) - D(fake))] (the same for
    an ns D that is certain of both). Every ``interval`` D steps p moves by ``batch x interval /
    speed_images`` towards more augmentation when r_t is above ``target`` and less when below, within
    [0, 1]. The state is a few numbers, kept in the checkpoint: resume is exact."""

    def __init__(self, target: float, speed_images: float, interval: int = 4) -> None:
        self.target, self.speed_images, self.interval = target, speed_images, interval
        self.p = 0.0
        self.sum: torch.Tensor | None = None  # r_t's sum over the D steps of the current interval
        self.count = 0
        self.last_r: float | None = None

    def observe(self, sign_mean: torch.Tensor, batch: int,
                average: Callable[[dict[str, torch.Tensor]], None] | None = None) -> None:
        """One D step's E[sign(D(real) - D(fake))]; ``average`` all-reduces over processes (multi-process runs
        must agree on p)."""
        value = sign_mean.detach().float().reshape(())
        self.sum = value.clone() if self.sum is None else self.sum + value
        self.count += 1
        if self.count < self.interval:
            return
        sums = {"r": self.sum}
        if average is not None:
            average(sums)
        r = float(sums["r"]) / self.count
        step = batch * self.count / self.speed_images
        self.p = min(1.0, max(0.0, self.p + (step if r > self.target else -step)))
        self.last_r, self.sum, self.count = r, None, 0

    def state(self) -> dict[str, float | int | None]:
        return {"p": self.p, "sum": None if self.sum is None else float(self.sum), "count": self.count,
                "last_r": self.last_r}

    def load_state(self, state: dict[str, float | int | None] | None) -> None:
        state = state or {}
        self.p = float(state.get("p") or 0.0)
        saved = state.get("sum")
        self.sum = None if saved is None else torch.tensor(float(saved), dtype=torch.float32)
        self.count = int(state.get("count") or 0)
        self.last_r = state.get("last_r")  # type: ignore[assignment]
