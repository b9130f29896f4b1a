"""Image-to-image networks: pix2pix's U-Net, CycleGAN's ResNet-block generator, the PatchGAN discriminator.

They map images to images (no latent): a generator is ``G(x)`` with x at the output resolution, a
discriminator ``D(x, cond)`` judges overlapping patches of x (beside its condition, for pix2pix) and
returns a map of logits. Chosen by ``model.generator.name`` / ``model.discriminator.name`` in a translation
game, from their own registries (in gankit.models.registry): their constructors take channels, not latent
sizes.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from gankit.models.registry import PATCH_DISCRIMINATORS, TRANSLATORS, build_model


def norm_layer(name: str, channels: int) -> nn.Module:
    """batch (pix2pix), instance (CycleGAN; no affine, as the reference) or none."""
    if name == "batch":
        return nn.BatchNorm2d(channels)
    if name == "instance":
        return nn.InstanceNorm2d(channels)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"norm must be batch, instance or none, got {name!r}")


def _widths(width: int, levels: int, max_width: int) -> list[int]:
    return [min(width * 2 ** k, max_width) for k in range(levels)]


@TRANSLATORS.register("unet")
class UNet(nn.Module):
    """pix2pix's encoder-decoder with skips between mirrored layers (Isola et al. 2017). ``depth`` stride-2
    convolutions (8 at 256 px reach 1x1); ``bottleneck`` 3x3 residual blocks at the innermost resolution
    widen the view of a shallow U-Net on small images; dropout on the inner decoder layers is G's noise."""

    def __init__(self, in_channels: int, out_channels: int, *, width: int = 64, depth: int = 8,
                 max_width: int = 512, norm: str = "batch", dropout: float = 0.5, dropout_layers: int = 3,
                 bottleneck: int = 0) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.depth = depth
        bias = norm != "batch"  # a BatchNorm right after makes the conv's bias redundant
        c = _widths(width, depth, max_width)
        self.downs = nn.ModuleList()
        for k in range(depth):
            inner = k == depth - 1
            layers: list[nn.Module] = [] if k == 0 else [nn.LeakyReLU(0.2)]
            layers.append(nn.Conv2d(in_channels if k == 0 else c[k - 1], c[k], 4, 2, 1, bias=bias or inner))
            if 0 < k and not inner:
                layers.append(norm_layer(norm, c[k]))
            self.downs.append(nn.Sequential(*layers))
        self.middle = nn.Sequential(*[ResBlock(c[-1], norm, reflect=False) for _ in range(bottleneck)])
        self.ups = nn.ModuleList()
        for k in reversed(range(depth)):
            inner, outer = k == depth - 1, k == 0
            cin = c[k] if inner else 2 * c[k]
            layers = [nn.ReLU(), nn.ConvTranspose2d(cin, out_channels if outer else c[k - 1], 4, 2, 1,
                                                    bias=bias or outer)]
            if outer:
                layers.append(nn.Tanh())
            else:
                layers.append(norm_layer(norm, c[k - 1]))
                if dropout > 0 and depth - 1 - k < dropout_layers:
                    layers.append(nn.Dropout(dropout))
            self.ups.append(nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 2 ** self.depth or x.shape[-2] % 2 ** self.depth:
            raise ValueError(f"a U-Net of depth {self.depth} needs sides divisible by {2 ** self.depth}, "
                             f"got {tuple(x.shape[-2:])}")
        skips = []
        h = x
        for down in self.downs:
            h = down(h)
            skips.append(h)
        h = self.middle(h)
        for i, up in enumerate(self.ups):
            h = up(h if i == 0 else torch.cat([h, skips[-1 - i]], 1))
        return h


class ResBlock(nn.Module):
    """Two 3x3 convolutions with a skip; reflection padding as CycleGAN's."""

    def __init__(self, channels: int, norm: str, reflect: bool = True) -> None:
        super().__init__()
        pad = (lambda: nn.ReflectionPad2d(1)) if reflect else (lambda: nn.ZeroPad2d(1))
        self.body = nn.Sequential(pad(), nn.Conv2d(channels, channels, 3), norm_layer(norm, channels), nn.ReLU(),
                                  pad(), nn.Conv2d(channels, channels, 3), norm_layer(norm, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


@TRANSLATORS.register("resnet")
class ResnetTranslator(nn.Module):
    """CycleGAN's generator (Johnson et al. 2016): 7x7 conv, ``downsample`` stride-2 convs, ``blocks``
    residual blocks (6 at 128 px, 9 at 256), mirrored transposed convs, 7x7 conv to the output, tanh."""

    def __init__(self, in_channels: int, out_channels: int, *, width: int = 64, blocks: int = 9,
                 downsample: int = 2, norm: str = "instance") -> None:
        super().__init__()
        bias = norm != "batch"
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, width, 7, bias=bias),
                                   norm_layer(norm, width), nn.ReLU()]
        c = width
        for _ in range(downsample):
            layers += [nn.Conv2d(c, 2 * c, 3, 2, 1, bias=bias), norm_layer(norm, 2 * c), nn.ReLU()]
            c *= 2
        layers += [ResBlock(c, norm) for _ in range(blocks)]
        for _ in range(downsample):
            layers += [nn.ConvTranspose2d(c, c // 2, 3, 2, 1, output_padding=1, bias=bias),
                       norm_layer(norm, c // 2), nn.ReLU()]
            c //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(c, out_channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 2 ** self.downsample or x.shape[-2] % 2 ** self.downsample:
            raise ValueError(f"{self.downsample} downsamplings need sides divisible by {2 ** self.downsample}, "
                             f"got {tuple(x.shape[-2:])}")
        return self.net(x)


@PATCH_DISCRIMINATORS.register("patchgan")
class PatchGAN(nn.Module):
    """A fully convolutional D whose every output judges one patch: ``n_layers`` stride-2 4x4 convs, one
    stride-1, one to a logit map (n_layers 3 = the 70x70 receptive field of pix2pix at 256 px; 2 fits 28 px)."""

    def __init__(self, in_channels: int, *, width: int = 64, n_layers: int = 3, max_width: int = 512,
                 norm: str = "batch") -> None:
        super().__init__()
        bias = norm != "batch"
        c = _widths(width, n_layers + 1, max_width)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, c[0], 4, 2, 1), nn.LeakyReLU(0.2)]
        for k in range(1, n_layers + 1):
            stride = 2 if k < n_layers else 1
            layers += [nn.Conv2d(c[k - 1], c[k], 4, stride, 1, bias=bias), norm_layer(norm, c[k]), nn.LeakyReLU(0.2)]
        layers.append(nn.Conv2d(c[n_layers], 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x if cond is None else torch.cat([cond, x], 1))


def build_translator(spec: dict, in_channels: int, out_channels: int, key: str = "model.generator") -> nn.Module:
    """An image-to-image G from its ``{name, **args}`` spec; architecture errors become ConfigErrors."""
    return build_model(TRANSLATORS, spec, key, in_channels, out_channels)


def build_patch_discriminator(spec: dict, in_channels: int, key: str = "model.discriminator") -> nn.Module:
    """A patch D from its ``{name, **args}`` spec; architecture errors become ConfigErrors."""
    return build_model(PATCH_DISCRIMINATORS, spec, key, in_channels)
