"""Pruning at initialisation: SNIP, GraSP, FORCE (paper section 3.1, table 2).

Each method scores every weight once, from a few batches of a data loader and a loss,
and keeps the highest scores *globally* over all sparse parameters (so layers end up with
different sparsities); the masks are then fixed. The per-parameter targets only set the
total number of active weights. With a :class:`~sparseift.sparsity.report.FlopBudget`,
that total is searched (:func:`sparseift.flops.calibrate.bisect_increasing`) until the
masked model's forward MACs equal the budget (appendix A.2).

Scores here are "keep" scores, higher = kept:

- SNIP (Lee et al. 2019, eq. 6): ``|g . w|``, with ``g = dL/dw`` at the dense weights.
- GraSP (Wang et al. 2020, eq. 8): GraSP removes the largest ``S = -w . (H g)``, so it
  keeps the largest ``w . (H g)``; ``H g`` is the Hessian-gradient product.
- FORCE (de Jorge et al. 2021, eq. 3): ``|w . dL/d(w.m)|``, the gradient taken at the
  masked weights ``w . m``; repeated over ``iterations`` rounds whose densities decay
  exponentially, ``d_t = d^(t/T)``, each round's mask being the top ``d_t`` of its scores.

Gradients are summed over ``batches`` batches; BatchNorm statistics are restored after
scoring; under DDP the scores are averaged over ranks.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from sparseift._checks import check_positive_int
from sparseift._model_io import ExampleInputs
from sparseift.flops import active_count
from sparseift.flops.calibrate import bisect_increasing
from sparseift.sparsity.base import Sparsifier
from sparseift.sparsity.distributed import all_reduce_mean_
from sparseift.sparsity.distributions import Distribution
from sparseift.sparsity.masks import topk_mask
from sparseift.sparsity.report import FlopBudget
from sparseift.sparsity.selection import ParamSpec

__all__ = ["Batch", "LossFn", "snip_scores", "grasp_scores", "force_scores", "GlobalRanking",
           "PruningAtInit", "SNIP", "GraSP", "FORCE"]

Batch = tuple[Any, Any]
"""``(inputs, targets)``; inputs a tensor or a tuple of positional inputs."""
LossFn = Callable[[Any, Any], torch.Tensor]
"""``loss_fn(model_output, targets) -> scalar``, e.g. ``nn.functional.cross_entropy``."""


def _loss(model: nn.Module, values: Mapping[str, torch.Tensor], batch: Batch, loss_fn: LossFn) -> torch.Tensor:
    inputs, targets = batch
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    return loss_fn(functional_call(model, dict(values), args), targets)


def _gradient(
    model: nn.Module, values: Mapping[str, torch.Tensor], batches: list[Batch], loss_fn: LossFn
) -> dict[str, torch.Tensor]:
    """``sum_b dL_b/dv`` for the tensors ``values`` substituted into ``model``."""
    leaves = {name: v.detach().requires_grad_(True) for name, v in values.items()}
    total = {name: torch.zeros_like(v) for name, v in leaves.items()}
    for batch in batches:
        grads = torch.autograd.grad(_loss(model, leaves, batch, loss_fn), list(leaves.values()))
        for name, g in zip(leaves, grads):
            total[name] += g
    return total


def snip_scores(
    model: nn.Module, params: Mapping[str, torch.Tensor], batches: list[Batch], loss_fn: LossFn
) -> dict[str, torch.Tensor]:
    """SNIP connection sensitivity ``|g . w|`` (Lee et al. 2019, eq. 6, unnormalised)."""
    grads = _gradient(model, params, batches, loss_fn)
    return {name: (grads[name] * w.detach()).abs() for name, w in params.items()}


def grasp_scores(
    model: nn.Module, params: Mapping[str, torch.Tensor], batches: list[Batch], loss_fn: LossFn
) -> dict[str, torch.Tensor]:
    """GraSP keep score ``w . (H g)`` = ``-S(-w)`` of Wang et al. 2020, eq. 8 (``H g`` is
    the gradient of ``g_detached . dL/dw``, summed over batches)."""
    g = _gradient(model, params, batches, loss_fn)
    leaves = {name: w.detach().requires_grad_(True) for name, w in params.items()}
    hg = {name: torch.zeros_like(w) for name, w in leaves.items()}
    for batch in batches:
        grads = torch.autograd.grad(_loss(model, leaves, batch, loss_fn), list(leaves.values()), create_graph=True)
        dot = sum((gi * g[name]).sum() for name, gi in zip(leaves, grads))
        for name, h in zip(leaves, torch.autograd.grad(dot, list(leaves.values()))):
            hg[name] += h
    return {name: w.detach() * hg[name] for name, w in params.items()}


def force_scores(
    model: nn.Module,
    params: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor],
    batches: list[Batch],
    loss_fn: LossFn,
) -> dict[str, torch.Tensor]:
    """FORCE score ``|w . dL/d(w.m)|`` (de Jorge et al. 2021, eq. 3): connection sensitivity
    at the masked weights, defined for pruned weights too (they can come back)."""
    masked = {name: w.detach() * masks[name] for name, w in params.items()}
    grads = _gradient(model, masked, batches, loss_fn)
    return {name: (grads[name] * w.detach()).abs() for name, w in params.items()}


class GlobalRanking:
    """Scores of all sparse parameters ranked together: how many of the ``k`` best fall in
    each parameter (at least one each, so no layer is cut off)."""

    def __init__(self, scores: Mapping[str, torch.Tensor]) -> None:
        self.names = list(scores)
        flat = torch.cat([scores[name].detach().flatten().double().cpu() for name in self.names])
        owner = torch.cat([torch.full((scores[n].numel(),), i) for i, n in enumerate(self.names)])
        self.owner = owner[torch.argsort(flat, descending=True, stable=True)]
        self.numel = {name: scores[name].numel() for name in self.names}

    def counts(self, k: int) -> dict[str, int]:
        """Per-parameter counts of the ``k`` highest scores."""
        counts = torch.bincount(self.owner[:k], minlength=len(self.names))
        return {name: max(1, int(c)) for name, c in zip(self.names, counts)}

    def sparsities(self, k: int) -> dict[str, float]:
        """Per-parameter sparsities of the top ``k``."""
        return {name: 1.0 - c / self.numel[name] for name, c in self.counts(k).items()}


@contextmanager
def _preserved_buffers(model: nn.Module) -> Iterator[None]:
    saved = {name: buffer.detach().clone() for name, buffer in model.named_buffers()}
    try:
        yield
    finally:
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                buffer.copy_(saved[name])


class PruningAtInit(Sparsifier):
    """Static masks chosen once at init by a global score ranking; subclasses give the score.

    Args (beyond :class:`~sparseift.sparsity.base.Sparsifier`'s):
        loader: iterable of ``(inputs, targets)`` batches (required).
        loss_fn: ``loss_fn(model(inputs), targets) -> scalar``.
        batches: how many batches of ``loader`` the scores sum over.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        params: ParamSpec = None,
        *,
        loader: Iterable[Batch] | None = None,
        loss_fn: LossFn = nn.functional.cross_entropy,
        batches: int = 1,
        sparsity: float | None = None,
        distribution: Distribution = "uniform",
        flop_budget: FlopBudget | None = None,
        seed: int = 0,
        example_inputs: ExampleInputs | None = None,
    ) -> None:
        if loader is None or not isinstance(loader, Iterable):
            raise TypeError(
                f"{type(self).__name__} needs loader=..., an iterable of (inputs, targets) batches to score "
                f"weights on; got {loader!r}"
            )
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable (output, targets) -> loss, got {loss_fn!r}")
        check_positive_int("batches", batches)
        self.batches = list(itertools.islice(iter(loader), batches))
        if not self.batches:
            raise ValueError("loader yielded no batch")
        self.loss_fn = loss_fn
        super().__init__(
            model, optimizer, params, sparsity=sparsity, distribution=distribution,
            flop_budget=flop_budget, seed=seed, example_inputs=example_inputs,
        )
        del self.batches

    def scores(self, total_active: int) -> dict[str, torch.Tensor]:
        """Keep scores of every sparse parameter for ``total_active`` kept weights overall."""
        raise NotImplementedError

    def _calibrate(self, targets: dict[str, float], budget: FlopBudget) -> dict[str, float]:
        return targets  # calibrated on the global ranking in _initialize

    def _initialize(self) -> None:
        total = sum(active_count(self.masks[name].numel(), s) for name, s in self.targets.items())
        with torch.enable_grad(), _preserved_buffers(self.model):
            scores = self.scores(total)
        scores = {name: all_reduce_mean_(s) for name, s in scores.items()}
        ranking = GlobalRanking(scores)
        if self.flop_budget is not None:
            profile, goal = self.flop_budget.profile, self.flop_budget.target_macs
            size = sum(ranking.numel.values())
            k, _ = bisect_increasing(lambda k: profile.effective_macs(ranking.sparsities(round(k))), goal, 0, size, rtol=1e-6)
            total = round(k)
        counts = ranking.counts(total)
        self.targets = ranking.sparsities(total)
        for name, mask in self.masks.items():
            mask.copy_(topk_mask(scores[name], counts[name]))


class SNIP(PruningAtInit):
    """SNIP (Lee et al. 2019): keep the largest connection sensitivities ``|g . w|``."""

    def scores(self, total_active: int) -> dict[str, torch.Tensor]:
        return snip_scores(self.model, self.params, self.batches, self.loss_fn)


class GraSP(PruningAtInit):
    """GraSP (Wang et al. 2020): keep the weights whose removal least reduces gradient flow."""

    def scores(self, total_active: int) -> dict[str, torch.Tensor]:
        return grasp_scores(self.model, self.params, self.batches, self.loss_fn)


class FORCE(PruningAtInit):
    """FORCE (de Jorge et al. 2021): iterative SNIP at the masked weights, densities
    ``d^(t/T)`` for ``t = 1..T`` (``iterations = T``; pruned weights may come back)."""

    def __init__(self, *args: Any, iterations: int = 10, **kwargs: Any) -> None:
        self.iterations = check_positive_int("iterations", iterations)
        super().__init__(*args, **kwargs)

    def scores(self, total_active: int) -> dict[str, torch.Tensor]:
        size = sum(p.numel() for p in self.params.values())
        masks = {name: torch.ones_like(p, dtype=torch.bool) for name, p in self.params.items()}
        for t in range(1, self.iterations):
            scores = force_scores(self.model, self.params, masks, self.batches, self.loss_fn)
            counts = GlobalRanking(scores).counts(round(size * math.pow(total_active / size, t / self.iterations)))
            masks = {name: topk_mask(scores[name], counts[name]) for name in scores}
        return force_scores(self.model, self.params, masks, self.batches, self.loss_fn)
