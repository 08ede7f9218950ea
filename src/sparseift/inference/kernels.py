"""Sparse weights in the kernels' format, and the sparse Conv2d / Linear forward.

A weight ``[Cout, Cin/g, kh, kw]`` (a Linear weight is ``[Dout, Din, 1, 1]``) is stored
as CSR over output channels: ``row_ptr`` and, per non-zero, its value, absolute input
channel and tap. For each input size the taps become offsets into the phase layout of
``csrc/sparse_conv.cpp`` (cached per size). Groups need no special case: a row only holds
its group's input channels.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import torch

__all__ = ["ConvGeometry", "CsrWeight", "PlanCache", "block_channels", "pack_weight", "sparse_conv2d", "sparse_linear"]


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

    def block_ptr(self, block: int) -> torch.Tensor:
        """int64 ``[Cout, B + 1]``: row ``co``'s non-zeros of local input channels
        ``[b * block, (b + 1) * block)`` are ``[ptr[co, b], ptr[co, b + 1])``."""
        cout, cin_g = self.shape[0], self.shape[1]
        n_blocks = -(-cin_g // block)
        rows = torch.repeat_interleave(torch.arange(cout), self.row_ptr.diff())
        key = rows * n_blocks + (self.channel % cin_g) // block
        counts = torch.bincount(key, minlength=cout * n_blocks).reshape(cout, n_blocks)
        starts = self.row_ptr[:-1, None]
        return torch.cat([starts, starts + counts.cumsum(1)], dim=1).contiguous()

    def offsets(self, geometry: ConvGeometry, plane: tuple[int, int]) -> torch.Tensor:
        """int32 offsets of every non-zero into the phase layout with ``plane = (Hq, Wq)``."""
        (sh, sw), (dh, dw) = geometry.stride, geometry.dilation
        hq, wq = plane
        th, tw = self.tap_h * dh, self.tap_w * dw
        phase = (th % sh) * sw + tw % sw
        offsets = ((self.channel * (sh * sw) + phase) * hq + th // sh) * wq + tw // sw
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


L1_BUDGET = 24 * 1024
"""Bytes of one channel block's input slice that should stay in L1 while a task uses it."""


def block_channels(tile: int, plane: tuple[int, int], geometry: ConvGeometry, kernel: tuple[int, int]) -> int:
    """Input channels per block: a block's slice of the phase layout (``tile`` output
    positions plus the kernel's halo, in every phase plane) fits :data:`L1_BUDGET`."""
    (sh, sw), (dh, dw) = geometry.stride, geometry.dilation
    halo = dh * (kernel[0] - 1) // sh * plane[1] + dw * (kernel[1] - 1) // sw
    return max(1, L1_BUDGET // (4 * sh * sw * (tile + halo)))


class PlanCache:
    """Per input size: offsets and channel-block pointers of one weight (cached)."""

    def __init__(self) -> None:
        self.by_plane: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def get(
        self, ext: ModuleType, weight: CsrWeight, geometry: ConvGeometry, plane: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(block_ptr, offsets)`` for the phase layout with ``plane = (Hq, Wq)``."""
        if plane not in self.by_plane:
            block = block_channels(ext.tile_width(), plane, geometry, weight.shape[2:])
            self.by_plane[plane] = (weight.block_ptr(block), weight.offsets(geometry, plane))
        return self.by_plane[plane]


def _plan(
    weight: CsrWeight, geometry: ConvGeometry, size: tuple[int, int], total_pad: tuple[int, int]
) -> tuple[list[int], tuple[int, int]]:
    """Geometry vector of the kernel (sh, sw, ph, pw, dh, dw, ho, wo, hq, wq, phases) and the plane."""
    _, _, kh, kw = weight.shape
    ho, wo = geometry.output_size(size, (kh, kw), total_pad)
    (sh, sw), (dh, dw) = geometry.stride, geometry.dilation
    hq, wq = ho + dh * (kh - 1) // sh, wo + dw * (kw - 1) // sw
    return [sh, sw, *geometry.padding, dh, dw, ho, wo, hq, wq, sh * sw], (hq, wq)


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
    n, channels, h, w = x.shape
    vector, plane = _plan(weight, geometry, (h, w), total_pad)
    if channels * vector[10] * (plane[0] * plane[1]) + plane[1] >= 2**31:
        raise ValueError(f"sparse conv input of {channels} x {h} x {w} is too large for int32 offsets")
    out = torch.empty((n, weight.shape[0], vector[6], vector[7]), dtype=torch.float32)
    ext.sparse_conv_out(
        x.float(),
        *cache.get(ext, weight, geometry, plane),
        weight.values,
        _EMPTY if bias is None else bias,
        _EMPTY if residual is None else residual.float(),
        out,
        vector,
        relu,
    )
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

    The ``M`` rows of ``x`` are one 1 x M image with ``Din`` channels (strided views, no copy).
    """
    d_in, d_out = weight.shape[1], weight.shape[0]
    rows = x.reshape(-1, d_in)
    image = rows.t().unsqueeze(0).unsqueeze(2)  # [1, Din, 1, M]
    out = torch.empty((rows.shape[0], d_out), dtype=torch.float32)
    res = None if residual is None else residual.reshape(-1, d_out).t().unsqueeze(0).unsqueeze(2)
    geometry = ConvGeometry()
    vector, plane = _plan(weight, geometry, (1, rows.shape[0]), (0, 0))
    ext.sparse_conv_out(
        image.float(),
        *cache.get(ext, weight, geometry, plane),
        weight.values,
        _EMPTY if bias is None else bias,
        _EMPTY if res is None else res.float(),
        out.t().unsqueeze(0).unsqueeze(2),
        vector,
        relu,
    )
    return out.reshape(*x.shape[:-1], d_out)
