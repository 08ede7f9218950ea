"""Sub-graph means of the spectral gaps: ``delta_r_imdb`` and ``lambda_imsg`` (appendix B).

**Sub-graphs** (Hoang et al. 2023b, "Don't just prune by magnitude! Your mask topology is a
secret weapon", NeurIPS; the same construction as the "d-left-regular" sub-graphs of Hoang
et al. 2023a): the input nodes of a layer are grouped by their degree (fan-out, how many
outputs each one reaches). Each group with at least ``min_inputs`` inputs of degree at least
``min_degree`` gives one sub-graph ``K_i``: those inputs, every output they reach, and all
edges between them, so ``K_i`` is left-regular. A sub-graph is kept when its outputs have
mean degree above 1 (otherwise it is a set of disjoint stars, not an expander). Defaults are
Hoang et al. 2023b's: ``min_inputs = 2``, ``min_degree = 3``. Unlike their code we do not
multiply each term by a Cheeger-style size factor: the sums below are the Sparse-IFT
paper's formulas.

    delta_r_imdb = (1/|K|) sum_i (2 sqrt(d_i - 1) - mu_hat(A_Ki))
    lambda_imsg  = (1/|K|) sum_i (mu_0(|W_Ki|) - mu_hat(|W_Ki|))

With no qualifying sub-graph (an empty or nearly empty layer) both are ``None``: defined
as "no sub-graph", never NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sparseift._checks import check_positive_int
from sparseift.analysis.spectral import Solver, ramanujan_gap, weighted_spectral_gap

__all__ = ["SubgraphMeans", "degree_subgraphs", "subgraph_means"]


def degree_subgraphs(adjacency: np.ndarray, min_inputs: int = 2, min_degree: int = 3) -> list[np.ndarray]:
    """Row (input node) indices of each sub-graph ``K_i`` of Hoang et al. 2023b, by increasing degree.

    See the module docstring. Columns are not listed: outputs a sub-graph does not reach are
    isolated in it and change neither its spectrum nor its average degree.
    """
    min_inputs = check_positive_int("min_inputs", min_inputs)
    min_degree = check_positive_int("min_degree", min_degree)
    fan_out = np.count_nonzero(adjacency, axis=1)
    degrees, counts = np.unique(fan_out, return_counts=True)
    groups = []
    for degree, count in zip(degrees, counts):
        if degree < min_degree or count < min_inputs:
            continue
        rows = np.flatnonzero(fan_out == degree)
        reached = np.count_nonzero(adjacency[rows].any(axis=0))
        if degree * len(rows) > reached:  # mean output degree > 1
            groups.append(rows)
    return groups


@dataclass(frozen=True)
class SubgraphMeans:
    """``delta_r_imdb`` and ``lambda_imsg`` over ``count`` sub-graphs (``None`` when ``count == 0``)."""

    delta_r_imdb: float | None
    lambda_imsg: float | None
    count: int
    solvers: tuple[str, ...]


def subgraph_means(
    adjacency: np.ndarray, weights: np.ndarray, subgraphs: Sequence[np.ndarray], solver: Solver = "auto", tol: float = 1e-6
) -> SubgraphMeans:
    """Means of the Ramanujan gap (imdb) and of the weighted spectral gap (imsg) over ``subgraphs``.

    ``subgraphs`` are row-index arrays, usually from :func:`degree_subgraphs`.
    """
    if adjacency.shape != weights.shape:
        raise ValueError(f"adjacency shape {adjacency.shape} must equal weights shape {weights.shape}")
    if not subgraphs:
        return SubgraphMeans(None, None, 0, ())
    ramanujan = [ramanujan_gap(adjacency[rows], solver, tol) for rows in subgraphs]
    weighted = [weighted_spectral_gap(weights[rows], solver, tol) for rows in subgraphs]
    solvers = tuple(sorted({gap.solver for gap in ramanujan + weighted}))
    return SubgraphMeans(
        float(np.mean([gap.value for gap in ramanujan])),
        float(np.mean([gap.value for gap in weighted])),
        len(subgraphs),
        solvers,
    )
