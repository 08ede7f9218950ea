"""``sparseift compare`` end to end on synthetic data: table, results.json and the PNG plot."""

from __future__ import annotations

import json

import pytest
import yaml

from sparseift.cli import main


def test_compare_writes_results_and_plot(tiny_config: dict, tmp_path, capsys) -> None:  # noqa: ANN001
    tiny_config["sparsity"]["method"] = "set"  # no dense-gradient steps: training FLOPs exactly iso
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_config))
    out = tmp_path / "compare"
    code = main(["compare", str(recipe), "--family", "wide", "--sparsity", "0.5", "0.75", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "dense" in printed and "wide s=0.75" in printed and "x dense" in printed
    results = json.loads((out / "results.json").read_text())
    assert [r["variant"] for r in results["results"]] == ["dense", "wide s=0.5", "wide s=0.75"]
    dense, *sparse = results["results"]
    for r in sparse:
        # iso-FLOP to the calibration (one weight of this tiny net is ~1e-4 of its FLOPs)
        assert r["training_flops"] / dense["training_flops"] == pytest.approx(1.0, abs=1e-3)
        assert r["parameters"] > dense["parameters"] and r["nonzero_parameters"] < r["parameters"]
        assert 0.0 <= r["metrics"]["val_accuracy"] <= 1.0
    png = (out / "metric_vs_flops.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
