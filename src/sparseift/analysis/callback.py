"""Record the spectral metrics during training into the run's JSONL metrics file."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sparseift._checks import check_positive_int
from sparseift.analysis.network import NetworkSpectrum, SpectralOptions, analyse_network

__all__ = ["SPECTRAL_KIND", "SpectralCallback", "jsonable"]

SPECTRAL_KIND = "spectral"
"""Value of the ``kind`` key of the rows this callback writes (other writers' rows differ)."""


def jsonable(value: Any) -> Any:
    """``value`` with tensors and numpy scalars as Python numbers and non-finite floats as ``None``
    (strict JSON has no NaN)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class SpectralCallback:
    """Appends one JSONL row of spectral metrics to ``path`` every ``every_steps`` steps
    and/or at the end of each epoch.

    The trainer calls :meth:`on_step` after each optimiser step and :meth:`on_epoch_end`
    after each epoch's evaluation; ``metrics`` (e.g. the test accuracy) is copied into the
    row so the plots can colour by it. A row is::

        {"kind": "spectral", "trigger": "step" | "epoch", "step": int | null, "epoch": int,
         "seconds": float, "delta_r": ..., "delta_r_imdb": ..., "lambda": ...,
         "lambda_imsg": ..., "layers": [{per-layer row}, ...], "metrics": {...}}

    Network values are means over layers (:meth:`NetworkSpectrum.summary`). The model is
    analysed as it is (no mode change, no gradient); masks come from its ``weight_mask``
    buffers or from ``masks`` (parameter name -> mask).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        every_steps: int | None = None,
        every_epoch: bool = True,
        options: SpectralOptions = SpectralOptions(),
        masks: Mapping[str, torch.Tensor] | None = None,
        per_layer: bool = True,
    ) -> None:
        self.path = Path(path)
        self.every_steps = None if every_steps is None else check_positive_int("every_steps", every_steps)
        self.every_epoch = bool(every_epoch)
        self.options = options
        self.masks = masks
        self.per_layer = per_layer

    def on_step(
        self, model: nn.Module, step: int, epoch: int, metrics: Mapping[str, Any] | None = None
    ) -> NetworkSpectrum | None:
        """Record when ``every_steps`` is set and ``step % every_steps == 0``; returns what was recorded."""
        if self.every_steps is None or step % self.every_steps:
            return None
        return self.record(model, step=step, epoch=epoch, trigger="step", metrics=metrics)

    def on_epoch_end(
        self, model: nn.Module, epoch: int, metrics: Mapping[str, Any] | None = None, step: int | None = None
    ) -> NetworkSpectrum | None:
        """Record when ``every_epoch``; returns what was recorded."""
        if not self.every_epoch:
            return None
        return self.record(model, step=step, epoch=epoch, trigger="epoch", metrics=metrics)

    def record(
        self, model: nn.Module, *, step: int | None, epoch: int, trigger: str, metrics: Mapping[str, Any] | None
    ) -> NetworkSpectrum:
        """Analyse ``model`` now and append one row to the metrics file."""
        start = time.perf_counter()
        with torch.no_grad():
            spectrum = analyse_network(model, self.options, self.masks)
        row: dict[str, Any] = {"kind": SPECTRAL_KIND, "trigger": trigger, "step": step, "epoch": epoch}
        row["seconds"] = round(time.perf_counter() - start, 4)
        row.update(spectrum.summary())
        if self.per_layer:
            row["layers"] = [layer.row() for layer in spectrum.layers]
        row["metrics"] = dict(metrics or {})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(jsonable(row), allow_nan=False) + "\n")
        return spectrum
