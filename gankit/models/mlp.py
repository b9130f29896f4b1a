"""Fully connected G and D (the vanilla GAN of Goodfellow et al. and most first tutorials)."""
from __future__ import annotations

import torch
import torch.nn as nn

from gankit.models.conditional import Projection, check_conditioning, label_embedding, require_labels
from gankit.models.layers import activation as make_activation
from gankit.models.layers import MinibatchStd, apply_spectral_norm, flat_size, output_activation
from gankit.models.registry import DISCRIMINATORS, GENERATORS


def _hidden(widths: list[int], n_in: int, act: str, slope: float, batchnorm: bool,
            dropout: float, first_norm: bool = True) -> tuple[list[nn.Module], int]:
    """Linear, [BatchNorm1d], activation, [Dropout] per width; ``first_norm`` false leaves the first
    layer unnormalised (the usual vanilla-GAN G: BatchNorm right after z only rescales the noise)."""
    layers: list[nn.Module] = []
    for i, width in enumerate(widths):
        layers.append(nn.Linear(n_in, width))
        if batchnorm and (i > 0 or first_norm):
            layers.append(nn.BatchNorm1d(width))
        layers.append(make_activation(act, slope))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        n_in = width
    return layers, n_in


@GENERATORS.register("mlp")
class MLPGenerator(nn.Module):
    """Conditional (``num_classes``): a label embedding of ``embed_dim`` features joins z (Mirza & Osindero)."""

    def __init__(self, latent_dim: int, out_shape: tuple[int, ...], num_classes: int | None = None, *,
                 widths: list[int] = [256, 512, 1024], activation: str = "leaky_relu", slope: float = 0.2,
                 batchnorm: bool = False, first_norm: bool = True, dropout: float = 0.0, output: str = "tanh",
                 embed_dim: int = 32) -> None:
        super().__init__()
        self.out_shape, self.num_classes = tuple(out_shape), num_classes
        if num_classes is not None and embed_dim < 1:
            raise ValueError(f"a conditional mlp generator needs embed_dim >= 1, got {embed_dim}")
        self.embed = label_embedding(num_classes, embed_dim)
        n_in = latent_dim + (embed_dim if self.embed is not None else 0)
        layers, n = _hidden(widths, n_in, activation, slope, batchnorm, dropout, first_norm)
        self.net = nn.Sequential(*layers, nn.Linear(n, flat_size(self.out_shape)), output_activation(output))

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        y = require_labels(y, self.num_classes, "mlp generator")
        if self.embed is not None:
            z = torch.cat([z, self.embed(y)], 1)
        return self.net(z).view(z.shape[0], *self.out_shape)


@DISCRIMINATORS.register("mlp")
class MLPDiscriminator(nn.Module):
    """Conditional (``num_classes``): ``conditioning`` concat appends a label embedding of ``embed_dim``
    features to the input; projection adds ``<embed(y), h>`` on the last hidden layer (Miyato & Koyama)."""

    def __init__(self, in_shape: tuple[int, ...], num_classes: int | None = None, *,
                 widths: list[int] = [1024, 512, 256], activation: str = "leaky_relu", slope: float = 0.2,
                 batchnorm: bool = False, first_norm: bool = True, dropout: float = 0.0,
                 conditioning: str = "projection", embed_dim: int = 32, spectral_norm: bool = False,
                 minibatch_std: bool = False) -> None:
        super().__init__()
        check_conditioning(conditioning)
        self.num_classes = num_classes
        concat = num_classes is not None and conditioning == "concat"
        if concat and embed_dim < 1:
            raise ValueError(f"concat conditioning needs embed_dim >= 1, got {embed_dim}")
        self.embed = label_embedding(num_classes, embed_dim) if concat else None
        n_in = flat_size(in_shape) + (embed_dim if concat else 0)
        layers, n = _hidden(widths, n_in, activation, slope, batchnorm, dropout, first_norm)
        if minibatch_std:  # the batch's spread as one more feature of the last hidden layer
            layers.append(MinibatchStd())
            n += 1
        self.net = nn.Sequential(nn.Flatten(), *layers, nn.Linear(n, 1))
        self.projection = Projection(num_classes, n) if num_classes is not None and not concat else None
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        y = require_labels(y, self.num_classes, "mlp discriminator")
        if self.embed is not None:
            x = torch.cat([x.flatten(1), self.embed(y)], 1)
        if self.projection is None:
            return self.net(x).squeeze(1)
        h = self.net[:-1](x)
        return self.net[-1](h).squeeze(1) + self.projection(h, y)
