"""What pix2pix and CycleGAN share as games: the settings they refuse, the task, one optimizer for the
generators and one for the discriminators, a batch stream per domain."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from gankit.config import Config, ConfigError
from gankit.data import TensorSource
from gankit.games.base import GameBase, Runtime, assemble, refuse
from gankit.models.registry import PATCH_DISCRIMINATORS, TRANSLATORS
from gankit.objectives import Objective, build_objective


# image-to-image models take channels, not the data's sizes
TRANSLATION_ROLES = (("generator", TRANSLATORS, 2), ("discriminator", PATCH_DISCRIMINATORS, 1))


def check_settings(cfg: Config) -> None:
    """What the translation games do not do (yet), refused before anything is built."""
    problems = {
        "train.d_steps": (cfg.train.d_steps != 1, "one D update per G update"),
        "train.ema_decay": (cfg.train.ema_decay > 0, "no EMA of the generators (set 0)"),
        "train.augment": (bool(cfg.train.augment), "no DiffAugment (set '')"),
        "eval.every": (cfg.eval.every > 0, "no in-training evaluation; measure the run with `gankit eval RUN`"),
        "data.normalize": (cfg.data.normalize != "symmetric", "images in [-1, 1] (tanh outputs): symmetric"),
        "perf.amp": (cfg.perf.amp not in ("auto", "fp32"), "float32 (auto resolves to fp32 for them)"),
        "perf.compile": (cfg.perf.compile, "eager networks (set false)"),
        "perf.sync_batchnorm": (cfg.perf.sync_batchnorm, "per-process BatchNorm (set false)"),
        "model.conditional": (cfg.model.conditional is True or cfg.model.self_condition > 0, "no class labels"),
        "model.pack": (cfg.model.pack != 1, "no packing (set 1)"),
        "optim.beta2_final": (cfg.optim.beta2_final is not None, "a constant Adam beta2 (set null)"),
        "objective.gamma_final": (cfg.objective.gamma_final != 1.0, "constant penalties (set 1)"),
    }
    refuse(cfg, problems)


def checked_task(cfg: Config, kind: type) -> Any:
    """The run's task, after the settings check; ``kind``: the task class the game trains on."""
    from gankit.translation.tasks import build_task

    check_settings(cfg)
    task = build_task(cfg)
    assert isinstance(task, kind)
    return task


def translation_game(cls: type, cfg: Config, runtime: Runtime, task: Any, nets: dict[str, nn.Module],
                     g_names: tuple[str, ...], d_names: tuple[str, ...], sources: dict[str, TensorSource]) -> Any:
    """A translation game ``cls`` on ``task``: one optimizer over the generators, one over the discriminators."""
    return assemble(cls, cfg, runtime, nets, (g_names, d_names), sources, task.origin,
                    objective=build_objective(cfg.objective), task=task)


@dataclass
class TranslationGame(GameBase):
    """What pix2pix and CycleGAN share: the task (gankit.translation.tasks), the objective, the checkpoint's
    task description; train.threads null: PyTorch's default (the loop's thread tuner times noise -> image
    nets only)."""

    task: Any = None  # PairedTask or UnpairedTask

    def meta(self) -> dict[str, Any]:
        from gankit.translation.tasks import task_meta

        return {**super().meta(), "task": task_meta(self.task)}

    def stream_next(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        x, index = self.data.streams[name].next()
        assert index is not None
        return x, index
