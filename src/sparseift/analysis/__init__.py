"""Spectral graph analysis of sparse networks (Sparse-IFT section 4, appendix B).

Each sparse layer is a bipartite graph (inputs -> outputs): ``A`` from its mask, ``W`` from
``|weights|``. Metrics (Hoang et al. 2023a, 2023b): the Ramanujan gap ``delta_r``, its
sub-graph mean ``delta_r_imdb``, the weighted spectral gap ``lambda`` and its sub-graph mean
``lambda_imsg``. Quick start::

    from sparseift.analysis import analyse_network, SpectralCallback, plot_spectral
    spectrum = analyse_network(model)                 # live model or state dict with *.weight_mask
    print(spectrum.summary())                         # network means of the four metrics
    callback = SpectralCallback("run/metrics.jsonl", every_epoch=True)
    callback.on_epoch_end(model, epoch, {"accuracy": acc})
    plot_spectral(["run/metrics.jsonl"], "run/plots")  # figures 4 and 6, metrics vs epoch
"""

from sparseift.analysis.callback import SpectralCallback
from sparseift.analysis.graphs import LayerGraph, layer_graph, sparse_layers
from sparseift.analysis.network import (
    METRICS,
    LayerSpectrum,
    NetworkSpectrum,
    SpectralOptions,
    analyse_layer,
    analyse_network,
)
from sparseift.analysis.plots import plot_spectral, read_metrics
from sparseift.analysis.spectral import (
    Gap,
    TopSingularValues,
    average_degree,
    ramanujan_gap,
    top_singular_values,
    weighted_spectral_gap,
)
from sparseift.analysis.subgraphs import SubgraphMeans, degree_subgraphs, subgraph_means

__all__ = [
    "METRICS",
    "Gap",
    "LayerGraph",
    "LayerSpectrum",
    "NetworkSpectrum",
    "SpectralCallback",
    "SpectralOptions",
    "SubgraphMeans",
    "TopSingularValues",
    "analyse_layer",
    "analyse_network",
    "average_degree",
    "degree_subgraphs",
    "layer_graph",
    "plot_spectral",
    "ramanujan_gap",
    "read_metrics",
    "sparse_layers",
    "subgraph_means",
    "top_singular_values",
    "weighted_spectral_gap",
]
