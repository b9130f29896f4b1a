"""Datasets (a registry selected by ``data.name``) and the resumable batch stream."""
from __future__ import annotations

from gankit.config import ConfigError, DataConfig
from gankit.data import bundled, folder, stacked, toy2d, vision  # noqa: F401  (registers the datasets)
from gankit.data.registry import DATASETS
from gankit.data.source import DataError, LazySource, Source, TensorSource, to_model_range, to_uint8
from gankit.data.stream import BatchStream


def build_dataset(cfg: DataConfig) -> Source:
    """Load the dataset named by ``cfg.name``; unknown names and missing files raise clear errors."""
    try:
        loader = DATASETS.get(cfg.name)
    except KeyError as exc:
        raise ConfigError(f"config: data.name: {exc.args[0]}") from None
    return loader(cfg)


__all__ = ["BatchStream", "DATASETS", "DataError", "LazySource", "Source", "TensorSource",
           "build_dataset", "to_model_range", "to_uint8"]
