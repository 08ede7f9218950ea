"""The one FLOP counter of sparseift.

Convention (the paper's, section 2.1): a FLOP is a multiply-accumulate of a matrix
product or convolution, so a dense layer costs ``B * Din * Dout`` and a conv
``B * Hout * Wout * cout * cin/groups * kh * kw`` (appendix A.1). Biases, norms and
activations are not counted (they are linear in width and negligible).
``torch.utils.flop_counter.FlopCounterMode`` counts 2 FLOPs per multiply-accumulate:
``2 * dense_macs`` equals its total.

The counter runs the model once on example inputs under a ``TorchDispatchMode`` and
records every matrix product, convolution and fused attention, with the innermost module
that issued it and the parameter (if any) it multiplies. Attention score and context
products (``Q K^T``, ``A V``) are counted and never sparsified. Effective FLOPs count only
non-zero weights: an operation on a sparse parameter costs its dense MACs times the
parameter's density, the number of non-zeros a mask of that sparsity holds
(:func:`active_count`) over its size.

Training FLOPs (:func:`training_macs`): forward + gradient w.r.t. activations + gradient
w.r.t. weights = 3x forward, all three sparse; a step that needs the dense weight gradient
(RigL's grow criterion) pays the dense cost for that third product instead.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from sparseift._checks import check_fraction
from sparseift._model_io import ExampleInputs, call_model, inspecting

__all__ = ["OpRecord", "FlopProfile", "profile_flops", "active_count", "training_macs"]

aten = torch.ops.aten


def active_count(numel: int, sparsity: float) -> int:
    """Non-zeros of a mask of ``numel`` entries at ``sparsity``: ``floor((1-s)*numel + 0.5)``.

    The one rounding rule for mask sizes; at least one weight stays active (also at s = 1,
    the limit the Iso-FLOP search probes).
    """
    check_fraction(sparsity, "sparsity")
    return max(1, math.floor((1.0 - sparsity) * numel + 0.5))


@dataclass(frozen=True)
class OpRecord:
    """One counted operation: its module, kind, dense MACs and the parameter it multiplies."""

    module: str
    op: str
    macs: int
    param: str | None


@dataclass(frozen=True)
class FlopProfile:
    """Every counted operation of one forward pass, and the sizes of the parameters involved."""

    records: tuple[OpRecord, ...]
    param_numel: Mapping[str, int] = field(default_factory=dict)

    def dense_macs(self) -> int:
        """Forward MACs with every weight counted."""
        return sum(r.macs for r in self.records)

    def density(self, param: str | None, sparsities: Mapping[str, float]) -> float:
        """Density of ``param`` under ``sparsities`` (1 for dense parameters), from exact counts."""
        if param is None or param not in sparsities:
            return 1.0
        numel = self.param_numel[param]
        return active_count(numel, sparsities[param]) / numel

    def effective_macs(self, sparsities: Mapping[str, float] | None = None) -> float:
        """Forward MACs counting only non-zero weights of the parameters in ``sparsities``.

        ``sum_ops macs * density(param)``, evaluated per parameter since every operation on
        a parameter shares its density.
        """
        sparsities = sparsities or {}
        self._check_known(sparsities)
        per_param = self._param_macs
        sparse = sum(per_param[name] * self.density(name, sparsities) for name in sparsities)
        return self.dense_macs() - sum(per_param[name] for name in sparsities) + sparse

    @cached_property
    def _param_macs(self) -> dict[str, int]:
        totals: dict[str, int] = defaultdict(int)
        for record in self.records:
            if record.param is not None:
                totals[record.param] += record.macs
        return dict(totals)

    def param_macs(self) -> dict[str, int]:
        """Dense forward MACs attributable to each parameter."""
        return dict(self._param_macs)

    def per_module(self, sparsities: Mapping[str, float] | None = None) -> dict[str, tuple[int, float]]:
        """``{module: (dense MACs, effective MACs)}`` in execution order."""
        sparsities = sparsities or {}
        table: dict[str, list[float]] = {}
        for r in self.records:
            row = table.setdefault(r.module, [0, 0.0])
            row[0] += r.macs
            row[1] += r.macs * self.density(r.param, sparsities)
        return {name: (int(dense), eff) for name, (dense, eff) in table.items()}

    def _check_known(self, sparsities: Mapping[str, float]) -> None:
        unknown = [name for name in sparsities if name not in self.param_numel]
        if unknown:
            raise ValueError(
                f"sparsities name parameters that no counted operation uses: {unknown[:5]}; "
                "use fully qualified parameter names of the profiled model"
            )


def training_macs(forward_effective: float, forward_dense: float, *, dense_weight_gradient: bool = False) -> float:
    """MACs of one training step: ``3 * f_S``, or ``2 * f_S + f_D`` when the step computes the
    dense weight gradient (RigL's regrowth criterion, Evci et al. 2020)."""
    if dense_weight_gradient:
        return 2.0 * forward_effective + forward_dense
    return 3.0 * forward_effective


def _numel(shape: torch.Size | tuple[int, ...]) -> int:
    return math.prod(int(d) for d in shape)


def _matmul_macs(a: torch.Tensor, b: torch.Tensor) -> int:
    return _numel(a.shape) * int(b.shape[-1])


def _conv_macs(args: tuple, out: torch.Tensor) -> int:
    x, weight = args[0], args[1]
    transposed = bool(args[6]) if len(args) > 6 else False
    per_position = int(weight.shape[1]) * _numel(weight.shape[2:])
    return (_numel(x.shape) if transposed else _numel(out.shape)) * per_position


def _attention_macs(args: tuple) -> int:
    q, k, v = args[0], args[1], args[2]
    batch_heads_queries = _numel(q.shape[:-1])
    keys = int(k.shape[-2])
    return batch_heads_queries * keys * (int(q.shape[-1]) + int(v.shape[-1]))


_MATMULS = {aten.mm: (0, 1), aten.bmm: (0, 1), aten.addmm: (1, 2), aten.baddbmm: (1, 2), aten._addmm_activation: (1, 2)}
_CONVS = {aten.convolution, aten._convolution}
_ATTENTIONS = {
    getattr(aten, name)
    for name in (
        "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_cudnn_attention",
        "_scaled_dot_product_fused_attention_overrideable",
    )
    if hasattr(aten, name)
}


class _Recorder(TorchDispatchMode):
    def __init__(self, storages: Mapping[int, str], stack: list[str]) -> None:
        super().__init__()
        self.storages = storages
        self.stack = stack
        self.records: list[OpRecord] = []

    def _param_of(self, tensors: tuple[Any, ...]) -> str | None:
        for t in tensors:
            if isinstance(t, torch.Tensor):
                name = self.storages.get(t.untyped_storage().data_ptr())
                if name is not None:
                    return name
        return None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        out = func(*args, **(kwargs or {}))
        packet = func._overloadpacket
        if packet in _MATMULS:
            i, j = _MATMULS[packet]
            self._record("matmul", _matmul_macs(args[i], args[j]), (args[i], args[j]))
        elif packet in _CONVS:
            self._record("conv", _conv_macs(args, out), (args[1],))
        elif packet in _ATTENTIONS:
            self._record("attention", _attention_macs(args), ())
        return out

    def _record(self, op: str, macs: int, operands: tuple[Any, ...]) -> None:
        self.records.append(OpRecord(self.stack[-1] if self.stack else "", op, macs, self._param_of(operands)))


def profile_flops(model: nn.Module, example_inputs: ExampleInputs) -> FlopProfile:
    """Count the forward MACs of ``model`` on ``example_inputs``, per operation.

    The model runs once in eval mode without autograd; its state is unchanged.
    """
    storages: dict[int, str] = {}
    numels: dict[str, int] = {}
    for name, param in model.named_parameters():
        storages.setdefault(param.untyped_storage().data_ptr(), name)
        numels[name] = param.numel()
    names = {id(m): name for name, m in model.named_modules(remove_duplicate=False)}
    stack: list[str] = []

    def enter(module: nn.Module, args: tuple) -> None:
        stack.append(names[id(module)])

    def leave(module: nn.Module, args: tuple, output: Any) -> None:
        stack.pop()

    handles = []
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(enter))
        handles.append(module.register_forward_hook(leave, always_call=True))
    recorder = _Recorder(storages, stack)
    try:
        with inspecting(model), recorder:
            call_model(model, example_inputs)
    finally:
        for handle in handles:
            handle.remove()
    used = {r.param for r in recorder.records if r.param is not None}
    return FlopProfile(tuple(recorder.records), {name: numels[name] for name in used})
