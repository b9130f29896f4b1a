"""DCGAN (Radford et al. 2016), parameterised by resolution and width instead of one class per size.

G doubles the resolution from a small base (7 px for 28, 4 px for 32/64/128...) while halving the
channels; D mirrors it. Options cover the common tutorial variants: a conv or fully connected stem,
5x5 kernels, max-pool downsampling and a fully connected D head.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from gankit.models.layers import activation as make_activation
from gankit.models.layers import image_shape, output_activation, pyramid, same_padding
from gankit.models.registry import DISCRIMINATORS, GENERATORS


def _norm2d(norm: str, channels: int) -> list[nn.Module]:
    if norm == "batch":
        return [nn.BatchNorm2d(channels)]
    if norm == "none":
        return []
    raise ValueError(f"norm must be batch or none, got {norm!r}")


@GENERATORS.register("dcgan")
class DCGANGenerator(nn.Module):
    def __init__(self, latent_dim: int, out_shape: tuple[int, ...], *, width: int = 64,
                 max_width: int | None = None, stem: str = "conv", fc_hidden: list[int] = [],
                 kernel: int = 4, norm: str = "batch", activation: str = "relu", slope: float = 0.2,
                 output: str = "tanh") -> None:
        super().__init__()
        channels, side = image_shape(out_shape, "dcgan")
        base, levels = pyramid(side)
        widths = [width * 2 ** (levels - 1 - i) for i in range(levels)]
        if max_width:
            widths = [min(w, max_width) for w in widths]
        self.base, self.c0 = base, widths[0]
        use_bias = norm == "none"
        if stem == "conv":
            self.stem = nn.Sequential(nn.Unflatten(1, (latent_dim, 1, 1)),
                                      nn.ConvTranspose2d(latent_dim, widths[0], base, 1, 0, bias=use_bias),
                                      *_norm2d(norm, widths[0]), make_activation(activation, slope))
        elif stem == "fc":
            layers: list[nn.Module] = []
            n = latent_dim
            for h in [*fc_hidden, widths[0] * base * base]:
                layers += [nn.Linear(n, h, bias=use_bias)]
                layers += [nn.BatchNorm1d(h)] if norm == "batch" else []
                layers += [make_activation(activation, slope)]
                n = h
            self.stem = nn.Sequential(*layers, nn.Unflatten(1, (widths[0], base, base)))
        else:
            raise ValueError(f"stem must be conv or fc, got {stem!r}")
        pad = same_padding(kernel)
        out_pad = 2 - kernel + 2 * pad  # makes every transposed conv exactly double the side
        blocks: list[nn.Module] = []
        for c_in, c_out in zip(widths, widths[1:]):
            blocks += [nn.ConvTranspose2d(c_in, c_out, kernel, 2, pad, out_pad, bias=use_bias),
                       *_norm2d(norm, c_out), make_activation(activation, slope)]
        blocks += [nn.ConvTranspose2d(widths[-1], channels, kernel, 2, pad, out_pad),
                   output_activation(output)]
        self.body = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.body(self.stem(z))


@DISCRIMINATORS.register("dcgan")
class DCGANDiscriminator(nn.Module):
    def __init__(self, in_shape: tuple[int, ...], *, width: int = 64, max_width: int | None = None,
                 kernel: int = 4, downsample: str = "stride", norm: str = "batch", first_norm: bool = False,
                 slope: float = 0.2, head: str = "conv", fc_hidden: list[int] = [],
                 dropout: float = 0.0) -> None:
        super().__init__()
        channels, side = image_shape(in_shape, "dcgan")
        base, levels = pyramid(side)
        widths = [width * 2 ** i for i in range(levels)]
        if max_width:
            widths = [min(w, max_width) for w in widths]
        if downsample not in ("stride", "maxpool"):
            raise ValueError(f"downsample must be stride or maxpool, got {downsample!r}")
        if downsample == "maxpool" and kernel % 2 == 0:
            raise ValueError(f"maxpool downsampling needs an odd kernel to keep the side, got {kernel}")
        use_bias = norm == "none"
        pad = same_padding(kernel)
        layers: list[nn.Module] = []
        c_in = channels
        for i, c_out in enumerate(widths):
            stride = 2 if downsample == "stride" else 1
            layers.append(nn.Conv2d(c_in, c_out, kernel, stride, pad, bias=use_bias or (i == 0 and not first_norm)))
            if i > 0 or first_norm:
                layers += _norm2d(norm, c_out)
            layers.append(nn.LeakyReLU(slope, inplace=True))
            if downsample == "maxpool":
                layers.append(nn.MaxPool2d(2))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        if head == "conv":
            self.head = nn.Sequential(nn.Conv2d(c_in, 1, base, 1, 0), nn.Flatten())
        elif head == "fc":
            head_layers: list[nn.Module] = [nn.Flatten()]
            n = c_in * base * base
            for h in fc_hidden:
                head_layers += [nn.Linear(n, h), nn.LeakyReLU(slope, inplace=True)]
                n = h
            self.head = nn.Sequential(*head_layers, nn.Linear(n, 1))
        else:
            raise ValueError(f"head must be conv or fc, got {head!r}")

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(1)
