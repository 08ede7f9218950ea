"""Every path of an :class:`InferenceLayer` (sparse, dense NCHW, dense channels-last, Winograd,
direct) against eager, with BatchNorm folding, bias, residual add and ReLU fused, at several densities."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparseift.inference import InferenceLayer, compile, max_relative_error
from sparseift.inference.layers import PATHS, LayerPlan, path_unsupported
from sparseift.transforms.layers import describe
from tests.inference.conftest import randomise

RTOL = 1e-4

CONVS = {
    "3x3": {"in_channels": 16, "out_channels": 24, "kernel_size": 3, "padding": 1},
    "3x3_stride2": {"in_channels": 16, "out_channels": 24, "kernel_size": 3, "stride": 2, "padding": 1},
    "1x1": {"in_channels": 16, "out_channels": 32, "kernel_size": 1},
    "1x1_stride2": {"in_channels": 16, "out_channels": 32, "kernel_size": 1, "stride": 2},
    "grouped": {"in_channels": 16, "out_channels": 24, "kernel_size": 3, "padding": 1, "groups": 4},
    "7x7_stride2": {"in_channels": 16, "out_channels": 40, "kernel_size": 7, "stride": 2, "padding": 3},
    "3x3_dilated": {"in_channels": 16, "out_channels": 24, "kernel_size": 3, "padding": 2, "dilation": 2},
}
SUPPORTED = {"winograd": {"3x3"}, "direct": set(CONVS) - {"grouped"}}
"""Convs of the paths that do not take every conv: Winograd 3x3 stride 1 dilation 1, direct groups 1."""


class ConvBlock(nn.Module):
    """``relu(bn(conv(x)) + shortcut(x))``: BatchNorm folding, residual add and ReLU fusion."""

    def __init__(self, **conv: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(**conv, bias=False)
        self.bn = nn.BatchNorm2d(conv["out_channels"])
        self.shortcut = nn.Conv2d(conv["in_channels"], conv["out_channels"], 1, stride=conv.get("stride", 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)) + self.shortcut(x))


class LinearBlock(nn.Module):
    def __init__(self, dim: int = 32) -> None:
        super().__init__()
        self.up = nn.Linear(dim, 2 * dim)
        self.down = nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.down(torch.relu(self.up(x))) + x)


def _sparsify(model: nn.Module, density: float, seed: int = 0) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.weight.mul_(torch.rand(module.weight.shape, generator=generator) < density)
                if module.bias is not None:
                    module.bias.uniform_(-0.5, 0.5, generator=generator)
    return randomise(model, {}, masks=False, seed=seed)


def _force(compiled: nn.Module, path: str) -> None:
    """Put every layer of ``compiled`` that supports ``path`` on it."""
    for name, layer in list(compiled.module.named_modules()):
        if isinstance(layer, InferenceLayer) and path_unsupported(layer.layer, path, True) is None:
            parent, _, child = name.rpartition(".")
            setattr(compiled.module.get_submodule(parent), child, layer.with_path(path, "forced"))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("density", [0.05, 0.3, 1.0])
@pytest.mark.parametrize("conv", sorted(CONVS))
@pytest.mark.parametrize("batch", [1, 3])
def test_conv_paths_match_eager(ext, path, density, conv, batch):
    model = _sparsify(ConvBlock(**CONVS[conv]), density)
    x = torch.randn(batch, 16, 13, 13)
    with torch.no_grad():
        expected = model(x)
    compiled = compile(model)
    _force(compiled, path)
    plans = {p.name: p for p in compiled.plans}
    supported = path_unsupported(describe(model.conv), path, True) is None
    assert supported == (conv in SUPPORTED.get(path, CONVS))
    assert (plans["conv"].path == path) == supported and plans["conv"].fused == ("batchnorm", "add", "relu")
    assert max_relative_error(compiled(x), expected) <= RTOL
    assert max_relative_error(compiled(x.contiguous(memory_format=torch.channels_last)), expected) <= RTOL


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("density", [0.05, 0.3, 1.0])
def test_linear_paths_match_eager(ext, path, density):
    model = _sparsify(LinearBlock(), density)
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        expected = model(x)
    compiled = compile(model)
    _force(compiled, path)
    if path in ("dense_cl", "winograd", "direct"):  # convs only: linear layers keep the rule's path
        assert all(p.path != path for p in compiled.plans)
    else:
        assert all(p.path == path for p in compiled.plans)
    assert max_relative_error(compiled(x), expected) <= RTOL


def test_channels_last_weight_and_rejection():
    conv = nn.Conv2d(8, 8, 3, padding=1)
    plan = LayerPlan("c", "conv2d", tuple(conv.weight.shape), 1.0, "dense_cl", "forced")
    layer = InferenceLayer(plan, describe(conv), conv.weight.detach(), conv.bias.detach())
    assert layer.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(layer.with_path("dense", "").weight, conv.weight.detach())
    linear = nn.Linear(4, 4)
    with pytest.raises(ValueError, match="cannot take path='dense_cl'"):
        InferenceLayer(LayerPlan("l", "linear", (4, 4), 1.0, "dense_cl", ""), describe(linear), linear.weight.detach(), None)


def test_tune_paths_rejects_unknown(ext):
    model = ConvBlock(**CONVS["1x1"])
    with pytest.raises(ValueError, match="tune_paths"):
        compile(model, example_inputs=torch.randn(1, 16, 8, 8), tune=True, tune_paths=("sparse", "mkl"))
