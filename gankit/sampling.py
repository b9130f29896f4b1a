"""Latents, sample grids and sample files; ``load_generator`` rebuilds G from a checkpoint alone."""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from gankit.checkpoint import atomic_write_bytes, load_checkpoint, resolve
from gankit.config import Config, from_dict
from gankit.data import to_uint8


def latents(n: int, latent_dim: int, seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``n`` standard normal latents that depend only on (seed, n, latent_dim), not on the device."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, latent_dim, generator=gen).to(device)


@torch.no_grad()
def generate(g: nn.Module, z: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Run G in eval mode over ``z`` in batches; returns samples in the model's range on the CPU."""
    was_training = g.training
    g.eval()
    try:
        return torch.cat([g(chunk).float().cpu() for chunk in z.split(batch_size)])
    finally:
        g.train(was_training)


def image_grid(images: torch.Tensor, normalize: str, nrow: int) -> torch.Tensor:
    """uint8 (C, H', W') grid of model-range images (N, C, H, W)."""
    from torchvision.utils import make_grid

    grid = make_grid(images.float(), nrow=nrow, padding=2, pad_value=-1.0 if normalize == "symmetric" else 0)
    if images.shape[1] == 1:
        grid = grid[:1]  # make_grid repeats one channel into three; keep grayscale grids grayscale
    return to_uint8(grid, normalize)


def png_bytes(array_hwc: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array_hwc.squeeze(-1) if array_hwc.shape[-1] == 1 else array_hwc).save(buf, "PNG")
    return buf.getvalue()


def save_image_grid(images: torch.Tensor, normalize: str, path: str | Path, nrow: int) -> Path:
    path = Path(path)
    grid = image_grid(images, normalize, nrow)
    atomic_write_bytes(path, png_bytes(grid.permute(1, 2, 0).numpy()))
    return path


def save_points_plot(points: torch.Tensor, path: str | Path, reference: torch.Tensor | None = None) -> Path:
    """Scatter plot of 2D samples (over the real data in grey when given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    if reference is not None:
        ax.scatter(reference[:, 0], reference[:, 1], s=2, c="0.75", label="real")
    ax.scatter(points[:, 0], points[:, 1], s=2, c="tab:blue", label="generated")
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=7, markerscale=4)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


@dataclass
class LoadedGenerator:
    """A generator rebuilt from a checkpoint, with what is needed to sample and decode it."""

    net: nn.Module
    config: Config
    data_shape: tuple[int, ...]
    step: int
    is_ema: bool

    @property
    def latent_dim(self) -> int:
        return self.config.model.latent_dim

    @property
    def is_image(self) -> bool:
        return len(self.data_shape) == 3

    def sample(self, num: int, seed: int = 0, batch_size: int = 256) -> torch.Tensor:
        """``num`` samples in the model's range (CPU); the same seed gives the same samples."""
        device = next(self.net.parameters()).device
        return generate(self.net, latents(num, self.latent_dim, seed, device), batch_size)

    def to_uint8(self, samples: torch.Tensor) -> torch.Tensor:
        return to_uint8(samples, self.config.data.normalize)


def load_generator(path: str | Path, *, ema: bool = True, device: str | torch.device = "cpu") -> LoadedGenerator:
    """Rebuild G from a checkpoint file or run directory; uses the EMA weights when present and ``ema``."""
    from gankit.models import build_generator

    state, meta = load_checkpoint(resolve(path))
    cfg = from_dict(meta["config"])
    shape = tuple(meta["data_shape"])
    net = build_generator(cfg.model.generator, cfg.model.latent_dim, shape)
    use_ema = ema and state.get("g_ema") is not None
    _load_module(net, state["g_ema" if use_ema else "g"], "generator")
    net.to(device).eval()
    return LoadedGenerator(net, cfg, shape, int(meta["step"]), use_ema)


def _load_module(net: nn.Module, weights: dict[str, Any], what: str) -> None:
    from gankit.checkpoint import CheckpointError

    own = net.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    wrong = [f"{k}: checkpoint {tuple(weights[k].shape)} vs model {tuple(own[k].shape)}"
             for k in own if k in weights and weights[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        details = "; ".join(filter(None, [
            f"missing {', '.join(missing[:3])}" if missing else "",
            f"unexpected {', '.join(unexpected[:3])}" if unexpected else "",
            f"shape mismatch {', '.join(wrong[:3])}" if wrong else ""]))
        raise CheckpointError(f"the checkpoint's {what} does not fit the configured model: {details}")
    net.load_state_dict(weights)


def write_samples(gen: LoadedGenerator, num: int, out: str | Path, seed: int = 0, batch_size: int = 256,
                  nrow: int | None = None) -> Path:
    """Write ``num`` samples to a grid ``.png``, an ``.npz`` array file, or a directory (path ending in /)."""
    out_str = str(out)
    out = Path(out)
    samples = gen.sample(num, seed, batch_size)
    if out_str.endswith(("/", "\\")) or (out.is_dir()):
        if not gen.is_image:
            raise ValueError("a directory of PNGs needs image data; use .npz or .png for 2D points")
        out.mkdir(parents=True, exist_ok=True)
        images = gen.to_uint8(samples).permute(0, 2, 3, 1).numpy()
        for i, img in enumerate(images):
            atomic_write_bytes(out / f"{i:06d}.png", png_bytes(img))
        return out
    suffix = out.suffix.lower()
    if suffix == ".png":
        if gen.is_image:
            return save_image_grid(samples, gen.config.data.normalize, out, nrow or _grid_side(num))
        return save_points_plot(samples, out)
    if suffix == ".npz":
        buf = io.BytesIO()
        if gen.is_image:
            np.savez(buf, images=gen.to_uint8(samples).permute(0, 2, 3, 1).numpy())
        else:
            np.savez(buf, points=samples.numpy().astype(np.float32))
        atomic_write_bytes(out, buf.getvalue())
        return out
    raise ValueError(f"--out must end in .png, .npz or / (a directory), got {out_str!r}")


def _grid_side(n: int) -> int:
    return max(1, int(np.ceil(np.sqrt(n))))
