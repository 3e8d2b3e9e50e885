r"""The diffusion transformer (DiT), read top to bottom: tokens, embedders, block, final layer, model.

A latent x of shape (C, H, W) is cut into non-overlapping p x p patches; each patch,
flattened, is one token of p * p * C numbers (:func:`patchify`), so the sequence holds
(H / p) * (W / p) tokens. A linear layer lifts tokens to the model width, fixed 2D sin-cos
position embeddings say where each token sits, transformer blocks mix them, and a final
linear layer maps every token back to a patch (:func:`unpatchify`): the output has the
input's shape (a velocity, for rectified flow).

**Time** always enters the way the slides call most common for the diffusion step: each
block *predicts a scale and shift* from it (adaptive layer norm). DiT's adaLN-Zero form
predicts six vectors per block from the condition c (width H),

.. math::  (\beta_1, \gamma_1, \alpha_1, \beta_2, \gamma_2, \alpha_2) = W\,\mathrm{SiLU}(c) + b,
           \qquad W \in \mathbb{R}^{6H \times H}

(6 H^2 + 6 H parameters per block), and uses them as

.. math::  x \leftarrow x + \alpha_1 \odot \mathrm{Attn}\big(\mathrm{LN}(x) \odot (1 + \gamma_1) + \beta_1\big),
           \qquad x \leftarrow x + \alpha_2 \odot \mathrm{MLP}\big(\mathrm{LN}(x) \odot (1 + \gamma_2) + \beta_2\big).

W and b start at zero, so every gate alpha is 0 and every block is the identity at
initialisation; the final linear layer starts at zero too, so the untrained model
outputs exactly 0 whatever its input and conditioning.

**The other condition** (a class label, or a sequence of context vectors such as a
caption's token embeddings, with a padding mask) enters one of four ways, the
constructor's ``conditioning``:

* ``"adaln"``: pooled to one vector and added to the time embedding, so it drives the
  scales and shifts (DiT's best class-conditional model);
* ``"in_context"``: its vectors become extra tokens in the same sequence, processed by
  the same weights, dropped at the output (DiT's in-context variant);
* ``"cross"``: image tokens attend to the context in a cross-attention layer between
  self-attention and MLP (the context itself is not updated; zero-initialised output, so
  the block stays the identity at initialisation);
* ``"joint"``: image and context tokens attend jointly over their concatenation, but
  each stream has its own norms, projections and MLP (the MM-DiT block of SD3 and FLUX).

Context positions where the mask is False are never attended to, and the context gets
no position embedding: reordering context tokens together with their mask leaves the
image tokens' output unchanged. A row whose mask is all False means "no caption": it is
conditioned on a learned null vector, the same as calling the model without context.

A class label y in 0..num_classes-1 becomes a context of one learned vector; label
``num_classes`` is the null label of classifier-free guidance (with :class:`~cs231n_gen.guidance.Guided`
guidance acts on every output channel: the output is one tensor of the input's shape).
"""
from __future__ import annotations

import torch
from torch import nn

from .._validate import (as_time, check_bool, check_int, check_model_input, check_model_labels, check_real,
                         check_width_and_heads)
from .mlp import FourierTimeEmbedding
from .layers import (Attention, FinalLayer, LayerNorm, adaln_norm, attend, embed_context, feed_forward,
                     modulate)

CONDITIONINGS = ("adaln", "in_context", "cross", "joint")


# ------------------------------------------------------------------------------ tokens
def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, (H/p) (W/p), p p C): row-major patches, each flattened (row, column, channel)."""
    x = check_model_input("x", x, (None, None, None, None))
    p = check_int("p", p, minimum=1)
    b, c, h, w = x.shape
    if h % p or w % p:
        raise ValueError(f"x's height and width must be divisible by p={p}, got shape {tuple(x.shape)}")
    x = x.reshape(b, c, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(tokens: torch.Tensor, p: int, h: int, w: int) -> torch.Tensor:
    """The exact inverse of :func:`patchify`: (B, (h/p) (w/p), p p C) -> (B, C, h, w)."""
    tokens = check_model_input("tokens", tokens, (None, None, None))
    p = check_int("p", p, minimum=1)
    h = check_int("h", h, minimum=1)
    w = check_int("w", w, minimum=1)
    if h % p or w % p:
        raise ValueError(f"h and w must be divisible by p={p}, got h={h}, w={w}")
    b, n, d = tokens.shape
    if n != (h // p) * (w // p) or d % (p * p):
        raise ValueError(f"tokens must be shaped (B, {(h // p) * (w // p)}, p*p*C) for p={p}, h={h}, w={w}, got "
                         f"{tuple(tokens.shape)}")
    c = d // (p * p)
    x = tokens.reshape(b, h // p, w // p, p, p, c)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(b, c, h, w)


def sincos_position_embedding(dim: int, rows: int, cols: int) -> torch.Tensor:
    r"""Fixed 2D sin-cos embeddings, (rows * cols, dim) in :func:`patchify`'s token order.

    Half of the features encode the row, half the column, each as
    :math:`[\sin(\omega_k i), \cos(\omega_k i)]_k` with :math:`\omega_k = 10000^{-k / (dim/4)}`.
    """
    dim = check_int("dim", dim, minimum=4)
    if dim % 4:
        raise ValueError(f"dim must be divisible by 4 (sin and cos for rows and columns), got {dim}")
    rows = check_int("rows", rows, minimum=1)
    cols = check_int("cols", cols, minimum=1)
    omega = 10000.0 ** (-torch.arange(dim // 4, dtype=torch.float32) / (dim // 4))

    def encode(positions):
        angles = positions.float()[:, None] * omega[None]
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)

    r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    return torch.cat([encode(r.flatten()), encode(c.flatten())], dim=1)


# -------------------------------------------------------------------------- the block
class DiTBlock(nn.Module):
    """One transformer block with adaLN-Zero modulation from the condition vector c.

    ``kind`` "adaln" and "in_context" use self-attention and MLP; "cross" adds a
    cross-attention to the context after self-attention; "joint" gives the context its
    own weights and attends over image and context tokens together.
    """

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, kind: str = "adaln"):
        super().__init__()
        width, heads = check_width_and_heads(width, heads)
        mlp_ratio = check_real("mlp_ratio", mlp_ratio, minimum=0.0, strict_min=True)
        if kind not in ("adaln", "cross", "joint"):
            raise ValueError(f"kind must be 'adaln', 'cross' or 'joint', got {kind!r}")
        self.kind, self.width = kind, width
        self.norm1, self.norm2 = adaln_norm(width), adaln_norm(width)
        self.attn, self.mlp = Attention(width, heads), feed_forward(width, mlp_ratio)
        # adaLN-Zero: six vectors from c, all zero at initialisation (every block the identity).
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
        nn.init.zeros_(self.modulation[1].weight)
        nn.init.zeros_(self.modulation[1].bias)
        if kind == "cross":
            self.norm_cross = LayerNorm(width, eps=1e-6)
            self.cross = Attention(width, heads)
            nn.init.zeros_(self.cross.out.weight)
            nn.init.zeros_(self.cross.out.bias)
        if kind == "joint":  # the context stream's own weights, modulated by the same c
            self.ctx_norm1, self.ctx_norm2 = adaln_norm(width), adaln_norm(width)
            self.ctx_qkv, self.ctx_out = nn.Linear(width, 3 * width), nn.Linear(width, width)
            self.ctx_mlp = feed_forward(width, mlp_ratio)
            self.ctx_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
            nn.init.zeros_(self.ctx_modulation[1].weight)
            nn.init.zeros_(self.ctx_modulation[1].bias)

    def forward(self, x, c, context=None, context_mask=None, key_mask=None):
        """x (B, N, width) tokens, c (B, width) the condition vector.

        ``context`` (B, L, width) with ``context_mask`` (B, L) bool (True = a real token)
        is read by a "cross" or "joint" block (ignored by an "adaln" block); ``key_mask``
        (B, N) bool hides some of x's own tokens from self-attention (padded context
        tokens appended in context). Returns the new x, or (x, context) for a "joint"
        block given a context.
        """
        context_mask = self._checked(x, c, context, context_mask, key_mask)
        return self._forward(x, c, context, context_mask, key_mask)

    def _checked(self, x, c, context, context_mask, key_mask):
        """Check a direct call's inputs (the DiT checks its own and calls :meth:`_forward`);
        returns the context mask (all True when a context comes without one)."""
        check_model_input("x", x, (None, None, self.width))
        n = x.shape[0]
        check_model_input("c", c, (None, self.width))
        if c.shape[0] != n:
            raise ValueError(f"c must have one row per example of x ({n} rows), got {c.shape[0]}")
        if context is not None:
            check_model_input("context", context, (n, None, self.width))
        for name, mask, length in (("context_mask", context_mask, None if context is None else context.shape[1]),
                                   ("key_mask", key_mask, x.shape[1])):
            if mask is None:
                continue
            if length is None:
                raise ValueError(f"{name} was given without a context to mask")
            if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.shape != (n, length):
                raise ValueError(f"{name} must be a bool tensor of shape ({n}, {length}), got {mask!r:.80}")
        if context is not None and context_mask is None:
            context_mask = torch.ones(context.shape[:2], dtype=torch.bool, device=context.device)
        return context_mask

    def _forward(self, x, c, context, context_mask, key_mask=None):
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c).chunk(6, dim=-1)
        if self.kind == "joint" and context is not None:
            return self._joint(x, c, context, context_mask, (shift1, scale1, gate1, shift2, scale2, gate2))
        # Phase 1: self-attention over the tokens (in context: image and context tokens alike).
        h = modulate(self.norm1(x), shift1, scale1)
        x = x + gate1[:, None] * self.attn(h, key_mask=key_mask)
        # Phase 2 (cross only): the image tokens read the context.
        if self.kind == "cross" and context is not None:
            x = x + self.cross(self.norm_cross(x), context, key_mask=context_mask)
        # Phase 3: the MLP on every token.
        return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))

    def _joint(self, x, c, context, context_mask, mods):
        shift1, scale1, gate1, shift2, scale2, gate2 = mods
        cshift1, cscale1, cgate1, cshift2, cscale2, cgate2 = self.ctx_modulation(c).chunk(6, dim=-1)
        n = x.shape[1]
        # Phase 1: each stream projects its own queries, keys and values; attention runs over both.
        h = modulate(self.norm1(x), shift1, scale1)
        q, (k, v) = self.attn.q(h), self.attn.kv(h).chunk(2, dim=-1)
        cq, ck, cv = self.ctx_qkv(modulate(self.ctx_norm1(context), cshift1, cscale1)).chunk(3, dim=-1)
        keep = torch.cat([torch.ones(x.shape[:2], dtype=torch.bool, device=x.device), context_mask], dim=1)
        out = attend(torch.cat([q, cq], 1), torch.cat([k, ck], 1), torch.cat([v, cv], 1), self.attn.heads, keep)
        x = x + gate1[:, None] * self.attn.out(out[:, :n])
        context = context + cgate1[:, None] * self.ctx_out(out[:, n:])
        # Phase 2: each stream's own MLP.
        x = x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))
        context = context + cgate2[:, None] * self.ctx_mlp(modulate(self.ctx_norm2(context), cshift2, cscale2))
        return x, context


# ---------------------------------------------------------------------------- the model
class DiT(nn.Module):
    """A diffusion transformer f(x_t, t, y or context) -> a tensor shaped like x_t.

    Args:
        input_size: H = W of the latent (e.g. 8 for an 8 x 8 x 4 latent).
        in_channels: C of the latent.
        patch_size: p; input_size must be divisible by it ((input_size / p)^2 tokens).
        width: H, the token width (divisible by heads and by 4).
        depth: number of blocks.
        heads: attention heads.
        mlp_ratio: the MLP's hidden width over ``width``.
        num_classes: class-conditional model: y in 0..num_classes-1, num_classes = null.
        context_dim: context-conditional model: forward takes ``context`` (B, L,
            context_dim) and ``context_mask`` (B, L) bool (True = a real token). Exactly
            one of num_classes and context_dim, or neither (unconditional, only time).
        conditioning: how the label or context enters, one of "adaln", "in_context",
            "cross", "joint" (see the module docstring).
        pooled_context: with "cross" or "joint", also add the mean of the kept context
            vectors to the time embedding, so the whole caption drives the scales and shifts
            too (SD3 and FLUX add a pooled text vector so).
    """

    def __init__(self, input_size: int = 8, in_channels: int = 4, patch_size: int = 2, width: int = 128,
                 depth: int = 4, heads: int = 4, mlp_ratio: float = 4.0, num_classes: int | None = None,
                 context_dim: int | None = None, conditioning: str = "adaln", pooled_context: bool = False):
        super().__init__()
        self.input_size = check_int("input_size", input_size, minimum=1)
        self.in_channels = check_int("in_channels", in_channels, minimum=1)
        self.patch_size = check_int("patch_size", patch_size, minimum=1)
        if self.input_size % self.patch_size:
            raise ValueError(f"input_size must be divisible by patch_size={self.patch_size}, got {self.input_size}")
        width, heads = check_width_and_heads(width, heads, multiple_of=4, why="sin-cos position embeddings")
        depth = check_int("depth", depth, minimum=1)
        mlp_ratio = check_real("mlp_ratio", mlp_ratio, minimum=0.0, strict_min=True)
        if conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {conditioning!r}")
        if num_classes is not None and context_dim is not None:
            raise ValueError("give num_classes (labels) or context_dim (context vectors), not both")
        self.num_classes = None if num_classes is None else check_int("num_classes", num_classes, minimum=1)
        self.context_dim = None if context_dim is None else check_int("context_dim", context_dim, minimum=1)
        self.pooled_context = check_bool("pooled_context", pooled_context)
        if self.pooled_context and conditioning not in ("cross", "joint"):
            raise ValueError(f"pooled_context needs conditioning 'cross' or 'joint' (adaln always pools), got "
                             f"{conditioning!r}")
        self.conditioning, self.width = conditioning, width
        grid = self.input_size // self.patch_size
        patch_numbers = self.patch_size ** 2 * self.in_channels

        # Tokens: patches lifted to the width, plus fixed positions.
        self.embed = nn.Linear(patch_numbers, width)
        self.register_buffer("positions", sincos_position_embedding(width, grid, grid), persistent=False)
        # Time: Fourier features, then an MLP to the width.
        self.time_embed = nn.Sequential(FourierTimeEmbedding(64, max_frequency=1000.0), nn.Linear(64, width),
                                        nn.SiLU(), nn.Linear(width, width))
        # The other condition: a learned vector per label (the last one is the null label), or context vectors.
        if self.num_classes is not None:
            self.label_embed = nn.Embedding(self.num_classes + 1, width)
        if self.context_dim is not None:
            self.context_embed = nn.Linear(self.context_dim, width)
            self.null_context = nn.Parameter(torch.zeros(width))  # stands for "no caption" (guidance's null)
        block_kind = conditioning if conditioning in ("cross", "joint") else "adaln"
        self.blocks = nn.ModuleList(DiTBlock(width, heads, mlp_ratio, block_kind) for _ in range(depth))
        self.final = FinalLayer(width, patch_numbers)

    @property
    def null_label(self) -> int | None:
        """The label meaning "no condition" (None unless class-conditional)."""
        return self.num_classes

    @property
    def sequence_length(self) -> int:
        """Image tokens per example: (input_size / patch_size)^2."""
        return (self.input_size // self.patch_size) ** 2

    def _context(self, n, device, y, context, context_mask):
        """The condition as (B, L, width) vectors and a (B, L) mask, or (None, None)."""
        if self.num_classes is not None:
            if context is not None or context_mask is not None:
                raise ValueError("this DiT takes labels y (num_classes was given), not context")
            if y is None:
                y = torch.full((n,), self.num_classes, device=device, dtype=torch.long)
            y = check_model_labels("y", y, n, self.num_classes)
            return self.label_embed(y.long().to(device))[:, None], torch.ones(n, 1, dtype=torch.bool, device=device)
        if self.context_dim is not None:
            if y is not None:
                raise ValueError("this DiT takes context (context_dim was given), not labels y")
            if context is None:  # the null condition: one learned vector
                return self.null_context.expand(n, 1, -1), torch.ones(n, 1, dtype=torch.bool, device=device)
            context = check_model_input("context", context, (None, None, self.context_dim))
            if context.shape[0] != n or context.shape[1] < 1:
                raise ValueError(f"context must be shaped ({n}, L, {self.context_dim}) with L >= 1, got "
                                 f"{tuple(context.shape)}")
            if context_mask is None:
                context_mask = torch.ones(context.shape[:2], dtype=torch.bool, device=context.device)
            if not isinstance(context_mask, torch.Tensor) or context_mask.dtype != torch.bool \
                    or context_mask.shape != context.shape[:2]:
                got = (f"a {context_mask.dtype} tensor of shape {tuple(context_mask.shape)}"
                       if isinstance(context_mask, torch.Tensor) else repr(context_mask))
                raise ValueError(f"context_mask must be a bool tensor of shape {tuple(context.shape[:2])}, got {got}")
            return embed_context(self.context_embed(context), context_mask, self.null_context)
        if y is not None or context is not None or context_mask is not None:
            raise ValueError("this DiT is unconditional (neither num_classes nor context_dim was given)")
        return None, None

    @torch.no_grad()
    def cross_attention_maps(self, x: torch.Tensor, t, context: torch.Tensor,
                             context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Where the image tokens look in the context: (depth, B, N, L) weights, averaged over heads.

        Entry [k, b, i, j] is how much image token i of example b attends to context token
        j in block k's cross-attention (rows sum to 1 over the kept tokens). Only for
        ``conditioning="cross"`` with a context.
        """
        if self.conditioning != "cross" or self.context_dim is None:
            raise ValueError(f"cross_attention_maps needs a DiT with context_dim and conditioning='cross', got "
                             f"conditioning={self.conditioning!r}, context_dim={self.context_dim}")
        if context is None:
            raise ValueError("context must be given (the maps are over its tokens), got None")
        records = []
        for block in self.blocks:
            block.cross.record = records
        try:
            self(x, t, context=context, context_mask=context_mask)
        finally:
            for block in self.blocks:
                block.cross.record = None
        return torch.stack(records)[..., :context.shape[1]]  # the appended null token dropped

    def forward(self, x: torch.Tensor, t, y: torch.Tensor | None = None, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = check_model_input("x", x, (None, self.in_channels, self.input_size, self.input_size))
        n = x.shape[0]
        t = as_time("t", t, n, x, check_values=x.device.type == "cpu")
        ctx, mask = self._context(n, x.device, y, context, context_mask)

        # Phase 1: tokens and the condition vector c.
        tokens = self.embed(patchify(x, self.patch_size)) + self.positions
        c = self.time_embed(t)
        if ctx is not None and (self.conditioning == "adaln" or self.pooled_context):  # mean of the kept vectors
            weights = mask.float()[..., None]
            c = c + (ctx * weights).sum(1) / weights.sum(1)
        n_image = tokens.shape[1]
        if ctx is not None and self.conditioning == "in_context":
            tokens = torch.cat([tokens, ctx], dim=1)
            mask = torch.cat([torch.ones(n, n_image, dtype=torch.bool, device=x.device), mask], dim=1)
        # Phase 2: the blocks.
        for block in self.blocks:  # (inputs checked above: the blocks' unchecked path)
            if self.conditioning == "joint" and ctx is not None:
                tokens, ctx = block._forward(tokens, c, ctx, mask)
            elif self.conditioning == "cross" and ctx is not None:
                tokens = block._forward(tokens, c, ctx, mask)
            else:
                tokens = block._forward(tokens, c, None, None, mask if self.conditioning == "in_context" else None)
        # Phase 3: back to patches, then to the latent's shape.
        out = self.final(tokens[:, :n_image], c)
        return unpatchify(out, self.patch_size, self.input_size, self.input_size)
