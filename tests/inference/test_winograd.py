"""The Winograd F(4x4, 3x3) path: the transform identities against direct arithmetic, the
kernel against F.conv2d on every edge (tile remainders, channel tails, paddings, fused
epilogue, strides of the input, task splits), the task sizes, and the layer rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from sparseift.inference import compile, max_relative_error
from sparseift.inference.layers import path_unsupported
from sparseift.inference.blocked import Blocked
from sparseift.inference.winograd import (
    CACHED_WEIGHT_BYTES,
    MAX_CHUNK,
    TILES,
    WEIGHT_REUSE_BYTES,
    WEIGHT_TILES,
    winograd_conv2d,
    winograd_conv2d_blocked,
    winograd_tasks,
    winograd_tile,
    winograd_weight,
)
from sparseift.transforms.layers import describe

# B^T and A^T of F(4x4, 3x3) (Lavin & Gray 2016, points 0, +-1, +-2, infinity) and of
# F(2x2, 3x3) (points 0, +-1, infinity), written out independently of the kernel's factored transforms.
BT = {
    4: np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                 [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=np.float64),
    2: np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64),
}
AT = {
    4: np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], dtype=np.float64),
    2: np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64),
}


def _unpack(u: torch.Tensor, tile: int, cin: int) -> np.ndarray:
    """Packed [P, Cout'/s, Cin, s] -> U[a, a, Cin, Cout'] (a = tile + 2)."""
    return u.permute(0, 2, 1, 3).reshape(tile + 2, tile + 2, cin, -1).double().numpy()


@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize("vector_width", [1, 4, 8, 16])
def test_weight_transform_gives_the_direct_correlation_of_a_tile(vector_width, tile):
    rng = np.random.default_rng(0)
    cin, cout, a = 3, 5, tile + 2
    g = rng.standard_normal((cout, cin, 3, 3))
    d = rng.standard_normal((cin, a, a))
    u = winograd_weight(torch.from_numpy(g), vector_width, tile)
    assert u.shape == (a * a, -(-cout // (2 * vector_width)), cin, 2 * vector_width)
    unpacked = _unpack(u, tile, cin)
    assert np.all(unpacked[..., cout:] == 0)  # padding columns
    v = np.einsum("ik,ckl,jl->ijc", BT[tile], d, BT[tile])  # B^T d B per input channel
    y = np.einsum("ki,ijo,lj->okl", AT[tile], np.einsum("ijc,ijco->ijo", v, unpacked[..., :cout]), AT[tile])
    direct = np.array([[[sum(g[o, c, p, q] * d[c, k + p, l + q] for c in range(cin) for p in range(3) for q in range(3))
                         for l in range(tile)] for k in range(tile)] for o in range(cout)])
    np.testing.assert_allclose(y, direct, rtol=1e-5, atol=1e-5)  # u is float32


def test_weight_transform_rejects_other_kernels():
    with pytest.raises(ValueError, match=r"weight must be \[Cout, Cin, 3, 3\]"):
        winograd_weight(torch.zeros(4, 4, 5, 5), 8)
    with pytest.raises(ValueError, match="vector_width must be >= 1"):
        winograd_weight(torch.zeros(4, 4, 3, 3), 0)
    with pytest.raises(ValueError, match=r"tile must be one of \(4, 2\)"):
        winograd_weight(torch.zeros(4, 4, 3, 3), 8, tile=6)


def test_tile_choice_weighs_products_against_reading_the_weights():
    assert winograd_tile(1, 56, 56) == 4 and winograd_tile(64, 7, 7) == 4  # many tiles: fewer products
    assert winograd_tile(1, 7, 7) == 2 and winograd_tile(1, 14, 14) == 2  # few tiles: 16 / 36 of the weights
    for batch, size in ((1, 7), (1, 14), (1, 56), (64, 7)):  # against the cost written out
        costs = {t: (t + 2) ** 2 * (batch * (-(-size // t)) ** 2 + WEIGHT_TILES) for t in TILES}
        assert winograd_tile(batch, size, size) == min(costs, key=costs.get)
    with pytest.raises(ValueError, match="height must be >= 1"):
        winograd_tile(1, 0, 4)


def _reference(x, weight, bias, padding, residual, relu):
    y = F.conv2d(x, weight, bias, padding=padding)
    if residual is not None:
        y = y + residual
    return torch.relu(y) if relu else y


@pytest.mark.parametrize(
    ("batch", "cin", "cout", "size", "padding"),
    [(1, 13, 21, 9, (1, 1)), (3, 16, 32, (13, 6), (1, 1)), (2, 8, 8, 4, (0, 0)), (1, 5, 3, 1, (1, 1)),
     (2, 24, 17, (7, 10), (2, 0)), (1, 70, 40, 14, (1, 1))],
)
@pytest.mark.parametrize("epilogue", ["bias", "none", "residual_relu"])
@pytest.mark.parametrize("tile", TILES)
def test_kernel_matches_conv2d(ext, batch, cin, cout, size, padding, epilogue, tile):
    torch.manual_seed(0)
    h, w = (size, size) if isinstance(size, int) else size
    x = torch.randn(batch, cin, h, w)
    weight = torch.randn(cout, cin, 3, 3)
    bias = torch.randn(cout) if epilogue != "none" else None
    ho, wo = h + 2 * padding[0] - 2, w + 2 * padding[1] - 2
    residual = torch.randn(batch, cout, ho, wo) if epilogue == "residual_relu" else None
    relu = epilogue == "residual_relu"
    expected = _reference(x, weight, bias, padding, residual, relu)
    u = winograd_weight(weight, ext.vector_width(), tile)
    out = winograd_conv2d(ext, x, u, cout, bias, padding, residual, relu)  # NCHW in: made channels-last
    assert out.shape == expected.shape and out.is_contiguous(memory_format=torch.channels_last)
    assert max_relative_error(out, expected) <= 1e-5


@pytest.mark.parametrize(("chunk", "parts"), [(1, 1), (6, 1), (7, 3), (96, 1), (12, 64)])
@pytest.mark.parametrize("tile", TILES)
def test_task_splits_and_threads_give_the_same_bits(ext, chunk, parts, tile):
    torch.manual_seed(1)
    x = torch.randn(2, 19, 11, 11).contiguous(memory_format=torch.channels_last)
    weight, bias = torch.randn(45, 19, 3, 3), torch.randn(45)
    u = winograd_weight(weight, ext.vector_width(), tile)
    outs = []
    for threads in (1, 2, 3):
        out = torch.full((2, 45, 11, 11), float("nan")).contiguous(memory_format=torch.channels_last)
        ext.winograd_conv_out(x, u, bias, None, out, 1, 1, False, chunk, parts, threads)
        outs.append(out)
    assert max_relative_error(outs[0], F.conv2d(x, weight, bias, padding=1)) <= 1e-5  # every output written
    assert all(torch.equal(outs[0], other) for other in outs[1:])


def test_kernel_reads_strided_inputs_and_writes_strided_outputs(ext):
    torch.manual_seed(2)
    base = torch.randn(2, 12, 12, 40)  # NHWC storage, channels 8..24 of it taken: channel stride 1, pixel stride 40
    x = base[..., 8:24].permute(0, 3, 1, 2)
    weight = torch.randn(16, 16, 3, 3)
    u = winograd_weight(weight, ext.vector_width())
    out_base = torch.zeros(2, 12, 12, 24)
    out = out_base[..., 4:20].permute(0, 3, 1, 2)
    ext.winograd_conv_out(x, u, None, None, out, 1, 1, False, 6, 1, 2)
    assert max_relative_error(out, F.conv2d(x, weight, padding=1)) <= 1e-5
    assert torch.all(out_base[..., :4] == 0) and torch.all(out_base[..., 20:] == 0)  # nothing outside the view


def test_kernel_rejects_bad_arguments(ext):
    x = torch.randn(1, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    u = winograd_weight(torch.randn(8, 8, 3, 3), ext.vector_width())
    out = torch.empty(1, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    with pytest.raises(RuntimeError, match="channel stride 1"):
        ext.winograd_conv_out(x.contiguous(), u, None, None, out, 1, 1, False, 6, 1, 1)
    with pytest.raises(RuntimeError, match="u must be"):
        ext.winograd_conv_out(x, u[:, :, :4], None, None, out, 1, 1, False, 6, 1, 1)
    with pytest.raises(RuntimeError, match="u must have 36"):
        ext.winograd_conv_out(x, u[:20].contiguous(), None, None, out, 1, 1, False, 6, 1, 1)
    with pytest.raises(RuntimeError, match="out must be"):
        ext.winograd_conv_out(x, u, None, None, out, 0, 0, False, 6, 1, 1)
    with pytest.raises(RuntimeError, match="chunk and parts must be >= 1"):
        ext.winograd_conv_out(x, u, None, None, out, 1, 1, False, 0, 1, 1)
    with pytest.raises(ValueError, match="gives no output"):
        winograd_conv2d(ext, torch.randn(1, 8, 1, 1), u, 8, None, (0, 0))


@settings(max_examples=300, deadline=None)
@given(
    tiles=st.integers(1, 20000), cin=st.integers(1, 1024), cout=st.integers(1, 1024), threads=st.integers(1, 16),
    strip=st.sampled_from([8, 16, 32]), layout=st.sampled_from([(6, 1), (14, 1), (3, 8), (3, 16)]),
    points=st.sampled_from([16, 36]),
)
def test_task_sizes(tiles, cin, cout, threads, strip, layout, points):
    rows, lanes = layout  # channels-last: 6- (AVX2) or 14-tile (AVX-512) register blocks; blocked: 3 tiles of `lanes` images
    chunk, parts = winograd_tasks(tiles, cin, cout, threads, rows=rows, strip=strip, lanes=lanes, points=points)
    assert chunk % rows == 0 and rows <= chunk <= max(rows, -(-(MAX_CHUNK // lanes) // rows) * rows)
    assert 1 <= parts <= -(-cout // strip)
    chunks = -(-tiles // chunk)
    if chunks >= 2 * threads:
        assert parts == 1
    weights = points * 4 * cin * -(-cout // strip) * strip
    if weights <= CACHED_WEIGHT_BYTES and tiles >= rows * 8 * threads:  # every thread gets 8 tasks (whole register blocks)
        assert chunks >= 8 * threads or chunk == rows
    if weights > CACHED_WEIGHT_BYTES and tiles * lanes * WEIGHT_REUSE_BYTES <= weights and tiles <= MAX_CHUNK // lanes:
        assert chunks == 1  # weights streamed from memory: read once, the threads split the output channels


def test_task_sizes_reject_bad_arguments():
    with pytest.raises(ValueError, match="threads must be >= 1"):
        winograd_tasks(10, 8, 8, 0, 6)
    with pytest.raises(ValueError, match="rows must be >= 1"):
        winograd_tasks(10, 8, 8, 2, 0)


class _Convs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.plain = nn.Conv2d(8, 12, 3, padding=1)
        self.same = nn.Conv2d(12, 12, 3, padding="same", bias=False)
        self.dilated = nn.Conv2d(12, 12, 3, padding=2, dilation=2)
        self.strided = nn.Conv2d(12, 12, 3, stride=2, padding=1)
        self.reflect = nn.Conv2d(12, 12, 3, padding=1, padding_mode="reflect")
        self.grouped = nn.Conv2d(12, 12, 3, padding=1, groups=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.plain(x))
        y = self.same(y) + y
        return self.grouped(self.reflect(self.strided(self.dilated(y))))


def test_dense_3x3_stride1_convs_take_winograd_and_match_eager(ext):
    torch.manual_seed(3)
    model = _Convs().eval()
    x = torch.randn(2, 8, 15, 15)
    compiled = compile(model, example_inputs=x)
    paths = {p.name: p.path for p in compiled.plans}
    assert paths == {"plain": "winograd", "same": "winograd", "dilated": "dense_cl", "strided": "dense_cl",
                     "reflect": "dense_cl", "grouped": "dense_cl"}
    reasons = {name: path_unsupported(describe(getattr(model, name)), "winograd", True) for name in paths}
    assert "padding_mode" in reasons["reflect"] and all(reasons[n] for n in ("dilated", "strided", "grouped"))
    with torch.no_grad():
        expected = model(x)
    assert max_relative_error(compiled(x), expected) <= 1e-5
    assert max_relative_error(compiled(x.contiguous(memory_format=torch.channels_last)), expected) <= 1e-5
    fused = {p.name: p.fused for p in compiled.plans}
    assert fused["plain"] == ("relu",) and fused["same"] == ("add",)
    without = compile(model, use_kernels=False)
    assert all(p.path != "winograd" for p in without.plans)


@pytest.mark.parametrize(("batch", "cin", "cout", "size"), [(3, 13, 21, 9), (17, 8, 40, (6, 11)), (9, 35, 5, 4)])
@pytest.mark.parametrize(("in_halo", "out_halo", "res_halo"), [((0, 0), (0, 0), (0, 0)), ((1, 1), (1, 2), (1, 1)), ((2, 0), (0, 1), (0, 0))])
@pytest.mark.parametrize("tile", TILES)
def test_blocked_kernel_matches_conv2d(ext, batch, cin, cout, size, in_halo, out_halo, res_halo, tile):
    torch.manual_seed(4)
    h, w = (size, size) if isinstance(size, int) else size
    x, weight, bias = torch.randn(batch, cin, h, w), torch.randn(cout, cin, 3, 3), torch.randn(cout)
    residual = torch.randn(batch, cout, h, w)
    expected = _reference(x, weight, bias, (1, 1), residual, True)
    u = winograd_weight(weight, ext.vector_width(), tile)
    out = winograd_conv2d_blocked(
        ext, Blocked.from_tensor(ext, x, in_halo), u, cout, bias, (1, 1), Blocked.from_tensor(ext, residual, res_halo), True, out_halo
    )
    assert out.halo == out_halo and out.shape == expected.shape
    assert max_relative_error(out.to_tensor(), expected) <= 1e-5
    data, (hh, hw) = out.data, out_halo  # the halo is zero, for the next conv's padding
    interior = torch.zeros_like(data, dtype=torch.bool)
    interior[:, :, hh:hh + h, hw:hw + w] = True
    assert torch.all(data[~interior] == 0)


def test_sparse_and_winograd_convs_pass_blocked_activations(ext):
    torch.manual_seed(5)
    model = _Chain().eval()
    with torch.no_grad():
        model.sparse.weight.mul_(torch.rand(model.sparse.weight.shape) < 0.1)
    x = torch.randn(ext.vector_width() + 3, 8, 12, 12)
    compiled = compile(model, example_inputs=x)
    assert [p.path for p in compiled.plans] == ["sparse", "winograd", "winograd"]
    modules = dict(compiled.module.named_modules())
    seen: dict[str, tuple[type, type]] = {}
    hooks = [modules[name].register_forward_hook(lambda m, args, out, name=name: seen.__setitem__(name, (type(args[0]), type(out))))
             for name in ("sparse", "first", "second")]
    with torch.no_grad():
        expected = model(x)
        actual = compiled(x)
    for hook in hooks:
        hook.remove()
    assert max_relative_error(actual, expected) <= 1e-5
    assert seen["first"] == (Blocked, Blocked) and seen["second"] == (Blocked, Blocked)  # flatten reads it via as_tensor
    small = x[:2]  # below the vector width: nothing blocked, Winograd on channels-last
    with torch.no_grad():
        assert max_relative_error(compiled(small), model(small)) <= 1e-5


class _Chain(nn.Module):
    """A sparse conv (blocked output) feeding two dense 3x3 convs, the second with a residual."""

    def __init__(self) -> None:
        super().__init__()
        self.sparse = nn.Conv2d(8, 16, 3, padding=1)
        self.first = nn.Conv2d(16, 16, 3, padding=1)
        self.second = nn.Conv2d(16, 16, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.sparse(x))
        return torch.relu(self.second(torch.relu(self.first(y))) + y).flatten(1)
