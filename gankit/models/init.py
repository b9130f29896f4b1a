"""Weight initialisation schemes selected by ``model.init``."""
from __future__ import annotations

import torch.nn as nn

_WEIGHTED = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def init_weights(module: nn.Module, scheme: str) -> None:
    """``dcgan``: N(0, 0.02) weights and N(1, 0.02) norm scales (Radford et al.); ``xavier``; ``default``."""
    if scheme == "default":
        return
    for m in module.modules():
        if isinstance(m, _WEIGHTED):
            if scheme == "dcgan":
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif scheme == "xavier":
                nn.init.xavier_uniform_(m.weight)
            else:
                raise ValueError(f"unknown init scheme {scheme!r}")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, _NORMS) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, 0.02) if scheme == "dcgan" else nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
