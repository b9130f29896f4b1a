"""Small building blocks shared by the model files."""
from __future__ import annotations

import math

import torch.nn as nn


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
