"""The sparse kernels against PyTorch's dense ops, layer by layer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from sparseift.inference.kernels import (
    L1_BUDGET,
    ROWS_PER_TASK,
    TASKS_PER_THREAD,
    ConvGeometry,
    TAP_CLASSES,
    Layout,
    PlanCache,
    block_channels,
    pack_weight,
    plan_layout,
    rows_per_task,
    sparse_conv2d,
    sparse_linear,
)

RTOL = 1e-4


def _rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-12))


def _sparse_weight(shape: tuple[int, ...], density: float) -> torch.Tensor:
    return torch.randn(shape) * (torch.rand(shape) < density)


def _conv(ext, x, w, b, stride, padding, dilation, groups, residual=None, relu=False):
    geometry = ConvGeometry((stride, stride), (padding, padding), (dilation, dilation))
    return sparse_conv2d(
        ext, x, pack_weight(w, groups), b, geometry, (2 * padding, 2 * padding), PlanCache(), residual, relu
    )


# (cin, cout, kernel, stride, padding, dilation, groups)
CONVS = [
    (8, 16, 3, 1, 1, 1, 1),
    (8, 16, 3, 2, 1, 1, 1),
    (16, 8, 1, 1, 0, 1, 1),
    (16, 8, 1, 2, 0, 1, 1),
    (8, 12, 3, 1, 1, 1, 4),
    (12, 12, 3, 1, 1, 1, 12),  # depthwise
    (12, 12, 3, 2, 1, 1, 12),  # depthwise, strided
    (6, 10, 5, 1, 2, 2, 2),  # dilated, grouped
    (3, 8, 7, 2, 3, 1, 1),  # a ResNet stem
    (8, 8, 3, 3, 0, 1, 1),  # stride 3, no padding
]


@pytest.mark.parametrize("density", [0.05, 0.3, 1.0])
@pytest.mark.parametrize("cin,cout,k,stride,padding,dilation,groups", CONVS)
def test_conv_matches_dense(ext, cin, cout, k, stride, padding, dilation, groups, density):
    x = torch.randn(2, cin, 11, 13)
    w = _sparse_weight((cout, cin // groups, k, k), density)
    b = torch.randn(cout)
    expected = F.conv2d(x, w, b, stride, padding, dilation, groups)
    assert _rel_error(_conv(ext, x, w, b, stride, padding, dilation, groups), expected) <= RTOL


@pytest.mark.parametrize("batch", [16, 21, 40])
@pytest.mark.parametrize("cin,cout,k,stride,padding,dilation,groups", CONVS[:5] + CONVS[7:9])
def test_conv_large_batch_images_in_lanes(ext, batch, cin, cout, k, stride, padding, dilation, groups):
    x = torch.randn(batch, cin, 9, 10).to(memory_format=torch.channels_last)
    w = _sparse_weight((cout, cin // groups, k, k), 0.3)
    b = torch.randn(cout)
    out_shape = F.conv2d(x, w, b, stride, padding, dilation, groups).shape
    residual = torch.randn(out_shape)
    expected = torch.relu(F.conv2d(x, w, b, stride, padding, dilation, groups) + residual)
    actual = _conv(ext, x, w, b, stride, padding, dilation, groups, residual, True)
    assert _rel_error(actual, expected) <= RTOL


@pytest.mark.parametrize("size", [(1, 1), (7, 7), (14, 9), (40, 33)])
def test_conv_sizes_batch_one_residual_relu(ext, size):
    x = torch.randn(1, 16, *size)
    w = _sparse_weight((24, 16, 3, 3), 0.2)
    b = torch.randn(24)
    residual = torch.randn(1, 24, *size)
    expected = torch.relu(F.conv2d(x, w, b, 1, 1) + residual)
    assert _rel_error(_conv(ext, x, w, b, 1, 1, 1, 1, residual, True), expected) <= RTOL


def test_conv_non_contiguous_and_channels_last_inputs(ext):
    w = _sparse_weight((16, 8, 3, 3), 0.25)
    base = torch.randn(2, 8, 20, 18)
    inputs = [
        base.to(memory_format=torch.channels_last),
        torch.randn(2, 8, 20, 36)[..., ::2],  # strided last axis
        torch.randn(8, 2, 20, 18).transpose(0, 1),  # batch and channel swapped
    ]
    for x in inputs:
        assert not x.is_contiguous()
        expected = F.conv2d(x.contiguous(), w, None, 2, 1)
        assert _rel_error(_conv(ext, x, w, None, 2, 1, 1, 1), expected) <= RTOL
    residual = torch.randn(2, 16, 20, 18).to(memory_format=torch.channels_last)
    expected = F.conv2d(base, w, None, 1, 1) + residual
    assert _rel_error(_conv(ext, base, w, None, 1, 1, 1, 1, residual), expected) <= RTOL


def test_empty_rows_and_all_zero_layer(ext):
    x = torch.randn(2, 8, 9, 9)
    w = _sparse_weight((12, 8, 3, 3), 0.5)
    w[::3] = 0  # every third output channel has no non-zero
    b = torch.randn(12)
    assert _rel_error(_conv(ext, x, w, b, 1, 1, 1, 1), F.conv2d(x, w, b, 1, 1)) <= RTOL
    zero = torch.zeros(12, 8, 3, 3)
    out = _conv(ext, x, zero, b, 1, 1, 1, 1, relu=True)
    assert torch.equal(out, torch.relu(b).reshape(1, 12, 1, 1).expand(2, 12, 9, 9))
    assert torch.equal(_conv(ext, x, zero, None, 1, 1, 1, 1), torch.zeros(2, 12, 9, 9))


@pytest.mark.parametrize("shape", [(5, 40), (1, 1, 40), (3, 17, 40), (2, 128, 40)])
@pytest.mark.parametrize("density", [0.0, 0.1, 0.6])
def test_linear_matches_dense(ext, shape, density):
    x = torch.randn(shape)
    w = _sparse_weight((24, 40), density)
    b = torch.randn(24)
    residual = torch.randn(*shape[:-1], 24)
    cache = PlanCache()
    out = sparse_linear(ext, x, pack_weight(w), b, cache, residual, relu=True)
    expected = torch.relu(F.linear(x, w, b) + residual)
    assert out.shape == expected.shape
    assert _rel_error(out, expected) <= RTOL
    transposed = torch.randn(shape[-1], *shape[:-1]).movedim(0, -1)  # non-contiguous rows
    assert _rel_error(sparse_linear(ext, transposed, pack_weight(w), None, cache), F.linear(transposed, w)) <= RTOL


@settings(max_examples=60, deadline=None)
@given(
    cout=st.integers(1, 9),
    cin_g=st.integers(1, 9),
    groups=st.integers(1, 3),
    k=st.sampled_from([1, 3]),
    density=st.floats(0.0, 1.0),
    block=st.integers(1, 10),
    seed=st.integers(0, 2**16),
)
def test_block_major_order_holds_each_rows_block_run(cout, cin_g, groups, k, density, block, seed):
    g = torch.Generator().manual_seed(seed)
    cout *= groups
    w = torch.randn(cout, cin_g, k, k, generator=g) * (torch.rand(cout, cin_g, k, k, generator=g) < density)
    csr = pack_weight(w, groups)
    block_ptr, order = csr.block_major(block)
    assert block_ptr.shape == (-(-cin_g // block), TAP_CLASSES * cout + 1)
    assert sorted(order.tolist()) == list(range(csr.nnz))  # a permutation
    rows = torch.repeat_interleave(torch.arange(cout), csr.row_ptr.diff())
    for b in range(block_ptr.shape[0]):
        for co in range(cout):
            i = TAP_CLASSES * co
            assert block_ptr[b, i + 1] == block_ptr[b, i + TAP_CLASSES]  # without runs: single taps only
            run = order[block_ptr[b, i] : block_ptr[b, i + 1]]
            expected = ((rows == co) & ((csr.channel % cin_g) // block == b)).nonzero().flatten()
            assert run.tolist() == expected.tolist()  # the row's block, in column order
    assert int(block_ptr[0, 0]) == 0 and int(block_ptr[-1, -1]) == csr.nnz
    plan = csr.plan(block, torch.arange(csr.nnz, dtype=torch.int32))
    assert torch.equal(plan.values, csr.values[order]) and plan.offsets.tolist() == order.tolist()


# the taps (steps m of a window of three) that each class's runs hold
_CLASS_STEPS = [None, (0, 1), (0, 2), (0, 1, 2)]


@settings(max_examples=80, deadline=None)
@given(
    cout=st.integers(1, 6),
    cin_g=st.integers(1, 6),
    k=st.sampled_from([1, 3, 5, 7]),
    column_step=st.integers(1, 3),
    dilation=st.integers(1, 2),
    density=st.floats(0.0, 1.0),
    block=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_shared_load_runs_group_taps_a_load_apart(cout, cin_g, k, column_step, dilation, density, block, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(cout, cin_g, k, k, generator=g) * (torch.rand(cout, cin_g, k, k, generator=g) < density)
    csr = pack_weight(w)
    block_ptr, order = csr.block_major(block, csr.shared_load_runs(column_step, dilation))
    assert sorted(order.tolist()) == list(range(csr.nnz))
    rows = torch.repeat_interleave(torch.arange(cout), csr.row_ptr.diff())
    covered = 0
    for b in range(block_ptr.shape[0]):
        for co in range(cout):
            members = ((rows == co) & (csr.channel // block == b)).nonzero().flatten().tolist()
            taken = []
            for c in range(TAP_CLASSES):
                slots = order[block_ptr[b, TAP_CLASSES * co + c] : block_ptr[b, TAP_CLASSES * co + c + 1]].tolist()
                width = 1 if c == 0 else len(_CLASS_STEPS[c])
                assert len(slots) % width == 0
                for start in range(0, len(slots), width):
                    run = slots[start : start + width]
                    taps = [(int(csr.channel[j]), int(csr.tap_h[j])) for j in run]
                    assert len(set(taps)) == 1  # one input channel and kernel row
                    columns = [int(csr.tap_w[j]) * dilation for j in run]
                    if c > 0:  # the class's steps, counted from the run's first tap
                        assert [(a - columns[0]) % column_step for a in columns] == [0] * width
                        assert tuple((a - columns[0]) // column_step for a in columns) == _CLASS_STEPS[c]
                taken += slots
            assert sorted(taken) == members
            covered += len(taken)
    assert covered == csr.nnz


def test_shared_load_runs_by_hand():
    def classes(w: torch.Tensor, column_step: int) -> list[int]:  # non-zeros per class of the one row
        csr = pack_weight(w)
        block_ptr, _ = csr.block_major(1, csr.shared_load_runs(column_step, 1))
        return block_ptr[0].diff().tolist()

    dense = torch.ones(1, 1, 3, 3)
    assert classes(dense, 1) == [0, 0, 0, 9]  # three triples, one per kernel row
    assert classes(dense, 2) == [3, 6, 0, 0]  # stride 2: kw 0 and 2 one step apart, kw 1 alone
    row = torch.zeros(1, 1, 1, 3)
    assert classes(row.index_fill(3, torch.tensor([0, 2]), 1.0), 1) == [0, 0, 2, 0]  # two steps apart
    assert classes(row.index_fill(3, torch.tensor([1, 2]), 1.0), 1) == [0, 2, 0, 0]
    assert classes(row.index_fill(3, torch.tensor([1]), 1.0), 1) == [1, 0, 0, 0]
    wide = torch.ones(1, 1, 1, 5)  # steps 0-2 and 3-4: one triple and one pair
    csr = pack_weight(wide * torch.arange(1.0, 6.0))
    block_ptr, order = csr.block_major(1, csr.shared_load_runs(1, 1))
    assert block_ptr[0].diff().tolist() == [0, 2, 0, 3]
    assert csr.values[order].tolist() == [4.0, 5.0, 1.0, 2.0, 3.0]  # each run's taps in column order


def test_pack_weight_by_hand():
    w = torch.tensor([[[[0.0, 2.0], [0.0, 0.0]], [[0.0, 0.0], [3.0, 0.0]]], [[[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 5.0]]]])
    csr = pack_weight(w)  # [Cout=2, Cin=2, 2, 2]
    assert csr.row_ptr.tolist() == [0, 2, 3]
    assert csr.values.tolist() == [2.0, 3.0, 5.0]
    assert csr.channel.tolist() == [0, 1, 1]
    assert (csr.tap_h.tolist(), csr.tap_w.tolist()) == ([0, 1, 1], [1, 0, 1])
    assert csr.density == pytest.approx(3 / 16)
    # block-major: block 0 (channel 0) holds row 0's first non-zero, block 1 the other two
    singles = slice(0, None, TAP_CLASSES)  # each row's first run: its single taps
    block_ptr, order = csr.block_major(1)
    assert block_ptr[:, singles].tolist() == [[0, 1, 1], [1, 2, 3]] and order.tolist() == [0, 1, 2]
    block_ptr, order = csr.block_major(2)
    assert block_ptr[:, singles].tolist() == [[0, 2, 3]] and order.tolist() == [0, 1, 2]
    # rows 0 and 1 both in channel 0, row 0 also in channel 1: block 0 takes non-zeros 0 and 2
    mixed = pack_weight(torch.tensor([[1.0, 2.0], [3.0, 0.0]]))
    block_ptr, order = mixed.block_major(1)
    assert block_ptr[:, singles].tolist() == [[0, 1, 2], [2, 3, 3]] and order.tolist() == [0, 2, 1]
    # one image, stride 1, plane Hq x Wq = 3 x 4: offset = (c * Hq + kh) * Wq + kw
    flat = Layout(ho=2, wo=3, hq=3, wq=4, phases=1, lanes=1, shifts=1, copy=1000)
    assert csr.offsets(ConvGeometry(), flat).tolist() == [1, 16, 17]
    # stride 2: tap (kh, kw) lands in phase (kh % 2) * 2 + kw % 2 at offset (kh // 2, kw // 2)
    strided = Layout(ho=2, wo=3, hq=3, wq=4, phases=4, lanes=1, shifts=1, copy=1000)
    assert csr.offsets(ConvGeometry(stride=(2, 2)), strided).tolist() == [12, (1 * 4 + 2) * 12, (1 * 4 + 3) * 12]
    # shifted copies: a tap with kw = k reads copy k at its unshifted column
    shifted = Layout(ho=2, wo=3, hq=3, wq=16, phases=1, lanes=1, shifts=2, copy=1000)
    assert csr.offsets(ConvGeometry(), shifted).tolist() == [1000, (1 * 3 + 1) * 16, 1000 + (1 * 3 + 1) * 16]
    # 16 images in the lanes: every offset is a multiple of 16
    lanes = Layout(ho=2, wo=3, hq=3, wq=4, phases=1, lanes=16, shifts=1, copy=10000)
    assert csr.offsets(ConvGeometry(), lanes).tolist() == [16, 256, 272]


def test_pack_weight_grouped_uses_absolute_channels():
    w = torch.zeros(4, 1, 1, 1)
    w[:, 0, 0, 0] = 1.0
    assert pack_weight(w, groups=4).channel.tolist() == [0, 1, 2, 3]


def test_layouts_and_blocks(ext):
    vector, tile = ext.vector_width(), ext.tile_width()
    big = plan_layout(ext, (3, 3), ConvGeometry(padding=(1, 1)), (2 * vector, 8, 56, 56), (2, 2))
    assert (big.lanes, big.shifts, big.wq, big.hq) == (vector, 1, 58, 58)
    one = plan_layout(ext, (3, 3), ConvGeometry(padding=(1, 1)), (1, 8, 56, 56), (2, 2))
    assert (one.lanes, one.shifts, one.wq % vector) == (1, 3, 0)
    tiny = plan_layout(ext, (3, 3), ConvGeometry(padding=(1, 1)), (1, 8, 2, 2), (2, 2))
    assert (tiny.shifts, tiny.wq) == (1, 4)  # rounding 4 up to a vector would grow the work too much
    assert one.copy % vector == 0 and one.copy >= 8 * one.hq * one.wq + tile
    point = plan_layout(ext, (1, 1), ConvGeometry(), (2 * vector, 64, 1, 128), (0, 0))
    assert point.lanes == 1  # 1x1 kernels keep one image per buffer at any batch
    assert block_channels(128, point, ConvGeometry(), (1, 1)) == L1_BUDGET // (4 * 128)
    assert block_channels(128, big, ConvGeometry(padding=(1, 1)), (3, 3)) == L1_BUDGET // (4 * 3 * (128 + 2 * vector))
    huge = Layout(ho=1, wo=1, hq=1, wq=1, phases=4, lanes=16, shifts=1, copy=16)
    assert block_channels(4096, huge, ConvGeometry(stride=(2, 2)), (7, 7)) == 1


def test_threads_give_the_same_result(ext):
    x = torch.randn(17, 8, 12, 12)
    w = _sparse_weight((16, 8, 3, 3), 0.3)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _conv(ext, x, w, None, 1, 1, 1, 1)
        torch.set_num_threads(3)
        assert torch.equal(_conv(ext, x, w, None, 1, 1, 1, 1), one)
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("batch, ho, wq, lanes, cout", [(64, 56, 58, 16, 202), (1, 7, 16, 1, 1619), (1, 1, 1, 1, 3), (1, 56, 64, 1, 700)])
def test_rows_per_task_balances_threads(batch, ho, wq, lanes, cout):
    layout = Layout(ho, ho, ho + 2, wq, 1, lanes, 1, 0)
    tile, threads = 256, 2
    rows = rows_per_task(layout, batch, cout, tile, threads)
    tiles = -(-batch // lanes) * -(-(ho * wq * lanes) // tile)
    chunks = -(-cout // rows)
    assert 1 <= rows <= min(ROWS_PER_TASK, cout)
    # enough tasks for every thread, unless there are fewer output channels than that needs
    assert tiles * chunks >= min(TASKS_PER_THREAD * threads, tiles * cout)
    # and no more row chunks than the cache limit or the balance needs
    assert chunks <= max(-(-cout // ROWS_PER_TASK), -(-TASKS_PER_THREAD * threads // tiles))
