"""Per-layer and per-network spectral metrics of a sparse model (section 4, appendix B)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
from torch import nn

from sparseift._checks import check_choice, check_positive_int
from sparseift.analysis.graphs import LayerGraph, sparse_layers
from sparseift.analysis.spectral import SOLVERS, Solver, ramanujan_gap, weighted_spectral_gap
from sparseift.analysis.subgraphs import SubgraphMeans, degree_subgraphs, subgraph_means

__all__ = ["SUBGRAPHS", "METRICS", "SpectralOptions", "LayerSpectrum", "NetworkSpectrum", "analyse_layer", "analyse_network"]

SUBGRAPHS: tuple[str, ...] = ("degree", "none")
METRICS: tuple[str, ...] = ("delta_r", "delta_r_imdb", "lambda", "lambda_imsg")
"""The four metrics of the paper, by the names used in rows, CSV and JSONL."""


@dataclass(frozen=True)
class SpectralOptions:
    """How to analyse a layer.

    ``subgraphs``: ``"degree"`` (Hoang et al. 2023b, see :mod:`sparseift.analysis.subgraphs`)
    or ``"none"`` (skip ``delta_r_imdb`` / ``lambda_imsg``). ``solver`` and ``tol``: see
    :func:`sparseift.analysis.spectral.top_singular_values`.
    """

    subgraphs: Literal["degree", "none"] = "degree"
    solver: Solver = "auto"
    tol: float = 1e-6
    min_inputs: int = 2
    min_degree: int = 3

    def __post_init__(self) -> None:
        check_choice("subgraphs", self.subgraphs, SUBGRAPHS)
        check_choice("solver", self.solver, SOLVERS)
        check_positive_int("min_inputs", self.min_inputs)
        check_positive_int("min_degree", self.min_degree)
        if not math.isfinite(self.tol) or not 0.0 <= self.tol < 1.0:
            raise ValueError(f"tol must lie in [0, 1), got {self.tol!r}")


@dataclass(frozen=True)
class LayerSpectrum:
    """The metrics of one layer. A metric is ``None`` when undefined, and ``note`` says why.

    ``inputs``/``outputs``: node counts of the unrolled graph; ``degree``: average degree
    ``d``; ``mu_0``/``mu_hat``: top and largest non-trivial eigenvalue of ``A``;
    ``w_mu_0``/``w_mu_hat``: the same of ``|W|``; ``subgraphs``: ``|K|``; ``solver``: the
    solver(s) that ran, ``+``-joined (see :func:`sparseift.analysis.spectral.top_singular_values`;
    ``dense-fallback`` when Lanczos did not converge).
    """

    layer: str
    inputs: int
    outputs: int
    edges: int
    density: float
    degree: float | None
    mu_0: float | None
    mu_hat: float | None
    delta_r: float | None
    w_mu_0: float | None
    w_mu_hat: float | None
    lambda_: float | None
    delta_r_imdb: float | None
    lambda_imsg: float | None
    subgraphs: int
    solver: str
    note: str = ""

    def row(self) -> dict[str, object]:
        """A flat dict for CSV / JSONL (``lambda_`` is written ``lambda``)."""
        row = asdict(self)
        row["lambda"] = row.pop("lambda_")
        return row


def _mean(values: list[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None


@dataclass(frozen=True)
class NetworkSpectrum:
    """The metrics of every sparse layer, and their network aggregates."""

    layers: tuple[LayerSpectrum, ...] = field(default_factory=tuple)

    def summary(self) -> dict[str, float | int | None]:
        """Mean of each metric over the layers where it is defined (``None`` if none is),
        with ``layers`` (count) and ``<metric>_layers`` (how many layers entered each mean)."""
        rows = [layer.row() for layer in self.layers]
        out: dict[str, float | int | None] = {"layers": len(rows)}
        for metric in METRICS:
            values = [row[metric] for row in rows]
            out[metric] = _mean(values)
            out[f"{metric}_layers"] = sum(v is not None for v in values)
        return out


def analyse_layer(graph: LayerGraph, options: SpectralOptions = SpectralOptions()) -> LayerSpectrum:
    """All four metrics of one layer graph: ``delta_r``, ``lambda`` and, over the sub-graphs,
    ``delta_r_imdb`` and ``lambda_imsg`` (Sparse-IFT appendix B; Hoang et al. 2023a/b).

    A layer without edges gets ``None`` metrics and the note ``"no edges"``.
    """
    inputs, outputs = graph.adjacency.shape
    edges = graph.edges
    density = edges / (inputs * outputs)
    if edges == 0:
        return LayerSpectrum(graph.name, inputs, outputs, 0, 0.0, *([None] * 9), 0, "-", "no edges")
    a = ramanujan_gap(graph.adjacency, options.solver, options.tol)
    w = weighted_spectral_gap(graph.weights, options.solver, options.tol)
    solvers = {a.solver, w.solver}
    note = ""
    if options.subgraphs == "degree":
        groups = degree_subgraphs(graph.adjacency, options.min_inputs, options.min_degree)
        means = subgraph_means(graph.adjacency, graph.weights, groups, options.solver, options.tol)
        solvers.update(means.solvers)
        if means.count == 0:
            note = f"no sub-graph of >= {options.min_inputs} inputs with degree >= {options.min_degree}"
    else:
        means = SubgraphMeans(None, None, 0, ())
        note = "sub-graphs not computed"
    return LayerSpectrum(
        graph.name,
        inputs,
        outputs,
        edges,
        density,
        a.degree,
        a.mu_0,
        a.mu_hat,
        a.value,
        w.mu_0,
        w.mu_hat,
        w.value,
        means.delta_r_imdb,
        means.lambda_imsg,
        means.count,
        "+".join(sorted(solvers)),
        note,
    )


def analyse_network(
    source: nn.Module | Mapping[str, torch.Tensor],
    options: SpectralOptions = SpectralOptions(),
    masks: Mapping[str, torch.Tensor] | None = None,
    groups: Mapping[str, int] | None = None,
) -> NetworkSpectrum:
    """Analyse every sparse layer of a live model or a state dict (see
    :func:`sparseift.analysis.graphs.sparse_layers` for what counts as sparse).

    Raises if there is no sparse layer: an all-``None`` summary would hide a missing mask.
    """
    layers = tuple(analyse_layer(graph, options) for graph in sparse_layers(source, masks, groups))
    if not layers:
        raise ValueError(
            "no sparse layer found: expected 'weight_mask' buffers (state-dict keys 'foo.weight_mask') or masks={...}"
        )
    return NetworkSpectrum(layers)
