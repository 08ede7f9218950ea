"""One inference layer: a Conv2d or Linear with folded BatchNorm, fused residual add and ReLU,
run by the zero-skipping kernels, the dense Winograd kernel or PyTorch's dense ops, and the
rule that picks between them."""

from __future__ import annotations

from dataclasses import dataclass, replace
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

from sparseift.inference._ext import kernels
from sparseift.inference.blocked import MAX_COLUMN_STRIDE, Blocked, BlockedModule, FusedPool, as_tensor, sparse_conv2d_blocked
from sparseift.inference.direct import direct_conv2d, direct_weight
from sparseift.inference.kernels import ConvGeometry, PlanCache, pack_weight, sparse_conv2d, sparse_linear
from sparseift.inference.pooling import MaxPool
from sparseift.inference.winograd import winograd_conv2d, winograd_conv2d_blocked, winograd_tile, winograd_weight
from sparseift.transforms.layers import DenseLayer

__all__ = ["Path", "PATHS", "LayerPlan", "MAX_DENSITY", "choose_path", "dense_path", "path_unsupported", "unsupported_reason", "InferenceLayer"]

Path = Literal["sparse", "dense", "dense_cl", "winograd", "direct"]
"""``sparse``: our zero-skipping kernels; ``dense``: PyTorch's conv/linear on NCHW; ``dense_cl``:
PyTorch's conv with input and weight in ``torch.channels_last`` (oneDNN's NHWC kernels; convs
only); ``winograd``: our dense Winograd F(4x4, 3x3) kernel (3x3 stride-1 convs, channels-last;
:mod:`sparseift.inference.winograd`); ``direct``: our dense direct conv through the same product
(any kernel and stride, groups 1, channels-last; :mod:`sparseift.inference.direct`)."""

PATHS: tuple[Path, ...] = ("sparse", "dense", "dense_cl", "winograd", "direct")
"""Every path, in the order ``compile(..., tune=True)`` times them."""

MAX_DENSITY: dict[str, float] = {"conv": 0.3, "pointwise": 0.2, "linear": 0.15}
"""Highest density at which a layer takes the sparse path without measuring, per shape class
(``conv``: kernels larger than 1x1; ``pointwise``: 1x1 convs; ``linear``). Measured on a
2-core AVX-512 Xeon (``compile(..., tune=True)`` on Sparse Wide ResNet-18): at batch 1 the
sparse kernel wins up to density ~0.5 (PyTorch's dense conv is slow there), at batch 16-64
the crossover is ~0.25 for 3x3 convs; 1x1 convs and linear layers have less work per loaded
input value, so their crossover is lower. Depthwise convs stay dense.
``compile(..., tune=True)`` replaces this rule by timing every path on real inputs."""


@dataclass(frozen=True)
class LayerPlan:
    """Which path one layer of the compiled model takes, and why.

    ``name`` is the layer's name in the source model; ``fused`` lists the operations folded
    into it (``"batchnorm"``, ``"add"``, ``"relu"``, ``"maxpool"``); ``tile`` is the output
    columns per task of the blocked sparse kernel that ``compile(..., tune=True)`` measured
    fastest (``None``: :func:`~sparseift.inference.blocked.blocked_tile`'s rule).
    """

    name: str
    kind: str
    weight_shape: tuple[int, ...]
    density: float
    path: Path
    reason: str
    fused: tuple[str, ...] = ()
    tile: int | None = None


def _shape_class(layer: DenseLayer) -> str:
    if layer.kind == "linear":
        return "linear"
    return "pointwise" if layer.kernel_size == (1, 1) else "conv"


def unsupported_reason(layer: DenseLayer, kernels: bool) -> str | None:
    """Why ``layer`` cannot take the sparse path, or ``None`` if it can."""
    if not kernels:
        return "sparse kernels unavailable"
    if layer.is_depthwise:
        return "depthwise conv"
    if layer.padding_mode != "zeros":
        return f"padding_mode={layer.padding_mode!r}"
    return None


def path_unsupported(layer: DenseLayer, path: Path, kernels: bool) -> str | None:
    """Why ``layer`` cannot take ``path``, or ``None`` if it can."""
    if path == "sparse":
        return unsupported_reason(layer, kernels)
    if path in ("dense_cl", "winograd", "direct") and layer.kind == "linear":
        return f"{path} applies to convs only"
    if path == "winograd":
        return _winograd_unsupported(layer, kernels)
    if path == "direct":
        return _direct_unsupported(layer, kernels)
    return None


def _direct_unsupported(layer: DenseLayer, kernels: bool, path: str = "direct") -> str | None:
    """What keeps a conv off the strip-product kernels (the direct and Winograd paths)."""
    if not kernels:
        return "kernels unavailable"
    if layer.groups != 1:
        return f"{path} takes convs of groups 1"
    if layer.padding_mode != "zeros":
        return f"padding_mode={layer.padding_mode!r}"
    (top, left), total = _padding(layer)
    if total != (2 * top, 2 * left):
        return f"{path} takes symmetric padding"
    return None


def _winograd_unsupported(layer: DenseLayer, kernels: bool) -> str | None:
    if kernels and (layer.kernel_size != (3, 3) or layer.stride != (1, 1) or layer.dilation != (1, 1)):
        return "winograd takes 3x3 convs of stride 1, dilation 1, groups 1"
    return _direct_unsupported(layer, kernels, "winograd")


def dense_path(layer: DenseLayer, kernels: bool = False) -> Path:
    """The dense path a layer takes without measuring: ``winograd`` for the 3x3 stride-1 convs
    it takes when the kernels are built (2-3.5x faster than oneDNN's direct conv on every
    Sparse Wide ResNet-18 3x3 stride-1 shape, batch 1 and 64, 2-core AVX2 EPYC), else
    channels-last for convs other than depthwise (oneDNN's NHWC kernels were 1.0-1.6x faster
    than NCHW on every ResNet conv shape, batch 1 and 64, input conversion included, on a
    2-core AVX-512 EPYC), NCHW otherwise."""
    if _winograd_unsupported(layer, kernels) is None:
        return "winograd"
    return "dense_cl" if layer.kind != "linear" and not layer.is_depthwise else "dense"


def choose_path(layer: DenseLayer, density: float, kernels: bool, max_density: dict[str, float] | None = None) -> tuple[Path, str]:
    """``(path, reason)`` for a layer of ``density`` (fraction of non-zeros).

    Sparse iff the kernels are built, the layer is supported (zero padding, not depthwise)
    and ``density <= max_density[shape class]`` (classes not in ``max_density`` keep
    :data:`MAX_DENSITY`); otherwise :func:`dense_path`.
    """
    limits = {**MAX_DENSITY, **(max_density or {})}
    reason = unsupported_reason(layer, kernels)
    if reason is not None:
        return dense_path(layer, kernels), reason
    shape = _shape_class(layer)
    if density > limits[shape]:
        return dense_path(layer, kernels), f"density {density:.3f} > {limits[shape]:.3f} ({shape})"
    return "sparse", f"density {density:.3f} <= {limits[shape]:.3f} ({shape})"


def _padding(layer: DenseLayer) -> tuple[tuple[int, int], tuple[int, int]]:
    """``(top/left padding, total padding per axis)`` of a conv; string paddings resolved."""
    if layer.padding == "valid":
        return (0, 0), (0, 0)
    if layer.padding == "same":
        total = tuple(d * (k - 1) for d, k in zip(layer.dilation, layer.kernel_size))
        return (total[0] // 2, total[1] // 2), total  # type: ignore[return-value]
    ph, pw = layer.padding
    return (ph, pw), (2 * ph, 2 * pw)


def _finish(out: torch.Tensor, residual: torch.Tensor | None, relu: bool) -> torch.Tensor:
    """``relu?(out + residual)`` (the residual broadcast by PyTorch)."""
    if residual is not None:
        out = out + residual
    return torch.relu_(out) if relu else out


class InferenceLayer(BlockedModule):
    """``pool?(relu?(layer(x) + residual))`` with the layer's (BatchNorm-folded) weight.

    ``forward(x, residual=None)``; a residual whose shape differs from the output is
    broadcast-added by PyTorch. The weight is stored once, in the format of its path; the
    kernels are the process-wide build (:func:`sparseift.inference._ext.kernels`), so a
    compiled model can be copied and pickled. A sparse conv of a traced graph with
    ``blocked_halo`` set emits :class:`~sparseift.inference.blocked.Blocked` activations at a
    batch of at least the vector width (or when its input is blocked); a Winograd conv keeps
    the layout of its input (blocked in, blocked out; else channels-last). A fused max
    ``pool`` (:meth:`fuse_pool`) runs in the blocked sparse kernel's epilogue, else after the
    conv.
    """

    def __init__(
        self, plan: LayerPlan, layer: DenseLayer, weight: torch.Tensor, bias: torch.Tensor | None, relu: bool = False
    ) -> None:
        super().__init__()
        unsupported = path_unsupported(layer, plan.path, kernels() is not None)
        if unsupported is not None:
            raise ValueError(f"layer {plan.name!r} cannot take path={plan.path!r}: {unsupported}")
        self.plan = plan
        self.layer = layer
        self.relu = relu
        pad, self._total_pad = _padding(layer)
        self._geometry = ConvGeometry(layer.stride, pad, layer.dilation)
        self.register_buffer("bias", None if bias is None else bias.detach().float().contiguous())
        if plan.path == "sparse":
            self._csr = pack_weight(weight, layer.groups)
            self._cache = PlanCache()
            self.register_buffer("weight", None)
        else:
            layout = torch.channels_last if plan.path == "dense_cl" else torch.contiguous_format
            self.register_buffer("weight", weight.detach().float().contiguous(memory_format=layout))
        self._winograd_weights: dict[int, torch.Tensor] = {}  # F(m x m, 3x3) weights by tile m, made on first use
        self._direct_weight: torch.Tensor | None = None  # the direct path's packing, made on first use
        self.pool: MaxPool | None = None

    def dense_weight(self) -> torch.Tensor:
        """The layer's (folded) weight as a dense tensor, whichever path holds it."""
        return self.weight if self.plan.path != "sparse" else self._csr.to_dense().reshape(self.plan.weight_shape)

    def with_path(self, path: Path, reason: str, tile: int | None = None) -> InferenceLayer:
        """The same layer (fusions included) on ``path``, blocked sparse tasks ``tile`` columns wide."""
        plan = replace(self.plan, path=path, reason=reason, tile=tile)
        layer = InferenceLayer(plan, self.layer, self.dense_weight(), self.bias, self.relu)
        layer.blocked_halo = self.blocked_halo
        layer.pool = self.pool
        return layer

    def input_halo(self) -> tuple[int, int]:
        """The zero halo this layer needs around a blocked input: its padding on the wider side, per axis."""
        if self.layer.kind == "linear":
            return (0, 0)
        (top, left), (total_h, total_w) = self._geometry.padding, self._total_pad
        return (max(top, total_h - top), max(left, total_w - left))

    def emits_blocked(self) -> bool:
        """Convs can emit blocked activations (on the sparse path); linear layers never do."""
        return self.layer.kind != "linear"

    def fuse(self, op: Literal["add", "relu"]) -> None:
        """Record that a following residual add or ReLU now runs inside this layer."""
        if op == "relu":
            self.relu = True
        self.plan = replace(self.plan, fused=(*self.plan.fused, op))

    def fuse_pool(self, pool: MaxPool) -> None:
        """Record that the max ``pool`` reading this conv's output now runs inside this layer."""
        if self.layer.kind == "linear":
            raise ValueError(f"layer {self.plan.name!r} is linear: only convs take a fused max pool")
        self.pool = pool
        self.plan = replace(self.plan, fused=(*self.plan.fused, "maxpool"))

    def forward(self, x: torch.Tensor | Blocked, residual: torch.Tensor | Blocked | None = None) -> torch.Tensor | Blocked:
        if self.pool is None:
            return self._layer_forward(x, residual, self.blocked_halo, self.relu)
        window = self._fused_window(x, residual)
        if window is not None:
            return self._sparse_blocked(x, residual, self.blocked_halo, self.relu, window)
        # max pooling commutes with ReLU: rectify the pooled output, not the conv's 4x larger one
        return self.pool.pool_to(self._layer_forward(x, residual, (0, 0), False), self.blocked_halo, self.relu)

    def _fused_window(self, x: torch.Tensor | Blocked, residual: torch.Tensor | Blocked | None) -> FusedPool | None:
        """The pool's window for the blocked kernel's epilogue, where this input runs that kernel
        and the residual (if any) has the conv's output shape."""
        out_shape = self.output_shape(x)
        if not self._runs_blocked(x, (0, 0)) or (residual is not None and tuple(residual.shape) != out_shape):
            return None
        return self.pool.fused_window(*out_shape[2:])

    def _layer_forward(
        self, x: torch.Tensor | Blocked, residual: torch.Tensor | Blocked | None, halo: tuple[int, int] | None, relu: bool
    ) -> torch.Tensor | Blocked:
        """The layer without its pool, ReLU applied if ``relu``, the output blocked with ``halo``
        where its path can emit that."""
        if self._runs_blocked(x, halo):
            return self._sparse_blocked(x, residual, halo, relu)
        if self.plan.path == "winograd" and isinstance(x, Blocked):
            return self._winograd_blocked(x, residual, halo, relu)
        x, residual = as_tensor(x), as_tensor(residual)
        if self.plan.path == "winograd":
            return self._fused_residual(x, residual, relu, self._winograd)
        if self.plan.path == "direct":
            return self._fused_residual(x, residual, relu, self._direct)
        if self.plan.path != "sparse":
            return _finish(self._dense(x), residual, relu)
        return self._fused_residual(x, residual, relu, self._sparse)

    def _fused_residual(
        self,
        x: torch.Tensor,
        residual: torch.Tensor | None,
        relu: bool,
        kernel: Callable[[torch.Tensor, torch.Tensor | None, bool], torch.Tensor],
    ) -> torch.Tensor:
        """``kernel(x, residual, relu)`` with the residual add and ReLU in its epilogue, or, where the
        residual does not have the output's shape, added and applied by PyTorch afterwards."""
        if residual is not None and tuple(residual.shape) != self.output_shape(x):
            return _finish(kernel(x, None, False), residual, relu)
        return kernel(x, residual, relu)

    def _dense(self, x: torch.Tensor) -> torch.Tensor:
        layer = self.layer
        if layer.kind == "linear":
            return F.linear(x, self.weight, self.bias)
        if self.plan.path == "dense_cl":
            x = x.contiguous(memory_format=torch.channels_last)  # no copy if already NHWC
        if layer.padding_mode != "zeros":
            (top, left), (total_h, total_w) = self._geometry.padding, self._total_pad
            x = F.pad(x, (left, total_w - left, top, total_h - top), mode=layer.padding_mode)
            padding: str | tuple[int, int] = (0, 0)
        else:
            padding = layer.padding if isinstance(layer.padding, str) else self._geometry.padding
        return F.conv2d(x, self.weight, self.bias, layer.stride, padding, layer.dilation, layer.groups)

    def _winograd(self, x: torch.Tensor, residual: torch.Tensor | None, relu: bool) -> torch.Tensor:
        return winograd_conv2d(
            kernels(), x, self._winograd_weight(x), self.layer.out_channels, self.bias, self._geometry.padding, residual, relu
        )

    def _direct(self, x: torch.Tensor, residual: torch.Tensor | None, relu: bool) -> torch.Tensor:
        if self._direct_weight is None:
            self._direct_weight = direct_weight(self.weight, kernels().vector_width())
        return direct_conv2d(
            kernels(), x, self._direct_weight, self.layer.kernel_size, self.layer.out_channels, self.bias, self._geometry,
            residual, relu,
        )

    def _sparse(self, x: torch.Tensor, residual: torch.Tensor | None, relu: bool) -> torch.Tensor:
        ext = kernels()
        if self.layer.kind == "linear":
            return sparse_linear(ext, x, self._csr, self.bias, self._cache, residual, relu)
        return sparse_conv2d(ext, x, self._csr, self.bias, self._geometry, self._total_pad, self._cache, residual, relu)

    def reads_blocked(self) -> bool:
        """Whether this layer runs the blocked sparse kernel on blocked input: a sparse conv with a
        column stride that kernel reads."""
        layer = self.layer
        return self.plan.path == "sparse" and layer.kind != "linear" and layer.stride[1] <= MAX_COLUMN_STRIDE

    def runs_blocked(self, x: torch.Tensor | Blocked) -> bool:
        """Whether this layer runs the blocked sparse kernel on input ``x`` (where its plan's ``tile`` applies)."""
        return self._runs_blocked(x, self.blocked_halo if self.pool is None else (0, 0))

    def _runs_blocked(self, x: torch.Tensor | Blocked, halo: tuple[int, int] | None) -> bool:
        """Blocked kernel iff :meth:`reads_blocked`, and the input is blocked with enough halo, or
        is a batch of at least the vector width and blocked output is asked for (a ``halo``)."""
        if not self.reads_blocked():
            return False
        if isinstance(x, Blocked):
            need = self.input_halo()
            return x.halo[0] >= need[0] and x.halo[1] >= need[1]
        return halo is not None and x.dim() == 4 and x.shape[0] >= kernels().vector_width()

    def _sparse_blocked(
        self,
        x: torch.Tensor | Blocked,
        residual: torch.Tensor | Blocked | None,
        halo: tuple[int, int] | None,
        relu: bool,
        pool: FusedPool | None = None,
    ) -> torch.Tensor | Blocked:
        ext = kernels()
        blocked = x if isinstance(x, Blocked) else Blocked.from_tensor(ext, x, self.input_halo())
        return self._blocked(blocked, residual, halo, relu, lambda res, relu, out_halo: sparse_conv2d_blocked(
            ext, blocked, self._csr, self.bias, self._geometry, self._total_pad, self._cache, res, relu, out_halo, pool,
            self.plan.tile))

    def _winograd_blocked(
        self, x: Blocked, residual: torch.Tensor | Blocked | None, halo: tuple[int, int] | None, relu: bool
    ) -> torch.Tensor | Blocked:
        ext = kernels()
        return self._blocked(x, residual, halo, relu, lambda res, relu, out_halo: winograd_conv2d_blocked(
            ext, x, self._winograd_weight(x), self.layer.out_channels, self.bias, self._geometry.padding, res, relu, out_halo))

    def _winograd_weight(self, x: torch.Tensor | Blocked) -> torch.Tensor:
        """The transformed weight of the tile :func:`~sparseift.inference.winograd.winograd_tile` picks for input ``x``."""
        n, _, ho, wo = self.output_shape(x)
        tile = winograd_tile(n, ho, wo)
        if tile not in self._winograd_weights:
            self._winograd_weights[tile] = winograd_weight(self.weight, kernels().vector_width(), tile)
        return self._winograd_weights[tile]

    def _blocked(
        self,
        x: Blocked,
        residual: torch.Tensor | Blocked | None,
        halo: tuple[int, int] | None,
        relu: bool,
        conv: Callable[..., Blocked],
    ) -> torch.Tensor | Blocked:
        """``conv(residual, relu, out_halo)`` on blocked ``x``, the residual made blocked (or added
        afterwards if it broadcasts); the output stays blocked with ``halo`` for blocked readers,
        plain where ``halo`` is ``None``."""
        broadcast = residual is not None and tuple(residual.shape) != self.output_shape(x)
        if residual is not None and not broadcast and not isinstance(residual, Blocked):
            residual = Blocked.from_tensor(kernels(), residual, (0, 0))
        out = conv(None if broadcast else residual, relu and not broadcast, halo or (0, 0))
        if broadcast:
            return _finish(out.to_tensor(), as_tensor(residual), relu)
        return out if halo is not None else out.to_tensor()

    def output_shape(self, x: torch.Tensor | Blocked) -> tuple[int, ...]:
        """The shape of this layer's output (before a fused pool) for input ``x``."""
        if self.layer.kind == "linear":
            return (*x.shape[:-1], self.layer.out_channels)
        ho, wo = self._geometry.output_size(tuple(x.shape[2:]), self.layer.kernel_size, self._total_pad)
        return (x.shape[0], self.layer.out_channels, ho, wo)

    def extra_repr(self) -> str:
        p = self.plan
        fused = f", fused={'+'.join(p.fused)}" if p.fused else ""
        return f"{p.name!r}, {p.kind} {list(p.weight_shape)}, density={p.density:.3f}, path={p.path}{fused}"
