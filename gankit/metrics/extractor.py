"""What every feature extractor is: a network mapping samples to feature vectors (and to class logits
when it is a classifier), named by the exact weights it holds. Apart from the registry of extractors
(features.py) so that the extractors defined elsewhere (inception.py) need not import the registry."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn as nn

from gankit.metrics.errors import EvalError


@dataclass
class FeatureExtractor:
    """``extract(samples)`` -> (features (N, D) float64, logits (N, K) or None), on the CPU.

    ``net.features`` maps a prepared batch to features; ``net.head`` maps features to logits when
    ``num_classes`` is set. ``key`` names the exact weights (reference caches are keyed by it).
    """

    name: str
    version: int
    key: str
    net: nn.Module
    prepare: Callable[[torch.Tensor], torch.Tensor]
    num_classes: int | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def has_logits(self) -> bool:
        return self.num_classes is not None

    @torch.no_grad()
    def extract(self, samples: torch.Tensor, batch_size: int = 250, device: str | torch.device = "cpu"
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        net = self.net.to(device).eval()
        feats, logits = [], []
        for chunk in samples.split(batch_size):
            f = net.features(self.prepare(chunk.to(device)))
            feats.append(f.cpu())
            if self.has_logits:
                logits.append(net.head(f).cpu())
        if not feats:
            raise EvalError("no samples to extract features from")
        return torch.cat(feats).double(), (torch.cat(logits) if self.has_logits else None)
