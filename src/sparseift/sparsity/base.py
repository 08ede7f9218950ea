"""The sparsifier life-cycle, shared by every method (the ``torch.optim`` shape).

    sparsifier = RigL(model, optimizer, result.sparse_params, total_steps=T)
    for x, y in loader:
        optimizer.zero_grad(); loss_fn(model(x), y).backward(); optimizer.step()
        sparsifier.step()          # right after optimizer.step()

The base class resolves which parameters are sparse and their targets
(:mod:`~sparseift.sparsity.selection`, :mod:`~sparseift.sparsity.distributions`),
calibrates them to a FLOP budget (appendix A.2), registers the masks
(:mod:`~sparseift.sparsity.masks`), draws the initial masks, and after every step
re-applies the masks to weights, gradients and optimizer state. A method only says how it
scores weights: its initial masks, and for dynamic methods, how a mask update chooses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from sparseift._model_io import ExampleInputs
from sparseift.flops import FlopProfile, active_count, calibrate_iso_flop, profile_flops, training_macs
from sparseift.sparsity.distributed import broadcast_mask_
from sparseift.sparsity.distributions import Distribution
from sparseift.sparsity.masks import apply_masks, attach_masks, topk_mask, zero_entries
from sparseift.sparsity.nm import NM, check_nm_shape, parse_nm, transposable_nm_mask
from sparseift.sparsity.report import FlopBudget, FlopSummary, ParamSparsity, SparsityReport
from sparseift.sparsity.selection import ParamSpec, resolve_targets

__all__ = ["Sparsifier", "StaticSparsifier"]


def _unwrap(model: nn.Module) -> nn.Module:
    if isinstance(model, nn.parallel.DistributedDataParallel):
        return model.module
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    return model


class Sparsifier:
    """Base of every sparse-training method; used directly, it is static random sparsity.

    Args:
        model: the model (a ``DistributedDataParallel`` wrapper is unwrapped). Build the
            sparsifier before ``torch.compile``; the masks live on the model as buffers.
        optimizer: the optimizer whose per-entry state is kept at 0 on masked entries.
        params: ``sparseift.transform(...).sparse_params`` (``{name: sparsity}``), glob
            patterns over parameter names, or ``None``: every linear/conv weight except the
            first and last layer.
        sparsity: global target sparsity in [0, 1); optional with a ``{name: sparsity}`` map.
        distribution: ``"uniform"`` or ``"erk"`` (Evci et al. 2020).
        structure: transposable N:M (``"2:8-T"`` or :class:`~sparseift.sparsity.nm.NM`);
            fixes every target at ``1 - N/M``.
        flop_budget: calibrate the targets so the run's FLOPs equal the budget (appendix A.2).
        seed: seed of the sparsifier's own generator (random masks, SET's regrowth); the
            same on every rank, so all ranks draw the same masks.
        example_inputs: to find the first/last layer by execution order (default set only).
    """

    uses_dense_gradient: bool = False
    """Whether an update step needs the dense weight gradient (counted in training FLOPs)."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        params: ParamSpec = None,
        *,
        sparsity: float | None = None,
        distribution: Distribution = "uniform",
        structure: NM | str | None = None,
        flop_budget: FlopBudget | None = None,
        seed: int = 0,
        example_inputs: ExampleInputs | None = None,
    ) -> None:
        self.model = _unwrap(model)
        self.optimizer = optimizer
        self.structure = None if structure is None else parse_nm(structure)
        if self.structure is not None:
            if sparsity is not None and abs(sparsity - self.structure.sparsity) > 1e-12:
                raise ValueError(
                    f"sparsity={sparsity!r} conflicts with structure {self.structure} (sparsity "
                    f"{self.structure.sparsity}); leave sparsity=None"
                )
            sparsity = self.structure.sparsity
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {seed!r}")
        targets = resolve_targets(self.model, params, sparsity, distribution, example_inputs)
        if self.structure is not None:
            targets = {name: self.structure.sparsity for name in targets}
        self.params = {name: self.model.get_parameter(name) for name in targets}
        if self.structure is not None:
            for name, param in self.params.items():
                check_nm_shape(name, tuple(param.shape), self.structure)
        self.generator = torch.Generator().manual_seed(seed)
        self.flop_budget = flop_budget
        self.step_count = 0
        self.skipped_updates = 0
        self.targets = targets if flop_budget is None else self._calibrate(targets, flop_budget)
        self.masks = attach_masks(self.model, targets)
        with torch.no_grad():
            self._initialize()
        self._masks_changed()

    # ----- what a method says -------------------------------------------------------------
    def planned_sparsities(self, step: int, targets: Mapping[str, float] | None = None) -> dict[str, float]:
        """Sparsity of every parameter after the update at ``step`` (0 = initial masks), for
        final ``targets`` (default: this sparsifier's)."""
        return dict(self.targets if targets is None else targets)

    def _calibrate(self, targets: dict[str, float], budget: FlopBudget) -> dict[str, float]:
        """Targets whose effective forward MACs equal the budget (appendix A.2)."""
        return calibrate_iso_flop(budget.profile, targets, budget.target_macs).sparse_params

    def _initialize(self) -> None:
        """Initial masks: random, with exactly the planned count (or N:M) per parameter."""
        planned = self.planned_sparsities(0)
        for name, mask in self.masks.items():
            scores = torch.rand(mask.shape, generator=self.generator).to(mask.device)
            mask.copy_(self._select(name, scores, planned[name]))

    def _select(self, name: str, scores: torch.Tensor, sparsity: float) -> torch.Tensor:
        """The mask keeping the highest ``scores`` at ``sparsity``, or the N:M pattern."""
        if self.structure is not None:
            return transposable_nm_mask(scores, self.structure)
        return topk_mask(scores, active_count(scores.numel(), sparsity))

    def is_update_step(self, step: int) -> bool:
        """Whether ``step()`` number ``step`` (1-based) updates the masks, e.g. to know that its
        backward pass needs the dense gradient (training FLOPs)."""
        return self._is_update_step(step)

    def _is_update_step(self, step: int) -> bool:
        return False

    def _update(self, step: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError(f"{type(self).__name__} has no mask updates")

    def _update_steps(self) -> list[int]:
        return []

    def _total_steps(self) -> int:
        return 1

    # ----- the life-cycle -----------------------------------------------------------------
    @torch.no_grad()
    def step(self) -> None:
        """Call right after ``optimizer.step()`` (or ``scaler.step(optimizer)``).

        On an update step with finite gradients the masks change (an update whose gradients
        are not finite, as a GradScaler step it skipped, is skipped too); then every masked
        entry of weights, gradients and optimizer state is set to 0.
        """
        self.step_count += 1
        if self._is_update_step(self.step_count):
            if self._gradients_finite():
                self._apply_update(self._update(self.step_count))
            else:
                self.skipped_updates += 1
        if any(mask._version != self._mask_versions[name] for name, mask in self.masks.items()):
            self._masks_changed()  # mask buffers written from outside, e.g. model.load_state_dict
        for name, param in self.params.items():
            zero_entries(param, self._inactive[name], self.optimizer)

    def _masks_changed(self) -> None:
        """Cache the inactive sets (``~mask``, reused every step) and zero them everywhere."""
        self._inactive = {name: ~mask for name, mask in self.masks.items()}
        self._mask_versions = {name: mask._version for name, mask in self.masks.items()}
        apply_masks(self.model, self.optimizer)

    def _gradients_finite(self) -> bool:
        checks = [torch.isfinite(p.grad).all() for p in self.params.values() if p.grad is not None]
        return bool(torch.stack(checks).all()) if checks else True

    def _apply_update(self, new_masks: Mapping[str, torch.Tensor]) -> None:
        """Install new masks, identical on every rank; grown entries start at 0 with zero
        optimizer state (Evci et al. 2020)."""
        for name, new in new_masks.items():
            broadcast_mask_(new)
            mask = self.masks[name]
            zero_entries(self.params[name], new & ~mask, self.optimizer)
            mask.copy_(new)
        self._masks_changed()

    # ----- checkpoints --------------------------------------------------------------------
    def hyperparameters(self) -> dict[str, Any]:
        """The method's hyperparameters, as primitives."""
        return {"method": type(self).__name__, "structure": None if self.structure is None else str(self.structure)}

    def state_dict(self) -> dict[str, Any]:
        """Masks, step, RNG state, targets and schedule; only tensors and primitives, so
        ``torch.load(..., weights_only=True)`` reads it."""
        return {
            "step": self.step_count,
            "skipped_updates": self.skipped_updates,
            "targets": dict(self.targets),
            "masks": {name: mask.detach().clone() for name, mask in self.masks.items()},
            "rng_state": self.generator.get_state(),
            "hyperparameters": self.hyperparameters(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; the checkpoint's masks overwrite the model's mask buffers."""
        if set(state["masks"]) != set(self.masks):
            raise ValueError(
                "checkpoint masks name other parameters than this sparsifier: "
                f"{sorted(set(state['masks']) ^ set(self.masks))[:5]}"
            )
        self._load_hyperparameters(state["hyperparameters"])
        self.step_count = int(state["step"])
        self.skipped_updates = int(state["skipped_updates"])
        self.targets = dict(state["targets"])
        self.generator.set_state(state["rng_state"])
        for name, mask in self.masks.items():
            mask.copy_(state["masks"][name])
        self._masks_changed()

    def _load_hyperparameters(self, saved: Mapping[str, Any]) -> None:
        if dict(saved) != self.hyperparameters():
            raise ValueError(f"checkpoint hyperparameters {dict(saved)} differ from this sparsifier's {self.hyperparameters()}")

    # ----- reporting ----------------------------------------------------------------------
    def report(self, example_inputs: ExampleInputs | None = None) -> SparsityReport:
        """Target vs actual sparsity per parameter; FLOPs from the budget's profile, or from
        ``example_inputs`` (:func:`sparseift.flops.profile_flops`)."""
        rows = tuple(
            ParamSparsity(name, mask.numel(), int(mask.sum()), self.targets[name]) for name, mask in self.masks.items()
        )
        profile = self.flop_budget.profile if self.flop_budget is not None else None
        if profile is None and example_inputs is not None:
            profile = profile_flops(self.model, example_inputs)
        if profile is None:
            return SparsityReport(rows, None)
        forward_dense = float(profile.dense_macs())
        forward = profile.effective_macs({row.name: row.actual for row in rows})
        summary = FlopSummary(
            forward_dense,
            forward,
            training_macs(forward, forward_dense),
            training_macs(forward, forward_dense, dense_weight_gradient=self.uses_dense_gradient),
            self.average_training_macs(profile),
        )
        return SparsityReport(rows, summary)

    def average_training_macs(
        self, profile: FlopProfile, targets: Mapping[str, float] | None = None, *, count_dense_gradient: bool = True
    ) -> float:
        """Training MACs per step averaged over the run, following the planned sparsities
        between mask updates (:func:`sparseift.flops.training_macs`; RigL's dense-gradient
        steps included when ``count_dense_gradient``)."""
        forward_dense = float(profile.dense_macs())
        updates = set(self._update_steps())
        bounds = sorted({0, self._total_steps(), *updates})
        total = 0.0
        for start, stop in zip(bounds, bounds[1:]):
            forward = profile.effective_macs(self.planned_sparsities(start, targets))
            dense_steps = int(stop in updates and self.uses_dense_gradient and count_dense_gradient)
            total += (stop - start - dense_steps) * training_macs(forward, forward_dense)
            total += dense_steps * training_macs(forward, forward_dense, dense_weight_gradient=True)
        return total / self._total_steps()


class StaticSparsifier(Sparsifier):
    """Static random sparsity: masks drawn once at init with exact counts, never changed
    (paper section 3.1, table 2 "static"); or a static transposable N:M mask."""

