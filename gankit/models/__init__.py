"""Networks: plain ``nn.Module``s registered by name; ``forward(z, y=None)`` / ``forward(x, y=None)``."""
from __future__ import annotations

import torch.nn as nn

from gankit.config import ModelConfig
from gankit.models import dcgan, mlp  # noqa: F401  (registers the models)
from gankit.models.init import init_weights
from gankit.models.registry import DISCRIMINATORS, GENERATORS, build_discriminator, build_generator


def build_models(cfg: ModelConfig, data_shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    """G and D for data of ``data_shape``, initialised by ``cfg.init``."""
    g = build_generator(cfg.generator, cfg.latent_dim, data_shape)
    d = build_discriminator(cfg.discriminator, data_shape)
    init_weights(g, cfg.init)
    init_weights(d, cfg.init)
    return g, d


__all__ = ["DISCRIMINATORS", "GENERATORS", "build_discriminator", "build_generator", "build_models",
           "init_weights"]
