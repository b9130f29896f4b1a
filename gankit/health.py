"""Training-health alarms: a winning discriminator, mode collapse, divergence.

Each alarm fires once when its condition has held for ``patience`` consecutive checks, tells the user
what to try, and re-arms when the condition clears. The checks read numbers the loop already has
(windowed D outputs, a diversity ratio, the class coverage of an evaluation), so they cost nothing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from gankit.config import HealthConfig

SUGGESTIONS = {
    "d_wins": "D rejects every fake: lower optim.lr_d, add objective.label_smoothing (0.1) or "
              "objective.instance_noise (0.1), or use the non-saturating loss (objective.name: ns)",
    "collapse": "G produces near-identical samples: lower the learning rates, raise train.batch_size, "
                "or add instance noise / label smoothing; resume from an earlier checkpoint",
    "coverage": "some classes vanished from the samples (partial collapse): lower the learning rates, "
                "raise train.batch_size, or keep the best checkpoint (eval.keep_best) and resume from it",
    "diverged": "losses became NaN/Inf: rolled back to the last good checkpoint with lower learning rates",
}


@dataclass
class Alarm:
    kind: str
    step: int
    message: str

    @property
    def suggestion(self) -> str:
        return SUGGESTIONS[self.kind]

    def text(self) -> str:
        return f"gankit: alarm [{self.kind}] at step {self.step}: {self.message}. Try: {self.suggestion}"

    def to_dict(self) -> dict[str, object]:
        return {"step": self.step, "alarm": self.kind, "message": self.message, "suggestion": self.suggestion}


@dataclass
class HealthMonitor:
    """Turns per-interval observations into alarms; ``observe`` returns the alarms that fire now."""

    cfg: HealthConfig
    logistic_d: bool = True  # D(G(z)) is a probability only for the logistic losses
    _streak: dict[str, int] = field(default_factory=dict)
    _active: set[str] = field(default_factory=set)

    def observe(self, step: int, *, d_fake: float | None = None, diversity: float | None = None,
                coverage: float | None = None) -> list[Alarm]:
        if not self.cfg.alarms:
            return []
        fired = []
        if d_fake is not None and self.logistic_d:
            fired += self._check("d_wins", d_fake < self.cfg.d_wins_below, step,
                                 f"mean D(G(z)) = {d_fake:.4f} < {self.cfg.d_wins_below} "
                                 f"for {self.cfg.patience} log intervals")
        if diversity is not None:
            fired += self._check("collapse", diversity < self.cfg.diversity_below, step,
                                 f"sample diversity is {diversity:.3f} of the real data's "
                                 f"(< {self.cfg.diversity_below})")
        if coverage is not None:  # evaluations are rare: two bad ones in a row are enough
            fired += self._check("coverage", coverage < self.cfg.coverage_below, step,
                                 f"only {coverage:.0%} of the classes appear in the evaluation samples",
                                 patience=2)
        return fired

    def diverged(self, step: int, rollback_to: int, lr_scale: float) -> Alarm:
        return Alarm("diverged", step, f"non-finite loss or weights; resumed from step {rollback_to} with learning rates "
                     f"x{lr_scale:g} of the configured ones")

    def _check(self, kind: str, condition: bool, step: int, message: str,
               patience: int | None = None) -> list[Alarm]:
        if not condition:
            self._streak[kind] = 0
            self._active.discard(kind)
            return []
        self._streak[kind] = self._streak.get(kind, 0) + 1
        if self._streak[kind] >= (patience or self.cfg.patience) and kind not in self._active:
            self._active.add(kind)
            return [Alarm(kind, step, message)]
        return []


def nearest_neighbour_spread(x: torch.Tensor) -> float:
    """Median distance from each sample (row) to its nearest other one.

    The per-feature std stays high when G draws only a few distinct images (two digits differ in many
    pixels), so it misses collapse onto a handful of modes; near-duplicates make this distance ~0.
    """
    flat = x.flatten(1).float()
    dist = torch.cdist(flat, flat)
    dist.fill_diagonal_(math.inf)
    return float(dist.min(1).values.median())


def finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)
