"""Sparse Parallel / Factorized / Doped on single layers: shapes, FLOPs, s = 0 limits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparseift import profile_flops, transform
from sparseift.transforms import SparseDoped, SparseFactorized, SparseParallel

LAYERS = {
    "linear": (lambda: nn.Linear(64, 48), (4, 64)),
    "conv3x3": (lambda: nn.Conv2d(16, 24, 3, stride=2, padding=1), (2, 16, 12, 12)),
    "conv1x1": (lambda: nn.Conv2d(16, 32, 1, bias=False), (2, 16, 8, 8)),
    "dilated": (lambda: nn.Conv2d(8, 12, 3, stride=2, padding=2, dilation=2), (2, 8, 11, 11)),
    "grouped": (lambda: nn.Conv2d(16, 32, 3, padding=1, groups=4), (2, 16, 8, 8)),
}
LAYERWISE = ("parallel", "factorized", "doped")


def _single(layer: str) -> tuple[nn.Module, torch.Tensor]:
    make, shape = LAYERS[layer]
    return nn.Sequential(make()), torch.randn(*shape)


@pytest.mark.parametrize("family", LAYERWISE)
@pytest.mark.parametrize("sparsity", [0.5, 0.75, 0.9])
@pytest.mark.parametrize("layer", list(LAYERS))
def test_effective_flops_equal_dense_within_rounding(family: str, sparsity: float, layer: str) -> None:
    dense, x = _single(layer)
    result = transform(dense, family, sparsity, keep_first_last_dense=False, nonlinearity=None)
    (report,) = result.layers
    assert report.role == "sparse" and set(result.sparse_params.values()) == {sparsity}
    dense_macs = profile_flops(dense, x).dense_macs()
    effective = profile_flops(result.model, x).effective_macs(result.sparse_params)
    size_rounding = abs(report.size / report.size_exact - 1) if report.size_exact else 0.0
    params = dict(result.model.named_parameters())
    count_rounding = max(0.5 / (params[name].numel() * (1 - s)) for name, s in result.sparse_params.items())
    assert effective / dense_macs == pytest.approx(1.0, abs=size_rounding + count_rounding + 1e-12)
    assert result.model(x).shape == dense(x).shape


@pytest.mark.parametrize("family", LAYERWISE)
def test_depthwise_convs_stay_dense_and_unchanged(family: str) -> None:
    dense = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16))
    result = transform(dense, family, 0.75, keep_first_last_dense=False)
    assert result.sparse_params == {}
    assert isinstance(result.model[0], nn.Conv2d) and result.layers[0].role == "depthwise"


@pytest.mark.parametrize("layer", list(LAYERS))
@pytest.mark.parametrize("family", ["parallel", "doped"])
def test_zero_sparsity_reproduces_the_dense_layer(layer: str, family: str) -> None:
    """At s = 0 Parallel is one branch and Doped has rank 0: with sigma = identity, the dense layer."""
    dense, x = _single(layer)
    result = transform(dense, family, 0.0, keep_first_last_dense=False, nonlinearity=None)
    torch.testing.assert_close(result.model(x), dense(x), rtol=0, atol=1e-6)
    assert result.sparse_params == {}


def test_factorized_at_zero_sparsity_is_a_dense_low_rank_factorisation() -> None:
    dense, x = _single("linear")
    result = transform(dense, "factorized", 0.0, keep_first_last_dense=False)
    module = result.model[0]
    assert isinstance(module, SparseFactorized)
    assert module.U.out_features == round(64 * 48 / (64 + 48))  # d_sf = 27.43 -> 27
    assert profile_flops(result.model, x).dense_macs() == 4 * 27 * (64 + 48)


def test_parallel_branch_count_and_sum() -> None:
    dense, x = _single("linear")
    module = transform(dense, "parallel", 0.75, keep_first_last_dense=False, nonlinearity=None).model[0]
    assert isinstance(module, SparseParallel) and len(module.branches) == 4
    torch.testing.assert_close(module(x), sum(branch(x) for branch in module.branches))


def test_doped_low_rank_part_is_dense_and_never_listed_sparse() -> None:
    dense, x = _single("conv3x3")
    result = transform(dense, "doped", 0.75, keep_first_last_dense=False)
    module = result.model[0]
    assert isinstance(module, SparseDoped) and module.U is not None
    assert list(result.sparse_params) == ["0.sparse.weight"]
    # d_sd = 0.75 * (16*9) * 24 / (16*9 + 24) = 15.43 -> 15, a dense 3x3 conv then a dense 1x1 conv
    assert module.U.out_channels == 15 and module.V.kernel_size == (1, 1)
    assert module.U.stride == (2, 2) and module(x).shape == dense(x).shape


def test_factorized_conv_shapes_follow_appendix_a1() -> None:
    """U keeps the kernel, stride and padding with d output channels; V is a 1x1 conv d -> cout."""
    dense, x = _single("conv3x3")
    module = transform(dense, "factorized", 0.5, keep_first_last_dense=False).model[0]
    d = round(16 * 9 * 24 / ((16 * 9 + 24) * 0.5))  # 41.14 -> 41
    assert (module.U.in_channels, module.U.out_channels, module.U.kernel_size) == (16, d, (3, 3))
    assert (module.V.in_channels, module.V.out_channels, module.V.kernel_size) == (d, 24, (1, 1))
    assert isinstance(module.nonlinearity[0], nn.BatchNorm2d) and isinstance(module.nonlinearity[1], nn.ReLU)


def test_grouped_conv_rank_is_a_multiple_of_groups() -> None:
    dense, x = _single("grouped")
    module = transform(dense, "factorized", 0.5, keep_first_last_dense=False).model[0]
    assert module.U.groups == 4 and module.U.out_channels % 4 == 0 and module.V.groups == 4


def test_linear_default_nonlinearity_is_layernorm_gelu_and_handles_token_streams() -> None:
    dense = nn.Sequential(nn.Linear(32, 32))
    module = transform(dense, "parallel", 0.5, keep_first_last_dense=False).model[0]
    assert isinstance(module.nonlinearities[0][0], nn.LayerNorm) and isinstance(module.nonlinearities[0][1], nn.GELU)
    assert module(torch.randn(2, 7, 32)).shape == (2, 7, 32)


def test_custom_nonlinearity_factory_is_used() -> None:
    dense = nn.Sequential(nn.Conv2d(4, 8, 3))
    module = transform(
        dense, "factorized", 0.5, keep_first_last_dense=False, nonlinearity=lambda kind, c: nn.Sequential(nn.SiLU())
    ).model[0]
    assert isinstance(module.nonlinearity[0], nn.SiLU)
