"""``gankit compare``: several runs side by side, as one PNG of fresh samples and one table of metrics.

The panels are drawn fresh from each run's latest checkpoint with the same latent seed, not copied from
``samples/``: every panel then shows the checkpoint the table describes, the same number of samples in
the same layout, and runs of one latent size the very same latents (a run's own grids use its
``train.seed``, so two seeds' grids would differ by their latents as well as by their training).
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import torch

from gankit.checkpoint import CheckpointDir, CheckpointError, atomic_write_bytes, read_meta

# metrics.jsonl columns shown in the table, in this order (the eval/* ones follow)
LOGGED = ("loss_d", "loss_g", "d_real", "d_fake", "img_per_s")
DEFAULT_IMAGES = 64
DEFAULT_POINTS = 2500
GAP = 16  # pixels between panels
FONT_SIZE = 14


@dataclass
class RunSummary:
    """What a run's directory says without loading a network: its checkpoint's step and data, and the
    last logged value of every metrics.jsonl column."""

    path: Path
    name: str
    step: int
    data: str
    data_shape: tuple[int, ...]
    reference: str
    root: str
    logged: dict[str, float] = field(default_factory=dict)
    logged_step: int | None = None
    eval_step: int | None = None
    evaluated: dict[str, Any] | None = None  # the fresh `--eval` result of calculate_metrics

    @property
    def is_image(self) -> bool:
        return len(self.data_shape) == 3

    def to_dict(self) -> dict[str, Any]:
        return {"run": str(self.path), "name": self.name, "step": self.step, "data": self.data,
                "logged_step": self.logged_step, "logged": self.logged, "eval_step": self.eval_step,
                "eval": self.evaluated}


def summarize(run: str | Path) -> RunSummary:
    """The :class:`RunSummary` of a run directory; a missing or non-run directory raises ValueError, a
    run without a checkpoint or of an image-to-image game CheckpointError (one line each)."""
    from gankit.logs import read_metrics

    path = Path(run)
    if not path.exists():
        raise ValueError(f"compare: no such run directory: {path}")
    if not path.is_dir():
        raise ValueError(f"compare: {path} is a file, not a run directory (gankit train --run-dir writes one)")
    if not (path / "checkpoints").is_dir():
        raise ValueError(f"compare: {path} is not a gankit run directory (it has no checkpoints/ folder)")
    latest = CheckpointDir(path / "checkpoints").latest()
    if latest is None:
        raise CheckpointError(f"compare: {path} has no checkpoint yet (its training stopped before the first save)")
    meta = read_meta(latest)
    if not isinstance(meta, dict) or not {"config", "step", "data_shape"} <= set(meta):
        raise CheckpointError(f"compare: {latest} is not a checkpoint of a gankit run")
    from gankit.sampling import draws_from_noise

    if not draws_from_noise(meta):
        raise CheckpointError(f"compare: {path} is a {meta['game']} run: it translates images, there is no "
                              "noise to sample (gankit eval measures it on its held-out images)")
    cfg = meta["config"]
    data = cfg.get("data", {})
    summary = RunSummary(path, path.name or str(path), int(meta["step"]), str(data.get("name", "?")),
                         tuple(meta["data_shape"]), str(cfg.get("eval", {}).get("reference") or data.get("name")),
                         str(data.get("root", "data")))
    for row in read_metrics(path / "metrics.jsonl"):
        if row.get("step", 0) > summary.step:  # rows of steps after the checkpoint: a resume repeats them
            continue
        if "loss_d" in row:
            summary.logged.update({k: row[k] for k in LOGGED if k in row})
            summary.logged_step = row["step"]
        evals = {k: v for k, v in row.items() if k.startswith("eval/")}
        if evals:
            summary.logged.update(evals)
            summary.eval_step = row["step"]
    return summary


def distinct_names(summaries: Sequence[RunSummary]) -> None:
    """Runs with the same folder name (a/run, b/run) are labelled by the path as given instead."""
    names = [s.name for s in summaries]
    for s in summaries:
        if names.count(s.name) > 1:
            s.name = str(s.path)


def check_kinds(summaries: Sequence[RunSummary]) -> None:
    kinds = {s.is_image for s in summaries}
    if len(kinds) > 1:
        points = ", ".join(str(s.path) for s in summaries if not s.is_image)
        raise ValueError(f"compare: {points} trained on 2D points and the others on images; compare runs of one "
                         "kind (image grids side by side, or scatter plots side by side)")


def table(summaries: Sequence[RunSummary]) -> str:
    """One column per run, one row per value: step, kimg, the last logged losses, D's outputs and
    speed, the last in-training evaluation, then the fresh ``--eval`` metrics."""
    rows: list[tuple[str, list[str]]] = [("step", [f"{s.step:,}" for s in summaries])]

    def add(label: str, values: list[Any]) -> None:
        if any(v is not None for v in values):
            rows.append((label, ["-" if v is None else v if isinstance(v, str) else _fmt(v) for v in values]))

    add("logged at step", [s.logged_step for s in summaries])
    for key in LOGGED:
        add(key, [s.logged.get(key) for s in summaries])
    evals = sorted({k for s in summaries for k in s.logged if k.startswith("eval/")})
    if evals:
        add("eval/ at step", [s.eval_step for s in summaries])
    for key in evals:
        add(key, [s.logged.get(key) for s in summaries])
    fresh = [s.evaluated or {} for s in summaries]
    keys = list(dict.fromkeys(k for r in fresh for k, v in r.items()
                              if k != "info" and isinstance(v, (int, float)) and not isinstance(v, bool)))
    for key in keys:
        add(key, [r.get(key) for r in fresh])
    names = [s.name for s in summaries]
    label_width = max(len(label) for label, _ in rows)
    widths = [max(len(n), *(len(r[1][i]) for r in rows)) for i, n in enumerate(names)]
    lines = [f"{'':{label_width}}  " + "  ".join(f"{n:>{w}}" for n, w in zip(names, widths))]
    lines += [f"{label:{label_width}}  " + "  ".join(f"{v:>{w}}" for v, w in zip(values, widths))
              for label, values in rows]
    return "\n".join(line.rstrip() for line in lines)


def _fmt(value: int | float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:.5g}"


def image_panel(gen: Any, num: int, seed: int, scale: int | None = None) -> np.ndarray:
    """uint8 (H, W, 3) grid of ``num`` samples of ``gen`` laid out as ``gankit sample`` lays out a .png
    (a column per class of a conditional G, a row per cluster of a self-conditioned one)."""
    from gankit.sampling import class_columns, default_scale, image_grid, upscale

    columns = class_columns(gen.num_classes, num, self_conditioned=gen.self_conditioned)
    nrow = columns or max(1, math.ceil(math.sqrt(num)))
    labels = gen.labels(num, None, per_row=1 if columns else nrow)
    samples = gen.sample(num, seed, labels=labels)
    grid = image_grid(samples, gen.config.data.normalize, nrow).permute(1, 2, 0).numpy()
    grid = upscale(grid, scale or default_scale(gen.data_shape[-1]))
    return np.repeat(grid, 3, axis=2) if grid.shape[2] == 1 else grid


def labelled(panel: np.ndarray, title: str, subtitle: str) -> Any:
    """The panel under a white band with two lines of text, cut to the panel's width."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=FONT_SIZE)
    h, w = panel.shape[:2]
    band = 2 * FONT_SIZE + 12
    width = max(w, 120)  # a panel narrower than a short label widens to it
    canvas = Image.new("RGB", (width, h + band), (255, 255, 255))
    canvas.paste(Image.fromarray(panel), (0, band))
    draw = ImageDraw.Draw(canvas)
    for i, text in enumerate((title, subtitle)):
        while text and draw.textlength(text, font=font) > width:
            text = text[:-2] + "…"
        draw.text((0, 2 + i * (FONT_SIZE + 4)), text, fill=0, font=font)
    return canvas


def side_by_side(panels: Sequence[Any]) -> bytes:
    """PNG bytes of PIL images in a row, top-aligned, on white."""
    from PIL import Image

    width = sum(p.width for p in panels) + GAP * (len(panels) - 1)
    out = Image.new("RGB", (width, max(p.height for p in panels)), (255, 255, 255))
    x = 0
    for p in panels:
        out.paste(p, (x, 0))
        x += p.width + GAP
    buf = io.BytesIO()
    out.save(buf, "PNG")
    return buf.getvalue()


def points_figure(points: Sequence[np.ndarray], titles: Sequence[str]) -> bytes:
    """PNG bytes of one scatter plot per run, side by side on shared axes (so spreads compare)."""
    from matplotlib.figure import Figure  # not pyplot: its backend stays the caller's (a notebook's)

    fig = Figure(figsize=(3.6 * len(points), 3.9), dpi=100)
    axes = fig.subplots(1, len(points), sharex=True, sharey=True, squeeze=False)
    for ax, p, title in zip(axes[0], points, titles):
        ax.scatter(p[:, 0], p[:, 1], s=2, c="tab:blue")
        ax.set_aspect("equal", adjustable="box")
        ax.set_title(title, fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def write_grid(summaries: Sequence[RunSummary], out: str | Path, *, num: int | None = None, seed: int = 0,
               ema: bool = True, device: str | torch.device = "auto", scale: int | None = None) -> Path:
    """One PNG of ``num`` fresh samples (latent seed ``seed``) of each run's latest checkpoint, labelled with
    the run's name and step: image grids side by side, or scatter plots of 2D points on shared axes."""
    from gankit.sampling import load_generator

    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out must end in .png, got {str(out)!r}")
    check_kinds(summaries)
    images, points, titles = [], [], []
    for s in summaries:
        gen = load_generator(s.path, ema=ema, device=device)
        which = "EMA G" if gen.is_ema else "G"
        titles.append((s.name, f"step {gen.step:,}, {which}, seed {seed}"))
        if gen.is_image:
            images.append(labelled(image_panel(gen, num or DEFAULT_IMAGES, seed, scale), *titles[-1]))
        else:
            points.append(gen.sample(num or DEFAULT_POINTS, seed).numpy())
    png = side_by_side(images) if images else points_figure(points, [f"{a}\n{b}" for a, b in titles])
    atomic_write_bytes(out, png)
    return out


def shared_reference(summaries: Sequence[RunSummary], ref: str | None = None) -> str:
    """``ref``, else the evaluation reference (the data) every run shares: numbers measured against
    different data would not compare."""
    if ref is not None:
        return ref
    refs = {(s.reference, s.root if s.reference == "folder" else "") for s in summaries}
    if len(refs) > 1:
        found = ", ".join(sorted(f"{r} ({root})" if root else r for r, root in refs))
        raise ValueError(f"compare --eval: the runs were trained on different data ({found}); name the one "
                         "reference they are all measured against with --ref")
    return summaries[0].reference


def evaluate(summaries: Sequence[RunSummary], *, ref: str | None = None, metrics: Sequence[str] | None = None,
             num: int = 10_000, seed: int = 0, ema: bool = True, device: str | torch.device = "cpu") -> str:
    """Measure every run the same way (``calculate_metrics``: one reference, extractor, sample count and
    seed), storing each result in its summary; returns the reference used (see :func:`shared_reference`)."""
    from gankit.metrics.api import calculate_metrics

    ref = shared_reference(summaries, ref)
    for s in summaries:
        s.evaluated = calculate_metrics(s.path, ref, metrics=metrics, num=num, seed=seed, root=s.root,
                                        device=device, ema=ema)
    return ref


def compare(runs: Sequence[str | Path], out: str | Path | None = None, *, num: int | None = None, seed: int = 0,
            evaluate_with: dict[str, Any] | None = None, ema: bool = True, device: str | torch.device = "auto"
            ) -> dict[str, Any]:
    """The Python face of ``gankit compare``: summaries of ``runs`` (and, given ``out``, the PNG of their
    samples; given ``evaluate_with``, keyword arguments of :func:`evaluate`, fresh metrics), as a dict
    ``{"runs": [...], "grid": path or None, "table": text}``."""
    from gankit.device import select_device

    summaries = [summarize(r) for r in runs]
    distinct_names(summaries)
    check_kinds(summaries)
    if evaluate_with is not None:  # refused before any sampling
        evaluate_with = {**evaluate_with, "ref": shared_reference(summaries, evaluate_with.get("ref"))}
    target = select_device(device, "device")
    grid = write_grid(summaries, out, num=num, seed=seed, ema=ema, device=target) if out is not None else None
    if evaluate_with is not None:
        evaluate(summaries, ema=ema, device=target, **evaluate_with)
    return {"runs": [s.to_dict() for s in summaries], "grid": None if grid is None else str(grid),
            "table": table(summaries)}
