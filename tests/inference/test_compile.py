"""``sparseift.inference.compile`` against eager for every family, layer type and path."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

import sparseift
from sparseift.inference import MAX_DENSITY, InferenceLayer, _ext, compile, compiler, max_relative_error
from sparseift.inference.layers import PATHS, path_unsupported
from sparseift.transforms.layers import describe
from tests.inference.conftest import SmallMLP, SmallNet, randomise

RTOL = 1e-4


def _eager(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("family", sparseift.FAMILIES)
@pytest.mark.parametrize("sparsity", [0.5, 0.9])
def test_conv_families_match_eager(ext, family, sparsity):
    x = torch.randn(2, 3, 16, 16)
    result = sparseift.transform(SmallNet(), family, sparsity, example_inputs=x)
    model = randomise(result.model, result.sparse_params, masks=True)
    compiled = compile(model, max_density={"conv": 0.6, "pointwise": 0.6, "linear": 0.6})
    assert max_relative_error(compiled(x), _eager(model, x)) <= RTOL
    assert any(p.path == "sparse" for p in compiled.plans)
    assert compiled.traced


@pytest.mark.parametrize("family", ["wide", "parallel", "factorized", "doped"])
def test_linear_families_match_eager(ext, family):
    x = torch.randn(3, 5, 24)
    result = sparseift.transform(SmallMLP(), family, 0.75, example_inputs=x, nonlinearity=None)
    model = randomise(result.model, result.sparse_params, masks=False)
    compiled = compile(model, example_inputs=x, max_density={"linear": 0.5, "conv": 0.5, "pointwise": 0.5})
    assert max_relative_error(compiled(x), _eager(model, x)) <= RTOL
    sparse = {p.name for p in compiled.plans if p.path == "sparse"}
    assert sparse, compiled.summary()


def test_masked_and_squashed_models_agree(ext):
    x = torch.randn(1, 3, 16, 16)
    result = sparseift.transform(SmallNet(), "wide", 0.75, example_inputs=x)
    masked = randomise(result.model, result.sparse_params, masks=True, seed=3)
    squashed = sparseift.transform(SmallNet(), "wide", 0.75, example_inputs=x).model.eval()
    squashed.load_state_dict({k: v for k, v in masked.state_dict().items() if not k.endswith("_mask")})
    assert any(k.endswith("weight_mask") for k in masked.state_dict())
    assert torch.equal(compile(masked)(x), compile(squashed)(x))


def test_masks_are_applied(ext):
    model = randomise(SmallNet(), {}, masks=False)
    mask = torch.rand_like(model.conv_a.weight) < 0.2
    model.conv_a.register_buffer("weight_mask", mask)  # weights not yet zero where masked
    x = torch.randn(1, 3, 8, 8)
    expected = randomise(SmallNet(), {}, masks=False)
    expected.load_state_dict({k: v for k, v in model.state_dict().items() if k != "conv_a.weight_mask"})
    with torch.no_grad():
        expected.conv_a.weight.mul_(mask)
    assert max_relative_error(compile(model)(x), _eager(expected, x)) <= RTOL


def test_fusions_are_recorded_and_correct(ext):
    x = torch.randn(2, 3, 16, 16)
    model = randomise(SmallNet(), {}, masks=False)
    compiled = compile(model, example_inputs=x)
    plans = {p.name: p for p in compiled.plans}
    assert plans["stem.0"].fused == ("batchnorm", "relu")
    assert plans["conv_a"].fused == ("batchnorm", "relu")
    assert plans["conv_b"].fused == ("batchnorm", "add", "relu")
    assert plans["down"].fused == ("relu",)
    assert plans["grouped"].fused == ("add",)
    assert plans["depthwise"].path == "dense" and plans["depthwise"].reason == "depthwise conv"
    assert "BatchNorm" not in str(compiled.module)
    assert "sparse" in compiled.summary()


@pytest.mark.parametrize("density", [0.0, 0.02])
def test_all_zero_and_nearly_empty_layers(ext, density):
    x = torch.randn(1, 3, 12, 12)
    model = SmallNet()
    with torch.no_grad():
        for name in ("conv_a", "conv_b", "down", "grouped", "point", "head"):
            weight = model.get_submodule(name).weight
            weight.mul_(torch.rand_like(weight) < density)
    model = randomise(model, {}, masks=False)
    compiled = compile(model, example_inputs=x)
    assert {p.name for p in compiled.plans if p.path == "sparse"} >= {"conv_a", "down", "point", "head"}


def test_channels_last_non_contiguous_and_batch_one(ext):
    result = sparseift.transform(SmallNet(), "wide", 0.9, example_inputs=torch.randn(1, 3, 16, 16))
    model = randomise(result.model, result.sparse_params, masks=False)
    compiled = compile(model)
    for x in (
        torch.randn(1, 3, 16, 16),
        torch.randn(2, 3, 16, 16).to(memory_format=torch.channels_last),
        torch.randn(2, 3, 16, 32)[..., ::2],
    ):
        assert max_relative_error(compiled(x), _eager(model, x)) <= RTOL


class _Unsupported(nn.Module):
    """A Conv1d (no sparse kernel), a reflect-padded Conv2d and data-dependent control flow."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1d = nn.Conv1d(4, 8, 3, padding=1)
        self.reflect = nn.Conv2d(1, 4, 3, padding=1, padding_mode="reflect")
        self.fc = nn.Linear(8 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.reflect(x.unsqueeze(1)).flatten(2).mean(-1, keepdim=True)  # (B, 4, 1)
        z = self.conv1d(y.expand(-1, -1, 4))
        if z.sum() > 0:  # not traceable by torch.fx
            z = z * 2
        return self.fc(z.flatten(1))


def test_unsupported_layers_and_untraceable_models_run_dense(ext):
    model = _Unsupported().eval()
    with torch.no_grad():
        model.fc.weight.mul_(torch.rand_like(model.fc.weight) < 0.1)
    x = torch.randn(3, 6, 6)
    compiled = compile(model, example_inputs=x)
    assert not compiled.traced
    plans = {p.name: p for p in compiled.plans}
    assert plans["reflect"].path == "dense_cl" and "padding_mode" in plans["reflect"].reason
    assert plans["fc"].path == "sparse"
    assert "conv1d" not in plans  # left to PyTorch untouched
    assert max_relative_error(compiled(x), _eager(model, x)) <= RTOL


def test_dense_path_without_kernels_matches_eager():
    x = torch.randn(2, 3, 16, 16)
    result = sparseift.transform(SmallNet(), "doped", 0.75, example_inputs=x)
    model = randomise(result.model, result.sparse_params, masks=True)
    compiled = compile(model, example_inputs=x, use_kernels=False)
    assert all(p.reason == "sparse kernels unavailable" for p in compiled.plans)
    # without measuring: channels-last for convs, NCHW for depthwise convs and linear layers
    layers = [m for m in compiled.module.modules() if isinstance(m, InferenceLayer)]
    expected = ["dense" if m.layer.is_depthwise or m.layer.kind == "linear" else "dense_cl" for m in layers]
    assert [m.plan.path for m in layers] == expected and {"dense", "dense_cl"} <= set(expected)


def test_kernel_build_failure_falls_back(tmp_path, monkeypatch):
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no ninja, no compiler
    with pytest.warns(RuntimeWarning, match="kernels unavailable"):
        assert _ext.build_kernels(tmp_path / "cache") is None
    monkeypatch.setenv("SPARSEIFT_NO_KERNELS", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _ext.build_kernels(tmp_path / "cache") is None


def test_max_density_given_for_some_classes_keeps_the_default_for_the_rest(ext):
    model = randomise(SmallNet(), {"conv_a.weight": 0.5, "point.weight": 0.5, "head.weight": 0.9}, masks=False)
    plans = {p.name: p for p in compile(model, max_density={"conv": 0.6}).plans}
    assert plans["conv_a"].path == "sparse"  # 0.5 <= 0.6 given
    assert plans["point"].path != "sparse" and f"{MAX_DENSITY['pointwise']:.3f} (pointwise)" in plans["point"].reason
    assert plans["head"].path == "sparse"  # 0.1 <= the default for linear layers


def test_bad_arguments():
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        compile("resnet")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_density keys"):
        compile(SmallNet(), max_density={"conv3x3": 0.5})


def test_check_against_eager_raises_on_mismatch(ext, monkeypatch):
    model = randomise(SmallNet(), {}, masks=False)
    monkeypatch.setattr("sparseift.inference.compiler.max_relative_error", lambda a, e: 1.0)
    with pytest.raises(RuntimeError, match="differs from eager"):
        compile(model, example_inputs=torch.randn(1, 3, 8, 8))


def test_tune_times_both_paths_and_compiled_models_copy(ext):
    x = torch.randn(2, 3, 16, 16)
    result = sparseift.transform(SmallNet(), "wide", 0.75, example_inputs=x)
    model = randomise(result.model, result.sparse_params, masks=False)
    compiled = compile(model, example_inputs=x, tune=True)
    tuned = [p for p in compiled.plans if p.reason.startswith("measured")]
    # convs: sparse, dense, dense_cl (+ winograd for 3x3 stride 1); depthwise: dense, dense_cl; linear: sparse, dense
    modules = dict(model.named_modules())
    expected = {p.name: sum(path_unsupported(describe(modules[p.name]), q, True) is None for q in PATHS) for p in compiled.plans}
    assert {expected[p.name] for p in compiled.plans} >= {2, 3, 4}
    assert tuned and all(p.reason.count("ms") == expected[p.name] for p in tuned)
    two_paths = compile(model, example_inputs=x, tune=True, tune_paths=("sparse", "dense"))
    assert all(p.path != "dense_cl" for p in two_paths.plans)
    copied = copy.deepcopy(compiled)
    assert torch.equal(copied(x), compiled(x))
    with pytest.raises(ValueError, match="tune=True needs example_inputs"):
        compile(model, tune=True)


def test_whole_model_comparison_alternates_the_candidates(monkeypatch):
    x = torch.randn(2, 3, 16, 16)
    compiled = compile(SmallNet().eval(), example_inputs=x)
    name = compiled.plans[0].name
    layer = compiled.module.get_submodule(name)
    candidates = (layer, layer.with_path("dense", "timed"))
    order, clock = [], iter(range(1, 100))

    def drifting_seconds(compiled_model, example_inputs):  # the machine slows down run by run; candidate 1 costs 1.5x
        index = next(i for i, c in enumerate(candidates) if compiled_model.module.get_submodule(name) is c)
        order.append(index)
        return next(clock) * (1.0, 1.5)[index]

    monkeypatch.setattr(compiler, "_model_seconds", drifting_seconds)
    best = compiler._alternating_model_seconds(compiled, x, name, candidates)
    assert order == [0, 1] * (compiler.WHOLE_MODEL_ROUNDS + 1)  # a warm-up round, then alternating rounds
    assert best == [3.0, 6.0]  # the best of each after the warm-up: runs 3 and 4 (x 1.5)
    assert compiled.module.get_submodule(name) is candidates[1]


def test_tune_switches_sparse_linear_layers_to_dense_and_back(ext):
    x = torch.randn(2, 7, 24)
    result = sparseift.transform(SmallMLP(), "wide", 0.9, example_inputs=x)
    model = randomise(result.model, result.sparse_params, masks=False)
    compiled = compile(model, example_inputs=x, tune=True)
    for layer in compiled.module.modules():
        if isinstance(layer, InferenceLayer):
            for path in ("dense", "sparse", "dense"):
                layer = layer.with_path(path, "forced")
                assert layer.dense_weight().shape == layer.plan.weight_shape
    assert max_relative_error(compiled(x), _eager(model, x)) <= RTOL
