"""GAN objectives: the one place where variants differ. The training loop only calls
``discriminator_loss`` and ``generator_loss``; losses take logits, so D never ends in a sigmoid.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from gankit.config import ConfigError, ObjectiveConfig
from gankit.registry import Registry

Stats = dict[str, torch.Tensor]


def bce_logits(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Binary cross-entropy against a constant target, stable for any logit."""
    if target == 1.0:
        return F.softplus(-logits).mean()
    if target == 0.0:
        return F.softplus(logits).mean()
    return (target * F.softplus(-logits) + (1 - target) * F.softplus(logits)).mean()


class Objective:
    """Base: instance noise and one-sided label smoothing; subclasses define the loss terms."""

    logistic_d = True  # D's logits are log-odds, so sigmoid(D) is the probability of "real"

    def __init__(self, cfg: ObjectiveConfig) -> None:
        self.cfg = cfg

    # -- loss terms on logits, overridden by each objective
    def d_terms(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_term(self, fake_logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # -- shared machinery
    def noise_std(self, step: int, total_steps: int) -> float:
        """Instance noise std, annealed linearly from ``instance_noise`` to 0."""
        if self.cfg.instance_noise <= 0:
            return 0.0
        horizon = self.cfg.instance_noise_steps or max(total_steps, 1)
        return self.cfg.instance_noise * max(0.0, 1.0 - step / horizon)

    @staticmethod
    def _perturb(x: torch.Tensor, std: float, gen: torch.Generator | None) -> torch.Tensor:
        if std <= 0:
            return x
        return x + std * torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)

    def discriminator_loss(self, d: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                           y: torch.Tensor | None = None, noise_std: float = 0.0,
                           gen: torch.Generator | None = None) -> tuple[torch.Tensor, Stats]:
        real_logits = d(self._perturb(real, noise_std, gen), y)
        fake_logits = d(self._perturb(fake, noise_std, gen), y)
        loss = self.d_terms(real_logits, fake_logits)
        return loss, {"loss_d": loss.detach(), "d_real": torch.sigmoid(real_logits.detach()).mean(),
                      "d_fake": torch.sigmoid(fake_logits.detach()).mean()}

    def generator_loss(self, d: nn.Module, fake: torch.Tensor, y: torch.Tensor | None = None,
                       noise_std: float = 0.0, gen: torch.Generator | None = None
                       ) -> tuple[torch.Tensor, Stats]:
        loss = self.g_term(d(self._perturb(fake, noise_std, gen), y))
        return loss, {"loss_g": loss.detach()}


OBJECTIVES: Registry[type[Objective]] = Registry("objective")


@OBJECTIVES.register("ns")
class NonSaturating(Objective):
    """Goodfellow et al.'s practical variant: G maximises log D(G(z)), strong gradients early on."""

    def d_terms(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return bce_logits(real_logits, 1.0 - self.cfg.label_smoothing) + bce_logits(fake_logits, 0.0)

    def g_term(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return bce_logits(fake_logits, 1.0)


@OBJECTIVES.register("minimax")
class Minimax(NonSaturating):
    """The original saturating game: G minimises log(1 - D(G(z))); weak gradients when D wins."""

    def g_term(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return -bce_logits(fake_logits, 0.0)


def build_objective(cfg: ObjectiveConfig) -> Objective:
    try:
        return OBJECTIVES.get(cfg.name)(cfg)
    except KeyError as exc:
        raise ConfigError(f"config: objective.name: {exc.args[0]}") from None
