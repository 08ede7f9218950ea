"""Build one Sparse Parallel / Factorized / Doped module from one dense layer (A.1).

Initialisation: the full-size matrix that exists in the dense layer too (Parallel's first
branch, Doped's ``theta_sd``) starts as a copy of the dense weight and bias; everything
else gets its layer type's default PyTorch initialisation. So at ``s = 0`` with
``nonlinearity=None`` Parallel (one branch) and Doped (rank 0) compute exactly the dense
layer. Factorized at ``s = 0`` is a dense low-rank factorisation of width
``Din*Dout/(Din+Dout)`` and does not reproduce the dense function (it can't: its rank is
lower), only its FLOPs.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from sparseift.transforms import dims
from sparseift.transforms.layers import DenseLayer, dense_weight
from sparseift.transforms.modules import SparseDoped, SparseFactorized, SparseIFTModule, SparseParallel
from sparseift.transforms.nonlinearity import Nonlinearity, make_nonlinearity

__all__ = ["LayerwiseFamily", "build_layerwise", "layer_size"]

LayerwiseFamily = Literal["parallel", "factorized", "doped"]


def layer_size(family: LayerwiseFamily, layer: DenseLayer, sparsity: float) -> dims.IntegerSize:
    """The family's size parameter for this layer: ``k_sp``, ``d_sf`` or ``d_sd`` (table 1).

    For grouped convs the rank is solved per group (``Din = cin/g*kh*kw``, ``Dout = cout/g``)
    and the inner width is a multiple of ``g``.
    """
    if family == "parallel":
        return dims.parallel_branches(sparsity)
    solver = dims.factorized_rank if family == "factorized" else dims.doped_rank
    return solver(sparsity, layer.d_in, layer.d_out, multiple=layer.groups)


def _copy_dense(target: nn.Module, source: nn.Module) -> None:
    weight, bias = dense_weight(source)
    with torch.no_grad():
        target.weight.copy_(weight.reshape(target.weight.shape))
        if bias is not None and target.bias is not None:
            target.bias.copy_(bias)


def build_layerwise(
    family: LayerwiseFamily,
    dense: nn.Module,
    layer: DenseLayer,
    sparsity: float,
    nonlinearity: Nonlinearity,
) -> tuple[SparseIFTModule, dims.IntegerSize]:
    """Replace one dense layer by its Sparse-IFT module; returns it and the size chosen."""
    size = layer_size(family, layer, sparsity)
    if family == "parallel":
        branches = [layer.build() for _ in range(size.value)]
        _copy_dense(branches[0], dense)
        sigmas = [make_nonlinearity(nonlinearity, layer.kind, layer.out_channels) for _ in branches]
        return SparseParallel(branches, sigmas), size
    if family == "factorized":
        u = layer.with_sizes(out_channels=size.value, bias=False).build()
        v = layer.with_sizes(in_channels=size.value, pointwise=True).build()
        return SparseFactorized(u, make_nonlinearity(nonlinearity, layer.kind, size.value), v), size
    sparse = layer.build()
    _copy_dense(sparse, dense)
    sigma = make_nonlinearity(nonlinearity, layer.kind, layer.out_channels)
    if size.value == 0:
        return SparseDoped(sparse, sigma), size
    u = layer.with_sizes(out_channels=size.value, bias=False).build()
    v = layer.with_sizes(in_channels=size.value, pointwise=True, bias=False).build()
    return SparseDoped(sparse, sigma, u, v), size
