"""The pix2pix game (Isola et al. 2017): G maps an input image to its target, D judges (input, image)
pairs patch by patch, and G's loss is the conditional GAN loss plus ``game.lambda_l1`` x L1 to the target.
Phases: D's update, then G's on the same fakes."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gankit.config import Config
from gankit.games.base import GAMES, Carry, Phase, Runtime, Stats, sample_path
from gankit.games.translation import TranslationGame, checked_task, translation_game
from gankit.models.translation import build_patch_discriminator, build_translator
from gankit.run_state import RunState
from gankit.translation.grids import translate_paired, write_rows
from gankit.translation.tasks import PairedTask, to_float


@dataclass
class Pix2Pix(TranslationGame):
    name = "pix2pix"
    inputs: torch.Tensor | None = None  # the task's input images where they are fixed (not drawn per batch)

    def __post_init__(self) -> None:
        self.phases = (Phase("D", "d", self.discriminator_loss, trains=("d",), after=self.after_d,
                             counts_images=True),
                       Phase("G", "g", self.generator_loss, trains=("g",), frozen=("d",)))

    def discriminator_loss(self, run: RunState, carry: Carry, i: int) -> tuple[torch.Tensor, Stats]:
        assert self.objective is not None
        real, index = self.stream_next("B")
        if self.inputs is not None:
            inputs, masks = self.inputs[index], None
        else:
            inputs, masks = self.task.batch_inputs(self.stream.source.data[index], index, self.rng)
        x = to_float(inputs)
        cond = self.task.g_input(x, masks)
        fake = self.task.finish(self.nets["g"](cond), x, masks)
        carry.update(noise=self.objective.noise_std(run.step, run.noise_steps), fake=fake, cond=cond, real=real)
        return self.objective.discriminator_loss(self.nets["d"], real, fake.detach(), cond, carry["noise"],
                                                 self.rng, d_step=run.step)

    def after_d(self, run: RunState, stats: Stats) -> None:
        assert self.objective is not None
        self.objective.after_d_step(self.nets["d"])

    def generator_loss(self, run: RunState, carry: Carry, i: int) -> tuple[torch.Tensor, Stats]:
        assert self.objective is not None
        fake, cond, real = carry["fake"], carry["cond"], carry["real"]
        loss_gan, stats = self.objective.generator_loss(self.nets["d"], fake, cond, carry["noise"], self.rng,
                                                        real=real)
        l1 = (fake - real).abs().mean()
        return loss_gan + self.cfg.game.lambda_l1 * l1, {**stats, "l1": l1.detach()}

    def write_samples(self, z: torch.Tensor, step: int, run_dir: Path, logger: Any) -> None:
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
        write_rows([to_float(inputs), out, to_float(targets)], sample_path(run_dir, step), logger, step)


@GAMES.register("pix2pix")
def prepare_pix2pix(cfg: Config, runtime: Runtime) -> Pix2Pix:
    task = checked_task(cfg, PairedTask)
    c_out = task.target_shape[0]
    nets = {"g": build_translator(cfg.model.generator, task.g_channels, c_out),
            "d": build_patch_discriminator(cfg.model.discriminator, task.g_channels + c_out)}
    game = translation_game(Pix2Pix, cfg, runtime, task, nets, ("g",), ("d",), {"B": task.source()})
    game.inputs = None if task.inputs is None else task.inputs.to(runtime.device)
    return game
