"""Weight initialisation schemes selected by ``model.init``."""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

_WEIGHTED = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def init_weights(module: nn.Module, scheme: str) -> None:
    """``dcgan``: N(0, 0.02) weights and N(1, 0.02) norm scales (Radford et al.); ``xavier``; ``default``."""
    if scheme == "default":
        return
    for m in module.modules():
        if isinstance(m, _WEIGHTED):
            weight = _trainable_weight(m)
            if scheme == "dcgan":
                nn.init.normal_(weight, 0.0, 0.02)
            elif scheme == "xavier":
                nn.init.xavier_uniform_(weight)
            else:
                raise ValueError(f"unknown init scheme {scheme!r}")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
            if weight is not m.weight:
                _refresh(m)
        elif isinstance(m, _NORMS) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, 0.02) if scheme == "dcgan" else nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _trainable_weight(m: nn.Module) -> torch.Tensor:
    """The tensor to initialise: for a parametrized weight (spectral norm) the stored original, since
    ``m.weight`` is then recomputed on every access and writing into it would be lost."""
    if parametrize.is_parametrized(m, "weight"):
        return m.parametrizations.weight.original
    return m.weight


@torch.no_grad()
def _refresh(m: nn.Module, iterations: int = 15) -> None:
    """Re-converge spectral norm's power iteration for the new weight (each evaluation in training
    mode runs one step), so the first forward pass divides by the new top singular value, not the old."""
    for _ in range(iterations):
        m.parametrizations.weight()
