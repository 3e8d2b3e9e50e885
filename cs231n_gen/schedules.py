r"""Where in time to train and where to step when sampling.

Training draws t per example: uniformly, or from a **logit-normal**
t = sigmoid(m + s n), n ~ N(0, 1) (Esser et al. 2024), which concentrates effort on the
middle noise levels where the loss is hardest, optionally followed by the **shift**

.. math::  t' = \frac{s\,t}{1 + (s - 1)\,t},

which moves every t towards noise for s > 1 (and fixes 0 and 1). Sampling walks a
decreasing grid from t = 1 (noise) to t = 0 (data); the same shift applied to the grid
spends more steps at high noise.

Why the shift, and why s = sqrt(pixel-count ratio): for x_t = (1 - t) x + t z the
signal-to-noise ratio is SNR(t) = (1 - t)^2 / t^2 per pixel. Upsampling an image by k in
each direction adds no information, and averaging a k x k block of x_t recovers the
low-resolution pixel with the noise's standard deviation divided by k: the
high-resolution image is k^2 times *less* noisy than its SNR(t) suggests. Matching the
low-resolution SNR, k^2 (1 - t')^2 / t'^2 = (1 - t)^2 / t^2, gives exactly the shift
above with s = k (:func:`snr_matching_shift`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from numbers import Real

from ._validate import check_device, check_dtype, check_generator, check_int, check_real, check_tensor


def uniform_t(n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """n training times drawn from U[0, 1]."""
    n = check_int("n", n, minimum=1)
    device = check_device("device", device)
    generator = check_generator("generator", generator, device)
    return torch.rand(n, generator=generator, device=device)


def time_grid(steps: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """The sampling grid [1, 1 - 1/T, ..., 1/T, 0]: ``steps + 1`` points, T = ``steps``.

    An Euler sampler evaluates the velocity at the first ``steps`` points and steps by
    1/T each time, so it ends exactly at t = 0. (The slide's
    ``torch.linspace(1, 0, num_steps)`` has spacing 1/(T - 1) while stepping 1/T: an
    off-by-one that evaluates the model at t = 0 and never quite reaches it.)
    """
    steps = check_int("steps", steps, minimum=1)
    return torch.linspace(1.0, 0.0, steps + 1, device=check_device("device", device), dtype=check_dtype("dtype", dtype))


def logit_normal_t(n: int, m: float = 0.0, s: float = 1.0, generator: torch.Generator | None = None,
                   device=None) -> torch.Tensor:
    """n training times t = sigmoid(m + s n), n ~ N(0, 1): median sigmoid(m), mass in the middle."""
    n = check_int("n", n, minimum=1)
    m = check_real("m", m)
    s = check_real("s", s, minimum=0.0, strict_min=True)
    device = check_device("device", device)
    generator = check_generator("generator", generator, device)
    return torch.sigmoid(m + s * torch.randn(n, generator=generator, device=device))


def logit_normal_density(t: torch.Tensor, m: float = 0.0, s: float = 1.0) -> torch.Tensor:
    """The density of t = sigmoid(m + s n) at t in (0, 1) (for plotting samplers)."""
    t = check_tensor("t", t)
    m = check_real("m", m)
    s = check_real("s", s, minimum=0.0, strict_min=True)
    if bool(((t <= 0) | (t >= 1)).any()):
        raise ValueError("t must lie strictly inside (0, 1) for the logit-normal density")
    logit = torch.log(t / (1 - t))
    return torch.exp(-0.5 * ((logit - m) / s) ** 2) / (s * math.sqrt(2 * math.pi) * t * (1 - t))


def _times(t) -> torch.Tensor:
    """A number or a tensor of times as a floating tensor (values checked by the caller)."""
    if isinstance(t, bool) or not isinstance(t, (Real, torch.Tensor)):
        raise ValueError(f"t must be a number or a tensor of times, got {t!r}")
    if not isinstance(t, torch.Tensor):
        t = torch.as_tensor(t, dtype=torch.get_default_dtype())
    return check_tensor("t", t)


def shift_time(t, shift: float) -> torch.Tensor:
    """t' = shift * t / (1 + (shift - 1) t): towards noise for shift > 1; fixes 0 and 1."""
    shift = check_real("shift", shift, minimum=0.0, strict_min=True)
    t = _times(t)
    if bool(((t < 0) | (t > 1)).any()):
        raise ValueError("t must lie in [0, 1]")
    return _shift(t, shift)


def _shift(t: torch.Tensor, shift: float) -> torch.Tensor:
    """The shift without input checks (no host sync: training calls it every step).

    Clamped, since in floating point shift / (1 + (shift - 1)) can land a hair outside [0, 1].
    Its inverse is the shift by 1 / shift.
    """
    return (shift * t / (1 + (shift - 1) * t)).clamp(0.0, 1.0)


def shifted_time_grid(steps: int, shift: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """:func:`time_grid` with every point shifted: more of the steps at high noise."""
    return shift_time(time_grid(steps, device=device, dtype=dtype), shift)


def snr_matching_shift(low_pixels: int, high_pixels: int) -> float:
    """The shift s that gives a high-resolution image the SNR its low-resolution version
    has at the unshifted t: s = sqrt(high_pixels / low_pixels) (= k for k-fold upsampling)."""
    low = check_int("low_pixels", low_pixels, minimum=1)
    high = check_int("high_pixels", high_pixels, minimum=1)
    return math.sqrt(high / low)


class TimeSampler:
    r"""A training-time distribution of t: ``uniform`` or ``logit_normal`` (m, s), then shifted.

    ``sampler(n, generator, device)`` draws n times; ``sampler.density(t)`` is their
    density, for plots. With u from the base distribution, t = shift_time(u, shift), so

    .. math::  p(t) = p_u\big(u(t)\big)\,\frac{du}{dt}, \qquad
               u(t) = \frac{t}{s - (s - 1) t}, \qquad \frac{du}{dt} = \frac{s}{(s - (s - 1) t)^2}.
    """

    KINDS = ("uniform", "logit_normal")

    def __init__(self, kind: str = "uniform", m: float = 0.0, s: float = 1.0, shift: float = 1.0):
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {self.KINDS}, got {kind!r}")
        self.kind = kind
        self.m = check_real("m", m)
        self.s = check_real("s", s, minimum=0.0, strict_min=True)
        self.shift = check_real("shift", shift, minimum=0.0, strict_min=True)

    def __repr__(self) -> str:
        base = "uniform" if self.kind == "uniform" else f"logit-normal(m={self.m:g}, s={self.s:g})"
        return base + (f", shift {self.shift:g}" if self.shift != 1.0 else "")

    def __call__(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        if self.kind == "uniform":
            u = uniform_t(n, generator=generator, device=device)
        else:
            u = logit_normal_t(n, self.m, self.s, generator=generator, device=device)
        return u if self.shift == 1.0 else _shift(u, self.shift)

    def density(self, t) -> torch.Tensor:
        """p(t) at t strictly inside (0, 1)."""
        t = _times(t)
        if bool(((t <= 0) | (t >= 1)).any()):
            raise ValueError("t must lie strictly inside (0, 1) for a density")
        u = _shift(t, 1.0 / self.shift)  # the inverse shift
        jacobian = self.shift / (self.shift - (self.shift - 1) * t) ** 2
        base = torch.ones_like(u) if self.kind == "uniform" else logit_normal_density(u, self.m, self.s)
        return base * jacobian


def block_snr(images: torch.Tensor, t: float, block: int = 1, generator: torch.Generator | None = None) -> float:
    r"""Measured signal-to-noise ratio of noisy images after averaging ``block`` x ``block`` pixels.

    Noises (n, c, h, w) ``images`` as x_t = (1 - t) x + t z, averages non-overlapping
    blocks of x_t and of its clean part (1 - t) x, and returns
    mean(signal^2) / mean((x_t - signal)^2). With block = 1 this is about
    SNR(t) E[x^2]; averaging k x k blocks of independent noise divides its power by
    k^2, while a smooth (upsampled) image keeps its signal: the SNR rises k^2-fold.
    """
    images = check_tensor("images", images, ndim=4)
    if images.numel() == 0:
        raise ValueError(f"images must hold at least one pixel, got shape {tuple(images.shape)}")
    t = check_real("t", t, minimum=0.0, maximum=1.0, strict_min=True)
    generator = check_generator("generator", generator, images.device)
    block = check_int("block", block, minimum=1)
    if images.shape[-1] % block or images.shape[-2] % block:
        raise ValueError(f"block must divide the images' size {tuple(images.shape[-2:])}, got {block}")
    signal = (1 - t) * images
    noisy = signal + t * torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    if block > 1:
        signal, noisy = F.avg_pool2d(signal, block), F.avg_pool2d(noisy, block)
    return float(signal.square().mean() / (noisy - signal).square().mean())
