"""gankit: train, sample and evaluate GANs with PyTorch, from one config-driven engine."""
from __future__ import annotations

__version__ = "0.1.0"

from gankit.config import Config, ConfigError  # noqa: E402
from gankit.metrics.api import calculate_metrics  # noqa: E402
from gankit.presets import load_config  # noqa: E402
from gankit.sampling import load_generator  # noqa: E402
from gankit.train import TrainResult, train  # noqa: E402

__all__ = ["Config", "ConfigError", "TrainResult", "__version__", "calculate_metrics", "load_config", "load_generator",
           "train"]
