"""LoadedGenerator in a module of its own: sampling, export, the Hub class and the rejection samplers all take
one, and ``gankit.sampling.load_generator`` builds it; none of them needs another to name its type."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from gankit.clustering import prior_rows
from gankit.config import Config
from gankit.data import to_uint8
from gankit.latents import check_memory, class_labels, finite_samples, generate, latents


@dataclass
class LoadedGenerator:
    """A generator rebuilt from a checkpoint, with what is needed to sample and decode it."""

    net: nn.Module
    config: Config
    data_shape: tuple[int, ...]
    step: int
    is_ema: bool
    num_classes: int | None = None  # set for a class-conditional generator
    prior: torch.Tensor | None = None  # a self-conditioned G's cluster shares (model.self_condition)

    @property
    def self_conditioned(self) -> bool:
        """Its labels are clusters of the training images, not the dataset's classes."""
        return self.prior is not None

    @property
    def latent_dim(self) -> int:
        return self.config.model.latent_dim

    @property
    def is_image(self) -> bool:
        return len(self.data_shape) == 3

    def labels(self, num: int, class_index: int | None = None, per_row: int = 1) -> torch.Tensor | None:
        """Labels of ``num`` samples: all ``class_index``, else :func:`class_labels` (None if unconditional)."""
        if self.num_classes is None:
            if class_index is not None:
                raise ValueError("this generator is not class-conditional; a class needs a run trained "
                                 "with model.conditional: true")
            return None
        if class_index is None:
            if self.prior is not None:  # clusters as often as the training data holds them
                return prior_rows(num, self.prior, per_row)
            return class_labels(num, self.num_classes, per_row)
        if not 0 <= class_index < self.num_classes:
            raise ValueError(f"class {class_index} out of range: this generator knows classes "
                             f"0..{self.num_classes - 1}")
        return torch.full((num,), class_index, dtype=torch.long)

    def sample(self, num: int, seed: int = 0, batch_size: int = 256,
               labels: torch.Tensor | int | None = None, truncation: float | None = None) -> torch.Tensor:
        """``num`` samples in the model's range (CPU); the same seed (and labels) gives the same samples.

        ``labels``: for a conditional G, one class for all samples (int) or one per sample (N,);
        default: cycling through the classes (sample i is class i % num_classes).
        ``truncation``: see :func:`truncated` (None = off)."""
        device = next(self.net.parameters()).device
        if labels is None or isinstance(labels, int):
            labels = self.labels(num, labels)
        elif self.num_classes is None:
            raise ValueError("this generator is not class-conditional; it takes no labels")
        elif labels.shape != (num,) or not 0 <= int(labels.min()) <= int(labels.max()) < self.num_classes:
            raise ValueError(f"labels must be {num} class indices in 0..{self.num_classes - 1}")
        check_memory(num, self.latent_dim + math.prod(self.data_shape), "samples")
        return finite_samples(generate(self.net, latents(num, self.latent_dim, seed, device), batch_size, labels,
                                       truncation=truncation))

    def to_uint8(self, samples: torch.Tensor) -> torch.Tensor:
        return to_uint8(samples, self.config.data.normalize)
