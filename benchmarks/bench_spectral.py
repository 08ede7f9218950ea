"""Time the spectral analysis of a Sparse Wide ResNet-18 (ImageNet widths) at several sparsities.

Routes, side by side in one run, on the same random masks (uniform per layer, seeded):

* ``auto``: what ``analyse_network`` does (cost model: formed Gram + Lanczos, or sparse Lanczos),
  with and without the degree sub-graphs (imdb / imsg);
* ``gram`` / ``sparse``: every layer's delta_r and lambda by one route only;
* ``full eigh``: the baseline, a dense eigendecomposition of the full adjacency
  ``[[0, B], [B^T, 0]]`` of A and |W| (numpy ``eigvalsh``), only on the layers with at most
  ``--baseline-max-nodes`` nodes (it is O((n+m)^3)); our route is timed on the same layers.

Run: ``python benchmarks/bench_spectral.py [--sparsity 0.5 0.75 0.9] [--threads 2]``
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import scipy
import torch
import torchvision

import sparseift
from sparseift.analysis import SpectralOptions, analyse_layer, sparse_layers
from sparseift.flops.table import format_table


def masked_wide_resnet18(sparsity: float, seed: int) -> torch.nn.Module:
    """Sparse Wide ResNet-18 with a uniform random mask of each sparse layer's target sparsity."""
    result = sparseift.transform(torchvision.models.resnet18(), "wide", sparsity, example_inputs=torch.randn(1, 3, 224, 224))
    generator = torch.Generator().manual_seed(seed)
    for name, s in result.sparse_params.items():
        module = result.model.get_submodule(name.rsplit(".", 1)[0])
        n = module.weight.numel()
        mask = torch.zeros(n, dtype=torch.bool)
        mask[torch.randperm(n, generator=generator)[: round((1 - s) * n)]] = True
        mask = mask.view_as(module.weight)
        with torch.no_grad():
            module.weight.mul_(mask)
        module.register_buffer("weight_mask", mask)
    return result.model


def full_eigh_gaps(adjacency: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """Baseline mu_hat(A) and lambda(|W|) from full (n+m)^2 dense eigendecompositions."""
    out = []
    for b in (adjacency.astype(np.float64), weights):
        n, m = b.shape
        full = np.zeros((n + m, n + m))
        full[:n, n:], full[n:, :n] = b, b.T
        ev = np.sort(np.linalg.eigvalsh(full))[::-1]
        out.append((ev[0], ev[1]))
    return out[0][1], out[1][0] - out[1][1]


def timed(fn):  # noqa: ANN001, ANN201 - tiny local helper
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", nargs="+", type=float, default=[0.5, 0.75, 0.9])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (set OPENBLAS_NUM_THREADS for numpy)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline-max-nodes", type=int, default=4096)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.machine()} {platform.processor() or ''} cpus={os.cpu_count()} torch_threads={args.threads} "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}")
    print(f"python {platform.python_version()} torch {torch.__version__} numpy {np.__version__} scipy {scipy.__version__} "
          f"sparseift {sparseift.__version__}; seed {args.seed}\n")
    rows, checks = [], []
    for s in args.sparsity:
        model = masked_wide_resnet18(s, args.seed)
        graphs = list(sparse_layers(model))
        edges = sum(g.edges for g in graphs)
        t_full, _ = timed(lambda: [analyse_layer(g, SpectralOptions()) for g in graphs])
        times = {}
        for solver in ("auto", "gram", "sparse"):
            opts = SpectralOptions(subgraphs="none", solver=solver)
            times[solver], layers = timed(lambda: [analyse_layer(g, opts) for g in graphs])
            if solver == "auto":
                solvers = sorted({layer.solver for layer in layers})
                reference = {layer.layer: layer for layer in layers}
        small = [g for g in graphs if sum(g.adjacency.shape) <= args.baseline_max_nodes]
        t_base, base = timed(lambda: [full_eigh_gaps(g.adjacency, g.weights) for g in small])
        opts = SpectralOptions(subgraphs="none")
        t_ours, _ = timed(lambda: [analyse_layer(g, opts) for g in small])
        worst = max(
            max(abs(mu_hat - reference[g.name].mu_hat) / mu_hat, abs(lam - reference[g.name].lambda_) / lam)
            for g, (mu_hat, lam) in zip(small, base)
        )
        rows.append([f"s={s:g}", len(graphs), edges, t_full, times["auto"], times["gram"], times["sparse"],
                     times["sparse"] / times["auto"], f"{len(small)}/{len(graphs)}", t_base, t_ours, t_base / t_ours])
        checks.append(f"s={s:g}: auto route solvers {solvers}; max relative difference to the full eigh baseline {worst:.1e}")
    headers = ["sparsity", "layers", "edges", "all 4 metrics (s)", "gaps auto (s)", "gaps gram (s)", "gaps sparse (s)",
               "sparse/auto", "baseline layers", "full eigh (s)", "ours same layers (s)", "eigh/ours"]
    print(format_table(headers, rows))
    print()
    print("\n".join(checks))
    print(f"\nbaseline layers: those with inputs + outputs <= {args.baseline_max_nodes} nodes (dense eigh is O((n+m)^3)).")


if __name__ == "__main__":
    main()
