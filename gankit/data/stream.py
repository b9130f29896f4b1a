"""An endless, resumable stream of shuffled batches.

Each epoch's order is a permutation drawn from a generator seeded by (seed, epoch), so the stream's
whole state is two integers and resuming continues with exactly the batch that would have come next.
In a multi-process run every process draws the same permutation and global batches and keeps its
slice of each (``rank`` of ``world_size``): the union is the single-process batch, in any process count.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import DataLoader

from gankit.data.source import DataError, LazySource, Source, TensorSource


class BatchStream:
    def __init__(self, source: Source, batch_size: int, seed: int, device: torch.device,
                 num_workers: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if len(source) < batch_size:
            # a few batches per pass: the largest power of two up to half the data (36 images: 16)
            fits = 2 ** max(0, (len(source) // 2).bit_length() - 1)
            raise ValueError(f"the dataset has {len(source)} samples, fewer than one batch of {batch_size} "
                             f"(train.batch_size): lower it, e.g. --set train.batch_size={fits}")
        if batch_size % world_size:
            raise ValueError(f"{batch_size} is the global batch of {world_size} processes and must be divisible "
                             f"by {world_size}")
        self.rank, self.world_size = rank, world_size
        self.source = source.to(device) if isinstance(source, TensorSource) else source
        self.batch_size = batch_size
        self.seed = seed
        self.device = device
        self.num_workers = num_workers
        self.epoch = 0
        self.index = 0  # batches of the current epoch already consumed
        self._order: torch.Tensor | None = None
        self._loader: Iterator | None = None

    @property
    def batches_per_epoch(self) -> int:
        return len(self.source) // self.batch_size  # drop_last: every batch is full

    def _local(self, batch: torch.Tensor) -> torch.Tensor:
        """This process's slice of a global batch of indices."""
        if self.world_size == 1:
            return batch
        b = self.batch_size // self.world_size
        return batch[self.rank * b:(self.rank + 1) * b]

    def _permutation(self) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(len(self.source), generator=gen)

    def _start_epoch(self) -> None:
        order = self._permutation()
        if isinstance(self.source, TensorSource):
            self._order = order.to(self.device)
            self._loader = None
            return
        b = self.batch_size
        batches = [self._local(order[i * b:(i + 1) * b]).tolist()
                   for i in range(self.index, self.batches_per_epoch)]
        loader = DataLoader(self.source.dataset, batch_sampler=batches, num_workers=self.num_workers,
                            pin_memory=self.device.type == "cuda", persistent_workers=False)
        self._loader = iter(loader)

    def next(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.index >= self.batches_per_epoch:
            self.epoch += 1
            self.index = 0
            self._order = None
            self._loader = None
        if self._order is None and self._loader is None:
            self._start_epoch()
        if isinstance(self.source, TensorSource):
            b = self.batch_size
            x, y = self.source.batch(self._local(self._order[self.index * b:(self.index + 1) * b]))
        else:
            try:
                x, y = _split(next(self._loader))
            except DataError as exc:  # from a worker, its message is a whole traceback: keep the last line
                raise DataError(str(exc).strip().splitlines()[-1].split("DataError: ", 1)[-1]) from None
            x = x.to(self.device, non_blocking=True)
            y = None if y is None else y.to(self.device, non_blocking=True)
        self.index += 1
        return x, y

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index, "seed": self.seed, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
        self._order = None
        self._loader = None


def _split(batch: object) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(batch, (list, tuple)):
        return batch[0], (batch[1] if len(batch) > 1 else None)
    return batch, None  # type: ignore[return-value]


__all__ = ["BatchStream", "LazySource", "TensorSource"]
