"""``sparseift.transform``: argument checking, exclusion, first/last layers, sparse parameter set."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparseift import FAMILIES, transform


def _net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    )  # fmt: skip


X = torch.randn(2, 3, 8, 8)


@pytest.mark.parametrize("bad", [-0.01, 1.0, 2.0])
def test_sparsity_out_of_range(bad: float) -> None:
    with pytest.raises(ValueError, match=r"sparsity must lie in \[0, 1\).*" + str(bad)):
        transform(_net(), "parallel", bad)


def test_sparsity_of_wrong_type() -> None:
    with pytest.raises(TypeError, match="sparsity"):
        transform(_net(), "parallel", "0.5")


def test_unknown_family() -> None:
    with pytest.raises(ValueError, match=r"family must be one of 'wide', 'parallel', 'factorized', 'doped'; got 'deep'"):
        transform(_net(), "deep", 0.5)


def test_exclude_pattern_matching_nothing() -> None:
    with pytest.raises(ValueError, match="exclude pattern 'layer9.*' matches no module"):
        transform(_net(), "parallel", 0.5, exclude=["layer9.*"])


def test_wide_needs_example_inputs() -> None:
    with pytest.raises(ValueError, match="example_inputs is required"):
        transform(_net(), "wide", 0.5)


def test_layer_type_no_family_can_transform() -> None:
    model = nn.Sequential(nn.Conv1d(3, 8, 3), nn.Conv1d(8, 8, 3), nn.Flatten(), nn.Linear(8, 2))
    with pytest.raises(TypeError, match=r"cannot transform module '0' \(Conv1d\).*exclude"):
        transform(model, "factorized", 0.5)
    # excluded explicitly, it stays dense and the rest is transformed
    result = transform(model, "factorized", 0.5, exclude=["0", "1"])
    assert isinstance(result.model[1], nn.Conv1d)


@pytest.mark.parametrize("family", FAMILIES)
def test_exclude_keeps_layers_dense(family: str) -> None:
    result = transform(_net(), family, 0.5, example_inputs=X, exclude=["2"])
    roles = {r.name: r.role for r in result.layers}
    assert roles == {"0": "first", "2": "excluded", "4": "sparse", "8": "last"}
    assert all(not name.startswith("2.") for name in result.sparse_params)
    assert any(name.startswith("4.") for name in result.sparse_params)


def test_first_and_last_by_execution_order_not_registration_order() -> None:
    class Reversed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Linear(8, 2)
            self.hidden = nn.Linear(8, 8)
            self.stem = nn.Linear(4, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.hidden(self.stem(x)))

    result = transform(Reversed(), "doped", 0.5, example_inputs=torch.randn(1, 4))
    assert {r.name: r.role for r in result.layers} == {"head": "last", "hidden": "sparse", "stem": "first"}


def test_keep_first_last_dense_off_makes_every_layer_sparse() -> None:
    result = transform(_net(), "parallel", 0.75, keep_first_last_dense=False)
    assert {r.role for r in result.layers} == {"sparse"}
    assert len(result.sparse_params) == 4 * 4


def test_input_model_is_not_modified() -> None:
    net = _net()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    for family in FAMILIES:
        transform(net, family, 0.9, example_inputs=X)
    assert [type(m) for m in net] == [type(m) for m in _net()]
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())


def test_bad_nonlinearity() -> None:
    with pytest.raises(TypeError, match="nonlinearity"):
        transform(_net(), "parallel", 0.5, nonlinearity="relu")
