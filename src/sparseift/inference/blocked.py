"""Batch-blocked activations: the layout in which consecutive sparse convs pass a large batch.

A batch of ``N`` images ``[N, C, H, W]`` is held as ``data[G, C, H + 2hh, W + 2hw, V]``
(``V`` = the kernels' vector width, ``G = ceil(N / V)``): image ``n`` is lane ``n % V`` of
group ``n // V`` and every plane carries a zero halo ``(hh, hw)``. Planes are
``data.stride(1)`` floats apart, an odd number of cache lines (``blocked_empty`` in the
kernels), so that the channels of one plane position do not all map to the same L1 sets.
The sparse conv kernel reads it in place (one aligned vector = one input value of ``V``
images; a stride-2 conv reads every other vector) and writes its output, bias, residual and
ReLU applied, straight into the next layer's blocked input with that layer's halo as padding. So between two sparse
convs there is no input rewrite and no output scatter; conversions happen only where a
dense or non-conv op needs a plain tensor (:func:`as_tensor`). The kernel side is in
``csrc/sparse_conv.cpp`` ("Batch-blocked activations").
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import fx, nn

from sparseift.inference._ext import kernels
from sparseift.inference.kernels import (
    ConvGeometry,
    CsrWeight,
    KernelPlan,
    ROWS_PER_TASK,
    PlanCache,
    balanced_rows,
    tile_floats,
)

__all__ = [
    "Blocked",
    "BlockedLayout",
    "BlockedModule",
    "FusedPool",
    "BLOCKED_L1_BUDGET",
    "BLOCKED_TILE",
    "FULL_TILE_DENSITY",
    "L2_FILL",
    "MAX_COLUMN_STRIDE",
    "SHARED_LOADS_MIN_VECTOR",
    "TaskShape",
    "as_tensor",
    "balanced_columns",
    "blocked_plan",
    "blocked_task_shape",
    "blocked_tile",
    "blocked_tiles",
    "l2_cache_bytes",
    "sparse_conv2d_blocked",
    "touched_vectors",
]

MAX_COLUMN_STRIDE = 2
"""Largest column stride the blocked kernel reads (``MAX_STEP`` in ``csrc/sparse_conv.cpp``)."""

BLOCKED_L1_BUDGET = 36 * 1024
"""Bytes of input that one channel block of a blocked task reads (its rows' partial sums are
re-read from L2 once per block, so fewer, larger blocks save that traffic while more of the
input misses L1). Measured on a 2-core Zen 4 (AVX-512, 32 KB L1D), Sparse Wide ResNet-18
layers at batch 64: 36 KB was 5-10% faster than 48 KB at density 0.25 and level at 0.1."""

SHARED_LOADS_MIN_VECTOR = 16
"""Vector width (floats) from which the blocked kernel loads each input vector once for a run
of taps (:meth:`~sparseift.inference.kernels.CsrWeight.shared_load_runs`): a run of three keeps
three weights, the input vector and the tile's accumulators live, which AVX-512's 32 registers
hold and AVX2's 16 do not."""

BLOCKED_TILE = 8
"""Most output columns (vectors) one task of the blocked kernel keeps in registers on builds with
16-float vectors (AVX-512), below the register tile's limit (``tile_width()``): a narrower tile
reads fewer input vectors per channel (``touched_vectors``), so that a channel block holds more
channels and each row's partial sums make fewer round trips to the cache per non-zero. Measured
on a 2-core Zen 4, Sparse Wide ResNet-18 layers at batch 64, 8 against 14 columns: 56 x 56 planes
+1-4% at densities 0.16-0.4 and +4% at 0.1, 28 x 28 at 0.1 +7-10%, stride-2 3x3 convs +3% (0.25)
and +11% (0.1), the 7 x 7 stem level, 14 x 14 at 0.25 -3%. An AVX2 build of the same machine
keeps its full tile (8 columns there: 56 x 56 -3-5%, stride 2 +6%, the rest level)."""

FULL_TILE_DENSITY = 0.75
"""Density from which a blocked conv keeps the build's full register tile instead of
:data:`BLOCKED_TILE` columns: dense weights (the first layer, which Sparse-IFT keeps dense) come
as runs of taps that load each input vector once for up to three multiply-adds, so the tile's
accumulator chains rather than the loads bound them, and more chains keep both FMA pipes busy.
Measured on a 2-core Sapphire Rapids, the dense 7x7 stem of Sparse Wide ResNet-18 (202 channels,
fused max pool), 16 columns against 8: 61.2 -> 57.9 ms at batch 16, 253 -> 242 ms at batch 64;
3x3 convs at density 0.5 level. ``compile(..., tune=True)`` times both widths per layer instead
(:func:`blocked_tiles`)."""

L2_FILL = 0.75
"""Share of the L2 cache that one unbanded task's working set may take (weights, input slice,
partial sums; the rest holds its output lines, the next block's prefetched lines and the stack).
Beyond it every task re-reads its channels' weights from L3 or memory, so a task covers a band
of output rows that reuses them. Measured on a 2-core Sapphire Rapids (2 MB L2), Sparse Wide
ResNet-18 at s = 0.9, batch 16: the 28 x 28 layers (1.2 MB weights + 0.7 MB input slice) run
16-31% faster banded, the 56 x 56 layers (0.3 + 0.35 MB) 9% slower. (An older kernel on a Zen 3,
0.5 MB L2 and 32 MB L3, lost up to 15% banding 1.2 MB of weights.)"""

FALLBACK_L2_BYTES = 1024 * 1024
"""L2 size assumed where neither ``sysconf`` nor ``/sys`` reports one."""

L2_ACC_BUDGET = 512 * 1024
"""Bytes of partial sums one banded task may keep (band x channels x its columns, in L2)."""

BANDED_ROWS = 128
"""Most output channels per task when a task covers a band of output rows."""


@dataclass(frozen=True)
class Blocked:
    """The activations of ``batch`` images in the batch-blocked layout with a zero ``halo``."""

    data: torch.Tensor  # float32 [G, C, H + 2 * halo[0], W + 2 * halo[1], V], contiguous
    batch: int
    halo: tuple[int, int]

    @property
    def shape(self) -> torch.Size:
        """``[N, C, H, W]`` of the plain tensor this stands for."""
        g, c, hp, wp, _ = self.data.shape
        return torch.Size((self.batch, c, hp - 2 * self.halo[0], wp - 2 * self.halo[1]))

    def dim(self) -> int:
        """4, as the plain ``[N, C, H, W]`` tensor."""
        return 4

    @staticmethod
    def from_tensor(ext: ModuleType, x: torch.Tensor, halo: tuple[int, int]) -> Blocked:
        """``x`` (``[N, C, H, W]``, any strides) in the blocked layout with a zero ``halo``."""
        data = ext.to_blocked(x.float(), halo[0], halo[1], torch.get_num_threads())
        return Blocked(data, int(x.shape[0]), halo)

    def to_tensor(self) -> torch.Tensor:
        """The contiguous ``[N, C, H, W]`` tensor."""
        return kernels().from_blocked(self.data, self.batch, self.halo[0], self.halo[1], torch.get_num_threads())


def as_tensor(x: Any) -> Any:
    """``x`` as a plain tensor: :class:`Blocked` activations are converted, anything else is returned as is.

    Under ``torch.fx`` tracing (a pickled compiled model is re-traced when loaded) the call is
    recorded as a graph node, so it survives the round trip.
    """
    if isinstance(x, fx.Proxy):
        return x.tracer.create_proxy("call_function", as_tensor, (x,), {})
    return x.to_tensor() if isinstance(x, Blocked) else x


class BlockedModule(nn.Module):
    """A module of a compiled model that reads :class:`Blocked` activations in place (and may emit them).

    The compiler (``_plan_blocked``) sets :attr:`blocked_halo` on every module that
    :meth:`emits_blocked` to the widest :meth:`input_halo` of the modules reading its output,
    and converts the output with :func:`as_tensor` for every other reader.
    """

    blocked_halo: tuple[int, int] | None
    """The zero halo of the blocked output (the padding its readers need); ``None`` (the
    default, and always outside a traced graph): return plain tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.blocked_halo = None

    def input_halo(self) -> tuple[int, int]:
        """The zero halo this module needs around a blocked input (rows, columns)."""
        return (0, 0)

    def emits_blocked(self) -> bool:
        """Whether this module can hand blocked activations on."""
        return True


@dataclass(frozen=True)
class BlockedLayout:
    """The padded plane ``hp x wp`` of a blocked input and the floats from one plane to the
    next (``pitch``): what a weight's offsets depend on."""

    hp: int
    wp: int
    pitch: int


def _register_columns(ext: ModuleType) -> int:
    """Output columns (vectors) in the kernel's full register tile."""
    return tile_floats(ext) // ext.vector_width()


def blocked_tile(ext: ModuleType, density: float = 0.0) -> int:
    """Most output columns per task of the blocked kernel for a weight of ``density``: the
    build's register tile, capped at :data:`BLOCKED_TILE` where vectors hold 16 floats and the
    weight is sparser than :data:`FULL_TILE_DENSITY`."""
    full = _register_columns(ext)
    return min(BLOCKED_TILE, full) if ext.vector_width() >= 16 and density < FULL_TILE_DENSITY else full


def blocked_tiles(ext: ModuleType, wo: int) -> tuple[int, ...]:
    """The task widths ``compile(..., tune=True)`` times for a blocked conv with ``wo`` output
    columns: :data:`BLOCKED_TILE` and the build's full register tile, one where both split the
    row into runs of the same length (:func:`balanced_columns`). Which wins depends on the core
    as much as on the layer: on a Zen 4 (one 512-bit FMA per cycle) 8 columns ran 4-10% faster
    for 3x3 convs at density 0.1, on a Sapphire Rapids (two) 16 columns ran 4-7% faster for
    56 x 56 convs at densities 0.1-0.25 and 7-8% slower for stride-2 ones."""
    full = _register_columns(ext)
    by_run = {balanced_columns(wo, tile): tile for tile in sorted({full, min(BLOCKED_TILE, full)}, reverse=True)}
    return tuple(sorted(by_run.values()))


def balanced_columns(wo: int, tile: int) -> int:
    """Output columns per task when ``wo`` columns are split into ``ceil(wo / tile)`` runs of
    nearly equal length (the kernel's split: 56 columns in tiles of at most 8 are 7 x 8)."""
    return -(-wo // -(-wo // tile))


def blocked_plan(
    ext: ModuleType, weight: CsrWeight, geometry: ConvGeometry, layout: BlockedLayout, columns: int
) -> tuple[KernelPlan, int]:
    """The :class:`~sparseift.inference.kernels.KernelPlan` of ``weight`` on a blocked input of
    ``layout`` for tasks of ``columns`` output columns, and its input channels per block.

    Tap ``(c, kh, kw)`` is read at ``c * pitch + (kh * dh * wp + kw * dw) * V`` from its output
    position's origin. Input channels are blocked so that the vectors one task reads of a block
    (:func:`touched_vectors` per channel) fit :data:`BLOCKED_L1_BUDGET` (the kernel also needs the
    block size to request the next block's lines ahead).
    """
    vector = ext.vector_width()
    (dh, dw), sw = geometry.dilation, geometry.stride[1]
    offsets = weight.channel * layout.pitch + (weight.tap_h * dh * layout.wp + weight.tap_w * dw) * vector
    if offsets.numel() and int(offsets.max()) >= 2**31:
        raise ValueError(f"input too large for the sparse kernel's int32 offsets ({layout})")
    footprint = 4 * vector * touched_vectors(weight.shape[2:], sw, dw, columns)
    block = max(1, BLOCKED_L1_BUDGET // footprint)
    runs = weight.shared_load_runs(sw, dw) if vector >= SHARED_LOADS_MIN_VECTOR else None
    return weight.plan(block, offsets.to(torch.int32), runs), block


def touched_vectors(kernel: tuple[int, int], column_stride: int, column_dilation: int, tile: int) -> int:
    """Vectors of one input channel that a run of ``tile`` output columns reads: one row per
    kernel row, each with the distinct columns ``k * column_stride + j * column_dilation``
    (a 1x1 stride-2 conv reads every other vector of its span)."""
    columns = {k * column_stride + j * column_dilation for k in range(tile) for j in range(kernel[1])}
    return kernel[0] * len(columns)


@dataclass(frozen=True)
class FusedPool:
    """A max pool (dilation 1) that a blocked conv runs in its epilogue: its window per axis and
    the pooled output's size."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    size: tuple[int, int]


@dataclass(frozen=True)
class TaskShape:
    """What one task of the blocked kernel computes: ``band`` output rows x one run of at most
    ``tile`` output columns (one register tile) x ``rows`` output channels."""

    tile: int
    band: int
    rows: int


@functools.cache
def l2_cache_bytes() -> int:
    """This CPU's L2 cache per core in bytes: ``sysconf``, else ``/sys`` (cpu0's level-2 data or
    unified cache), else :data:`FALLBACK_L2_BYTES`."""
    name = "SC_LEVEL2_CACHE_SIZE"
    if name in os.sysconf_names and (size := os.sysconf(name)) > 0:
        return int(size)
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level, kind, size = ((index / f).read_text().strip() for f in ("level", "type", "size"))
        except OSError:
            continue
        if level == "2" and kind != "Instruction" and size[:-1].isdigit():
            return int(size[:-1]) * {"K": 1024, "M": 1024 * 1024}.get(size[-1], 1)
    return FALLBACK_L2_BYTES


def blocked_task_shape(
    ho: int,
    wo: int,
    cout: int,
    nonzeros: int,
    input_bytes: int,
    groups: int,
    tile: int,
    vector: int,
    threads: int,
    l2_bytes: int,
    min_band: int = 1,
) -> TaskShape:
    """The task of a blocked conv with ``ho x wo`` outputs, ``cout`` rows and ``nonzeros`` weights
    that reads ``input_bytes`` of input per output row and column run, on cores with ``l2_bytes``
    of L2 cache (:func:`l2_cache_bytes`).

    Tasks of one output row share their input slice and tasks of one channel chunk their weights;
    where weights, slice and partial sums outgrow :data:`L2_FILL` of the L2 cache, a task covers a band of output rows that reuses its weights, as
    many as :data:`L2_ACC_BUDGET` holds partial sums for (with at most :data:`BANDED_ROWS`
    channels), balanced over ``ho``, and at least ``min_band`` rows (a fused pool's window
    less one: tasks two bands apart then share no pooled output). Rows per task then follow :func:`balanced_rows` so that
    every thread gets :data:`TASKS_PER_THREAD` tasks where the output allows.
    """
    columns = balanced_columns(wo, tile)
    partial_sums = 4 * vector * columns * min(cout, ROWS_PER_TASK)
    band = 1
    if 8 * nonzeros + input_bytes + partial_sums > L2_FILL * l2_bytes:
        band = max(1, min(ho, L2_ACC_BUDGET // (4 * vector * columns * min(cout, BANDED_ROWS))))
        band = -(-ho // -(-ho // band))
    band = max(band, min(ho, min_band))
    tiles = groups * -(-ho // band) * -(-wo // tile)
    rows = balanced_rows(tiles, cout, threads)
    return TaskShape(tile, band, rows if band == 1 else min(rows, BANDED_ROWS))


def sparse_conv2d_blocked(
    ext: ModuleType,
    x: Blocked,
    weight: CsrWeight,
    bias: torch.Tensor | None,
    geometry: ConvGeometry,
    total_pad: tuple[int, int],
    cache: PlanCache,
    residual: Blocked | None,
    relu: bool,
    out_halo: tuple[int, int],
    pool: FusedPool | None = None,
    tile: int | None = None,
) -> Blocked:
    """``pool?(relu?(conv2d(x, W) + bias + residual))`` on blocked activations, the output with a
    zero ``out_halo``, in tasks of at most ``tile`` output columns (default :func:`blocked_tile`).

    ``x.halo`` must cover the padding on each side (``max(top, total - top)`` per axis) and
    the column stride must be at most :data:`MAX_COLUMN_STRIDE`; ``residual`` must have the
    conv's output shape. A ``pool`` max-reduces each activated output straight into the pooled
    outputs whose windows hold it, so the conv's output is never stored.
    """
    (ph, pw), (sh, sw) = geometry.padding, geometry.stride
    if sw > MAX_COLUMN_STRIDE:
        raise ValueError(f"blocked convs take a column stride <= {MAX_COLUMN_STRIDE}, got {sw}")
    if x.halo[0] < max(ph, total_pad[0] - ph) or x.halo[1] < max(pw, total_pad[1] - pw):
        raise ValueError(f"input halo {x.halo} does not cover the padding {geometry.padding} / {total_pad}")
    n, _, h, w = x.shape
    ho, wo = geometry.output_size((h, w), weight.shape[2:], total_pad)
    layout = BlockedLayout(int(x.data.shape[2]), int(x.data.shape[3]), int(x.data.stride(1)))
    full = _register_columns(ext)
    if tile is not None and not 1 <= tile <= full:
        raise ValueError(f"tile must be in [1, {full}] (the register tile), got {tile}")
    tile, vector = blocked_tile(ext, weight.density) if tile is None else tile, ext.vector_width()
    columns = balanced_columns(wo, tile)
    if pool is not None and columns < wo and columns < pool.kernel[1] - 1:  # tasks two runs apart must share no pooled output
        raise ValueError(f"tile={tile} splits {wo} columns into runs of {columns}, under the fused pool's {pool.kernel[1] - 1}")
    plan, block = cache.get((layout, columns), lambda: blocked_plan(ext, weight, geometry, layout, columns))
    groups, cout, threads = int(x.data.shape[0]), weight.shape[0], torch.get_num_threads()
    cin = weight.shape[1]
    input_bytes = 4 * vector * cin * touched_vectors(weight.shape[2:], sw, geometry.dilation[1], columns)
    min_band = 1 if pool is None else pool.kernel[0] - 1
    task = blocked_task_shape(ho, wo, cout, weight.nnz, input_bytes, groups, tile, vector, threads, l2_cache_bytes(), min_band)
    out_h, out_w = (ho, wo) if pool is None else pool.size
    out = ext.blocked_empty(groups, cout, out_h + 2 * out_halo[0], out_w + 2 * out_halo[1])
    window = [0] * 8 if pool is None else [*pool.kernel, *pool.stride, *pool.padding, 1, 1]
    res_halo = (0, 0) if residual is None else residual.halo
    ext.sparse_conv_blocked_out(
        x.data,
        *plan,
        _EMPTY if bias is None else bias,
        _EMPTY if residual is None else residual.data,
        out,
        [sh, sw, x.halo[0] - ph, x.halo[1] - pw, ho, wo, *out_halo, *res_halo, task.tile, task.rows, task.band, threads,
         block, *weight.shape[2:], *geometry.dilation, weight.groups, *window],
        relu,
    )
    return Blocked(out, n, out_halo)


_EMPTY = torch.empty(0)
