"""Argument checks shared by the package: each error names the argument, the value and
what is allowed."""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "check_sparsity",
    "check_density",
    "check_positive_int",
    "check_positive_real",
    "check_choice",
    "check_fraction",
    "check_globs",
    "round_half_up",
]


def round_half_up(x: float) -> int:
    """Round to the nearest integer, ties up (``floor(x + 0.5)``), never Python's half-to-even
    ``round()``, which silently drops capacity at ties (2.5 -> 2)."""
    return math.floor(x + 0.5)


def check_sparsity(value: Any, name: str = "sparsity") -> float:
    """Check that a sparsity (fraction of zeros) lies in [0, 1) and return it as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{name} must be a real number in [0, 1), got {value!r}")
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must lie in [0, 1) (fraction of zero weights), got {value!r}")
    return float(value)


def check_density(value: Any, name: str = "density") -> float:
    """Check that a density (fraction of non-zeros) lies in (0, 1] and return it as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{name} must be a real number in (0, 1], got {value!r}")
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must lie in (0, 1] (fraction of non-zero weights), got {value!r}")
    return float(value)


def check_fraction(value: Any, name: str, *, low_open: bool = False, high_open: bool = False) -> float:
    """Check that ``value`` lies in the interval [0, 1] (ends optionally open)."""
    lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
    allowed = f"{lo}0, 1{hi}"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{name} must be a real number in {allowed}, got {value!r}")
    if value < 0 or value > 1 or (low_open and value == 0) or (high_open and value == 1):
        raise ValueError(f"{name} must lie in {allowed}, got {value!r}")
    return float(value)


def check_positive_int(name: str, value: Any) -> int:
    """Check that ``value`` is an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return value


def check_positive_real(name: str, value: Any) -> float:
    """Check that ``value`` is a finite real number > 0 and return it as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{name} must be a positive real number, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return float(value)


def check_globs(name: str, patterns: Iterable[Any], candidates: Sequence[str], what: str) -> tuple[str, ...]:
    """Check that every glob pattern is a str matching at least one of ``candidates`` (``what``
    names them in the error, e.g. "module")."""
    checked = tuple(patterns)
    for pattern in checked:
        if not isinstance(pattern, str):
            raise TypeError(f"{name} must hold glob patterns (str), got {pattern!r}")
        if not any(fnmatch.fnmatchcase(c, pattern) for c in candidates):
            raise ValueError(
                f"{name} pattern {pattern!r} matches no {what} of the model; {what} names look like "
                f"{', '.join(repr(c) for c in candidates[:5])}"
            )
    return checked


def check_choice(name: str, value: Any, allowed: Iterable[str]) -> str:
    """Check that ``value`` is one of ``allowed``."""
    options = tuple(allowed)
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}")
    return value
