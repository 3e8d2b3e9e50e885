r"""A video diffusion transformer: the DiT of :mod:`~cs231n_gen.nn.dit` with a time axis.

A clip's latents are (T, C, H, W): every frame encoded on its own by the image
autoencoder. Each frame is cut into p x p patches as in the DiT, so the clip becomes
T * (H/p) * (W/p) **space-time tokens**, each with a 2D position (where in the frame)
and a 1D frame embedding (when), both fixed sin-cos; the frame embedding is added where
time is mixed (to the tokens for full attention, to the temporal attention's input when
factorised, so the per-frame path stays the image model's). How the tokens attend is the
constructor's ``attention``:

* ``"full"``: every token attends to every token of the clip, one sequence of
  N_total = T N tokens: the attention core costs O(T^2 N^2);
* ``"factorised"``: first **spatial** attention within each frame (T sequences of N
  tokens), then **temporal** attention along each patch position's frame history (N
  sequences of T tokens): O(T N^2 + N T^2), linear in T for a fixed frame size. Each
  kind gets its own adaLN-Zero scale, shift and gate.

Text enters as in the image DiT with ``conditioning="cross"``: cross-attention from every
token to the caption's token embeddings (and with ``pooled_context`` also the caption's
mean vector added to the time embedding). A row whose mask is all False is "no caption".

:func:`inflate` builds a video DiT from a trained image DiT of the same size, the way
video models start from text-to-image models: every per-frame weight is copied and the
temporal attention's gate starts at zero, so the new model is exactly the image model
applied to each frame until training opens the time axis.
"""
from __future__ import annotations

import torch
from torch import nn

from .._validate import (as_time, check_bool, check_int, check_keeps_a_token, check_model_input, check_real,
                         check_width_and_heads)
from .dit import DiT, patchify, sincos_position_embedding, unpatchify
from .layers import Attention, FinalLayer, LayerNorm, adaln_norm, embed_context, feed_forward, modulate
from .mlp import FourierTimeEmbedding

ATTENTIONS = ("full", "factorised")


def sincos_frame_embedding(dim: int, frames: int) -> torch.Tensor:
    r"""Fixed 1D sin-cos embeddings of frame indices, (frames, dim): :math:`[\sin(\omega_k f), \cos(\omega_k f)]_k`."""
    dim = check_int("dim", dim, minimum=2)
    if dim % 2:
        raise ValueError(f"dim must be even (sin and cos), got {dim}")
    frames = check_int("frames", frames, minimum=1)
    omega = 10000.0 ** (-torch.arange(dim // 2, dtype=torch.float32) / (dim // 2))
    angles = torch.arange(frames, dtype=torch.float32)[:, None] * omega[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class VideoBlock(nn.Module):
    """One block over (B, T, N, width) tokens: self-attention (full, or spatial then temporal),
    cross-attention to the caption, MLP; adaLN-Zero on every self-attention and the MLP."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, attention: str = "factorised"):
        super().__init__()
        width, heads = check_width_and_heads(width, heads, multiple_of=2, why="sin-cos frame embeddings")
        mlp_ratio = check_real("mlp_ratio", mlp_ratio, minimum=0.0, strict_min=True)
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
        self.attention, self.width = attention, width
        branches = 3 if attention == "factorised" else 2  # (spatial, temporal,) MLP
        self.norm1, self.norm2 = adaln_norm(width), adaln_norm(width)
        self.attn, self.mlp = Attention(width, heads), feed_forward(width, mlp_ratio)
        if attention == "factorised":
            self.norm_time, self.attn_time = adaln_norm(width), Attention(width, heads)
        self.norm_cross, self.cross = LayerNorm(width, eps=1e-6), Attention(width, heads)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 3 * branches * width))
        for layer in (self.modulation[1], self.cross.out):  # the identity at initialisation
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x, c, context, context_mask):
        """x (B, T, N, width) tokens, c (B, width) the condition, context (B, L, width) with its
        (B, L) bool mask (True = a token to attend to; every row needs one)."""
        self._checked(x, c, context, context_mask)
        return self._forward(x, c, context, context_mask)

    def _checked(self, x, c, context, context_mask) -> None:
        """Check a direct call's inputs (the VideoDiT checks its own and calls :meth:`_forward`)."""
        check_model_input("x", x, (None, None, None, self.width))
        b = x.shape[0]
        check_model_input("c", c, (None, self.width))
        if c.shape[0] != b:
            raise ValueError(f"c must have one row per example of x ({b} rows), got {c.shape[0]}")
        check_model_input("context", context, (None, None, self.width))
        if context.shape[0] != b:
            raise ValueError(f"context must have one row per example of x ({b} rows), got {context.shape[0]}")
        if not isinstance(context_mask, torch.Tensor) or context_mask.dtype != torch.bool \
                or context_mask.shape != context.shape[:2]:
            raise ValueError(f"context_mask must be a bool tensor of shape {tuple(context.shape[:2])}, got "
                             f"{context_mask!r:.80}")
        check_keeps_a_token("context_mask", context_mask)

    def _forward(self, x, c, context, context_mask):
        b, frames, n, width = x.shape
        mods = self.modulation(c).chunk(9 if self.attention == "factorised" else 6, dim=-1)
        flat = lambda t: t.reshape(b, frames * n, width)  # noqa: E731
        # Phase 1: self-attention, over the whole clip (full) or within each frame (factorised).
        shift, scale, gate = mods[:3]
        h = modulate(flat(self.norm1(x)), shift, scale)
        if self.attention == "full":
            out = self.attn(h).view(b, frames, n, width)
        else:
            out = self.attn(h.reshape(b * frames, n, width)).view(b, frames, n, width)
        x = x + gate[:, None, None] * out
        # Phase 2 (factorised): attention over time, one sequence of T tokens per patch position.
        if self.attention == "factorised":
            shift, scale, gate = mods[3:6]
            h = modulate(flat(self.norm_time(x)), shift, scale).view(b, frames, n, width)
            h = h + sincos_frame_embedding(width, frames).to(h)[None, :, None]  # when: only time attention needs it
            h = h.transpose(1, 2).reshape(b * n, frames, width)
            out = self.attn_time(h).view(b, n, frames, width).transpose(1, 2)
            x = x + gate[:, None, None] * out
        # Phase 3: every token reads the caption.
        x = x + self.cross(flat(self.norm_cross(x)), context, key_mask=context_mask).view(b, frames, n, width)
        # Phase 4: the MLP on every token.
        shift, scale, gate = mods[-3:]
        mlp_out = self.mlp(modulate(flat(self.norm2(x)), shift, scale)).view(b, frames, n, width)
        return x + gate[:, None, None] * mlp_out


class VideoDiT(nn.Module):
    """A text-conditioned video diffusion transformer f(x_t, t, context) -> a tensor shaped like x_t.

    Args:
        frames: T, frames per clip (the frame embeddings are fixed for it).
        input_size, in_channels, patch_size: each frame's latent is (in_channels,
            input_size, input_size), cut into patch_size x patch_size patches.
        width, depth, heads, mlp_ratio: the transformer's size.
        context_dim: size of the caption's token embeddings.
        attention: "full" or "factorised" (see the module docstring).
        pooled_context: also add the mean of the kept context vectors to the time embedding.
    """

    def __init__(self, frames: int, input_size: int = 8, in_channels: int = 4, patch_size: int = 2,
                 width: int = 64, depth: int = 4, heads: int = 4, mlp_ratio: float = 4.0, context_dim: int = 64,
                 attention: str = "factorised", pooled_context: bool = False):
        super().__init__()
        self.pooled_context = check_bool("pooled_context", pooled_context)
        self.frames = check_int("frames", frames, minimum=1)
        self.input_size = check_int("input_size", input_size, minimum=1)
        self.in_channels = check_int("in_channels", in_channels, minimum=1)
        self.patch_size = check_int("patch_size", patch_size, minimum=1)
        if self.input_size % self.patch_size:
            raise ValueError(f"input_size must be divisible by patch_size={self.patch_size}, got {self.input_size}")
        width, heads = check_width_and_heads(width, heads, multiple_of=4, why="sin-cos position embeddings")
        depth = check_int("depth", depth, minimum=1)
        mlp_ratio = check_real("mlp_ratio", mlp_ratio, minimum=0.0, strict_min=True)
        self.context_dim = check_int("context_dim", context_dim, minimum=1)
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
        self.attention, self.width = attention, width
        grid = self.input_size // self.patch_size
        patch_numbers = self.patch_size ** 2 * self.in_channels

        # Tokens: patches lifted to the width, plus where (2D) and when (1D), both fixed.
        self.embed = nn.Linear(patch_numbers, width)
        self.register_buffer("positions", sincos_position_embedding(width, grid, grid), persistent=False)
        self.register_buffer("frame_positions", sincos_frame_embedding(width, self.frames), persistent=False)
        # Time and text, as in the image DiT.
        self.time_embed = nn.Sequential(FourierTimeEmbedding(64, max_frequency=1000.0), nn.Linear(64, width),
                                        nn.SiLU(), nn.Linear(width, width))
        self.context_embed = nn.Linear(self.context_dim, width)
        self.null_context = nn.Parameter(torch.zeros(width))
        self.blocks = nn.ModuleList(VideoBlock(width, heads, mlp_ratio, attention) for _ in range(depth))
        self.final = FinalLayer(width, patch_numbers)

    @property
    def tokens_per_frame(self) -> int:
        return (self.input_size // self.patch_size) ** 2

    @property
    def sequence_length(self) -> int:
        """Space-time tokens per clip: T (input_size / patch_size)^2."""
        return self.frames * self.tokens_per_frame

    def forward(self, x: torch.Tensor, t, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = check_model_input("x", x, (None, self.frames, self.in_channels, self.input_size, self.input_size))
        b = x.shape[0]
        t = as_time("t", t, b, x, check_values=x.device.type == "cpu")
        if context is None:
            ctx = self.null_context.expand(b, 1, -1)
            mask = torch.ones(b, 1, dtype=torch.bool, device=x.device)
        else:
            context = check_model_input("context", context, (b, None, self.context_dim))
            if context_mask is None:
                context_mask = torch.ones(context.shape[:2], dtype=torch.bool, device=context.device)
            if not isinstance(context_mask, torch.Tensor) or context_mask.dtype != torch.bool \
                    or context_mask.shape != context.shape[:2]:
                raise ValueError(f"context_mask must be a bool tensor of shape {tuple(context.shape[:2])}, got "
                                 f"{context_mask!r:.80}")
            ctx, mask = embed_context(self.context_embed(context), context_mask, self.null_context)

        # Phase 1: space-time tokens, the condition vector c (time + pooled caption).
        frames = x.reshape(b * self.frames, self.in_channels, self.input_size, self.input_size)
        tokens = self.embed(patchify(frames, self.patch_size)).view(b, self.frames, self.tokens_per_frame, self.width)
        tokens = tokens + self.positions[None, None]
        if self.attention == "full":  # one sequence: each token carries its frame index (factorised: see the block)
            tokens = tokens + self.frame_positions[None, :, None]
        c = self.time_embed(t)
        if self.pooled_context:
            weights = mask.to(ctx.dtype)[..., None]
            c = c + (ctx * weights).sum(1) / weights.sum(1)
        # Phase 2: the blocks.
        for block in self.blocks:
            tokens = block._forward(tokens, c, ctx, mask)  # (inputs checked above)
        # Phase 3: back to patches, frame by frame.
        out = self.final(tokens.reshape(b, self.sequence_length, self.width), c)
        out = out.view(b * self.frames, self.tokens_per_frame, -1)
        return unpatchify(out, self.patch_size, self.input_size, self.input_size).view(x.shape)


def inflate(image_dit: DiT, frames: int, attention: str = "factorised") -> VideoDiT:
    """A :class:`VideoDiT` that starts as ``image_dit`` applied to every frame.

    ``image_dit`` must be a text-conditioned DiT (``context_dim``, ``conditioning="cross"``).
    Embeddings, time and text layers, every block's attention, cross-attention, MLP and
    norms, and the final layer are copied; each block's modulation is copied into the
    spatial and MLP chunks, and the temporal chunks (shift, scale, gate) start at zero, so
    temporal attention adds nothing until training opens its gate. ``attention="full"``
    copies the same weights into full space-time attention (then frames do interact from
    the start).
    """
    if not isinstance(image_dit, DiT) or image_dit.context_dim is None or image_dit.conditioning != "cross":
        raise ValueError(f"image_dit must be a DiT with context_dim and conditioning='cross', got {image_dit!r:.80}")
    block = image_dit.blocks[0]
    video = VideoDiT(frames, image_dit.input_size, image_dit.in_channels, image_dit.patch_size, image_dit.width,
                     len(image_dit.blocks), block.attn.heads, block.mlp[0].out_features / image_dit.width,
                     image_dit.context_dim, attention, image_dit.pooled_context)
    video.to(next(image_dit.parameters()).device)
    state = {k: v for k, v in image_dit.state_dict().items() if ".modulation." not in k or k.startswith("final.")}
    missing, unexpected = video.load_state_dict(state, strict=False)
    if unexpected:
        raise ValueError(f"image_dit has weights the video model cannot hold: {unexpected[:4]}")
    width = image_dit.width
    with torch.no_grad():
        for image_block, video_block in zip(image_dit.blocks, video.blocks):
            for name in ("weight", "bias"):
                src = getattr(image_block.modulation[1], name)
                dst = getattr(video_block.modulation[1], name)
                dst.zero_()
                dst[:3 * width] = src[:3 * width]  # spatial (or full) attention: shift, scale, gate
                dst[-3 * width:] = src[3 * width:]  # MLP
    return video
