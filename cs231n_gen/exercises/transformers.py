"""Lecture 06 (diffusion transformers): patchify, the adaLN-Zero block and its zero start."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from ._harness import call_student, close, exercise, fail, name_the_mistake


def _patchify(x, p, order=(0, 2, 4, 3, 5, 1)):
    """The course's patchify, ``order`` permuting (B, C, H/p, p, W/p, p) before flattening."""
    b, c, h, w = x.shape
    parts = x.reshape(b, c, h // p, p, w // p, p).permute(*order)
    return parts.reshape(b, (h // p) * (w // p), -1)


# Permutations of (B, C, H/p, p, W/p, p) that students reach for, and what each one means.
_PERMUTATION_MISTAKES = [
    ((0, 2, 4, 5, 3, 1), "the patches are transposed: inside a token, the numbers run along the patch's ROWS "
                         "first (row in patch, then column in patch, then channel)."),
    ((0, 4, 2, 3, 5, 1), "the tokens are in column order: the sequence runs along the rows of the patch grid "
                         "(token k sits at row k // (W/p), column k % (W/p))."),
    ((0, 4, 2, 5, 3, 1), "the image was transposed (height and width swapped) before cutting: both the token "
                         "order and each patch come out transposed."),
    ((0, 2, 4, 1, 3, 5), "each token is ordered (channel, row, column): the course (and DiT) orders it (row in "
                         "patch, column in patch, channel); move the channel axis last before flattening."),
]


@exercise("patchify", references=('cs231n_gen.nn.dit.patchify',))
def check_patchify(student_fn, probe):
    """Check ``patchify(x, p)``: (B, C, H, W) -> (B, H/p * W/p, p * p * C), tokens row by row,
    each token's numbers ordered (row in patch, column in patch, channel)."""
    g = probe.generator()
    cases = [(torch.randn(2, 3, 6, 4, generator=g), 2), (torch.randn(1, 4, 8, 8, generator=g), 4),
             (torch.randn(3, 2, 4, 6, generator=g), 1)]
    for x, p in cases:
        got = call_student("patchify", student_fn, x.clone(), p)
        want = _patchify(x, p)
        if not isinstance(got, torch.Tensor):
            fail(f"patchify must return a tensor, got {type(got).__name__}")
        if got.shape != want.shape:
            fail(f"patchify of a {tuple(x.shape)} input with p = {p} must have shape {tuple(want.shape)} "
                 f"(batch, (H/p) * (W/p) tokens, p * p * C numbers per token), got {tuple(got.shape)}")
        if close(got, want, 1e-6):
            continue
        b, c, h, w = x.shape
        hints = [(_patchify(x, p, order), hint) for order, hint in _PERMUTATION_MISTAKES] + [
            (x.reshape(b, (h // p) * (w // p), -1), "a plain reshape does not cut patches: it takes runs of "
                                                    "consecutive numbers. Reshape to (B, C, H/p, p, W/p, p), "
                                                    "permute, then flatten."),
            (x.permute(0, 2, 3, 1).reshape(b, (h // p) * (w // p), -1), "moving the channels last and reshaping "
                                                                        "takes runs of pixels along a row, not "
                                                                        "p x p squares. Split H and W into "
                                                                        "(H/p, p) and (W/p, p) first."),
        ]
        name_the_mistake(got, hints, 1e-6)
        fail(f"patchify({tuple(x.shape)}, p={p}) does not match the course's token layout (largest difference "
             f"{float((got - want).abs().max()):.3g}): tokens row by row over the patch grid, each the patch "
             "flattened as (row in patch, column in patch, channel).")
    return ("patchify is correct: (H/p) * (W/p) tokens, row by row, each a p x p patch flattened as (row, column, "
            "channel); unpatchify inverts it exactly.")


def _layer_norm(x):
    return F.layer_norm(x, x.shape[-1:], eps=1e-6)


def _block(x, c, modulation, attn, mlp, *, one_plus=True, order=(0, 1, 2, 3, 4, 5), gates=True, silu=True):
    """The adaLN-Zero block with deliberate variations (to recognise mistakes)."""
    chunks = modulation(F.silu(c) if silu else c)[:, None, :].chunk(6, dim=-1)
    shift1, scale1, gate1, shift2, scale2, gate2 = (chunks[k] for k in order)
    s1, s2 = (1 + scale1, 1 + scale2) if one_plus else (scale1, scale2)
    g1, g2 = (gate1, gate2) if gates else (1.0, 1.0)
    x = x + g1 * attn(_layer_norm(x) * s1 + shift1)
    return x + g2 * mlp(_layer_norm(x) * s2 + shift2)


def _block_probe(probe, width=8):
    g = probe.generator()
    x = torch.randn(3, 5, width, generator=g)
    c = torch.randn(3, width, generator=g)
    modulation = torch.nn.Linear(width, 6 * width)
    with torch.no_grad():
        modulation.weight.copy_(torch.randn(6 * width, width, generator=g) * 0.5)
        modulation.bias.copy_(torch.randn(6 * width, generator=g) * 0.5)
    attn = _ProbeAttention(torch.randn(width, width, generator=g) / width ** 0.5)
    mlp = _ProbeMLP(torch.randn(width, width, generator=g) / width ** 0.5)
    return x, c, modulation, attn, mlp


class _ProbeAttention(torch.nn.Module):
    """Stands in for attention: mixes tokens (a mean over the sequence) and features, so any mistake shows."""

    def __init__(self, mix: torch.Tensor):
        super().__init__()
        self.register_buffer("mix", mix)

    def forward(self, h):
        return (h + h.mean(1, keepdim=True)) @ self.mix


class _ProbeMLP(torch.nn.Module):
    """Stands in for the block's MLP."""

    def __init__(self, up: torch.Tensor):
        super().__init__()
        self.register_buffer("up", up)

    def forward(self, h):
        return torch.tanh(h @ self.up)


@exercise("adaln_zero_block", references=('cs231n_gen.nn.dit.DiTBlock.forward', 'cs231n_gen.nn.layers.modulate'))
def check_adaln_zero_block(student_fn, probe):
    """Check ``adaln_zero_block(x, c, modulation, attn, mlp)``: one DiT block with adaLN-Zero modulation."""
    x, c, modulation, attn, mlp = _block_probe(probe)
    # The student gets copies: a function that zeroed the modulation in place could otherwise make the
    # reference, computed afterwards, agree with it.
    got = call_student("adaln_zero_block", student_fn, x.clone(), c.clone(), copy.deepcopy(modulation),
                       copy.deepcopy(attn), copy.deepcopy(mlp))
    if not isinstance(got, torch.Tensor) or got.shape != x.shape:
        fail(f"adaln_zero_block must return the updated tokens, shape {tuple(x.shape)}, got "
             f"{tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}")
    got = got.detach()
    with torch.no_grad():
        want = _block(x, c, modulation, attn, mlp)
        if close(got, want, 1e-5):
            return ("adaln_zero_block is correct: shift, scale (as 1 + scale) and gate from SiLU(c), around "
                    "attention and around the MLP, each added back to the residual stream.")
        hints = [
            (_block(x, c, modulation, attn, mlp, one_plus=False), "the scale multiplies the normalised tokens as "
                                                                  "(1 + scale): without the 1, a zero "
                                                                  "modulation wipes the tokens out instead of "
                                                                  "leaving them alone."),
            (_block(x, c, modulation, attn, mlp, gates=False), "the gates are missing: each branch's output is "
                                                               "multiplied by its gate before it is added to x."),
            (_block(x, c, modulation, attn, mlp, silu=False), "the condition goes through SiLU before the "
                                                              "modulation layer: modulation(F.silu(c))."),
            (_block(x, c, modulation, attn, mlp, order=(1, 0, 2, 4, 3, 5)), "shift and scale are swapped: the six "
                                                                            "chunks are (shift1, scale1, gate1, "
                                                                            "shift2, scale2, gate2)."),
            (_block(x, c, modulation, attn, mlp, order=(0, 1, 2, 3, 4, 5)[:3] * 2), "the MLP reuses the attention's "
                                                                                    "shift, scale and gate: it has "
                                                                                    "its own three (chunks 4-6)."),
            (_block(x, c, modulation, attn, mlp, order=(0, 3, 1, 4, 2, 5)), "the six chunks were read in the wrong "
                                                                            "order: they are (shift1, scale1, "
                                                                            "gate1, shift2, scale2, gate2)."),
        ]
        name_the_mistake(got, hints, 1e-5)
        shift1, scale1, gate1, *_ = modulation(F.silu(c))[:, None, :].chunk(6, dim=-1)
        half = x + gate1 * attn(_layer_norm(x) * (1 + scale1) + shift1)
        if close(got, half, 1e-5):
            fail("only the attention half is there: the MLP half follows it, with its own shift, scale and gate.")
    fail(f"adaln_zero_block does not match x + g1 * attn(LN(x) * (1 + s1) + b1), then the same with the MLP "
         f"(largest difference {float((got - want).abs().max()):.3g}).")


@exercise("zero_modulation")
def check_zero_modulation(student_fn, probe):
    """Check ``zero_modulation(width)``: the block's modulation layer, Linear(width, 6 * width), zero-initialised."""
    width = int(probe.uniform(5, 40))
    layer = call_student("zero_modulation", student_fn, width)
    if not isinstance(layer, torch.nn.Linear):
        fail(f"zero_modulation must return a torch.nn.Linear, got {type(layer).__name__}")
    if (layer.in_features, layer.out_features) != (width, 6 * width):
        fail(f"the modulation layer maps the condition (width {width}) to six vectors of width {width}: "
             f"Linear({width}, {6 * width}), got Linear({layer.in_features}, {layer.out_features})")
    if layer.bias is None:
        fail("keep the bias (bias=True): it is what the modulation learns first, the same for every condition.")
    x, c, _, attn, mlp = _block_probe(probe, width)
    with torch.no_grad():
        out = _block(x, c, layer, attn, mlp)
    weight_zero = bool((layer.weight == 0).all())
    bias_zero = bool((layer.bias == 0).all())
    gates_zero = bool((layer.bias[2 * width:3 * width] == 0).all() and (layer.bias[5 * width:] == 0).all()
                      and (layer.weight[2 * width:3 * width] == 0).all() and (layer.weight[5 * width:] == 0).all())
    if weight_zero and bias_zero and torch.equal(out, x):
        return ("zero_modulation is correct: every shift, scale and gate starts at 0, so the block is the identity "
                "at initialisation whatever the condition.")
    if not gates_zero:
        fail("the gates do not start at zero, so the block is not the identity at initialisation: zero the "
             "layer's weight AND bias (torch.nn.init.zeros_ on both).")
    fail("the gates start at zero (the block is the identity), but the shifts and scales do not: adaLN-Zero "
         "zero-initialises the whole layer, weight and bias, so the first updates see the plain block.")
