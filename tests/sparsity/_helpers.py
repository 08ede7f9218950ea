"""Small nets, data and invariant checks shared by the sparsity tests."""

from __future__ import annotations

import torch
from torch import nn

from sparseift.sparsity import Sparsifier, get_masks


def small_cnn() -> nn.Module:
    """conv(3->8) conv(8->16) conv(16->16) linear(256->32) linear(32->10): three sparse
    layers by default (first and last stay dense)."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, stride=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 32), nn.ReLU(), nn.Linear(32, 10),
    )


def batch(step: int, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """A deterministic batch for ``step`` (independent of the global RNG)."""
    g = torch.Generator().manual_seed(1000 + step)
    return torch.randn(size, 3, 8, 8, generator=g), torch.randint(0, 10, (size,), generator=g)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, sparsifier: Sparsifier, step: int) -> None:
    x, y = batch(step)
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
    sparsifier.step()


def assert_invariants(model: nn.Module, optimizer: torch.optim.Optimizer | None, sparsifier: Sparsifier) -> None:
    """Masked entries exactly 0 in weights, grads and optimizer state; exact active counts."""
    from sparseift.flops import active_count

    masks = get_masks(model)
    assert set(masks) == set(sparsifier.targets)
    planned = sparsifier.planned_sparsities(max([0, *[u for u in sparsifier._update_steps() if u <= sparsifier.step_count]]))
    for name, mask in masks.items():
        param = model.get_parameter(name)
        assert mask.dtype == torch.bool
        if sparsifier.structure is None:
            assert int(mask.sum()) == active_count(mask.numel(), planned[name]), name
        assert torch.all(param[~mask] == 0), name
        if param.grad is not None:
            assert torch.all(param.grad[~mask] == 0), name
        if optimizer is not None:
            for key, value in optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor) and value.shape == param.shape:
                    assert torch.all(value[~mask] == 0), (name, key)
