"""Built-in models: our own (CIFAR ResNets, GPT) and torchvision/timm/Hugging Face
definitions reused, not rewritten.

Third-party models are adapted only where an input demands it: the first conv is rebuilt
for ``in_channels != 3``, and the ``*_cifar`` variants take strides out of the stem (and,
for MobileNetV2, out of the first downsampling block) so that 32x32 images keep a 4x4
feature map at the end, as CIFAR ResNets do. No weights are ever downloaded.

BotNet-50 (Srinivas et al. 2021, the paper's ImageNet and CIFAR-100 BotNet): ResNet-50
(bottleneck stages 3-4-6-3, widths 256-512-1024-2048, bottleneck ratio 1/4, 7x7 stem +
max-pool, ReLU) whose last stage's three blocks replace the 3x3 conv by 4-head
self-attention with 2-D relative position logits. It is built from timm's ByobNet blocks
(``self_attn_layer="bottleneck"``: timm's ``BottleneckAttn``) with a config matching that
description; timm 1.0.31 registers only variants that differ from it (``botnet26t_256``:
2-2-2-2 blocks; ``botnet50ts_256``: tiered stem, SiLU, attention interleaved in stages 2-4).
Its relative position table fixes the input size: ``image_size`` is a builder argument.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from sparseift._checks import check_positive_int
from sparseift.models.gpt import GPT, GPTConfig
from sparseift.models.init import kaiming_init, zero_init_last_bn
from sparseift.models.registry import ExampleInput, register_model
from sparseift.models.resnet_cifar import CifarResNet, cifar_resnet
from sparseift.models.widths import check_width_multiplier, scaled_width


# -- example inputs -----------------------------------------------------------------------
def _images(size: int) -> ExampleInput:
    """Images of ``in_channels`` (default 3) channels, ``image_size`` (default ``size``) square."""

    def make(batch: int, args: Mapping[str, Any]) -> torch.Tensor:
        side = args.get("image_size", size)
        return torch.randn(batch, args.get("in_channels", 3), side, side)

    return make


def _tokens(batch: int, args: Mapping[str, Any]) -> torch.Tensor:
    """A full context of random token ids (the training shape, for FLOP counts)."""
    return torch.randint(0, args["vocab_size"], (batch, args["context_length"]))


# -- adapting third-party definitions -------------------------------------------------------
def _rebuild_input_conv(model: nn.Module, path: str, in_channels: int) -> None:
    """Replace the conv at ``path`` by the same conv taking ``in_channels`` input channels."""
    old = model.get_submodule(path)
    if check_positive_int("in_channels", in_channels) == old.in_channels:
        return
    new = nn.Conv2d(
        in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=old.bias is not None
    )
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    parent, _, child = path.rpartition(".")
    setattr(model.get_submodule(parent), child, new)


def _stride_one(model: nn.Module, *paths: str) -> None:
    """Make the convs at ``paths`` stride 1 (3x3 convs with padding 1 keep their size)."""
    for path in paths:
        model.get_submodule(path).stride = (1, 1)


def _linear_std_001(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.01)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def _mobilenet_init(model: nn.Module) -> None:
    """torchvision MobileNetV2's init: Kaiming fan-out convs, unit norms, N(0, 0.01) linear."""
    kaiming_init(model)
    _linear_std_001(model)


def _timm_byob_init(model: nn.Module) -> None:
    """timm ByobNet's init: as MobileNetV2's, plus zero gamma at the end of residual branches."""
    _mobilenet_init(model)
    zero_init_last_bn(model)


def _hf_init(model: nn.Module) -> None:
    """A Hugging Face model's own per-module init (``_init_weights``)."""
    model.apply(model._init_weights)


# -- torchvision ----------------------------------------------------------------------------
def _torchvision(name: str, num_classes: int, in_channels: int, input_conv: str) -> nn.Module:
    import torchvision

    model = getattr(torchvision.models, name)(weights=None, num_classes=check_positive_int("num_classes", num_classes))
    _rebuild_input_conv(model, input_conv, in_channels)
    return model


@register_model("resnet18", _images(224), "torchvision ResNet-18 (ImageNet)", reinit=kaiming_init)
def resnet18(num_classes: int = 1000, in_channels: int = 3) -> nn.Module:
    return _torchvision("resnet18", num_classes, in_channels, "conv1")


@register_model("resnet34", _images(224), "torchvision ResNet-34 (ImageNet)", reinit=kaiming_init)
def resnet34(num_classes: int = 1000, in_channels: int = 3) -> nn.Module:
    return _torchvision("resnet34", num_classes, in_channels, "conv1")


@register_model("resnet50", _images(224), "torchvision ResNet-50 (ImageNet)", reinit=kaiming_init)
def resnet50(num_classes: int = 1000, in_channels: int = 3) -> nn.Module:
    return _torchvision("resnet50", num_classes, in_channels, "conv1")


@register_model("mobilenet_v2", _images(224), "torchvision MobileNetV2 (ImageNet)", reinit=_mobilenet_init)
def mobilenet_v2(num_classes: int = 1000, in_channels: int = 3) -> nn.Module:
    return _torchvision("mobilenet_v2", num_classes, in_channels, "features.0.0")


@register_model(
    "mobilenet_v2_cifar", _images(32), "torchvision MobileNetV2, stem and first downsampling at stride 1 (CIFAR)",
    reinit=_mobilenet_init,
)  # fmt: skip
def mobilenet_v2_cifar(num_classes: int = 100, in_channels: int = 3) -> nn.Module:
    model = _torchvision("mobilenet_v2", num_classes, in_channels, "features.0.0")
    _stride_one(model, "features.0.0", "features.2.conv.1.0")  # total stride 32 -> 8
    return model


# -- timm MobileViT-S -------------------------------------------------------------------------
def _mobilevit_s(num_classes: int, in_channels: int) -> nn.Module:
    import timm

    return timm.create_model(
        "mobilevit_s", pretrained=False, num_classes=check_positive_int("num_classes", num_classes),
        in_chans=check_positive_int("in_channels", in_channels),
    )  # fmt: skip


@register_model("mobilevit_s", _images(256), "timm MobileViT-S (ImageNet)", reinit=_timm_byob_init)
def mobilevit_s(num_classes: int = 1000, in_channels: int = 3) -> nn.Module:
    return _mobilevit_s(num_classes, in_channels)


@register_model("mobilevit_s_cifar", _images(32), "timm MobileViT-S, stem at stride 1 (CIFAR)", reinit=_timm_byob_init)
def mobilevit_s_cifar(num_classes: int = 100, in_channels: int = 3) -> nn.Module:
    model = _mobilevit_s(num_classes, in_channels)
    _stride_one(model, "stem.conv")  # total stride 32 -> 16: transformers at 8x8, 4x4, 2x2
    return model


# -- BotNet-50 (timm ByobNet blocks) --------------------------------------------------------
def _botnet50(
    num_classes: int, in_channels: int, image_size: int, width_multiplier: float, cifar: bool
) -> nn.Module:
    from timm.models.byobnet import ByoBlockCfg, ByobNet, ByoModelCfg

    k = check_width_multiplier(width_multiplier)
    stride = 8 if cifar else 32
    if check_positive_int("image_size", image_size) % stride:
        raise ValueError(
            f"image_size must be a multiple of {stride} (the network's total stride; the attention stage "
            f"pools by 2), got {image_size}"
        )

    def stage(kind: str, depth: int, channels: int, stride: int) -> ByoBlockCfg:
        # widths multiples of 32: the bottleneck width channels/4 splits into 4 heads of 8k
        return ByoBlockCfg(type=kind, d=depth, c=scaled_width(channels, k, 32), s=stride, gs=0, br=0.25)

    cfg = ByoModelCfg(
        blocks=(stage("bottle", 3, 256, 1), stage("bottle", 4, 512, 2), stage("bottle", 6, 1024, 2),
                stage("self_attn", 3, 2048, 2)),
        stem_chs=scaled_width(64, k, 8), stem_type="3x3" if cifar else "7x7", stem_pool="" if cifar else "maxpool",
        act_layer="relu", fixed_input_size=True, self_attn_layer="bottleneck", self_attn_kwargs={"num_heads": 4},
    )  # fmt: skip
    # timm's 3x3 stem has stride 2; for CIFAR it is set to 1 below, so timm must size the
    # relative position tables for an image twice as large.
    model = ByobNet(
        cfg, num_classes=check_positive_int("num_classes", num_classes), in_chans=check_positive_int(
            "in_channels", in_channels), img_size=2 * image_size if cifar else image_size,
    )  # fmt: skip
    if cifar:
        _stride_one(model, "stem.conv")
    return model


@register_model("botnet50", _images(224), "BotNet-50 from timm ByobNet blocks (ImageNet; see module docstring)")
def botnet50(
    num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, width_multiplier: float = 1.0
) -> nn.Module:
    return _botnet50(num_classes, in_channels, image_size, width_multiplier, cifar=False)


@register_model("botnet50_cifar", _images(32), "BotNet-50, 3x3 stride-1 stem without max-pool (CIFAR)")
def botnet50_cifar(
    num_classes: int = 100, in_channels: int = 3, image_size: int = 32, width_multiplier: float = 1.0
) -> nn.Module:
    return _botnet50(num_classes, in_channels, image_size, width_multiplier, cifar=True)


# -- our CIFAR-style ResNets ----------------------------------------------------------------
@register_model("cifar_resnet18", _images(32), "CIFAR ResNet-18: 3x3 stem, no max-pool (paper's CIFAR-100 runs)")
def cifar_resnet18(
    num_classes: int = 100, width: int = 64, in_channels: int = 3, width_multiplier: float = 1.0
) -> nn.Module:
    return cifar_resnet(18, num_classes, width, in_channels, width_multiplier)


@register_model("cifar_resnet34", _images(32), "CIFAR ResNet-34: 3x3 stem, no max-pool")
def cifar_resnet34(
    num_classes: int = 100, width: int = 64, in_channels: int = 3, width_multiplier: float = 1.0
) -> nn.Module:
    return cifar_resnet(34, num_classes, width, in_channels, width_multiplier)


@register_model("fmnist_resnet", _images(28), "3-stage CIFAR-style ResNet (w, 2w, 4w) for Fashion-MNIST on CPU")
def fmnist_resnet(
    num_classes: int = 10, width: int = 8, in_channels: int = 1, blocks_per_stage: int = 1,
    width_multiplier: float = 1.0,
) -> nn.Module:  # fmt: skip
    blocks = (check_positive_int("blocks_per_stage", blocks_per_stage),) * 3
    return CifarResNet(blocks, num_classes, width, in_channels, width_multiplier)


# -- GPT decoders ---------------------------------------------------------------------------
def _gpt(config: GPTConfig, width_multiplier: float) -> GPT:
    return GPT(config.scaled(width_multiplier))


@register_model("gpt3_small", _tokens, "GPT-3 Small: 12 layers, d_model 768, 12 heads, d_ff 3072 (section 8)")
def gpt3_small(
    vocab_size: int = 50257, context_length: int = 2048, n_layer: int = 12, dropout: float = 0.0,
    width_multiplier: float = 1.0,
) -> nn.Module:  # fmt: skip
    config = GPTConfig(n_layer, 768, 12, 3072, context_length, vocab_size, dropout)
    return _gpt(config, width_multiplier)


@register_model("gpt_mini", _tokens, "CPU GPT: 6 layers, d_model 256, 8 heads, byte vocabulary")
def gpt_mini(
    vocab_size: int = 256, context_length: int = 256, n_layer: int = 6, dropout: float = 0.0,
    width_multiplier: float = 1.0,
) -> nn.Module:  # fmt: skip
    return _gpt(GPTConfig(n_layer, 256, 8, 1024, context_length, vocab_size, dropout), width_multiplier)


@register_model("gpt_tiny", _tokens, "CPU GPT: 4 layers, d_model 128, 4 heads, byte vocabulary")
def gpt_tiny(
    vocab_size: int = 256, context_length: int = 128, n_layer: int = 4, dropout: float = 0.0,
    width_multiplier: float = 1.0,
) -> nn.Module:  # fmt: skip
    return _gpt(GPTConfig(n_layer, 128, 4, 512, context_length, vocab_size, dropout), width_multiplier)


# -- Hugging Face GPT-2 -----------------------------------------------------------------------
@register_model(
    "gpt2_small", _tokens, "Hugging Face GPT-2 / GPT-3 Small shape (12x768, 12 heads)", reinit=_hf_init
)
def gpt2_small(
    n_layer: int = 12, n_embd: int = 768, n_head: int = 12, vocab_size: int = 50257, context_length: int = 2048
) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        n_layer=n_layer, n_embd=n_embd, n_head=n_head, vocab_size=vocab_size, n_positions=context_length
    )
    return GPT2LMHeadModel(config)
