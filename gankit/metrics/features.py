"""Feature extractors (a registry): map uint8 images to feature vectors (and class logits when known)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from gankit.metrics.classifier import DigitCNN
from gankit.registry import Registry


@dataclass
class FeatureExtractor:
    """``extract(images)`` takes uint8 (N, C, H, W) and returns (features (N, D), logits (N, K) or None)."""

    name: str
    version: int
    net: nn.Module
    resolution: int
    channels: int
    info: dict

    @torch.no_grad()
    def extract(self, images: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
        feats, logits = [], []
        for chunk in images.split(batch_size):
            x = _fit(chunk, self.resolution, self.channels)
            f = self.net.features(x)
            feats.append(f)
            logits.append(self.net.head(f))
        return torch.cat(feats).double(), torch.cat(logits)


def _fit(images: torch.Tensor, resolution: int, channels: int) -> torch.Tensor:
    x = images.float().div(255)
    if x.shape[1] != channels:
        x = x.mean(1, keepdim=True) if channels == 1 else x.expand(-1, channels, -1, -1)
    if x.shape[-1] != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
    return x


FEATURES: Registry[Callable[[], FeatureExtractor]] = Registry("feature extractor")


@FEATURES.register("mnist-cnn")
@lru_cache(maxsize=1)
def mnist_cnn() -> FeatureExtractor:
    """The shipped digit classifier (gankit/assets/mnist_cnn.safetensors), 128-d features."""
    from safetensors import safe_open
    from safetensors.torch import load

    ref = resources.files("gankit.assets").joinpath("mnist_cnn.safetensors")
    raw = ref.read_bytes()
    net = DigitCNN()
    net.load_state_dict(load(raw))
    net.eval()
    with resources.as_file(ref) as path, safe_open(str(path), "pt") as fh:
        info = json.loads(fh.metadata()["info"])
    return FeatureExtractor("mnist-cnn", int(info["version"]), net, 28, 1, info)


def get_extractor(name: str) -> FeatureExtractor:
    return FEATURES.get(name)()
