import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from sparseift.sparsity import NM, RigL, StaticSparsifier, get_masks, is_transposable_nm, parse_nm, transposable_nm_mask

from tests.sparsity._helpers import assert_invariants


@settings(max_examples=20, deadline=None)
@given(n=st.sampled_from([1, 2, 4]), rows=st.integers(1, 3), cols=st.integers(1, 3), seed=st.integers(0, 10_000))
def test_mask_is_transposable_n_of_m(n: int, rows: int, cols: int, seed: int) -> None:
    scores = torch.rand(8 * rows, 8 * cols, generator=torch.Generator().manual_seed(seed))
    mask = transposable_nm_mask(scores, NM(n, 8))
    blocks = mask.reshape(rows, 8, cols, 8).permute(0, 2, 1, 3)
    assert torch.all(blocks.sum(-1) == n) and torch.all(blocks.sum(-2) == n)
    assert int(mask.sum()) == mask.numel() * n // 8


def test_planted_pattern_is_found() -> None:
    # a block whose high scores form a 2-regular pattern: the selection must take exactly it
    planted = torch.zeros(8, 8, dtype=torch.bool)
    for i in range(8):
        planted[i, i] = planted[i, (i + 3) % 8] = True
    scores = torch.rand(8, 8) + 10 * planted
    assert torch.equal(transposable_nm_mask(scores, NM(2, 8)), planted)


def test_conv_weights_use_the_matrix_view() -> None:
    scores = torch.rand(16, 8, 3, 3)  # matrix 16 x 72
    assert is_transposable_nm(transposable_nm_mask(scores, NM(1, 8)), NM(1, 8))


def test_parse_and_errors() -> None:
    assert parse_nm("4:8-T") == NM(4, 8) and str(NM(1, 8)) == "1:8-T" and NM(2, 8).sparsity == 0.75
    with pytest.raises(ValueError, match="n <= m; got n=9 > m=8"):
        NM(9, 8)
    with pytest.raises(ValueError, match="like '2:8-T'"):
        parse_nm("2/8")
    with pytest.raises(ValueError, match="multiples of m=8"):
        transposable_nm_mask(torch.rand(12, 8), NM(2, 8))


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4))


@pytest.mark.parametrize("spec", ["4:8-T", "2:8-T", "1:8-T"])
def test_static_nm_sparsifier(spec: str) -> None:
    model = _net()
    sparsifier = StaticSparsifier(model, structure=spec)
    nm = parse_nm(spec)
    assert sparsifier.targets == {"2.weight": nm.sparsity}
    assert is_transposable_nm(get_masks(model)["2.weight"], nm)
    with pytest.raises(ValueError, match="conflicts with structure"):
        StaticSparsifier(_net(), sparsity=0.5, structure=spec if spec != "4:8-T" else "2:8-T")


def test_nm_inside_rigl_updates() -> None:
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sparsifier = RigL(model, opt, structure="2:8-T", total_steps=8, delta_t=2, end_step=8)
    first = get_masks(model)["2.weight"].clone()
    for step in range(6):
        x = torch.randn(8, 16, generator=torch.Generator().manual_seed(step))
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
        sparsifier.step()
        assert is_transposable_nm(get_masks(model)["2.weight"], NM(2, 8))
        assert_invariants(model, opt, sparsifier)
    assert not torch.equal(first, get_masks(model)["2.weight"])
