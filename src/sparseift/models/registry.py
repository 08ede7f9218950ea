"""A registry of model names: ``build_model(name, width_multiplier=1.0, **kwargs)``.

Every registered model takes a ``width_multiplier`` ``k`` that scales each hidden width
(not the input channels, classes or vocabulary), rounded half up:

* builders of models defined here (CIFAR ResNets, GPT) and of third-party definitions with
  a width option of their own (timm's ByobNet: BotNet-50) take ``width_multiplier`` as a
  keyword and scale their widths natively;
* every other builder (torchvision and timm definitions reused as they are) is widened
  after construction by the generic engine of Sparse Wide,
  :func:`sparseift.transforms.widen_model`, run on the model's example input, and then
  re-initialised by the registration's ``reinit`` (the model's own init scheme).

Layering: models never know about sparsity (STYLE.md). The widening engine lives in
``sparseift.transforms``; this module is the only one in ``sparseift.models`` that uses it,
and imports it lazily, only when a third-party model is built with ``k != 1``.

Each registration also gives an example input: a function of the batch size and of the
builder's arguments (so ``in_channels``, ``image_size``, ``vocab_size`` are honoured).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sparseift.models.widths import check_width_multiplier

__all__ = ["ExampleInput", "ModelSpec", "register_model", "build_model", "example_input", "list_models", "model_spec"]

ExampleInput = Callable[[int, Mapping[str, Any]], torch.Tensor]
"""``(batch, builder arguments with defaults) -> input tensor``."""

_WIDTH = "width_multiplier"


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its builder, the input it takes, a description, its re-init."""

    name: str
    build: Callable[..., nn.Module]
    example_input: ExampleInput
    description: str
    reinit: Callable[[nn.Module], None] | None = None

    @property
    def native_width(self) -> bool:
        """True when the builder scales widths itself (takes ``width_multiplier``)."""
        return _WIDTH in inspect.signature(self.build).parameters

    def arguments(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The builder's keyword arguments with defaults filled in; unknown names are an error."""
        signature = inspect.signature(self.build)
        allowed = [name for name in signature.parameters if name != _WIDTH]
        unknown = sorted(set(kwargs) - set(allowed))
        if unknown:
            raise TypeError(
                f"model {self.name!r} got unknown keyword argument(s) {', '.join(map(repr, unknown))}; "
                f"it accepts: {', '.join([*allowed, _WIDTH])}"
            )
        bound = signature.bind_partial(**kwargs)
        bound.apply_defaults()
        return {name: value for name, value in bound.arguments.items() if name != _WIDTH}


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    example_input: ExampleInput,
    description: str,
    reinit: Callable[[nn.Module], None] | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register a builder (keyword arguments only) under ``name``.

    ``reinit`` re-applies the model's own initialisation after the widening engine resized
    its layers (only used for builders without a ``width_multiplier`` keyword).
    """

    def decorate(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(name, build, example_input, description, reinit)
        return build

    return decorate


def model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` registered under ``name``."""
    _load_builtin()
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def build_model(name: str, width_multiplier: float = 1.0, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with every hidden width times ``width_multiplier``.

    Args:
        name: a registered name (:func:`list_models`).
        width_multiplier: ``k > 0``; 1 is the published width. ``k = k_sw(s)`` gives the dense
            model with the widths of its Sparse Wide transform at sparsity ``s``.
        **kwargs: the builder's keyword arguments (``num_classes``, ``in_channels``, ...);
            an unknown name is a ``TypeError`` that lists the accepted ones.
    """
    spec = model_spec(name)
    k = check_width_multiplier(width_multiplier)
    arguments = spec.arguments(kwargs)
    if spec.native_width:
        return spec.build(**arguments, width_multiplier=k)
    model = spec.build(**arguments)
    if k == 1.0:
        return model
    from sparseift.transforms.wide import widen_model  # lazy: see the module docstring

    model = widen_model(model, k, spec.example_input(1, arguments))
    if spec.reinit is not None:
        spec.reinit(model)
    return model


def example_input(name: str, batch: int = 1, **kwargs: Any) -> torch.Tensor:
    """A random input of the right shape for ``build_model(name, **kwargs)`` (batch ``batch``)."""
    spec = model_spec(name)
    kwargs.pop(_WIDTH, None)
    return spec.example_input(batch, spec.arguments(kwargs))


def list_models() -> list[str]:
    """Registered model names, sorted."""
    _load_builtin()
    return sorted(_REGISTRY)


def _load_builtin() -> None:
    from sparseift.models import zoo  # noqa: F401  (registers the built-in models)
