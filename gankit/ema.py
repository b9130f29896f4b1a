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

    @torch.no_grad()
    def recalibrate_norms(self, z_batches: list[torch.Tensor], y_batches: list[torch.Tensor] | None = None) -> None:
        """Re-estimate BatchNorm running statistics for the averaged weights.

        G's running statistics belong to G's weights, not to their average; sampling the EMA with
        them degrades it (as in SWA, Izmailov et al. 2018). A few forward passes in train mode with
        cumulative averaging fix that. Training never reads these buffers: ``update`` overwrites them.
        ``y_batches``: the class labels of a conditional G, one batch per latent batch.
        """
        norms = [m for m in self.shadow.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
        for m in norms:  # only the norms: dropout in train mode would consume the global RNG
            m.train()
        for i, z in enumerate(z_batches):
            self.shadow(z, None if y_batches is None else y_batches[i])
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
            m.eval()
