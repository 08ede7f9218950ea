import torch
from torch import nn

import sparseift
from sparseift.sparsity import StaticSparsifier, apply_masks, attach_masks, get_masks, mask_key, topk_mask, zero_entries
from tests.sparsity._helpers import small_cnn


def test_mask_buffers_are_named_param_mask_and_in_state_dict() -> None:
    model = small_cnn()
    attach_masks(model, ["2.weight", "8.weight"])
    keys = model.state_dict().keys()
    assert mask_key("2.weight") == "2.weight_mask"
    assert {"2.weight_mask", "8.weight_mask"} <= set(keys)
    assert set(get_masks(model)) == {"2.weight", "8.weight"}
    assert model.get_buffer("2.weight_mask").dtype == torch.bool


def test_apply_masks_zeros_weights_grads_and_optimizer_state() -> None:
    model = nn.Linear(4, 3)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    mask = attach_masks(model, ["weight"])["weight"]
    mask[0] = False
    apply_masks(model, opt)
    assert torch.all(model.weight[0] == 0) and torch.all(model.weight.grad[0] == 0)
    assert torch.all(opt.state[model.weight]["exp_avg"][0] == 0)
    assert torch.all(opt.state[model.weight]["exp_avg_sq"][0] == 0)
    assert torch.all(model.weight[1:] != 0) and opt.state[model.weight]["step"] == 1


def test_zero_entries_leaves_other_entries() -> None:
    p = nn.Parameter(torch.arange(1.0, 7.0))
    zero_entries(p, torch.tensor([True, False, True, False, False, False]))
    assert p.tolist() == [0, 2, 0, 4, 5, 6]


def test_topk_mask_exact_count_and_largest() -> None:
    scores = torch.tensor([[0.1, 5.0], [3.0, float("-inf")]])
    assert topk_mask(scores, 2).tolist() == [[False, True], [True, False]]
    assert int(topk_mask(torch.randn(7, 9), 17).sum()) == 17


def test_sparse_doped_low_rank_part_is_never_masked() -> None:
    dense = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    result = sparseift.transform(dense, "doped", 0.75)
    model = result.model
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sparsifier = StaticSparsifier(model, opt, result.sparse_params)
    masked = set(get_masks(model))
    assert masked == set(result.sparse_params) and masked
    low_rank = [n for n, _ in model.named_parameters() if ".U." in n or ".V." in n]
    assert low_rank and not masked & set(low_rank)
    model(torch.randn(5, 16)).sum().backward()
    opt.step()
    sparsifier.step()
    for name in low_rank:
        assert torch.count_nonzero(model.get_parameter(name)) == model.get_parameter(name).numel()
