"""ONNX export of a sparse model with exact zeros in its weight initialisers."""

from __future__ import annotations

import copy
import os
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from sparseift.inference.compiler import MASK_SUFFIX, apply_masks

__all__ = ["OnnxExport", "export_onnx", "initializer_zeros"]


@dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx` wrote: the file, its opset and the zeros of its initialisers."""

    path: str
    opset: int
    zeros: int
    elements: int

    @property
    def sparsity(self) -> float:
        """Fraction of initialiser elements that are exactly zero."""
        return self.zeros / max(1, self.elements)


def initializer_zeros(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(exact zeros, elements)`` over the float initialisers of an ONNX file."""
    import onnx
    from onnx import numpy_helper

    zeros = elements = 0
    for init in onnx.load(os.fspath(path)).graph.initializer:
        array = numpy_helper.to_array(init)
        if array.dtype.kind == "f":
            zeros += int((array == 0).sum())
            elements += int(array.size)
    return zeros, elements


def export_onnx(
    model: nn.Module, example_inputs: torch.Tensor | tuple, path: str | os.PathLike[str], *, opset: int = 17
) -> OnnxExport:
    """Export ``model`` (masks applied, mask buffers dropped, eval mode) to ONNX at ``path``.

    BatchNorm is folded by the exporter's constant folding; a folded zero stays exactly
    zero, so the weight initialisers keep the model's sparsity. The batch axis is dynamic.
    """
    if not 7 <= opset <= 21:
        raise ValueError(f"opset must lie in [7, 21], got {opset}")
    try:
        import onnx  # noqa: F401  (the exporter writes it, initializer_zeros reads it back)
    except ImportError as error:
        raise ImportError("ONNX export needs the onnx package: pip install 'sparseift[export]'") from error
    source = copy.deepcopy(model).eval().float()
    apply_masks(source)
    for module in source.modules():
        for name in [n for n in module._buffers if n.endswith(MASK_SUFFIX)]:
            del module._buffers[name]
    args = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    names = [f"input_{i}" for i in range(len(args))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(
            source,
            args,
            os.fspath(path),
            input_names=names,
            output_names=["output"],
            dynamic_axes={n: {0: "batch"} for n in [*names, "output"]},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    zeros, elements = initializer_zeros(path)
    return OnnxExport(os.fspath(path), opset, zeros, elements)
