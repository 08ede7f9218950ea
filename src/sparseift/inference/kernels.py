"""Sparse weights in the kernels' format, the input layout, and the sparse Conv2d / Linear forward.

A weight ``[Cout, Cin/g, kh, kw]`` (a Linear weight is ``[Dout, Din, 1, 1]``) is stored
as CSR over output channels: ``row_ptr`` and, per non-zero, its value, absolute input
channel and tap. Groups need no special case: a row only holds its group's input channels.
For each input shape a :class:`Layout` of the phase buffer is chosen (see
``csrc/sparse_conv.cpp``) and the taps become offsets into it (cached per layout):

* batch >= vector width and a kernel wider than one column (after the stride split):
  ``L`` = vector width images side by side in each vector, so every load is aligned with no
  row padding and no shifted copies;
* otherwise: one image per buffer, the row pitch rounded up to the vector width and
  one shifted copy per horizontal tap offset, so loads stay aligned, unless rounding would
  more than :data:`MAX_PITCH_GROWTH`-fold the work (tiny images), where loads go unaligned.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, NamedTuple, TypeVar

import torch

__all__ = [
    "ConvGeometry",
    "CsrWeight",
    "KernelPlan",
    "Layout",
    "PlanCache",
    "TAP_CLASSES",
    "TapRuns",
    "balanced_rows",
    "block_channels",
    "pack_weight",
    "phase_plan",
    "plan_layout",
    "rows_per_task",
    "sparse_conv2d",
    "sparse_linear",
    "tile_floats",
]


@dataclass(frozen=True)
class ConvGeometry:
    """Stride, padding (top/left; bottom/right follow from the output size) and dilation."""

    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)

    def output_size(self, size: tuple[int, int], kernel: tuple[int, int], total_pad: tuple[int, int]) -> tuple[int, int]:
        """``(Ho, Wo)`` of an input ``size`` for a ``kernel`` and total padding per axis."""
        return tuple(  # type: ignore[return-value]
            (n + p - d * (k - 1) - 1) // s + 1
            for n, p, d, k, s in zip(size, total_pad, self.dilation, kernel, self.stride)
        )


TAP_CLASSES = 4
"""Classes of a row's non-zeros in one channel block, in the order the kernel reads them: single
taps, pairs of taps one column step apart, pairs two steps apart, triples (runs of taps that
load each input vector once; see ``block_rows`` in ``csrc/sparse_conv.cpp``)."""

_CLASS_OF_TAPS = torch.tensor([0, 0, 0, 1, 0, 2, 1, 3])  # bit m set: a tap m steps from the run's start


class TapRuns(NamedTuple):
    """Per non-zero: its class (index into :data:`TAP_CLASSES`) and its position in column
    order (runs contiguous, taps of a run in step order)."""

    tap_class: torch.Tensor  # int64 [nnz]
    position: torch.Tensor  # int64 [nnz]


class KernelPlan(NamedTuple):
    """A weight as the kernels read it for one input layout: non-zeros block-major (see
    :meth:`CsrWeight.block_major`), each with its int32 offset into the input buffer."""

    block_ptr: torch.Tensor  # int64 [B, TAP_CLASSES * Cout + 1]
    offsets: torch.Tensor  # int32 [nnz]
    values: torch.Tensor  # float32 [nnz]


@dataclass
class CsrWeight:
    """A conv or linear weight in CSR over output channels (zeros dropped)."""

    row_ptr: torch.Tensor  # int64 [Cout + 1]
    values: torch.Tensor  # float32 [nnz]
    channel: torch.Tensor  # int64 [nnz], absolute input channel
    tap_h: torch.Tensor  # int64 [nnz]
    tap_w: torch.Tensor  # int64 [nnz]
    shape: tuple[int, int, int, int]
    groups: int

    @property
    def nnz(self) -> int:
        """Number of stored non-zeros."""
        return int(self.values.numel())

    @property
    def density(self) -> float:
        """Fraction of non-zero weights."""
        cout, cin_g, kh, kw = self.shape
        return self.nnz / max(1, cout * cin_g * kh * kw)

    def to_dense(self) -> torch.Tensor:
        """The weight ``[Cout, Cin/g, kh, kw]`` back as a dense tensor (exact)."""
        cout, cin_g, kh, kw = self.shape
        rows = torch.repeat_interleave(torch.arange(cout), self.row_ptr.diff())
        cols = ((self.channel % cin_g) * kh + self.tap_h) * kw + self.tap_w
        dense = torch.zeros(cout, cin_g * kh * kw)
        dense[rows, cols] = self.values
        return dense.reshape(self.shape)

    def shared_load_runs(self, column_step: int, dilation: int) -> TapRuns:
        """The runs of taps that can share their input loads when one column step of the kernel
        is ``column_step`` input columns (its column stride) and taps lie ``dilation`` apart.

        Tap ``kw`` of a row reads column ``a = kw * dilation`` of its output's window, i.e.
        ``m = a // column_step`` steps of phase ``a % column_step``. The taps of one row, input
        channel, kernel row and phase whose ``m`` fall into one window ``[3 i, 3 i + 3)`` form a
        run; its set of ``m - 3 i`` decides the class (:data:`TAP_CLASSES`): one tap, two one
        step apart, two two steps apart, or all three. Within a class, runs follow each other
        in column order, each with its taps in ``m`` order.
        """
        cout, cin_g, kh, kw = self.shape
        rows = torch.repeat_interleave(torch.arange(cout), self.row_ptr.diff())
        column = self.tap_w * dilation
        step = column // column_step
        windows = (kw - 1) * dilation // column_step // 3 + 1
        window = (((rows * cin_g + self.channel % cin_g) * kh + self.tap_h) * column_step + column % column_step)
        window = window * windows + step // 3
        _, index = torch.unique(window, return_inverse=True)
        taps = torch.zeros(int(index.max()) + 1 if index.numel() else 0, dtype=torch.int64)
        taps.scatter_add_(0, index, 1 << (step % 3))
        return TapRuns(_CLASS_OF_TAPS[taps[index]], window * 3 + step % 3)

    def block_major(self, block: int, runs: TapRuns | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The non-zeros reordered channel block by channel block: ``(block_ptr, order)``.

        ``order`` (int64 ``[nnz]``) lists the non-zeros block-major (block ``b`` of local input
        channels ``[b * block, (b + 1) * block)``, then row, then class of ``runs`` (all single
        taps without it), then column), and in that order row ``co``'s non-zeros of class ``c``
        in block ``b`` are ``[block_ptr[b, i], block_ptr[b, i + 1])``, ``i = TAP_CLASSES * co + c``
        (int64 ``[B, TAP_CLASSES * Cout + 1]``). A task sweeping its rows through one block then
        reads one contiguous run of weights instead of ``Cout`` short runs far apart.
        """
        cout, cin_g = self.shape[0], self.shape[1]
        n_blocks, width = -(-cin_g // block), TAP_CLASSES * cout
        rows = torch.repeat_interleave(torch.arange(cout), self.row_ptr.diff())
        key = ((self.channel % cin_g) // block * cout + rows) * TAP_CLASSES
        order = torch.arange(self.nnz)
        if runs is not None:
            key = key + runs.tap_class
            order = torch.sort(runs.position, stable=True).indices
        order = order[torch.sort(key[order], stable=True).indices]
        counts = torch.bincount(key, minlength=n_blocks * width)
        ends = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        starts = torch.arange(n_blocks)[:, None] * width + torch.arange(width + 1)
        return ends[starts].contiguous(), order

    def plan(self, block: int, offsets: torch.Tensor, runs: TapRuns | None = None) -> KernelPlan:
        """The :class:`KernelPlan` of this weight with input channel blocks of ``block``, the
        non-zeros' int32 ``offsets`` (in CSR order) into the kernel's input buffer and, where
        given, the tap ``runs`` that share loads (:meth:`shared_load_runs`)."""
        block_ptr, order = self.block_major(block, runs)
        return KernelPlan(block_ptr, offsets[order].contiguous(), self.values[order].contiguous())

    def offsets(self, geometry: ConvGeometry, layout: Layout) -> torch.Tensor:
        """int32 offsets of every non-zero into the phase buffer of ``layout``."""
        (sh, sw), (dh, dw) = geometry.stride, geometry.dilation
        th, tw = self.tap_h * dh, self.tap_w * dw
        phase = (th % sh) * sw + tw % sw
        ah, aw = th // sh, tw // sw
        shift = aw if layout.shifts > 1 else torch.zeros_like(aw)
        plane = ((self.channel * (sh * sw) + phase) * layout.hq + ah) * layout.wq + aw - shift
        offsets = shift * layout.copy + plane * layout.lanes
        if offsets.numel() and int(offsets.max()) + layout.copy >= 2**31:
            raise ValueError(f"input too large for the sparse kernel's int32 offsets ({layout})")
        return offsets.to(torch.int32)


def pack_weight(weight: torch.Tensor, groups: int = 1) -> CsrWeight:
    """CSR of ``weight`` (``[Cout, Cin/g, kh, kw]`` or ``[Dout, Din]``), non-zeros in column order."""
    w4 = weight.detach().float().reshape(weight.shape[0], weight.shape[1], *(weight.shape[2:] or (1, 1)))
    cout, cin_g, kh, kw = w4.shape
    flat = w4.reshape(cout, -1)
    rows, cols = flat.nonzero(as_tuple=True)
    counts = torch.bincount(rows, minlength=cout)
    row_ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)]).to(torch.int64)
    local, tap = cols // (kh * kw), cols % (kh * kw)
    channel = rows // (cout // groups) * cin_g + local
    return CsrWeight(
        row_ptr.contiguous(),
        flat[rows, cols].contiguous(),
        channel,
        tap // kw,
        tap % kw,
        (cout, cin_g, kh, kw),
        groups,
    )


L1_BUDGET = 48 * 1024
"""Bytes of one channel block's input slice that should stay in L1 while a task uses it."""

TILE_FLOATS = 256
"""Output positions (x lanes) one task keeps in registers (capped by the build's ``tile_width()``)."""

ROWS_PER_TASK = 256
"""Most output channels per task: their partial sums (256 x 1 KiB) stay in L2 while the task's
input slice is swept block by block from L1 (fewer rows re-read the slice more often)."""

TASKS_PER_THREAD = 4
"""At least this many tasks per thread where the output allows, so that threads stay balanced."""

MAX_PITCH_GROWTH = 1.5
"""Largest factor by which rounding the row pitch up for aligned loads may grow the work.
(Measured on a Zen 3 at batch 1: a 7 x 7 plane, 9 columns with its halo, runs 1.5x faster
unaligned than rounded up to 16; 58 -> 64 and 30 -> 32 pay to align.)"""


@dataclass(frozen=True)
class Layout:
    """The phase buffer of one input shape: output size, plane ``hq x wq`` (row pitch ``wq``),
    ``phases`` planes per channel, ``lanes`` images per vector, ``shifts`` shifted copies of
    ``copy`` floats each."""

    ho: int
    wo: int
    hq: int
    wq: int
    phases: int
    lanes: int
    shifts: int
    copy: int


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def plan_layout(
    ext: ModuleType,
    kernel: tuple[int, int],
    geometry: ConvGeometry,
    input_shape: tuple[int, int, int, int],
    total_pad: tuple[int, int],
) -> Layout:
    """The :class:`Layout` for an input ``[N, C, H, W]`` (see the module docstring)."""
    n, channels, h, w = input_shape
    vector, tile = ext.vector_width(), ext.tile_width()
    ho, wo = geometry.output_size((h, w), kernel, total_pad)
    (sh, sw), (dh, dw) = geometry.stride, geometry.dilation
    ahmax, awmax = dh * (kernel[0] - 1) // sh, dw * (kernel[1] - 1) // sw
    hq, wq, lanes, shifts = ho + ahmax, wo + awmax, 1, 1
    if n >= vector and awmax > 0:
        lanes = vector
    elif _round_up(wq, vector) <= MAX_PITCH_GROWTH * wq:
        wq, shifts = _round_up(wq, vector), awmax + 1
    used = channels * sh * sw * hq * wq * lanes
    copy = _round_up(used + (wq - wo + 1) * lanes + tile, vector)
    return Layout(ho, wo, hq, wq, sh * sw, lanes, shifts, copy)


def block_channels(tile: int, layout: Layout, geometry: ConvGeometry, kernel: tuple[int, int]) -> int:
    """Input channels per block: the part of the phase buffer that one tile of ``tile``
    outputs touches in a block (kernel rows x (tile + halo) per plane) fits :data:`L1_BUDGET`."""
    (sh, sw), (dh, dw) = geometry.stride, geometry.dilation
    rows = dh * (kernel[0] - 1) // sh + 1
    width = tile + (dw * (kernel[1] - 1) // sw) * layout.lanes
    return max(1, L1_BUDGET // (4 * layout.phases * rows * width * layout.shifts))


def rows_per_task(layout: Layout, batch: int, cout: int, tile: int, threads: int) -> int:
    """Output channels per task: :data:`ROWS_PER_TASK`, fewer when the (image group, q tile)
    tasks alone would give fewer than :data:`TASKS_PER_THREAD` tasks per thread."""
    tiles = -(-batch // layout.lanes) * -(-(layout.ho * layout.wq * layout.lanes) // tile)
    return balanced_rows(tiles, cout, threads)


def balanced_rows(tiles: int, cout: int, threads: int) -> int:
    """Output channels per task when ``tiles`` output tiles each split their ``cout`` rows into
    chunks: :data:`ROWS_PER_TASK`, fewer where that leaves under :data:`TASKS_PER_THREAD` tasks per thread."""
    chunks = max(1, -(-TASKS_PER_THREAD * threads // max(1, tiles)))
    return max(1, min(ROWS_PER_TASK, -(-cout // chunks)))


def tile_floats(ext: ModuleType) -> int:
    """Floats of q per task: :data:`TILE_FLOATS` rounded to the vector width, within the build's limit."""
    vector = ext.vector_width()
    return max(vector, min(ext.tile_width(), TILE_FLOATS) // vector * vector)


PlanT = TypeVar("PlanT")


class PlanCache:
    """Per input layout (:class:`Layout` or a batch-blocked one): the :class:`KernelPlan` of one
    weight (with what else its kernel needs), built once."""

    def __init__(self) -> None:
        self.by_layout: dict[Hashable, Any] = {}

    def get(self, layout: Hashable, build: Callable[[], PlanT]) -> PlanT:
        """The plan for ``layout``; ``build()`` makes it on the first call."""
        if layout not in self.by_layout:
            self.by_layout[layout] = build()
        return self.by_layout[layout]


def phase_plan(ext: ModuleType, weight: CsrWeight, geometry: ConvGeometry, layout: Layout) -> KernelPlan:
    """The :class:`KernelPlan` of ``weight`` read from the phase buffer of ``layout``."""
    block = block_channels(tile_floats(ext), layout, geometry, weight.shape[2:])
    return weight.plan(block, weight.offsets(geometry, layout))


def _run(
    ext: ModuleType,
    x: torch.Tensor,
    weight: CsrWeight,
    bias: torch.Tensor | None,
    geometry: ConvGeometry,
    total_pad: tuple[int, int],
    cache: PlanCache,
    residual: torch.Tensor | None,
    relu: bool,
    out: torch.Tensor,
) -> None:
    layout = plan_layout(ext, weight.shape[2:], geometry, tuple(x.shape), total_pad)
    tile, threads = tile_floats(ext), torch.get_num_threads()
    rows = rows_per_task(layout, x.shape[0], weight.shape[0], tile, threads)
    vector = [*geometry.stride, *geometry.padding, *geometry.dilation, layout.ho, layout.wo, layout.hq, layout.wq,
              layout.phases, layout.lanes, layout.shifts, layout.copy, rows, tile, threads]
    ext.sparse_conv_out(
        x.float(),
        *cache.get(layout, lambda: phase_plan(ext, weight, geometry, layout)),
        _EMPTY if bias is None else bias,
        _EMPTY if residual is None else residual.float(),
        out,
        vector,
        relu,
    )


_EMPTY = torch.empty(0)


def sparse_conv2d(
    ext: ModuleType,
    x: torch.Tensor,
    weight: CsrWeight,
    bias: torch.Tensor | None,
    geometry: ConvGeometry,
    total_pad: tuple[int, int],
    cache: PlanCache,
    residual: torch.Tensor | None = None,
    relu: bool = False,
) -> torch.Tensor:
    """``relu?(conv2d(x, W) + bias + residual)`` skipping zero weights; ``x`` may have any strides.

    ``residual`` must have the output's shape (broadcasting residuals are added by the caller).
    """
    ho, wo = geometry.output_size(tuple(x.shape[2:]), weight.shape[2:], total_pad)
    out = torch.empty((x.shape[0], weight.shape[0], ho, wo), dtype=torch.float32)
    _run(ext, x, weight, bias, geometry, total_pad, cache, residual, relu, out)
    return out


def sparse_linear(
    ext: ModuleType,
    x: torch.Tensor,
    weight: CsrWeight,
    bias: torch.Tensor | None,
    cache: PlanCache,
    residual: torch.Tensor | None = None,
    relu: bool = False,
) -> torch.Tensor:
    """``relu?(x @ W.T + bias + residual)`` for ``x`` of shape ``[..., Din]``, skipping zeros.

    The ``M`` rows of ``x`` are one 1 x M image with ``Din`` channels: the kernel reads
    ``x.T`` and writes ``y.T`` contiguously. The result is returned as a transposed view,
    so a following sparse linear layer reads it without a copy.
    """
    d_out, d_in = weight.shape[0], weight.shape[1]
    rows = x.reshape(-1, d_in)
    columns = rows.t().float().contiguous()  # [Din, M]; free if x came from this function
    out = torch.empty((d_out, rows.shape[0]), dtype=torch.float32)
    res = None if residual is None else residual.reshape(-1, d_out).t().unsqueeze(0).unsqueeze(2)
    image = columns.unsqueeze(0).unsqueeze(2)  # [1, Din, 1, M]
    _run(ext, image, weight, bias, ConvGeometry(), (0, 0), cache, res, relu, out.unsqueeze(0).unsqueeze(2))
    return out.t().reshape(*x.shape[:-1], d_out)
