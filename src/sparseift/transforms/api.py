"""``sparseift.transform``: turn a dense model into its Sparse-IFT counterpart (section 2.2)."""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from torch import nn

from sparseift._checks import check_choice, check_globs, check_sparsity
from sparseift._model_io import ExampleInputs, execution_order
from sparseift.transforms.layers import describe
from sparseift.transforms.layerwise import build_layerwise
from sparseift.transforms.nonlinearity import Nonlinearity
from sparseift.transforms.wide import widen

__all__ = ["is_excluded", "FAMILIES", "Family", "LayerReport", "Transformed", "first_and_last", "transform"]

Family = Literal["wide", "parallel", "factorized", "doped"]
FAMILIES: tuple[str, ...] = ("wide", "parallel", "factorized", "doped")
Role = Literal["sparse", "first", "last", "excluded", "depthwise"]


@dataclass(frozen=True)
class LayerReport:
    """What the transform did to one dense layer of the input model.

    ``size`` is the integer size parameter the layer got (Wide: output width; Parallel:
    branches; Factorized/Doped: inner rank) and ``size_exact`` the paper's real value.
    ``sparsity`` is the target sparsity of its sparse parameters, ``None`` if it stays dense.
    """

    name: str
    kind: str
    role: Role
    size: int | None
    size_exact: float | None
    sparsity: float | None


@dataclass(frozen=True)
class Transformed:
    """The result of :func:`transform`.

    ``sparse_params`` maps the fully qualified name of every sparse parameter of ``model``
    to its target sparsity (fraction of zeros); every other parameter stays dense.
    """

    model: nn.Module
    sparse_params: dict[str, float]
    family: str
    sparsity: float
    layers: tuple[LayerReport, ...]


def _is_flop_layer(module: nn.Module) -> bool:
    return describe(module) is not None


def _is_first_or_last_candidate(module: nn.Module) -> bool:
    return _is_flop_layer(module) or isinstance(module, nn.Embedding)


def first_and_last(model: nn.Module, example_inputs: ExampleInputs | None = None) -> tuple[str | None, str | None]:
    """Names of the first and last layer (input conv/embedding, classifier/LM head; appendix A.2).

    Candidates are ``nn.Linear``/``nn.Conv2d``/HF ``Conv1D``/``nn.Embedding`` modules, taken in
    execution order on ``example_inputs`` when given, else in registration order.
    ``(None, None)`` when the model has none.
    """
    if example_inputs is not None:
        candidates = execution_order(model, example_inputs, _is_first_or_last_candidate)
    else:
        candidates = [name for name, m in model.named_modules() if _is_first_or_last_candidate(m)]
    return (candidates[0], candidates[-1]) if candidates else (None, None)


def is_excluded(name: str, patterns: Sequence[str]) -> bool:
    """Whether module ``name`` or one of its ancestors matches a glob of ``patterns``."""
    parts = name.split(".")
    prefixes = [".".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes for pattern in patterns)


def _check_exclude(model: nn.Module, exclude: Sequence[str] | str | None) -> tuple[str, ...]:
    if exclude is None:
        return ()
    patterns = (exclude,) if isinstance(exclude, str) else exclude
    return check_globs("exclude", patterns, [name for name, _ in model.named_modules() if name], "module")


_UNSUPPORTED = (nn.modules.conv._ConvNd, nn.MultiheadAttention, nn.Bilinear, nn.RNNBase)


def _check_supported_layers(model: nn.Module, family: str, patterns: Sequence[str]) -> None:
    """Layers with FLOPs that no family rule covers must be excluded explicitly."""
    for name, module in model.named_modules():
        if isinstance(module, _UNSUPPORTED) and describe(module) is None and not is_excluded(name, patterns):
            raise TypeError(
                f"family {family!r} cannot transform module {name!r} ({type(module).__name__}): supported "
                "layers are nn.Linear, nn.Conv2d and Hugging Face Conv1D; add it to exclude=[...] "
                "to keep it dense"
            )


def _role(name: str, first: str | None, last: str | None, patterns: Sequence[str]) -> Role:
    if name == first:
        return "first"
    if name == last:
        return "last"
    if is_excluded(name, patterns):
        return "excluded"
    return "sparse"


def transform(
    model: nn.Module,
    family: Family,
    sparsity: float,
    *,
    example_inputs: ExampleInputs | None = None,
    exclude: Sequence[str] | str | None = None,
    keep_first_last_dense: bool = True,
    nonlinearity: Nonlinearity = "default",
) -> Transformed:
    """Return the Sparse-IFT version of ``model`` for ``family`` at ``sparsity`` (section 2.2).

    ``family`` is one of ``"wide"`` (``k_sw = sqrt(1/(1-s))``), ``"parallel"``
    (``k_sp = 1/(1-s)``), ``"factorized"`` (``d_sf = Din*Dout/((Din+Dout)(1-s))``) or
    ``"doped"`` (``d_sd = s*Din*Dout/(Din+Dout)``); see :mod:`sparseift.transforms.dims`.
    The input model is not modified.

    Args:
        model: any ``nn.Module`` built from ``nn.Linear``/``nn.Conv2d``/HF ``Conv1D`` layers.
        family: the Sparse-IFT family member.
        sparsity: ``s`` in [0, 1), the fraction of zeros of each sparse layer.
        example_inputs: inputs to run the model on (a tensor, a tuple of positional inputs or
            a dict of keyword inputs). Required for ``"wide"``; for the others it finds the
            first and last layer by execution order instead of registration order.
        exclude: glob patterns of module names (``"layer4.*"``, ``"classifier"``) kept dense
            and unchanged (Wide still widens them, for shape consistency).
        keep_first_last_dense: keep the first layer (input conv/embedding) and the last layer
            (classifier/LM head) dense, the standard practice of appendix A.2.
        nonlinearity: ``sigma`` of Parallel/Factorized/Doped: ``"default"`` (BatchNorm+ReLU
            after convs, LayerNorm+GELU after linear layers), ``None`` (identity, the linear
            variants) or a factory ``(kind, channels) -> nn.Module``.

    Returns:
        :class:`Transformed` with the new model and its sparse parameters.
    """
    check_choice("family", family, FAMILIES)
    check_sparsity(sparsity)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    patterns = _check_exclude(model, exclude)
    _check_supported_layers(model, family, patterns)
    if family == "wide" and example_inputs is None:
        raise ValueError(
            "example_inputs is required for family='wide': Sparse Wide runs the model once to "
            "propagate the new widths (pass e.g. torch.randn(1, 3, 224, 224))"
        )
    new = copy.deepcopy(model)
    first, last = first_and_last(new, example_inputs) if keep_first_last_dense else (None, None)
    if family == "wide":
        return _transform_wide(new, sparsity, example_inputs, first, last, patterns)
    return _transform_layerwise(new, family, sparsity, first, last, patterns, nonlinearity)


def _transform_wide(
    model: nn.Module,
    sparsity: float,
    example_inputs: ExampleInputs,
    first: str | None,
    last: str | None,
    patterns: Sequence[str],
) -> Transformed:
    changes = widen(model, sparsity, example_inputs, keep_output={last} if last else set())
    sparse: dict[str, float] = {}
    reports = []
    for name, module in model.named_modules():
        layer = describe(module)
        if layer is None or name not in changes:
            continue
        change = changes[name]
        role = _role(name, first, last, patterns)
        target = None
        if role == "sparse" and layer.is_depthwise:
            target = 1.0 - change.old / change.new
            role = "depthwise"
        elif role == "sparse":
            target = sparsity
        if target is not None and target > 0:
            sparse[f"{name}.weight"] = target
        reports.append(
            LayerReport(name, "depthwise" if layer.is_depthwise else layer.kind, role, change.new, change.exact, target)
        )
    return Transformed(model, sparse, "wide", sparsity, tuple(reports))


def _transform_layerwise(
    model: nn.Module,
    family: str,
    sparsity: float,
    first: str | None,
    last: str | None,
    patterns: Sequence[str],
    nonlinearity: Nonlinearity,
) -> Transformed:
    sparse: dict[str, float] = {}
    reports = []
    targets = [(name, m, describe(m)) for name, m in model.named_modules() if _is_flop_layer(m)]
    for name, module, layer in targets:
        role = _role(name, first, last, patterns)
        kind = "depthwise" if layer.is_depthwise else layer.kind
        if role == "sparse" and layer.is_depthwise:
            reports.append(LayerReport(name, kind, "depthwise", None, None, None))
            continue
        if role != "sparse":
            reports.append(LayerReport(name, kind, role, None, None, None))
            continue
        replacement, size = build_layerwise(family, module, layer, sparsity, nonlinearity)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, replacement)
        if sparsity > 0:
            for local in replacement.sparse_parameter_names():
                sparse[f"{name}.{local}"] = sparsity
        reports.append(LayerReport(name, kind, "sparse", size.value, size.exact, sparsity))
    return Transformed(model, sparse, family, sparsity, tuple(reports))
