import pytest
import torch
from torch import nn

import sparseift
from sparseift.flops import active_count
from sparseift.sparsity import FlopBudget, StaticSparsifier, get_masks
from tests.sparsity._helpers import assert_invariants, batch, small_cnn, train_step


def test_default_params_skip_first_and_last_and_counts_are_exact() -> None:
    model = small_cnn()
    sparsifier = StaticSparsifier(model, sparsity=0.7)
    assert set(sparsifier.targets) == {"2.weight", "5.weight", "8.weight"}
    for name, mask in get_masks(model).items():
        assert int(mask.sum()) == active_count(mask.numel(), 0.7)


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True),
        lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
    ],
    ids=["sgd_momentum_wd", "adamw"],
)
def test_masked_entries_stay_exactly_zero(make_opt) -> None:
    model = small_cnn()
    opt = make_opt(model.parameters())
    sparsifier = StaticSparsifier(model, opt, sparsity=0.8)
    before = {n: m.clone() for n, m in get_masks(model).items()}
    for step in range(4):
        train_step(model, opt, sparsifier, step)
        assert_invariants(model, opt, sparsifier)
    assert all(torch.equal(before[n], m) for n, m in get_masks(model).items())


def test_glob_patterns_and_map_and_erk() -> None:
    model = small_cnn()
    assert set(StaticSparsifier(model, params=["[25].weight"], sparsity=0.5).targets) == {"2.weight", "5.weight"}
    mapped = StaticSparsifier(small_cnn(), params={"2.weight": 0.5, "8.weight": 0.9})
    assert mapped.targets == {"2.weight": 0.5, "8.weight": 0.9}
    erk = StaticSparsifier(small_cnn(), sparsity=0.9, distribution="erk")
    assert erk.targets["5.weight"] != erk.targets["8.weight"]


def test_iso_flop_calibration_of_erk_matches_dense_budget() -> None:
    dense = small_cnn()
    x = batch(0)[0]
    result = sparseift.transform(dense, "wide", 0.75, example_inputs=x)
    budget = FlopBudget.iso_flop(result.model, dense, x)
    sparsifier = StaticSparsifier(result.model, None, result.sparse_params, distribution="erk", flop_budget=budget)
    report = sparsifier.report()
    assert report.flops.effective_macs == pytest.approx(budget.target_macs, rel=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"sparsity": 1.0}, ValueError, r"sparsity must lie in \[0, 1\).*1.0"),
        ({"sparsity": -0.1}, ValueError, r"sparsity must lie in \[0, 1\)"),
        ({"sparsity": "0.5"}, TypeError, "sparsity must be a real number"),
        ({}, TypeError, "sparsity is required"),
        ({"sparsity": 0.5, "params": ["nope*"]}, ValueError, "matches no parameter"),
        ({"params": {"2.weight": 1.5}}, ValueError, r"params\['2.weight'\] must lie in \[0, 1\)"),
        ({"sparsity": 0.5, "distribution": "er"}, ValueError, "distribution must be one of"),
        ({"sparsity": 0.5, "seed": 1.5}, TypeError, "seed must be an int"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        StaticSparsifier(small_cnn(), **kwargs)


def test_model_must_be_a_module() -> None:
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        StaticSparsifier(object(), sparsity=0.5)  # type: ignore[arg-type]
    assert isinstance(StaticSparsifier(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2)), sparsity=0.5).model, nn.Module)
