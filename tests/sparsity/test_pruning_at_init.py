"""SNIP, GraSP and FORCE scores against independent formulas on a tiny linear net.

Net: ``f(x) = W2 W1 x`` (no bias), loss ``L = 0.5/B * ||f(X) - Y||^2``, so with
``R = (f(X) - Y)/B``: ``dL/dW2 = R^T (X W1^T)`` and ``dL/dW1 = (R W2)^T X``.
"""

import pytest
import torch
from torch import nn

import sparseift
from sparseift.sparsity import FORCE, SNIP, FlopBudget, GraSP, force_scores, get_masks, grasp_scores, snip_scores
from tests.sparsity._helpers import batch, small_cnn


def _loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 0.5 * (out - y).pow(2).sum() / out.shape[0]


def _setup() -> tuple[nn.Module, dict, list]:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(5, 4, bias=False), nn.Linear(4, 3, bias=False)).double()
    x, y = torch.randn(6, 5, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
    params = {"0.weight": model[0].weight, "1.weight": model[1].weight}
    return model, params, [(x, y)]


def _grads(w1: torch.Tensor, w2: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r = (x @ w1.T @ w2.T - y) / x.shape[0]
    return (r @ w2).T @ x, r.T @ (x @ w1.T)


def test_snip_scores_equal_closed_form() -> None:
    model, params, batches = _setup()
    w1, w2 = model[0].weight.detach(), model[1].weight.detach()
    g1, g2 = _grads(w1, w2, *batches[0])
    scores = snip_scores(model, params, batches, _loss)
    torch.testing.assert_close(scores["0.weight"], (w1 * g1).abs())
    torch.testing.assert_close(scores["1.weight"], (w2 * g2).abs())


def test_grasp_scores_equal_hessian_gradient_product() -> None:
    model, params, batches = _setup()
    x, y = batches[0]
    w1, w2 = model[0].weight.detach(), model[1].weight.detach()
    theta = torch.cat([w1.flatten(), w2.flatten()])

    def loss(t: torch.Tensor) -> torch.Tensor:
        a, b = t[:20].view(4, 5), t[20:].view(3, 4)
        return _loss(x @ a.T @ b.T, y)

    g = torch.autograd.functional.jacobian(loss, theta)
    hg = torch.autograd.functional.hessian(loss, theta) @ g
    expected = theta * hg  # keep score = -S(-theta), S = -theta . Hg (Wang et al. 2020, eq. 8)
    scores = grasp_scores(model, params, batches, _loss)
    torch.testing.assert_close(torch.cat([scores["0.weight"].flatten(), scores["1.weight"].flatten()]), expected)


def test_force_scores_use_the_gradient_at_the_masked_weights() -> None:
    model, params, batches = _setup()
    w1, w2 = model[0].weight.detach(), model[1].weight.detach()
    m1, m2 = torch.rand(4, 5) > 0.5, torch.rand(3, 4) > 0.3
    g1, g2 = _grads(w1 * m1, w2 * m2, *batches[0])
    scores = force_scores(model, params, {"0.weight": m1, "1.weight": m2}, batches, _loss)
    torch.testing.assert_close(scores["0.weight"], (w1 * g1).abs())
    torch.testing.assert_close(scores["1.weight"], (w2 * g2).abs())


def test_snip_keeps_the_global_top_scores_and_force_with_one_iteration_is_snip() -> None:
    model, params, batches = _setup()
    scores = snip_scores(model, params, batches, _loss)
    flat = torch.cat([s.flatten() for s in scores.values()])
    threshold = flat.sort(descending=True).values[15]  # 32 weights at 50% -> keep 16
    snip = SNIP(model, None, ["*.weight"], sparsity=0.5, loader=batches, loss_fn=_loss)
    for name, mask in get_masks(model).items():
        assert torch.equal(mask, scores[name] >= threshold)
    assert sum(int(m.sum()) for m in get_masks(model).values()) == 16
    assert snip.targets != {"0.weight": 0.5, "1.weight": 0.5}  # non-uniform per layer
    model2, _, _ = _setup()
    FORCE(model2, None, ["*.weight"], sparsity=0.5, loader=batches, loss_fn=_loss, iterations=1)
    assert all(torch.equal(get_masks(model2)[n], m) for n, m in get_masks(model).items())


@pytest.mark.parametrize("method", [SNIP, GraSP, FORCE])
def test_methods_run_on_a_cnn_keep_buffers_and_meet_the_flop_budget(method) -> None:
    dense = small_cnn()
    x, y = batch(0)
    result = sparseift.transform(dense, "wide", 0.5, example_inputs=x)
    running_mean = result.model[3].running_mean.clone()
    budget = FlopBudget.iso_flop(result.model, dense, x)
    extra = {"iterations": 3} if method is FORCE else {}
    sparsifier = method(result.model, None, result.sparse_params, loader=[(x, y)], flop_budget=budget, **extra)
    report = sparsifier.report()
    assert report.flops.effective_macs == pytest.approx(budget.target_macs, rel=1e-3)
    assert torch.equal(result.model[3].running_mean, running_mean)
    assert all(r.active == round((1 - r.actual) * r.numel) for r in report.params)


def test_missing_loader_and_bad_batches() -> None:
    with pytest.raises(TypeError, match="SNIP needs loader=..., an iterable of \\(inputs, targets\\)"):
        SNIP(small_cnn(), None, sparsity=0.5)
    with pytest.raises(ValueError, match="batches must be >= 1"):
        GraSP(small_cnn(), None, sparsity=0.5, loader=[batch(0)], batches=0)
    with pytest.raises(ValueError, match="iterations must be >= 1"):
        FORCE(small_cnn(), None, sparsity=0.5, loader=[batch(0)], iterations=0)
