"""The iso-FLOP size solvers of table 1, against hand-computed values and identities."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparseift.transforms import dims

sparsities = st.floats(min_value=0.0, max_value=0.99, allow_nan=False)
widths = st.integers(min_value=1, max_value=4096)


def test_hand_computed_values() -> None:
    assert dims.k_sw(0.75) == pytest.approx(2.0)
    assert dims.k_sw(0.5) == pytest.approx(math.sqrt(2.0))
    assert dims.k_sp(0.9) == pytest.approx(10.0)
    # Din = 64*3*3 = 576, Dout = 64: d_sf = 576*64 / (640 * 0.5) = 115.2
    assert dims.d_sf(0.5, 576, 64) == pytest.approx(115.2)
    # d_sd = 0.75 * 576 * 64 / 640 = 43.2
    assert dims.d_sd(0.75, 576, 64) == pytest.approx(43.2)


def test_paper_gpt3_small_widths() -> None:
    """Section 8: Sparse Wide GPT-3 Small is 1092/4344 at s=0.5 and 1536/6144 at s=0.75 (12 heads)."""
    assert dims.wide_width(768, 0.5, multiple=12).value == 1092
    assert dims.wide_width(3072, 0.5, multiple=12).value == 4344
    assert dims.wide_width(768, 0.75, multiple=12).value == 1536
    assert dims.wide_width(3072, 0.75, multiple=12).value == 6144


def test_rounding_is_half_up_and_never_half_to_even() -> None:
    assert dims.round_half_up(2.5) == 3 and round(2.5) == 2
    assert dims.round_half_up(3.5) == 4
    # the paper code's round() gives 2 branches at s=0.6 (20% under-FLOP); we give 3
    size = dims.parallel_branches(0.6)
    assert size.exact == pytest.approx(2.5) and size.value == 3
    assert size.residual == pytest.approx(0.2)


def test_parallel_branches_exact_values_do_not_round_up_by_float_noise() -> None:
    # 1/(1-0.9) = 10.000000000000002 in floating point: still 10 branches
    assert dims.parallel_branches(0.9).value == 10
    assert dims.parallel_branches(0.75).value == 4
    assert dims.parallel_branches(0.0).value == 1


@given(sparsities)
def test_wide_and_parallel_are_iso_flop(s: float) -> None:
    assert dims.k_sw(s) ** 2 * (1 - s) == pytest.approx(1.0)
    assert dims.k_sp(s) * (1 - s) == pytest.approx(1.0)


@given(sparsities, widths, widths)
def test_factorized_is_iso_flop(s: float, d_in: int, d_out: int) -> None:
    d = dims.d_sf(s, d_in, d_out)
    assert (1 - s) * d * (d_in + d_out) == pytest.approx(d_in * d_out, rel=1e-9)


@given(sparsities, widths, widths)
def test_doped_is_iso_flop(s: float, d_in: int, d_out: int) -> None:
    d = dims.d_sd(s, d_in, d_out)
    assert d * (d_in + d_out) + (1 - s) * d_in * d_out == pytest.approx(d_in * d_out, rel=1e-9)


@given(sparsities, widths, st.integers(min_value=1, max_value=16))
def test_integer_sizes_are_nearest_multiples(s: float, width: int, multiple: int) -> None:
    size = dims.wide_width(width, s, multiple=multiple)
    assert size.value % multiple == 0 and size.value >= multiple
    if size.value > multiple:
        assert abs(size.value - size.exact) <= multiple / 2 + 1e-9


@given(sparsities, widths, widths)
def test_ranks_are_nearest_integers(s: float, d_in: int, d_out: int) -> None:
    f, d = dims.factorized_rank(s, d_in, d_out), dims.doped_rank(s, d_in, d_out)
    assert f.value >= 1 and (f.value == 1 or abs(f.value - f.exact) <= 0.5 + 1e-9)
    assert d.value >= 0 and abs(d.value - d.exact) <= 0.5 + 1e-9


def test_doped_rank_is_zero_at_zero_sparsity() -> None:
    assert dims.doped_rank(0.0, 100, 100).value == 0


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan")])
def test_sparsity_out_of_range_is_rejected(bad: float) -> None:
    with pytest.raises((ValueError, TypeError), match="sparsity"):
        dims.k_sw(bad)


def test_bad_widths_are_rejected() -> None:
    with pytest.raises(ValueError, match="d_in"):
        dims.d_sf(0.5, 0, 4)
    with pytest.raises(TypeError, match="d_out"):
        dims.d_sd(0.5, 4, 2.5)
