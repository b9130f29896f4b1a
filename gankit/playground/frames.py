"""What the page draws, computed from the live Trainer, and the compact binary frame that carries it.

A frame is ``uint32 n | n bytes of JSON header | arrays``; the header lists each array's name, dtype,
shape and byte offset. Points and arrows travel as int16 over the plane's extent, the heat map as
uint8, so a 2D frame of 1,000 samples and a 64 x 64 map is about 13 kB.
"""
from __future__ import annotations

import json
import math
import struct
from copy import deepcopy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from gankit.data.toy2d import MIXTURES
from gankit.ema import recalibrate_norms
from gankit.metrics.modes import pacgan_modes
from gankit.objectives import Objective
from gankit.sampling import generate, image_grid, latents, png_bytes

if TYPE_CHECKING:
    from gankit.games.noise_to_image import NoiseToImage as Trainer

VIEW_SEED = 90_001  # the page's own latents and real points: never one of the training streams
METRIC_SAMPLES = 2500  # mode metrics as `gankit eval --metrics modes2d` measures them (PacGAN)
VIEW_POINTS, VIEW_RESOLUTION = 1000, 64  # G's samples and real points drawn; the heat map's grid side
GRID_SAMPLES = 64  # image mode: the grid of G's samples


def pack(header: dict[str, Any], arrays: dict[str, np.ndarray | bytes]) -> bytes:
    """One binary websocket message; every array starts at a multiple of 4 bytes (typed-array views)."""
    meta, blobs, offset = [], [], 0
    for name, array in arrays.items():
        raw = array if isinstance(array, bytes) else np.ascontiguousarray(array).tobytes()
        dtype = "png" if isinstance(array, bytes) else array.dtype.name
        shape = [len(raw)] if isinstance(array, bytes) else list(array.shape)
        meta.append({"name": name, "dtype": dtype, "shape": shape, "offset": offset, "bytes": len(raw)})
        pad = -len(raw) % 4
        blobs.append(raw + b"\0" * pad)
        offset += len(raw) + pad
    head = json.dumps({**header, "arrays": meta}, separators=(",", ":"), allow_nan=False,
                      default=_plain).encode()
    head += b" " * (-(len(head) + 4) % 4)
    return struct.pack("<I", len(head)) + head + b"".join(blobs)


def unpack(message: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray | bytes]]:
    """The inverse of :func:`pack` (tests and the benchmark read frames with it)."""
    (n,) = struct.unpack_from("<I", message)
    header = json.loads(message[4:4 + n])
    base, arrays = 4 + n, {}
    for a in header["arrays"]:
        raw = message[base + a["offset"]:base + a["offset"] + a["bytes"]]
        arrays[a["name"]] = raw if a["dtype"] == "png" else np.frombuffer(raw, a["dtype"]).reshape(a["shape"])
    return header, arrays


def _plain(obj: object) -> object:
    return obj.item() if hasattr(obj, "item") else str(obj)


def finite_or_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


def quantize(points: np.ndarray, scale: float) -> np.ndarray:
    return np.clip(np.round(points / scale * 32767), -32767, 32767).astype(np.int16)


@dataclass
class View2D:
    """The fixed things a 2D view is drawn from: real points, G's latents, the plane and the heat-map grid."""

    real: torch.Tensor
    z: torch.Tensor
    metric_z: torch.Tensor  # the PacGAN protocol's 2,500 samples
    extent: float
    grid: torch.Tensor
    resolution: int
    dataset: str
    modes: dict[str, Any] | None = None  # the last mode metrics drawn (kept between refreshes)

    @classmethod
    def build(cls, trainer: "Trainer", num: int = VIEW_POINTS, resolution: int = VIEW_RESOLUTION) -> "View2D":
        data = trainer.source.data
        gen = torch.Generator().manual_seed(VIEW_SEED)
        real = data[torch.randperm(len(data), generator=gen)[:num].to(data.device)].float().cpu()
        # a square around the data with a margin, in half units, so G's early samples are visible
        extent = max(1.5, math.ceil(float(data.abs().max()) * 1.3 * 2) / 2)
        ticks = (torch.arange(resolution) + 0.5) / resolution * 2 * extent - extent
        y, x = torch.meshgrid(ticks.flip(0), ticks, indexing="ij")  # row 0 is the top of the canvas
        grid = torch.stack([x.flatten(), y.flatten()], 1)
        z = latents(len(real), trainer.cfg.model.latent_dim, VIEW_SEED)  # the render copies live on the CPU
        metric_z = latents(METRIC_SAMPLES, trainer.cfg.model.latent_dim, VIEW_SEED + 1)
        return cls(real, z, metric_z, extent, grid, resolution, trainer.cfg.data.name)


@dataclass
class Nets:
    """The render thread's copies of G, D and the EMA G: training goes on while a frame is drawn."""

    g: torch.nn.Module
    d: torch.nn.Module
    ema: torch.nn.Module | None
    # the EMA's BatchNorm statistics: the EMA copy keeps its own, re-estimated by ``recalibrate``
    # (the trainer's EMA holds G's, which belong to G's weights, not to their average)
    ema_norm_buffers: frozenset[str] = frozenset()

    @classmethod
    def of(cls, trainer: "Trainer") -> "Nets":
        copy = lambda net: deepcopy(net).cpu().eval().requires_grad_(False)  # noqa: E731
        ema = None if trainer.ema is None else copy(trainer.ema.shadow)
        norm_buffers = frozenset() if ema is None else frozenset(
            f"{name}.{buffer}" if name else buffer for name, m in ema.named_modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for buffer, _ in m.named_buffers(recurse=False))
        return cls(copy(trainer.g), copy(trainer.d), ema, norm_buffers)

    def recalibrate(self, batches: tuple[list[torch.Tensor], list[torch.Tensor] | None]) -> None:
        """Re-estimate the EMA copy's BatchNorm statistics on ``batches`` (Trainer.recalibration_batches)
        with the function Trainer.sampling_net uses before training samples or saves the EMA."""
        if self.ema is not None:
            recalibrate_norms(self.ema, *batches)

    @torch.no_grad()
    def update(self, trainer: "Trainer") -> None:
        self.g.load_state_dict(trainer.g.state_dict())
        self.d.load_state_dict(trainer.d.state_dict())
        if self.ema is not None and trainer.ema is not None:
            state = {k: v for k, v in trainer.ema.shadow.state_dict().items() if k not in self.ema_norm_buffers}
            self.ema.load_state_dict(state, strict=not self.ema_norm_buffers)


def frame_2d(nets: Nets, objective: Objective, view: View2D, header: dict[str, Any], modes: bool = True) -> bytes:
    """G's samples with the gradient of G's loss on each (where G's next step pushes it), D's output over
    the plane (one batched forward), the real points, and the PacGAN mode metrics of the sampling G (the
    EMA when kept) where the data has modes: measured anew when ``modes``, else the last ones again."""
    g, d = nets.g, nets.d
    with torch.no_grad():
        fake = g(view.z, None).float()
        heat = d(view.grid, None).float()
    x = fake.detach().requires_grad_(True)
    # the objective's own G loss (relativistic ones pair each sample with a real point)
    loss, _ = objective.generator_loss(d, x, None, 0.0, None, real=view.real)
    (grad,) = torch.autograd.grad(loss, x)
    push = (-grad).numpy() * len(x)  # per sample, not divided by the batch's mean
    norms = np.linalg.norm(push, axis=1)
    arrow_max = float(norms[np.isfinite(norms)].max()) if np.isfinite(norms).any() else 0.0
    if objective.logistic_d:
        heat, lo, hi = torch.sigmoid(heat), 0.0, 1.0
    else:
        lo, hi = float(heat.min()), float(heat.max())
        hi = hi if hi > lo else lo + 1e-6
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    heat8 = np.nan_to_num(((heat.numpy() - lo) / (hi - lo) * 255).clip(0, 255)).astype(np.uint8)
    header = {**header, "kind": "2d", "extent": view.extent, "heat_lo": lo, "heat_hi": hi,
              "heat_is_probability": objective.logistic_d, "arrow_max": finite_or_none(arrow_max),
              **(view.modes if view.modes is not None and not modes else _measure_modes(view, nets))}
    scale = arrow_max if arrow_max > 0 else 1.0
    return pack(header, {"real": quantize(view.real.numpy(), view.extent),
                         "fake": quantize(np.nan_to_num(fake.numpy()), view.extent),
                         "push": quantize(np.nan_to_num(push), scale),
                         "heat": heat8.reshape(view.resolution, view.resolution)})


def _measure_modes(view: View2D, nets: Nets) -> dict[str, Any]:
    view.modes = mode_metrics(view, nets)
    return view.modes


def mode_metrics(view: View2D, nets: Nets) -> dict[str, Any]:
    """modes / high_quality / reverse_kl (gankit.metrics.modes) of 2,500 samples of the sampling G."""
    if view.dataset not in MIXTURES:
        return {"modes": None}
    ema = nets.ema is not None
    m = pacgan_modes(generate(nets.ema if ema else nets.g, view.metric_z, batch_size=METRIC_SAMPLES), view.dataset)
    return {"modes": m["modes"], "num_modes": m["num_modes"], "high_quality": finite_or_none(m["high_quality"]),
            "reverse_kl": finite_or_none(m["reverse_kl"]), "metrics_of": "EMA" if ema else "G"}


def frame_image(nets: Nets, z: torch.Tensor, labels: torch.Tensor | None, normalize: str,
                header: dict[str, Any]) -> bytes:
    """A PNG grid of the sampling G (the EMA when kept) on fixed latents."""
    samples = generate(nets.g if nets.ema is None else nets.ema, z, labels=labels)
    grid = image_grid(samples, normalize, int(math.sqrt(len(z))))
    return pack({**header, "kind": "image"}, {"grid": png_bytes(grid.permute(1, 2, 0).numpy())})
