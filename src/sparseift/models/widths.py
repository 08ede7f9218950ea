"""The width rounding of the zoo's own models, the same rule as the Sparse Wide engine.

A width ``D`` scaled by a multiplier ``k`` becomes ``q * round_half_up(k * D / q)`` (at
least ``q``), where ``q`` is the multiple the layer needs (the head count for attention).
This is the rounding of :mod:`sparseift.transforms.wide`, so building one of our models
with ``width_multiplier=k_sw(s)`` gives exactly the widths of ``transform(model, "wide", s)``
(tested in ``tests/models``). Halves round up, never to even (STYLE.md).
"""

from __future__ import annotations

from sparseift._checks import check_positive_int, check_positive_real, round_half_up

__all__ = ["check_width_multiplier", "scaled_width"]


def check_width_multiplier(value: object) -> float:
    """Check that a width multiplier is a positive finite real number and return it as float."""
    return check_positive_real("width_multiplier", value)


def scaled_width(width: int, multiplier: float, multiple: int = 1) -> int:
    """``multiple * round_half_up(multiplier * width / multiple)``, at least ``multiple``."""
    check_positive_int("width", width)
    check_positive_int("multiple", multiple)
    return multiple * max(1, round_half_up(multiplier * width / multiple))
