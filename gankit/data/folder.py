"""`folder`: any directory of images (recursive), center-cropped and resized to ``data.resolution``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from gankit.config import DataConfig
from gankit.data.registry import DATASETS
from gankit.data.source import DataError, LazySource, Source, TensorSource, fit_images, to_model_range

EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
PRELOAD_BYTES = 1 << 30  # folders up to 1 GiB of uint8 pixels are decoded once and kept in memory
# What an unset data.resolution can become: the sides the conv models build by doubling a 3-7 px base
# (gankit.models.layers.pyramid), up to a CPU-sized 64 px, so 28 px digits train at 28 px and 30 px images
# at 28 rather than being shrunk to the nearest power of two
MAX_INFERRED_SIDE = 64
SIDES = tuple(sorted({b << k for b in range(3, 8) for k in range(1, 5) if 8 <= b << k <= MAX_INFERRED_SIDE}))
FEW_IMAGES = 500  # below this a GAN mostly memorises; said at the start of training


def list_images(root: Path) -> list[Path]:
    if not root.is_dir():
        raise DataError(f"folder: {root} is not a directory (set data.root to a folder of images)")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
    if not files:
        raise DataError(f"folder: no images ({', '.join(sorted(EXTENSIONS))}) found under {root}")
    return files


def image_header(path: Path) -> tuple[str, tuple[int, int]]:
    """(PIL mode, (width, height)) of an image file, read from its header; an unreadable file is named."""
    return _open(path, lambda img: (img.mode, img.size))


def decode_image(path: Path, channels: int) -> torch.Tensor:
    """Decode one file to uint8 (C, H, W) at its own size, ``channels`` 1 or 3; an unreadable file, a
    decompression bomb too, is named. Every reader of image files decodes through this one."""
    arr = _open(path, lambda img: _pixels(img, channels))
    x = torch.from_numpy(arr.copy())
    return x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1)


def read_image(path: Path, resolution: int, channels: int) -> torch.Tensor:
    """Decode one file to uint8 (C, resolution, resolution); an unreadable file is named."""
    return fit_images(decode_image(path, channels).unsqueeze(0), resolution, channels)[0]


def _open(path: Path, read: Any) -> Any:
    """``read(img)`` of the opened image; every way a file can fail becomes one DataError naming it."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # large photos (PIL warns above 89 Mpixel) are fine to downscale; above twice that PIL refuses
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                return read(img)
    except Image.DecompressionBombError:
        raise DataError(f"folder: cannot read image {path}: it claims more than {2 * Image.MAX_IMAGE_PIXELS:,} "
                        "pixels (PIL's decompression-bomb limit)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"folder: cannot read image {path}: {exc}") from None


def _pixels(img: Any, channels: int) -> np.ndarray:
    """uint8 (H, W) or (H, W, 3) pixels; 16- and 32-bit grayscale is scaled from 0-65535, not clipped at 255."""
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        wide = np.asarray(img, dtype=np.float64)
        gray = np.clip(np.round(wide / 257.0), 0, 255).astype(np.uint8)
        return gray if channels == 1 else np.repeat(gray[..., None], 3, axis=2)
    return np.asarray(img.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)


class ImageFolder(Dataset):
    def __init__(self, files: list[Path], resolution: int, channels: int, normalize: str) -> None:
        self.files, self.resolution, self.channels, self.normalize = files, resolution, channels, normalize

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        return to_model_range(read_image(self.files[i], self.resolution, self.channels), self.normalize)


def infer_shape(files: list[Path], probe: int = 64) -> tuple[int, int, int]:
    """(resolution, channels, median side) for unset ``data.resolution`` / ``data.channels``: 1 channel when
    every probed image is grayscale (also RGB files with R = G = B), else 3; the side of :data:`SIDES`
    nearest the median shorter side (the images' own where it is one), at most :data:`MAX_INFERRED_SIDE`."""
    def side_and_gray(img: Any) -> tuple[int, bool]:
        if img.mode in ("1", "L", "LA", "I", "I;16", "F"):
            return min(img.size), True
        rgb = np.asarray(img.convert("RGB"), dtype=np.int16)
        return min(img.size), bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())

    sides, gray = [], True
    for path in files[:: max(1, len(files) // probe)][:probe]:
        side, is_gray = _open(path, side_and_gray)  # every unreadable file, a decompression bomb too, is named
        sides.append(side)
        gray = gray and is_gray
    median = int(np.median(sides))
    return nearest_side(median), 1 if gray else 3, median


def nearest_side(side: int) -> int:
    """The trainable side closest to ``side`` (the smaller one on a tie: less upsampling blur)."""
    return min(SIDES, key=lambda s: (abs(s - side), s))


@dataclass(frozen=True)
class FolderShape:
    files: list[Path]
    resolution: int
    channels: int
    median_side: int | None  # None: data.resolution and data.channels were both set, nothing was inferred


def folder_shape(cfg: DataConfig) -> FolderShape:
    """The files of a folder dataset and the size and channels they train at."""
    files = list_images(Path(cfg.root).expanduser())
    if cfg.limit is not None:
        files = files[:cfg.limit]
    if cfg.resolution is not None and cfg.channels is not None:
        return FolderShape(files, cfg.resolution, cfg.channels, None)
    side, channels, median = infer_shape(files)
    return FolderShape(files, cfg.resolution or side, cfg.channels or channels, median)


def describe_folder(cfg: DataConfig) -> str:
    """One line for the start of training: how many images, at what size and why."""
    shape = folder_shape(cfg)
    side, n = shape.resolution, len(shape.files)
    if shape.median_side is None:
        how = "data.resolution / data.channels"
    else:
        size = ("data.resolution" if cfg.resolution is not None else
                "the images' own side" if side == shape.median_side else
                f"the trainable side nearest the images' median side {shape.median_side} px"
                + (f", at most {MAX_INFERRED_SIDE} px on a CPU budget" if shape.median_side > MAX_INFERRED_SIDE else ""))
        colour = "data.channels" if cfg.channels is not None else "inferred from the images"
        how = f"size: {size}; colour: {colour}; set data.resolution / data.channels to change"
    line = (f"data: {n} images under {cfg.root}, trained at {side}x{side} "
            f"{'grayscale' if shape.channels == 1 else 'RGB'} ({how})")
    if n < FEW_IMAGES:
        line += (f"; only {n} images: a GAN needs thousands to generalise, expect near-copies "
                 "(data augmentation, train.augment, helps)")
    return line


@DATASETS.register("folder")
def folder(cfg: DataConfig) -> Source:
    shape = folder_shape(cfg)
    files, resolution, channels = shape.files, shape.resolution, shape.channels
    if len(files) * channels * resolution ** 2 <= PRELOAD_BYTES:
        images = torch.stack([read_image(p, resolution, channels) for p in files])
        return TensorSource(images, None, cfg.normalize)
    return LazySource(ImageFolder(files, resolution, channels, cfg.normalize),
                      (channels, resolution, resolution), cfg.normalize)
