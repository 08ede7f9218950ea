"""The training callback writes JSONL rows; the plots read them back into PNG files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from sparseift.analysis import SpectralCallback, plot_spectral, read_metrics


def _run(model: nn.Module, path: Path, epochs: int = 3) -> None:
    callback = SpectralCallback(path, every_steps=2, every_epoch=True)
    for epoch in range(epochs):
        for step in range(epoch * 3, epoch * 3 + 3):
            callback.on_step(model, step, epoch, {"loss": torch.tensor(1.0 / (step + 1))})
        with torch.no_grad():  # a stand-in for training: the weights move, the masks stay
            for p in model.parameters():
                p.mul_(1.1)
        callback.on_epoch_end(model, epoch, {"accuracy": 50.0 + 10 * epoch})


def test_callback_rows(small_sparse_model: nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "run" / "metrics.jsonl"
    _run(small_sparse_model, path)
    rows = read_metrics(path)
    steps = [r["step"] for r in rows if r["trigger"] == "step"]
    assert steps == [0, 2, 4, 6, 8]
    epochs = [r for r in rows if r["trigger"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [0, 1, 2]
    assert epochs[1]["metrics"] == {"accuracy": 60.0}
    assert rows[0]["metrics"]["loss"] == pytest.approx(1.0)
    assert {"delta_r", "delta_r_imdb", "lambda", "lambda_imsg", "layers", "seconds"} <= set(rows[0])
    assert len(rows[0]["layers"]) == 4
    assert "NaN" not in path.read_text()


def test_callback_can_be_off(small_sparse_model: nn.Module, tmp_path: Path) -> None:
    callback = SpectralCallback(tmp_path / "m.jsonl", every_steps=None, every_epoch=False)
    assert callback.on_step(small_sparse_model, 0, 0) is None
    assert callback.on_epoch_end(small_sparse_model, 0) is None
    assert not (tmp_path / "m.jsonl").exists()
    with pytest.raises(ValueError, match="every_steps"):
        SpectralCallback(tmp_path / "m.jsonl", every_steps=0)


def test_plots_are_written(small_sparse_model: nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "wide" / "metrics.jsonl"
    _run(small_sparse_model, path)
    # a trainer row of its own, read for the accuracy of the per-step rows of its epoch
    with path.open("a") as handle:
        handle.write(json.dumps({"epoch": 2, "accuracy": 75.0}) + "\n")
    written = plot_spectral([path], tmp_path / "plots")
    assert set(written) == {"imdb_imsg", "ramanujan_lambda", "vs_epoch"}
    for png in written.values():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_plot_errors_are_clear(small_sparse_model: nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    _run(small_sparse_model, path, epochs=1)
    with pytest.raises(ValueError, match="top1.*accuracy"):
        plot_spectral([path], tmp_path, accuracy_key="top1")
    assert len(plot_spectral([path], tmp_path, accuracy_key=None)) == 3
    other = tmp_path / "other.jsonl"
    other.write_text('{"epoch": 0}\n')
    with pytest.raises(ValueError, match="no rows with kind"):
        plot_spectral([other], tmp_path)
