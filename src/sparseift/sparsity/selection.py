"""Which parameters are sparse, and at which target sparsity.

Three ways to say it: the ``sparse_params`` map that ``sparseift.transform`` returns
(fully qualified name -> sparsity), glob patterns over parameter names, or nothing: every
``nn.Linear``/``nn.Conv2d``/HF ``Conv1D`` weight except the first and the last layer, found
by the same rule as the transform (:func:`sparseift.transforms.api.first_and_last`).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence

from torch import nn

from sparseift._checks import check_globs, check_sparsity
from sparseift._model_io import ExampleInputs
from sparseift.sparsity.distributions import Distribution, distribute, global_sparsity
from sparseift.transforms.api import first_and_last
from sparseift.transforms.layers import describe

__all__ = ["ParamSpec", "default_sparse_params", "match_params", "resolve_targets"]

ParamSpec = Mapping[str, float] | Sequence[str] | None
"""A ``{name: sparsity}`` map, glob patterns over parameter names, or ``None`` (default set)."""


def default_sparse_params(model: nn.Module, example_inputs: ExampleInputs | None = None) -> list[str]:
    """Weights of every linear/conv layer except the first and the last (appendix A.2)."""
    first, last = first_and_last(model, example_inputs)
    return [
        f"{name}.weight"
        for name, module in model.named_modules()
        if describe(module) is not None and name not in (first, last)
    ]


def match_params(model: nn.Module, patterns: Sequence[str]) -> list[str]:
    """Parameter names matching any glob pattern (``"layer*.conv*.weight"``); each pattern must match."""
    names = [name for name, _ in model.named_parameters()]
    check_globs("params", patterns, names, "parameter")
    return [name for name in names if any(fnmatch.fnmatchcase(name, p) for p in patterns)]


def resolve_targets(
    model: nn.Module,
    params: ParamSpec,
    sparsity: float | None,
    distribution: Distribution,
    example_inputs: ExampleInputs | None = None,
) -> dict[str, float]:
    """Target sparsity of every sparse parameter.

    A map with ``sparsity=None`` and ``distribution="uniform"`` is used as given (the
    per-parameter distribution). Otherwise the parameters are spread by ``distribution`` at
    ``sparsity``, which defaults, for a map, to the map's global sparsity.
    """
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    if isinstance(params, Mapping):
        unknown = [name for name in params if name not in shapes]
        if unknown:
            raise ValueError(f"params names parameters the model does not have: {unknown[:5]}")
        for name, s in params.items():
            check_sparsity(s, f"params[{name!r}]")
        if sparsity is None and distribution == "uniform":
            return dict(params)
        if sparsity is None:
            sparsity = global_sparsity(params, {n: math.prod(shapes[n]) for n in params})
        names = list(params)
    else:
        if sparsity is None:
            raise TypeError("sparsity is required (a float in [0, 1)) unless params is a {name: sparsity} map")
        if isinstance(params, str):
            params = [params]
        names = default_sparse_params(model, example_inputs) if params is None else match_params(model, params)
    check_sparsity(sparsity)
    if not names:
        raise ValueError("no sparse parameter selected: pass params=... (a map or glob patterns)")
    return distribute({name: shapes[name] for name in names}, sparsity, distribution)

