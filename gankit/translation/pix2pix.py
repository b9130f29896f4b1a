"""The pix2pix game (Isola et al. 2017): G maps an input image to its target, D judges (input, image)
pairs patch by patch, and G's loss is the conditional GAN loss plus ``game.lambda_l1`` x L1 to the target."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from gankit.config import Config
from gankit.distributed import Dist
from gankit.game import GAMES
from gankit.models.translation import build_patch_discriminator, build_translator
from gankit.translation.game import TranslationGame, checked_task, run_eval, write_rows
from gankit.translation.tasks import PairedTask, to_float


def translate_paired(task: PairedTask, g: nn.Module, inputs: torch.Tensor, masks: torch.Tensor | None,
                     batch_size: int = 256) -> torch.Tensor:
    """Model-range outputs of ``g`` (eval mode) for uint8 ``inputs`` (and masks, 1 = missing)."""
    x = to_float(inputs)
    m = None if masks is None else masks.to(x.device)
    out = run_eval(g, task.g_input(x, m), batch_size)
    return task.finish(out, x, m)


class Pix2Pix(TranslationGame):
    def __init__(self, cfg: Config, device: torch.device, dist: Dist) -> None:
        self.task = task = checked_task(cfg, PairedTask)
        c_out = task.target_shape[0]
        nets = {"g": build_translator(cfg.model.generator, task.g_channels, c_out),
                "d": build_patch_discriminator(cfg.model.discriminator, task.g_channels + c_out)}
        super().__init__(cfg, device, dist, nets, {"B": task.source()})
        self.inputs = None if task.inputs is None else task.inputs.to(device)

    def train_step(self, total: int | None) -> dict[str, torch.Tensor]:
        cfg, g, d = self.cfg, self.nets["g"], self.nets["d"]
        self.start_step(total)
        real, index = self.stream_next("B")
        if self.inputs is not None:
            inputs, masks = self.inputs[index], None
        else:
            inputs, masks = self.task.batch_inputs(self.stream.source.data[index], index, self.rng)
        x = to_float(inputs)
        cond = self.task.g_input(x, masks)
        fake = self.task.finish(g(cond), x, masks)
        noise = self.objective.noise_std(self.step, total or 0)
        d.requires_grad_(True)
        loss_d, stats = self.objective.discriminator_loss(d, real, fake.detach(), cond, noise, self.rng,
                                                          d_step=self.step)
        self.opt_d.zero_grad(set_to_none=True)
        self.backward_step(loss_d, self.opt_d)
        self.objective.after_d_step(d)
        d.requires_grad_(False)
        loss_gan, g_stats = self.objective.generator_loss(d, fake, cond, noise, self.rng, real=real)
        l1 = (fake - real).abs().mean()
        self.opt_g.zero_grad(set_to_none=True)
        self.backward_step(loss_gan + cfg.game.lambda_l1 * l1, self.opt_g)
        self.step += 1
        self.images_seen += cfg.train.batch_size
        return {**stats, **g_stats, "l1": l1.detach()}

    def write_samples(self, z: torch.Tensor, run_dir: Path, logger: Any) -> None:
        """Rows of held-out inputs | outputs | targets (training pairs for folder tasks)."""
        n = self.cfg.log.grid
        held = self.task.holdout
        if held is not None:
            inputs, targets, masks = held.inputs[:n], held.targets[:n], None if held.masks is None else held.masks[:n]
        else:
            targets = self.task.targets[:n]
            inputs, masks = self.task.batch_inputs(targets, torch.arange(len(targets)), torch.Generator())
        inputs, targets = inputs.to(self.device), targets.to(self.device)
        out = translate_paired(self.task, self.nets["g"], inputs, masks)
        write_rows([to_float(inputs), out, to_float(targets)], run_dir / "samples" / f"step_{self.step:06d}.png",
                   logger, self.step)


GAMES.register("pix2pix")(Pix2Pix)
