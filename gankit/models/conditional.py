"""Class conditioning shared by the model files: label embeddings, conditional BatchNorm, projection.

A conditional model is built with ``num_classes`` (the dataset's, passed by the registry when
``model.conditional`` is true) and must be called with labels ``y`` (int64, shape (N,)).
"""
from __future__ import annotations

import torch
import torch.nn as nn

CONDITIONINGS = ("concat", "projection")


def require_labels(y: torch.Tensor | None, num_classes: int | None, who: str) -> torch.Tensor | None:
    """``y`` for a conditional model (a clear error when missing); None for an unconditional one."""
    if num_classes is None:
        return None
    if y is None:
        raise ValueError(f"the {who} is class-conditional ({num_classes} classes): call it with labels y")
    return y


def check_conditioning(conditioning: str, allowed: tuple[str, ...] = CONDITIONINGS) -> None:
    if conditioning not in allowed:
        raise ValueError(f"conditioning must be {' or '.join(allowed)}, got {conditioning!r}")


def label_embedding(num_classes: int | None, dim: int) -> nn.Embedding | None:
    """A learned label embedding of ``dim`` features, N(0, 1) like the latent it joins; None if unconditional."""
    if num_classes is None or dim <= 0:
        return None
    return nn.Embedding(num_classes, dim)


class ConditionalBatchNorm(nn.Module):
    """BatchNorm whose scale and shift are looked up per class (de Vries et al. 2017; Miyato et al. 2018).

    Statistics are shared across classes; the per-class gains start at 1 and biases at 0, so at
    initialisation this is a plain BatchNorm.
    """

    def __init__(self, features: int, num_classes: int, dims: int = 2) -> None:
        super().__init__()
        self.norm = (nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d)(features, affine=False)
        self.gain = nn.Embedding(num_classes, features)
        self.bias = nn.Embedding(num_classes, features)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        shape = (x.shape[0], -1) + (1,) * (x.dim() - 2)
        return self.norm(x) * self.gain(y).view(shape) + self.bias(y).view(shape)


class CondSequential(nn.Sequential):
    """A Sequential that hands the labels to the layers that take them (conditional norms)."""

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        for m in self:
            x = m(x, y) if isinstance(m, ConditionalBatchNorm) else m(x)
        return x


class Projection(nn.Module):
    """The class term of a projection discriminator (Miyato & Koyama 2018): ``<embed(y), h>``.

    Started small (N(0, 0.02), the scale of DCGAN's output layer) so that the class term does not
    dominate the unconditional logit at initialisation.
    """

    def __init__(self, num_classes: int, features: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_classes, features)
        nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (self.embed(y) * h.flatten(1)).sum(1)


def label_maps(x: torch.Tensor, embedded: torch.Tensor) -> torch.Tensor:
    """Images (N, C, H, W) with the label embedding (N, E) appended as E constant channels."""
    n, _, h, w = x.shape
    return torch.cat([x, embedded.view(n, -1, 1, 1).expand(n, embedded.shape[1], h, w)], 1)
