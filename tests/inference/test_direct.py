"""The direct path: the weight packing against the conv's definition, the kernel against
F.conv2d on every geometry (kernel sizes, strides, dilations, paddings, channel tails, task
splits, fused residual and ReLU, input strides), the task sizes, and bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from sparseift.inference import max_relative_error
from sparseift.inference.direct import direct_conv2d, direct_tasks, direct_weight
from sparseift.inference.kernels import ConvGeometry

RTOL = 1e-4


def test_direct_weight_packs_one_taps_by_cin_row_per_input_value():
    weight = torch.randn(37, 5, 3, 2)
    u = direct_weight(weight, vector_width=8)
    assert u.shape == (1, 3, 30, 16)  # K = 6 taps x 5 channels, 37 output channels in 3 strips of 16
    matrix = u[0].permute(1, 0, 2).reshape(30, 48)  # [K, Cout']
    for i in range(3):
        for j in range(2):
            for c in range(5):
                assert torch.equal(matrix[(2 * i + j) * 5 + c, :37], weight[:, c, i, j])
    assert not matrix[:, 37:].any()
    with pytest.raises(ValueError, match="weight must be"):
        direct_weight(torch.randn(4, 4), 8)
    with pytest.raises(ValueError, match="vector_width"):
        direct_weight(weight, 0)


GEOMETRIES = [  # n, cin, cout, size, kernel, stride, padding, dilation
    (1, 3, 64, 23, 7, 2, 3, 1),
    (2, 16, 40, 11, 3, 1, 1, 1),
    (3, 17, 33, 13, 3, 2, 1, 1),
    (2, 24, 48, 9, 1, 2, 0, 1),
    (1, 8, 8, 10, 3, 1, 2, 2),
    (1, 5, 7, 4, 5, 1, 2, 1),
]


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("fused", [False, True])
def test_direct_conv_matches_conv2d(ext, geometry, fused):
    n, cin, cout, size, k, s, p, d = geometry
    torch.manual_seed(0)
    x = torch.randn(n, cin, size, size)
    weight, bias = torch.randn(cout, cin, k, k), torch.randn(cout)
    expected = F.conv2d(x, weight, bias, s, p, d)
    residual = torch.randn_like(expected) if fused else None
    if fused:
        expected = torch.relu(expected + residual)
    u = direct_weight(weight, ext.vector_width())
    out = direct_conv2d(ext, x, u, (k, k), cout, bias, ConvGeometry((s, s), (p, p), (d, d)), residual, fused)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert max_relative_error(out, expected) <= RTOL


@pytest.mark.parametrize("chunk,parts", [(1, 1), (5, 3), (14, 2), (1000, 7)])
def test_direct_conv_any_task_split_and_input_strides(ext, chunk, parts):
    torch.manual_seed(1)
    x = torch.randn(2, 20, 15, 15).transpose(2, 3)  # neither contiguous nor channels-last
    weight = torch.randn(70, 20, 3, 3)
    expected = F.conv2d(x, weight, None, 2, 1)
    u = direct_weight(weight, ext.vector_width())
    out = torch.empty_like(expected, memory_format=torch.channels_last)
    xc = x.contiguous(memory_format=torch.channels_last)
    ext.direct_conv_out(xc, u, None, None, out, [2, 2, 1, 1, 1, 1, 3, 3], False, chunk, parts, 2)
    assert max_relative_error(out, expected) <= RTOL


def test_direct_conv_rejects_bad_input(ext):
    x = torch.randn(1, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    u = direct_weight(torch.randn(8, 8, 3, 3), ext.vector_width())
    out = torch.empty(1, 8, 6, 6, memory_format=torch.channels_last)
    with pytest.raises(RuntimeError, match="geometry must be"):
        ext.direct_conv_out(x, u, None, None, out, [1, 1, 1, 1], False, 4, 1, 1)
    with pytest.raises(RuntimeError, match="u must be"):  # a 3x3 packing for a 5x5 kernel
        ext.direct_conv_out(x, u, None, None, out, [1, 1, 2, 2, 1, 1, 5, 5], False, 4, 1, 1)
    with pytest.raises(RuntimeError, match="out must be"):
        ext.direct_conv_out(x, u, None, None, out, [2, 2, 1, 1, 1, 1, 3, 3], False, 4, 1, 1)
    with pytest.raises(RuntimeError, match="stride, dilation and kernel size"):
        ext.direct_conv_out(x, u, None, None, out, [0, 1, 1, 1, 1, 1, 3, 3], False, 4, 1, 1)
    with pytest.raises(RuntimeError, match="channel stride 1"):
        ext.direct_conv_out(x.contiguous(), u, None, None, out, [1, 1, 1, 1, 1, 1, 3, 3], False, 4, 1, 1)
    with pytest.raises(ValueError, match="gives no output"):
        direct_conv2d(ext, torch.randn(1, 8, 2, 2), u, (3, 3), 8, None, ConvGeometry((1, 1), (0, 0)))


@settings(max_examples=300, deadline=None)
@given(
    pixels=st.integers(1, 100000), cin=st.integers(1, 1024), cout=st.integers(1, 1024), taps=st.sampled_from([1, 9, 49]),
    threads=st.integers(1, 16), rows=st.sampled_from([6, 14]), l2_kb=st.sampled_from([256, 1024, 2048]),
)
def test_direct_task_sizes(pixels, cin, cout, taps, threads, rows, l2_kb):
    strip = 32
    chunk, parts = direct_tasks(pixels, cin, cout, taps, threads, rows, strip, l2_kb * 1024)
    assert chunk % rows == 0 and chunk >= rows
    assert chunk == rows or chunk * 4 * (taps * cin + -(-cout // strip) * strip) <= l2_kb * 1024 // 2
    assert chunk <= -(-pixels // rows) * rows  # one chunk covers a small output whole
    chunks = -(-pixels // chunk)
    assert 1 <= parts <= -(-cout // strip)
    assert parts == 1 if chunks >= 2 * threads else chunks * parts >= min(2 * threads, chunks * -(-cout // strip))


def test_direct_task_sizes_reject_bad_arguments():
    with pytest.raises(ValueError, match="pixels must be >= 1"):
        direct_tasks(0, 8, 8, 9, 2, 14, 32, 1 << 20)
    with pytest.raises(ValueError, match="l2_bytes must be >= 1"):
        direct_tasks(10, 8, 8, 9, 2, 14, 32, 0)
