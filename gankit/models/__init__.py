"""Networks: plain ``nn.Module``s registered by name; ``forward(z, y=None)`` / ``forward(x, y=None)``."""
from __future__ import annotations

import torch.nn as nn

from gankit.config import ConfigError, ModelConfig
from gankit.models import biggan, dcgan, mlp, resnet, stylegan, translation  # noqa: F401  (registers the models)
from gankit.models.capabilities import SelfRegularized, StyleBased
from gankit.models.init import init_weights
from gankit.models.pack import PackedDiscriminator, packed_shape
from gankit.models.registry import DISCRIMINATORS, GENERATORS, build_discriminator, build_generator


def build_models(cfg: ModelConfig, data_shape: tuple[int, ...], num_classes: int | None = None
                 ) -> tuple[nn.Module, nn.Module]:
    """G and D for data of ``data_shape`` (class-conditional on ``num_classes`` labels when given),
    initialised by ``cfg.init``."""
    g = build_generator(cfg.generator, cfg.latent_dim, data_shape, num_classes)
    if cfg.pack > 1 and num_classes is not None:
        raise ConfigError("config: model.pack > 1 cannot be combined with model.conditional (a pack mixes "
                          "samples of different classes)")
    d = build_discriminator(cfg.discriminator, packed_shape(tuple(data_shape), cfg.pack), num_classes)
    init_weights(g, cfg.init)
    init_weights(d, cfg.init)
    if cfg.pack > 1:
        d = PackedDiscriminator(d, cfg.pack)
    return g, d


__all__ = ["DISCRIMINATORS", "GENERATORS", "SelfRegularized", "StyleBased", "build_discriminator", "build_generator",
           "build_models", "init_weights"]
