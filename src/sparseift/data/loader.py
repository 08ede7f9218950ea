"""A fast batch loader for in-memory datasets, shuffled by a seeded generator and sharded
across data-parallel ranks exactly as :class:`torch.utils.data.DistributedSampler` does.

For small datasets held as tensors, gathering a whole batch with one indexing op is much
faster than a :class:`~torch.utils.data.DataLoader` collating single examples (no workers,
no per-example Python). Datasets with a ``batch(indices)`` method (:class:`TensorPairDataset`,
:class:`ByteBlockDataset`) are gathered that way; any other map-style dataset is collated
example by example with ``default_collate``.

The order of an epoch is a pure function of ``(seed, epoch)``, so a resumed run continues
bit-exactly from ``epoch_batches(epoch, start_batch)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from sparseift._checks import check_positive_int

__all__ = ["BatchLoader", "shard_indices"]


def shard_indices(
    n: int, *, rank: int = 0, world_size: int = 1, shuffle: bool = True, seed: int = 0, epoch: int = 0,
    drop_last: bool = False,
) -> Tensor:
    """The example indices of ``rank`` for one epoch, the same as ``DistributedSampler(dataset,
    world_size, rank, shuffle, seed, drop_last)`` after ``set_epoch(epoch)``: a permutation
    seeded with ``seed + epoch`` (or ``range(n)``), padded by repeating its start to a multiple
    of ``world_size`` (or truncated when ``drop_last``), then every ``world_size``-th entry
    from ``rank``."""
    world_size = check_positive_int("world_size", world_size)
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must lie in [0, {world_size}), got {rank}")
    if shuffle:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
    else:
        order = torch.arange(n)
    if drop_last:
        total = (n // world_size) * world_size
        order = order[:total]
    else:
        total = math.ceil(n / world_size) * world_size
        if n > 0:
            order = order.repeat(math.ceil(total / n))[:total]
    return order[rank:total:world_size]


class BatchLoader:
    """Shuffled (or ordered) batches of this rank's shard of ``dataset``.

    ``drop_last`` drops both the shard tail that does not divide by ``world_size`` (as
    ``DistributedSampler(drop_last=True)``; otherwise shards are padded with repeated
    examples so all ranks take the same number of steps) and the last incomplete batch.
    With ``device``, an in-memory dataset (one with ``to``) is moved there once; other
    datasets have each batch moved there.
    """

    def __init__(
        self,
        dataset: Dataset[Any],
        batch_size: int,
        *,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str | None = None,
    ) -> None:
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.world_size = check_positive_int("world_size", world_size)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in [0, {world_size}), got {rank}")
        self.device = None if device is None else torch.device(device)
        movable = self.device is not None and hasattr(dataset, "to")
        self.dataset = dataset.to(self.device) if movable else dataset
        self.shuffle, self.drop_last, self.seed, self.rank = shuffle, drop_last, seed, rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order ``iter(loader)`` yields (as ``DistributedSampler``)."""
        self.epoch = epoch

    def indices(self, epoch: int) -> Tensor:
        """This rank's example indices for ``epoch``, in the order they are batched."""
        return shard_indices(
            len(self.dataset), rank=self.rank, world_size=self.world_size, shuffle=self.shuffle,
            seed=self.seed, epoch=epoch, drop_last=self.drop_last,
        )

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        n = len(self.dataset)
        if self.drop_last:
            return (n // self.world_size) // self.batch_size
        return math.ceil(math.ceil(n / self.world_size) / self.batch_size)

    def __iter__(self) -> Iterator[Any]:
        return self.epoch_batches(self.epoch)

    def epoch_batches(self, epoch: int, start_batch: int = 0) -> Iterator[Any]:
        """The batches of ``epoch`` from batch number ``start_batch`` on (to resume mid-epoch)."""
        order = self.indices(epoch)
        gather = getattr(self.dataset, "batch", None)
        if gather is not None:
            order = order.to(getattr(self.dataset, "device", "cpu"))
        for number in range(start_batch, len(self)):
            chunk = order[number * self.batch_size : (number + 1) * self.batch_size]
            if gather is not None:
                batch = gather(chunk)
            else:
                batch = default_collate([self.dataset[i] for i in chunk.tolist()])
            yield batch if self.device is None else _to_device(batch, self.device)


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    return type(batch)(_to_device(item, device) for item in batch)
