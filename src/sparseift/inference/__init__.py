"""Sparse CPU inference for Sparse-IFT models: zero-skipping kernels, BatchNorm/ReLU/residual
fusion, a per-layer sparse-or-dense decision, and ONNX export.

    import sparseift.inference as si
    fast = si.compile(model, example_inputs=x)   # checks itself against eager on x
    print(fast.summary())                          # path (sparse/dense) of every layer
    y = fast(x)
"""

from sparseift.inference.compiler import CompiledModel, apply_masks, compile, max_relative_error
from sparseift.inference.layers import MAX_DENSITY, InferenceLayer, LayerPlan, choose_path
from sparseift.inference.memory import cached_bytes, pooled_buffers, release_buffers
from sparseift.inference.onnx_export import export_onnx

__all__ = [
    "compile",
    "CompiledModel",
    "LayerPlan",
    "InferenceLayer",
    "MAX_DENSITY",
    "choose_path",
    "apply_masks",
    "max_relative_error",
    "export_onnx",
    "pooled_buffers",
    "release_buffers",
    "cached_bytes",
]
