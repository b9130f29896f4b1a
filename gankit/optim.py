"""Optimizers and learning-rate schedules, selected by name in ``optim``.

A schedule is a pure function of (step, total steps), never an object with state: the loop sets the
learning rates from the step before every update, so a resumed run follows exactly the same rates.
"""
from __future__ import annotations

import math

from typing import Callable, Iterable

import torch

from gankit.config import ConfigError, OptimConfig
from gankit.registry import Registry

Factory = Callable[[Iterable[torch.nn.Parameter], float, list[float], OptimConfig], torch.optim.Optimizer]
OPTIMIZERS: Registry[Factory] = Registry("optimizer")
# torch picks the per-tensor loop on CPU; the multi-tensor (foreach) one gives bitwise the same update in
# fewer Python calls, which a small model's step is bound by (benchmarks/optimizer_path.py: 1.08x the G
# steps/s of the playground's 3 x 64 MLP GAN, 1.03x of the default DCGAN, on one core).
FOREACH = True
SCHEDULES: Registry[Callable[[int, int | None], float]] = Registry("schedule")


@OPTIMIZERS.register("adam")
def adam(params: Iterable[torch.nn.Parameter], lr: float, betas: list[float], o: OptimConfig
         ) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr, betas=(betas[0], betas[1]), eps=o.eps, weight_decay=o.weight_decay,
                            foreach=FOREACH)


@OPTIMIZERS.register("rmsprop")
def rmsprop(params: Iterable[torch.nn.Parameter], lr: float, betas: list[float], o: OptimConfig
            ) -> torch.optim.Optimizer:
    """RMSprop as in the WGAN paper (lr 5e-5): no momentum on a non-stationary critic loss by default."""
    return torch.optim.RMSprop(params, lr=lr, alpha=o.alpha, eps=o.eps, momentum=o.momentum,
                               weight_decay=o.weight_decay, foreach=FOREACH)


@OPTIMIZERS.register("sgd")
def sgd(params: Iterable[torch.nn.Parameter], lr: float, betas: list[float], o: OptimConfig
        ) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=o.momentum, weight_decay=o.weight_decay, foreach=FOREACH)


@SCHEDULES.register("constant")
def constant(step: int, total: int | None) -> float:
    return 1.0


@SCHEDULES.register("linear")
def linear(step: int, total: int | None) -> float:
    """1 at step 0, falling linearly to 0 at ``total`` (the last update still has 1 / total)."""
    if not total:
        raise ConfigError("config: optim.schedule linear decays to 0 at the last step: "
                          "set train.steps or train.epochs")
    return max(0.0, 1.0 - step / total)


@SCHEDULES.register("hold-linear")
def hold_linear(step: int, total: int | None) -> float:
    """CycleGAN's: 1 for the first half of the run, then linearly to 0 at ``total``."""
    if not total:
        raise ConfigError("config: optim.schedule hold-linear decays to 0 at the last step: "
                          "set train.steps or train.epochs")
    half = total / 2
    return min(1.0, max(0.0, (total - step) / max(total - half, 1e-9)))


@SCHEDULES.register("cosine")
def cosine(step: int, total: int | None) -> float:
    """1 at step 0, falling along half a cosine to 0 at ``total`` (R3GAN's schedules)."""
    if not total:
        raise ConfigError("config: optim.schedule cosine decays to its end at the last step: "
                          "set train.steps or train.epochs")
    return cosine_ramp(1.0, 0.0, step, total)


def cosine_ramp(start: float, end: float, step: int, total: int) -> float:
    """From ``start`` at step 0 to ``end`` at ``total`` (and after) along half a cosine."""
    t = min(max(step / total, 0.0), 1.0)
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * t))


def set_beta2(cfg: OptimConfig, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer, step: int,
              total: int) -> None:
    """optim.beta2_final: Adam's beta2 of both optimizers along a cosine from betas_g[1] / betas_d[1]."""
    for opt, betas in ((opt_g, cfg.betas_g), (opt_d, cfg.betas_d)):
        beta2 = cosine_ramp(betas[1], cfg.beta2_final, step, total)
        for group in opt.param_groups:
            group["betas"] = (betas[0], beta2)


def build_optimizers(cfg: OptimConfig, g: torch.nn.Module, d: torch.nn.Module
                     ) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """(G's, D's) optimizer as ``cfg.name`` says; an unknown name is a ConfigError."""
    try:
        factory = OPTIMIZERS.get(cfg.name)
    except KeyError as exc:
        raise ConfigError(f"config: optim.name: {exc.args[0]}") from None
    return factory(g.parameters(), cfg.lr_g, cfg.betas_g, cfg), factory(d.parameters(), cfg.lr_d, cfg.betas_d, cfg)


def set_learning_rates(cfg: OptimConfig, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
                       factor: float) -> None:
    """Both optimizers' learning rates = the configured ones x ``factor`` (rollback scale x schedule)."""
    for opt, lr in ((opt_g, cfg.lr_g), (opt_d, cfg.lr_d)):
        for group in opt.param_groups:
            group["lr"] = lr * factor


def lr_factor(cfg: OptimConfig, step: int, total: int | None) -> float:
    """The schedule's multiplier of the configured learning rates at generator step ``step``: from 1 to
    ``optim.lr_final`` as the schedule's shape goes from 1 to 0."""
    try:
        schedule = SCHEDULES.get(cfg.schedule)
    except KeyError as exc:
        raise ConfigError(f"config: optim.schedule: {exc.args[0]}") from None
    shape = schedule(step, total)
    return shape if cfg.lr_final == 0.0 else cfg.lr_final + (1.0 - cfg.lr_final) * shape
