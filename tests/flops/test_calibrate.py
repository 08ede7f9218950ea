"""Iso-FLOP calibration (appendix A.2): the whole model within 1e-6 of the dense model's FLOPs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparseift import FAMILIES, calibrate_iso_flop, calibrate_model, profile_flops, transform
from sparseift.flops import scale_sparsities
from sparseift.flops.calibrate import bisect_increasing


def _torchvision(name: str) -> nn.Module:
    return getattr(pytest.importorskip("torchvision").models, name)(weights=None)


def _gpt2() -> nn.Module:
    transformers = pytest.importorskip("transformers")
    return transformers.GPT2LMHeadModel(
        transformers.GPT2Config(n_layer=2, n_embd=192, n_head=6, vocab_size=300, n_positions=64)
    )


MODELS = {
    "resnet18": (lambda: _torchvision("resnet18"), lambda: torch.randn(1, 3, 64, 64)),
    "mobilenet_v2": (lambda: _torchvision("mobilenet_v2"), lambda: torch.randn(1, 3, 64, 64)),
    "gpt2": (_gpt2, lambda: torch.randint(0, 300, (1, 32))),
}


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("sparsity", [0.5, 0.75, 0.9])
def test_calibrated_models_are_iso_flop_to_1e6(name: str, family: str, sparsity: float) -> None:
    build, inputs = MODELS[name]
    dense, x = build(), inputs()
    result = transform(dense, family, sparsity, example_inputs=x)
    cal = calibrate_model(result.model, result.sparse_params, dense, x)
    dense_macs = profile_flops(dense, x).dense_macs()
    effective = profile_flops(result.model, x).effective_macs(cal.sparse_params)
    assert abs(effective / dense_macs - 1) <= 1e-6
    assert cal.ratio == pytest.approx(effective / dense_macs, abs=1e-12)
    assert all(0 <= s < 1 for s in cal.sparse_params.values())
    if family == "wide":
        # first/last dense and wider: the other layers must be sparser than s (A.2)
        raised = [cal.sparse_params[f"{r.name}.weight"] for r in result.layers if r.role == "sparse"]
        assert cal.ratio_before > 1 and min(raised) > sparsity


def test_scale_keeps_relative_densities() -> None:
    scaled = scale_sparsities({"a": 0.5, "b": 0.75}, 0.5)
    assert scaled == {"a": 0.75, "b": 0.875}
    assert scale_sparsities({"a": 0.5}, 4.0) == {"a": 0.0}


def test_bisection_finds_the_root_of_an_increasing_function() -> None:
    x, iterations = bisect_increasing(lambda v: v**3, 2.0, 0.0, 4.0, rtol=1e-9)
    assert x**3 == pytest.approx(2.0, rel=1e-9) and iterations < 60


def test_uniform_calibration_matches_closed_form() -> None:
    """With uniform sparsity effective FLOPs are F_dense_layers + (1 - s') F_sparse: s' in closed form."""
    model = nn.Sequential(nn.Linear(64, 256), nn.Linear(256, 256), nn.Linear(256, 10))
    x = torch.randn(8, 64)
    profile = profile_flops(model, x)
    target = 0.6 * profile.dense_macs()
    cal = calibrate_iso_flop(profile, {"1.weight": 0.5}, target)
    fixed = 8 * (64 * 256 + 256 * 10)
    closed_form = 1 - (target - fixed) / (8 * 256 * 256)
    assert cal.sparse_params["1.weight"] == pytest.approx(closed_form, abs=1 / 65536)


def test_unreachable_targets_are_errors() -> None:
    model = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 64))
    profile = profile_flops(model, torch.randn(1, 64))
    with pytest.raises(ValueError, match="dense layers alone"):
        calibrate_iso_flop(profile, {"1.weight": 0.5}, 1000)
    with pytest.raises(ValueError, match="fully dense"):
        calibrate_iso_flop(profile, {"1.weight": 0.5}, 10 * profile.dense_macs())
    with pytest.raises(ValueError, match="empty"):
        calibrate_iso_flop(profile, {}, 100)
    with pytest.raises(ValueError, match=r"sparse_params\['1.weight'\]"):
        calibrate_iso_flop(profile, {"1.weight": 1.0}, 100)
