"""`folder`: any directory of images (recursive), center-cropped and resized to ``data.resolution``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from gankit.config import DataConfig
from gankit.data.registry import DATASETS
from gankit.data.source import DataError, LazySource, Source, TensorSource, fit_images, to_model_range

EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
PRELOAD_BYTES = 1 << 30  # folders up to 1 GiB of uint8 pixels are decoded once and kept in memory


def list_images(root: Path) -> list[Path]:
    if not root.is_dir():
        raise DataError(f"folder: {root} is not a directory (set data.root to a folder of images)")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
    if not files:
        raise DataError(f"folder: no images ({', '.join(sorted(EXTENSIONS))}) found under {root}")
    return files


def read_image(path: Path, resolution: int, channels: int) -> torch.Tensor:
    """Decode one file to uint8 (C, resolution, resolution); an unreadable file is named."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            arr = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"folder: cannot read image {path}: {exc}") from None
    x = torch.from_numpy(arr.copy())
    x = x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1)
    return fit_images(x.unsqueeze(0), resolution, channels)[0]


class ImageFolder(Dataset):
    def __init__(self, files: list[Path], resolution: int, channels: int, normalize: str) -> None:
        self.files, self.resolution, self.channels, self.normalize = files, resolution, channels, normalize

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        return to_model_range(read_image(self.files[i], self.resolution, self.channels), self.normalize)


@DATASETS.register("folder")
def folder(cfg: DataConfig) -> Source:
    files = list_images(Path(cfg.root).expanduser())
    if cfg.limit is not None:
        files = files[:cfg.limit]
    resolution = cfg.resolution or 64
    channels = cfg.channels or 3
    if len(files) * channels * resolution ** 2 <= PRELOAD_BYTES:
        images = torch.stack([read_image(p, resolution, channels) for p in files])
        return TensorSource(images, None, cfg.normalize)
    return LazySource(ImageFolder(files, resolution, channels, cfg.normalize),
                      (channels, resolution, resolution), cfg.normalize)
