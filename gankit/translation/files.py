"""`gankit translate`'s files: a user's images in (.npz or a folder of images), translations out."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gankit.checkpoint import atomic_write_bytes
from gankit.data.folder import EXTENSIONS, decode_image, image_header, list_images
from gankit.data.npz import NpzFile
from gankit.data.source import DataError, memory_shortfall
from gankit.sampling import png_bytes


def _fit_channels(x: torch.Tensor, channels: int, where: str) -> torch.Tensor:
    if x.shape[1] == channels:
        return x
    if x.shape[1] == 1 and channels == 3:
        return x.expand(-1, 3, -1, -1).contiguous()  # grey digits for a colour model: as its domain A holds them
    raise DataError(f"{where}: images have {x.shape[1]} channel(s); this run takes {channels}-channel images")


def output_names(root: Path, files: list[Path]) -> list[str]:
    """Each input's path under ``root`` without its suffix (``one/x.png`` -> ``one/x``), the name of its
    translation; two inputs that would share one (``a.png`` and ``a.jpg``) are refused by name, since
    one output would replace the other (compared case-blind: some file systems are)."""
    names, seen = [], {}
    for f in files:
        name = f.relative_to(root).with_suffix("").as_posix()
        other = seen.setdefault(name.casefold(), f)
        if other is not f:
            raise DataError(f"--input {root}: {other} and {f} would both be translated to {name}.png; rename one")
        names.append(name)
    return names


# a --out with one of these suffixes names a file, never the folder of PNGs gankit would create there
FILE_SUFFIXES = EXTENSIONS | {".gif", ".tif", ".tiff", ".npy", ".json"}


def check_output(out: str | Path) -> Path:
    """``--out`` checked before any work: an .npz file, or a folder for PNGs that is not named like a file."""
    out = Path(out)
    if out.suffix.lower() == ".npz":
        if out.is_dir():
            raise DataError(f"--out {out} is a directory; an .npz output must be a file")
        return out
    if out.suffix.lower() in FILE_SUFFIXES:
        raise DataError(f"--out {out}: translations are written to an .npz file or a folder of PNGs, and "
                        f"{out.name} names a file; use {out.with_suffix('.npz')} or a folder such as "
                        f"{out.with_suffix('')}")
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file; name a folder for the PNGs, or an .npz file")
    return out


def read_inputs(path: str | Path, shape: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor | None, list[str]]:
    """(uint8 N x C x H x W images, uint8 N x 1 x H x W masks or None, output names) at the run's input
    ``shape``; a wrong size, dtype or unreadable file is one clear error."""
    path = Path(path)
    c, h, w = shape
    if path.is_dir():
        files = list_images(path)
        names = output_names(path, files)
        short = memory_shortfall(len(files) * c * h * w)
        if short:
            raise DataError(f"--input {path}: {len(files):,} images of {w}x{h} pixels {short}")
        for f in files:  # every size from the headers first: a wrong one is refused before any decoding
            _, size = image_header(f)
            if size != (w, h):
                raise DataError(f"{f} is {size[0]}x{size[1]}; this run takes {w}x{h} images")
        images = torch.stack([decode_image(f, 1 if c == 1 else 3) for f in files])
        return _fit_channels(images, c, str(path)), None, names
    if path.suffix.lower() != ".npz":
        raise DataError(f"{path}: --input must be an .npz file or a directory of images")
    with NpzFile(path) as npz:
        info = npz.info("images")
        if info.dtype != np.uint8 or len(info.shape) not in (3, 4) or info.shape[1:3] != (h, w) or not info.shape[0]:
            raise DataError(f"{path}: `images` must be uint8 N x {h} x {w} [x C] with N >= 1; got "
                            f"{info.describe()}")
        mask_info = npz.info("masks") if "masks" in npz else None
        if mask_info is not None and (mask_info.dtype != np.uint8 or mask_info.shape != info.shape[:3]):
            raise DataError(f"{path}: `masks` must be uint8 N x {h} x {w} of 0 and 1 (1 = missing); got "
                            f"{mask_info.describe()}")
        images = npz.read("images")
        m = None if mask_info is None else npz.read("masks")
    x = torch.from_numpy(images)
    x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2).contiguous()
    masks = None
    if m is not None:
        if m.max(initial=0) > 1:
            raise DataError(f"{path}: `masks` must be uint8 N x {h} x {w} of 0 and 1 (1 = missing); it holds "
                            f"{int(m.max())}")
        masks = torch.from_numpy(m).unsqueeze(1)
    return _fit_channels(x, c, str(path)), masks, [f"{i:06d}" for i in range(len(x))]


def write_outputs(images: torch.Tensor, out: str | Path, names: list[str]) -> Path:
    """uint8 N x C x H x W to ``out``: an .npz (`images` N x H x W x C) or a directory of PNGs, one per
    name (a name may hold sub-folders: the input's relative path)."""
    out = check_output(out)
    hwc = images.permute(0, 2, 3, 1).cpu().numpy()
    if out.suffix.lower() == ".npz":
        import io

        buf = io.BytesIO()
        np.savez_compressed(buf, images=hwc)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, buf.getvalue())
        return out
    for name, img in zip(names, hwc):
        target = out / f"{name}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, png_bytes(img))
    return out
