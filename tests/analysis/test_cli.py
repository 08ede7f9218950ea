"""``sparseift spectral`` end to end on a checkpoint file the test writes."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from torch import nn

from sparseift.analysis import SpectralCallback
from sparseift.cli import main


@pytest.fixture
def checkpoint(small_sparse_model: nn.Module, tmp_path: Path) -> Path:
    path = tmp_path / "last.pt"
    torch.save({"model": small_sparse_model.state_dict(), "step": 120, "epoch": 3, "metrics": {"accuracy": 0.5}}, path)
    return path


def test_table_and_csv(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "spectral.csv"
    assert main(["spectral", str(checkpoint), "--csv", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "step 120, epoch 3" in printed and "delta_r_imdb" in printed and "mean" in printed
    rows = list(csv.DictReader(out.open()))
    assert [r["layer"] for r in rows] == ["0", "2", "4", "6"]
    assert all(float(r["delta_r"]) == float(r["delta_r"]) for r in rows)  # numbers, no NaN


def test_subgraphs_none(checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spectral", str(checkpoint), "--subgraphs", "none", "--solver", "dense"]) == 0
    assert "sub-graphs not computed" in capsys.readouterr().out


def test_checkpoint_without_masks_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "dense.pt"
    torch.save({"model": nn.Linear(3, 3).state_dict(), "step": 0}, path)
    assert main(["spectral", str(path)]) == 2
    assert "no sparse layer" in capsys.readouterr().err


def test_plot_command(small_sparse_model: nn.Module, tmp_path: Path) -> None:
    metrics = tmp_path / "run" / "metrics.jsonl"
    callback = SpectralCallback(metrics)
    for epoch in range(2):
        callback.on_epoch_end(small_sparse_model, epoch, {"accuracy": 40.0 + epoch})
    assert main(["spectral", "--plot", str(metrics), "--out", str(tmp_path / "plots")]) == 0
    assert len(list((tmp_path / "plots").glob("*.png"))) == 3
