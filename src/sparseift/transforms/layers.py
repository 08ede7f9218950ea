"""What the transforms need to know of a dense layer, whatever class implements it.

A :class:`DenseLayer` describes ``nn.Linear``, ``nn.Conv2d`` and Hugging Face's
``Conv1D`` (GPT-2's transposed linear layer) in one vocabulary: a matrix of shape
``Din x Dout`` applied at every output position, with ``Din = cin/groups * kh * kw`` for a
conv (appendix A.1). It can build fresh layers of the same kind with other widths.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import nn

__all__ = ["DenseLayer", "describe", "is_hf_conv1d", "dense_weight"]

LayerKind = Literal["linear", "conv2d"]


def is_hf_conv1d(module: nn.Module) -> bool:
    """True for Hugging Face ``transformers.pytorch_utils.Conv1D`` (weight ``(nx, nf)``).

    Recognised by shape of its attributes, so ``transformers`` is never imported here.
    """
    return (
        type(module).__name__ == "Conv1D"
        and isinstance(getattr(module, "nf", None), int)
        and isinstance(getattr(module, "weight", None), torch.Tensor)
        and module.weight.dim() == 2
    )


@dataclass(frozen=True)
class DenseLayer:
    """A dense linear map ``Din x Dout`` applied at each output position.

    For a linear layer ``kernel_size = (1, 1)`` and ``groups = 1``.
    """

    kind: LayerKind
    in_channels: int
    out_channels: int
    bias: bool
    kernel_size: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] | str = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    padding_mode: str = "zeros"

    @property
    def d_in(self) -> int:
        """``Din`` of the matrix view: ``cin/groups * kh * kw`` (A.1)."""
        return self.in_channels // self.groups * self.kernel_size[0] * self.kernel_size[1]

    @property
    def d_out(self) -> int:
        """``Dout`` of the matrix view, per group."""
        return self.out_channels // self.groups

    @property
    def is_depthwise(self) -> bool:
        """A depthwise conv: one group per input channel (A.1.1)."""
        return self.kind == "conv2d" and self.groups > 1 and self.groups == self.in_channels

    def with_sizes(
        self,
        in_channels: int | None = None,
        out_channels: int | None = None,
        *,
        pointwise: bool = False,
        bias: bool | None = None,
    ) -> DenseLayer:
        """The same layer with other widths; ``pointwise`` makes a stride-1 1x1 conv."""
        layer = replace(
            self,
            in_channels=self.in_channels if in_channels is None else in_channels,
            out_channels=self.out_channels if out_channels is None else out_channels,
            bias=self.bias if bias is None else bias,
        )
        if pointwise:
            layer = replace(layer, kernel_size=(1, 1), stride=(1, 1), padding=(0, 0), dilation=(1, 1))
        return layer

    def build(self) -> nn.Module:
        """A freshly initialised ``nn.Linear`` or ``nn.Conv2d`` with these sizes."""
        if self.kind == "linear":
            return nn.Linear(self.in_channels, self.out_channels, bias=self.bias)
        return nn.Conv2d(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
            bias=self.bias,
            padding_mode=self.padding_mode,
        )


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    return (int(value[0]), int(value[1]))


def describe(module: nn.Module) -> DenseLayer | None:
    """Describe ``module`` as a :class:`DenseLayer`, or ``None`` if it is not one."""
    if isinstance(module, nn.Linear):
        return DenseLayer("linear", module.in_features, module.out_features, module.bias is not None)
    if is_hf_conv1d(module):
        nx, nf = module.weight.shape
        return DenseLayer("linear", int(nx), int(nf), getattr(module, "bias", None) is not None)
    if isinstance(module, nn.Conv2d):
        padding = module.padding if isinstance(module.padding, str) else _pair(module.padding)
        return DenseLayer(
            "conv2d",
            module.in_channels,
            module.out_channels,
            module.bias is not None,
            kernel_size=_pair(module.kernel_size),
            stride=_pair(module.stride),
            padding=padding,
            dilation=_pair(module.dilation),
            groups=module.groups,
            padding_mode=module.padding_mode,
        )
    return None


def dense_weight(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The layer's weight in ``nn.Linear``/``nn.Conv2d`` layout (``out`` first) and its bias."""
    if is_hf_conv1d(module):
        return module.weight.t(), module.bias
    return module.weight, module.bias
