"""A GPT decoder (Radford et al. 2019; Brown et al. 2020), nanoGPT-style, top to bottom.

Token + learned position embeddings, ``n_layer`` pre-LayerNorm blocks (causal multi-head
self-attention, then an MLP with GELU), a final LayerNorm and an LM head tied to the token
embedding. GPT-3 Small (PAPER.md section 8) is ``GPTConfig()``: 12 layers, d_model 768,
12 heads, d_ff 3072, context 2048, vocabulary 50257.

Initialisation as GPT-2/GPT-3: every linear and embedding weight ``N(0, 0.02)``, biases 0,
LayerNorm 1/0, and the two residual projections of each block (attention output, MLP
output) ``N(0, 0.02 / sqrt(2 * n_layer))``, so the residual stream's variance does not grow
with depth.

The attention module exposes ``num_heads`` and ``head_dim`` and reads its width from them,
so the generic Sparse Wide engine (:mod:`sparseift.transforms.wide`) widens each head
and keeps the head count: GPT-3 Small gives d_model 1092 / d_ff 4344 at s = 0.5 and
1536 / 6144 at s = 0.75, the paper's widths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from sparseift._checks import check_fraction, check_positive_int
from sparseift.models.widths import check_width_multiplier, scaled_width

__all__ = ["GPTConfig", "CausalSelfAttention", "MLP", "Block", "GPT"]


@dataclass(frozen=True)
class GPTConfig:
    """Shape of a GPT decoder. The default is GPT-3 Small (125M parameters)."""

    n_layer: int = 12
    d_model: int = 768
    n_head: int = 12
    d_ff: int = 3072
    context_length: int = 2048
    vocab_size: int = 50257
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("n_layer", "d_model", "n_head", "d_ff", "context_length", "vocab_size"):
            check_positive_int(name, getattr(self, name))
        check_fraction(self.dropout, "dropout", high_open=True)
        if self.d_model % self.n_head:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of n_head ({self.n_head})")

    def scaled(self, width_multiplier: float) -> GPTConfig:
        """This config with d_model and d_ff times ``width_multiplier``, multiples of ``n_head``.

        Rounded half up, as the Sparse Wide engine rounds: ``width_multiplier = k_sw(s)``
        gives the Sparse Wide widths (1092 / 4344 for GPT-3 Small at s = 0.5).
        """
        k = check_width_multiplier(width_multiplier)
        return replace(
            self, d_model=scaled_width(self.d_model, k, self.n_head), d_ff=scaled_width(self.d_ff, k, self.n_head)
        )


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention with a causal mask and a fused q/k/v projection."""

    def __init__(self, d_model: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.dropout = dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        # (batch, length, 3 * d) -> three (batch, heads, length, head_dim) tensors
        q, k, v = self.qkv(x).view(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        y = y.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim)
        return self.resid_dropout(self.proj(y))


class MLP(nn.Module):
    """``d_model -> d_ff -> d_model`` with GELU."""

    def __init__(self, d_model: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.fc = nn.Linear(d_model, d_ff)
        self.act = nn.GELU()
        self.proj = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(self.act(self.fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: ``x + attn(ln1(x))``, then ``x + mlp(ln2(x))``."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(config.d_model)
        self.attn = CausalSelfAttention(config.d_model, config.n_head, config.dropout)
        self.ln2 = nn.LayerNorm(config.d_model)
        self.mlp = MLP(config.d_model, config.d_ff, config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """GPT decoder: token ids ``(batch, length)`` -> next-token logits ``(batch, length, vocab)``."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_emb = nn.Embedding(config.context_length, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.lm_head.weight = self.tok_emb.weight  # weight tying (Press & Wolf 2017)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2/GPT-3 init: N(0, 0.02), zero biases, residual projections / sqrt(2 n_layer)."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        residual_std = 0.02 / math.sqrt(2 * len(self.blocks))
        for block in self.blocks:
            nn.init.normal_(block.attn.proj.weight, std=residual_std)
            nn.init.normal_(block.mlp.proj.weight, std=residual_std)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        length = idx.shape[1]
        if length > self.pos_emb.num_embeddings:
            raise ValueError(
                f"sequence length {length} exceeds the context length {self.pos_emb.num_embeddings} of this GPT"
            )
        positions = torch.arange(length, device=idx.device)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(positions))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))
