"""`folder`: any directory of images (recursive), center-cropped and resized to ``data.resolution``."""
from __future__ import annotations

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
SIDES = (16, 32, 64)  # what an unset data.resolution can become: the largest one the images fill
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


def read_image(path: Path, resolution: int, channels: int) -> torch.Tensor:
    """Decode one file to uint8 (C, resolution, resolution); an unreadable file is named."""
    arr = _open(path, lambda img: _pixels(img, channels))
    x = torch.from_numpy(arr.copy())
    x = x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1)
    return fit_images(x.unsqueeze(0), resolution, channels)[0]


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


def infer_shape(files: list[Path], probe: int = 64) -> tuple[int, int]:
    """(resolution, channels) for unset ``data.resolution`` / ``data.channels``: 1 channel when every probed
    image is grayscale (also RGB files with R = G = B), else 3; the largest of :data:`SIDES` not above
    the median shorter side, so small images are not blown up and large ones train at a CPU size."""
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
    side = int(np.median(sides))
    return max([s for s in SIDES if s <= side] or [SIDES[0]]), 1 if gray else 3


def folder_shape(cfg: DataConfig) -> tuple[list[Path], int, int, bool]:
    """(files, resolution, channels, inferred) of a folder dataset; ``inferred``: either was unset."""
    files = list_images(Path(cfg.root).expanduser())
    if cfg.limit is not None:
        files = files[:cfg.limit]
    if cfg.resolution is not None and cfg.channels is not None:
        return files, cfg.resolution, cfg.channels, False
    side, channels = infer_shape(files)
    return files, cfg.resolution or side, cfg.channels or channels, True


def describe_folder(cfg: DataConfig) -> str:
    """One line for the start of training: how many images, at what size and why."""
    files, side, channels, inferred = folder_shape(cfg)
    how = ("inferred from the images; set data.resolution / data.channels to change" if inferred
           else "data.resolution / data.channels")
    line = (f"data: {len(files)} images under {cfg.root}, trained at {side}x{side} "
            f"{'grayscale' if channels == 1 else 'RGB'} ({how})")
    if len(files) < FEW_IMAGES:
        line += (f"; only {len(files)} images: a GAN needs thousands to generalise, expect near-copies "
                 "(data augmentation, train.augment, helps)")
    return line


@DATASETS.register("folder")
def folder(cfg: DataConfig) -> Source:
    files, resolution, channels, _ = folder_shape(cfg)
    if len(files) * channels * resolution ** 2 <= PRELOAD_BYTES:
        images = torch.stack([read_image(p, resolution, channels) for p in files])
        return TensorSource(images, None, cfg.normalize)
    return LazySource(ImageFolder(files, resolution, channels, cfg.normalize),
                      (channels, resolution, resolution), cfg.normalize)
