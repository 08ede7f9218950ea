"""Dynamic sparse training: SET, RigL, gradual magnitude pruning, GraNet (paper section 3.1).

Every method shares one update (:meth:`DynamicSparsifier._update`), run every ``deltaT``
steps until ``end_step`` (default 75% of training):

1. target count ``n = active_count(numel, s_t)`` (``s_t`` constant, or Zhu & Gupta's cubic
   schedule for the gradual methods);
2. drop: keep the ``active_count(n, alpha_t)`` largest ``|w|`` among active weights, with
   ``alpha_t`` the cosine-annealed drop fraction (Evci et al. 2020, eq. 1);
3. grow: the ``n - kept`` highest grow scores among positions inactive after the drop
   (random for SET, ``|dense gradient|`` for RigL and GraNet), so every layer ends with
   exactly ``n`` active weights. Grown weights start at 0 with zero optimizer state.

Under transposable N:M the drop keeps the same weights first, then each block re-selects
its pattern with kept weights ranked above every grow candidate (counts are fixed by N:M).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from sparseift._checks import check_fraction, check_positive_int, check_sparsity
from sparseift._model_io import ExampleInputs
from sparseift.flops import active_count, scale_sparsities, training_macs
from sparseift.flops.calibrate import bisect_increasing
from sparseift.sparsity.base import Sparsifier
from sparseift.sparsity.distributed import all_reduce_mean_
from sparseift.sparsity.distributions import Distribution
from sparseift.sparsity.masks import topk_mask
from sparseift.sparsity.nm import NM, transposable_nm_mask
from sparseift.sparsity.report import FlopBudget
from sparseift.sparsity.schedules import UpdateSchedule, cosine_drop_fraction, cubic_sparsity
from sparseift.sparsity.selection import ParamSpec

__all__ = ["DynamicSparsifier", "SET", "RigL", "GradualMagnitudePruning", "GraNet"]


class DynamicSparsifier(Sparsifier):
    """Drop-and-grow mask updates on a schedule; subclasses give the grow score.

    Args (beyond :class:`~sparseift.sparsity.base.Sparsifier`'s):
        total_steps: optimizer steps of the whole run.
        delta_t: steps between mask updates (paper: 100).
        begin_step, end_step: updates at ``begin < t <= end``, every ``delta_t`` steps;
            ``end_step`` defaults to 75% of ``total_steps`` (paper).
        drop_fraction: initial ``alpha`` of the cosine schedule (paper: 0.3).
        initial_sparsity: ``None`` for constant targets, or ``s_i`` of the gradual (cubic,
            Zhu & Gupta 2017) schedule from ``s_i`` to the targets (dense-to-sparse at 0).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        params: ParamSpec = None,
        *,
        total_steps: int,
        sparsity: float | None = None,
        distribution: Distribution = "uniform",
        delta_t: int = 100,
        begin_step: int = 0,
        end_step: int | None = None,
        drop_fraction: float = 0.3,
        initial_sparsity: float | None = None,
        structure: NM | str | None = None,
        flop_budget: FlopBudget | None = None,
        seed: int = 0,
        example_inputs: ExampleInputs | None = None,
    ) -> None:
        check_positive_int("total_steps", total_steps)
        end_step = int(0.75 * total_steps) if end_step is None else end_step
        if isinstance(end_step, int) and end_step > total_steps:
            raise ValueError(f"end_step must be <= total_steps={total_steps}, got {end_step}")
        self.schedule = UpdateSchedule(delta_t, begin_step, end_step)
        self.total_steps = total_steps
        self.drop_fraction = check_fraction(drop_fraction, "drop_fraction")
        self.initial_sparsity = None if initial_sparsity is None else check_sparsity(initial_sparsity, "initial_sparsity")
        if self.initial_sparsity is not None and structure is not None:
            raise ValueError("initial_sparsity (gradual pruning) cannot be combined with an N:M structure")
        super().__init__(
            model,
            optimizer,
            params,
            sparsity=sparsity,
            distribution=distribution,
            structure=structure,
            flop_budget=flop_budget,
            seed=seed,
            example_inputs=example_inputs,
        )
        if self.initial_sparsity is not None:
            denser = {name: s for name, s in self.targets.items() if s < self.initial_sparsity}
            if denser:
                raise ValueError(
                    f"initial_sparsity={self.initial_sparsity} must be <= every target sparsity; "
                    f"these are denser: {dict(list(denser.items())[:3])}"
                )

    # ----- schedule -----------------------------------------------------------------------
    def _is_update_step(self, step: int) -> bool:
        return self.schedule.is_update(step)

    def _update_steps(self) -> list[int]:
        return list(self.schedule.update_steps())

    def _total_steps(self) -> int:
        return self.total_steps

    def drop_fraction_at(self, step: int) -> float:
        """``alpha_t`` of the cosine schedule (Evci et al. 2020, eq. 1)."""
        return cosine_drop_fraction(self.drop_fraction, self.schedule.progress(step))

    def planned_sparsities(self, step: int, targets: Mapping[str, float] | None = None) -> dict[str, float]:
        """Constant targets, or Zhu & Gupta's cubic schedule from ``initial_sparsity`` (eq. 1)."""
        targets = self.targets if targets is None else targets
        if self.initial_sparsity is None:
            return dict(targets)
        s = self.schedule
        return {
            name: cubic_sparsity(self.initial_sparsity, final, step, s.begin, s.end, s.delta_t)
            for name, final in targets.items()
        }

    def _calibrate(self, targets: dict[str, float], budget: FlopBudget) -> dict[str, float]:
        """Appendix A.2 for dense-to-sparse: the final targets whose training MACs averaged
        over the run equal the dense model's (``3 x`` the budget's forward MACs)."""
        if self.initial_sparsity is None:
            return super()._calibrate(targets, budget)
        goal = training_macs(budget.target_macs, budget.target_macs)

        def run_macs(scale: float) -> float:
            scaled = scale_sparsities(targets, scale)
            return self.average_training_macs(budget.profile, scaled, count_dense_gradient=False)

        high = max(1.0 / (1.0 - s) for s in targets.values())
        if run_macs(0.0) > goal:
            raise ValueError(
                f"cannot reach the FLOP budget: starting at initial_sparsity={self.initial_sparsity} costs more "
                "than the budget even if the final masks keep one weight; raise initial_sparsity"
            )
        scale, _ = bisect_increasing(run_macs, goal, 0.0, high, rtol=1e-6)
        return scale_sparsities(targets, scale)

    # ----- the update ---------------------------------------------------------------------
    def _grow_scores(self, name: str) -> torch.Tensor:
        """Higher = grown first, for the entries of parameter ``name``."""
        raise NotImplementedError(f"{type(self).__name__} does not grow weights")

    def _update(self, step: int) -> dict[str, torch.Tensor]:
        alpha = self.drop_fraction_at(step)
        planned = self.planned_sparsities(step)
        return {name: self._drop_and_grow(name, mask, planned[name], alpha) for name, mask in self.masks.items()}

    def _drop_and_grow(self, name: str, mask: torch.Tensor, sparsity: float, alpha: float) -> torch.Tensor:
        magnitude = self.params[name].detach().abs()
        target = active_count(mask.numel(), sparsity)
        keep = min(active_count(target, alpha), int(mask.sum()))
        kept = topk_mask(magnitude.masked_fill(~mask, float("-inf")), keep)
        if self.structure is not None:
            grow = self._grow_scores(name)
            priority = torch.where(kept, 2.0 + magnitude / (magnitude.max() + 1e-30), grow / (grow.max() + 1e-30))
            return transposable_nm_mask(priority, self.structure)
        if target == keep:
            return kept
        return kept | topk_mask(self._grow_scores(name).masked_fill(kept, float("-inf")), target - keep)

    # ----- checkpoints --------------------------------------------------------------------
    def hyperparameters(self) -> dict[str, Any]:
        """Base hyperparameters plus the schedule."""
        return {
            **super().hyperparameters(),
            "total_steps": self.total_steps,
            "delta_t": self.schedule.delta_t,
            "begin_step": self.schedule.begin,
            "end_step": self.schedule.end,
            "drop_fraction": self.drop_fraction,
            "initial_sparsity": self.initial_sparsity,
        }

    def _load_hyperparameters(self, saved: Mapping[str, Any]) -> None:
        """Restore the checkpoint's schedule (the method and structure must match)."""
        for key in ("method", "structure"):
            if saved[key] != self.hyperparameters()[key]:
                raise ValueError(f"checkpoint {key}={saved[key]!r} differs from this sparsifier's")
        self.total_steps = saved["total_steps"]
        self.schedule = UpdateSchedule(saved["delta_t"], saved["begin_step"], saved["end_step"])
        self.drop_fraction = saved["drop_fraction"]
        self.initial_sparsity = saved["initial_sparsity"]


class SET(DynamicSparsifier):
    """Sparse Evolutionary Training (Mocanu et al. 2018): drop by ``|w|``, regrow at random.

    The random scores come from the sparsifier's generator, seeded identically on every
    rank, so all ranks regrow the same positions."""

    def _grow_scores(self, name: str) -> torch.Tensor:
        mask = self.masks[name]
        return torch.rand(mask.shape, generator=self.generator).to(mask.device)


class RigL(DynamicSparsifier):
    """Rigged Lottery (Evci et al. 2020): drop by ``|w|``, regrow by ``|dense gradient|``.

    The gradient is averaged over ranks first, so under DDP every rank grows by the
    global gradient. Masked weights are stored as zeros, so the gradient that autograd
    leaves in ``param.grad`` is already the dense one."""

    uses_dense_gradient = True

    def _grow_scores(self, name: str) -> torch.Tensor:
        grad = self.params[name].grad
        if grad is None:
            raise RuntimeError(
                f"{type(self).__name__} needs the gradient of {name!r} at a mask update: call step() after "
                "backward() and optimizer.step(), before zeroing the gradients"
            )
        return all_reduce_mean_(grad.detach().clone()).abs()


class GradualMagnitudePruning(DynamicSparsifier):
    """Gradual magnitude pruning (Zhu & Gupta 2017): every update prunes the smallest
    ``|w|`` down to the cubic schedule's count; nothing regrows. Dense-to-sparse by default."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None, params: ParamSpec = None, *,
                 initial_sparsity: float = 0.0, **kwargs: Any) -> None:
        if "drop_fraction" in kwargs:
            raise TypeError("GradualMagnitudePruning takes no drop_fraction: it never regrows")
        super().__init__(model, optimizer, params, initial_sparsity=initial_sparsity, drop_fraction=0.0, **kwargs)


class GraNet(RigL):
    """GraNet (Liu et al. 2021): Zhu & Gupta's gradual magnitude pruning from
    ``initial_sparsity`` (dense-to-sparse at 0) combined with RigL's drop-and-grow."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None, params: ParamSpec = None, *,
                 initial_sparsity: float = 0.0, **kwargs: Any) -> None:
        super().__init__(model, optimizer, params, initial_sparsity=initial_sparsity, **kwargs)
