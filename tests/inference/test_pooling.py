"""Pooling on batch-blocked activations: against PyTorch's pooling, output sizes, and a
compiled ResNet-style stem/head that stays blocked through max and average pooling."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from sparseift.inference import compile, compiler
from sparseift.inference.blocked import Blocked, blocked_tiles
from sparseift.inference.pooling import GlobalAvgPool, MaxPool, pool_for, pooled_size

from .conftest import randomise

# (kernel, stride, padding, dilation, ceil_mode)
POOLS = [
    (3, 2, 1, 1, False),
    (2, 2, 0, 1, False),
    (3, 2, 1, 1, True),
    (3, 1, 1, 2, False),
    ((3, 2), (2, 1), (1, 0), 1, True),
]


def _with_junk_halo(blocked: Blocked) -> Blocked:
    """The same activations with +inf in the halo: a pool that reads it gives wrong maxima."""
    data = blocked.data.clone()
    hh, hw = blocked.halo
    interior = data[:, :, hh : data.shape[2] - hh, hw : data.shape[3] - hw].clone()
    data.fill_(float("inf"))
    data[:, :, hh : data.shape[2] - hh, hw : data.shape[3] - hw] = interior
    return Blocked(data, blocked.batch, blocked.halo)


@pytest.mark.parametrize("kernel,stride,padding,dilation,ceil_mode", POOLS)
@pytest.mark.parametrize("batch", [3, 19])
@pytest.mark.parametrize("relu", [False, True])
def test_blocked_max_pool_matches_torch(ext, kernel, stride, padding, dilation, ceil_mode, batch, relu):
    torch.manual_seed(0)
    x = torch.randn(batch, 5, 13, 16) - 2.0  # mostly negative: a zero from the padding would win
    x[0, 1, 4, 5] = float("nan")
    pool = nn.MaxPool2d(kernel, stride, padding, dilation, ceil_mode=ceil_mode)
    expected = pool(torch.relu(x) if relu else x)
    module = MaxPool(pool)
    module.blocked_halo = (1, 2)
    out = module.pool_to(_with_junk_halo(Blocked.from_tensor(ext, x, (2, 1))), (1, 2), relu)
    assert isinstance(out, Blocked) and out.halo == (1, 2) and out.shape == expected.shape
    assert torch.equal(out.to_tensor().isnan(), expected.isnan())
    assert torch.equal(out.to_tensor().nan_to_num(), expected.nan_to_num())
    data = out.data.clone()
    data[:, :, 1:-1, 2:-2] = 0
    assert int(torch.count_nonzero(data)) == 0  # zero output halo
    assert torch.equal(module.pool_to(x, None, relu).nan_to_num(), expected.nan_to_num())  # plain tensors


def test_blocked_max_pool_returns_plain_tensors_unless_planned(ext):
    x = torch.randn(9, 4, 8, 8)
    out = MaxPool(nn.MaxPool2d(2))(Blocked.from_tensor(ext, x, (0, 0)))
    assert isinstance(out, torch.Tensor) and torch.equal(out, F.max_pool2d(x, 2))


@pytest.mark.parametrize("kernel,stride,padding,dilation,ceil_mode", POOLS)
@pytest.mark.parametrize("layout", ["nchw", "channel_slice", "channels_last", "strided"])
@pytest.mark.parametrize("relu", [False, True])
def test_plain_max_pool_matches_torch(ext, kernel, stride, padding, dilation, ceil_mode, layout, relu):
    """Ours on NCHW (rows contiguous) and channels-last tensors, PyTorch's on others; the ReLU of
    a fused conv applied to the pooled values equals pooling the rectified ones, NaN kept."""
    torch.manual_seed(0)
    x = torch.randn(2, 21, 13, 37) - 1.0  # 37 columns, 21 channels: full vectors and a tail on every width
    x[1, 2, 5, 6] = float("nan")
    if layout == "channel_slice":
        x = x[:, 1:20]  # planes not packed: the kernel follows the strides
    elif layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":
        x = x[:, :, :, ::2]  # neither: PyTorch's pooling
    pool = nn.MaxPool2d(kernel, stride, padding, dilation, ceil_mode=ceil_mode)
    expected = pool(torch.relu(x) if relu else x)
    out = MaxPool(pool).pool_to(x, None, relu)
    assert isinstance(out, torch.Tensor) and out.shape == expected.shape
    assert out.is_contiguous(memory_format=torch.channels_last) == (layout == "channels_last")
    assert torch.equal(out.isnan(), expected.isnan())
    assert torch.equal(out.nan_to_num(), expected.nan_to_num())


@pytest.mark.parametrize("kernel,stride,padding,dilation,ceil_mode", POOLS)
@pytest.mark.parametrize("channels,layout", [(37, "channels_last"), (16, "channels_last"), (5, "nchw"), (1, "channels_last")])
def test_plain_max_pool_hands_blocked_on_only_when_planned(ext, kernel, stride, padding, dilation, ceil_mode, channels, layout):
    torch.manual_seed(0)
    x = torch.randn(ext.vector_width() + 3, channels, 11, 14) - 2.0
    x[2, -1, 3, 4] = float("nan")
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    pool = nn.MaxPool2d(kernel, stride, padding, dilation, ceil_mode=ceil_mode)
    expected = pool(x)
    module = MaxPool(pool)
    module.blocked_halo = (1, 2)
    assert isinstance(module(x), torch.Tensor)  # planned for blocked readers, but none is sparse
    module.convert_plain = True
    out = module(x)
    assert isinstance(out, Blocked) and out.halo == (1, 2) and out.shape == expected.shape
    assert torch.equal(out.to_tensor().isnan(), expected.isnan())
    assert torch.equal(out.to_tensor().nan_to_num(), expected.nan_to_num())
    data = out.data.clone()
    data[:, :, 1:-1, 2:-2] = 0
    assert int(torch.count_nonzero(data)) == 0  # zero halo
    assert int(torch.count_nonzero(out.data[-1, ..., 3:])) == 0  # zero lanes past the batch
    assert isinstance(module(x[:2]), torch.Tensor)  # below the vector width nothing is blocked


@pytest.mark.parametrize("channels", [1, 5, 16, 37])
def test_channels_last_input_to_blocked_is_exact(ext, channels):
    x = torch.randn(ext.vector_width() + 3, channels, 6, 7)
    blocked = Blocked.from_tensor(ext, x.contiguous(memory_format=torch.channels_last), (1, 2))
    assert torch.equal(blocked.to_tensor(), x)
    data = blocked.data.clone()
    data[:, :, 1:-1, 2:-2] = 0
    assert int(torch.count_nonzero(data)) == 0  # zero halo
    assert int(torch.count_nonzero(blocked.data[-1, :, :, :, 3:])) == 0  # zero lanes past the batch


@pytest.mark.parametrize("halo", [(0, 0), (1, 1), (2, 3)])
def test_blocked_global_average_matches_torch(ext, halo):
    x = torch.randn(ext.vector_width() + 3, 7, 5, 6)
    out = GlobalAvgPool()(_with_junk_halo(Blocked.from_tensor(ext, x, halo)))
    expected = F.adaptive_avg_pool2d(x, 1)
    assert out.shape == expected.shape
    assert float((out - expected).abs().max()) <= 1e-6
    assert torch.equal(GlobalAvgPool()(x), expected)


def test_pool_for_replaces_only_what_it_computes():
    assert isinstance(pool_for(nn.MaxPool2d(3, 2, 1)), MaxPool)
    assert isinstance(pool_for(nn.AdaptiveAvgPool2d(1)), GlobalAvgPool)
    assert isinstance(pool_for(nn.AdaptiveAvgPool2d((1, 1))), GlobalAvgPool)
    for other in (nn.MaxPool2d(2, return_indices=True), nn.AdaptiveAvgPool2d(2), nn.AdaptiveAvgPool2d((None, 1)),
                  nn.AvgPool2d(2), nn.AdaptiveMaxPool2d(1), nn.ReLU()):
        assert pool_for(other) is None
    with pytest.raises(ValueError, match="return_indices"):
        MaxPool(nn.MaxPool2d(2, return_indices=True))


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(1, 40), kernel=st.integers(1, 5), stride=st.integers(1, 4), dilation=st.integers(1, 3),
    pad_frac=st.floats(0, 1), ceil_mode=st.booleans(),
)
def test_pooled_size_is_torchs(size, kernel, stride, dilation, pad_frac, ceil_mode):
    padding = min(kernel // 2, int(pad_frac * (kernel // 2 + 1)))  # PyTorch: at most half the kernel
    if size + 2 * padding < dilation * (kernel - 1) + 1:
        return
    out = F.max_pool2d(torch.zeros(1, 1, size, 1), (kernel, 1), (stride, 1), (padding, 0), (dilation, 1), ceil_mode)
    assert pooled_size(size, kernel, stride, padding, dilation, ceil_mode) == out.shape[2]


class TinyResNet(nn.Module):
    """torchvision's ResNet stem, one basic block and head, at a small width."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.conv_a = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn_a = nn.BatchNorm2d(width)
        self.conv_b = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn_b = nn.BatchNorm2d(width)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        y = self.relu(self.bn_a(self.conv_a(x)))
        x = self.relu(self.bn_b(self.conv_b(y)) + x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def test_compiled_resnet_stays_blocked_from_stem_to_head(ext):
    torch.manual_seed(0)
    sparse = {"conv1.weight": 0.5, "conv_a.weight": 0.9, "conv_b.weight": 0.9}
    model = randomise(TinyResNet(), sparse, masks=False)
    x = torch.randn(ext.vector_width() + 2, 3, 32, 32)
    compiled = compile(model, x, max_density={"conv": 0.6})
    modules = dict(compiled.module.named_modules())
    stem = modules["conv1"]  # the max pool is fused into the stem conv
    assert "maxpool" not in modules and isinstance(stem.pool, MaxPool) and isinstance(modules["avgpool"], GlobalAvgPool)
    assert stem.plan.fused == ("batchnorm", "relu", "maxpool") and stem.blocked_halo == (1, 1)
    seen: dict[str, tuple[type, type]] = {}
    hooks = [modules[name].register_forward_hook(lambda m, args, out, name=name: seen.__setitem__(name, (type(args[0]), type(out))))
             for name in ("conv1", "conv_a", "conv_b", "avgpool")]
    separate_pools = []
    with pytest.MonkeyPatch.context() as patch:
        original = MaxPool.pool_to
        patch.setattr(MaxPool, "pool_to", lambda self, *a: separate_pools.append(a[0].shape) or original(self, *a))
        with torch.no_grad():
            small = x[:2]  # below the vector width nothing is blocked: conv, then pool; results the same
            assert float((compiled(small) - model(small)).abs().max() / model(small).abs().max()) <= 1e-4
            expected = model(x)
            actual = compiled(x)
    for hook in hooks:
        hook.remove()
    assert float((actual - expected).abs().max() / expected.abs().max()) <= 1e-4
    assert separate_pools == [(2, 16, 16, 16)]  # the blocked batch pooled in the conv's epilogue
    assert seen["conv1"] == (torch.Tensor, Blocked)
    assert seen["conv_a"] == (Blocked, Blocked) and seen["conv_b"] == (Blocked, Blocked)  # pooled stem output is conv_b's residual too
    assert seen["avgpool"] == (Blocked, torch.Tensor)


@pytest.mark.parametrize("first_conv_sparse", [True, False])
def test_pool_after_a_dense_stem_converts_once_for_sparse_readers(ext, first_conv_sparse):
    torch.manual_seed(0)
    model = randomise(TinyResNet(), {"conv_a.weight": 0.9, "conv_b.weight": 0.9}, masks=False)
    x = torch.randn(ext.vector_width() + 2, 3, 32, 32)
    compiled = compile(model, x, max_density={"conv": 0.95 if first_conv_sparse else 0.0})
    modules = dict(compiled.module.named_modules())
    assert modules["conv1"].plan.path != "sparse"  # dense stem: plain output, then its fused pool
    assert modules["conv1"].pool.convert_plain == first_conv_sparse
    conversions, pooled = [], []
    original = Blocked.from_tensor
    hook = modules["conv1"].register_forward_hook(lambda m, args, out: pooled.append(type(out)))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Blocked, "from_tensor", staticmethod(lambda *a: conversions.append(a[1].shape) or original(*a)))
        with torch.no_grad():
            actual = compiled(x)
    hook.remove()
    assert pooled == [Blocked if first_conv_sparse else torch.Tensor]
    assert len(conversions) == (1 if first_conv_sparse else 0)  # conv_a and conv_b's residual share one
    expected = model(x).detach()
    assert float((actual - expected).abs().max() / expected.abs().max()) <= 1e-4
    with torch.no_grad():
        for name in ("conv_a", "conv_b"):  # a path change re-plans the pool's conversion
            compiler._swap(compiled, name, modules[name].with_path("sparse" if not first_conv_sparse else "dense", ""))
    assert compiled.module.conv1.pool.convert_plain == (not first_conv_sparse)


@pytest.mark.parametrize("whole_model_prefers_sparse", [True, False])
def test_tune_settles_a_dense_stem_on_whole_model_time(ext, monkeypatch, whole_model_prefers_sparse):
    def layer_seconds(layer, args, repeats=3):  # dense stem ~10% faster alone; everything else sparse, wide tiles best
        wide = 0.001 * (layer.plan.tile or 0)
        if layer.plan.name == "conv1":
            return {"sparse": 1.1 - wide, "dense": 1.0, "dense_cl": 2.0, "winograd": 2.0, "direct": 2.0}[layer.plan.path]
        return {"sparse": 1.0 - wide, "dense": 3.0, "dense_cl": 3.0, "winograd": 3.0, "direct": 3.0}[layer.plan.path]

    def model_seconds(compiled_model, example_inputs):
        stem_sparse = compiled_model.module.conv1.plan.path == "sparse"
        return 1.0 if stem_sparse == whole_model_prefers_sparse else 2.0

    monkeypatch.setattr(compiler, "_best_seconds", layer_seconds)
    monkeypatch.setattr(compiler, "_model_seconds", model_seconds)
    model = randomise(TinyResNet(), {"conv_a.weight": 0.9, "conv_b.weight": 0.9}, masks=False)
    x = torch.randn(ext.vector_width() + 2, 3, 64, 64)
    plans = {p.name: p for p in compile(model, x, tune=True).plans}
    assert plans["conv1"].path == ("sparse" if whole_model_prefers_sparse else "dense")
    assert "whole model" in plans["conv1"].reason
    assert plans["conv_a"].path == "sparse" and "whole model" not in plans["conv_a"].reason
    # blocked sparse convs also time each task width that splits their rows differently
    stem_tiles, block_tiles = blocked_tiles(ext, 32), blocked_tiles(ext, 16)
    assert plans["conv_a"].tile == (max(block_tiles) if len(block_tiles) > 1 else None)
    assert plans["conv_a"].reason.count("sparse (tile") == (len(block_tiles) if len(block_tiles) > 1 else 0)
    assert plans["conv1"].tile == (max(stem_tiles) if whole_model_prefers_sparse and len(stem_tiles) > 1 else None)
    small = {p.name: p for p in compile(model, x[:2], tune=True).plans}  # nothing blocked: layer times decide
    assert small["conv1"].path == "dense" and "whole model" not in small["conv1"].reason
    assert all(p.tile is None and "tile" not in p.reason for p in small.values())
