import math

import pytest
import torch
from torch import nn

from sparseift.flops import active_count
from sparseift.sparsity import SET, GradualMagnitudePruning, GraNet, RigL, get_masks
from tests.sparsity._helpers import assert_invariants, batch, small_cnn, train_step


def _tiny() -> nn.Module:
    # tanh, not ReLU: no dead unit, so no tied (zero) gradients in the brute-force comparison
    return nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 10), nn.Tanh(), nn.Linear(10, 3))


def _reference_drop_grow(weight: list[float], grad: list[float], mask: list[bool], alpha: float) -> set[int]:
    """RigL by hand: keep the round((1-alpha) n) largest |w| among active, then grow the
    rest by the largest |g| among positions inactive after the drop."""
    n = sum(mask)
    keep = math.floor((1 - alpha) * n + 0.5)
    active = sorted((i for i in range(len(mask)) if mask[i]), key=lambda i: -abs(weight[i]))
    kept = set(active[:keep])
    candidates = sorted((i for i in range(len(mask)) if i not in kept), key=lambda i: -abs(grad[i]))
    return kept | set(candidates[: n - keep])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rigl_update_equals_brute_force(seed: int) -> None:
    torch.manual_seed(seed)
    model = _tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    sparsifier = RigL(model, opt, sparsity=0.6, total_steps=10, delta_t=1, end_step=4, drop_fraction=0.5)
    for step in range(3):
        x = torch.randn(5, 6)
        opt.zero_grad()
        model(x).pow(2).sum().backward()
        opt.step()
        w = model[2].weight.detach().flatten().tolist()
        g = model[2].weight.grad.flatten().tolist()
        m = get_masks(model)["2.weight"].flatten().tolist()
        alpha = 0.25 * (1 + math.cos(math.pi * (step + 1) / 4))
        expected = _reference_drop_grow(w, g, m, alpha)
        sparsifier.step()
        got = set(torch.nonzero(get_masks(model)["2.weight"].flatten()).flatten().tolist())
        assert got == expected
        grown = got - {i for i in range(len(m)) if m[i]}
        assert grown and all(model[2].weight.flatten()[i] == 0 for i in grown)


@pytest.mark.parametrize("method", [SET, RigL])
@pytest.mark.parametrize(
    "make_opt",
    [
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=5e-4),
        lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
    ],
    ids=["sgd_momentum_wd", "adamw"],
)
def test_invariants_and_exact_counts_through_updates(method, make_opt) -> None:
    model = small_cnn()
    opt = make_opt(model.parameters())
    sparsifier = method(model, opt, sparsity=0.8, total_steps=12, delta_t=2)
    history = []
    for step in range(12):
        train_step(model, opt, sparsifier, step)
        assert_invariants(model, opt, sparsifier)
        history.append({n: m.clone() for n, m in get_masks(model).items()})
    changed = [any(not torch.equal(a[n], b[n]) for n in a) for a, b in zip(history, history[1:])]
    # updates at steps 2, 4, 6, 8 (end = 75% of 12 = 9); none after
    assert changed == [True, False, True, False, True, False, True, False, False, False, False]


def test_grown_weights_have_zero_optimizer_state() -> None:
    model = small_cnn()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sparsifier = RigL(model, opt, sparsity=0.8, total_steps=10, delta_t=2)
    train_step(model, opt, sparsifier, 0)
    old = {n: m.clone() for n, m in get_masks(model).items()}
    train_step(model, opt, sparsifier, 1)
    for name, mask in get_masks(model).items():
        grown = mask & ~old[name]
        param = model.get_parameter(name)
        assert grown.any()
        assert torch.all(param[grown] == 0)
        assert torch.all(opt.state[param]["exp_avg"][grown] == 0)
        assert torch.all(opt.state[param]["exp_avg_sq"][grown] == 0)


def test_set_draws_from_its_own_seeded_generator() -> None:
    masks = []
    for global_seed in (1, 2):
        torch.manual_seed(0)
        model = small_cnn()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        sparsifier = SET(model, opt, sparsity=0.8, total_steps=4, delta_t=2, seed=7)
        torch.manual_seed(global_seed)  # the global RNG must not matter
        for step in range(3):
            train_step(model, opt, sparsifier, step)
        masks.append(get_masks(model))
    assert all(torch.equal(masks[0][n], masks[1][n]) for n in masks[0])


@pytest.mark.parametrize("method", [GradualMagnitudePruning, GraNet])
def test_gradual_methods_follow_the_cubic_schedule(method) -> None:
    model = small_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sparsifier = method(model, opt, sparsity=0.9, total_steps=10, delta_t=2, end_step=8)
    assert all(int(m.sum()) == m.numel() for m in get_masks(model).values())  # dense start
    for step in range(10):
        train_step(model, opt, sparsifier, step)
        assert_invariants(model, opt, sparsifier)
        done = min((step + 1) // 2 * 2, 8)
        expected = 0.9 - 0.9 * (1 - done / 8) ** 3
        for name, mask in get_masks(model).items():
            assert int(mask.sum()) == active_count(mask.numel(), expected)


def test_gmp_only_prunes_smallest_magnitudes() -> None:
    model = small_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    sparsifier = GradualMagnitudePruning(model, opt, sparsity=0.5, total_steps=2, delta_t=1, end_step=1)
    weight = model[5].weight.detach().abs().flatten().clone()
    train_step(model, opt, sparsifier, 0)
    kept = get_masks(model)["5.weight"].flatten()
    assert weight[kept].min() >= weight[~kept].max()


def test_grad_scaler_skips_update_with_non_finite_gradients() -> None:
    model = small_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**4)
    sparsifier = RigL(model, opt, sparsity=0.8, total_steps=10, delta_t=1)
    x, y = batch(0)
    before = {n: m.clone() for n, m in get_masks(model).items()}
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt.zero_grad()
    scaler.scale(nn.functional.cross_entropy(model(x), y) * float("inf")).backward()
    scaler.step(opt)
    scaler.update()
    sparsifier.step()
    assert sparsifier.skipped_updates == 1
    assert all(torch.equal(before[n], m) for n, m in get_masks(model).items())
    assert all(torch.equal(weights[n], p) for n, p in model.named_parameters())
    opt.zero_grad()
    scaler.scale(nn.functional.cross_entropy(model(x), y)).backward()
    scaler.step(opt)
    scaler.update()
    sparsifier.step()
    assert sparsifier.skipped_updates == 1
    assert any(not torch.equal(before[n], m) for n, m in get_masks(model).items())
    assert_invariants(model, opt, sparsifier)


def test_bf16_autocast_keeps_invariants() -> None:
    model = small_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sparsifier = RigL(model, opt, sparsity=0.8, total_steps=6, delta_t=2)
    for step in range(4):
        x, y = batch(step)
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        sparsifier.step()
        assert_invariants(model, opt, sparsifier)


def test_torch_compile_keeps_invariants() -> None:
    model = _tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sparsifier = RigL(model, opt, sparsity=0.7, total_steps=6, delta_t=2)
    # aot_eager traces through dynamo and AOT autograd without needing a C++ toolchain
    compiled = torch.compile(model, backend="aot_eager")
    try:
        compiled(torch.randn(2, 6))
    except Exception as exc:  # pragma: no cover - depends on the platform
        pytest.skip(f"torch.compile unavailable here: {exc}")
    for step in range(4):
        opt.zero_grad()
        compiled(torch.randn(4, 6, generator=torch.Generator().manual_seed(step))).pow(2).sum().backward()
        opt.step()
        sparsifier.step()
        assert_invariants(model, opt, sparsifier)
    x = torch.randn(3, 6)
    torch.testing.assert_close(compiled(x), model(x))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"total_steps": 10, "delta_t": 0}, ValueError, "delta_t must be >= 1, got 0"),
        ({"total_steps": 10, "delta_t": -5}, ValueError, "delta_t must be >= 1"),
        ({"total_steps": 10, "begin_step": 6, "end_step": 4}, ValueError, "end_step must be an int > begin_step=6, got 4"),
        ({"total_steps": 10, "end_step": 20}, ValueError, "end_step must be <= total_steps=10, got 20"),
        ({"total_steps": 0}, ValueError, "total_steps must be >= 1"),
        ({"total_steps": 10, "delta_t": 100}, ValueError, "delta_t=100 must be <= end_step - begin_step = 7"),
        ({"total_steps": 10, "drop_fraction": 1.5}, ValueError, r"drop_fraction must lie in \[0, 1\]"),
        ({"total_steps": 10, "sparsity": 1.2}, ValueError, r"sparsity must lie in \[0, 1\)"),
    ],
)
def test_bad_dst_arguments(kwargs: dict, error: type, match: str) -> None:
    kwargs = {"sparsity": 0.5, "delta_t": 2, **kwargs}
    with pytest.raises(error, match=match):
        RigL(small_cnn(), None, **kwargs)


def test_gradual_initial_sparsity_must_not_exceed_target() -> None:
    with pytest.raises(ValueError, match="initial_sparsity=0.8 must be <= every target sparsity"):
        GraNet(small_cnn(), None, sparsity=0.5, initial_sparsity=0.8, total_steps=10, delta_t=2)
    with pytest.raises(TypeError, match="no drop_fraction"):
        GradualMagnitudePruning(small_cnn(), None, sparsity=0.5, total_steps=10, drop_fraction=0.3)
