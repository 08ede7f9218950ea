"""The model registry: every model builds and runs, kwargs are checked, width multipliers."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from sparseift import transform
from sparseift.models import build_model, example_input, list_models
from sparseift.models.registry import model_spec
from sparseift.transforms import k_sw

_GPT_SMALL = {"n_layer": 1, "vocab_size": 64, "context_length": 16}
# small builder arguments and an input size (None: the registered example input) per model
SMALL: dict[str, tuple[dict[str, Any], int | None]] = {
    "resnet18": ({"num_classes": 7}, 64),
    "resnet34": ({"num_classes": 7, "in_channels": 1}, 64),
    "resnet50": ({"num_classes": 7}, 64),
    "mobilenet_v2": ({"num_classes": 7}, 64),
    "mobilenet_v2_cifar": ({"num_classes": 7}, None),
    "mobilevit_s": ({"num_classes": 7}, 64),
    "mobilevit_s_cifar": ({"num_classes": 7, "in_channels": 1}, 28),
    "botnet50": ({"num_classes": 7, "image_size": 64, "width_multiplier": 0.25}, None),
    "botnet50_cifar": ({"num_classes": 7, "width_multiplier": 0.25}, None),
    "cifar_resnet18": ({"num_classes": 7, "width": 8, "in_channels": 1}, 28),
    "cifar_resnet34": ({"num_classes": 7, "width": 4}, None),
    "fmnist_resnet": ({"num_classes": 7}, None),
    "gpt3_small": (_GPT_SMALL, None),
    "gpt_mini": ({"n_layer": 1, "context_length": 16}, None),
    "gpt_tiny": ({"context_length": 16}, None),
    "gpt2_small": ({"n_layer": 1, "n_embd": 32, "n_head": 4, "vocab_size": 64, "context_length": 16}, None),
}


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _logits(output: object) -> torch.Tensor:
    return output.logits if hasattr(output, "logits") else output


def test_registry_lists_and_builds_models() -> None:
    builtin = {name for name in list_models() if model_spec(name).build.__module__.startswith("sparseift.")}
    assert set(SMALL) == builtin, "give every registered model a small case in SMALL"
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        build_model("nope")


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_model_runs_at_small_inputs(name: str) -> None:
    torch.manual_seed(0)
    kwargs, size = SMALL[name]
    model = build_model(name, **kwargs).eval()
    x = example_input(name, batch=2, **kwargs)
    if size is not None:
        x = torch.randn(*x.shape[:2], size, size)
    out = _logits(model(x))
    if x.dtype == torch.long:  # language models: next-token logits over the vocabulary
        assert out.shape == (*x.shape, kwargs.get("vocab_size", 256))
    else:
        assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


def test_example_inputs_follow_the_builder_arguments() -> None:
    assert example_input("fmnist_resnet", batch=3).shape == (3, 1, 28, 28)
    assert example_input("cifar_resnet18", in_channels=1).shape == (1, 1, 32, 32)
    assert example_input("botnet50_cifar", image_size=64).shape == (1, 3, 64, 64)
    tokens = example_input("gpt_tiny", batch=2, context_length=32, vocab_size=10)
    assert tokens.shape == (2, 32) and tokens.dtype == torch.long and int(tokens.max()) < 10


def test_unknown_keyword_is_an_error_naming_it_and_the_accepted_ones() -> None:
    with pytest.raises(TypeError, match=r"'cifar_resnet18'.*'widht'.*accepts: num_classes, width, in_channels"):
        build_model("cifar_resnet18", widht=3)
    with pytest.raises(TypeError, match="'image_size'"):
        example_input("resnet18", image_size=32)


@pytest.mark.parametrize("value", [0, -1.5, float("nan"), "2", True])
def test_bad_width_multiplier_is_an_error(value: object) -> None:
    with pytest.raises((TypeError, ValueError), match="width_multiplier"):
        build_model("fmnist_resnet", width_multiplier=value)


def test_bad_values_name_the_argument() -> None:
    with pytest.raises(ValueError, match="image_size must be a multiple of 8"):
        build_model("botnet50_cifar", image_size=28)
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        build_model("resnet18", num_classes=0)
    with pytest.raises(ValueError, match="blocks_per_stage"):
        build_model("fmnist_resnet", blocks_per_stage=0)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("cifar_resnet18", {"width": 8}),  # native
        ("fmnist_resnet", {}),  # native
        ("botnet50_cifar", {}),  # native (our ByobNet config)
        ("resnet18", {}),  # generic widening engine
        ("mobilenet_v2_cifar", {}),  # engine, depthwise convs
    ],
)
def test_width_multiplier_scales_parameters_quadratically(name: str, kwargs: dict[str, Any]) -> None:
    k = 0.5
    dense, narrow = build_model(name, **kwargs), build_model(name, width_multiplier=k, **kwargs)
    # hidden widths scale by k: parameters by ~k^2 (the classifier's input by k only)
    assert _n_params(narrow) / _n_params(dense) == pytest.approx(k**2, rel=0.15)
    x = example_input(name, batch=2, **kwargs)
    assert narrow.eval()(x).shape == dense.eval()(x).shape


def test_engine_widened_model_keeps_interface_and_gets_its_init_back() -> None:
    model = build_model("resnet18", num_classes=10, in_channels=1, width_multiplier=1.5)
    assert (model.conv1.in_channels, model.conv1.out_channels, model.fc.out_features) == (1, 96, 10)
    assert model.layer4[1].conv2.out_channels == 768
    conv = model.layer3[0].conv1  # resized: torchvision's Kaiming fan-out init re-applied
    fan_out = conv.out_channels * 9
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.05)
    assert model.eval()(torch.randn(1, 1, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize(("name", "kwargs"), [("cifar_resnet18", {"width": 8}), ("gpt_tiny", {"n_layer": 2})])
@pytest.mark.parametrize("sparsity", [0.5, 0.75])
def test_native_width_multiplier_matches_the_sparse_wide_engine(
    name: str, kwargs: dict[str, Any], sparsity: float
) -> None:
    """``width_multiplier=k_sw(s)`` gives exactly the widths of ``transform(model, "wide", s)``."""
    dense = build_model(name, **kwargs)
    wide = transform(dense, "wide", sparsity, example_inputs=example_input(name, **kwargs)).model
    native = build_model(name, width_multiplier=k_sw(sparsity), **kwargs)
    shapes = {n: tuple(t.shape) for n, t in native.state_dict().items()}
    assert shapes == {n: tuple(t.shape) for n, t in wide.state_dict().items()}


def test_cifar_resnet18_shape_and_init() -> None:
    model = build_model("cifar_resnet18", num_classes=10, width=16)
    x = example_input("cifar_resnet18", batch=2)
    assert model(x).shape == (2, 10)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())
    assert [model.layer1[0].conv1.out_channels, model.layer4[0].conv1.out_channels] == [16, 128]
    # zero-init of the last BN of every residual branch: each block starts as identity + ReLU
    assert all(not block.bn2.weight.detach().any() for layer in (model.layer1, model.layer4) for block in layer)


def test_cifar_resnet_depth_is_checked() -> None:
    from sparseift.models.resnet_cifar import cifar_resnet

    with pytest.raises(ValueError, match="depth must be one of"):
        cifar_resnet(50)


def test_fmnist_resnet_structure_and_cost() -> None:
    """Three stages w, 2w, 4w of BasicBlocks; 2,364,864 MACs per 28x28 image at w = 8.

    By hand: stem 784*8*9; stage 1 2*784*8*8*9; stage 2 196*16*(8+16)*9 + 196*16*8 (shortcut);
    stage 3 49*32*(16+32)*9 + 49*32*16; classifier 32*10.
    """
    from sparseift import profile_flops
    from sparseift.models.resnet_cifar import BasicBlock

    model = build_model("fmnist_resnet")
    assert [model.layer1[0].conv2.out_channels, model.layer2[0].conv2.out_channels] == [8, 16]
    assert model.layer3[0].conv1.stride == (2, 2) and model.conv1.in_channels == 1
    assert sum(isinstance(m, BasicBlock) for m in model.modules()) == 3
    by_hand = 784 * 8 * 9 + 2 * 784 * 64 * 9 + 196 * 16 * 24 * 9 + 196 * 128 + 49 * 32 * 48 * 9 + 49 * 512 + 320
    assert profile_flops(model, example_input("fmnist_resnet")).dense_macs() == by_hand == 2_364_864


def test_widen_model_is_the_sparse_wide_engine_without_sparsity() -> None:
    """``widen_model(m, k_sw(s))`` has the shapes of ``transform(m, "wide", s)``; ``m`` is unchanged."""
    from sparseift.transforms import widen_model

    dense = build_model("mobilenet_v2_cifar", num_classes=10)
    x = example_input("mobilenet_v2_cifar")
    before = {n: t.clone() for n, t in dense.state_dict().items()}
    widened = widen_model(dense, k_sw(0.75), x)
    sparse_wide = transform(dense, "wide", 0.75, example_inputs=x).model
    assert {n: t.shape for n, t in widened.state_dict().items()} == {
        n: t.shape for n, t in sparse_wide.state_dict().items()
    }
    assert all(torch.equal(before[n], t) for n, t in dense.state_dict().items())
    assert widened.classifier[1].out_features == 10 and widened.features[0][0].in_channels == 3
    with pytest.raises(ValueError, match="factor must be > 0"):
        widen_model(dense, 0.0, x)
