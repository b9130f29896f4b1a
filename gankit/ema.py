"""Exponential moving average of the generator's weights (Karras et al.; Yazıcı et al. 2019)."""
from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn

from gankit.optim import cosine_ramp


RAMPUP = 1 / 9  # train.ema_rampup's default: (1 + n) / (10 + n), the ramp gankit has always used


def ema_decay_at(step: int, decay: float, start: int = 0, warmup: bool = True, rampup: float = RAMPUP) -> float:
    """The decay of the update that produces the average of ``step`` (0 = copy G).

    With ``warmup`` the decay ramps up as min(decay, (1 + n) / (1 + n + 1 / rampup)) over the n-th
    averaging update: the average spans about ``rampup`` of the steps so far (1 + rampup * (1 + n)), so
    early averages forget G's random initial weights within a few dozen steps (a fixed 0.999 keeps 90 %
    of them after 100 steps) and later ones grow with the run, as Karras et al.'s EMA ramp-up. It
    depends on the step alone: resume stays exact."""
    if step < start:
        return 0.0
    return min(decay, (1 + step - start) / (1 + step - start + 1 / rampup)) if warmup else decay


def halflife(decay: float) -> float:
    """The number of updates after which an EMA of ``decay`` gives half its weight to what came before."""
    return math.log(0.5) / math.log(decay)


def scheduled_decay(decay: float, final: float, step: int, total: int) -> float:
    """The EMA decay's cap at ``step`` of a run of ``total``: its half-life (the average's length) goes from
    ``decay``'s to ``final``'s along half a cosine, as R3GAN schedules its EMA length."""
    return 0.5 ** (1.0 / cosine_ramp(halflife(decay), halflife(final), step, total))


def ema_initial_share(step: int, decay: float, start: int = 0, warmup: bool = True, rampup: float = RAMPUP) -> float:
    """The weight the average at ``step`` still gives to G as it was when averaging began."""
    logs = 0.0
    for s in range(max(start, 1), step + 1):
        d = ema_decay_at(s, decay, start, warmup, rampup)
        if d <= 0.0:
            return 0.0
        logs += math.log(d)
        if logs < -50:  # below 1e-22: nothing of the start is left
            return 0.0
    return math.exp(logs)


class EMA:
    """Keeps ``shadow = decay * shadow + (1 - decay) * G``; before ``start`` it copies G."""

    def __init__(self, net: nn.Module, decay: float, start: int = 0, warmup: bool = True,
                 rampup: float = RAMPUP) -> None:
        self.decay, self.start, self.warmup, self.rampup = decay, start, warmup, rampup
        self.shadow = copy.deepcopy(net).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, net: nn.Module, step: int) -> None:
        weight = 1.0 - ema_decay_at(step, self.decay, self.start, self.warmup, self.rampup)
        src = list(net.parameters())
        dst = list(self.shadow.parameters())
        if weight == 1.0:
            torch._foreach_copy_(dst, src)
        else:
            torch._foreach_lerp_(dst, src, weight)
        for b_dst, b_src in zip(self.shadow.buffers(), net.buffers()):
            b_dst.copy_(b_src)  # BatchNorm statistics follow G directly

    def recalibrate_norms(self, z_batches: list[torch.Tensor], y_batches: list[torch.Tensor] | None = None) -> None:
        """Re-estimate the shadow's BatchNorm running statistics (:func:`recalibrate_norms`)."""
        recalibrate_norms(self.shadow, z_batches, y_batches)


@torch.no_grad()
def recalibrate_norms(net: nn.Module, z_batches: list[torch.Tensor],
                      y_batches: list[torch.Tensor] | None = None) -> None:
    """Re-estimate BatchNorm running statistics of an averaged generator ``net``.

    G's running statistics belong to G's weights, not to their average; sampling the EMA with
    them degrades it (as in SWA, Izmailov et al. 2018). A few forward passes in train mode with
    cumulative averaging fix that. Training never reads these buffers: ``EMA.update`` overwrites them.
    ``y_batches``: the class labels of a conditional G, one batch per latent batch. A module function so
    a copy of the EMA (the playground draws from one) is re-estimated exactly as the EMA itself.
    """
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    for m in norms:  # only the norms: dropout in train mode would consume the global RNG
        m.train()
    for i, z in enumerate(z_batches):
        net(z, None if y_batches is None else y_batches[i])
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
        m.eval()
