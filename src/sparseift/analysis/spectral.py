"""Spectral gaps of a bipartite graph from its biadjacency matrix (section 4, appendix B).

Pure functions on a biadjacency ``B`` of shape ``(inputs, outputs)`` (see
:mod:`sparseift.analysis.graphs`). The full adjacency ``[[0, B], [B^T, 0]]`` has the
eigenvalues ``+-sigma_i(B)`` (and zeros), so its top eigenvalue is ``mu_0 = sigma_0(B)``, its
trivial pair is ``+-mu_0`` and its largest non-trivial eigenvalue is ``mu_hat = sigma_1(B)``:
two singular values of a rectangular matrix replace an eigendecomposition of size
``inputs + outputs``. If ``B`` has a single singular value (one row or one column) there is
no non-trivial pair and ``mu_hat = 0`` (the remaining eigenvalues are zeros).

The two singular values are the square roots of the top two eigenvalues of the Gram matrix
of the smaller side (``B^T B`` or ``B B^T``, size ``k = min(inputs, outputs)``), by one of

* ``"gram"``: the Gram is formed with one BLAS GEMM (for a 0/1 mask it holds integer counts
  and is formed exactly in float32), then Lanczos (ARPACK ``eigsh``) finds its top two
  eigenvalues; no ``O(k^3)`` tridiagonalisation.
* ``"sparse"``: the Gram is never formed; Lanczos applies it through two sparse CSR products
  per iteration. Cheaper when the layer is very sparse or ``k`` is large.
* ``"dense"``: the Gram solved by LAPACK (``eigvalsh``, top two only): the exact reference,
  used for Gram matrices of size <= 48 and as the fall-back when Lanczos does not converge.

``"auto"`` picks ``"gram"`` or ``"sparse"`` by a cost model (:func:`choose_solver`). Every
result names the solver that ran: ``"gram-lanczos"``, ``"sparse-lanczos"``, ``"dense"`` (LAPACK,
asked for or a Gram of size <= 48) or ``"dense-fallback"`` (Lanczos did not converge).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg

from sparseift._checks import check_choice

__all__ = [
    "SOLVERS",
    "Solver",
    "TopSingularValues",
    "Gap",
    "choose_solver",
    "top_singular_values",
    "average_degree",
    "ramanujan_gap",
    "weighted_spectral_gap",
]

Solver = Literal["auto", "gram", "sparse", "dense"]
SOLVERS: tuple[str, ...] = ("auto", "gram", "sparse", "dense")

SPARSE_FLOPS_PER_EDGE = 2.0e4
"""Cost model of :func:`choose_solver`: one sparse Lanczos run (about 100 pairs of CSR
products at a few ns per edge) costs as much as this many GEMM flops (a few hundredths of a
ns each) per edge. Measured on a 2-core x86 CPU with scipy 1.17 / OpenBLAS 0.3; only the
order of magnitude matters."""

_LAPACK_MAX = 48  # Gram matrices up to this size go to LAPACK directly
_EXACT_FLOAT32 = 2**24  # 0/1 Gram entries are counts <= columns: exact in float32 below this


@dataclass(frozen=True)
class TopSingularValues:
    """``first >= second``: the two largest singular values of ``B`` and the solver that ran."""

    first: float
    second: float
    solver: str


@dataclass(frozen=True)
class Gap:
    """A spectral gap ``value`` with the eigenvalues it comes from.

    ``mu_0`` is the trivial (top) eigenvalue of the adjacency and ``mu_hat`` the largest
    non-trivial one; ``degree`` is the average degree ``d`` (unweighted gaps only).
    """

    value: float
    mu_0: float
    mu_hat: float
    solver: str
    degree: float | None = None


def choose_solver(shape: tuple[int, int], edges: int) -> Literal["gram", "sparse"]:
    """The cheaper of ``"gram"`` and ``"sparse"`` for a ``shape`` biadjacency with ``edges`` non-zeros.

    ``"gram"`` costs ``n * m * k`` flops (the GEMM; ``k = min(n, m)``) plus ``300 k^2`` for
    Lanczos on the formed Gram; ``"sparse"`` about :data:`SPARSE_FLOPS_PER_EDGE` per edge.
    """
    n, m = shape
    k = min(n, m)
    return "gram" if n * m * k + 300 * k * k <= SPARSE_FLOPS_PER_EDGE * edges else "sparse"


def _small_side_first(b: np.ndarray) -> np.ndarray:
    """``b`` or ``b.T`` so that rows are the smaller side: the Gram is ``rows x rows``."""
    return b if b.shape[0] <= b.shape[1] else b.T


def _gram(b: np.ndarray) -> np.ndarray:
    """The float64 Gram matrix of the smaller side of ``b`` (exact float32 GEMM for a 0/1 mask)."""
    short = _small_side_first(b)
    exact32 = short.dtype == np.bool_ and short.shape[1] < _EXACT_FLOAT32
    values = short.astype(np.float32 if exact32 else np.float64)
    return (values @ values.T).astype(np.float64)


def _sqrt_pair(top: np.ndarray) -> tuple[float, float]:
    """Two largest of ``sigma^2`` eigenvalues (any order; one if the Gram is 1 x 1) -> ``sigma_0 >= sigma_1``."""
    ordered = sorted((max(float(v), 0.0) for v in top), reverse=True) + [0.0]
    return math.sqrt(ordered[0]), math.sqrt(ordered[1])


def _lapack_top_two(gram: np.ndarray) -> tuple[float, float]:
    k = gram.shape[0]
    return _sqrt_pair(scipy.linalg.eigvalsh(gram, subset_by_index=[max(k - 2, 0), k - 1]))


def _lanczos_top_two(operator: np.ndarray | scipy.sparse.linalg.LinearOperator, tol: float) -> tuple[float, float]:
    # A seeded random start: the all-ones vector is orthogonal to the second eigenvector of
    # a biregular graph and would never find it.
    start = np.random.default_rng(0).standard_normal(operator.shape[0])
    return _sqrt_pair(scipy.sparse.linalg.eigsh(operator, k=2, which="LA", tol=tol, v0=start, return_eigenvectors=False))


def _sparse_gram(b: np.ndarray) -> scipy.sparse.linalg.LinearOperator:
    """The Gram of the smaller side as an operator: two CSR products, never formed."""
    short = _small_side_first(b)
    rows, cols = np.nonzero(short)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=short.shape[0]))])
    csr = scipy.sparse.csr_array((short[rows, cols].astype(np.float64), cols, indptr), shape=short.shape)
    csr_t = csr.T.tocsr()
    k = short.shape[0]
    return scipy.sparse.linalg.LinearOperator((k, k), matvec=lambda v: csr @ (csr_t @ v), dtype=np.float64)


def top_singular_values(b: np.ndarray, solver: Solver = "auto", tol: float = 1e-6) -> TopSingularValues:
    """The two largest singular values of ``B`` (``mu_0`` and ``mu_hat`` of its bipartite graph).

    ``b`` is a 2-D bool or float array; ``solver`` as in the module docstring. ``tol`` is
    ARPACK's relative residual tolerance: the error of ``sigma^2`` is at most ``tol * sigma_0^2``
    and in practice about its square. Through a Gram matrix a ``sigma_1`` near 0 carries an
    absolute error of up to about ``sqrt(k * machine eps) * sigma_0`` (float64: 1.5e-8 sqrt(k)).
    """
    check_choice("solver", solver, SOLVERS)
    if b.ndim != 2 or 0 in b.shape:
        raise ValueError(f"b must be a non-empty 2-D biadjacency matrix, got shape {b.shape}")
    if not math.isfinite(tol) or not 0.0 <= tol < 1.0:
        raise ValueError(f"tol must lie in [0, 1), got {tol!r}")
    k = min(b.shape)
    chosen = choose_solver(b.shape, int(np.count_nonzero(b))) if solver == "auto" else solver
    if chosen == "sparse" and k > 2:
        operator: np.ndarray | scipy.sparse.linalg.LinearOperator = _sparse_gram(b)
    elif chosen == "gram" and k > _LAPACK_MAX:
        operator = _gram(b)
    else:
        return TopSingularValues(*_lapack_top_two(_gram(b)), "dense")
    try:
        return TopSingularValues(*_lanczos_top_two(operator, tol), f"{chosen}-lanczos")
    except scipy.sparse.linalg.ArpackNoConvergence:
        return TopSingularValues(*_lapack_top_two(_gram(b)), "dense-fallback")


def average_degree(adjacency: np.ndarray) -> float:
    """``d = 2|E| / |V|`` over the nodes with at least one edge (isolated nodes removed, as
    Hoang et al. 2023a/b do; they add only zero eigenvalues). Raises if there is no edge."""
    edges = int(np.count_nonzero(adjacency))
    if edges == 0:
        raise ValueError(f"adjacency of shape {adjacency.shape} has no edges: the average degree d is undefined")
    nodes = int(np.count_nonzero(adjacency.any(axis=1))) + int(np.count_nonzero(adjacency.any(axis=0)))
    return 2.0 * edges / nodes


def ramanujan_gap(adjacency: np.ndarray, solver: Solver = "auto", tol: float = 1e-6) -> Gap:
    """Ramanujan gap ``delta_r = 2 sqrt(d - 1) - mu_hat(A)`` (Sparse-IFT appendix B; Hoang et al.
    2023a, eq. for the Ramanujan bound), ``d`` the average degree (:func:`average_degree`).

    A graph with an edge has ``d >= 1``, so the value is always defined; an empty graph raises.
    """
    d = average_degree(adjacency)
    top = top_singular_values(adjacency.astype(bool, copy=False), solver, tol)
    return Gap(2.0 * math.sqrt(d - 1.0) - top.second, top.first, top.second, top.solver, d)


def weighted_spectral_gap(weights: np.ndarray, solver: Solver = "auto", tol: float = 1e-6) -> Gap:
    """Weighted spectral gap ``lambda = mu_0(|W|) - mu_hat(|W|)`` (Sparse-IFT appendix B;
    Hoang et al. 2023b): trivial minus largest non-trivial eigenvalue of the graph of ``|W|``."""
    top = top_singular_values(np.abs(weights), solver, tol)
    return Gap(top.first - top.second, top.first, top.second, top.solver)
