"""gankit: train, sample and evaluate GANs with PyTorch, from one config-driven engine."""
from __future__ import annotations

from gankit.version import __version__
from gankit.config import Config, ConfigError
from gankit.metrics.api import calculate_metrics
from gankit.presets import load_config
from gankit.sampling import load_generator
from gankit.train import TrainResult, train

__all__ = ["Config", "ConfigError", "TrainResult", "__version__", "calculate_metrics", "load_config", "load_generator",
           "train"]
