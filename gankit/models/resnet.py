"""ResNet G and D of SNGAN (Miyato et al. 2018) and WGAN-GP (Gulrajani et al. 2017), by resolution.

Like dcgan, the side is split into a small base and a number of doublings (28 = 7 x 2 x 2,
32 = 4 x 2^3, 64 = 4 x 2^4), so one class serves every size. G: linear stem to the base, one
upsampling residual block per doubling (BatchNorm, class-conditional when the model is), then
BN-ReLU-conv3x3 to the image. D: one downsampling residual block per halving, ``extra_blocks`` more
at the base, ReLU, global sum pooling and a linear head (plus the projection term when conditional).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from gankit.models.conditional import (ConditionalBatchNorm, Projection, check_conditioning, label_embedding,
                                       label_maps, require_labels)
from gankit.models.layers import apply_spectral_norm, image_shape, output_activation, pyramid
from gankit.models.registry import DISCRIMINATORS, GENERATORS


def _widths(width: int, max_width: int | None, exponents: list[int]) -> list[int]:
    return [min(width * 2 ** e, max_width) if max_width else width * 2 ** e for e in exponents]


class _Norm(nn.Module):
    """BatchNorm2d, or its conditional form when ``num_classes`` is given; always called with (x, y)."""

    def __init__(self, channels: int, num_classes: int | None) -> None:
        super().__init__()
        self.norm = ConditionalBatchNorm(channels, num_classes) if num_classes else nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self.norm(x, y) if isinstance(self.norm, ConditionalBatchNorm) else self.norm(x)


class GBlock(nn.Module):
    """BN-ReLU-up-conv3x3-BN-ReLU-conv3x3, plus an upsampled 1x1-conv shortcut."""

    def __init__(self, c_in: int, c_out: int, num_classes: int | None) -> None:
        super().__init__()
        self.norm1, self.conv1 = _Norm(c_in, num_classes), nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.norm2, self.conv2 = _Norm(c_out, num_classes), nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        h = F.interpolate(F.relu(self.norm1(x, y)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.norm2(self.conv1(h), y)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


@GENERATORS.register("resnet")
class ResNetGenerator(nn.Module):
    """Channels halve per doubling from ``width * 2**levels`` down to ``width`` (capped by ``max_width``:
    SNGAN's CIFAR generator is width 256, max_width 256). Conditional: every block's BatchNorm is
    class-conditional (the final one is not, as in SNGAN)."""

    def __init__(self, latent_dim: int, out_shape: tuple[int, ...], num_classes: int | None = None, *,
                 width: int = 64, max_width: int | None = None, output: str = "tanh") -> None:
        super().__init__()
        channels, side = image_shape(out_shape, "resnet")
        base, levels = pyramid(side)
        widths = _widths(width, max_width, list(range(levels, -1, -1)))
        self.num_classes, self.base, self.c0 = num_classes, base, widths[0]
        self.stem = nn.Linear(latent_dim, widths[0] * base * base)
        self.blocks = nn.ModuleList(GBlock(a, b, num_classes) for a, b in zip(widths, widths[1:]))
        self.out = nn.Sequential(nn.BatchNorm2d(widths[-1]), nn.ReLU(), nn.Conv2d(widths[-1], channels, 3, 1, 1),
                                 output_activation(output))

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        y = require_labels(y, self.num_classes, "resnet generator")
        h = self.stem(z).view(z.shape[0], self.c0, self.base, self.base)
        for block in self.blocks:
            h = block(h, y)
        return self.out(h)


class DBlock(nn.Module):
    """(ReLU)-conv3x3-ReLU-conv3x3-(avgpool), plus a 1x1-conv shortcut when the shape changes.

    The first block of D skips the leading ReLU (its input is the image) and pools before its
    shortcut conv (SNGAN's "optimized" block)."""

    def __init__(self, c_in: int, c_out: int, downsample: bool, first: bool = False) -> None:
        super().__init__()
        self.first, self.downsample = first, downsample
        self.conv1, self.conv2 = nn.Conv2d(c_in, c_out, 3, 1, 1), nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out or downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.relu(self.conv1(x if self.first else F.relu(x))))
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        s = x
        if self.first and self.downsample:
            s = F.avg_pool2d(s, 2)
        if self.shortcut is not None:
            s = self.shortcut(s)
        if self.downsample and not self.first:
            s = F.avg_pool2d(s, 2)
        return h + s


@DISCRIMINATORS.register("resnet")
class ResNetDiscriminator(nn.Module):
    """Channels double per halving from ``width`` (capped by ``max_width``). Conditional: ``conditioning``
    projection (SNGAN's, on the pooled features) or concat (label maps of ``embed_dim`` channels)."""

    def __init__(self, in_shape: tuple[int, ...], num_classes: int | None = None, *, width: int = 64,
                 max_width: int | None = None, extra_blocks: int = 1, spectral_norm: bool = False,
                 conditioning: str = "projection", embed_dim: int = 8) -> None:
        super().__init__()
        check_conditioning(conditioning)
        if extra_blocks < 0:
            raise ValueError(f"extra_blocks must be >= 0, got {extra_blocks}")
        channels, side = image_shape(in_shape, "resnet")
        _, levels = pyramid(side)
        concat = num_classes is not None and conditioning == "concat"
        if concat and embed_dim < 1:
            raise ValueError(f"concat conditioning needs embed_dim >= 1, got {embed_dim}")
        self.num_classes = num_classes
        self.embed = label_embedding(num_classes, embed_dim) if concat else None
        widths = _widths(width, max_width, list(range(levels)))
        c_in = channels + (embed_dim if concat else 0)
        blocks = [DBlock(c_in, widths[0], downsample=True, first=True)]
        blocks += [DBlock(a, b, downsample=True) for a, b in zip(widths, widths[1:])]
        blocks += [DBlock(widths[-1], widths[-1], downsample=False) for _ in range(extra_blocks)]
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(widths[-1], 1)
        self.projection = Projection(num_classes, widths[-1]) if num_classes is not None and not concat else None
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        y = require_labels(y, self.num_classes, "resnet discriminator")
        if self.embed is not None:
            x = label_maps(x, self.embed(y))
        h = F.relu(self.blocks(x)).sum((2, 3))  # global sum pooling, as in SNGAN
        logits = self.head(h).squeeze(1)
        return logits if self.projection is None else logits + self.projection(h, y)
