"""Small building blocks shared by the model files."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.nn.utils.parametrizations import spectral_norm


def activation(name: str, slope: float = 0.2) -> nn.Module:
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "leaky_relu":
        return nn.LeakyReLU(slope, inplace=True)
    raise ValueError(f"activation must be relu or leaky_relu, got {name!r}")


def output_activation(name: str) -> nn.Module:
    layers = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "none": nn.Identity}
    if name not in layers:
        raise ValueError(f"output must be one of {', '.join(layers)}, got {name!r}")
    return layers[name]()


def image_shape(shape: tuple[int, ...], model: str) -> tuple[int, int]:
    """(channels, side) of a square image shape, or a clear error for 2D points."""
    if len(shape) != 3 or shape[1] != shape[2]:
        raise ValueError(f"{model} needs square images (C, H, W); the data has shape {tuple(shape)} "
                         "(use the mlp model for 2D points)")
    return shape[0], shape[1]


def pyramid(resolution: int) -> tuple[int, int]:
    """Split a side into (base, levels) with base * 2**levels == resolution and base in [3, 7].

    28 -> (7, 2), 32 -> (4, 3), 64 -> (4, 4), 48 -> (3, 4): every resolution a stack of stride-2
    layers can reach from a small base, not only powers of two.
    """
    base, levels = resolution, 0
    while base % 2 == 0 and base > 4:
        base //= 2
        levels += 1
    if levels == 0 or base > 7:
        raise ValueError(f"resolution {resolution} cannot be built by doubling a 3..7 pixel base; "
                         "use e.g. 28, 32, 48, 64, 128 or 256")
    return base, levels


def same_padding(kernel: int) -> int:
    return (kernel - 1) // 2


def flat_size(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def apply_spectral_norm(net: nn.Module) -> nn.Module:
    """Spectrally normalise every linear and conv weight (Miyato et al. 2018): each layer's top
    singular value is estimated by one power iteration per forward pass in training mode (the
    vectors are buffers, so checkpoints and resume keep them) and divided out."""
    for m in list(net.modules()):
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d, nn.Embedding)):  # embeddings: projection D
            spectral_norm(m)
    return net


class MinibatchStd(nn.Module):
    """Appends one feature map (one feature to (N, F) inputs): the std of each feature across groups of
    ``group`` samples, averaged (Karras et al. 2018). D sees the batch's variety, so a collapsed G is easy to tell from real data."""

    def __init__(self, group: int = 4) -> None:
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # features (N, F) of a fully connected D: one more feature
            return self.forward(x[:, :, None, None]).flatten(1)
        n, c, h, w = x.shape
        g = math.gcd(n, self.group)  # a batch the group does not divide still works, in smaller groups
        std = (x.reshape(g, n // g, c, h, w).var(0, unbiased=False) + 1e-8).sqrt()
        feature = std.mean((1, 2, 3)).reshape(n // g, 1, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, feature], 1)


def doubling_widths(side: int, width: int, max_width: int, base: int = 4) -> dict[int, int]:
    """Channels per resolution from ``base`` to ``side``: ``width`` at ``side``, doubling per halving of
    the resolution, capped at ``max_width`` (the usual pyramid of StyleGAN and BigGAN)."""
    if width < 1 or max_width < 1:
        raise ValueError(f"width and max_width must be >= 1, got {width} and {max_width}")
    sides = [base * 2 ** i for i in range(int(math.log2(side // base)) + 1)]
    return {r: min(width * side // r, max_width) for r in sides}
