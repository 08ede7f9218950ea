"""Batch-blocked activations: the layout round trip, the blocked conv kernel against
PyTorch's conv, and compiled models that pass blocked activations between sparse convs."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import sparseift.inference.blocked as blocked_module
from sparseift.inference import compile
from sparseift.inference.blocked import (
    BANDED_ROWS,
    BLOCKED_TILE,
    FULL_TILE_DENSITY,
    L2_ACC_BUDGET,
    L2_FILL,
    MAX_COLUMN_STRIDE,
    Blocked,
    as_tensor,
    balanced_columns,
    blocked_task_shape,
    blocked_tile,
    blocked_tiles,
    l2_cache_bytes,
    sparse_conv2d_blocked,
    touched_vectors,
)
from sparseift.inference.kernels import ROWS_PER_TASK, ConvGeometry, PlanCache, pack_weight, tile_floats
from sparseift.inference.pooling import MaxPool

from .conftest import SmallNet, randomise
from .test_kernels import CONVS

RTOL = 1e-4


def _rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-12))


@pytest.mark.parametrize("batch", [1, 7, 19])
@pytest.mark.parametrize("halo", [(0, 0), (1, 1), (2, 0)])
@pytest.mark.parametrize("channels,width", [(5, 9), (21, 37)])  # one short run of columns (channels-last: channels); several
def test_round_trip_keeps_values_and_zero_halo(ext, batch, halo, channels, width):
    x = torch.randn(batch, channels, 6, width)
    for source in (x, x.to(memory_format=torch.channels_last), x.transpose(2, 3).contiguous().transpose(2, 3)):
        blocked = Blocked.from_tensor(ext, source, halo)
        assert blocked.shape == x.shape
        assert blocked.data.shape[4] == ext.vector_width()
        assert torch.equal(blocked.to_tensor(), x)
        data = blocked.data.clone()
        data[:, :, halo[0] : data.shape[2] - halo[0], halo[1] : data.shape[3] - halo[1]] = 0
        assert int(torch.count_nonzero(data)) == 0  # halo and lanes past the batch are zero
        # planes an odd number of 64-byte lines apart, so channels spread over the L1 sets
        pitch = blocked.data.stride(1)
        assert pitch >= blocked.data[0, 0].numel() and pitch * 4 % 64 == 0 and pitch * 4 // 64 % 2 == 1
    assert as_tensor(x) is x and as_tensor(None) is None


# test_kernels' shapes that the blocked kernel reads (column stride <= 2), and a row-only stride
BLOCKED_CONVS = [c for c in CONVS if c[3] <= MAX_COLUMN_STRIDE] + [(8, 8, 3, (2, 1), 0, 1, 1)]


@pytest.mark.parametrize("banded,shared_loads", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("density", [0.0, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("cin,cout,k,stride,padding,dilation,groups", BLOCKED_CONVS)
def test_blocked_conv_matches_dense(
    ext, monkeypatch, cin, cout, k, stride, padding, dilation, groups, density, banded, shared_loads
):
    if banded:  # every layer's working set counts as too big for L2: tasks cover bands of rows
        monkeypatch.setattr(blocked_module, "L2_FILL", 0.0)
    # runs of taps that load each input vector once, whatever this CPU's vector width
    monkeypatch.setattr(blocked_module, "SHARED_LOADS_MIN_VECTOR", 0 if shared_loads else 10**6)
    stride = stride if isinstance(stride, tuple) else (stride, stride)
    x = torch.randn(2 * ext.vector_width() + 3, cin, 13, 30)
    w = torch.randn(cout, cin // groups, k, k) * (torch.rand(cout, cin // groups, k, k) < density)
    bias = torch.randn(cout)
    expected = F.conv2d(x, w, bias, stride, padding, dilation, groups)
    residual = torch.randn_like(expected)
    geometry = ConvGeometry(stride, (padding, padding), (dilation, dilation))
    xb = Blocked.from_tensor(ext, x, (padding + 1, padding))  # a wider halo than needed is fine
    rb = Blocked.from_tensor(ext, residual, (1, 0))
    out = sparse_conv2d_blocked(
        ext, xb, pack_weight(w, groups), bias, geometry, (2 * padding, 2 * padding), PlanCache(), rb, True, (1, 2)
    )
    assert out.shape == expected.shape and out.halo == (1, 2)
    assert _rel_error(out.to_tensor(), torch.relu(expected + residual)) <= RTOL
    halo = out.data.clone()
    halo[:, :, 1:-1, 2:-2] = 0
    assert int(torch.count_nonzero(halo)) == 0  # the next layer's zero padding


# (kernel, stride, padding, ceil_mode) of max pools fused into the conv before them
FUSED_POOLS = [((3, 3), (2, 2), (1, 1), False), ((2, 2), (2, 2), (0, 0), False), ((3, 3), (2, 2), (1, 1), True),
               ((3, 2), (2, 1), (1, 0), True), ((3, 3), (1, 1), (1, 1), False)]


@pytest.mark.parametrize("banded", [False, True])
@pytest.mark.parametrize("relu,residual", [(True, False), (False, False), (True, True)])
@pytest.mark.parametrize("kernel,stride,padding,ceil_mode", FUSED_POOLS)
def test_blocked_conv_with_a_fused_max_pool_matches_conv_then_pool(
    ext, monkeypatch, kernel, stride, padding, ceil_mode, relu, residual, banded
):
    """The pooled epilogue gives exactly the blocked conv's output pooled by the blocked max pool,
    over several bands and column runs (tasks of neighbouring ones share pooled outputs), and
    PyTorch's result; halo zero."""
    if banded:
        monkeypatch.setattr(blocked_module, "L2_FILL", 0.0)
    x = torch.randn(ext.vector_width() + 3, 6, 23, 37)
    w = torch.randn(10, 6, 7, 7) * (torch.rand(10, 6, 7, 7) < 0.5)
    bias = torch.randn(10)
    geometry = ConvGeometry((2, 2), (3, 3))
    conv = F.conv2d(x, w, bias, 2, 3)
    res = torch.randn_like(conv) if residual else None
    pool = MaxPool(nn.MaxPool2d(kernel, stride, padding, ceil_mode=ceil_mode))
    act = conv + (0 if res is None else res)
    expected = F.max_pool2d(torch.relu(act) if relu else act, kernel, stride, padding, ceil_mode=ceil_mode)
    xb = Blocked.from_tensor(ext, x, (3, 3))
    rb = None if res is None else Blocked.from_tensor(ext, res, (0, 0))
    weight, window = pack_weight(w), pool.fused_window(*conv.shape[2:])
    assert window is not None and window.size == tuple(expected.shape[2:])
    fused = sparse_conv2d_blocked(ext, xb, weight, bias, geometry, (6, 6), PlanCache(), rb, relu, (1, 2), window)
    unfused = sparse_conv2d_blocked(ext, xb, weight, bias, geometry, (6, 6), PlanCache(), rb, relu, (0, 0))
    assert fused.shape == expected.shape and fused.halo == (1, 2)
    assert torch.equal(fused.to_tensor(), pool.pool_to(unfused, (0, 0)).to_tensor())
    assert _rel_error(fused.to_tensor(), expected) <= RTOL
    halo = fused.data.clone()
    halo[:, :, 1:-1, 2:-2] = 0
    assert int(torch.count_nonzero(halo)) == 0
    assert MaxPool(nn.MaxPool2d(3, 2, 1, dilation=2)).fused_window(12, 12) is None  # dilated: pooled after the conv


def test_touched_vectors_by_hand():
    assert touched_vectors((3, 3), 1, 1, 16) == 3 * 18
    assert touched_vectors((3, 3), 2, 1, 16) == 3 * 33  # both phases of the span
    assert touched_vectors((1, 1), 2, 1, 16) == 16  # every other vector
    assert touched_vectors((3, 3), 1, 2, 16) == 3 * 20  # dilated: columns 0..15 and 16..19
    assert touched_vectors((1, 3), 4, 1, 2) == 6  # columns 0, 1, 2, 4, 5, 6


def test_balanced_columns_by_hand():
    assert [balanced_columns(wo, 8) for wo in (56, 28, 14, 7, 9, 1)] == [8, 7, 7, 7, 5, 1]
    assert [balanced_columns(wo, 14) for wo in (56, 28, 14, 7, 15)] == [14, 14, 14, 7, 8]


@given(wo=st.integers(1, 512), tile=st.integers(1, 32))
def test_balanced_columns_split_the_row_into_fewest_near_equal_runs(wo, tile):
    columns = balanced_columns(wo, tile)
    runs = -(-wo // tile)  # fewest runs of at most `tile` columns
    assert 1 <= columns <= tile
    assert -(-wo // columns) == runs  # no extra run
    assert runs * columns - wo < runs  # the last run is short by less than one column per run


def test_blocked_tile_stays_within_the_register_tile(ext):
    tile, full = blocked_tile(ext), tile_floats(ext) // ext.vector_width()
    assert 1 <= tile <= full
    assert tile == (min(full, BLOCKED_TILE) if ext.vector_width() == 16 else full)
    assert blocked_tile(ext, FULL_TILE_DENSITY) == blocked_tile(ext, 1.0) == full  # dense weights: the whole tile
    assert blocked_tile(ext, FULL_TILE_DENSITY - 0.01) == tile


@given(wo=st.integers(1, 300))
def test_tuned_tiles_split_the_row_differently(ext, wo):
    tiles = blocked_tiles(ext, wo)
    full = tile_floats(ext) // ext.vector_width()
    runs = [balanced_columns(wo, t) for t in tiles]
    assert list(tiles) == sorted(tiles) and set(tiles) <= {min(BLOCKED_TILE, full), full}
    assert len(set(runs)) == len(runs)  # no two widths give the same tasks
    assert {balanced_columns(wo, t) for t in (min(BLOCKED_TILE, full), full)} == set(runs)


@pytest.mark.parametrize("pooled", [False, True])
def test_every_task_width_gives_the_same_output(ext, pooled):
    """The tile only regroups output columns into tasks: each output sums the same products in
    the same order, so every width gives bit-identical results; widths outside the register tile raise."""
    x = torch.randn(ext.vector_width() + 1, 5, 12, 29)
    w = torch.randn(7, 5, 3, 3) * (torch.rand(7, 5, 3, 3) < 0.4)
    geometry, weight = ConvGeometry(padding=(1, 1)), pack_weight(w)
    xb = Blocked.from_tensor(ext, x, (1, 1))
    window = MaxPool(nn.MaxPool2d(3, 2, 1)).fused_window(12, 29) if pooled else None
    full = tile_floats(ext) // ext.vector_width()

    def run(tile: int | None) -> torch.Tensor:
        return sparse_conv2d_blocked(ext, xb, weight, None, geometry, (2, 2), PlanCache(), None, True, (0, 0), window, tile).to_tensor()

    default = run(None)
    for tile in range(1 if not pooled else 2, full + 1):  # a fused 3x3 pool needs runs of >= 2 columns
        assert torch.equal(run(tile), default)
    expected = torch.relu(F.conv2d(x, w, None, 1, 1))
    assert _rel_error(default, F.max_pool2d(expected, 3, 2, 1) if pooled else expected) <= RTOL
    for bad in (0, full + 1):
        with pytest.raises(ValueError, match="tile must be in"):
            run(bad)
    if pooled:
        with pytest.raises(ValueError, match="under the fused pool's 2"):
            run(1)


def test_blocked_conv_reads_contiguous_planes_too(ext):
    x = torch.randn(ext.vector_width() + 1, 6, 14, 14)
    w = torch.randn(5, 6, 3, 3) * (torch.rand(5, 6, 3, 3) < 0.3)
    padded = Blocked.from_tensor(ext, x, (1, 1))
    dense_planes = Blocked(padded.data.contiguous(), padded.batch, padded.halo)
    assert dense_planes.data.stride(1) != padded.data.stride(1)
    geometry = ConvGeometry(padding=(1, 1))
    outs = [
        sparse_conv2d_blocked(ext, b, pack_weight(w), None, geometry, (2, 2), PlanCache(), None, False, (0, 0)).to_tensor()
        for b in (padded, dense_planes)
    ]
    assert torch.equal(outs[0], outs[1])
    assert _rel_error(outs[0], F.conv2d(x, w, padding=1)) <= RTOL


L2 = 2 * 1024 * 1024  # a Sapphire Rapids core's


@settings(max_examples=200, deadline=None)
@given(
    ho=st.integers(1, 60),
    wo=st.integers(1, 60),
    cout=st.integers(1, 2048),
    nonzeros=st.integers(0, 4_000_000),
    input_bytes=st.integers(0, 4_000_000),
    groups=st.integers(1, 8),
    tile=st.integers(1, 16),
    vector=st.sampled_from([4, 8, 16]),
    threads=st.integers(1, 8),
    min_band=st.integers(1, 4),
)
def test_task_shape_bands_only_working_sets_beyond_l2(
    ho, wo, cout, nonzeros, input_bytes, groups, tile, vector, threads, min_band
):
    task = blocked_task_shape(ho, wo, cout, nonzeros, input_bytes, groups, tile, vector, threads, L2, min_band)
    assert 1 <= task.band <= ho and 1 <= task.rows <= cout and task.tile == tile
    assert task.band >= min(ho, min_band)  # a fused pool's window less one
    bands = -(-ho // task.band)
    assert (bands - 1) * task.band < ho  # balanced: no empty band
    columns = -(-wo // -(-wo // tile))
    working_set = 8 * nonzeros + input_bytes + 4 * vector * columns * min(cout, ROWS_PER_TASK)
    if working_set <= L2_FILL * L2:
        assert task.band == min(ho, min_band)
        return
    acc_row = 4 * vector * columns * min(cout, BANDED_ROWS)  # partial sums of one output row
    if ho >= 2 and L2_ACC_BUDGET // acc_row >= 2:
        assert task.band >= 2
    if task.band > 1:
        assert task.rows <= BANDED_ROWS and task.band * acc_row <= L2_ACC_BUDGET


def test_task_shape_bands_the_layers_whose_working_set_outgrows_l2():
    # Sparse Wide ResNet-18 at s = 0.9, batch 16, AVX-512 (8-column tiles): layer4's 1619-channel
    # 7 x 7 convs (18.9 MB of weights) and layer2's 405-channel 28 x 28 convs (1.18 MB of weights,
    # 0.7 MB input slice per task) reuse their weights over bands of rows; layer1's 202-channel
    # 56 x 56 convs (0.29 + 0.39 MB) and layer2's first, stride-2 conv (0.59 + 0.58 MB) do not band.
    assert blocked_task_shape(7, 7, 1619, 2358687, 2797632, 1, 8, 16, 2, L2).band == 7
    assert blocked_task_shape(28, 28, 405, 147636, 699840, 1, 8, 16, 2, L2).band == 7
    assert blocked_task_shape(56, 56, 202, 36645, 387840, 1, 8, 16, 2, L2).band == 1
    assert blocked_task_shape(28, 28, 405, 73876, 581760, 1, 8, 16, 2, L2).band == 1


def test_l2_cache_size_is_read_from_the_system(monkeypatch):
    size = l2_cache_bytes()
    assert 64 * 1024 <= size <= 1024 * 1024 * 1024 and size % 1024 == 0
    monkeypatch.setattr(blocked_module.os, "sysconf_names", {})  # the /sys fallback reads the same size
    l2_cache_bytes.cache_clear()
    try:
        assert l2_cache_bytes() in (size, blocked_module.FALLBACK_L2_BYTES)
    finally:
        l2_cache_bytes.cache_clear()


def test_blocked_conv_rejects_a_short_halo_and_wide_strides(ext):
    w = torch.randn(4, 4, 3, 3)
    x = Blocked.from_tensor(ext, torch.randn(16, 4, 8, 8), (0, 1))
    with pytest.raises(ValueError, match="halo"):
        sparse_conv2d_blocked(ext, x, pack_weight(w), None, ConvGeometry(padding=(1, 1)), (2, 2), PlanCache(), None, False, (0, 0))
    with pytest.raises(ValueError, match="column stride"):
        sparse_conv2d_blocked(ext, x, pack_weight(w), None, ConvGeometry(stride=(1, 3)), (0, 0), PlanCache(), None, False, (0, 0))


def test_compiled_model_passes_blocked_activations_between_sparse_convs(ext, monkeypatch):
    torch.manual_seed(0)
    model = randomise(SmallNet(width=16), {"conv_a.weight": 0.9, "conv_b.weight": 0.9, "down.weight": 0.9,
                                            "grouped.weight": 0.9, "point.weight": 0.9}, masks=False)
    x = torch.randn(ext.vector_width() + 5, 3, 12, 12)
    compiled = compile(model, x)
    layers = {m.plan.name: m for m in compiled.module.modules() if hasattr(m, "blocked_halo")}
    assert layers["stem.0"].blocked_halo == (1, 1)  # conv_a reads it with padding 1
    assert layers["point"].blocked_halo == (0, 0)  # read by the head through as_tensor only
    seen: list[tuple[str, type, type]] = []
    hooks = [
        layer.register_forward_hook(lambda m, args, out: seen.append((m.plan.name, type(args[0]), type(out))))
        for layer in layers.values()
    ]
    with torch.no_grad():
        expected = model(x)
    assert _rel_error(compiled(x), expected) <= RTOL
    for hook in hooks:
        hook.remove()
    kinds = {name: (inp, out) for name, inp, out in seen}
    assert kinds["conv_b"] == (Blocked, Blocked)  # sparse after sparse: no conversion
    assert kinds["depthwise"][0] is Blocked and kinds["depthwise"][1] is torch.Tensor  # dense reads blocked
    assert kinds["stem.0"] == (torch.Tensor, torch.Tensor)  # dense stem: plain tensors
    # small batches never block; copies and pickles keep the plan
    assert _rel_error(compiled(x[:2]), model(x[:2]).detach()) <= RTOL
    for clone in (copy.deepcopy(compiled), pickle.loads(pickle.dumps(compiled))):
        assert _rel_error(clone(x), expected) <= RTOL


def test_untraceable_models_never_see_blocked_activations(ext):
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(4, 8, 3, padding=1)
            self.b = nn.Conv2d(8, 8, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.a(x)
            if float(y.detach().sum()) > 1e9:  # data-dependent: torch.fx cannot trace this
                return y
            return self.b(y.relu()).relu()

    model = randomise(Branchy(), {"a.weight": 0.9, "b.weight": 0.9}, masks=False)
    x = torch.randn(ext.vector_width() * 2, 4, 9, 9)
    compiled = compile(model, x)
    assert not compiled.traced
    assert _rel_error(compiled(x), model(x).detach()) <= RTOL
