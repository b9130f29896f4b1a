"""What some generators can do beyond ``forward(z, y=None)``, said as Protocols: the loop, sampling and the
tools ask ``isinstance(g, ...)`` instead of probing for attributes, and a new model gains a capability by
having the members listed here (no base class to inherit)."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class SelfRegularized(Protocol):
    """A generator with its own weight penalty (BigGAN's orthogonal one, StyleGAN's lazy path length): the
    training loop adds ``regularization()`` to G's loss (logged as ``g_reg``); None on steps without it."""

    def regularization(self) -> torch.Tensor | None: ...


@runtime_checkable
class StyleBased(Protocol):
    """A generator that maps z to ``num_ws`` per-layer styles w and draws images from them (StyleGAN): style
    mixing uses the two halves, and truncation pulls w towards its running mean (``forward(z, y, psi=...)``)
    instead of truncating z."""

    num_ws: int

    def mapping(self, z: torch.Tensor, y: torch.Tensor | None = None, *, psi: float = 1.0) -> torch.Tensor: ...

    def synthesis(self, ws: torch.Tensor, noise: str = "auto") -> torch.Tensor: ...

    def truncate(self, ws: torch.Tensor, psi: float) -> torch.Tensor: ...
