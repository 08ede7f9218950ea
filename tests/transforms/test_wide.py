"""Sparse Wide on whole networks, generically: torchvision, timm, Hugging Face, MLPs, VGG-style."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sparseift import profile_flops, transform
from sparseift.transforms.dims import wide_width


def _gpt2(n_embd: int = 768, n_head: int = 12, n_layer: int = 2) -> nn.Module:
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=n_head, vocab_size=500, n_positions=64)
    return transformers.GPT2LMHeadModel(config)


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 5))


def _vgg() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 32), nn.ReLU(), nn.Linear(32, 10),
    )  # fmt: skip


def _torchvision(name: str) -> nn.Module:
    torchvision = pytest.importorskip("torchvision")
    return getattr(torchvision.models, name)(weights=None)


def _mobilevit() -> nn.Module:
    timm = pytest.importorskip("timm")
    return timm.create_model("mobilevit_s", pretrained=False, num_classes=10)


MODELS = {
    "resnet18": (lambda: _torchvision("resnet18"), lambda: torch.randn(2, 3, 64, 64)),
    "resnet34": (lambda: _torchvision("resnet34"), lambda: torch.randn(2, 3, 64, 64)),
    "resnet50": (lambda: _torchvision("resnet50"), lambda: torch.randn(2, 3, 64, 64)),
    "mobilenet_v2": (lambda: _torchvision("mobilenet_v2"), lambda: torch.randn(2, 3, 64, 64)),
    "mobilevit_s": (_mobilevit, lambda: torch.randn(2, 3, 64, 64)),
    "gpt2": (lambda: _gpt2(n_embd=96, n_head=4), lambda: torch.randint(0, 500, (2, 16))),
    "mlp": (_mlp, lambda: torch.randn(2, 20)),
    "vgg": (_vgg, lambda: torch.randn(2, 3, 8, 8)),
}


def _logits(output: object) -> torch.Tensor:
    return output.logits if hasattr(output, "logits") else output


@pytest.mark.parametrize("name", list(MODELS))
def test_widened_model_runs_trains_and_keeps_its_interface(name: str) -> None:
    build, inputs = MODELS[name]
    dense, x = build(), inputs()
    before = {k: v.clone() for k, v in dense.state_dict().items()}
    result = transform(dense, "wide", 0.75, example_inputs=x)
    wide = result.model.train()
    out = _logits(wide(x))
    assert out.shape == _logits(dense.eval()(x)).shape
    out.float().pow(2).mean().backward()
    assert all(p.grad is not None for n, p in wide.named_parameters() if n in result.sparse_params)
    # the input model is untouched
    assert all(torch.equal(before[k], v) for k, v in dense.state_dict().items())
    assert sum(p.numel() for p in wide.parameters()) > 3 * sum(p.numel() for p in dense.parameters())
    assert result.sparse_params and all(n in dict(wide.named_parameters()) for n in result.sparse_params)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "gpt2", "vgg"])
@pytest.mark.parametrize("sparsity", [0.5, 0.9])
def test_every_sparse_layer_keeps_its_dense_flops(name: str, sparsity: float) -> None:
    """Per layer, width^2 growth times density ~ 1 (within width rounding) - table 1."""
    build, inputs = MODELS[name]
    dense, x = build(), inputs()
    result = transform(dense, "wide", sparsity, example_inputs=x)
    dense_rows = profile_flops(dense, x).per_module()
    wide_rows = profile_flops(result.model, x).per_module(result.sparse_params)
    sparse_modules = {n.rsplit(".", 1)[0] for n in result.sparse_params}
    tolerance = 3 * 0.5 / min(r.size for r in result.layers) + 0.01
    for module in sparse_modules:
        assert wide_rows[module][1] / dense_rows[module][0] == pytest.approx(1.0, abs=tolerance), module


def test_resnet18_widths_double_at_s075() -> None:
    dense, x = _torchvision("resnet18"), torch.randn(1, 3, 64, 64)
    wide = transform(dense, "wide", 0.75, example_inputs=x).model
    assert (wide.conv1.in_channels, wide.conv1.out_channels) == (3, 128)
    assert wide.layer4[1].conv2.out_channels == 1024 and wide.bn1.num_features == 128
    assert (wide.fc.in_features, wide.fc.out_features) == (1024, 1000)


def test_first_and_last_layers_stay_dense_by_default() -> None:
    dense, x = _torchvision("resnet18"), torch.randn(1, 3, 64, 64)
    result = transform(dense, "wide", 0.5, example_inputs=x)
    roles = {r.name: r.role for r in result.layers}
    assert roles["conv1"] == "first" and roles["fc"] == "last"
    assert "conv1.weight" not in result.sparse_params and "fc.weight" not in result.sparse_params
    assert len(result.sparse_params) == 19


def test_gpt2_widths_are_the_papers() -> None:
    """GPT-3 Small shape (768, 12 heads): 1092/4344 at s=0.5 (section 8), heads kept, ties kept."""
    dense = _gpt2()
    x = torch.randint(0, 500, (1, 8))
    wide = transform(dense, "wide", 0.5, example_inputs=x).model
    block = wide.transformer.h[0]
    assert wide.transformer.wte.weight.shape == (500, 1092)
    assert block.attn.c_attn.weight.shape == (1092, 3 * 1092)
    assert block.mlp.c_fc.weight.shape == (1092, 4344)
    assert (block.attn.num_heads, block.attn.head_dim, block.attn.split_size) == (12, 91, 1092)
    assert block.attn.scaling == pytest.approx(91**-0.5)
    assert wide.lm_head.weight is wide.transformer.wte.weight
    assert wide(x).logits.shape == (1, 8, 500)


def test_mobilenet_depthwise_convs_stay_depthwise_and_iso_flop() -> None:
    dense, x = _torchvision("mobilenet_v2"), torch.randn(1, 3, 64, 64)
    result = transform(dense, "wide", 0.75, example_inputs=x)
    depthwise = [r for r in result.layers if r.kind == "depthwise"]
    assert depthwise
    for report in depthwise:
        conv = result.model.get_submodule(report.name)
        assert conv.groups == conv.in_channels == conv.out_channels
        old = dense.get_submodule(report.name).out_channels
        assert result.sparse_params[f"{report.name}.weight"] == pytest.approx(1 - old / conv.out_channels)


def test_mlp_and_flatten_widths() -> None:
    vgg = transform(_vgg(), "wide", 0.75, example_inputs=torch.randn(1, 3, 8, 8)).model
    assert vgg[0].in_channels == 3 and vgg[3].out_channels == 32
    assert vgg[7].in_features == 32 * 4 * 4 and vgg[7].out_features == 64 and vgg[9].out_features == 10
    mlp = transform(_mlp(), "wide", 0.5, example_inputs=torch.randn(1, 20)).model
    assert (mlp[0].in_features, mlp[0].out_features, mlp[2].out_features, mlp[4].out_features) == (20, 91, 91, 5)


def test_timm_attention_heads_and_scale_follow() -> None:
    wide = transform(_mobilevit(), "wide", 0.75, example_inputs=torch.randn(1, 3, 64, 64)).model
    attentions = [m for m in wide.modules() if type(m).__name__ == "Attention"]
    assert attentions
    for attn in attentions:
        assert attn.qkv.out_features == 3 * attn.num_heads * attn.head_dim
        assert attn.scale == pytest.approx(attn.head_dim**-0.5)


def test_zero_sparsity_is_the_same_network() -> None:
    dense, x = _mlp(), torch.randn(3, 20)
    result = transform(dense, "wide", 0.0, example_inputs=x)
    torch.testing.assert_close(result.model(x), dense(x))
    assert result.sparse_params == {}


def test_width_multiple_keeps_group_divisibility() -> None:
    dense = nn.Sequential(nn.Conv2d(3, 16, 1), nn.Conv2d(16, 32, 3, groups=8), nn.GroupNorm(4, 32), nn.Conv2d(32, 5, 1))
    wide = transform(dense, "wide", 0.5, example_inputs=torch.randn(1, 3, 8, 8)).model
    assert wide[0].out_channels % 8 == 0 and wide[1].out_channels % math.lcm(8, 4) == 0
    assert wide[1].out_channels == wide_width(32, 0.5, multiple=8).value


class _HoldsParameter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 8)
        self.gain = nn.Parameter(torch.ones(8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x) * self.gain


def test_unknown_parameter_layout_is_an_error_naming_the_module() -> None:
    model = nn.Sequential(nn.Linear(4, 8), _HoldsParameter(), nn.Linear(8, 2))
    with pytest.raises(TypeError, match=r"'1'.*_HoldsParameter.*gain"):
        transform(model, "wide", 0.5, example_inputs=torch.randn(1, 4))


def test_multihead_attention_is_an_error_naming_the_module() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.attn(x, x, x)[0]

    with pytest.raises(TypeError, match="'attn'"):
        transform(Net(), "wide", 0.5, example_inputs=torch.randn(1, 3, 8))


def test_botnet_relative_position_embeddings_follow_the_head_size() -> None:
    """BotNet-50's attention (timm BottleneckAttn) holds per-head relative position tables."""
    from sparseift.models import build_model

    dense, x = build_model("botnet50_cifar", num_classes=10), torch.randn(1, 3, 32, 32)
    wide = transform(dense, "wide", 0.75, example_inputs=x).model
    before, after = dense.stages[3][0].self_attn, wide.stages[3][0].self_attn
    assert after.num_heads == before.num_heads and after.dim_head_qk == 2 * before.dim_head_qk
    assert after.pos_embed.height_rel.shape[-1] == after.dim_head_qk == after.pos_embed.dim_head
    assert after.scale == pytest.approx(after.dim_head_qk**-0.5)
    assert wide(x).shape == (1, 10)
