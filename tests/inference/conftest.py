"""Fixtures of the inference tests: the compiled kernels and random sparse models."""

from __future__ import annotations

from types import ModuleType

import pytest
import torch
from torch import nn

from sparseift.inference import _ext


@pytest.fixture(scope="session")
def ext() -> ModuleType:
    """The sparse kernels (built once per session, cached on disk); skip where they cannot build."""
    module = _ext.kernels()
    if module is None:
        pytest.skip("sparse kernels unavailable (no C++ compiler / ninja)")
    return module


def randomise(model: nn.Module, sparse_params: dict[str, float], *, masks: bool, seed: int = 0) -> nn.Module:
    """Random uniform masks at each parameter's target sparsity, applied to the weights and,
    if ``masks``, also registered as ``*_mask`` buffers; random BatchNorm statistics."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, sparsity in sparse_params.items():
            owner, _, pname = name.rpartition(".")
            module = model.get_submodule(owner)
            param = getattr(module, pname)
            keep = torch.rand(param.shape, generator=generator) >= sparsity
            param.mul_(keep)
            if masks:
                module.register_buffer(pname + "_mask", keep)
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.uniform_(-0.2, 0.2, generator=generator)
    return model.eval()


class SmallNet(nn.Module):
    """Every conv shape the kernels cover: 3x3/1x1, strides, a grouped and a depthwise conv,
    a residual block, BatchNorm/ReLU, and a Linear head."""

    def __init__(self, width: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.conv_a = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn_a = nn.BatchNorm2d(width)
        self.conv_b = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn_b = nn.BatchNorm2d(width)
        self.down = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.grouped = nn.Conv2d(2 * width, 2 * width, 3, padding=1, groups=2)
        self.depthwise = nn.Conv2d(2 * width, 2 * width, 3, padding=1, groups=2 * width)
        self.point = nn.Conv2d(2 * width, 2 * width, 1, stride=2)
        self.head = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.relu(self.bn_b(self.conv_b(torch.relu(self.bn_a(self.conv_a(x))))) + x)
        x = torch.relu(self.down(x))
        x = self.grouped(x) + x
        x = self.point(torch.relu(self.depthwise(x)))
        return self.head(x.mean(dim=(2, 3)))


class SmallMLP(nn.Module):
    """Linear layers on token streams ``(B, T, D)``, with a residual add."""

    def __init__(self, dim: int = 24) -> None:
        super().__init__()
        self.inp = nn.Linear(dim, dim)
        self.up = nn.Linear(dim, 2 * dim)
        self.down = nn.Linear(2 * dim, dim)
        self.out = nn.Linear(dim, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.inp(x))
        h = self.down(torch.relu(self.up(h))) + h
        return self.out(h)
