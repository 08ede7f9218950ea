"""Masks: storage on the model, the one mask-application path, and exact-count selection.

The mask of parameter ``foo.weight`` is a bool buffer ``weight_mask`` registered on the
module ``foo``, so ``model.state_dict()`` carries it as ``foo.weight_mask`` (True = active).
Every zeroing of masked entries, in weights, gradients and optimizer state (momentum
buffers, Adam moments), goes through :func:`zero_entries`; :func:`apply_masks` applies it
to every masked parameter of a model.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["MASK_SUFFIX", "mask_key", "attach_masks", "get_masks", "apply_masks", "zero_entries", "topk_mask"]

MASK_SUFFIX = "_mask"


def mask_key(param_name: str) -> str:
    """``model.state_dict()`` key of the mask of ``param_name``: ``"foo.weight" -> "foo.weight_mask"``."""
    return param_name + MASK_SUFFIX


def _owner(model: nn.Module, param_name: str) -> tuple[nn.Module, str]:
    module_name, _, local = param_name.rpartition(".")
    module = model.get_submodule(module_name)
    if not isinstance(module._parameters.get(local), nn.Parameter):
        raise ValueError(f"{param_name!r} is not a parameter of the model")
    return module, local


def attach_masks(model: nn.Module, param_names: Iterable[str]) -> dict[str, torch.Tensor]:
    """Register an all-True bool mask buffer for each parameter (kept if already present).

    Returns ``{param_name: mask}``; the tensors are the registered buffers themselves.
    """
    masks = {}
    for name in param_names:
        module, local = _owner(model, name)
        param = module._parameters[local]
        buffer = getattr(module, local + MASK_SUFFIX, None)
        if buffer is None or buffer.shape != param.shape or buffer.dtype != torch.bool:
            module.register_buffer(local + MASK_SUFFIX, torch.ones_like(param, dtype=torch.bool))
        masks[name] = getattr(module, local + MASK_SUFFIX)
    return masks


def get_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{param_name: bool mask}`` for every parameter of ``model`` that has a mask buffer."""
    masks = {}
    for module_name, module in model.named_modules():
        for buffer_name, buffer in module.named_buffers(recurse=False):
            local = buffer_name[: -len(MASK_SUFFIX)]
            if buffer_name.endswith(MASK_SUFFIX) and local in module._parameters and buffer.dtype == torch.bool:
                masks[f"{module_name}.{local}" if module_name else local] = buffer
    return masks


@torch.no_grad()
def zero_entries(param: torch.Tensor, where: torch.Tensor, optimizer: torch.optim.Optimizer | None = None) -> None:
    """Set ``param``, its gradient and its per-entry optimizer state to 0 where ``where`` is True.

    Per-entry state is every tensor of ``optimizer.state[param]`` shaped like ``param``
    (SGD's ``momentum_buffer``, Adam's ``exp_avg``/``exp_avg_sq``/``max_exp_avg_sq``);
    scalar state such as Adam's ``step`` is left alone.
    """
    param.masked_fill_(where, 0)
    if param.grad is not None:
        param.grad.masked_fill_(where, 0)
    if optimizer is not None:
        for value in optimizer.state.get(param, {}).values():
            if isinstance(value, torch.Tensor) and value.shape == param.shape:
                value.masked_fill_(where, 0)


def apply_masks(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> None:
    """Zero every masked entry of ``model`` (weights, gradients, optimizer state): the one
    mask-application path of sparseift."""
    for name, mask in get_masks(model).items():
        zero_entries(model.get_parameter(name), ~mask, optimizer)


def topk_mask(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Bool mask with exactly ``count`` True entries at the largest ``scores`` (``-inf`` never
    wins over a finite score)."""
    if not 0 <= count <= scores.numel():
        raise ValueError(f"count must lie in [0, {scores.numel()}], got {count}")
    mask = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    mask[torch.topk(scores.flatten(), count, sorted=False).indices] = True
    return mask.view_as(scores)
