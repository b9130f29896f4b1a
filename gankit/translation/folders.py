"""Translation data from image folders under ``data.root``, in the layouts of the pix2pix/CycleGAN
reference: ``aligned`` (each file holds A | B side by side), ``paired`` (``A/`` and ``B/`` with matching
file names) and ``unpaired`` (``trainA/``, ``trainB/``). Images are decoded once by the folder dataset's
reader (16-bit PNGs scaled, decompression bombs refused), resized to ``data.resolution`` (default 256)
and kept in memory as uint8, after a check that they fit there."""
from __future__ import annotations

from pathlib import Path

import torch

from gankit.config import Config
from gankit.data.folder import decode_image, list_images
from gankit.data.source import DataError, fit_images, memory_shortfall
from gankit.translation.tasks import TASKS, PairedTask, UnpairedTask


def _settings(cfg: Config) -> tuple[Path, int, int]:
    return Path(cfg.data.root).expanduser(), cfg.data.resolution or 256, cfg.data.channels or 3


def _limited(files: list[Path], cfg: Config) -> list[Path]:
    return files if cfg.data.limit is None else files[:cfg.data.limit]


def _buffer(n: int, resolution: int, channels: int) -> torch.Tensor:
    """Room for ``n`` fitted images, filled one by one: no list of full-size decodes, no concatenated copy."""
    return torch.empty((n, channels, resolution, resolution), dtype=torch.uint8)


def _fit(x: torch.Tensor, resolution: int, channels: int) -> torch.Tensor:
    return fit_images(x.unsqueeze(0), resolution, channels)[0]


def _check_memory(count: int, root: Path, resolution: int, channels: int) -> None:
    """Refuse, before decoding anything, ``count`` images that would not fit in memory at this resolution."""
    short = memory_shortfall(count * channels * resolution ** 2)
    if short:
        raise DataError(f"data.resolution {resolution}: {count:,} images of {resolution} x {resolution} pixels "
                        f"from {root} {short}; lower data.resolution or data.limit")


def _paired(name: str, a: torch.Tensor, b: torch.Tensor, cfg: Config) -> PairedTask:
    if cfg.game.direction == "BtoA":
        a, b = b, a
    shape = tuple(b.shape[1:])
    origin = f"{name} folder {cfg.data.root}"
    return PairedTask(name, shape, shape, b, inputs=a, origin=origin)  # type: ignore[arg-type]


@TASKS.register("aligned")
def aligned(cfg: Config) -> PairedTask:
    """pix2pix's layout: every image is A | B, two halves of equal width side by side."""
    root, resolution, channels = _settings(cfg)
    files = _limited(list_images(root), cfg)
    _check_memory(2 * len(files), root, resolution, channels)
    a, b = _buffer(len(files), resolution, channels), _buffer(len(files), resolution, channels)
    for i, path in enumerate(files):
        x = decode_image(path, channels)
        w = x.shape[-1]
        if w % 2:
            raise DataError(f"aligned: {path} is {w} px wide; an A|B image holds two halves of equal width")
        a[i], b[i] = _fit(x[..., :w // 2], resolution, channels), _fit(x[..., w // 2:], resolution, channels)
    return _paired("aligned", a, b, cfg)


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
    names = _limited(sorted(names_a), cfg)  # type: ignore[arg-type]
    _check_memory(2 * len(names), root, resolution, channels)
    a, b = _buffer(len(names), resolution, channels), _buffer(len(names), resolution, channels)
    for i, name in enumerate(names):
        xa, xb = decode_image(names_a[name], channels), decode_image(names_b[name], channels)
        if xa.shape[1:] != xb.shape[1:]:
            raise DataError(f"paired: {names_a[name]} is {xa.shape[2]}x{xa.shape[1]} but {names_b[name]} is "
                            f"{xb.shape[2]}x{xb.shape[1]}; a pair must have one size")
        a[i], b[i] = _fit(xa, resolution, channels), _fit(xb, resolution, channels)
    return _paired("paired", a, b, cfg)


@TASKS.register("unpaired")
def unpaired(cfg: Config) -> UnpairedTask:
    """CycleGAN's layout: ``trainA/`` and ``trainB/``, any sizes (each image is cropped and resized)."""
    root, resolution, channels = _settings(cfg)
    files_a, files_b = _limited(list_images(root / "trainA"), cfg), _limited(list_images(root / "trainB"), cfg)
    _check_memory(len(files_a) + len(files_b), root, resolution, channels)
    domains = []
    for files in (files_a, files_b):
        x = _buffer(len(files), resolution, channels)
        for i, path in enumerate(files):
            x[i] = _fit(decode_image(path, channels), resolution, channels)
        domains.append(x)
    a, b = domains
    if cfg.game.direction == "BtoA":
        a, b = b, a
    domain = "B" if cfg.game.direction == "BtoA" else "A"
    return UnpairedTask("unpaired", (channels, resolution, resolution), a, b,
                        origin=f"unpaired folder {cfg.data.root} (domain {domain})")
