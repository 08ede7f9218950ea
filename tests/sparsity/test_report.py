import pytest
import torch
from torch import nn

import sparseift
from sparseift.flops import active_count, training_macs
from sparseift.sparsity import FlopBudget, GraNet, RigL, StaticSparsifier
from tests.sparsity._helpers import batch, small_cnn


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))


def test_report_rows_and_flops_by_hand() -> None:
    model = _mlp()
    sparsifier = StaticSparsifier(model, sparsity=0.75)
    x = torch.randn(2, 8)
    report = sparsifier.report(x)
    (row,) = report.params
    assert (row.name, row.numel, row.active, row.target, row.actual) == ("2.weight", 256, 64, 0.75, 0.75)
    dense = 2 * (8 * 16 + 16 * 16 + 16 * 4)  # B * sum(Din * Dout)
    effective = dense - 2 * 256 + 2 * 64
    assert report.flops.dense_macs == dense and report.flops.effective_macs == effective
    assert report.flops.training_macs_per_step == 3 * effective
    assert report.flops.training_macs_update_step == 3 * effective  # static: no dense gradient
    assert "2.weight" in str(report) and report.target == report.actual == 0.75
    assert StaticSparsifier(_mlp(), sparsity=0.5).report().flops is None


def test_rigl_training_macs_include_dense_gradient_steps() -> None:
    model = _mlp()
    x = torch.randn(2, 8)
    sparsifier = RigL(model, None, sparsity=0.75, total_steps=1000)
    f = sparsifier.report(x).flops
    assert f.training_macs_update_step == training_macs(f.effective_macs, f.dense_macs, dense_weight_gradient=True)
    # 7 updates (100..700) of 1000 steps pay 2 f_S + f_D instead of 3 f_S
    expected = (993 * 3 * f.effective_macs + 7 * (2 * f.effective_macs + f.dense_macs)) / 1000
    assert f.average_training_macs == pytest.approx(expected, rel=1e-12)


def test_granet_dense_to_sparse_is_calibrated_over_the_run() -> None:
    dense = small_cnn()
    x = batch(0)[0]
    result = sparseift.transform(dense, "wide", 0.5, example_inputs=x)
    budget = FlopBudget.iso_flop(result.model, dense, x)
    sparsifier = GraNet(result.model, None, result.sparse_params, total_steps=1000, flop_budget=budget)
    profile = budget.profile
    # independent average: steps 1..T use the masks of the last update before them
    per_step = []
    for t in range(1, 1001):
        last = min((t - 1) // 100 * 100, 700)
        progress = last / 700
        s = {n: final + (0 - final) * (1 - progress) ** 3 for n, final in sparsifier.targets.items()}
        per_step.append(3 * profile.effective_macs(s))
    assert sum(per_step) / 1000 == pytest.approx(3 * budget.target_macs, rel=1e-5)
    assert min(sparsifier.targets.values()) > 0.5  # sparser than uniform: dense start costs FLOPs


def test_report_counts_match_masks() -> None:
    model = small_cnn()
    sparsifier = StaticSparsifier(model, sparsity=0.9, distribution="erk")
    for row in sparsifier.report().params:
        assert row.active == active_count(row.numel, sparsifier.targets[row.name])
