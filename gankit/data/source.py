"""What the training loop consumes: a sized collection of samples with a shape and a pixel range."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset


class DataError(RuntimeError):
    """A dataset that cannot be loaded; the message says which files to provide where."""


@dataclass
class TensorSource:
    """A dataset held in memory: uint8 images (N, C, H, W) or float points (N, D), optional labels.

    Images stay uint8 until a batch is drawn, so even CIFAR-10 fits on a GPU and indexing a batch is
    a single gather instead of a DataLoader round trip.
    """

    data: torch.Tensor
    labels: torch.Tensor | None = None
    normalize: str = "symmetric"
    num_classes: int | None = None

    def __len__(self) -> int:
        return self.data.shape[0]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape[1:])

    @property
    def is_image(self) -> bool:
        return self.data.dim() == 4

    def to(self, device: torch.device) -> "TensorSource":
        labels = None if self.labels is None else self.labels.to(device)
        return TensorSource(self.data.to(device), labels, self.normalize, self.num_classes)

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self.data[index]
        y = None if self.labels is None else self.labels[index]
        return (to_model_range(x, self.normalize) if self.is_image else x), y


@dataclass
class LazySource:
    """A map-style dataset decoded on the fly (image folders too big to keep in memory)."""

    dataset: Dataset
    shape: tuple[int, ...]
    normalize: str = "symmetric"
    num_classes: int | None = None
    is_image: bool = True

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]


Source = TensorSource | LazySource


def to_model_range(x: torch.Tensor, normalize: str) -> torch.Tensor:
    """uint8 [0, 255] -> float in [-1, 1] (symmetric) or [0, 1] (unit)."""
    x = x.float().div_(255.0)
    return x.mul_(2.0).sub_(1.0) if normalize == "symmetric" else x


def to_uint8(x: torch.Tensor, normalize: str) -> torch.Tensor:
    """Inverse of :func:`to_model_range`, clamped and rounded."""
    if normalize == "symmetric":
        x = (x + 1.0) / 2.0
    return x.clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)


def physical_memory() -> int | None:
    """Bytes of RAM of this machine (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def memory_shortfall(need: int) -> str | None:
    """Why ``need`` bytes cannot be allocated ("need X GiB in memory, more than half of this machine's Y GiB"),
    or None when they can: checked before allocating, because the OOM killer would not say why."""
    have = physical_memory()
    if have is None or need <= have // 2:
        return None
    return f"need {need / 2**30:.1f} GiB in memory, more than half of this machine's {have / 2**30:.1f} GiB"


def fit_images(images: torch.Tensor, resolution: int | None, channels: int | None) -> torch.Tensor:
    """Center-crop to square, resize and convert channels of uint8 (N, C, H, W) images."""
    n, c, h, w = images.shape
    short = memory_shortfall(n * (channels or c) * (resolution or min(h, w)) ** 2)
    if short:
        raise DataError(f"data.resolution {resolution}: {n:,} images of {resolution} x {resolution} pixels {short}")
    if channels is not None and channels != c:
        if channels == 3 and c == 1:
            images = images.expand(n, 3, h, w).contiguous()
        elif channels == 1 and c == 3:
            weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            images = (images.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
        else:
            raise DataError(f"cannot convert {c}-channel images to {channels} channels")
    if h != w:
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        images = images[:, :, top:top + side, left:left + side]
    if resolution is not None and resolution != images.shape[-1]:
        out = []
        per_image = images.shape[1] * max(resolution, images.shape[-1]) ** 2 * 4  # float32 bytes
        for chunk in images.split(max(1, min(2048, (256 << 20) // per_image))):  # <= 256 MiB of floats at once
            resized = F.interpolate(chunk.float(), size=(resolution, resolution), mode="bilinear",
                                    antialias=True, align_corners=False)
            out.append(resized.round().clamp(0, 255).to(torch.uint8))
        images = torch.cat(out)
    return images.contiguous()
