"""Small sparse models and graphs for the analysis tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn


def random_regular_bipartite(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """A random d-regular bipartite biadjacency (n x n): a union of d disjoint random perfect matchings."""
    b = np.zeros((n, n), dtype=bool)
    rows = np.arange(n)
    for _ in range(d):
        while True:
            perm = rng.permutation(n)
            if not b[rows, perm].any():
                break
        b[rows, perm] = True
    return b


def mask_model(model: nn.Module, density: float, seed: int = 0) -> nn.Module:
    """Give every conv / linear weight of ``model`` a random ``weight_mask`` buffer and zero the masked weights."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            mask = torch.rand(module.weight.shape, generator=generator) < density
            with torch.no_grad():
                module.weight.mul_(mask)
            module.register_buffer("weight_mask", mask)
    return model


@pytest.fixture
def small_sparse_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 24, 3), nn.Flatten(), nn.Linear(24, 40), nn.ReLU(), nn.Linear(40, 10)
    )
    return mask_model(model, 0.5)
