"""In-training evaluation: every ``eval.every`` steps, measure a modest number of samples of the
sampling generator with the same code as ``gankit eval``, so numbers during and after training agree."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from gankit import streams
from gankit.config import Config, ConfigError
from gankit.data import to_uint8
from gankit.sampling import generate, latents

if TYPE_CHECKING:
    from gankit.games.noise_to_image import NoiseToImage as Trainer


@dataclass
class TrainingEvaluator:
    cfg: Config
    trainer: "Trainer"
    z: torch.Tensor

    @classmethod
    def build(cls, cfg: Config, trainer: "Trainer") -> "TrainingEvaluator":
        """Validates the metric names up front, so a typo fails before anything is written."""
        from gankit.metrics.api import METRICS

        for name in cfg.eval.metrics:
            if name not in METRICS:
                from gankit.registry import unknown_name_message

                raise ConfigError(f"config: eval.metrics: {unknown_name_message('metric', name, METRICS.names())}")
        z = latents(cfg.eval.num, cfg.model.latent_dim, cfg.train.seed + streams.EVALUATION, trainer.device)
        return cls(cfg, trainer, z)

    def evaluate(self, step: int) -> dict[str, float]:
        """Scalar results (``fid``, ``class_coverage`` = share of classes present, ...) of the current sampler."""
        from gankit.metrics.api import calculate_metrics

        labels = self.trainer.labels(len(self.z))  # a conditional G: balanced classes (clusters: their shares)
        samples = generate(self.trainer.sampling_net(), self.z, labels=labels)
        if self.trainer.clusters is not None:
            labels = None  # cluster ids, not the dataset's classes: nothing for class_agreement to check
        if self.trainer.source.is_image:
            samples = to_uint8(samples, self.cfg.data.normalize)
        ev = self.cfg.eval
        result = calculate_metrics(samples, ev.reference or self.cfg.data.name, metrics=tuple(ev.metrics),
                                   num=len(samples), extractor=ev.extractor, root=self.cfg.data.root,
                                   seed=self.cfg.train.seed, labels=labels)
        return scalars(result)


def scalars(result: dict[str, Any]) -> dict[str, float]:
    """The finite-or-not float leaves of a metrics result, flattened (``kid.mean`` -> ``kid_mean``)."""
    out: dict[str, float] = {}
    for key, value in result.items():
        if key == "info":
            continue
        if isinstance(value, dict):
            out.update({f"{key}_{k}": float(v) for k, v in value.items() if isinstance(v, (int, float))})
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    if "classes_present" in out and out.get("num_classes"):
        out["class_coverage"] = out["classes_present"] / out["num_classes"]
    return {k: v for k, v in out.items() if not math.isnan(v)}
