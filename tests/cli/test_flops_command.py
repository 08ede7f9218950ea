"""``sparseift flops``: the main job's table."""

from __future__ import annotations

import re

import pytest

from sparseift.cli import main


def test_flops_table_is_iso_flop_after_calibration(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["flops", "--model", "cifar_resnet18", "--family", "wide", "doped", "--sparsity", "0.5", "0.9"])
    out = capsys.readouterr().out
    assert code == 0
    assert "== Sparse Wide ==" in out and "== Sparse Doped ==" in out
    ratio_rows = [line for line in out.splitlines() if line.startswith("ratio to dense")]
    assert len(ratio_rows) == 2
    for row in ratio_rows:
        assert re.findall(r"\d+\.\d+", row) == ["1.000000"] * 3
    assert "layer4.1.conv2" in out and "k_sw=1.4142" in out


def test_summary_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flops", "--model", "cifar_resnet18", "--family", "parallel", "--sparsity", "0.75", "--summary"]) == 0
    out = capsys.readouterr().out
    assert "layer1.0.conv1" not in out and "k_sp=4" in out


def test_bad_sparsity_is_reported_with_the_argument(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flops", "--model", "cifar_resnet18", "--family", "wide", "--sparsity", "1.2"]) == 2
    assert "sparsity must lie in [0, 1)" in capsys.readouterr().err


def test_unknown_model_is_rejected() -> None:
    with pytest.raises(SystemExit):
        main(["flops", "--model", "resnet999"])
