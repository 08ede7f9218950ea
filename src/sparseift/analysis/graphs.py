"""A sparse layer read as a bipartite graph, inputs -> outputs (section 4, appendix B).

**Graph of a layer.** Following Hoang et al. (2023a, "Revisiting pruning at initialization
through the lens of Ramanujan graph", ICLR; and 2023b, "Don't just prune by magnitude! Your
mask topology is a secret weapon", NeurIPS; public code VITA-Group/ramanujan-on-pai), a
layer's weight of shape ``(c_out, c_in/groups, *kernel)`` is *unrolled*: it is reshaped to
``(c_out, c_in/groups * kh * kw)`` and transposed, so every (input channel, kernel tap) pair
is one input node and every output channel one output node. The biadjacency matrix ``B``
(rows = input nodes, columns = output nodes) is

    A-graph:  B[i, j] = 1      if the mask keeps the weight joining input i to output j
    W-graph:  B[i, j] = |w_ij| on the same edges (zero elsewhere)

and the full adjacency is ``[[0, B], [B^T, 0]]``. A linear layer ``(out, in)`` is the same
with kernel ``1 x 1``. We chose the unrolled kernel over "channels as nodes with kh*kw
parallel edges" because it is the definition both Hoang et al. papers measure, so our
numbers are comparable with theirs, and every kept weight is exactly one edge.

A grouped convolution (``groups = g``, known only from a live module) is block-diagonal:
``c_in * kh * kw`` input nodes, and output channels of group ``k`` connect only to the
inputs of group ``k``. A plain state dict does not record ``groups``; pass it by name.
Hugging Face ``Conv1D`` stores its weight as ``(in, out)``; a live module is recognised and
read the right way round, a state dict is read as ``(out, in)`` like every other weight.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from sparseift._checks import check_positive_int
from sparseift.transforms.layers import is_hf_conv1d

__all__ = ["LayerGraph", "layer_graph", "sparse_layers", "MASK_SUFFIX"]

MASK_SUFFIX = "_mask"
"""The mask of parameter ``foo.weight`` is the buffer ``foo.weight_mask``."""


@dataclass(frozen=True)
class LayerGraph:
    """The bipartite graph of one sparse layer.

    ``adjacency`` is the boolean biadjacency ``B`` of the mask, shape ``(inputs, outputs)``;
    ``weights`` is ``|W|`` on the same edges (float64, zero off the mask).
    """

    name: str
    adjacency: np.ndarray
    weights: np.ndarray

    @property
    def edges(self) -> int:
        """Number of edges (kept weights)."""
        return int(np.count_nonzero(self.adjacency))


def _block_diagonal(matrix: torch.Tensor, groups: int) -> torch.Tensor:
    """``(out, in_per_group)`` of a grouped layer -> block-diagonal ``(out, in_per_group * groups)``."""
    out = matrix.shape[0]
    return torch.block_diag(*matrix.reshape(groups, out // groups, -1).unbind(0))


def layer_graph(
    name: str, weight: torch.Tensor, mask: torch.Tensor, groups: int = 1, *, in_out: bool = False
) -> LayerGraph:
    """The unrolled bipartite graph of a layer (Hoang et al. 2023a/b; see the module docstring).

    ``weight`` and ``mask`` have the layer's weight shape ``(c_out, c_in/groups, *kernel)``, or
    ``(in, out)`` when ``in_out`` (Hugging Face ``Conv1D``). The mask decides the edges; the
    weights only give their magnitudes.
    """
    groups = check_positive_int("groups", groups)
    if weight.dim() < 2:
        raise ValueError(f"{name}: a graph needs a weight with >= 2 dims (out, in, ...), got shape {tuple(weight.shape)}")
    if tuple(mask.shape) != tuple(weight.shape):
        raise ValueError(f"{name}: mask shape {tuple(mask.shape)} must equal weight shape {tuple(weight.shape)}")
    if weight.shape[0] % groups:
        raise ValueError(f"{name}: groups must divide the {weight.shape[0]} output channels, got groups={groups}")
    kept = mask.detach().to("cpu", torch.bool)
    magnitude = weight.detach().to("cpu", torch.float64).abs() * kept
    if in_out:
        kept, magnitude = kept.T, magnitude.T
    kept, magnitude = kept.reshape(kept.shape[0], -1), magnitude.reshape(magnitude.shape[0], -1)
    if groups > 1:
        kept, magnitude = _block_diagonal(kept, groups), _block_diagonal(magnitude, groups)
    # (out, in) -> biadjacency (in, out): a transposed view, no copy.
    return LayerGraph(name, kept.numpy().T, magnitude.numpy().T)


def _module_graphs(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> Iterator[LayerGraph]:
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.Tensor):
            continue
        mask = module._buffers.get("weight" + MASK_SUFFIX)
        if mask is None:
            mask = masks.get(f"{name}.weight")
        if mask is None:
            continue
        groups = module.groups if isinstance(module, nn.modules.conv._ConvNd) else 1
        yield layer_graph(name, weight, mask, groups, in_out=is_hf_conv1d(module))


def _state_dict_graphs(
    state: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor], groups: Mapping[str, int]
) -> Iterator[LayerGraph]:
    suffix = ".weight" + MASK_SUFFIX
    found = {key[: -len(suffix)]: value for key, value in state.items() if key.endswith(suffix)}
    found.update({key[: -len(".weight")]: value for key, value in masks.items()})
    for name, mask in found.items():
        weight = state.get(f"{name}.weight")
        if weight is None:
            raise ValueError(f"mask of layer {name!r} has no weight {name + '.weight'!r} in the state dict")
        yield layer_graph(name, weight, mask, groups.get(name, 1))


def sparse_layers(
    source: nn.Module | Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor] | None = None,
    groups: Mapping[str, int] | None = None,
) -> Iterator[LayerGraph]:
    """The graph of every sparse layer of a live model or a state dict, one at a time.

    A layer is sparse when its ``weight`` has a ``weight_mask`` buffer (state-dict key
    ``foo.weight_mask``), or when ``masks`` maps its parameter name (``foo.weight``) to a mask.
    ``groups`` gives the conv groups of a state dict's layers by layer name (default 1); a
    live module knows its own. Layers come one at a time so only one dense copy is alive.
    """
    masks = dict(masks or {})
    bad = [key for key in masks if not key.endswith(".weight")]
    if bad:
        raise ValueError(f"masks must be keyed by parameter names ending in '.weight', got {bad[:3]}")
    if isinstance(source, nn.Module):
        if groups:
            raise ValueError("groups is only for a state dict; a live module knows its own conv groups")
        return _module_graphs(source, masks)
    if isinstance(source, Mapping):
        return _state_dict_graphs(source, masks, dict(groups or {}))
    raise TypeError(f"source must be an nn.Module or a state dict (mapping of tensors), got {type(source).__name__}")
