"""The paper's init recipe and weight-decay groups, on our models and reused definitions."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sparseift.models import build_model
from sparseift.models.init import kaiming_init, param_groups, residual_blocks, zero_init_last_bn


def test_kaiming_init_statistics() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(16, 64, 3, bias=True), nn.BatchNorm2d(64), nn.Linear(4, 4))
    linear = model[2].weight.detach().clone()
    nn.init.zeros_(model[1].weight)
    kaiming_init(model)
    assert model[0].weight.std().item() == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.05)
    assert not model[0].bias.any() and bool((model[1].weight == 1).all())
    assert torch.equal(model[2].weight, linear)  # linear layers keep their own init


@pytest.mark.parametrize(("name", "last_bn", "count"), [("resnet18", "bn2", 8), ("resnet50", "bn3", 16)])
def test_zero_init_last_bn_finds_torchvision_blocks(name: str, last_bn: str, count: int) -> None:
    model = build_model(name, num_classes=10)
    names = zero_init_last_bn(model)
    assert len(names) == count and all(n.endswith(last_bn) for n in names)
    assert "layer2.0.downsample.1" not in names
    assert not model.layer2[0].get_submodule(last_bn).weight.any()
    assert model.layer2[0].downsample[1].weight.all() and model.bn1.weight.all()


def test_zero_init_last_bn_on_cifar_resnet_and_timm_blocks() -> None:
    assert len(residual_blocks(build_model("cifar_resnet18", width=4))) == 8
    model = build_model("mobilenet_v2_cifar", num_classes=10)  # torchvision: no shortcut attribute
    assert zero_init_last_bn(model) == []
    # timm: ``shortcut = None`` means no residual connection, so nothing to zero there
    vit = build_model("mobilevit_s_cifar", num_classes=10)
    names = zero_init_last_bn(vit)
    assert names == ["stages.1.1.conv3_1x1.bn", "stages.1.2.conv3_1x1.bn"]


def test_param_groups_membership() -> None:
    model = build_model("cifar_resnet18", width=4, num_classes=10)
    decay, no_decay = param_groups(model, 5e-4)
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (5e-4, 0.0)
    assert "conv1.weight" in decay["param_names"] and "fc.weight" in decay["param_names"]
    assert {"bn1.weight", "bn1.bias", "fc.bias", "layer2.0.shortcut.1.weight"} <= set(no_decay["param_names"])
    assert all(p.ndim == 4 or n == "fc.weight" for n, p in zip(decay["param_names"], decay["params"]))
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    torch.optim.SGD(param_groups(model, 5e-4), lr=0.1, momentum=0.9, nesterov=True)


def test_param_groups_of_a_gpt_decay_embeddings_once_and_not_norms() -> None:
    model = build_model("gpt_tiny", n_layer=1, context_length=8)
    model.pos_emb.weight.requires_grad_(False)
    decay, no_decay = param_groups(model, 0.1)
    assert "tok_emb.weight" in decay["param_names"] and "lm_head.weight" not in decay["param_names"]
    assert "pos_emb.weight" not in decay["param_names"] + no_decay["param_names"]  # frozen
    assert {"ln_f.weight", "ln_f.bias", "blocks.0.ln1.weight", "blocks.0.attn.qkv.bias"} <= set(
        no_decay["param_names"]
    )
    assert {"blocks.0.attn.qkv.weight", "blocks.0.mlp.proj.weight"} <= set(decay["param_names"])
    with pytest.raises(ValueError, match="weight_decay must be a real number >= 0, got -1"):
        param_groups(model, -1)
