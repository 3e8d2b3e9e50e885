"""Layers the model files share, each computing the same numbers at any CPU thread count.

A training run may move to fewer threads when another program starts
(:class:`cs231n_gen.threads.LoadFollower`), but only if that leaves its result alone.
Two of torch's fused CPU kernels split a sum over the batch into per-thread pieces, so
their last bits depend on the count; these layers compute the same thing in a way that
does not.

:class:`LayerNorm` is ``torch.nn.LayerNorm`` with its affine part applied as its own
multiply and add: y = LN(x) * gamma + beta. The fused kernel sums gamma's and beta's
gradients over the rows in per-thread pieces; the separate multiply-add sums them
through autograd's reductions, one output element per thread.

:class:`Conv2d` and :class:`ConvTranspose2d` run torch's own kernels, except for the
weight's gradient: the convolution kernel sums it over the batch in per-thread pieces,
so here it is computed with one thread (the same kernel, called through
``torch.nn.grad``), and the bias's gradient as a plain sum over batch and pixels. A
pointwise (1 x 1) convolution's output is a matrix product here: torch's 1 x 1 kernel
splits its sum over channels by thread. The input's gradient and the other
convolutions' outputs have the same bits at any count already.

:class:`BatchNorm1d` and :class:`BatchNorm2d` compute a batch's statistics as plain means
over the batch (and pixels), where torch's fused kernel sums them in per-thread pieces;
the running statistics are updated as torch's are (momentum, unbiased variance).

:class:`GroupNorm` computes each group's mean and variance as plain means over the group's
channels and pixels: torch's fused kernel sums the input's gradient in per-thread pieces.

All of them keep the torch layer's parameters and state dict.

**The transformers' pieces** (the DiT, the video DiT and the text encoder share them):
:func:`modulate` (adaLN's per-example scale and shift), :func:`attend` (multi-head softmax
attention with a key mask), :class:`Attention` (its projections), :func:`feed_forward` (the
MLP), :func:`adaln_norm` (a layer norm whose affine part comes from the modulation),
:class:`FinalLayer` (tokens back to patches) and :func:`embed_context` (a context with the
null vector that stands for "no caption"). They trust their inputs: the models' forwards
check them once.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._validate import check_bool, check_int, check_real, check_width_and_heads


def _check_size(name: str, value, minimum: int):
    """An int, or a pair of ints, each >= ``minimum`` (a kernel size, stride, padding...)."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        return tuple(check_int(f"{name}[{i}]", v, minimum=minimum) for i, v in enumerate(value))
    return check_int(name, value, minimum=minimum)


def _check_conv(in_channels, out_channels, kernel_size, stride, padding, dilation, bias) -> dict:
    return dict(in_channels=check_int("in_channels", in_channels, minimum=1),
                out_channels=check_int("out_channels", out_channels, minimum=1),
                kernel_size=_check_size("kernel_size", kernel_size, 1), stride=_check_size("stride", stride, 1),
                padding=_check_size("padding", padding, 0), dilation=_check_size("dilation", dilation, 1),
                bias=check_bool("bias", bias))


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` over the last dimension (``width`` features) whose results do not depend
    on the CPU thread count (see the module)."""

    def __init__(self, width: int, eps: float = 1e-5, elementwise_affine: bool = True):
        super().__init__(check_int("width", width, minimum=1), eps=check_real("eps", eps, minimum=0.0, strict_min=True),
                         elementwise_affine=check_bool("elementwise_affine", elementwise_affine))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x, self.normalized_shape, None, None, self.eps)
        if self.weight is not None:
            y = y * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y


def _one_thread(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` computed by one thread (its sums then have one order)."""
    before = torch.get_num_threads()
    if before == 1:
        return fn(*args, **kwargs)
    torch.set_num_threads(1)
    try:
        return fn(*args, **kwargs)
    finally:
        torch.set_num_threads(before)


def _plain(size, value: int) -> bool:
    """Whether a stride, padding or dilation (an int or a pair) is ``value`` along both axes."""
    return all(v == value for v in (size if isinstance(size, (tuple, list)) else (size, size)))


class _Convolution(torch.autograd.Function):
    """y = conv(x, W) + b (``transposed``: the transposed convolution), with W's gradient summed by one thread."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, transposed):
        ctx.save_for_backward(x, weight)
        ctx.geometry, ctx.transposed, ctx.has_bias = (stride, padding, dilation), transposed, bias is not None
        if transposed:
            return F.conv_transpose2d(x, weight, bias, stride, padding, 0, 1, dilation)
        if weight.shape[2:] == (1, 1) and _plain(stride, 1) and _plain(padding, 0) and _plain(dilation, 1):
            # A pointwise convolution is a matrix product per image: torch's 1x1 kernel splits its
            # sum over channels by thread, the product does not.
            n, _, h, w = x.shape
            y = torch.matmul(weight.flatten(1), x.flatten(2)).view(n, weight.shape[0], h, w)
            return y if bias is None else y + bias[:, None, None]
        return F.conv2d(x, weight, bias, stride, padding, dilation)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        stride, padding, dilation = ctx.geometry
        grad_x = grad_w = grad_b = None
        if ctx.transposed:  # x = conv(y-side grad, W) read backwards: the roles of x and grad swap
            if ctx.needs_input_grad[0]:
                grad_x = F.conv2d(grad, weight, None, stride, padding, dilation)
            if ctx.needs_input_grad[1]:
                grad_w = _one_thread(torch.nn.grad.conv2d_weight, grad, weight.shape, x, stride, padding, dilation)
        else:
            if ctx.needs_input_grad[0]:
                grad_x = torch.nn.grad.conv2d_input(x.shape, weight, grad, stride, padding, dilation)
            if ctx.needs_input_grad[1]:
                grad_w = _one_thread(torch.nn.grad.conv2d_weight, x, weight.shape, grad, stride, padding, dilation)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None, None, None, None


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (one group, zero padding) whose results do not depend on the CPU thread count (see the module)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 bias: bool = True):
        super().__init__(**_check_conv(in_channels, out_channels, kernel_size, stride, padding, dilation, bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Convolution.apply(x, self.weight, self.bias, self.stride, self.padding, self.dilation, False)


class ConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` (one group, zero padding, no output padding) whose results do not
    depend on the CPU thread count (see the module)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 bias: bool = True):
        super().__init__(**_check_conv(in_channels, out_channels, kernel_size, stride, padding, dilation, bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Convolution.apply(x, self.weight, self.bias, self.stride, self.padding, self.dilation, True)


class _PlainBatchNorm:
    """Batch norm from plain reductions: y = (x - mean) / sqrt(var + eps) * gamma + beta, with the
    batch's mean and (biased) variance over every axis but the channels' in training, the
    running ones in evaluation; the running statistics move by ``momentum`` (None: the
    cumulative average), the variance unbiased, as torch's do."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        dims = [0, *range(2, x.ndim)]
        shape = [1, -1] + [1] * (x.ndim - 2)
        if self.training or not self.track_running_stats:
            mean, var = x.mean(dims), x.var(dims, unbiased=False)
            if self.training and self.track_running_stats:
                with torch.no_grad():
                    self.num_batches_tracked += 1
                    rate = (1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum)
                    n = x.numel() / x.shape[1]
                    self.running_mean.mul_(1 - rate).add_(rate * mean)
                    self.running_var.mul_(1 - rate).add_(rate * var * (n / max(n - 1, 1)))
        else:
            mean, var = self.running_mean, self.running_var
        y = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


class BatchNorm1d(_PlainBatchNorm, nn.BatchNorm1d):
    """``nn.BatchNorm1d`` over (n, features) whose results do not depend on the CPU thread count (see the module)."""

    def __init__(self, features: int, eps: float = 1e-5, momentum: float | None = 0.1):
        super().__init__(check_int("features", features, minimum=1),
                         eps=check_real("eps", eps, minimum=0.0, strict_min=True),
                         momentum=None if momentum is None else check_real("momentum", momentum, minimum=0.0,
                                                                           maximum=1.0))


class BatchNorm2d(_PlainBatchNorm, nn.BatchNorm2d):
    """``nn.BatchNorm2d`` over (n, channels, H, W) whose results do not depend on the CPU thread count (see the
    module)."""

    def __init__(self, channels: int, eps: float = 1e-5, momentum: float | None = 0.1):
        super().__init__(check_int("channels", channels, minimum=1),
                         eps=check_real("eps", eps, minimum=0.0, strict_min=True),
                         momentum=None if momentum is None else check_real("momentum", momentum, minimum=0.0,
                                                                           maximum=1.0))


class GroupNorm(nn.GroupNorm):
    """``nn.GroupNorm``: y = (x - mean) / sqrt(var + eps) * gamma + beta, the mean and (biased)
    variance over each sample's group of ``channels / groups`` channels and all its pixels, whose
    results do not depend on the CPU thread count (see the module)."""

    def __init__(self, groups: int, channels: int, eps: float = 1e-5, affine: bool = True):
        groups, channels = check_int("groups", groups, minimum=1), check_int("channels", channels, minimum=1)
        if channels % groups:
            raise ValueError(f"channels must be divisible by groups={groups}, got {channels}")
        super().__init__(groups, channels, eps=check_real("eps", eps, minimum=0.0, strict_min=True),
                         affine=check_bool("affine", affine))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            raise ValueError(f"x must be shaped (n, {self.num_channels}, ...), got {tuple(x.shape)}")
        grouped = x.reshape(x.shape[0], self.num_groups, -1)
        var, mean = torch.var_mean(grouped, -1, unbiased=False, keepdim=True)
        y = ((grouped - mean) * torch.rsqrt(var + self.eps)).reshape(x.shape)
        if self.affine:
            shape = [1, -1] + [1] * (x.ndim - 2)
            y = torch.addcmul(self.bias.view(shape), y, self.weight.view(shape))
        return y


# ---------------------------------------------------------------- the transformers' pieces
def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x (B, N, H) scaled by (1 + scale) and shifted, per example: scale and shift are (B, H)."""
    return x * (1 + scale[:, None]) + shift[:, None]


def _heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, N, H) -> (B, heads, N, H / heads)."""
    b, n, width = t.shape
    return t.reshape(b, n, heads, width // heads).transpose(1, 2)


def attend(q, k, v, heads: int, key_mask: torch.Tensor | None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v per head: q (B, Nq, H), k and v (B, Nk, H); key_mask (B, Nk), True = attend."""
    b, nq, width = q.shape
    mask = None if key_mask is None else key_mask[:, None, None, :]
    out = F.scaled_dot_product_attention(_heads(q, heads), _heads(k, heads), _heads(v, heads), attn_mask=mask)
    return out.transpose(1, 2).reshape(b, nq, width)


def attention_weights(q, k, heads: int, key_mask: torch.Tensor | None) -> torch.Tensor:
    """The softmax weights :func:`attend` uses, averaged over heads: (B, Nq, Nk), rows sum to 1."""
    width = q.shape[-1]
    scores = _heads(q, heads) @ _heads(k, heads).transpose(-1, -2) / (width // heads) ** 0.5
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    return scores.softmax(-1).mean(1)


class Attention(nn.Module):
    """Self-attention (``context`` None) or cross-attention to ``context``; key_mask masks keys.

    With ``record`` set to a list, every call appends its attention weights (B, Nq, Nk),
    averaged over heads (for looking at, not for training: it costs a second pass).
    """

    def __init__(self, width: int, heads: int):
        super().__init__()
        width, self.heads = check_width_and_heads(width, heads)
        self.record = None
        self.q, self.kv, self.out = nn.Linear(width, width), nn.Linear(width, 2 * width), nn.Linear(width, width)

    def forward(self, x, context=None, key_mask=None):
        q = self.q(x)
        k, v = self.kv(x if context is None else context).chunk(2, dim=-1)
        if self.record is not None:
            self.record.append(attention_weights(q, k, self.heads, key_mask).detach())
        return self.out(attend(q, k, v, self.heads, key_mask))


def feed_forward(width: int, ratio: float) -> nn.Sequential:
    """Linear(width -> ratio * width), GELU (tanh form), Linear back: a transformer block's MLP."""
    width = check_int("width", width, minimum=1)
    hidden = max(1, int(width * check_real("ratio", ratio, minimum=0.0, strict_min=True)))
    return nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width))


def adaln_norm(width: int) -> nn.LayerNorm:
    """Layer norm over ``width`` features without its own scale and shift (eps 1e-6): adaLN's
    modulation supplies them."""
    return nn.LayerNorm(check_int("width", width, minimum=1), elementwise_affine=False, eps=1e-6)


class FinalLayer(nn.Module):
    """Modulated layer norm, then a zero-initialised linear map from width to one patch's numbers."""

    def __init__(self, width: int, patch_numbers: int):
        super().__init__()
        width, patch_numbers = check_int("width", width, minimum=1), check_int("patch_numbers", patch_numbers,
                                                                              minimum=1)
        self.norm = adaln_norm(width)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.linear = nn.Linear(width, patch_numbers)
        for layer in (self.modulation[1], self.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x, c):
        shift, scale = self.modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


def embed_context(ctx: torch.Tensor, mask: torch.Tensor, null: torch.Tensor):
    """Append the null vector as one more context token, kept only in rows whose mask is all False.

    A row without a single real token is "no caption" (guidance's null condition, and
    caption dropout in training): it then attends to the null vector alone, exactly as
    when no context is given at all.
    """
    empty = ~mask.any(1, keepdim=True)
    ctx = torch.cat([ctx, null.to(ctx.dtype).expand(ctx.shape[0], 1, -1)], dim=1)
    return ctx, torch.cat([mask, empty], dim=1)
