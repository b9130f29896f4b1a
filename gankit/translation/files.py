"""`gankit translate`'s files: a user's images in (.npz or a folder of images), translations out."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gankit.checkpoint import atomic_write_bytes
from gankit.data.folder import decode_image, image_header, list_images
from gankit.data.source import DataError, memory_shortfall
from gankit.sampling import png_bytes


def _fit_channels(x: torch.Tensor, channels: int, where: str) -> torch.Tensor:
    if x.shape[1] == channels:
        return x
    if x.shape[1] == 1 and channels == 3:
        return x.expand(-1, 3, -1, -1).contiguous()  # grey digits for a colour model: as its domain A holds them
    raise DataError(f"{where}: images have {x.shape[1]} channel(s); this run translates {channels}-channel images")


def read_inputs(path: str | Path, shape: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor | None, list[str]]:
    """(uint8 N x C x H x W images, uint8 N x 1 x H x W masks or None, output names) at the run's input
    ``shape``; a wrong size, dtype or unreadable file is one clear error."""
    path = Path(path)
    c, h, w = shape
    if path.is_dir():
        files = list_images(path)
        short = memory_shortfall(len(files) * c * h * w)
        if short:
            raise DataError(f"--input {path}: {len(files):,} images of {w}x{h} pixels {short}")
        for f in files:  # every size from the headers first: a wrong one is refused before any decoding
            _, size = image_header(f)
            if size != (w, h):
                raise DataError(f"{f} is {size[0]}x{size[1]}; this run translates {w}x{h} images")
        images = torch.stack([decode_image(f, 1 if c == 1 else 3) for f in files])
        return _fit_channels(images, c, str(path)), None, [f.stem for f in files]
    if path.suffix != ".npz":
        raise DataError(f"{path}: --input must be an .npz file or a directory of images")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not a readable .npz file: {exc}") from None
    if "images" not in arrays:
        raise DataError(f"{path} holds no `images` array (found: {', '.join(arrays) or 'nothing'})")
    images = arrays["images"]
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or images.shape[1:3] != (h, w):
        raise DataError(f"{path}: `images` must be uint8 N x {h} x {w} [x C]; got {images.dtype} "
                        f"{' x '.join(map(str, images.shape))}")
    x = torch.from_numpy(np.ascontiguousarray(images))
    x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2).contiguous()
    masks = None
    if "masks" in arrays:
        m = arrays["masks"]
        if m.dtype != np.uint8 or m.shape != images.shape[:3] or m.max(initial=0) > 1:
            raise DataError(f"{path}: `masks` must be uint8 N x {h} x {w} of 0 and 1 (1 = missing); got {m.dtype} "
                            f"{' x '.join(map(str, m.shape))}")
        masks = torch.from_numpy(np.ascontiguousarray(m)).unsqueeze(1)
    return _fit_channels(x, c, str(path)), masks, [f"{i:06d}" for i in range(len(x))]


def write_outputs(images: torch.Tensor, out: str | Path, names: list[str]) -> Path:
    """uint8 N x C x H x W to ``out``: an .npz (`images` N x H x W x C) or a directory of PNGs."""
    out = Path(out)
    hwc = images.permute(0, 2, 3, 1).cpu().numpy()
    if out.suffix == ".npz":
        import io

        buf = io.BytesIO()
        np.savez_compressed(buf, images=hwc)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, buf.getvalue())
        return out
    out.mkdir(parents=True, exist_ok=True)
    for name, img in zip(names, hwc):
        atomic_write_bytes(out / f"{name}.png", png_bytes(img))
    return out
