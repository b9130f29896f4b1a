"""Translation runs rebuilt from their checkpoints, applied to images, and measured on held-out digits.

Metrics: PSNR and SSIM (torchmetrics) against the known target, FID in the shipped digit classifier's
feature space against the targets, and that classifier's accuracy on the outputs (is the digit still
the same digit?); inpainting also on the box alone. Each comes beside its baseline: bicubic upsampling,
the masked input, the edge map, or the untranslated input for CycleGAN.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from gankit.checkpoint import CheckpointError, load_checkpoint, resolve
from gankit.config import Config, ConfigError, from_dict
from gankit.data import to_uint8
from gankit.data.source import DataError
from gankit.metrics.errors import EvalError
from gankit.models.translation import build_translator
from gankit.sampling import load_weights
from gankit.models.inference import run_eval
from gankit.translation.grids import translate_paired
from gankit.translation.tasks import EvalSet, PairedTask, UnpairedTask, build_task, task_from_meta, to_float

GAME_NETS = {"pix2pix": ("g",), "cyclegan": ("g_ab", "g_ba")}  # the generators each game's checkpoint holds


@dataclass
class Translator:
    """A trained image-to-image generator (or CycleGAN's two) with its task, as the checkpoint describes it:
    no images; the held-out ones (built-in digit tasks) are made when a command measures or shows them."""

    cfg: Config
    task: PairedTask | UnpairedTask
    nets: dict[str, nn.Module]
    step: int
    source: str = ""
    has_holdout: bool = True
    _full: PairedTask | UnpairedTask | None = field(default=None, repr=False)

    def held_out(self) -> PairedTask | UnpairedTask:
        """The task with its held-out images and known targets, built from its data now (only `gankit eval`
        and `gankit sample` need them); EvalError when it has none or its data cannot be read."""
        if self._full is None:
            if not self.has_holdout:
                raise EvalError(f"the {self.task.name} task has no held-out images with known targets; `gankit "
                                "eval` and `gankit sample` measure and show the built-in digit tasks (use "
                                "`gankit translate` on your own images)")
            try:
                self._full = build_task(self.cfg)
            except (DataError, ConfigError) as exc:
                raise EvalError(f"{self.source}: the {self.task.name} task's held-out images cannot be made: "
                                f"{exc}") from None
        return self._full

    @property
    def game(self) -> str:
        return self.cfg.game.name

    def input_shape(self, direction: str) -> tuple[int, int, int]:
        if isinstance(self.task, PairedTask):
            return self.task.input_shape
        return self.task.shape

    def translate(self, inputs: torch.Tensor, masks: torch.Tensor | None = None, direction: str = "AtoB"
                  ) -> torch.Tensor:
        """uint8 (N, C, H, W) inputs -> uint8 outputs; inpainting takes masks (1 = missing) or the fixed one."""
        if isinstance(self.task, PairedTask):
            if direction != "AtoB":
                raise ValueError("a pix2pix run translates one way: its input to its target (--direction AtoB)")
            if self.task.masks:
                if masks is None:
                    masks = self.task.fixed_masks(len(inputs), inputs.shape[-1], inputs.device)
                inputs = self.task.degrade(inputs, masks)  # whatever the missing pixels hold, G saw them grey
            out = translate_paired(self.task, self.nets["g"], inputs, masks)
        else:
            out = run_eval(self.nets["g_ab" if direction == "AtoB" else "g_ba"], to_float(inputs))
        return to_uint8(out, "symmetric")


def load_translator(path: str | Path, device: str | torch.device = "cpu") -> Translator:
    """Rebuild a pix2pix or CycleGAN run's generators from a checkpoint file or run directory: from the
    checkpoint alone (its task's shapes and kind are in its metadata), wherever its training data is."""
    file = resolve(path)
    state, meta = load_checkpoint(file)
    cfg = from_dict(meta["config"])
    if cfg.game.name not in GAME_NETS:
        raise CheckpointError(f"{path} is a {cfg.game.name} run, not an image-to-image one "
                              "(gankit sample draws from noise -> image runs)")
    full = None
    if "task" in meta:
        try:
            task, has_holdout = task_from_meta(meta["task"])
        except ValueError as exc:
            raise CheckpointError(f"{file}: the task in its metadata is not one gankit knows ({exc})") from None
    else:  # saved before the task was stored: only its data can say what it is
        try:
            task = full = build_task(cfg)
        except DataError as exc:
            raise CheckpointError(f"{file} was saved before gankit stored a run's task in its checkpoints, so "
                                  f"its training data is needed to rebuild it: {exc}") from None
        has_holdout = (task.holdout if isinstance(task, PairedTask) else task.holdout_ab) is not None
    if isinstance(task, PairedTask):
        nets = {"g": build_translator(cfg.model.generator, task.g_channels, task.target_shape[0])}
    else:
        nets = {k: build_translator(cfg.model.generator, task.shape[0], task.shape[0]) for k in GAME_NETS["cyclegan"]}
    for name, net in nets.items():
        load_weights(net, state[name], name)
        net.to(device).eval()
    return Translator(cfg, task, nets, int(meta["step"]), str(path), has_holdout, full)


# ---------------------------------------------------------------------------------------------
# Metrics


def to_grey(images: torch.Tensor, how: str) -> torch.Tensor:
    """uint8 (N, C, H, W) -> (N, 1, H, W) as the digit classifier reads it: the channel mean, or ``unbold``."""
    if images.shape[1] == 1:
        return images
    if how == "unbold":  # the colour's strongest channel, eroded back to thin strokes (undoes `bold`)
        grey = -torch.nn.functional.max_pool2d(-images.float().amax(1, keepdim=True), 3, 1, 1)
    else:
        grey = images.float().mean(1, keepdim=True)
    return grey.round().clamp(0, 255).to(torch.uint8)


def image_metrics(out: torch.Tensor, target: torch.Tensor, labels: torch.Tensor | None, extractor: Any,
                  target_feats: torch.Tensor | None, box: tuple[slice, slice] | None = None,
                  masks: torch.Tensor | None = None, grey: str = "mean") -> dict[str, float]:
    """PSNR/SSIM of uint8 ``out`` against ``target``; classifier accuracy and FID of its grey version."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    from gankit.metrics.fid import fid

    x, y = out.float().div(255), target.float().div(255)
    row = {"psnr": float(peak_signal_noise_ratio(x, y, data_range=1.0, reduction="elementwise_mean",
                                                 dim=(1, 2, 3))),
           "ssim": float(structural_similarity_index_measure(x, y, data_range=1.0))}
    if box is not None:  # the fixed box: PSNR and SSIM of the crop
        xb, yb = x[..., box[0], box[1]], y[..., box[0], box[1]]
        row["psnr_box"] = float(peak_signal_noise_ratio(xb, yb, data_range=1.0, reduction="elementwise_mean",
                                                        dim=(1, 2, 3)))
        row["ssim_box"] = float(structural_similarity_index_measure(xb, yb, data_range=1.0, kernel_size=7))
    elif masks is not None:  # random masks: PSNR over the missing pixels alone
        missing = masks.bool().expand_as(x)
        row["psnr_box"] = float(peak_signal_noise_ratio(x[missing], y[missing], data_range=1.0))
    if extractor is not None:
        feats, logits = extractor.extract(to_grey(out, grey))
        if labels is not None:
            row["accuracy"] = float((logits.argmax(1) == labels).float().mean())
        if target_feats is not None:
            row["fid"] = fid(feats, target_feats)
    return row


def _classifies(task_shape: tuple[int, ...]) -> bool:
    """The shipped classifier reads 28 px digits."""
    return tuple(task_shape[-2:]) == (28, 28)


def _measure(outputs: torch.Tensor, baseline: torch.Tensor, held: EvalSet, grey_out: str, grey_in: str,
             box: tuple[slice, slice] | None, masks: torch.Tensor | None) -> dict[str, dict[str, float]]:
    from gankit.metrics.features import get_extractor

    assert held.labels is not None
    extractor = get_extractor("mnist-cnn") if _classifies(held.targets.shape) else None
    target_feats = None
    rows: dict[str, dict[str, float]] = {}
    if extractor is not None:
        target_feats, _ = extractor.extract(to_grey(held.targets, grey_out))
        feats, logits = extractor.extract(to_grey(held.targets, grey_out))
        rows["target"] = {"accuracy": float((logits.argmax(1) == held.labels).float().mean())}
    rows["output"] = image_metrics(outputs, held.targets, held.labels, extractor, target_feats, box, masks, grey_out)
    rows["baseline"] = image_metrics(baseline, held.targets, held.labels, extractor, target_feats, box, masks, grey_in)
    return rows


def evaluate(translator: Translator) -> dict[str, Any]:
    """Every metric of a run on its task's held-out images, output beside baseline (and the targets)."""
    task = translator.held_out()
    if isinstance(task, PairedTask):
        held = task.holdout
        assert held is not None
        out = translator.translate(held.inputs, held.masks)
        baseline = to_uint8(task.baseline(to_float(held.inputs)), "symmetric")
        box = None
        if task.masks == "centre":
            side = held.targets.shape[-1]
            box = (slice(side // 4, side // 4 + side // 2),) * 2
        results = {"AtoB": _measure(out, baseline, held, "mean", "mean", box,
                                    None if box is not None else held.masks)}
        names = {"AtoB": task.baseline_name}
    else:
        assert task.holdout_ab is not None and task.holdout_ba is not None
        results = {}
        for direction, held, g_out, g_in in (("AtoB", task.holdout_ab, task.grey["B"], task.grey["A"]),
                                             ("BtoA", task.holdout_ba, task.grey["A"], task.grey["B"])):
            out = translator.translate(held.inputs, direction=direction)
            results[direction] = _measure(out, held.inputs, held, g_out, g_in, None, None)
        names = {"AtoB": "untranslated input", "BtoA": "untranslated input"}
    return {"info": {"game": translator.game, "task": task.name, "step": translator.step,
                     "num": _held_size(task),
                     "baselines": names, "extractor": "mnist-cnn"}, "results": results}


def _held_size(task: PairedTask | UnpairedTask) -> int:
    held = task.holdout if isinstance(task, PairedTask) else task.holdout_ab
    return 0 if held is None else len(held.targets)


def format_table(result: dict[str, Any]) -> str:
    """One block per direction: rows output / baseline / target, a column per metric."""
    lines = []
    for direction, rows in result["results"].items():
        keys = [k for k in ("accuracy", "psnr", "ssim", "psnr_box", "ssim_box", "fid") if k in rows["output"]]
        lines.append(f"{direction:28}" + "".join(f"{k:>10}" for k in keys))
        label = {"output": "output", "baseline": result["info"]["baselines"][direction], "target": "real target"}
        for name, row in rows.items():
            cells = "".join(f"{row[k]:>10.3f}" if k in row and abs(row[k]) != float("inf") else f"{'-':>10}"
                            for k in keys)
            lines.append(f"  {label[name]:26}{cells}")
    return "\n".join(lines)


def write_grid(translator: Translator, num: int, out: str | Path, scale: int | None = None) -> tuple[Path, int]:
    """``gankit sample`` of a translation run: rows input | output | target of the first ``num`` held-out
    images (CycleGAN: both directions), upscaled ``scale`` times (default: about 128 px per image); returns
    the file and how many images each row shows (fewer than ``num`` when the task holds fewer)."""
    from gankit.sampling import default_scale

    from gankit.translation.grids import write_rows

    if Path(out).suffix.lower() != ".png":
        raise ValueError(f"--out {out}: a translation run's samples are an input | output | target grid (.png)")
    task = translator.held_out()
    pairs = [("AtoB", task.holdout)] if isinstance(task, PairedTask) else \
        [("AtoB", task.holdout_ab), ("BtoA", task.holdout_ba)]
    rows = []
    for direction, held in pairs:
        assert held is not None
        masks = None if held.masks is None else held.masks[:num]
        out_u8 = translator.translate(held.inputs[:num], masks, direction)
        rows += [to_float(held.inputs[:num]), to_float(out_u8), to_float(held.targets[:num])]
    write_rows(rows, Path(out), None, translator.step, scale or default_scale(max(r.shape[-1] for r in rows)))
    return Path(out), len(rows[0])
