"""Plots of the spectral metrics like the Sparse-IFT paper's figures 4 and 6, from JSONL files.

Input: one or more run metrics files with rows written by
:class:`sparseift.analysis.callback.SpectralCallback`. Output: three PNG files,

* ``spectral_imdb_imsg.png``: ``delta_r_imdb`` vs ``lambda_imsg``, coloured by accuracy (figure 4);
* ``spectral_ramanujan_lambda.png``: ``delta_r`` vs ``lambda``, coloured by accuracy (figure 6);
* ``spectral_vs_epoch.png``: each of the four metrics vs epoch (or vs step when a run has
  only per-step rows), one line per run.

Figures are drawn on ``matplotlib.figure.Figure`` with the Agg canvas, never through
``pyplot``, so no global backend or figure state is touched.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from sparseift.analysis.callback import SPECTRAL_KIND
from sparseift.analysis.network import METRICS

__all__ = ["read_metrics", "spectral_points", "plot_spectral", "PLOT_FILES"]

PLOT_FILES: dict[str, str] = {
    "imdb_imsg": "spectral_imdb_imsg.png",
    "ramanujan_lambda": "spectral_ramanujan_lambda.png",
    "vs_epoch": "spectral_vs_epoch.png",
}
_MARKERS = "osD^vP*Xh<>"


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All rows of a JSONL metrics file (blank lines skipped); errors name the line."""
    rows = []
    with Path(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}:{number}: not a JSON line ({error.msg})") from None
    return rows


def _lookup(row: dict[str, Any], key: str) -> Any:
    metrics = row.get("metrics")
    if isinstance(metrics, dict) and key in metrics:
        return metrics[key]
    return row.get(key)


def spectral_points(rows: Sequence[dict[str, Any]], accuracy_key: str | None) -> list[dict[str, Any]]:
    """The spectral rows, each with ``accuracy`` set: from the row's own ``metrics``, else from
    the last other row of the same epoch that has ``accuracy_key`` (top level or in its
    ``metrics``), else ``None``. ``accuracy_key=None`` sets no accuracy."""
    by_epoch: dict[Any, Any] = {}
    for row in rows:
        value = None if accuracy_key is None else _lookup(row, accuracy_key)
        if value is not None:
            by_epoch[row.get("epoch")] = value
    points = []
    for row in rows:
        if row.get("kind") != SPECTRAL_KIND:
            continue
        own = None if accuracy_key is None else _lookup(row, accuracy_key)
        accuracy = own if own is not None else by_epoch.get(row.get("epoch")) if accuracy_key else None
        points.append({**row, "accuracy": accuracy})
    return points


def _scatter(figure: Figure, runs: dict[str, list[dict[str, Any]]], x: str, y: str, colour: str | None) -> None:
    axes = figure.add_subplot()
    values = [p["accuracy"] for ps in runs.values() for p in ps if p["accuracy"] is not None]
    norm = Normalize(min(values), max(values)) if values else None
    mappable = None
    for (label, points), marker in zip(runs.items(), _MARKERS * len(runs)):
        kept = [p for p in points if p.get(x) is not None and p.get(y) is not None]
        if not kept:
            continue
        xs, ys = [p[x] for p in kept], [p[y] for p in kept]
        if norm is None:
            axes.scatter(xs, ys, marker=marker, label=label)
        else:
            cs = [p["accuracy"] if p["accuracy"] is not None else float("nan") for p in kept]
            mappable = axes.scatter(xs, ys, c=cs, cmap="viridis", norm=norm, marker=marker, label=label, edgecolors="k")
    if mappable is not None:
        figure.colorbar(mappable, ax=axes, label=colour)
    axes.set_xlabel(x)
    axes.set_ylabel(y)
    axes.legend(loc="best", fontsize="small")
    axes.grid(alpha=0.3)


def _vs_time(figure: Figure, runs: dict[str, list[dict[str, Any]]]) -> None:
    grid = figure.subplots(2, 2, squeeze=False).ravel()
    for metric, axes in zip(METRICS, grid):
        for label, points in runs.items():
            epochs = [p for p in points if p.get("trigger") == "epoch"]
            chosen, x = (epochs, "epoch") if epochs else (points, "step")
            kept = [p for p in chosen if p.get(metric) is not None and p.get(x) is not None]
            axes.plot([p[x] for p in kept], [p[metric] for p in kept], marker="o", label=label)
            axes.set_xlabel(x)
        axes.set_ylabel(metric)
        axes.grid(alpha=0.3)
    grid[0].legend(loc="best", fontsize="small")


def plot_spectral(
    metrics_files: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    accuracy_key: str | None = "accuracy",
    labels: Sequence[str] | None = None,
) -> dict[str, Path]:
    """Write the three PNG plots (see the module docstring) for one or more runs; returns their paths.

    ``accuracy_key`` names the accuracy among each row's ``metrics`` (or another row of the
    same epoch); ``None`` leaves the points uncoloured. A key found in no row is an error
    that lists the keys there are. ``labels`` name the runs (default: each file's parent
    folder name, or its stem; numbered when two are equal).
    """
    files = [Path(f) for f in metrics_files]
    if not files:
        raise ValueError("metrics_files must name at least one JSONL file, got none")
    if labels is not None and len(labels) != len(files):
        raise ValueError(f"labels must have one name per file ({len(files)}), got {len(labels)}")
    names = list(labels) if labels is not None else [f.parent.name or f.stem for f in files]
    if len(set(names)) < len(names):
        names = [f"{i}:{name}" for i, name in enumerate(names)]
    runs: dict[str, list[dict[str, Any]]] = {}
    for name, path in zip(names, files):
        points = spectral_points(read_metrics(path), accuracy_key)
        if not points:
            raise ValueError(f"{path}: no rows with kind={SPECTRAL_KIND!r}; record them with SpectralCallback")
        runs[name] = points
    if accuracy_key is not None and all(p["accuracy"] is None for ps in runs.values() for p in ps):
        found = sorted({k for ps in runs.values() for p in ps for k in (p.get("metrics") or {})})
        raise ValueError(f"accuracy_key {accuracy_key!r} is in no row; the rows' metrics have {found}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    drawings = {
        "imdb_imsg": (lambda f: _scatter(f, runs, "delta_r_imdb", "lambda_imsg", accuracy_key), (6, 4.5)),
        "ramanujan_lambda": (lambda f: _scatter(f, runs, "delta_r", "lambda", accuracy_key), (6, 4.5)),
        "vs_epoch": (lambda f: _vs_time(f, runs), (10, 7)),
    }
    written = {}
    for key, (draw, size) in drawings.items():
        figure = Figure(figsize=size, layout="constrained")
        FigureCanvasAgg(figure)
        draw(figure)
        written[key] = out / PLOT_FILES[key]
        figure.savefig(written[key], dpi=120)
    return written
