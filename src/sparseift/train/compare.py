"""Dense vs Sparse-IFT at iso-FLOP: one recipe, same seed and hyperparameters, several variants.

The paper's figure 1 in small: every variant's final metric against its effective training
FLOPs. At iso-FLOP the Sparse-IFT points sit at the dense point's FLOPs (to the calibration's
1e-6, plus RigL's dense-gradient steps) and above it when the claim holds.
"""

from __future__ import annotations

import dataclasses
import json
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sparseift.train.config import RunConfig, config_to_dict
from sparseift.train.loop import Trainer

__all__ = ["Variant", "VariantResult", "run_comparison", "write_results", "plot_results", "metric_name"]


@dataclass(frozen=True)
class Variant:
    """One model of the comparison: a Sparse-IFT family at a sparsity (``"dense"``, 0 for the baseline)."""

    family: str
    sparsity: float

    @property
    def label(self) -> str:
        return "dense" if self.family == "dense" else f"{self.family} s={self.sparsity:g}"

    @property
    def run_name(self) -> str:
        return "dense" if self.family == "dense" else f"{self.family}_s{self.sparsity:g}"


@dataclass(frozen=True)
class VariantResult:
    """A finished variant: its metrics, sizes, effective training FLOPs and wall time."""

    variant: Variant
    metrics: dict[str, float]
    parameters: int
    nonzero_parameters: int
    training_macs: float
    wall_time: float


def metric_name(results: Sequence[VariantResult]) -> str:
    """The headline metric: validation accuracy for classification, bits per byte for text."""
    keys = results[0].metrics
    return "val_bits_per_byte" if "val_bits_per_byte" in keys else "val_accuracy"


def run_comparison(base: RunConfig, variants: Sequence[Variant], out_dir: Path) -> list[VariantResult]:
    """Train every variant of ``base`` (same seed and hyperparameters), one after another."""
    results = []
    for variant in variants:
        config = dataclasses.replace(
            base,
            name=variant.run_name,
            transform=dataclasses.replace(base.transform, family=variant.family, sparsity=variant.sparsity),
            train=dataclasses.replace(base.train, out_dir=str(out_dir)),
        ).validate()
        result = Trainer(config).fit()
        results.append(
            VariantResult(
                variant, result.metrics, result.parameters, result.nonzero_parameters, result.training_macs,
                result.wall_time,
            )
        )  # fmt: skip
    return results


def results_table(results: Sequence[VariantResult]) -> tuple[list[str], list[list[object]]]:
    """Headers and rows: metric, parameters (total/non-zero), training FLOPs (and x dense), time."""
    metric = metric_name(results)
    dense = next((r for r in results if r.variant.family == "dense"), results[0])
    headers = ["variant", metric, "params", "non-zero", "train FLOPs", "x dense", "wall time s"]
    rows = [
        [
            r.variant.label,
            r.metrics.get(metric, float("nan")),
            r.parameters,
            r.nonzero_parameters,
            f"{r.training_macs:.4g}",
            r.training_macs / dense.training_macs,
            f"{r.wall_time:.1f}",
        ]
        for r in results
    ]
    return headers, rows


def write_results(results: Sequence[VariantResult], base: RunConfig, path: Path) -> Path:
    """``results.json``: the base config, machine, and every variant's numbers."""
    payload: dict[str, Any] = {
        "config": config_to_dict(base),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "metric": metric_name(results),
        "results": [
            {
                "variant": r.variant.label,
                "family": r.variant.family,
                "sparsity": r.variant.sparsity,
                "metrics": r.metrics,
                "parameters": r.parameters,
                "nonzero_parameters": r.nonzero_parameters,
                "training_flops": r.training_macs,
                "wall_time_s": r.wall_time,
            }
            for r in results
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2))
    return path


def plot_results(results: Sequence[VariantResult], path: Path) -> Path:
    """PNG of the metric against effective training FLOPs (the paper's figure 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = metric_name(results)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for r in results:
        marker = "s" if r.variant.family == "dense" else "o"
        ax.scatter(r.training_macs, r.metrics.get(metric, float("nan")), marker=marker, s=50)
        ax.annotate(r.variant.label, (r.training_macs, r.metrics.get(metric, float("nan"))),
                    textcoords="offset points", xytext=(5, 5), fontsize=8)  # fmt: skip
    ax.set_xlabel("effective training FLOPs (multiply-accumulates)")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title("Sparse-IFT vs dense at iso-FLOP")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
