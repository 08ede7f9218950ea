"""The non-linearity ``sigma`` inside Sparse Parallel, Factorized and Doped (section 2.2).

The paper uses BatchNorm followed by ReLU for conv nets (appendix C.2). For linear
layers sparseift's default is LayerNorm followed by GELU: it normalises over the feature
dimension, so it works on ``(B, D)`` inputs and on transformer token streams ``(B, T, D)``
alike, and is the norm/activation pair of the transformers these layers live in.
``None`` gives the linear variants of the paper's ablation (figure 3, table 7).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Union

from torch import nn

from sparseift.transforms.layers import LayerKind

__all__ = ["NonlinearityFactory", "Nonlinearity", "default_nonlinearity", "make_nonlinearity"]

NonlinearityFactory = Callable[[LayerKind, int], nn.Module]
"""Builds ``sigma`` for a layer kind (``"linear"``/``"conv2d"``) and a channel count."""

Nonlinearity = Union[NonlinearityFactory, Literal["default"], None]


def default_nonlinearity(kind: LayerKind, channels: int) -> nn.Module:
    """BatchNorm2d + ReLU after a conv (C.2); LayerNorm + GELU after a linear layer."""
    if kind == "conv2d":
        return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
    return nn.Sequential(nn.LayerNorm(channels), nn.GELU())


def make_nonlinearity(spec: Nonlinearity, kind: LayerKind, channels: int) -> nn.Module:
    """Build ``sigma`` from a spec: ``"default"``, ``None`` (identity) or a factory."""
    if spec is None:
        return nn.Identity()
    if spec == "default":
        return default_nonlinearity(kind, channels)
    if callable(spec):
        module = spec(kind, channels)
        if not isinstance(module, nn.Module):
            raise TypeError(f"nonlinearity factory must return an nn.Module, got {type(module).__name__}")
        return module
    raise TypeError(f"nonlinearity must be 'default', None or a callable (kind, channels) -> nn.Module; got {spec!r}")
