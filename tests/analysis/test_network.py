"""Per-layer rows and network aggregates."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from sparseift.analysis import METRICS, SpectralOptions, analyse_network


def test_every_sparse_layer_gets_all_four_metrics(small_sparse_model: nn.Module) -> None:
    spectrum = analyse_network(small_sparse_model)
    assert [layer.layer for layer in spectrum.layers] == ["0", "2", "4", "6"]
    for layer in spectrum.layers:
        row = layer.row()
        assert all(row[m] is not None for m in METRICS), row
        assert row["delta_r"] == pytest.approx(2 * (row["degree"] - 1) ** 0.5 - row["mu_hat"])
        assert row["lambda"] == pytest.approx(row["w_mu_0"] - row["w_mu_hat"])
    summary = spectrum.summary()
    assert summary["layers"] == 4 and summary["delta_r_layers"] == 4
    assert summary["lambda"] == pytest.approx(sum(layer.lambda_ for layer in spectrum.layers) / 4)


def test_empty_layer_is_none_with_a_note_and_not_in_the_means(small_sparse_model: nn.Module) -> None:
    layer = small_sparse_model[4]
    layer.weight_mask.zero_()
    with torch.no_grad():
        layer.weight.zero_()
    spectrum = analyse_network(small_sparse_model)
    empty = spectrum.layers[2]
    assert empty.note == "no edges" and all(empty.row()[m] is None for m in METRICS)
    json.dumps([row.row() for row in spectrum.layers], allow_nan=False)
    assert spectrum.summary()["delta_r_layers"] == 3


def test_no_subgraphs_option_and_solvers_agree(small_sparse_model: nn.Module) -> None:
    none = analyse_network(small_sparse_model, SpectralOptions(subgraphs="none"))
    assert all(layer.delta_r_imdb is None and layer.note for layer in none.layers)
    values = [analyse_network(small_sparse_model, SpectralOptions(solver=s, tol=1e-10)).summary() for s in ("dense", "sparse")]
    for metric in METRICS:
        assert values[0][metric] == pytest.approx(values[1][metric], rel=1e-6)


def test_model_without_masks_is_an_error() -> None:
    with pytest.raises(ValueError, match="no sparse layer"):
        analyse_network(nn.Linear(3, 3))


def test_bad_options_name_themselves() -> None:
    with pytest.raises(ValueError, match="subgraphs"):
        SpectralOptions(subgraphs="all")
    with pytest.raises(ValueError, match="min_degree"):
        SpectralOptions(min_degree=0)
