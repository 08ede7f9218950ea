"""The model registry and the CIFAR ResNet of the paper's CIFAR-100 runs."""

from __future__ import annotations

import pytest
import torch

from sparseift.models import build_model, example_input, list_models


def test_registry_lists_and_builds_models() -> None:
    assert {"resnet18", "mobilenet_v2", "cifar_resnet18", "gpt2_small"} <= set(list_models())
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        build_model("nope")


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
