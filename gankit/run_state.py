"""What the training loop owns about a run, whatever the game: where it is, how fast it may learn, what it has
survived. Checkpoints keep it in their metadata under the same keys older gankit versions wrote, so their
runs resume."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass
class RunState:
    step: int = 0  # generator updates done
    images_seen: int = 0  # real images the discriminators have judged (kimg in the logs)
    lr_scale: float = 1.0  # lowered by divergence rollbacks
    rollbacks: int = 0
    best_fid: float = math.inf  # eval.keep_best: the FID of checkpoints/best.safetensors
    total: int | None = None  # the run's length in steps, the horizon of the schedules (None: open-ended)
    noise_horizon: int | None = None  # steps over which instance noise anneals, fixed when the run began
    threads: int | None = None  # the CPU thread count a resumed checkpoint trained with

    @property
    def noise_steps(self) -> int:
        """The instance-noise schedule's length: the one the run began with, else the run's."""
        return self.noise_horizon or self.total or 0

    def meta(self) -> dict[str, Any]:
        return {"step": self.step, "images_seen": self.images_seen, "lr_scale": self.lr_scale,
                "rollbacks": self.rollbacks, "noise_horizon": self.noise_horizon,
                "best_fid": None if math.isinf(self.best_fid) else self.best_fid}

    def restore(self, meta: dict[str, Any]) -> None:
        """Continue from a checkpoint's metadata (``total`` stays this run's)."""
        self.step, self.images_seen = int(meta["step"]), int(meta["images_seen"])
        self.rollbacks = int(meta.get("rollbacks", 0))
        self.lr_scale = float(meta.get("lr_scale", 1.0))
        self.best_fid = math.inf if meta.get("best_fid") is None else float(meta["best_fid"])
        # older checkpoints: the horizon was the train.steps they were written under
        self.noise_horizon = meta.get("noise_horizon") or meta["config"]["train"].get("steps")
        self.threads = meta.get("threads")
