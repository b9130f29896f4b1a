"""Exponential moving average of the generator's weights (Karras et al.; Yazıcı et al. 2019)."""
from __future__ import annotations

import copy

import torch
import torch.nn as nn


class EMA:
    """Keeps ``shadow = decay * shadow + (1 - decay) * G``; before ``start`` it copies G."""

    def __init__(self, net: nn.Module, decay: float, start: int = 0) -> None:
        self.decay, self.start = decay, start
        self.shadow = copy.deepcopy(net).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, net: nn.Module, step: int) -> None:
        weight = 1.0 if step < self.start else 1.0 - self.decay
        src = list(net.parameters())
        dst = list(self.shadow.parameters())
        if weight == 1.0:
            torch._foreach_copy_(dst, src)
        else:
            torch._foreach_lerp_(dst, src, weight)
        for b_dst, b_src in zip(self.shadow.buffers(), net.buffers()):
            b_dst.copy_(b_src)  # BatchNorm statistics follow G directly
