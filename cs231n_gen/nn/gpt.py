r"""A small GPT, read top to bottom: embeddings, causal self-attention, block, model.

An autoregressive model factorises a sequence's probability with the chain rule,

.. math::  p(s_1, \dots, s_T \mid c) = \prod_{i=1}^{T} p(s_i \mid c, s_1, \dots, s_{i-1}),

and one transformer computes every factor at once: position i may attend to positions
<= i only (the **causal mask**), so the output at position i sees exactly what its factor
conditions on.

The sequence the transformer reads is ``[prefix, s_1, ..., s_L]``: the prefix is one
learned vector standing for the condition c (a class label, with label ``num_classes``
meaning "no label"; a single "start" vector for an unconditional model). The output at
position i is the distribution of token i + 1, so ``model(tokens)`` with L tokens returns
L + 1 rows of logits: the factors for tokens 1..L (teacher forcing, for training and for
likelihoods) and the next token's (for sampling). Token embeddings and learned position
embeddings are added; blocks are pre-norm (GPT-2's arrangement).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._validate import check_int, check_labels, check_real, check_tokens, check_width_and_heads
from .layers import LayerNorm


class _CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position i attends to positions 0..i only."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv, self.out = nn.Linear(width, 3 * width), nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, width = x.shape
        q, k, v = (t.reshape(b, n, self.heads, width // self.heads).transpose(1, 2)
                   for t in self.qkv(x).chunk(3, dim=-1))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # the mask: no peeking ahead
        return self.out(y.transpose(1, 2).reshape(b, n, width))


class _Block(nn.Module):
    """x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.norm1, self.attn = LayerNorm(width), _CausalSelfAttention(width, heads)
        self.norm2 = LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width), nn.Dropout(dropout))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.mlp(self.norm2(x))


class GPT(nn.Module):
    """A causal transformer over token ids, with a class (or "start") prefix.

    Args:
        vocab_size: number of distinct tokens K (ids 0..K-1).
        block_size: the longest sequence it models: it reads the prefix and up to
            ``block_size - 1`` tokens, and predicts each of them and the next one.
        width, depth, heads, mlp_ratio: transformer size.
        dropout: dropout on the embeddings and on every residual branch while training
            (small datasets: a prior over 1438 digits' codes overfits without it).
        num_classes: if given, ``model(tokens, y)`` takes labels y in 0..num_classes,
            where ``num_classes`` itself is the null label (no condition).
    """

    def __init__(self, vocab_size: int, block_size: int, width: int = 128, depth: int = 4, heads: int = 4,
                 mlp_ratio: float = 4.0, num_classes: int | None = None, dropout: float = 0.0):
        super().__init__()
        self.vocab_size = check_int("vocab_size", vocab_size, minimum=2)
        self.block_size = check_int("block_size", block_size, minimum=1)
        width, heads = check_width_and_heads(width, heads)
        depth = check_int("depth", depth, minimum=1)
        mlp_ratio = check_real("mlp_ratio", mlp_ratio, minimum=0.0, strict_min=True)
        dropout = check_real("dropout", dropout, minimum=0.0, maximum=0.9)
        self.num_classes = None if num_classes is None else check_int("num_classes", num_classes, minimum=1)
        # Embeddings: the prefix (one vector per label, the null label last; or one "start"
        # vector), the tokens, and each position.
        self.prefix = nn.Embedding(1 if num_classes is None else self.num_classes + 1, width)
        self.token_embed = nn.Embedding(self.vocab_size, width)
        self.position_embed = nn.Parameter(torch.zeros(1, self.block_size, width))
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(_Block(width, heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = LayerNorm(width)
        self.head = nn.Linear(width, self.vocab_size, bias=False)
        for module in self.modules():  # GPT-2's initialisation: small normal weights, zero biases
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.position_embed, std=0.02)

    @property
    def null_label(self) -> int | None:
        """The label meaning "no condition" (None for an unconditional model)."""
        return self.num_classes

    def forward(self, tokens: torch.Tensor, y=None) -> torch.Tensor:
        """tokens (B, L) ids, L <= block_size - 1 -> logits (B, L + 1, vocab_size).

        Row i of the output is the distribution of token i + 1 given the prefix and
        tokens 1..i (row 0: the first token, given the prefix alone).
        """
        tokens = check_tokens("tokens", tokens, self.vocab_size, max_length=self.block_size - 1)
        b, n = tokens.shape
        if self.num_classes is None:
            if y is not None:
                raise ValueError("y was given but this model was built with num_classes=None")
            y = torch.zeros(b, dtype=torch.long, device=tokens.device)
        else:
            if y is None:
                raise ValueError(f"y is required (labels 0..{self.num_classes}, {self.num_classes} = no label): this "
                                 "model was built with num_classes")
            y = check_labels("y", y, b, self.num_classes + 1, tokens.device, rows_of="tokens")
        # The sequence: prefix, then the tokens; plus where each sits.
        x = torch.cat([self.prefix(y)[:, None], self.token_embed(tokens)], dim=1)
        x = self.drop(x + self.position_embed[:, :n + 1])
        # Blocks, then the logits of the next token at every position.
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))
