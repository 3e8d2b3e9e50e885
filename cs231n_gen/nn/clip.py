r"""A text encoder and an image encoder trained against each other (CLIP, Radford et al. 2021), small.

Read top to bottom: the text side (token and position embeddings, pre-norm transformer
blocks over the caption, a final norm), the image side (a small convolutional network),
and the pair that holds both with a learned temperature.

The text encoder's **token embeddings** (B, L, width), one per word and each informed by
the whole caption through attention, are what a text-to-image model reads by
cross-attention. Its **pooled embedding** (the mean of the kept tokens, projected to
``embed_dim``) is what the contrastive loss compares with the image embedding
(:func:`cs231n_gen.contrastive.clip_loss`).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .._validate import check_ids, check_int, check_keeps_a_token, check_model_input, check_width_and_heads
from .layers import Attention, Conv2d, LayerNorm, feed_forward


def _check_ids(ids, mask, vocab_size: int, max_length: int):
    if not isinstance(ids, torch.Tensor) or ids.ndim != 2 or ids.is_floating_point() or ids.dtype == torch.bool:
        raise ValueError(f"ids must be a (B, L) integer tensor of token ids, got {ids!r:.80}")
    if ids.shape[0] < 1 or not 1 <= ids.shape[1] <= max_length:
        raise ValueError(f"ids must be shaped (B, L) with B >= 1 and 1 <= L <= max_length={max_length}, got "
                         f"{tuple(ids.shape)}")
    check_ids("ids", ids, vocab_size)
    if mask is None:
        return ids != 0
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.shape != ids.shape:
        raise ValueError(f"mask must be a bool tensor shaped like ids {tuple(ids.shape)}, got {mask!r:.80}")
    return check_keeps_a_token("mask", mask, "caption")


# ------------------------------------------------------------------------- text side
class _TextBlock(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)) over the kept tokens, then x + MLP(LN(x))."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm1, self.norm2 = LayerNorm(width), LayerNorm(width)
        self.attn, self.mlp = Attention(width, heads), feed_forward(width, 4.0)

    def forward(self, x, mask):
        x = x + self.attn(self.norm1(x), key_mask=mask)
        return x + self.mlp(self.norm2(x))


class TextEncoder(nn.Module):
    """Caption tokens -> token embeddings (B, L, width) and a pooled embedding (B, embed_dim).

    Args:
        vocab_size: rows of the embedding table (``len(tokenizer)``; id 0 is padding).
        max_length: longest caption, in tokens (learned position embeddings).
        width, depth, heads: the transformer's size.
        embed_dim: size of the pooled embedding the contrastive loss compares.
    """

    def __init__(self, vocab_size: int, max_length: int = 12, width: int = 64, depth: int = 2, heads: int = 4,
                 embed_dim: int = 64):
        super().__init__()
        self.vocab_size = check_int("vocab_size", vocab_size, minimum=2)
        self.max_length = check_int("max_length", max_length, minimum=1)
        self.width, heads = check_width_and_heads(width, heads)
        depth = check_int("depth", depth, minimum=1)
        embed_dim = check_int("embed_dim", embed_dim, minimum=1)
        self.token_embed = nn.Embedding(vocab_size, width, padding_idx=0)
        self.position_embed = nn.Parameter(0.02 * torch.randn(max_length, width))
        self.blocks = nn.ModuleList(_TextBlock(width, heads) for _ in range(depth))
        self.norm = LayerNorm(width)
        self.project = nn.Linear(width, embed_dim)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings (B, L, width); ``mask`` (B, L) bool defaults to ``ids != 0``."""
        mask = _check_ids(ids, mask, self.vocab_size, self.max_length)
        x = self.token_embed(ids) + self.position_embed[:ids.shape[1]]
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x)

    def pool(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The pooled embedding (B, embed_dim): the mean of the kept token embeddings, projected."""
        tokens = check_model_input("tokens", tokens, (None, None, self.width))
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.shape != tokens.shape[:2]:
            raise ValueError(f"mask must be a bool tensor of shape {tuple(tokens.shape[:2])} (one per token of "
                             f"tokens), got {mask!r:.80}")
        weights = mask.to(tokens.dtype)[..., None]
        return self.project((tokens * weights).sum(1) / weights.sum(1).clamp_min(1.0))

    def embed(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The pooled embedding of captions given as ids (B, L)."""
        mask = _check_ids(ids, mask, self.vocab_size, self.max_length)
        return self.pool(self(ids, mask), mask)


# ------------------------------------------------------------------------ image side
class ImageEncoder(nn.Module):
    """Images (B, C, S, S) in [-1, 1] -> embeddings (B, embed_dim).

    Three stride-2 convolutions (S -> S/8), then a linear map from the whole flattened
    feature map: no global pooling, so *where* the object sits survives into the
    embedding (captions name positions).
    """

    def __init__(self, in_channels: int = 3, size: int = 32, width: int = 32, embed_dim: int = 64):
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, minimum=1)
        self.size = check_int("size", size, minimum=8)
        if self.size % 8:
            raise ValueError(f"size must be divisible by 8 (three halvings), got {self.size}")
        width, embed_dim = check_int("width", width, minimum=1), check_int("embed_dim", embed_dim, minimum=1)
        layers, channels = [], self.in_channels
        for k in range(3):
            layers += [Conv2d(channels, width * 2 ** k, 4, stride=2, padding=1), nn.GELU()]
            channels = width * 2 ** k
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.project = nn.Linear(channels * (self.size // 8) ** 2, embed_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        images = check_model_input("images", images, (None, self.in_channels, self.size, self.size))
        return self.project(self.features(images))


# ---------------------------------------------------------------------------- the pair
class CLIP(nn.Module):
    """Both encoders and the learned inverse temperature, ``logit_scale`` = log(1 / tau).

    CLIP starts tau at 0.07 and keeps 1 / tau at most 100; ``temperature`` applies that cap.
    """

    def __init__(self, text: TextEncoder, image: ImageEncoder):
        super().__init__()
        if not isinstance(text, TextEncoder) or not isinstance(image, ImageEncoder):
            raise ValueError(f"text must be a TextEncoder and image an ImageEncoder, got {type(text).__name__} and "
                             f"{type(image).__name__}")
        if text.project.out_features != image.project.out_features:
            raise ValueError(f"the encoders' embed_dim must match, got text {text.project.out_features} and image "
                             f"{image.project.out_features}")
        self.text, self.image = text, image
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    @property
    def temperature(self) -> torch.Tensor:
        return 1 / self.logit_scale.clamp(max=math.log(100.0)).exp()

    def forward(self, images: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor | None = None):
        """(image embeddings (B, embed_dim), text embeddings (B, embed_dim))."""
        return self.image(images), self.text.embed(ids, mask)
