"""What a sparsifier reports: target vs actual sparsity per parameter, and FLOPs.

FLOPs are counted by the one counter, :func:`sparseift.flops.profile_flops`: effective
forward MACs from the actual masks, and training MACs per :func:`sparseift.flops.training_macs`
(``3 f_S``, or ``2 f_S + f_D`` on steps that need the dense weight gradient, RigL's grow
criterion). :class:`FlopBudget` is the Iso-FLOP target of appendix A.2.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from sparseift._model_io import ExampleInputs
from sparseift.flops import FlopProfile, profile_flops

__all__ = ["FlopBudget", "ParamSparsity", "FlopSummary", "SparsityReport"]


@dataclass(frozen=True)
class FlopBudget:
    """Iso-FLOP target: the sparse model's profile and the forward MACs to match (appendix A.2)."""

    profile: FlopProfile
    target_macs: float

    @classmethod
    def iso_flop(cls, model: nn.Module, dense_model: nn.Module, example_inputs: ExampleInputs) -> FlopBudget:
        """Match ``model``'s effective MACs to ``dense_model``'s dense MACs on ``example_inputs``."""
        return cls(profile_flops(model, example_inputs), float(profile_flops(dense_model, example_inputs).dense_macs()))


@dataclass(frozen=True)
class ParamSparsity:
    """One sparse parameter: size, active entries, target and actual sparsity."""

    name: str
    numel: int
    active: int
    target: float

    @property
    def actual(self) -> float:
        """Fraction of zeros in the mask."""
        return 1.0 - self.active / self.numel


@dataclass(frozen=True)
class FlopSummary:
    """Forward and training MACs of the masked model (a MAC = the paper's FLOP)."""

    dense_macs: float
    effective_macs: float
    training_macs_per_step: float
    training_macs_update_step: float
    average_training_macs: float


@dataclass(frozen=True)
class SparsityReport:
    """Target vs actual sparsity of every sparse parameter, and FLOPs when a profile is known."""

    params: tuple[ParamSparsity, ...]
    flops: FlopSummary | None

    @property
    def target(self) -> float:
        """Global target sparsity (total target zeros over total entries)."""
        return sum(p.target * p.numel for p in self.params) / sum(p.numel for p in self.params)

    @property
    def actual(self) -> float:
        """Global actual sparsity."""
        return 1.0 - sum(p.active for p in self.params) / sum(p.numel for p in self.params)

    def __str__(self) -> str:
        width = max(len(p.name) for p in self.params)
        lines = [f"{'parameter':<{width}}  {'numel':>10}  {'active':>10}  {'target':>7}  {'actual':>7}"]
        lines += [f"{p.name:<{width}}  {p.numel:>10}  {p.active:>10}  {p.target:>7.4f}  {p.actual:>7.4f}" for p in self.params]
        lines.append(f"{'total':<{width}}  {'':>10}  {'':>10}  {self.target:>7.4f}  {self.actual:>7.4f}")
        if self.flops is not None:
            f = self.flops
            lines += [
                f"forward MACs: dense {f.dense_macs:.6g}, effective {f.effective_macs:.6g} "
                f"({f.effective_macs / f.dense_macs:.4f})",
                f"training MACs per step: {f.training_macs_per_step:.6g} (update step {f.training_macs_update_step:.6g},"
                f" run average {f.average_training_macs:.6g})",
            ]
        return "\n".join(lines)
