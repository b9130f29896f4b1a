"""BiGAN / ALI networks (Donahue et al. 2017; Dumoulin et al. 2017): an encoder E(x) -> z and a joint
discriminator D(x, z) that judges (image, latent) pairs. G is any registered noise -> image generator.

Chosen in a bigan game by ``model.encoder.name`` and ``model.discriminator.name``, from registries of their
own: an encoder's constructor takes (image shape, latent size), a joint D's the same two.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from gankit.config import ConfigError
from gankit.models.layers import apply_spectral_norm, image_shape, pyramid
from gankit.models.registry import _arch_kwargs, _lookup, _non_empty, _zero_size_quiet
from gankit.registry import Registry

ENCODERS: Registry[type[nn.Module]] = Registry("encoder")
JOINT_DISCRIMINATORS: Registry[type[nn.Module]] = Registry("joint discriminator")


def conv_features(channels: int, side: int, width: int, max_width: int | None, norm: str, dropout: float,
                  slope: float) -> tuple[nn.Sequential, int]:
    """Stride-2 4x4 convolutions from ``side`` down to the pyramid's base (28 -> 7, 32 -> 4), the channels
    doubling from ``width``; returns the stack (ending flattened) and its number of output features."""
    base, levels = pyramid(side)
    if norm not in ("batch", "none"):
        raise ValueError(f"norm must be batch or none, got {norm!r}")
    layers: list[nn.Module] = []
    c_in = channels
    for i in range(levels):
        c_out = width * 2 ** i if max_width is None else min(width * 2 ** i, max_width)
        batch = norm == "batch" and i > 0  # DCGAN leaves the first layer unnormalised
        layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=not batch), *([nn.BatchNorm2d(c_out)] if batch else []),
                   nn.LeakyReLU(slope, inplace=True), *([nn.Dropout(dropout)] if dropout > 0 else [])]
        c_in = c_out
    return nn.Sequential(*layers, nn.Flatten()), c_in * base * base


@ENCODERS.register("dcgan")
class ConvEncoder(nn.Module):
    """E(x) -> z: a DCGAN discriminator's convolutions, then a linear map to the latent (deterministic, as
    BiGAN's)."""

    def __init__(self, in_shape: tuple[int, ...], latent_dim: int, *, width: int = 32, max_width: int | None = None,
                 norm: str = "batch", slope: float = 0.2) -> None:
        super().__init__()
        channels, side = image_shape(in_shape, "the dcgan encoder")
        self.features, n = conv_features(channels, side, width, max_width, norm, 0.0, slope)
        self.head = nn.Linear(n, latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@JOINT_DISCRIMINATORS.register("dcgan")
class JointDiscriminator(nn.Module):
    """D(x, z): convolutional features of x beside an MLP embedding of z, then an MLP head to one logit.
    Dropout on every hidden layer and spectral norm on every weight, as ALI keeps its D in check."""

    def __init__(self, in_shape: tuple[int, ...], latent_dim: int, *, width: int = 32, max_width: int | None = None,
                 z_width: int = 256, hidden: int = 512, dropout: float = 0.2, spectral_norm: bool = True,
                 slope: float = 0.2) -> None:
        super().__init__()
        channels, side = image_shape(in_shape, "the dcgan joint discriminator")
        self.x_path, n = conv_features(channels, side, width, max_width, "none", dropout, slope)

        def block(n_in: int, n_out: int) -> list[nn.Module]:
            return [nn.Linear(n_in, n_out), nn.LeakyReLU(slope, inplace=True),
                    *([nn.Dropout(dropout)] if dropout > 0 else [])]

        self.z_path = nn.Sequential(*block(latent_dim, z_width), *block(z_width, z_width))
        self.head = nn.Sequential(*block(n + z_width, hidden), nn.Linear(hidden, 1))
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.x_path(x), self.z_path(z)], 1)).squeeze(1)


def _build(registry: Registry, spec: dict, key: str, shape: tuple[int, ...], latent_dim: int) -> nn.Module:
    cls = _lookup(registry, spec, key)
    kwargs = _arch_kwargs(cls, spec, key, positional=2)
    try:
        with _zero_size_quiet():
            net = cls(tuple(shape), latent_dim, **kwargs)
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(f"config: {key} ({spec['name']}): {exc}") from None
    return _non_empty(net, spec, key)


def build_encoder(spec: dict, shape: tuple[int, ...], latent_dim: int) -> nn.Module:
    """E from ``model.encoder``; architecture errors become ConfigErrors."""
    return _build(ENCODERS, spec, "model.encoder", shape, latent_dim)


def build_joint_discriminator(spec: dict, shape: tuple[int, ...], latent_dim: int) -> nn.Module:
    """The joint D from ``model.discriminator``; architecture errors become ConfigErrors."""
    return _build(JOINT_DISCRIMINATORS, spec, "model.discriminator", shape, latent_dim)
