"""Fully connected G and D (the vanilla GAN of Goodfellow et al. and most first tutorials)."""
from __future__ import annotations

import torch
import torch.nn as nn

from gankit.models.layers import activation as make_activation
from gankit.models.layers import flat_size, output_activation
from gankit.models.registry import DISCRIMINATORS, GENERATORS


def _hidden(widths: list[int], n_in: int, act: str, slope: float, batchnorm: bool,
            dropout: float) -> tuple[list[nn.Module], int]:
    layers: list[nn.Module] = []
    for width in widths:
        layers.append(nn.Linear(n_in, width))
        if batchnorm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(make_activation(act, slope))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        n_in = width
    return layers, n_in


@GENERATORS.register("mlp")
class MLPGenerator(nn.Module):
    def __init__(self, latent_dim: int, out_shape: tuple[int, ...], *, widths: list[int] = [256, 512, 1024],
                 activation: str = "leaky_relu", slope: float = 0.2, batchnorm: bool = False,
                 dropout: float = 0.0, output: str = "tanh") -> None:
        super().__init__()
        self.out_shape = tuple(out_shape)
        layers, n = _hidden(widths, latent_dim, activation, slope, batchnorm, dropout)
        self.net = nn.Sequential(*layers, nn.Linear(n, flat_size(self.out_shape)), output_activation(output))

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.out_shape)


@DISCRIMINATORS.register("mlp")
class MLPDiscriminator(nn.Module):
    def __init__(self, in_shape: tuple[int, ...], *, widths: list[int] = [1024, 512, 256],
                 activation: str = "leaky_relu", slope: float = 0.2, batchnorm: bool = False,
                 dropout: float = 0.0) -> None:
        super().__init__()
        layers, n = _hidden(widths, flat_size(in_shape), activation, slope, batchnorm, dropout)
        self.net = nn.Sequential(nn.Flatten(), *layers, nn.Linear(n, 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x).squeeze(1)
