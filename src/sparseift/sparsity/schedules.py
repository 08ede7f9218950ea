"""Schedules of dynamic sparse training: when masks change, by how much, and towards what.

Pure functions of the step, like learning-rate schedules. Steps count completed
``optimizer.step()`` calls (1 after the first).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sparseift._checks import check_fraction, check_positive_int

__all__ = ["UpdateSchedule", "cosine_drop_fraction", "cubic_sparsity"]


@dataclass(frozen=True)
class UpdateSchedule:
    """Mask updates every ``delta_t`` steps at ``begin < t <= end`` (Evci et al. 2020:
    ``deltaT = 100``, updates stop at 75% of training)."""

    delta_t: int
    begin: int
    end: int

    def __post_init__(self) -> None:
        check_positive_int("delta_t", self.delta_t)
        if isinstance(self.begin, bool) or not isinstance(self.begin, int) or self.begin < 0:
            raise ValueError(f"begin_step must be an int >= 0, got {self.begin!r}")
        if isinstance(self.end, bool) or not isinstance(self.end, int) or self.end <= self.begin:
            raise ValueError(f"end_step must be an int > begin_step={self.begin}, got {self.end!r}")
        if self.end - self.begin < self.delta_t:
            raise ValueError(
                f"delta_t={self.delta_t} must be <= end_step - begin_step = {self.end - self.begin}, "
                "else no mask update ever happens"
            )

    def is_update(self, step: int) -> bool:
        """Whether the masks change after step ``step``."""
        return self.begin < step <= self.end and (step - self.begin) % self.delta_t == 0

    def update_steps(self) -> range:
        """All update steps, in order."""
        return range(self.begin + self.delta_t, self.end + 1, self.delta_t)

    def progress(self, step: int) -> float:
        """Fraction of the update window elapsed at ``step``, clipped to [0, 1]."""
        return min(1.0, max(0.0, (step - self.begin) / (self.end - self.begin)))


def cosine_drop_fraction(initial: float, progress: float) -> float:
    """RigL's cosine-annealed drop fraction (Evci et al. 2020, eq. 1):
    ``alpha_t = alpha/2 * (1 + cos(pi * progress))``, ``progress = (t - begin)/(end - begin)``."""
    check_fraction(initial, "drop_fraction")
    check_fraction(progress, "progress")
    return 0.5 * initial * (1.0 + math.cos(math.pi * progress))


def cubic_sparsity(initial: float, final: float, step: int, begin: int, end: int, delta_t: int) -> float:
    """Gradual pruning schedule of Zhu & Gupta 2017 (eq. 1):
    ``s_t = s_f + (s_i - s_f) * (1 - (t - t_0) / (n deltaT))^3`` for ``t`` in
    ``{t_0, t_0 + deltaT, ..., t_0 + n deltaT}``, with ``t_0 = begin`` and ``n deltaT`` the
    last update step at or before ``end``; ``s_i`` before ``t_0``, ``s_f`` after."""
    check_fraction(initial, "initial_sparsity")
    check_fraction(final, "final_sparsity")
    span = (end - begin) // delta_t * delta_t
    if span <= 0:
        raise ValueError(f"no update step in ({begin}, {end}] with delta_t={delta_t}")
    progress = min(1.0, max(0.0, (step - begin) / span))
    return final + (initial - final) * (1.0 - progress) ** 3
