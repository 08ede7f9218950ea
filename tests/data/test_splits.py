from __future__ import annotations

import pytest
import torch

from sparseift.data import contiguous_ranges, holdout_split


def test_holdout_is_deterministic_disjoint_and_covering() -> None:
    kept, held = holdout_split(1000, 0.1, seed=7)
    assert held.numel() == 100 and kept.numel() == 900
    assert torch.equal(torch.cat([kept, held]).sort().values, torch.arange(1000))
    again_kept, again_held = holdout_split(1000, 0.1, seed=7)
    assert torch.equal(kept, again_kept) and torch.equal(held, again_held)
    assert not torch.equal(held, holdout_split(1000, 0.1, seed=8)[1])
    assert torch.equal(held, held.sort().values)


def test_holdout_rounds_down_and_allows_zero() -> None:
    assert holdout_split(10, 0.19, seed=0)[1].numel() == 1
    kept, held = holdout_split(10, 0.0, seed=0)
    assert held.numel() == 0 and torch.equal(kept, torch.arange(10))


@pytest.mark.parametrize("fraction", [1.0, -0.1, 1.5])
def test_holdout_fraction_is_checked(fraction: float) -> None:
    with pytest.raises(ValueError, match=r"val_fraction must lie in \[0, 1\)"):
        holdout_split(10, fraction, seed=0, name="val_fraction")


def test_contiguous_ranges_tile_the_stream() -> None:
    ranges = contiguous_ranges(1001, 0.1, 0.05)
    assert ranges == {"train": (0, 851), "val": (851, 951), "test": (951, 1001)}
    with pytest.raises(ValueError, match="val_fraction \\+ test_fraction"):
        contiguous_ranges(10, 0.5, 0.5)
