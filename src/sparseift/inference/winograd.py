"""Dense 3x3 stride-1 convs by Winograd's minimal filtering F(m x m, 3x3), m = 4 or 2.

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016), eq. 8:
``Y = A^T [(G g G^T) (.) (B^T d B)] A`` for each ``(m + 2)^2`` input tile ``d`` and ``m x m``
output tile ``Y``: F(4x4, 3x3) does 36 / 16 = 2.25 multiply-adds per output, input and output
channel instead of a direct conv's 9, F(2x2, 3x3) 16 / 4 = 4 with 16 / 36 of the transformed
weights (:func:`winograd_tile` picks one per input size).
A layer of a Sparse-IFT model whose density is too high for the zero-skipping kernels
(and every 3x3 conv of a dense model) runs on it, exactly (float32 rounding only).
The transforms and products are the C++ kernel ``winograd_conv_out``; this module holds the
weight transform (done once, in float64), the choice of task sizes and the call.
"""

from __future__ import annotations

from types import ModuleType
from typing import NamedTuple

import torch
import torch.nn.functional as F

from sparseift.inference.blocked import Blocked

__all__ = [
    "WINOGRAD_G", "TILES", "winograd_weight", "pack_strips", "winograd_tile", "WinogradTasks", "winograd_tasks",
    "channels_last_operands", "winograd_conv2d", "winograd_conv2d_blocked",
]

WINOGRAD_G = {
    4: torch.tensor(
        [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
        dtype=torch.float64,
    ),
    2: torch.tensor([[1, 0, 0], [1 / 2, 1 / 2, 1 / 2], [1 / 2, -1 / 2, 1 / 2], [0, 0, 1]], dtype=torch.float64),
}
"""``G`` per output tile size ``m``: F(4x4, 3x3) with interpolation points 0, 1, -1, 2, -2 and
infinity, F(2x2, 3x3) with 0, 1, -1 and infinity (Lavin & Gray, sec. 4.1-4.2)."""

TILES = tuple(WINOGRAD_G)
"""The output tile sizes the kernel has."""

WEIGHT_TILES = 13
"""Cost of reading a layer's transformed weights once, in output tiles computed (per point,
input and output channel): ~4 bytes at ~15 GB/s against ~50 G multiply-adds/s on 2 Zen 3 cores."""


def _points(tile: int) -> int:
    return (tile + 2) ** 2

L2_BYTES = 512 * 1024
"""Scratch (transformed inputs V and products M) a task keeps within one core's L2 cache."""

WEIGHT_REUSE_BYTES = 200 * 1024
"""Transformed weights read per tile of a task at most (a task reads all of them once), for
layers whose transformed weights outgrow :data:`CACHED_WEIGHT_BYTES`: they get chunks of more
tiles than fit in L2, so that U is not streamed from memory per few tiles."""

CACHED_WEIGHT_BYTES = 16 * 1024 * 1024
"""Transformed weights that stay in the last-level cache between tasks (half of a 32 MB L3;
measured at batch 1 on a Zen 3: 8.5 MB ran best in the smallest chunks, 19 MB and more in
chunks of 24 tiles and more)."""

MAX_CHUNK = 96
TASKS_PER_THREAD = 8
LANE_TILES = 3
"""Tiles (of ``V`` images each) per register block of the batch-blocked product (``LANE_TILES``)."""


def winograd_weight(weight: torch.Tensor, vector_width: int, tile: int = 4) -> torch.Tensor:
    """``U = G g G^T`` (Lavin & Gray eq. 8) of a ``[Cout, Cin, 3, 3]`` weight for F(tile x tile, 3x3), packed for the kernel.

    Returns float32 ``[P, Cout' / (2 vw), Cin, 2 vw]`` (``P = (tile + 2)^2`` points),
    ``Cout'`` = ``Cout`` rounded up to ``2 * vector_width`` (zero columns past ``Cout``): point
    ``xi = (tile + 2) i + j`` holds ``U[i, j, cin, cout]`` in contiguous strips of
    ``2 * vector_width`` output channels.
    """
    if weight.dim() != 4 or tuple(weight.shape[2:]) != (3, 3):
        raise ValueError(f"weight must be [Cout, Cin, 3, 3], got {list(weight.shape)}")
    if vector_width < 1:
        raise ValueError(f"vector_width must be >= 1, got {vector_width}")
    if tile not in WINOGRAD_G:
        raise ValueError(f"tile must be one of {TILES}, got {tile}")
    cout, cin = weight.shape[:2]
    g, points = WINOGRAD_G[tile], _points(tile)
    u = torch.einsum("ik,ockl,jl->ijco", g, weight.detach().double(), g).reshape(points, cin, cout)
    return pack_strips(u, 2 * vector_width)


def pack_strips(u: torch.Tensor, strip: int) -> torch.Tensor:
    """``u`` ``[P, Cin, Cout]`` as the strip product reads it: float32 ``[P, Cout' / strip, Cin,
    strip]``, ``Cout'`` = ``Cout`` rounded up to ``strip`` (zero columns past ``Cout``)."""
    points, cin, cout = u.shape
    u = F.pad(u, (0, -cout % strip)).reshape(points, cin, -1, strip)
    return u.permute(0, 2, 1, 3).float().contiguous()


def _tile_of(u: torch.Tensor) -> tuple[int, int]:
    """``(tile, points)`` of a packed :func:`winograd_weight`."""
    points = int(u.shape[0])
    tile = {_points(t): t for t in TILES}.get(points)
    if tile is None:
        raise ValueError(f"u has {points} points; F(m x m, 3x3) has {[_points(t) for t in TILES]}")
    return tile, points


def winograd_tile(batch: int, height: int, width: int) -> int:
    """The output tile size of F(m x m, 3x3) for ``batch`` outputs of ``height x width``: the ``m``
    of least ``(m + 2)^2 * (tiles_m + WEIGHT_TILES)``, i.e. products plus one read of the
    transformed weights (F(2x2) has 16 / 36 of them: it wins where there are few tiles, e.g.
    7x7 and 14x14 planes at batch 1)."""
    for name, value in (("batch", batch), ("height", height), ("width", width)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")

    def cost(tile: int) -> int:
        return _points(tile) * (batch * -(-height // tile) * -(-width // tile) + WEIGHT_TILES)

    return min(TILES, key=lambda tile: (cost(tile), -tile))


class WinogradTasks(NamedTuple):
    """Tiles per task, and how many ranges of output channels split each chunk of tiles."""

    chunk: int
    parts: int


def winograd_tasks(
    tiles: int, cin: int, cout: int, threads: int, rows: int, strip: int = 16, lanes: int = 1, points: int = 36
) -> WinogradTasks:
    """Task sizes for ``tiles`` output tiles (of ``lanes`` images each, ``points`` products) of
    a ``cin -> cout`` conv on ``threads`` threads.

    A chunk is a multiple of ``rows`` (the kernel's register block of tiles) that keeps a
    task's scratch ``points * chunk * lanes * (cin + cout') * 4`` bytes within :data:`L2_BYTES`,
    grown, where the ``points * cin * cout' * 4``-byte transformed weights exceed
    :data:`CACHED_WEIGHT_BYTES`, to read at most :data:`WEIGHT_REUSE_BYTES` of them per image
    tile (at most :data:`MAX_CHUNK` image tiles, rounded up to whole register blocks), then
    shrunk until there are :data:`TASKS_PER_THREAD` tasks per thread, but not below what that
    weight reuse needs (a layer bound by reading its weights keeps all its tiles in one chunk:
    each chunk reads them once). With fewer chunks than twice the threads (batch 1, small
    planes), each chunk is split into ranges of output channels (``strip``-wide blocks), so
    every thread has work.
    """
    sizes = (("tiles", tiles), ("cin", cin), ("cout", cout), ("threads", threads), ("rows", rows), ("strip", strip),
             ("lanes", lanes), ("points", points))
    for name, value in sizes:
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    padded = -(-cout // strip) * strip
    fit = L2_BYTES // (points * 4 * lanes * (cin + padded))
    weights = points * 4 * cin * padded
    reuse = weights // (WEIGHT_REUSE_BYTES * lanes) if weights > CACHED_WEIGHT_BYTES else 0
    cap = max(rows, -(-(MAX_CHUNK // lanes) // rows) * rows)  # MAX_CHUNK image tiles in whole register blocks
    chunk = min(cap, max(fit, reuse, rows))
    chunk = min(chunk, max(rows, tiles // (TASKS_PER_THREAD * threads), min(reuse, tiles)))
    chunk = -(-tiles // rows) * rows if chunk >= tiles else max(rows, chunk // rows * rows)
    chunks = -(-tiles // chunk)
    parts = 1 if chunks >= 2 * threads else min(padded // strip, -(-2 * threads // chunks))
    return WinogradTasks(chunk, parts)


def channels_last_operands(
    x: torch.Tensor, residual: torch.Tensor | None, out_shape: tuple[int, int, int, int]
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """``x`` and ``residual`` made channels-last (no copy if they are) and an empty channels-last
    output of ``out_shape``: the operands of the strip-product kernels."""
    x = x.contiguous(memory_format=torch.channels_last)
    if residual is not None:
        residual = residual.contiguous(memory_format=torch.channels_last)
    return x, residual, torch.empty(out_shape, memory_format=torch.channels_last)


def winograd_conv2d(
    ext: ModuleType,
    x: torch.Tensor,
    u: torch.Tensor,
    cout: int,
    bias: torch.Tensor | None,
    padding: tuple[int, int],
    residual: torch.Tensor | None = None,
    relu: bool = False,
) -> torch.Tensor:
    """``relu?(conv2d(x, g, bias, stride=1, padding) + residual)`` for a 3x3 weight ``g`` with ``u`` =
    :func:`winograd_weight` ``(g, vw, tile)`` (its points give the tile); the output is
    channels-last (``x`` and ``residual`` are made so)."""
    n, cin, h, w = x.shape
    ph, pw = padding
    ho, wo = h + 2 * ph - 2, w + 2 * pw - 2
    if ho < 1 or wo < 1:
        raise ValueError(f"input {h}x{w} with padding {padding} gives no output of a 3x3 conv")
    x, residual, out = channels_last_operands(x, residual, (n, cout, ho, wo))
    threads = torch.get_num_threads()
    tile, points = _tile_of(u)
    tiles = n * (-(-ho // tile)) * (-(-wo // tile))
    tasks = winograd_tasks(tiles, cin, cout, threads, ext.winograd_gemm_rows(), strip=2 * ext.vector_width(), points=points)
    ext.winograd_conv_out(x, u, bias, residual, out, ph, pw, relu, tasks.chunk, tasks.parts, threads)
    return out


def winograd_conv2d_blocked(
    ext: ModuleType,
    x: Blocked,
    u: torch.Tensor,
    cout: int,
    bias: torch.Tensor | None,
    padding: tuple[int, int],
    residual: Blocked | None,
    relu: bool,
    out_halo: tuple[int, int],
) -> Blocked:
    """:func:`winograd_conv2d` on batch-blocked activations (any input halo: the kernel reads
    zeros outside the image), the output blocked with a zero ``out_halo``."""
    n, cin, h, w = x.shape
    ph, pw = padding
    ho, wo = h + 2 * ph - 2, w + 2 * pw - 2
    if ho < 1 or wo < 1:
        raise ValueError(f"input {h}x{w} with padding {padding} gives no output of a 3x3 conv")
    groups, vector, threads = int(x.data.shape[0]), ext.vector_width(), torch.get_num_threads()
    out = ext.blocked_empty(groups, cout, ho + 2 * out_halo[0], wo + 2 * out_halo[1])
    tile, points = _tile_of(u)
    tiles = groups * (-(-ho // tile)) * (-(-wo // tile))
    tasks = winograd_tasks(tiles, cin, cout, threads, rows=LANE_TILES, strip=2 * vector, lanes=vector, points=points)
    res_halo = (0, 0) if residual is None else residual.halo
    geometry = [ph, pw, *x.halo, *out_halo, *res_halo]
    ext.winograd_conv_blocked_out(
        x.data, u, bias, None if residual is None else residual.data, out, geometry, relu, tasks.chunk, tasks.parts, threads
    )
    return Blocked(out, n, out_halo)
