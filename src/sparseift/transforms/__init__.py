"""Sparse-IFT family: iso-FLOP size solvers and module rewrites (section 2.2, appendix A.1)."""

from sparseift.transforms.api import FAMILIES, Family, LayerReport, Transformed, transform
from sparseift.transforms.dims import d_sd, d_sf, k_sp, k_sw
from sparseift.transforms.modules import SparseDoped, SparseFactorized, SparseIFTModule, SparseParallel
from sparseift.transforms.nonlinearity import default_nonlinearity
from sparseift.transforms.wide import widen_model

__all__ = [
    "FAMILIES",
    "Family",
    "LayerReport",
    "Transformed",
    "transform",
    "widen_model",
    "k_sw",
    "k_sp",
    "d_sf",
    "d_sd",
    "SparseIFTModule",
    "SparseParallel",
    "SparseFactorized",
    "SparseDoped",
    "default_nonlinearity",
]
