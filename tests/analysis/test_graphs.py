"""A layer as an unrolled bipartite graph, from a live module, a state dict or a masks dict."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sparseift.analysis.graphs import layer_graph, sparse_layers


def test_conv_is_unrolled_inputs_by_outputs() -> None:
    weight = torch.randn(4, 3, 2, 2)
    mask = torch.rand(4, 3, 2, 2) < 0.5
    graph = layer_graph("conv", weight * mask, mask)
    assert graph.adjacency.shape == (12, 4)  # (c_in * kh * kw, c_out)
    assert graph.edges == int(mask.sum())
    # input node (c, i, j) -> output o is the weight [o, c, i, j]
    assert graph.adjacency[1 * 4 + 1 * 2 + 0, 2] == bool(mask[2, 1, 1, 0])
    assert graph.weights[5, 3] == pytest.approx(abs(float(weight[3, 1, 0, 1] * mask[3, 1, 0, 1])))
    assert (graph.weights >= 0).all() and not graph.weights[~graph.adjacency].any()


def test_grouped_conv_is_block_diagonal() -> None:
    conv = nn.Conv2d(4, 6, 1, groups=2)
    conv.register_buffer("weight_mask", torch.ones_like(conv.weight, dtype=torch.bool))
    (graph,) = sparse_layers(conv)
    assert graph.adjacency.shape == (4, 6)
    expected = np.zeros((4, 6), dtype=bool)
    expected[:2, :3] = expected[2:, 3:] = True
    assert (graph.adjacency == expected).all()


def test_module_state_dict_and_masks_dict_agree(small_sparse_model: nn.Module) -> None:
    live = list(sparse_layers(small_sparse_model))
    from_state = list(sparse_layers(small_sparse_model.state_dict()))
    masks = {f"{name}.weight": m.weight_mask for name, m in small_sparse_model.named_modules() if hasattr(m, "weight_mask")}
    plain = {k: v for k, v in small_sparse_model.state_dict().items() if not k.endswith("_mask")}
    from_masks = list(sparse_layers(plain, masks=masks))
    assert [g.name for g in live] == [g.name for g in from_state] == [g.name for g in from_masks] == ["0", "2", "4", "6"]
    for a, b, c in zip(live, from_state, from_masks):
        assert (a.adjacency == b.adjacency).all() and (a.adjacency == c.adjacency).all()
        np.testing.assert_array_equal(a.weights, b.weights)


def test_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="mask shape"):
        layer_graph("fc", torch.ones(3, 4), torch.ones(4, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="no weight"):
        list(sparse_layers({"fc.weight_mask": torch.ones(2, 2, dtype=torch.bool)}))
    with pytest.raises(ValueError, match="'.weight'"):
        list(sparse_layers(nn.Linear(2, 2), masks={"weight_mask": torch.ones(2, 2)}))
    with pytest.raises(TypeError, match="source"):
        list(sparse_layers([1, 2]))
    with pytest.raises(ValueError, match="groups"):
        layer_graph("conv", torch.ones(3, 2, 1, 1), torch.ones(3, 2, 1, 1, dtype=torch.bool), groups=2)
