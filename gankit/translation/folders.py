"""Translation data from image folders under ``data.root``, in the layouts of the pix2pix/CycleGAN
reference: ``aligned`` (each file holds A | B side by side), ``paired`` (``A/`` and ``B/`` with matching
file names) and ``unpaired`` (``trainA/``, ``trainB/``). Images are decoded once, resized to
``data.resolution`` (default 256) and kept in memory as uint8."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gankit.config import Config
from gankit.data.folder import list_images
from gankit.data.source import DataError, fit_images
from gankit.translation.tasks import TASKS, PairedTask, UnpairedTask


def decode(path: Path, channels: int) -> torch.Tensor:
    """uint8 (C, H, W) at the file's own size; an unreadable file is named."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            arr = np.asarray(img.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None
    x = torch.from_numpy(arr.copy())
    return x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1)


def _fit(images: list[torch.Tensor], resolution: int, channels: int) -> torch.Tensor:
    return torch.cat([fit_images(x.unsqueeze(0), resolution, channels) for x in images])


def _settings(cfg: Config) -> tuple[Path, int, int]:
    return Path(cfg.data.root).expanduser(), cfg.data.resolution or 256, cfg.data.channels or 3


def _limited(files: list[Path], cfg: Config) -> list[Path]:
    return files if cfg.data.limit is None else files[:cfg.data.limit]


def _paired(name: str, a: torch.Tensor, b: torch.Tensor, cfg: Config) -> PairedTask:
    if cfg.game.direction == "BtoA":
        a, b = b, a
    shape = tuple(b.shape[1:])
    return PairedTask(name, shape, shape, b, inputs=a)  # type: ignore[arg-type]


@TASKS.register("aligned")
def aligned(cfg: Config) -> PairedTask:
    """pix2pix's layout: every image is A | B, two halves of equal width side by side."""
    root, resolution, channels = _settings(cfg)
    a, b = [], []
    for path in _limited(list_images(root), cfg):
        x = decode(path, channels)
        w = x.shape[-1]
        if w % 2:
            raise DataError(f"aligned: {path} is {w} px wide; an A|B image holds two halves of equal width")
        a.append(x[..., :w // 2])
        b.append(x[..., w // 2:])
    return _paired("aligned", _fit(a, resolution, channels), _fit(b, resolution, channels), cfg)


@TASKS.register("paired")
def paired(cfg: Config) -> PairedTask:
    """``A/name`` pairs with ``B/name``; every file needs its partner, of the same size."""
    root, resolution, channels = _settings(cfg)
    files_a, files_b = list_images(root / "A"), list_images(root / "B")
    names_a = {p.relative_to(root / "A").as_posix(): p for p in files_a}
    names_b = {p.relative_to(root / "B").as_posix(): p for p in files_b}
    lonely = sorted(set(names_a) ^ set(names_b))
    if lonely:
        side = "B" if lonely[0] in names_a else "A"
        raise DataError(f"paired: {root / ('A' if side == 'B' else 'B') / lonely[0]} has no partner in "
                        f"{root / side} ({len(lonely)} unpaired file(s))")
    a, b = [], []
    for name in _limited(sorted(names_a), cfg):  # type: ignore[arg-type]
        xa, xb = decode(names_a[name], channels), decode(names_b[name], channels)
        if xa.shape[1:] != xb.shape[1:]:
            raise DataError(f"paired: {names_a[name]} is {xa.shape[2]}x{xa.shape[1]} but {names_b[name]} is "
                            f"{xb.shape[2]}x{xb.shape[1]}; a pair must have one size")
        a.append(xa)
        b.append(xb)
    return _paired("paired", _fit(a, resolution, channels), _fit(b, resolution, channels), cfg)


@TASKS.register("unpaired")
def unpaired(cfg: Config) -> UnpairedTask:
    """CycleGAN's layout: ``trainA/`` and ``trainB/``, any sizes (each image is cropped and resized)."""
    root, resolution, channels = _settings(cfg)
    a = _fit([decode(p, channels) for p in _limited(list_images(root / "trainA"), cfg)], resolution, channels)
    b = _fit([decode(p, channels) for p in _limited(list_images(root / "trainB"), cfg)], resolution, channels)
    if cfg.game.direction == "BtoA":
        a, b = b, a
    return UnpairedTask("unpaired", (channels, resolution, resolution), a, b)
