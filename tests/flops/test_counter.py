"""The FLOP counter against hand arithmetic and torch.utils.flop_counter.FlopCounterMode."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sparseift import profile_flops, transform
from sparseift.flops import active_count, training_macs


def _torch_flops(model: nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(x)
    return counter.get_total_flops()


def test_linear_is_batch_din_dout() -> None:
    assert profile_flops(nn.Linear(10, 7), torch.randn(5, 10)).dense_macs() == 5 * 10 * 7
    # a token stream: every position counts
    assert profile_flops(nn.Linear(10, 7), torch.randn(2, 3, 10)).dense_macs() == 2 * 3 * 10 * 7


@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 3), st.sampled_from([1, 2, 4]), st.integers(1, 3), st.integers(1, 2),
    st.integers(0, 2), st.integers(1, 2), st.integers(5, 12),
)  # fmt: skip
def test_conv_is_b_hout_wout_cout_cin_over_groups_kh_kw(
    batch: int, groups: int, k: int, stride: int, padding: int, dilation: int, size: int
) -> None:
    """Appendix A.1: FLOPs = B * Hout * Wout * cout * cin/groups * kh * kw, with the real output size."""
    cin, cout = 4 * groups, 2 * groups
    conv = nn.Conv2d(cin, cout, k, stride=stride, padding=padding, dilation=dilation, groups=groups)
    x = torch.randn(batch, cin, size, size + 1)
    h_out = (size + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    w_out = (size + 1 + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    expected = batch * h_out * w_out * cout * (cin // groups) * k * k
    assert profile_flops(conv, x).dense_macs() == expected


class _Attention(nn.Module):
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def test_attention_products_are_counted() -> None:
    """Q K^T and A V: B*H*L*S*E + B*H*L*S*Ev, fused kernel (which torch's own counter skips on
    CPU) or math path alike."""
    for length in (5, 7):
        q, k, v = torch.randn(2, 3, length, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 4)
        profile = profile_flops(_Attention(), (q, k, v))
        assert profile.dense_macs() == 2 * 3 * length * 7 * 8 + 2 * 3 * length * 7 * 4
        assert profile.param_macs() == {}


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_dense_totals_match_torch_flop_counter(name: str) -> None:
    torchvision = pytest.importorskip("torchvision")
    model, x = getattr(torchvision.models, name)(weights=None), torch.randn(1, 3, 64, 64)
    assert 2 * profile_flops(model, x).dense_macs() == _torch_flops(model, x)


def test_gpt2_totals_match_torch_flop_counter_with_eager_attention() -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(
        n_layer=2, n_embd=64, n_head=4, vocab_size=100, n_positions=32, attn_implementation="eager"
    )
    model, x = transformers.GPT2LMHeadModel(config), torch.randint(0, 100, (2, 16))
    profile = profile_flops(model, x)
    assert 2 * profile.dense_macs() == _torch_flops(model, x)
    # Conv1D weights are attributed to their parameters; the tied LM head to the embedding
    macs = profile.param_macs()
    assert macs["transformer.h.0.attn.c_attn.weight"] == 2 * 16 * 64 * 192
    assert macs["transformer.wte.weight"] == 2 * 16 * 64 * 100


def test_effective_macs_scale_by_exact_density() -> None:
    model, x = nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 3)), torch.randn(4, 10)
    profile = profile_flops(model, x)
    effective = profile.effective_macs({"0.weight": 0.75})
    assert effective == 4 * 10 * 10 * (active_count(100, 0.75) / 100) + 4 * 10 * 3
    assert active_count(100, 0.75) == 25 and active_count(10, 0.75) == 3  # 2.5 rounds half up
    per_module = profile.per_module({"0.weight": 0.75})
    assert per_module["0"] == (400, 100.0) and per_module["1"] == (120, 120.0)


def test_effective_macs_reject_unknown_parameters() -> None:
    profile = profile_flops(nn.Linear(4, 4), torch.randn(1, 4))
    with pytest.raises(ValueError, match="no counted operation uses"):
        profile.effective_macs({"missing.weight": 0.5})


def test_training_macs_convention() -> None:
    assert training_macs(10.0, 40.0) == 30.0
    assert training_macs(10.0, 40.0, dense_weight_gradient=True) == 60.0


def test_profiling_leaves_the_model_unchanged() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    profile_flops(model, torch.randn(2, 3, 8, 8))
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_sparse_parallel_ops_are_attributed_to_each_branch() -> None:
    result = transform(nn.Sequential(nn.Linear(8, 8)), "parallel", 0.5, keep_first_last_dense=False)
    profile = profile_flops(result.model, torch.randn(3, 8))
    assert profile.param_macs() == {"0.branches.0.weight": 192, "0.branches.1.weight": 192}
    assert profile.effective_macs(result.sparse_params) == 192
