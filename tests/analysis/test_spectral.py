"""The spectral gaps against known spectra and a dense eigendecomposition of the full adjacency."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparseift.analysis.spectral import (
    average_degree,
    choose_solver,
    ramanujan_gap,
    top_singular_values,
    weighted_spectral_gap,
)
from tests.analysis.conftest import random_regular_bipartite

SOLVERS = ("dense", "gram", "sparse")


def full_adjacency_top_two(b: np.ndarray) -> tuple[float, float]:
    """mu_0 and mu_hat from a dense eigendecomposition of [[0, B], [B^T, 0]] (the reference)."""
    n, m = b.shape
    full = np.zeros((n + m, n + m))
    full[:n, n:] = b
    full[n:, :n] = b.T
    eigenvalues = np.sort(np.linalg.eigvalsh(full))[::-1]
    # +-mu_0 is the trivial pair; the largest remaining eigenvalue is the next one from the top.
    return float(eigenvalues[0]), float(max(eigenvalues[1], 0.0))


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize(("n", "m"), [(1, 1), (1, 7), (5, 3), (60, 80)])
def test_complete_bipartite_spectrum(solver: str, n: int, m: int) -> None:
    b = np.ones((n, m), dtype=bool)
    top = top_singular_values(b, solver)
    assert top.first == pytest.approx(math.sqrt(n * m), rel=1e-9)
    # sigma_1 = 0 through a Gram: absolute error up to ~sqrt(k * eps) * sigma_0 (see top_singular_values)
    assert top.second == pytest.approx(0.0, abs=1e-6 * math.sqrt(n * m))
    gap = ramanujan_gap(b, solver)
    d = 2 * n * m / (n + m)
    assert gap.degree == pytest.approx(d)
    assert gap.value == pytest.approx(2 * math.sqrt(d - 1), abs=1e-6 * math.sqrt(n * m))
    assert weighted_spectral_gap(b.astype(float), solver).value == pytest.approx(math.sqrt(n * m), rel=1e-7)


@pytest.mark.parametrize("solver", SOLVERS)
def test_random_regular_bipartite_is_near_ramanujan(solver: str) -> None:
    d, n = 5, 300
    b = random_regular_bipartite(n, d, np.random.default_rng(0))
    assert (b.sum(axis=0) == d).all() and (b.sum(axis=1) == d).all()
    gap = ramanujan_gap(b, solver)
    bound = 2 * math.sqrt(d - 1)
    assert gap.degree == pytest.approx(d)
    assert gap.mu_0 == pytest.approx(d, rel=1e-9)  # regular: the trivial eigenvalue is d
    # Friedman / Marcus-Spielman-Srivastava: random regular bipartite graphs are near Ramanujan.
    assert 0.85 * bound < gap.mu_hat < bound + 0.25
    assert abs(gap.value) < 0.6


@pytest.mark.parametrize("solver", SOLVERS)
def test_disconnected_graph_has_no_weighted_gap(solver: str) -> None:
    block = np.ones((30, 40), dtype=bool)
    b = np.zeros((60, 80), dtype=bool)
    b[:30, :40] = block
    b[30:, 40:] = block
    gap = ramanujan_gap(b, solver)
    assert gap.mu_hat == pytest.approx(gap.mu_0, rel=1e-9)  # two components: sigma_0 has multiplicity 2
    assert gap.mu_0 == pytest.approx(math.sqrt(1200), rel=1e-9)
    assert weighted_spectral_gap(b.astype(float), solver).value == pytest.approx(0.0, abs=1e-6)


def test_empty_graph_is_a_clear_error() -> None:
    b = np.zeros((4, 5), dtype=bool)
    with pytest.raises(ValueError, match="no edges"):
        average_degree(b)
    with pytest.raises(ValueError, match="no edges"):
        ramanujan_gap(b)


def test_degree_one_perfect_matching_is_defined() -> None:
    b = np.eye(50, dtype=bool)
    gap = ramanujan_gap(b)
    assert gap.degree == 1.0
    assert gap.value == pytest.approx(-1.0)  # 2 sqrt(0) - mu_hat, mu_hat = 1 (50 copies of K_{1,1})
    assert not math.isnan(gap.value)


def test_isolated_nodes_do_not_change_the_degree() -> None:
    b = np.zeros((10, 10), dtype=bool)
    b[:3, :3] = True
    assert average_degree(b) == pytest.approx(3.0)
    assert ramanujan_gap(b).value == pytest.approx(ramanujan_gap(b[:3, :3]).value)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 70),
    m=st.integers(1, 70),
    density=st.floats(0.02, 1.0),
    seed=st.integers(0, 2**16),
    solver=st.sampled_from(SOLVERS),
    weighted=st.booleans(),
)
def test_singular_route_agrees_with_full_adjacency(
    n: int, m: int, density: float, seed: int, solver: str, weighted: bool
) -> None:
    rng = np.random.default_rng(seed)
    mask = rng.random((n, m)) < density
    b = mask * rng.random((n, m)) if weighted else mask
    top = top_singular_values(b, solver, tol=1e-10)
    mu_0, mu_hat = full_adjacency_top_two(b.astype(float))
    assert top.first == pytest.approx(mu_0, rel=1e-7, abs=1e-7)
    assert top.second == pytest.approx(mu_hat, rel=1e-6, abs=1e-6 * max(mu_0, 1.0))


def test_row_and_column_permutations_do_not_change_the_gaps() -> None:
    rng = np.random.default_rng(3)
    mask = rng.random((90, 70)) < 0.2
    weights = mask * rng.random((90, 70))
    rows, cols = rng.permutation(90), rng.permutation(70)
    for solver in SOLVERS:
        a, a_perm = ramanujan_gap(mask, solver), ramanujan_gap(mask[rows][:, cols], solver)
        w, w_perm = weighted_spectral_gap(weights, solver), weighted_spectral_gap(weights[rows][:, cols], solver)
        assert a_perm.value == pytest.approx(a.value, rel=1e-7)
        assert w_perm.value == pytest.approx(w.value, rel=1e-7)


def test_solver_names_what_ran() -> None:
    small = np.ones((5, 6), dtype=bool)
    assert top_singular_values(small, "gram").solver == "dense"  # Gram of size 5: LAPACK directly
    big = np.random.default_rng(0).random((200, 100)) < 0.3
    assert top_singular_values(big, "gram").solver == "gram-lanczos"
    assert top_singular_values(big, "sparse").solver == "sparse-lanczos"
    assert top_singular_values(big, "dense").solver == "dense"


def test_cost_model_prefers_sparse_only_for_very_sparse_large_layers() -> None:
    assert choose_solver((14562, 1618), int(0.1 * 14562 * 1618)) == "gram"
    assert choose_solver((36864, 4096), int(0.01 * 36864 * 4096)) == "sparse"


@pytest.mark.parametrize(("kwargs", "match"), [({"solver": "eig"}, "solver"), ({"tol": 2.0}, "tol")])
def test_bad_arguments_name_themselves(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        top_singular_values(np.ones((3, 3), dtype=bool), **kwargs)
    with pytest.raises(ValueError, match="2-D"):
        top_singular_values(np.ones(3, dtype=bool))
