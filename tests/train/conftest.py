"""A synthetic dataset and tiny models, registered once, so training tests run in seconds."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparseift.data import Augmentation, DataSplit, TensorPairDataset
from sparseift.data.registry import register_dataset
from sparseift.models import register_model


def _blobs(n: int, seed: int) -> TensorPairDataset:
    """10 classes of 1x8x8 uint8 images: a class-specific bright square on noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    images = torch.randint(0, 80, (n, 1, 8, 8), generator=g)
    for c in range(10):
        r, col = divmod(c, 4)
        images[labels == c, :, 2 * r : 2 * r + 2, 2 * col : 2 * col + 2] += 150
    return TensorPairDataset(images.to(torch.uint8), labels)


@register_dataset("test_blobs", "synthetic 8x8 blobs for tests")
def test_blobs(split: str, data_dir: object = None, n: int = 512) -> DataSplit:
    dataset = _blobs(n if split == "train" else n // 4, {"train": 0, "val": 1, "test": 2}[split])
    return DataSplit(
        "test_blobs", split, "classification", dataset, 10, (1, 8, 8), (0.3,), (0.3,), Augmentation(1, False), "memory"
    )


@register_model("test_cnn", lambda batch: torch.randn(batch, 1, 8, 8), "tiny CNN for tests")
def test_cnn(width: int = 8, batchnorm: bool = True) -> nn.Module:
    norm = (lambda c: nn.BatchNorm2d(c)) if batchnorm else (lambda c: nn.Identity())
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), norm(width), nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1), norm(width), nn.ReLU(),
        nn.Conv2d(width, width, 3, stride=2, padding=1), norm(width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10),
    )  # fmt: skip


@pytest.fixture
def tiny_config(tmp_path):  # noqa: ANN001, ANN201
    """A RunConfig dict for a few-second sparse run on test_blobs."""
    return {
        "name": "tiny",
        "model": {"name": "test_cnn", "kwargs": {"width": 8}},
        "transform": {"family": "wide", "sparsity": 0.75},
        "sparsity": {"method": "rigl", "delta_t": 3, "end_fraction": 0.75},
        "data": {"name": "test_blobs", "batch_size": 32, "eval_batch_size": 128},
        "optim": {"name": "sgd", "lr": 0.05, "weight_decay": 5e-4},
        "schedule": {"name": "cosine"},
        "train": {"epochs": 1, "out_dir": str(tmp_path / "runs"), "log_every": 4, "progress": False, "seed": 0,
                  "threads": 1},
    }
