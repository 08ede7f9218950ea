"""Pooling layers of a compiled model that read batch-blocked activations in place.

``torchvision``'s ResNets run ``conv -> bn -> relu -> maxpool`` at the stem and
``adaptive_avg_pool2d(1) -> flatten -> fc`` at the head. Converting the stem's 64-image
output (200 MB at 224x224) to a plain tensor for PyTorch's max pooling and back again cost
more than a sparse conv of the network; :class:`MaxPool` pools the blocked layout in place
and hands it on (with the next conv's halo), :class:`GlobalAvgPool` reduces it straight to
``[N, C, 1, 1]``. On plain tensors both are PyTorch's own ops; a :class:`MaxPool` after a dense
stem whose readers include a sparse conv (:attr:`MaxPool.convert_plain`) converts its pooled
output to the blocked layout once, rather than each reader (the first conv and the residual
add of the first block) its own copy.
"""

from __future__ import annotations

from types import ModuleType

import torch
import torch.nn.functional as F
from torch import nn

from sparseift.inference._ext import kernels
from sparseift.inference.blocked import Blocked, BlockedModule, FusedPool, as_tensor

__all__ = ["MaxPool", "GlobalAvgPool", "pool_for", "pooled_size"]


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def pooled_size(size: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool) -> int:
    """PyTorch's pooled length: ``floor_or_ceil((size + 2p - d(k - 1) - 1) / s) + 1``, and with
    ``ceil_mode`` the last window must start inside the input or its left padding."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


class MaxPool(BlockedModule):
    """``nn.MaxPool2d`` (without ``return_indices``) that pools blocked activations in place."""

    def __init__(self, pool: nn.MaxPool2d) -> None:
        super().__init__()
        if pool.return_indices:
            raise ValueError("MaxPool does not return indices; keep nn.MaxPool2d for return_indices=True")
        self.kernel_size = _pair(pool.kernel_size)
        self.stride = _pair(pool.stride if pool.stride is not None else pool.kernel_size)
        self.padding = _pair(pool.padding)
        self.dilation = _pair(pool.dilation)
        self.ceil_mode = bool(pool.ceil_mode)
        self.convert_plain = False
        """Hand a plain input's pooled output on blocked (set by the compiler where a reader is a
        sparse conv that reads blocked activations; dense readers keep their own layout)."""

    def forward(self, x: torch.Tensor | Blocked) -> torch.Tensor | Blocked:
        return self.pool_to(x, self.blocked_halo)

    def pool_to(self, x: torch.Tensor | Blocked, halo: tuple[int, int] | None, relu: bool = False) -> torch.Tensor | Blocked:
        """The pooled ``x``, rectified if ``relu`` (max pooling commutes with ReLU, so a conv's ReLU
        can run on its pooled output, a quarter of the values for the ResNet stem's 3x3 stride-2
        pool): blocked with a zero ``halo`` where ``x`` is blocked (or where :attr:`convert_plain`
        asks for it), plain where ``halo`` is ``None``."""
        ext = kernels()
        if not isinstance(x, Blocked) or ext is None:
            out = self._plain(ext, as_tensor(x), relu)
            if ext is None or not self.convert_plain or halo is None or out.dim() != 4 or out.shape[0] < ext.vector_width():
                return out
            return Blocked.from_tensor(ext, out, halo)  # once here, not in each reader
        n, c, h, w = x.shape
        ho, wo = self._output_size(h, w)
        out_halo = halo or (0, 0)
        out = ext.blocked_empty(int(x.data.shape[0]), c, ho + 2 * out_halo[0], wo + 2 * out_halo[1])
        ext.max_pool_blocked_out(
            x.data, out, [*self._window(), *x.halo, *out_halo, torch.get_num_threads()], relu
        )
        blocked = Blocked(out, n, out_halo)
        return blocked if halo is not None else blocked.to_tensor()

    def fused_window(self, h: int, w: int) -> FusedPool | None:
        """This pool as a blocked conv's epilogue runs it on the conv's ``h x w`` output, or ``None``
        where that epilogue cannot (dilated windows)."""
        if self.dilation != (1, 1):
            return None
        return FusedPool(self.kernel_size, self.stride, self.padding, self._output_size(h, w))

    def _window(self) -> list[int]:
        """Kernel, stride, padding and dilation per axis, as the pooling kernels take them."""
        return [*self.kernel_size, *self.stride, *self.padding, *self.dilation]

    def _output_size(self, h: int, w: int) -> tuple[int, int]:
        """The pooled size of an ``h x w`` input (:func:`pooled_size` per axis)."""
        ho, wo = (pooled_size(*args, self.ceil_mode) for args in zip((h, w), self.kernel_size, self.stride, self.padding, self.dilation))
        return ho, wo

    def _plain(self, ext: ModuleType | None, x: torch.Tensor, relu: bool) -> torch.Tensor:
        """Max pooling (then ReLU if ``relu``) of a plain tensor: ours for float32 ``[N, C, H, W]``
        tensors that are channels-last or have contiguous rows (PyTorch pools NCHW tensors an
        order of magnitude slower, channels-last ones with an argmax besides), else PyTorch's."""
        channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
        if ext is None or x.dim() != 4 or x.dtype != torch.float32 or not (channels_last or x.stride(3) == 1):
            out = F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)
            return torch.relu_(out) if relu else out
        n, c, h, w = x.shape
        ho, wo = self._output_size(h, w)
        layout, pool = (torch.channels_last, ext.max_pool_channels_last_out) if channels_last else (torch.contiguous_format, ext.max_pool_plain_out)
        out = torch.empty((n, c, ho, wo), memory_format=layout)
        pool(x, out, [*self._window(), torch.get_num_threads()], relu)
        return out

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, dilation={self.dilation}, ceil_mode={self.ceil_mode}"


class GlobalAvgPool(BlockedModule):
    """``nn.AdaptiveAvgPool2d(1)``: the mean of every channel, ``[N, C, 1, 1]``, read from blocked activations in place."""

    def emits_blocked(self) -> bool:
        return False

    def forward(self, x: torch.Tensor | Blocked) -> torch.Tensor:
        ext = kernels()
        if not isinstance(x, Blocked) or ext is None:
            return F.adaptive_avg_pool2d(as_tensor(x), 1)
        mean = ext.mean_blocked(x.data, x.batch, x.halo[0], x.halo[1], torch.get_num_threads())
        return mean.reshape(x.batch, -1, 1, 1)


def pool_for(module: nn.Module) -> BlockedModule | None:
    """The blocked-aware replacement of a pooling module, or ``None`` if there is none."""
    if isinstance(module, nn.MaxPool2d) and not module.return_indices:
        return MaxPool(module)
    size = module.output_size if isinstance(module, nn.AdaptiveAvgPool2d) else None
    if size == 1 or (isinstance(size, tuple) and size == (1, 1)):
        return GlobalAvgPool()
    return None
