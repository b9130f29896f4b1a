"""Translation tasks: what the input of a paired or unpaired game is, and how it is made from data.

Built-in digit tasks derive their inputs from the bundled digits (``game.task``), training on the first
9,000 (gankit's fixed shuffled order, as the shipped classifier) and measuring on the last 1,000, which
neither saw. Images stay uint8 until a batch is drawn; a task turns an input into G's input
(``g_input``), finishes G's output (``finish``: inpainting keeps the known pixels) and names the
baseline its metrics are printed beside.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gankit.config import Config, ConfigError
from gankit.data.registry import dataset_facts
from gankit.data.source import TensorSource, to_model_range
from gankit.registry import Registry

MASK_FILL = 127  # what a missing pixel of an inpainting input holds (a visible grey)
BOLD_COLOUR = (1.0, 0.55, 0.1)  # cyclegan `bold`: the colour of the dilated strokes (orange)


@dataclass
class EvalSet:
    """Held-out inputs, their masks (inpainting), known targets and digit classes; uint8 NCHW."""

    inputs: torch.Tensor
    targets: torch.Tensor
    labels: torch.Tensor | None = None
    masks: torch.Tensor | None = None


@dataclass
class PairedTask:
    """A pix2pix task: ``targets`` (uint8 N x C x H x W) with their ``inputs`` stored (folders) or derived
    by ``degrade`` on the fly (digit tasks)."""

    name: str
    input_shape: tuple[int, int, int]  # of a user's input image (7 x 7 for superres4)
    target_shape: tuple[int, int, int]
    targets: torch.Tensor
    inputs: torch.Tensor | None = None
    holdout: EvalSet | None = None
    masks: str = ""  # inpainting: centre, boxes or strokes
    scale: int = 1  # superres: the upscaling factor
    edges: bool = False
    baseline_name: str = "input"
    origin: str = "mnist10k"  # where the training images come from, for the start line

    @property
    def g_channels(self) -> int:
        """Channels of G's input: the image, plus the mask for inpainting."""
        return self.input_shape[0] + (1 if self.masks else 0)

    def source(self) -> TensorSource:
        """The training targets, labelled by their row so a batch can fetch stored inputs."""
        return TensorSource(self.targets, torch.arange(len(self.targets)))

    def draw_masks(self, n: int, side: int, gen: torch.Generator) -> torch.Tensor | None:
        """uint8 (n, 1, side, side), 1 = missing, drawn from ``gen`` (the centre box draws nothing)."""
        return None if not self.masks else make_masks(self.masks, n, side, gen)

    def degrade(self, targets: torch.Tensor, masks: torch.Tensor | None) -> torch.Tensor:
        """The input of uint8 ``targets``: area-averaged, an edge map, or masked."""
        if self.scale > 1:
            return F.avg_pool2d(targets.float(), self.scale).round().to(torch.uint8)
        if self.edges:
            return edge_map(targets)
        if masks is not None:
            return torch.where(masks.bool(), torch.full_like(targets, MASK_FILL), targets)
        return targets

    def batch_inputs(self, targets: torch.Tensor, index: torch.Tensor, gen: torch.Generator
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(uint8 inputs, masks) of a training batch: stored, or derived from its targets."""
        if self.inputs is not None:
            return self.inputs[index], None
        masks = self.draw_masks(len(targets), targets.shape[-1], gen)
        return self.degrade(targets, masks), masks

    def fixed_masks(self, n: int, side: int, device: torch.device) -> torch.Tensor | None:
        """The mask of an input given without one: the centre box; random masks must come with the input."""
        if not self.masks:
            return None
        if self.masks != "centre":
            raise ValueError(f"the {self.name} task draws a random mask per image: pass `masks` with the inputs")
        return make_masks("centre", n, side, torch.Generator(device=device))

    def g_input(self, inputs: torch.Tensor, masks: torch.Tensor | None) -> torch.Tensor:
        """G's input from model-range inputs: upsampled (super-resolution) or with the mask beside."""
        if self.scale > 1:
            return bicubic(inputs, self.target_shape[-1])
        if self.masks:
            assert masks is not None
            return torch.cat([inputs, masks.to(inputs.dtype)], 1)
        return inputs

    def finish(self, output: torch.Tensor, inputs: torch.Tensor, masks: torch.Tensor | None) -> torch.Tensor:
        """Inpainting keeps the known pixels; other tasks take G's output as it is."""
        if not self.masks:
            return output
        assert masks is not None
        m = masks.to(output.dtype)
        return m * output + (1 - m) * inputs

    def baseline(self, inputs: torch.Tensor) -> torch.Tensor:
        """What the metrics are printed beside: bicubic upsampling, the masked input, the edge map."""
        return bicubic(inputs, self.target_shape[-1]) if self.scale > 1 else inputs


@dataclass
class UnpairedTask:
    """A CycleGAN task: two domains of uint8 images; digit tasks also know every image's counterpart."""

    name: str
    shape: tuple[int, int, int]
    domain_a: torch.Tensor
    domain_b: torch.Tensor
    holdout_ab: EvalSet | None = None  # A inputs with their known B translations
    holdout_ba: EvalSet | None = None
    grey: dict[str, str] = field(default_factory=lambda: {"A": "mean", "B": "mean"})  # how a domain reads as grey:
    # mean of the channels, or unbold (bold digits: strongest channel, eroded)
    origin: str = "mnist10k"


def bicubic(x: torch.Tensor, side: int) -> torch.Tensor:
    return F.interpolate(x, size=(side, side), mode="bicubic", align_corners=False).clamp(-1, 1)


def edge_map(x: torch.Tensor) -> torch.Tensor:
    """uint8 outlines: the morphological gradient (3x3 dilation - erosion) above a quarter of full scale."""
    f = x.float()
    grad = F.max_pool2d(f, 3, 1, 1) + F.max_pool2d(-f, 3, 1, 1)
    return ((grad > 64).to(torch.uint8) * 255)


def bold(x: torch.Tensor) -> torch.Tensor:
    """uint8 grey (N, 1, H, W) -> uint8 RGB: strokes dilated by one pixel, in :data:`BOLD_COLOUR`."""
    thick = F.max_pool2d(x.float(), 3, 1, 1)
    colour = torch.tensor(BOLD_COLOUR, device=x.device).view(1, 3, 1, 1)
    return (thick * colour).round().clamp(0, 255).to(torch.uint8)


def make_masks(kind: str, n: int, side: int, gen: torch.Generator) -> torch.Tensor:
    """uint8 (n, 1, side, side), 1 = missing: the centre half box, random boxes (a quarter to a half of the
    side, anywhere), or three random strokes about 3 px wide."""
    device = gen.device
    if kind == "centre":
        m = torch.zeros(n, 1, side, side, dtype=torch.uint8, device=device)
        lo, hi = side // 4, side // 4 + side // 2
        m[:, :, lo:hi, lo:hi] = 1
        return m
    coords = torch.arange(side, device=device, dtype=torch.float32)
    if kind == "boxes":
        size = torch.randint(side // 4, side // 2 + 1, (n, 2), generator=gen, device=device)
        top = (torch.rand(n, 2, generator=gen, device=device) * (side - size + 1)).floor()
        rows = (coords[None] >= top[:, :1]) & (coords[None] < top[:, :1] + size[:, :1])
        cols = (coords[None] >= top[:, 1:]) & (coords[None] < top[:, 1:] + size[:, 1:])
        return (rows[:, :, None] & cols[:, None, :]).unsqueeze(1).to(torch.uint8)
    if kind == "strokes":
        ends = torch.rand(n, 3, 2, 2, generator=gen, device=device) * (side - 4) + 2  # (n, stroke, end, yx)
        p, q = ends[:, :, 0], ends[:, :, 1]
        yy, xx = torch.meshgrid(coords, coords, indexing="ij")
        pix = torch.stack([yy, xx], -1).view(1, 1, side * side, 2)
        d = (q - p).unsqueeze(2)
        t = (((pix - p.unsqueeze(2)) * d).sum(-1) / d.square().sum(-1).clamp_min(1e-6)).clamp(0, 1)
        dist = (pix - (p.unsqueeze(2) + t.unsqueeze(-1) * d)).norm(dim=-1)  # (n, stroke, pixels)
        return (dist.min(1).values <= 1.5).view(n, 1, side, side).to(torch.uint8)
    raise ValueError(f"unknown mask kind {kind!r}")


def to_float(x: torch.Tensor) -> torch.Tensor:
    return to_model_range(x, "symmetric")


# ---------------------------------------------------------------------------------------------
# Registered tasks

TASKS: Registry = Registry("translation task")
HOLDOUT = dataset_facts("mnist10k").holdout  # the digit tasks hold out what the shipped classifier never saw
HOLDOUT_MASK_SEED = 1  # the held-out digits' random masks: fixed, so every evaluation sees the same


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """The bundled digits, uint8 (10000, 1, 28, 28), in gankit's fixed shuffled order, and their labels."""
    from gankit.data.bundled import shuffled_mnist10k

    images, labels = shuffled_mnist10k()
    return torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1), torch.as_tensor(labels, dtype=torch.long)


def _digit_task(name: str, cfg: Config, **kw: object) -> PairedTask:
    images, labels = digits()
    train = images[:len(images) - HOLDOUT]
    if cfg.data.limit is not None:
        train = train[:cfg.data.limit]
    task = PairedTask(name, (1, 28, 28), (1, 28, 28), train, **kw)  # type: ignore[arg-type]
    if task.scale > 1:
        task.input_shape = (1, 28 // task.scale, 28 // task.scale)
    held, held_labels = images[-HOLDOUT:], labels[-HOLDOUT:]
    masks = task.draw_masks(HOLDOUT, 28, torch.Generator().manual_seed(HOLDOUT_MASK_SEED))
    task.holdout = EvalSet(task.degrade(held, masks), held, held_labels, masks)
    return task


for _name, _kw in {"superres4": {"scale": 4, "baseline_name": "bicubic"},
                   "superres2": {"scale": 2, "baseline_name": "bicubic"},
                   "inpaint": {"masks": "centre", "baseline_name": "masked input"},
                   "inpaint-boxes": {"masks": "boxes", "baseline_name": "masked input"},
                   "inpaint-strokes": {"masks": "strokes", "baseline_name": "masked input"},
                   "edges": {"edges": True, "baseline_name": "edge map"}}.items():
    TASKS.register(_name)(lambda cfg, _n=_name, _k=_kw: _digit_task(_n, cfg, **_k))


@TASKS.register("bold")
def bold_digits(cfg: Config) -> UnpairedTask:
    """Grey digits (A) <-> bold orange digits (B): the first 4,500 training digits are A, the next 4,500
    (bolded) B, so no digit appears in both; the held-out 1,000 exist in both forms (the ground truth)."""
    images, labels = digits()
    train = images[:len(images) - HOLDOUT]
    if cfg.data.limit is not None:
        train = train[:cfg.data.limit]
    half = len(train) // 2
    grey = lambda x: x.expand(-1, 3, -1, -1).contiguous()  # noqa: E731  (both domains are RGB: identity loss)
    held, held_labels = images[-HOLDOUT:], labels[-HOLDOUT:]
    return UnpairedTask("bold", (3, 28, 28), grey(train[:half]), bold(train[half:2 * half]),
                        EvalSet(grey(held), bold(held), held_labels), EvalSet(bold(held), grey(held), held_labels),
                        {"A": "mean", "B": "unbold"})


def task_meta(task: PairedTask | UnpairedTask) -> dict[str, Any]:
    """What translating needs of a task, without its images: stored in the run's checkpoints, so a run
    translates (and says what it is) without its training data."""
    if isinstance(task, PairedTask):
        return {"kind": "paired", "name": task.name, "input_shape": list(task.input_shape),
                "target_shape": list(task.target_shape), "masks": task.masks, "scale": task.scale,
                "edges": task.edges, "baseline_name": task.baseline_name, "holdout": task.holdout is not None}
    return {"kind": "unpaired", "name": task.name, "shape": list(task.shape), "grey": dict(task.grey),
            "holdout": task.holdout_ab is not None and task.holdout_ba is not None}


def task_from_meta(meta: dict[str, Any]) -> tuple[PairedTask | UnpairedTask, bool]:
    """(the task of :func:`task_meta` with no images, whether it has held-out images); ValueError when
    ``meta`` is not one."""
    def shape(key: str) -> tuple[int, int, int]:
        value = meta[key]
        if not (isinstance(value, list) and len(value) == 3 and all(type(v) is int and v > 0 for v in value)):
            raise ValueError(f"{key} {value!r} is not a C x H x W shape")
        return tuple(value)  # type: ignore[return-value]

    try:
        kind, name, holdout = meta["kind"], str(meta["name"]), bool(meta["holdout"])
        if kind == "paired":
            target = shape("target_shape")
            masks, scale = str(meta["masks"]), int(meta["scale"])
            if masks not in ("", "centre", "boxes", "strokes") or scale < 1:
                raise ValueError(f"masks {masks!r}, scale {scale}")
            task: PairedTask | UnpairedTask = PairedTask(
                name, shape("input_shape"), target, torch.empty((0, *target), dtype=torch.uint8), masks=masks,
                scale=scale, edges=bool(meta["edges"]), baseline_name=str(meta["baseline_name"]))
        elif kind == "unpaired":
            c, h, w = shape("shape")
            grey = {str(k): str(v) for k, v in dict(meta["grey"]).items()}
            if set(grey) != {"A", "B"} or not set(grey.values()) <= {"mean", "unbold"}:
                raise ValueError(f"grey {grey!r}")
            empty = torch.empty((0, c, h, w), dtype=torch.uint8)
            task = UnpairedTask(name, (c, h, w), empty, empty, grey=grey)
        else:
            raise ValueError(f"kind {kind!r}")
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"missing or malformed {exc}") from None
    return task, holdout


def build_task(cfg: Config) -> PairedTask | UnpairedTask:
    """The task ``game.task`` names, checked against the game: a pix2pix task is paired, cyclegan's unpaired."""
    if not cfg.game.task:
        raise ConfigError(f"config: game.task: the {cfg.game.name} game needs a task "
                          f"(choices: {', '.join(TASKS.names())})")
    try:
        task = TASKS.get(cfg.game.task)(cfg)
    except KeyError as exc:
        raise ConfigError(f"config: game.task: {exc.args[0]}") from None
    paired = cfg.game.name == "pix2pix"
    if paired != isinstance(task, PairedTask):
        kind = "paired" if paired else "unpaired"
        raise ConfigError(f"config: game.task {cfg.game.task!r} is not a {kind} task, which the "
                          f"{cfg.game.name} game trains on")
    return task
