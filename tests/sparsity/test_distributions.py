import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparseift.sparsity import distribute, erk, global_sparsity, uniform

SHAPES = {"a": (10, 20), "b": (4, 2, 3, 3), "c": (100, 50)}


def test_erk_matches_hand_computed_densities() -> None:
    # raw = sum(dims)/prod(dims): a 30/200, b 12/72, c 150/5000; budget 0.1 * 5272 = 527.2
    eps = 527.2 / (30 + 12 + 150)
    expected = {"a": 1 - eps * 0.15, "b": 1 - eps / 6, "c": 1 - eps * 0.03}
    assert erk(SHAPES, 0.9) == pytest.approx(expected, abs=1e-12)


def test_erk_renormalises_layers_that_would_exceed_density_one() -> None:
    # s=0.5: b (largest raw) would get 2.29 -> dense; then a would get 2.14 -> dense;
    # c takes the rest: (2636 - 72 - 200) / 5000 = 0.4728 density
    assert erk(SHAPES, 0.5) == pytest.approx({"a": 0.0, "b": 0.0, "c": 1 - 2364 / 5000}, abs=1e-12)


@settings(max_examples=50, deadline=None)
@given(
    dims=st.lists(st.tuples(st.integers(1, 64), st.integers(1, 64), st.sampled_from([1, 3])), min_size=1, max_size=5),
    s=st.floats(0.0, 0.99),
)
def test_erk_keeps_the_global_budget(dims: list[tuple[int, int, int]], s: float) -> None:
    shapes = {f"p{i}": (o, i_, k, k) for i, (o, i_, k) in enumerate(dims)}
    out = erk(shapes, s)
    numels = {n: math.prod(shape) for n, shape in shapes.items()}
    assert all(0.0 <= v < 1.0 + 1e-12 for v in out.values())
    assert global_sparsity(out, numels) == pytest.approx(s, abs=1e-9)


def test_uniform_and_distribute() -> None:
    assert uniform(SHAPES, 0.75) == {"a": 0.75, "b": 0.75, "c": 0.75}
    assert distribute(SHAPES, 0.9, "erk") == erk(SHAPES, 0.9)
    with pytest.raises(ValueError, match="distribution"):
        distribute(SHAPES, 0.9, "lognormal")
    with pytest.raises(ValueError, match=r"sparsity must lie in \[0, 1\)"):
        erk(SHAPES, 1.0)
