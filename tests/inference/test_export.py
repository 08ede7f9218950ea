"""ONNX export, checkpoint rebuilding and the ``sparseift export`` command."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sparseift
from sparseift.cli import main
from sparseift.inference import export_onnx
from sparseift.inference.onnx_export import initializer_zeros
from sparseift.models import build_model, example_input
from sparseift.train import config_from_dict
from sparseift.train.config import config_to_dict
from tests.inference.conftest import SmallNet, randomise

pytest.importorskip("onnx")


def _masked_net(sparsity: float) -> tuple[torch.nn.Module, int]:
    x = torch.randn(1, 3, 16, 16)
    result = sparseift.transform(SmallNet(), "wide", sparsity, example_inputs=x)
    model = randomise(result.model, result.sparse_params, masks=True)
    zeros = sum(int((p == 0).sum()) for n, p in model.named_parameters() if n in result.sparse_params)
    return model, zeros


def test_export_keeps_exact_zeros_and_matches(tmp_path):
    model, zeros = _masked_net(0.9)
    result = export_onnx(model, torch.randn(1, 3, 16, 16), tmp_path / "net.onnx")
    assert result.zeros >= zeros > 0
    assert (result.zeros, result.elements) == initializer_zeros(result.path)
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(result.path, providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, 16, 16)  # dynamic batch
    (out,) = session.run(None, {"input_0": x.numpy()})
    with torch.no_grad():
        expected = model(x).numpy()
    assert np.abs(out - expected).max() / np.abs(expected).max() <= 1e-4


def test_export_rejects_bad_opset(tmp_path):
    with pytest.raises(ValueError, match=r"opset must lie in \[7, 21\], got 3"):
        export_onnx(SmallNet(), torch.randn(1, 3, 8, 8), tmp_path / "x.onnx", opset=3)


def _checkpoint(tmp_path, family: str = "wide", sparsity: float = 0.5):
    """A checkpoint in the trainer's format (config, example shape, sparse targets, state)."""
    config = config_from_dict(
        {"model": {"name": "cifar_resnet18", "kwargs": {"num_classes": 10, "width": 8}},
         "transform": {"family": family, "sparsity": sparsity}}
    )  # fmt: skip
    x = example_input("cifar_resnet18", 1)
    result = sparseift.transform(build_model("cifar_resnet18", num_classes=10, width=8), family, sparsity,
                                 example_inputs=x)  # fmt: skip
    model = randomise(result.model, result.sparse_params, masks=True)
    path = tmp_path / "ckpt.pt"
    state = {"model": model.state_dict(), "config": config_to_dict(config), "sparse_targets": result.sparse_params,
             "example": {"shape": list(x.shape), "dtype": "float32"}}  # fmt: skip
    torch.save(state, path)
    return path, model


def test_cli_export_from_checkpoint(tmp_path, capsys):
    path, model = _checkpoint(tmp_path)
    out = tmp_path / "model.onnx"
    assert main(["export", str(path), "--onnx", str(out)]) == 0
    assert "exact zeros" in capsys.readouterr().out
    masked = sum(int((~b).sum()) for k, b in model.state_dict().items() if k.endswith("_mask"))
    assert initializer_zeros(out)[0] >= masked


def test_cli_export_errors(tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing.pt"), "--onnx", str(tmp_path / "x.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err
    torch.save({"model": {}}, tmp_path / "bad.pt")
    assert main(["export", str(tmp_path / "bad.pt"), "--onnx", str(tmp_path / "x.onnx")]) == 2
    assert "not a checkpoint written by `sparseift train`" in capsys.readouterr().err
