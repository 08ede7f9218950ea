"""Model zoo: a registry of model names (``build_model``) with a width multiplier on every
model and matching example inputs, our own CIFAR ResNets and GPT decoder, and the paper's
initialisation and weight-decay recipe."""

from sparseift.models.gpt import GPT, GPTConfig
from sparseift.models.init import kaiming_init, param_groups, residual_blocks, zero_init_last_bn
from sparseift.models.registry import (
    ModelSpec,
    build_model,
    example_input,
    list_models,
    model_spec,
    register_model,
)
from sparseift.models.resnet_cifar import CifarResNet, cifar_resnet

__all__ = [
    "ModelSpec",
    "build_model",
    "example_input",
    "list_models",
    "model_spec",
    "register_model",
    "GPT",
    "GPTConfig",
    "CifarResNet",
    "cifar_resnet",
    "kaiming_init",
    "zero_init_last_bn",
    "residual_blocks",
    "param_groups",
]
