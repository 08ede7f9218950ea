"""Calling a model on user-given example inputs, and recording which layers run in which order."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Union

import torch
from torch import nn

__all__ = ["ExampleInputs", "call_model", "first_tensor", "execution_order", "inspecting"]

ExampleInputs = Union[torch.Tensor, tuple, list, Mapping[str, Any]]
"""A tensor (one positional input), a tuple/list of positional inputs, or a dict of keyword inputs."""


@contextmanager
def inspecting(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no autograd while a model is run only to be inspected; restores the modes.

    Eval mode keeps BatchNorm running statistics untouched by the inspection.
    """
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        for module, training in modes.items():
            module.train(training)


def call_model(model: nn.Module, example_inputs: ExampleInputs) -> Any:
    """Run ``model`` on ``example_inputs`` (see :data:`ExampleInputs`)."""
    if isinstance(example_inputs, torch.Tensor):
        return model(example_inputs)
    if isinstance(example_inputs, Mapping):
        return model(**example_inputs)
    if isinstance(example_inputs, (tuple, list)):
        return model(*example_inputs)
    raise TypeError(
        "example_inputs must be a tensor, a tuple/list of positional inputs or a dict of keyword inputs; "
        f"got {type(example_inputs).__name__}"
    )


def first_tensor(args: tuple, kwargs: Mapping[str, Any]) -> torch.Tensor | None:
    """The first tensor among a call's positional then keyword arguments."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            return value
    return None


def execution_order(
    model: nn.Module, example_inputs: ExampleInputs, select: Callable[[nn.Module], bool]
) -> list[str]:
    """Names of the modules chosen by ``select``, in the order they first run on the inputs."""
    names = {id(m): name for name, m in model.named_modules(remove_duplicate=False)}
    order: list[str] = []
    seen: set[int] = set()

    def hook(module: nn.Module, args: tuple) -> None:
        if id(module) not in seen:
            seen.add(id(module))
            order.append(names[id(module)])

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if select(m)]
    try:
        with inspecting(model):
            call_model(model, example_inputs)
    finally:
        for handle in handles:
            handle.remove()
    return order
