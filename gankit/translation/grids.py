"""Running a translator over images and laying its rows out as one grid (training samples, `gankit sample`)."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from gankit.models.inference import run_eval
from gankit.translation.tasks import PairedTask, to_float


def write_rows(rows: list[torch.Tensor], path: Any, logger: Any, step: int, scale: int = 1) -> None:
    """A grid of model-range image rows (input | output | target ...), each row one batch of equal size;
    smaller inputs (super-resolution) are shown enlarged by pixel repetition."""
    from gankit.sampling import image_grid, save_image_grid

    side = max(r.shape[-1] for r in rows)
    channels = max(r.shape[1] for r in rows)
    shown = [torch.nn.functional.interpolate(r, size=(side, side), mode="nearest").expand(-1, channels, -1, -1)
             for r in rows]
    images = torch.cat(shown).cpu()
    save_image_grid(images, "symmetric", path, len(rows[0]), scale)
    if logger is not None:
        logger.image(step, image_grid(images, "symmetric", len(rows[0])))


def translate_paired(task: PairedTask, g: nn.Module, inputs: torch.Tensor, masks: torch.Tensor | None,
                     batch_size: int = 256) -> torch.Tensor:
    """Model-range outputs of ``g`` (eval mode) for uint8 ``inputs`` (and masks, 1 = missing)."""
    x = to_float(inputs)
    m = None if masks is None else masks.to(x.device)
    out = run_eval(g, task.g_input(x, m), batch_size)
    return task.finish(out, x, m)
