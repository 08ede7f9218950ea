"""Built-in models: torchvision/timm/Hugging Face definitions reused, not rewritten."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from sparseift.models.registry import register_model
from sparseift.models.resnet_cifar import cifar_resnet


def _images(size: int) -> Callable[[int], torch.Tensor]:
    return lambda batch: torch.randn(batch, 3, size, size)


def _tokens(vocab: int, length: int) -> Callable[[int], torch.Tensor]:
    return lambda batch: torch.randint(0, vocab, (batch, length))


def _torchvision(name: str, **kwargs: object) -> nn.Module:
    import torchvision

    return getattr(torchvision.models, name)(weights=None, **kwargs)


@register_model("resnet18", _images(224), "torchvision ResNet-18 (ImageNet)")
def resnet18(num_classes: int = 1000) -> nn.Module:
    return _torchvision("resnet18", num_classes=num_classes)


@register_model("resnet34", _images(224), "torchvision ResNet-34 (ImageNet)")
def resnet34(num_classes: int = 1000) -> nn.Module:
    return _torchvision("resnet34", num_classes=num_classes)


@register_model("resnet50", _images(224), "torchvision ResNet-50 (ImageNet)")
def resnet50(num_classes: int = 1000) -> nn.Module:
    return _torchvision("resnet50", num_classes=num_classes)


@register_model("mobilenet_v2", _images(224), "torchvision MobileNetV2 (ImageNet)")
def mobilenet_v2(num_classes: int = 1000) -> nn.Module:
    return _torchvision("mobilenet_v2", num_classes=num_classes)


@register_model("mobilevit_s", _images(256), "timm MobileViT-S")
def mobilevit_s(num_classes: int = 1000) -> nn.Module:
    import timm

    return timm.create_model("mobilevit_s", pretrained=False, num_classes=num_classes)


@register_model("gpt2_small", _tokens(50257, 256), "Hugging Face GPT-2 / GPT-3 Small shape (12x768, 12 heads)")
def gpt2_small(n_layer: int = 12, n_embd: int = 768, n_head: int = 12, vocab_size: int = 50257) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=n_head, vocab_size=vocab_size, n_positions=2048)
    return GPT2LMHeadModel(config)


@register_model("cifar_resnet18", _images(32), "CIFAR ResNet-18: 3x3 stem, no max-pool (paper's CIFAR-100 runs)")
def cifar_resnet18(num_classes: int = 100, width: int = 64, in_channels: int = 3) -> nn.Module:
    return cifar_resnet(18, num_classes=num_classes, width=width, in_channels=in_channels)


@register_model("cifar_resnet34", _images(32), "CIFAR ResNet-34: 3x3 stem, no max-pool")
def cifar_resnet34(num_classes: int = 100, width: int = 64, in_channels: int = 3) -> nn.Module:
    return cifar_resnet(34, num_classes=num_classes, width=width, in_channels=in_channels)
