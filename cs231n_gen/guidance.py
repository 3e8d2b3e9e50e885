r"""Classifier-free guidance (Ho and Salimans 2022) for rectified-flow models.

One network learns both the conditional velocity v(x_t, y, t) and the unconditional
one v(x_t, null, t): during training each label is replaced by the null label with
probability ``p_uncond`` (:func:`drop_labels`, :func:`conditional_rf_loss`). At sampling
time the two are combined at every step,

.. math::  v_{cfg} = (1 + w)\, v(x_t, y, t) - w\, v(x_t, \varnothing, t),

which for w = 0 is the plain conditional model and for w > 0 extrapolates away from
the unconditional prediction. Since v is an affine function of the score, this is the
velocity of the sharpened distribution p(x | y)^{1+w} / p(x)^{w} ∝ p(x) p(y | x)^{1+w}
at each noise level: guidance does not sample p(x | y), it pushes samples towards
where the class is unambiguous (and loses diversity as w grows).

:func:`cfg_velocity` evaluates both branches in **one** batched forward pass of 2B
rows, which costs far less than two calls on a GPU and the same arithmetic on a CPU.
"""
from __future__ import annotations

import torch
from torch import nn

from ._validate import (as_time, check_batch, check_callable, check_generator, check_labels, check_model_input,
                        check_real, check_row_weights, per_row)
from .paths import rectified_flow_loss


def _null_label(model, null_label):
    if null_label is None:
        null_label = getattr(model, "null_label", None)
    if null_label is None or isinstance(null_label, bool) or not isinstance(null_label, int):
        raise ValueError("null_label must be an int (or the model must have an integer .null_label), "
                         f"got {null_label!r}")
    return null_label


def _labels(name: str, y, n: int, null_label: int, device, rows_of: str = "x") -> torch.Tensor:
    """Labels 0..null_label (the null label included)."""
    return check_labels(name, y, n, null_label + 1, device, rows_of=rows_of)


def drop_labels(y: torch.Tensor, p_uncond: float, null_label: int,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each label by ``null_label`` with probability ``p_uncond`` (a copy)."""
    p_uncond = check_real("p_uncond", p_uncond, minimum=0.0, maximum=1.0)
    null_label = _null_label(None, null_label)
    if null_label < 1:
        raise ValueError(f"null_label must be >= 1 (the labels 0..null_label - 1 are the classes), got {null_label}")
    y = _labels("y", y, y.numel() if isinstance(y, torch.Tensor) else 1, null_label,
                y.device if isinstance(y, torch.Tensor) else None)
    generator = check_generator("generator", generator, y.device)
    drop = torch.rand(y.shape[0], generator=generator, device=y.device) < p_uncond
    return torch.where(drop, torch.full_like(y, null_label), y)


def conditional_rf_loss(model, x: torch.Tensor, y: torch.Tensor, p_uncond: float = 0.5,
                        generator: torch.Generator | None = None, *, null_label: int | None = None,
                        z: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
    """The rectified-flow loss with labels dropped to null with probability ``p_uncond``.

    ``model(x_t, t, y)`` predicts v = z - x; the loss is E||model(x_t, t, y') - v||^2
    with y' = y or null. ``z`` and ``t`` default to fresh N(0, I) noise and U[0, 1] times.
    """
    x = check_batch("x", x)
    null_label = _null_label(model, null_label)
    y = _labels("y", y, x.shape[0], null_label, x.device)
    y_in = drop_labels(y, p_uncond, null_label, generator)
    return rectified_flow_loss(lambda x_t, t_: model(x_t, t_, y_in), x, generator, z=z, t=t)


def _guidance_inputs(model, x_t, t, y, null_label):
    """What every guided velocity checks, once: (x_t, t, y, null_label) validated, t one per row."""
    null_label = _null_label(model, null_label)
    x_t = check_batch("x_t", x_t)
    n = x_t.shape[0]
    y = _labels("y", y, n, null_label, x_t.device, rows_of="x_t")
    t = as_time("t", t, n, x_t, rows_of="x_t")
    return x_t, t, y, null_label


def cfg_velocity(model, x_t: torch.Tensor, t, y, w, *, null_label: int | None = None) -> torch.Tensor:
    """v_cfg = (1 + w) v(x_t, y, t) - w v(x_t, null, t), from one forward pass of 2B rows.

    ``w`` is one number, or one weight per row (a (B,) tensor: a guidance-distillation
    batch mixes weights). A number ``w = 0`` skips the unconditional branch (one pass of B rows).
    """
    x_t, t, y, null_label = _guidance_inputs(model, x_t, t, y, null_label)
    w = _guidance_weight(w, x_t)
    try:
        return _combine(model, x_t, t, y, w, null_label)
    except ValueError as err:
        raise ValueError(f"model rejected x_t: {err}") from err


def _guidance_weight(w, x_t: torch.Tensor):
    """A number >= 0, or a (B,) float tensor of weights >= 0 on ``x_t``'s device and dtype."""
    return check_row_weights("w", w, x_t, rows_of="x_t")


def _combine(model, x_t, t, y, w, null_label):
    """The guided velocity without input checks (samplers and training steps call this)."""
    if not isinstance(w, torch.Tensor) and w == 0.0:
        return model(x_t, t, y)
    n = x_t.shape[0]
    both = model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([y, torch.full_like(y, null_label)]))
    if isinstance(w, torch.Tensor):
        w = per_row(w, x_t)
    return (1 + w) * both[:n] - w * both[n:]


class Guided(nn.Module):
    """``Guided(model, y, w)(x_t, t)``: the guided velocity as a plain field, for samplers.

    >>> x0 = euler(Guided(model, y=labels, w=2.0), torch.randn(n, 2), steps=50)
    """

    def __init__(self, model, y, w: float, null_label: int | None = None):
        super().__init__()
        self.model = model
        self.w = check_real("w", w, minimum=0.0)
        self.null_label = _null_label(model, null_label)
        if isinstance(y, torch.Tensor):  # checked once here, not at every sampling step
            y = _labels("y", y, y.numel(), self.null_label, y.device)
        else:
            _labels("y", y, 1, self.null_label, None)
        self.y = y

    def forward(self, x_t: torch.Tensor, t) -> torch.Tensor:
        x_t = check_model_input("x_t", x_t, (None,) * (x_t.ndim if isinstance(x_t, torch.Tensor) else 2))
        if x_t.ndim < 2 or x_t.shape[0] < 1:
            raise ValueError(f"x_t must be a batch of shape (n, ...) with n >= 1, got {tuple(x_t.shape)}")
        n = x_t.shape[0]
        y = self.y
        if isinstance(y, int):
            y = torch.full((n,), y, dtype=torch.long, device=x_t.device)
        elif y.shape[0] != n:
            raise ValueError(f"x_t has {n} rows but Guided was built with {y.shape[0]} labels")
        t = as_time("t", t, n, x_t, rows_of="x_t")
        try:
            return _combine(self.model, x_t, t, y.to(x_t.device), self.w, self.null_label)
        except ValueError as err:
            raise ValueError(f"the guided model rejected x_t: {err}") from err


# ------------------------------------------------------------------ captions as the condition
def _context(name: str, context, mask, n: int, device):
    """A (n, L, d) context and its (n, L) bool mask (default: every token kept)."""
    context = check_model_input(name, context, (n, None, None))
    if mask is None:
        return context, torch.ones(context.shape[:2], dtype=torch.bool, device=context.device)
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.shape != context.shape[:2]:
        got = f"a {mask.dtype} tensor of shape {tuple(mask.shape)}" if isinstance(mask, torch.Tensor) else repr(mask)
        raise ValueError(f"{name}_mask must be a bool tensor of shape {tuple(context.shape[:2])}, got {got}")
    return context, mask


def caption_rf_loss(model, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None = None,
                    p_uncond: float = 0.1, generator: torch.Generator | None = None) -> torch.Tensor:
    """The rectified-flow loss conditioned on caption embeddings, with **caption dropout**.

    ``model(x_t, t, context=..., context_mask=...)`` (such as a :class:`~cs231n_gen.nn.DiT`
    with ``context_dim``). With probability ``p_uncond`` a caption is dropped: its mask row
    becomes all False, which the model reads as "no caption" (the null condition that
    guidance needs). ``context`` (n, L, d) holds one caption's token embeddings per row of x.
    """
    check_callable("model", model, "a model called as model(x_t, t, context=..., context_mask=...)")
    x = check_batch("x", x)
    context, context_mask = _context("context", context, context_mask, x.shape[0], x.device)
    p_uncond = check_real("p_uncond", p_uncond, minimum=0.0, maximum=1.0)
    generator = check_generator("generator", generator, x.device)
    keep = torch.rand(x.shape[0], generator=generator, device=x.device) >= p_uncond
    mask_in = context_mask & keep[:, None]
    return rectified_flow_loss(lambda x_t, t_: model(x_t, t_, context=context, context_mask=mask_in), x, generator)


class GuidedByText(nn.Module):
    """``GuidedByText(model, context, mask, w)(x_t, t)``: classifier-free guidance on a caption.

    v = (1 + w) v(x_t, caption) - w v(x_t, no caption), from one forward pass of 2B rows
    (the "no caption" rows carry an all-False mask); ``w = 0`` is one pass of B rows.
    ``context`` (B, L, d) is the captions' token embeddings, one row per sample.
    """

    def __init__(self, model, context: torch.Tensor, context_mask: torch.Tensor | None = None, w: float = 0.0):
        super().__init__()
        check_callable("model", model, "a model called as model(x_t, t, context=..., context_mask=...)")
        self.model = model
        self.w = check_real("w", w, minimum=0.0)
        n = context.shape[0] if isinstance(context, torch.Tensor) and context.ndim == 3 else None
        self.context, self.context_mask = _context("context", context, context_mask, n, None)

    def forward(self, x_t: torch.Tensor, t) -> torch.Tensor:
        x_t = check_batch("x_t", x_t)
        n = x_t.shape[0]
        if n != self.context.shape[0]:
            raise ValueError(f"x_t has {n} rows but GuidedByText was built with {self.context.shape[0]} captions")
        t = as_time("t", t, n, x_t, rows_of="x_t")
        ctx, mask = self.context.to(x_t.device), self.context_mask.to(x_t.device)
        try:
            if self.w == 0.0:
                return self.model(x_t, t, context=ctx, context_mask=mask)
            both = self.model(torch.cat([x_t, x_t]), torch.cat([t, t]), context=torch.cat([ctx, ctx]),
                              context_mask=torch.cat([mask, torch.zeros_like(mask)]))
        except ValueError as err:
            raise ValueError(f"the guided model rejected x_t: {err}") from err
        return (1 + self.w) * both[:n] - self.w * both[n:]
