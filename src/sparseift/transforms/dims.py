"""Iso-FLOP size parameters of the Sparse-IFT family (section 2.2, table 1).

Pure functions: each returns the paper's real-valued size parameter and, separately,
the integer that a module can actually have. Rounding is explicit and never silent:
:func:`integer_size` records the value it rounded from, so the FLOP residual can be
reported and compensated by the Iso-FLOP calibration of appendix A.2
(:func:`sparseift.flops.calibrate_iso_flop`).

Rounding conventions (the paper does not fix them):

* widths and ranks round half **up** (``floor(x + 0.5)``), never Python's half-to-even
  ``round()``, which silently drops FLOPs at ties;
* the number of parallel branches ``k_sp`` rounds **up** (``ceil``): a layer never
  gets less capacity than the formula asks for, and calibration raises its sparsity
  to pay for the extra branch (at s = 0.6, ``k_sp = 2.5`` gives 3 branches at
  calibrated sparsity 2/3 instead of the paper code's 2 branches at 20% fewer FLOPs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sparseift._checks import check_positive_int, check_sparsity, round_half_up

__all__ = [
    "IntegerSize",
    "k_sw",
    "k_sp",
    "d_sf",
    "d_sd",
    "round_half_up",
    "integer_size",
    "wide_width",
    "parallel_branches",
    "factorized_rank",
    "doped_rank",
]

_EPS = 1e-9


@dataclass(frozen=True)
class IntegerSize:
    """An integer size chosen for a real-valued iso-FLOP size parameter."""

    exact: float
    value: int

    @property
    def residual(self) -> float:
        """Relative capacity change of the rounding, ``value / exact - 1`` (0 when exact = 0)."""
        return self.value / self.exact - 1.0 if self.exact else 0.0


def k_sw(sparsity: float) -> float:
    """Sparse Wide width factor ``k_sw = sqrt(1 / (1 - s))`` (table 1).

    Both in and out widths grow by ``k_sw``, so dense FLOPs grow by ``k_sw^2`` and
    density ``1 - s`` brings them back to the dense layer's.
    """
    check_sparsity(sparsity)
    return math.sqrt(1.0 / (1.0 - sparsity))


def k_sp(sparsity: float) -> float:
    """Sparse Parallel branch count ``k_sp = 1 / (1 - s)`` (table 1), real-valued."""
    check_sparsity(sparsity)
    return 1.0 / (1.0 - sparsity)


def d_sf(sparsity: float, d_in: int, d_out: int) -> float:
    """Sparse Factorized inner width ``d_sf = Din*Dout / ((Din + Dout)(1 - s))`` (table 1).

    ``V^T sigma(U^T z)`` with ``U`` in R^{Din x d_sf} and ``V`` in R^{d_sf x Dout}, both at
    sparsity ``s``: ``(1 - s) d_sf (Din + Dout) = Din Dout``. For a conv, ``Din = cin*kh*kw``
    (per group) as in appendix A.1.
    """
    check_sparsity(sparsity)
    check_positive_int("d_in", d_in)
    check_positive_int("d_out", d_out)
    return d_in * d_out / ((d_in + d_out) * (1.0 - sparsity))


def d_sd(sparsity: float, d_in: int, d_out: int) -> float:
    """Sparse Doped low-rank width ``d_sd = s*Din*Dout / (Din + Dout)`` (table 1).

    The dense ``U, V`` cost ``d_sd (Din + Dout) = s Din Dout``, the sparse full matrix
    ``(1 - s) Din Dout``: together exactly the dense layer's ``Din Dout``.
    """
    check_sparsity(sparsity)
    check_positive_int("d_in", d_in)
    check_positive_int("d_out", d_out)
    return sparsity * d_in * d_out / (d_in + d_out)


def integer_size(exact: float, *, minimum: int = 1, multiple: int = 1, mode: str = "nearest") -> IntegerSize:
    """Turn a real size into an integer: a multiple of ``multiple``, at least ``minimum``.

    ``mode`` is ``"nearest"`` (half up, in units of ``multiple``) or ``"ceil"``.
    """
    check_positive_int("multiple", multiple)
    units = exact / multiple
    if mode == "nearest":
        n = round_half_up(units)
    elif mode == "ceil":
        n = math.ceil(units - _EPS)
    else:
        raise ValueError(f"mode must be 'nearest' or 'ceil', got {mode!r}")
    return IntegerSize(exact=exact, value=max(minimum, n * multiple))


def wide_width(width: int, sparsity: float, multiple: int = 1) -> IntegerSize:
    """Width of a Sparse Wide layer: ``k_sw * width``, nearest multiple of ``multiple``."""
    check_positive_int("width", width)
    return integer_size(k_sw(sparsity) * width, minimum=multiple, multiple=multiple)


def parallel_branches(sparsity: float) -> IntegerSize:
    """Number of Sparse Parallel branches: ``ceil(k_sp)`` (see the module docstring)."""
    return integer_size(k_sp(sparsity), mode="ceil")


def factorized_rank(sparsity: float, d_in: int, d_out: int, multiple: int = 1) -> IntegerSize:
    """Inner width of Sparse Factorized: ``d_sf`` to the nearest multiple, at least one."""
    return integer_size(d_sf(sparsity, d_in, d_out) * multiple, minimum=multiple, multiple=multiple)


def doped_rank(sparsity: float, d_in: int, d_out: int, multiple: int = 1) -> IntegerSize:
    """Rank of Sparse Doped's dense low-rank part: ``d_sd`` to the nearest multiple (0 at s = 0)."""
    return integer_size(d_sd(sparsity, d_in, d_out) * multiple, minimum=0, multiple=multiple)
