"""The dataset registry: ``data.name`` -> a loader taking the data config, and beside it what evaluation
needs to know about each dataset (its splits, held-out part and default feature extractor)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from gankit.config import DataConfig
from gankit.data.source import Source
from gankit.registry import Registry

DatasetLoader = Callable[[DataConfig], Source]
DATASETS: Registry[DatasetLoader] = Registry("dataset")


@dataclass(frozen=True)
class DatasetFacts:
    """What metrics and translation read about a dataset; each dataset module registers its own."""

    splits: tuple[str, ...] = ("train",)  # the splits reference data can be drawn from
    holdout: int = 0  # the last N of ``train`` (in its fixed order) that the shipped extractor never trained on
    extractor: str = "inception"  # the feature space it is measured in unless told otherwise


_FACTS: dict[str, DatasetFacts] = {}


def register_facts(name: str, facts: DatasetFacts) -> None:
    if name in _FACTS:
        raise ValueError(f"dataset facts of {name!r} are already registered")
    _FACTS[name] = facts


def dataset_facts(name: str) -> DatasetFacts:
    """The registered facts of ``name``; the defaults for a dataset that registered none (folders, plugins)."""
    return _FACTS.get(name, DatasetFacts())


def dataset_splits(dataset: str) -> tuple[str, ...]:
    """The splits ``reference_images`` knows for ``dataset``."""
    return dataset_facts(dataset).splits


def default_extractor(dataset: str) -> str:
    """The feature space a dataset is measured in unless told otherwise."""
    return dataset_facts(dataset).extractor


def is_points_dataset(dataset: str) -> bool:
    """2D mixtures are measured on the points themselves."""
    return default_extractor(dataset) == "points"
