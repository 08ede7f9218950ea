"""Deterministic train/val/test splits.

Examples are independent (images): a seeded permutation holds out ``floor(fraction * n)``
of them. A byte stream is not (neighbouring blocks overlap in content): it is cut into
contiguous ``[train | val | test]`` ranges so no text is in two splits.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from sparseift._checks import check_fraction

__all__ = ["Split", "SPLITS", "holdout_split", "contiguous_ranges"]

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")


def holdout_split(n: int, fraction: float, seed: int, *, name: str = "fraction") -> tuple[Tensor, Tensor]:
    """Split ``range(n)`` into ``(kept, held_out)`` index tensors: ``held_out`` is the first
    ``floor(fraction * n)`` entries of ``torch.randperm(n)`` under a generator seeded with
    ``seed``; ``name`` is the argument named in errors. Both are sorted int64 tensors;
    together they cover ``range(n)`` exactly once."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    fraction = check_fraction(fraction, name, high_open=True)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    n_held = math.floor(fraction * n)
    return order[n_held:].sort().values, order[:n_held].sort().values


def contiguous_ranges(n: int, val_fraction: float, test_fraction: float) -> dict[Split, tuple[int, int]]:
    """``[start, stop)`` of each split of a stream of ``n`` items laid out as
    ``[train | val | test]``, with ``floor(fraction * n)`` items in val and in test."""
    val_fraction = check_fraction(val_fraction, "val_fraction", high_open=True)
    test_fraction = check_fraction(test_fraction, "test_fraction", high_open=True)
    if val_fraction + test_fraction >= 1:
        raise ValueError(f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}")
    n_val, n_test = math.floor(val_fraction * n), math.floor(test_fraction * n)
    n_train = n - n_val - n_test
    return {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, n)}
