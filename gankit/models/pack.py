"""PacGAN packing (Lin et al. 2018): D judges ``pack`` samples at once, stacked along the channel (or
feature) axis, so a generator that repeats itself is easier to spot. Any registered D can be packed."""
from __future__ import annotations

import torch
import torch.nn as nn


def packed_shape(shape: tuple[int, ...], pack: int) -> tuple[int, ...]:
    """The input shape of the inner D: ``pack`` samples of ``shape`` side by side on axis 0."""
    return (shape[0] * pack, *shape[1:])


class PackedDiscriminator(nn.Module):
    """Wraps a D built for ``packed_shape``; one logit per group of ``pack`` consecutive samples."""

    def __init__(self, d: nn.Module, pack: int) -> None:
        super().__init__()
        self.d, self.pack = d, pack

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        b = x.shape[0]
        if b % self.pack:
            raise ValueError(f"a packed D (model.pack={self.pack}) needs batches divisible by {self.pack}, got {b}")
        # consecutive samples are independent draws, so grouping neighbours is a random grouping
        return self.d(x.reshape(b // self.pack, self.pack * x.shape[1], *x.shape[2:]), y)
