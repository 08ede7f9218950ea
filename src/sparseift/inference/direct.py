"""Dense convs of any kernel, stride and dilation through the Winograd kernel's strip product.

``y[p, co] = sum over taps t and input channels ci of x[input pixel of p under t, ci] * w[t][ci][co]``:
each task gathers its output pixels' inputs, all taps of a pixel in one row (an im2col of that
chunk only), multiplies them by the weight as one ``kh kw Cin x Cout`` matrix in the register
blocks of :mod:`~sparseift.inference.winograd`'s product, and adds bias, residual and ReLU as it
stores (``direct_conv_out`` in ``csrc/winograd.cpp``). It reads the
weight itself: 9 / 16 of F(2x2, 3x3)'s transformed weights, which at batch 1 stream from memory at
every pass, and it takes the strided convs that Winograd does not.
"""

from __future__ import annotations

from types import ModuleType

import torch

from sparseift.inference.blocked import l2_cache_bytes
from sparseift.inference.kernels import ConvGeometry
from sparseift.inference.winograd import WinogradTasks, channels_last_operands, pack_strips

__all__ = ["direct_weight", "direct_tasks", "direct_conv2d"]


def direct_weight(weight: torch.Tensor, vector_width: int) -> torch.Tensor:
    """A ``[Cout, Cin, kh, kw]`` weight packed for the strip product as one ``K x Cout`` matrix,
    ``K = kh kw Cin``: float32 ``[1, Cout' / (2 vw), K, 2 vw]``, row ``k = (kw i + j) Cin + c``
    holding ``w[:, c, i, j]`` (the order in which the kernel gathers a pixel's inputs)."""
    if weight.dim() != 4:
        raise ValueError(f"weight must be [Cout, Cin, kh, kw], got {list(weight.shape)}")
    if vector_width < 1:
        raise ValueError(f"vector_width must be >= 1, got {vector_width}")
    cout, cin, kh, kw = weight.shape
    return pack_strips(weight.detach().float().permute(2, 3, 1, 0).reshape(1, kh * kw * cin, cout), 2 * vector_width)


def direct_tasks(pixels: int, cin: int, cout: int, taps: int, threads: int, rows: int, strip: int, l2_bytes: int) -> WinogradTasks:
    """Output pixels per task and ranges of output channels per chunk for a ``cin -> cout`` conv of
    ``taps`` taps with ``pixels`` outputs on ``threads`` threads, register blocks of ``rows`` pixels.

    A chunk is the most whole register blocks whose gathered inputs and accumulators (``4 (taps
    cin + cout')`` bytes per pixel) fill half of an ``l2_bytes`` L2 cache: each chunk reads the whole
    weight once, so chunks are as large as the cache allows. With fewer chunks than twice the
    threads (batch 1), each is split into ranges of ``strip``-wide output channel blocks, so that
    every thread has work and the weight is still read once.
    """
    sizes = (("pixels", pixels), ("cin", cin), ("cout", cout), ("taps", taps), ("threads", threads), ("rows", rows),
             ("strip", strip), ("l2_bytes", l2_bytes))
    for name, value in sizes:
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    padded = -(-cout // strip) * strip
    fit = max(rows, l2_bytes // 2 // (4 * (taps * cin + padded)) // rows * rows)
    chunk = min(fit, -(-pixels // rows) * rows)
    chunks = -(-pixels // chunk)
    parts = 1 if chunks >= 2 * threads else min(padded // strip, -(-2 * threads // chunks))
    return WinogradTasks(chunk, parts)


def direct_conv2d(
    ext: ModuleType,
    x: torch.Tensor,
    u: torch.Tensor,
    kernel: tuple[int, int],
    cout: int,
    bias: torch.Tensor | None,
    geometry: ConvGeometry,
    residual: torch.Tensor | None = None,
    relu: bool = False,
) -> torch.Tensor:
    """``relu?(conv2d(x, w, bias, stride, padding, dilation) + residual)`` for ``u`` =
    :func:`direct_weight` ``(w, vw)`` of a ``kernel``-sized weight (zero padding, the same on both
    sides; groups 1); the output is channels-last (``x`` and ``residual`` are made so)."""
    n, cin, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, geometry.stride, geometry.padding, geometry.dilation
    ho, wo = geometry.output_size((h, w), kernel, (2 * ph, 2 * pw))
    if ho < 1 or wo < 1:
        raise ValueError(f"input {h}x{w} with padding {geometry.padding} gives no output of a {kh}x{kw} conv")
    x, residual, out = channels_last_operands(x, residual, (n, cout, ho, wo))
    threads = torch.get_num_threads()
    tasks = direct_tasks(n * ho * wo, cin, cout, kh * kw, threads, ext.winograd_gemm_rows(), 2 * ext.vector_width(), l2_cache_bytes())
    ext.direct_conv_out(x, u, bias, residual, out, [sh, sw, ph, pw, dh, dw, kh, kw], relu, tasks.chunk, tasks.parts, threads)
    return out
