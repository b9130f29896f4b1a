"""The dataset registry: ``data.name`` -> a loader taking the data config."""
from __future__ import annotations

from typing import Callable

from gankit.config import DataConfig
from gankit.data.source import Source
from gankit.registry import Registry

DatasetLoader = Callable[[DataConfig], Source]
DATASETS: Registry[DatasetLoader] = Registry("dataset")
