"""In-memory datasets: labelled arrays read from disk and tensor pairs gathered by index."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["LabelledArrays", "TensorPairDataset"]


@dataclass(frozen=True)
class LabelledArrays:
    """Inputs and integer labels as read from disk, and the path they were read from."""

    inputs: np.ndarray
    labels: np.ndarray
    source: Path


class TensorPairDataset(Dataset[tuple[Tensor, Tensor]]):
    """Inputs and targets held as tensors (first dimension = examples). ``batch(indices)``
    gathers a whole batch with one indexing op, on whatever device the tensors live."""

    def __init__(self, inputs: Tensor, targets: Tensor) -> None:
        if inputs.shape[0] != targets.shape[0]:
            raise ValueError(
                "inputs and targets must hold the same number of examples, "
                f"got {inputs.shape[0]} and {targets.shape[0]}"
            )
        if inputs.device != targets.device:
            raise ValueError(f"inputs and targets must be on one device, got {inputs.device} and {targets.device}")
        self.inputs = inputs
        self.targets = targets

    @classmethod
    def from_arrays(cls, arrays: LabelledArrays) -> TensorPairDataset:
        """Wrap labelled numpy arrays (no copy); labels become int64."""
        inputs = torch.from_numpy(np.ascontiguousarray(arrays.inputs))
        return cls(inputs, torch.from_numpy(arrays.labels.astype(np.int64)))

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.inputs[index], self.targets[index]

    @property
    def device(self) -> torch.device:
        """The device the tensors live on."""
        return self.inputs.device

    def batch(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        """The examples at ``indices`` (a 1-D integer tensor on :attr:`device`)."""
        return self.inputs[indices], self.targets[indices]

    def subset(self, indices: Tensor) -> TensorPairDataset:
        """A new dataset holding copies of the examples at ``indices``."""
        return TensorPairDataset(self.inputs[indices], self.targets[indices])

    def to(self, device: torch.device | str) -> TensorPairDataset:
        """The same examples on ``device`` (``self`` when already there)."""
        device = torch.device(device)
        if self.inputs.device == device:
            return self
        return TensorPairDataset(self.inputs.to(device), self.targets.to(device))
