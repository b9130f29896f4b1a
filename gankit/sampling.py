"""Latents, sample grids and sample files; ``load_generator`` rebuilds G from a checkpoint alone.

What G draws from (latents, labels, truncation, ``generate``) lives in gankit.latents and the loaded
generator in gankit.generator; both are re-exported here, the one module sampling code needs."""
from __future__ import annotations

import io
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn as nn

from gankit.checkpoint import (CheckpointError, atomic_write_bytes, load_checkpoint, resolve,
                               state_mismatch)
from gankit.config import Config, from_dict
from gankit.data import to_uint8
from gankit.data.source import memory_shortfall
from gankit.ema import ema_initial_share
from gankit.generator import LoadedGenerator
from gankit.generator_folder import is_generator_folder, read_folder, zoo_path
from gankit.latents import (check_memory, check_psi, class_labels, finite_samples, generate,  # noqa: F401
                            latents, truncate_latents, truncated)
from gankit.models.capabilities import StyleBased

if TYPE_CHECKING:
    from gankit.rejection import DensityFilter, Rejection


MAX_CLASS_COLUMNS = 32  # more classes than this: rows of a square grid (CIFAR-100's 100 columns would not read)
MAX_FRAMES = 2000  # a walk longer than this is a typo (--steps 100000), not an animation anyone can watch
MAX_FRAME_MS = 655_350  # a GIF stores a frame's duration in hundredths of a second, in 16 bits


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


def default_scale(side: int) -> int:
    """Nearest-neighbour upscaling that makes a ``side``-pixel image about 128 px on screen (28 px: 4x)."""
    return max(1, 128 // max(1, side))


def check_upscale(height: int, width: int, channels: int, scale: int, count: int = 1) -> None:
    """Refuse a ``scale`` whose ``count`` upscaled images would not fit in memory (before they are made)."""
    if scale < 1:
        raise ValueError(f"--scale must be >= 1, got {scale}")
    short = memory_shortfall(count * height * width * channels * scale * scale)
    if short:
        images = f"{count:,} images" if count > 1 else "an image"
        raise ValueError(f"--scale {scale}: upscaled, {images} of {height * scale:,} x {width * scale:,} pixels "
                         f"would {short}")


def upscale(array_hwc: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour: every pixel becomes a ``scale`` x ``scale`` block (no blur on tiny images)."""
    check_upscale(*array_hwc.shape[:3], scale)
    return array_hwc if scale == 1 else array_hwc.repeat(scale, 0).repeat(scale, 1)


def save_image_grid(images: torch.Tensor, normalize: str, path: str | Path, nrow: int, scale: int = 1) -> Path:
    path = Path(path)
    grid = image_grid(images, normalize, nrow)
    atomic_write_bytes(path, png_bytes(upscale(grid.permute(1, 2, 0).numpy(), scale)))
    return path


def save_points_plot(points: torch.Tensor, path: str | Path, reference: torch.Tensor | None = None,
                     modes: torch.Tensor | None = None) -> Path:
    """Scatter plot of 2D samples, over the real data in grey and the mixture's modes as crosses when given."""
    # a Figure of its own, not pyplot: switching pyplot's backend would stop a notebook's own plots
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 4), dpi=100)
    ax = fig.subplots()
    if reference is not None:
        ax.scatter(reference[:, 0], reference[:, 1], s=2, c="0.75", label="real")
    ax.scatter(points[:, 0], points[:, 1], s=2, c="tab:blue", label="generated")
    if modes is not None:
        ax.scatter(modes[:, 0], modes[:, 1], s=40, c="tab:red", marker="x", linewidths=1.2, label="real modes")
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=7, markerscale=2)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def points_reference(data: Any, num: int = 2500) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The real points (up to ``num`` of the training set) and a mixture's modes, to draw under samples of a
    2D run whose data is ``data`` (its DataConfig); (None, None) when the data cannot be rebuilt."""
    from gankit.data import build_dataset
    from gankit.data.toy2d import mixture_modes

    try:
        source = build_dataset(data)
    except Exception:  # a plot's background is a nicety: an unreadable data.points file must not stop sampling
        return None, mixture_modes(data.name)
    return source.data[:num].float().cpu(), mixture_modes(data.name)


def load_generator(path: str | Path, *, ema: bool = True, device: str | torch.device = "auto") -> LoadedGenerator:
    """Rebuild G from a checkpoint file, a run directory, a generator folder (``gankit export --format hf``)
    or ``zoo:NAME`` (a pretrained model shipped with gankit); uses the EMA weights when present and
    ``ema``. ``device``: auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps."""
    from gankit.device import select_device

    target = select_device(device, "device")
    if str(path).startswith("zoo:"):
        path = zoo_path(str(path)[len("zoo:"):])
    if is_generator_folder(path):
        weights, meta, cfg = read_folder(path)  # checked against the config before any weight is allocated
        use_ema = meta["is_ema"]
        prior = None if meta["prior"] is None else torch.tensor(meta["prior"], dtype=torch.float32)
    else:
        file = resolve(path)
        state, meta = load_checkpoint(file)
        if isinstance(meta, dict) and not draws_from_noise(meta):
            raise CheckpointError(f"{path} is a {meta['game']} run: it translates images (gankit translate), it "
                                  "does not draw them from noise")
        missing = [k for k in ("config", "data_shape", "step") if not isinstance(meta, dict) or k not in meta]
        if missing or not isinstance(state, dict) or not isinstance(state.get("g"), dict):
            what = f"metadata without {', '.join(missing)}" if missing else "no generator weights"
            raise CheckpointError(f"{file} is not a checkpoint of a gankit run ({what})")
        use_ema = ema and state.get("g_ema") is not None
        weights = state["g_ema" if use_ema else "g"]
        clusters = state.get("clusters")
        prior = None if clusters is None else clusters["prior"].float()
        cfg = from_dict(meta["config"])
        if use_ema:
            _warn_young_ema(path, int(meta["step"]), cfg, meta["config"].get("train", {}))
    net, num_classes = _rebuild(cfg, meta, path)
    load_weights(net, weights, "generator")
    check_finite(net, path, "EMA generator" if use_ema else "generator")
    net.to(target).eval()
    if cfg.model.self_condition and prior is None:
        raise CheckpointError(f"{path}: a self-conditioned run's checkpoint without its clusters")
    return LoadedGenerator(net, cfg, tuple(meta["data_shape"]), int(meta["step"]), use_ema, num_classes, prior)


def draws_from_noise(meta: dict[str, Any]) -> bool:
    """Whether a checkpoint's "g" draws images from latents: a gan run's, or a game's whose metadata says so
    (``noise_to_image``: bigan's G beside its encoder); image-to-image runs translate instead."""
    return meta.get("game", "gan") == "gan" or meta.get("noise_to_image") is True


def _rebuild(cfg: Config, meta: dict[str, Any], path: str | Path) -> tuple[nn.Module, int | None]:
    from gankit.models import build_generator

    conditioned = cfg.model.conditional or cfg.model.self_condition > 0
    num_classes = meta.get("num_classes") if conditioned else None
    if conditioned and not num_classes:
        raise CheckpointError(f"{path}: a conditional run's checkpoint without num_classes in its metadata")
    return build_generator(cfg.model.generator, cfg.model.latent_dim, tuple(meta["data_shape"]), num_classes), \
        num_classes


def check_finite(net: nn.Module, source: str | Path, what: str = "generator") -> None:
    """Refuse a generator with NaN or infinite weights: its samples and exports would be silently wrong."""
    for name, tensor in net.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{source}: the {what}'s weights hold NaN or Inf ({name}; the run diverged "
                                  "before this checkpoint); sample or export an earlier checkpoint")


def _warn_young_ema(path: str | Path, step: int, cfg: Any, saved_train: dict[str, Any]) -> None:
    """Warn when the EMA still holds much of G's random start (a short run without EMA warm-up)."""
    # runs saved before train.ema_warmup existed averaged without warm-up
    warmup = bool(saved_train.get("ema_warmup", False))
    share = ema_initial_share(step, cfg.train.ema_decay, cfg.train.ema_start, warmup, cfg.train.ema_rampup)
    if share > 0.05:
        warnings.warn(f"{path}: the EMA generator at step {step} still holds {share:.0%} of the initial random "
                      f"weights (train.ema_decay {cfg.train.ema_decay}{'' if warmup else ', no warm-up'}); "
                      "sample the raw generator "
                      "with --no-ema (ema=False), or train longer", stacklevel=3)


def load_weights(net: nn.Module, weights: dict[str, Any], what: str) -> None:
    details = state_mismatch(net.state_dict(), weights)
    if details:
        raise CheckpointError(f"the checkpoint's {what} does not fit the configured model: {details}")
    net.load_state_dict(weights)


def write_samples(gen: LoadedGenerator, num: int, out: str | Path, seed: int = 0, batch_size: int = 256,
                  nrow: int | None = None, class_index: int | None = None,
                  truncation: float | None = None, *,
                  rejection: Rejection | DensityFilter | None = None, scale: int = 1) -> Path:
    """Write ``num`` samples to a grid ``.png``, an ``.npz`` array file, or a directory (path ending in /).

    A conditional G draws every sample of ``class_index`` when given; otherwise a grid shows every class
    (see :func:`class_columns`) and files cycle through the classes (a self-conditioned G: one cluster per
    row, drawn in proportion to the clusters' sizes). The ``.npz`` then holds the ``labels`` (int64) too
    (``clusters`` for a self-conditioned G: they are not the dataset's classes). ``rejection``: keep
    only the samples it accepts (gankit.rejection: DRS or the density filter). ``scale``: nearest-neighbour
    upscaling of a ``.png`` grid (files and arrays keep the model's resolution)."""
    out_str = str(out)
    out = Path(out)
    grid = out.suffix.lower() == ".png" and gen.is_image
    columns = (class_columns(gen.num_classes, num, self_conditioned=gen.prior is not None, class_index=class_index)
               if grid and nrow is None else None)
    nrow = nrow or columns or _grid_side(num)
    labels = gen.labels(num, class_index, per_row=nrow if grid and not columns else 1)
    if rejection is None:
        samples = gen.sample(num, seed, batch_size, labels, truncation)
    else:
        check_memory(num, gen.latent_dim + math.prod(gen.data_shape), "samples")
        samples = finite_samples(rejection.sample(gen, num, seed, batch_size, labels, truncation))
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
            return save_image_grid(samples, gen.config.data.normalize, out, nrow, scale)
        return save_points_plot(samples, out, *points_reference(gen.config.data))
    if suffix == ".npz":
        buf = io.BytesIO()
        key = "clusters" if gen.self_conditioned else "labels"
        arrays = {} if labels is None else {key: labels.numpy().astype(np.int64)}
        if gen.is_image:
            np.savez(buf, images=gen.to_uint8(samples).permute(0, 2, 3, 1).numpy(), **arrays)
        else:
            np.savez(buf, points=samples.numpy().astype(np.float32), **arrays)
        atomic_write_bytes(out, buf.getvalue())
        return out
    raise ValueError(f"--out must end in .png, .npz or / (a directory), got {out_str!r}")


def class_columns(num_classes: int | None, num: int, *, self_conditioned: bool = False,
                  class_index: int | None = None) -> int | None:
    """A grid of a class-conditional G drawing all its classes: one column per class (column j is class j),
    so every class shows however many samples are asked for (rows of a square grid would show the first
    few classes only). None where the grid is laid out otherwise (one cluster per row when
    self-conditioned, one class, unconditional, too many classes or samples for a column each)."""
    if num_classes is None or self_conditioned or class_index is not None:
        return None
    return num_classes if num_classes <= MAX_CLASS_COLUMNS and num >= num_classes else None


def _grid_side(n: int) -> int:
    return max(1, int(np.ceil(np.sqrt(n))))


# ---------------------------------------------------------------------------------------------
# Latent walks and style mixing


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation from rows of ``a`` to rows of ``b`` at fractions ``t`` (column (T, 1)):
    it follows the great circle, so norms stay typical for a Gaussian latent (White 2016)."""
    cos = (a / a.norm(dim=-1, keepdim=True) * b / b.norm(dim=-1, keepdim=True)).sum(-1, keepdim=True)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    sin = torch.sin(omega)
    if float(sin.abs().min()) < 1e-6:  # (anti)parallel endpoints: the arc is undefined, lerp instead
        return torch.lerp(a, b, t)
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / sin


def walk_latents(points: torch.Tensor, steps: int, spherical: bool = False) -> torch.Tensor:
    """``steps`` latents from each point to the next (endpoints included, shared ones once):
    ``(len(points) - 1) * (steps - 1) + 1`` rows."""
    if steps < 2 or len(points) < 2:
        raise ValueError(f"a walk needs at least 2 points and 2 steps, got {len(points)} and {steps}")
    t = torch.linspace(0.0, 1.0, steps, dtype=points.dtype).unsqueeze(1)
    segments = []
    for i, (a, b) in enumerate(zip(points, points[1:])):
        seg = slerp(a[None], b[None], t) if spherical else torch.lerp(a[None], b[None], t)
        segments.append(seg if i == 0 else seg[1:])
    return torch.cat(segments)


def _single_class(gen: LoadedGenerator, num: int, class_index: int | None) -> torch.Tensor | None:
    """Labels for latent tools: one class for every image (class 0 unless ``class_index``)."""
    if gen.num_classes is None:
        return gen.labels(num, class_index)
    return gen.labels(num, 0 if class_index is None else class_index)


def check_walk(seeds: list[int], steps: int) -> int:
    """The frame count of a walk through ``seeds``, ``steps`` frames per pair; refuses a walk too long to watch."""
    return walk_frames(len(seeds), steps)


def walk_frames(count: int, steps: int) -> int:
    """:func:`check_walk` of ``count`` seeds, before they are listed."""
    frames = (count - 1) * (steps - 1) + 1
    if frames > MAX_FRAMES:
        raise ValueError(f"a walk through {count} seeds with --steps {steps} has {frames:,} frames, more than "
                         f"{MAX_FRAMES:,}; use fewer --steps or seeds")
    return frames


def check_frame_ms(frame_ms: int) -> None:
    if not 1 <= frame_ms <= MAX_FRAME_MS:
        raise ValueError(f"--frame-ms {frame_ms}: a GIF frame lasts 1 to {MAX_FRAME_MS} ms (its duration is "
                         "stored in hundredths of a second, in 16 bits)")


def interpolation_frames(gen: LoadedGenerator, seeds: list[int], steps: int, *, spherical: bool = False,
                         truncation: float | None = None, class_index: int | None = None) -> torch.Tensor:
    """Images along a walk through the latents of ``seeds`` (the latent of seed s is that of the first
    image of ``gankit sample --seed s``), ``steps`` frames per pair of seeds."""
    if not gen.is_image:
        raise ValueError("interpolation writes images; this run's data are 2D points")
    check_walk(seeds, steps)
    points = torch.cat([latents(1, gen.latent_dim, s) for s in seeds])
    path = walk_latents(points, steps, spherical).to(next(gen.net.parameters()).device)
    return finite_samples(generate(gen.net, path, 256, _single_class(gen, len(path), class_index),
                                   truncation=truncation))


def write_interpolation(gen: LoadedGenerator, seeds: list[int], steps: int, out: str | Path, *,
                        spherical: bool = False, truncation: float | None = None,
                        class_index: int | None = None, frame_ms: int = 80, scale: int = 1) -> Path:
    """An animated ``.gif`` (looping, ``frame_ms`` per frame) or a ``.png`` strip of the walk with each seed
    written under its frame; ``scale``: nearest-neighbour upscaling of every frame."""
    from PIL import Image

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".gif", ".png"):
        raise ValueError(f"--out must end in .gif (an animation) or .png (a strip), got {str(out)!r}")
    check_frame_ms(frame_ms)
    if gen.is_image:  # every frame of a GIF is upscaled and held at once
        check_upscale(*gen.data_shape[1:], gen.data_shape[0], scale, walk_frames(len(seeds), steps))
    frames = interpolation_frames(gen, seeds, steps, spherical=spherical, truncation=truncation,
                                  class_index=class_index)
    if suffix == ".png":
        strip = upscale(image_grid(frames, gen.config.data.normalize, len(frames)).permute(1, 2, 0).numpy(), scale)
        atomic_write_bytes(out, png_bytes(label_seeds(strip, seeds, steps, len(frames))))
        return out
    images = [Image.fromarray(a.squeeze(-1) if a.shape[-1] == 1 else a)
              for a in (upscale(f, scale) for f in gen.to_uint8(frames).permute(0, 2, 3, 1).numpy())]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=frame_ms, loop=0)
    atomic_write_bytes(out, buf.getvalue())
    return out


def label_seeds(strip: np.ndarray, seeds: list[int], steps: int, frames: int) -> np.ndarray:
    """The strip with a band below it naming the seed under each frame that is a seed's own image."""
    from PIL import Image, ImageDraw

    h, w = strip.shape[:2]
    band = 14
    canvas = Image.new("L" if strip.shape[2] == 1 else "RGB", (w, h + band), 255 if strip.shape[2] == 1 else
                       (255, 255, 255))
    canvas.paste(Image.fromarray(strip.squeeze(-1) if strip.shape[2] == 1 else strip), (0, 0))
    draw, cell = ImageDraw.Draw(canvas), w / frames
    for i, seed in enumerate(seeds):
        x = (i * (steps - 1) + 0.5) * cell  # the frame of seed i, centred
        text = f"seed {seed}" if cell >= 40 else str(seed)
        width = draw.textlength(text)
        draw.text((min(max(0.0, x - width / 2), w - width), h + 1), text, fill=0)
    array = np.asarray(canvas)
    return array[..., None] if array.ndim == 2 else array


def default_coarse_styles(g: nn.Module) -> int:
    """The styles of the 4x4 and 8x8 layers, the StyleGAN paper's "coarse" styles (pose, shape)."""
    return min(4, g.num_ws - 1)


def _check_style_mixer(g: nn.Module) -> None:
    if not isinstance(g, StyleBased):
        raise ValueError(f"style mixing needs a generator with per-layer styles (model.generator.name: "
                         f"stylegan); this one is a {type(g).__name__}")


@torch.no_grad()
def style_mix_grid(g: nn.Module, row_z: torch.Tensor, col_z: torch.Tensor, *, coarse: int | None = None,
                   truncation: float | None = None, row_y: torch.Tensor | None = None,
                   col_y: torch.Tensor | None = None, blank: float = -1.0, batch_size: int = 256) -> torch.Tensor:
    """A (rows + 1) x (cols + 1) grid of images, row-major: the top row shows the column latents'
    images, the left column the row latents', and cell (i, j) the first ``coarse`` styles of row i
    with the remaining (finer) styles of column j, as in Figure 3 of the StyleGAN paper with the rows
    as its "source B". The top-left corner is filled with ``blank``. Noise inputs are the fixed ones.
    G runs on at most ``batch_size`` images at once; only the images themselves are held together."""
    _check_style_mixer(g)
    check_psi(truncation)
    k = default_coarse_styles(g) if coarse is None else coarse
    if not 0 <= k <= g.num_ws:
        raise ValueError(f"coarse must be in 0..{g.num_ws} (this generator has {g.num_ws} styles), got {k}")
    was_training = g.training
    g.eval()
    try:
        psi = 1.0 if truncation is None else truncation

        def styles(z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
            ys = [None] * len(z.split(batch_size)) if y is None else y.split(batch_size)
            return torch.cat([g.mapping(chunk, yc, psi=psi) for chunk, yc in zip(z.split(batch_size), ys)])

        def images(ws: torch.Tensor) -> torch.Tensor:
            return torch.cat([g.synthesis(chunk).cpu() for chunk in ws.split(batch_size)])

        ws_r, ws_c = styles(row_z, row_y), styles(col_z, col_y)
        r, c = len(ws_r), len(ws_c)
        rows_img, cols_img = images(ws_r), images(ws_c)
        cells = []
        for start in range(0, r * c, batch_size):  # the mixed styles of one batch of cells at a time
            index = torch.arange(start, min(start + batch_size, r * c), device=ws_r.device)
            mixed = torch.cat([ws_r[index // c, :k], ws_c[index % c, k:]], 1)
            cells.append(g.synthesis(mixed).cpu())
        cells_img = torch.cat(cells).view(r, c, *rows_img.shape[1:])
    finally:
        g.train(was_training)
    top = torch.cat([torch.full_like(cols_img[:1], blank), cols_img])
    body = torch.cat([rows_img[:, None], cells_img], 1).flatten(0, 1)
    return torch.cat([top, body]).float()


def write_style_mix(gen: LoadedGenerator, rows: list[int], cols: list[int], out: str | Path, *,
                    coarse: int | None = None, truncation: float | None = None,
                    class_index: int | None = None, scale: int = 1) -> Path:
    """Write :func:`style_mix_grid` of the latents of seeds ``rows`` and ``cols`` to a ``.png``."""
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out must end in .png, got {str(out)!r}")
    _check_style_mixer(gen.net)
    check_psi(truncation)
    # before any image is drawn: the images (and the grid's float copy), then the upscaled grid
    c, h, w = gen.data_shape
    cells = (len(rows) + 1) * (len(cols) + 1)
    check_memory(cells, 2 * c * h * w, "style-mixing images")
    check_upscale((len(rows) + 1) * (h + 2) + 2, (len(cols) + 1) * (w + 2) + 2, c, scale)
    device = next(gen.net.parameters()).device
    row_z = torch.cat([latents(1, gen.latent_dim, s) for s in rows]).to(device)
    col_z = torch.cat([latents(1, gen.latent_dim, s) for s in cols]).to(device)
    row_y, col_y = _single_class(gen, len(rows), class_index), _single_class(gen, len(cols), class_index)
    if row_y is not None:
        row_y, col_y = row_y.to(device), col_y.to(device)
    normalize = gen.config.data.normalize
    grid = finite_samples(style_mix_grid(gen.net, row_z, col_z, coarse=coarse, truncation=truncation, row_y=row_y,
                                         col_y=col_y, blank=-1.0 if normalize == "symmetric" else 0.0))
    return save_image_grid(grid, normalize, out, nrow=len(cols) + 1, scale=scale)
