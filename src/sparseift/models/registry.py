"""A registry of model names: ``build_model(name, **kwargs)`` and a matching example input.

Models never know about sparsity; ``sparseift.transform`` turns any of them into Sparse-IFT.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["ModelSpec", "register_model", "build_model", "example_input", "list_models", "model_spec"]


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its builder, the input it takes and a one-line description."""

    name: str
    build: Callable[..., nn.Module]
    example_input: Callable[[int], torch.Tensor]
    description: str


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str, example_input: Callable[[int], torch.Tensor], description: str
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register a builder under ``name``."""

    def decorate(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(name, build, example_input, description)
        return build

    return decorate


def model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` registered under ``name``."""
    _load_builtin()
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with builder keyword arguments."""
    return model_spec(name).build(**kwargs)


def example_input(name: str, batch: int = 1) -> torch.Tensor:
    """A random input of the right shape for ``name`` (batch ``batch``)."""
    return model_spec(name).example_input(batch)


def list_models() -> list[str]:
    """Registered model names, sorted."""
    _load_builtin()
    return sorted(_REGISTRY)


def _load_builtin() -> None:
    from sparseift.models import zoo  # noqa: F401  (registers the built-in models)
