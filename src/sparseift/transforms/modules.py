"""The layer-wise Sparse-IFT modules (section 2.2, figure 2): Parallel, Factorized, Doped.

Each keeps the in/out shape of the dense layer it replaces, so it can be dropped in layer
by layer. Each names the parameters that are sparse through
:meth:`SparseIFTModule.sparse_parameter_names`: the transform reads the sparse set from
there, and nowhere else, so Sparse Doped's dense low-rank ``U``, ``V`` can never be masked.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SparseIFTModule", "SparseParallel", "SparseFactorized", "SparseDoped"]


class SparseIFTModule(nn.Module):
    """Base of the layer-wise family members."""

    def sparse_parameter_names(self) -> tuple[str, ...]:
        """Names, relative to this module, of the parameters trained sparse."""
        raise NotImplementedError


class SparseParallel(SparseIFTModule):
    """Sparse Parallel: ``f(z) = sum_j sigma_j(theta_j^T z)`` with ``k_sp`` sparse branches."""

    def __init__(self, branches: list[nn.Module], nonlinearities: list[nn.Module]) -> None:
        super().__init__()
        if len(branches) != len(nonlinearities) or not branches:
            raise ValueError("SparseParallel needs one non-linearity per branch and at least one branch")
        self.branches = nn.ModuleList(branches)
        self.nonlinearities = nn.ModuleList(nonlinearities)

    def sparse_parameter_names(self) -> tuple[str, ...]:
        return tuple(f"branches.{j}.weight" for j in range(len(self.branches)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.nonlinearities[0](self.branches[0](x))
        for branch, sigma in zip(self.branches[1:], self.nonlinearities[1:]):
            out = out + sigma(branch(x))
        return out


class SparseFactorized(SparseIFTModule):
    """Sparse Factorized: ``f(z) = V^T sigma(U^T z)``, ``U`` and ``V`` both sparse."""

    def __init__(self, u: nn.Module, nonlinearity: nn.Module, v: nn.Module) -> None:
        super().__init__()
        self.U = u
        self.nonlinearity = nonlinearity
        self.V = v

    def sparse_parameter_names(self) -> tuple[str, ...]:
        return ("U.weight", "V.weight")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.V(self.nonlinearity(self.U(x)))


class SparseDoped(SparseIFTModule):
    """Sparse Doped: ``f(z) = V^T (U^T z) + sigma(theta_sd^T z)``.

    ``U``, ``V`` are a DENSE low-rank pair of rank ``d_sd`` (absent at rank 0); only the
    full-size ``theta_sd`` (``self.sparse``) is sparse.
    """

    def __init__(
        self,
        sparse: nn.Module,
        nonlinearity: nn.Module,
        u: nn.Module | None = None,
        v: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if (u is None) != (v is None):
            raise ValueError("SparseDoped needs both U and V, or neither (rank 0)")
        self.sparse = sparse
        self.nonlinearity = nonlinearity
        self.U = u
        self.V = v

    def sparse_parameter_names(self) -> tuple[str, ...]:
        return ("sparse.weight",)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.nonlinearity(self.sparse(x))
        if self.U is not None:
            out = out + self.V(self.U(x))
        return out
