"""Our GPT decoder: causality, weight tying, GPT-2 init, and the paper's Sparse Wide widths."""

from __future__ import annotations

import math

import pytest
import torch

from sparseift import transform
from sparseift.models import build_model, example_input
from sparseift.models.gpt import GPT, GPTConfig
from sparseift.transforms import k_sw

_SMALL = {"n_layer": 1, "vocab_size": 512, "context_length": 64}


def test_logits_are_causal() -> None:
    torch.manual_seed(0)
    model = build_model("gpt_tiny", n_layer=2).eval()
    x = example_input("gpt_tiny", batch=2, context_length=12)
    changed = x.clone()
    changed[:, 7] = (x[:, 7] + 1) % 256
    before, after = model(x), model(changed)
    torch.testing.assert_close(before[:, :7], after[:, :7])
    assert not torch.allclose(before[:, 7:], after[:, 7:])


def test_lm_head_is_tied_to_the_token_embedding_also_after_widening() -> None:
    model = build_model("gpt_tiny", n_layer=1, context_length=8)
    assert model.lm_head.weight is model.tok_emb.weight
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in set(model.parameters()))
    wide = transform(model, "wide", 0.5, example_inputs=example_input("gpt_tiny", context_length=8)).model
    assert wide.lm_head.weight is wide.tok_emb.weight
    assert wide.tok_emb.weight.shape == (256, 180)  # 4 heads: 4 * round_half_up(128 * sqrt(2) / 4)


def test_gpt2_init_statistics() -> None:
    torch.manual_seed(0)
    model = build_model("gpt_mini", n_layer=4)
    block = model.blocks[0]
    for weight in (block.attn.qkv.weight, block.mlp.fc.weight, model.tok_emb.weight, model.pos_emb.weight):
        assert weight.std().item() == pytest.approx(0.02, rel=0.05)
    residual = 0.02 / math.sqrt(2 * 4)
    for weight in (block.attn.proj.weight, block.mlp.proj.weight):
        assert weight.std().item() == pytest.approx(residual, rel=0.05)
    assert not block.attn.qkv.bias.any() and not block.mlp.proj.bias.any()
    assert bool((model.ln_f.weight == 1).all()) and not model.ln_f.bias.any()


def test_gpt3_small_config() -> None:
    model = build_model("gpt3_small", **_SMALL)
    block = model.blocks[0]
    assert (block.attn.num_heads, block.attn.head_dim, block.mlp.fc.out_features) == (12, 64, 3072)
    assert GPTConfig() == GPTConfig(12, 768, 12, 3072, 2048, 50257, 0.0)
    assert model.pos_emb.num_embeddings == 64 and model.tok_emb.num_embeddings == 512


@pytest.mark.parametrize(("sparsity", "d_model", "d_ff"), [(0.5, 1092, 4344), (0.75, 1536, 6144)])
def test_sparse_wide_gpt3_small_has_the_papers_widths(sparsity: float, d_model: int, d_ff: int) -> None:
    """PAPER.md section 8: Sparse Wide GPT-3 Small is 1092/4344 at s=0.5 and 1536/6144 at s=0.75."""
    dense = build_model("gpt3_small", **_SMALL)
    x = example_input("gpt3_small", **_SMALL)[:, :8]
    wide = transform(dense, "wide", sparsity, example_inputs=x).model
    block = wide.blocks[0]
    assert wide.tok_emb.weight.shape == (512, d_model) and wide.pos_emb.weight.shape == (64, d_model)
    assert block.attn.qkv.weight.shape == (3 * d_model, d_model) and block.mlp.fc.weight.shape == (d_ff, d_model)
    assert (block.attn.num_heads, block.attn.head_dim) == (12, d_model // 12)
    assert wide(x).shape == (1, 8, 512)
    native = build_model("gpt3_small", width_multiplier=k_sw(sparsity), **_SMALL)
    assert (native.config.d_model, native.config.d_ff) == (d_model, d_ff)


def test_sequence_longer_than_the_context_is_an_error() -> None:
    model = build_model("gpt_tiny", n_layer=1, context_length=4)
    with pytest.raises(ValueError, match="sequence length 5 exceeds the context length 4"):
        model(torch.zeros(1, 5, dtype=torch.long))


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match=r"d_model \(100\) must be a multiple of n_head \(12\)"):
        GPT(GPTConfig(d_model=100))
    with pytest.raises(ValueError, match="n_layer must be >= 1"):
        build_model("gpt_tiny", n_layer=0)
