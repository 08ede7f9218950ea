"""Degree sub-graphs (Hoang et al. 2023b) and the imdb / imsg means."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sparseift.analysis.spectral import ramanujan_gap, weighted_spectral_gap
from sparseift.analysis.subgraphs import degree_subgraphs, subgraph_means


def test_inputs_are_grouped_by_degree_with_the_2023b_thresholds() -> None:
    b = np.zeros((7, 6), dtype=bool)
    b[0, :3] = b[1, 1:4] = True  # degree 3, two inputs, overlapping: kept
    b[2, :4] = b[3, 2:6] = True  # degree 4, two inputs: kept
    b[4, :5] = True  # degree 5, a single input: too few inputs
    b[5, :2] = b[6, 1:3] = True  # degree 2: below min_degree
    groups = degree_subgraphs(b)
    assert [g.tolist() for g in groups] == [[0, 1], [2, 3]]
    assert [g.tolist() for g in degree_subgraphs(b, min_inputs=1, min_degree=2)] == [[5, 6], [0, 1], [2, 3]]  # [4] is a star


def test_disjoint_stars_are_not_a_subgraph() -> None:
    b = np.zeros((2, 6), dtype=bool)
    b[0, :3] = b[1, 3:] = True  # every output has degree 1
    assert degree_subgraphs(b) == []


def test_means_are_the_paper_formulas() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((120, 50)) < 0.15
    weights = mask * rng.random((120, 50))
    groups = degree_subgraphs(mask)
    means = subgraph_means(mask, weights, groups)
    expected_imdb = np.mean([2 * math.sqrt(ramanujan_gap(mask[g]).degree - 1) - ramanujan_gap(mask[g]).mu_hat for g in groups])
    expected_imsg = np.mean([weighted_spectral_gap(weights[g]).value for g in groups])
    assert means.count == len(groups) > 3
    assert means.delta_r_imdb == pytest.approx(expected_imdb)
    assert means.lambda_imsg == pytest.approx(expected_imsg)


def test_no_subgraph_gives_none_not_nan() -> None:
    mask = np.eye(10, dtype=bool)  # every degree is 1
    means = subgraph_means(mask, mask.astype(float), degree_subgraphs(mask))
    assert means.count == 0 and means.delta_r_imdb is None and means.lambda_imsg is None


def test_subgraphs_are_permutation_invariant() -> None:
    rng = np.random.default_rng(1)
    mask = rng.random((80, 60)) < 0.1
    weights = mask * rng.random((80, 60))
    rows, cols = rng.permutation(80), rng.permutation(60)
    a = subgraph_means(mask, weights, degree_subgraphs(mask))
    pm, pw = mask[rows][:, cols], weights[rows][:, cols]
    b = subgraph_means(pm, pw, degree_subgraphs(pm))
    assert (a.count, a.delta_r_imdb, a.lambda_imsg) == pytest.approx((b.count, b.delta_r_imdb, b.lambda_imsg))


@pytest.mark.parametrize(("name", "value"), [("min_inputs", 0), ("min_degree", -1)])
def test_bad_thresholds_name_themselves(name: str, value: int) -> None:
    with pytest.raises(ValueError, match=name):
        degree_subgraphs(np.ones((3, 3), dtype=bool), **{name: value})
