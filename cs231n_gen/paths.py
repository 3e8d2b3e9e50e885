r"""Interpolation paths between data and noise, in the lecture's time convention.

Time runs the lecture's way: t = 0 is clean data x, t = 1 is pure noise z ~ N(0, I).
The rectified-flow path is the straight line

.. math::  x_t = (1 - t)\,x + t\,z, \qquad v = \frac{d x_t}{dt} = z - x,

and a network f(x_t, t) is trained to regress v with the squared error
:math:`L = \mathbb{E}\,\|f(x_t, t) - (z - x)\|^2`. Sampling integrates
dx/dt = f(x, t) backwards from t = 1 to t = 0 (see :mod:`cs231n_gen.sampling`).

Generalized diffusion (:class:`DiffusionPath`) replaces the line by any Gaussian path
x_t = a(t) x + b(t) z and the velocity by any target y = c(t) x + d(t) z:
:func:`rectified_flow`, variance preserving :func:`vp_cosine` and :func:`vp_linear`
(DDPM's betas in continuous time), variance exploding :func:`ve`; targets x, eps, v,
velocity and score, with exact conversions between them.
"""
from __future__ import annotations

import math

import torch

from numbers import Real

from ._validate import (as_time, check_batch, check_callable, check_generator, check_instance, check_one_of,
                        check_points, check_real, check_same_shape, check_tensor, per_row)


def interpolate(x: torch.Tensor, z: torch.Tensor, t) -> torch.Tensor:
    """x_t = (1 - t) x + t z for a batch (x, z: (n, d) or (n, C, H, W); t: number, (n,) or (n, 1))."""
    x = check_batch("x", x)
    z = check_same_shape("z", z, x, "x")
    t = per_row(as_time("t", t, x.shape[0], x), x)
    return (1 - t) * x + t * z


def velocity_target(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The regression target v = z - x: the straight line's velocity from data to noise."""
    x = check_batch("x", x)
    z = check_same_shape("z", z, x, "x")
    return z - x


def rectified_flow_loss(
    model,
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    z: torch.Tensor | None = None,
    t: torch.Tensor | None = None,
) -> torch.Tensor:
    """The rectified-flow training loss on one batch of data ``x`` of shape (n, d) or (n, C, H, W).

    Draws z ~ N(0, I) and t ~ U[0, 1] per example (or uses the given ones), forms
    x_t = (1 - t) x + t z and returns mean_n ||model(x_t, t) - (z - x)||^2 (squared
    error summed over an example's coordinates, averaged over the batch).
    """
    check_callable("model", model, "a model called as model(x_t, t)")
    x = check_batch("x", x)
    generator = check_generator("generator", generator, x.device)
    if z is None:
        z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    if t is None:
        t = torch.rand(x.shape[0], generator=generator, device=x.device, dtype=x.dtype)
    xt = interpolate(x, z, t)
    t = as_time("t", t, x.shape[0], x, check_values=False)
    v = model(xt, t)
    if not isinstance(v, torch.Tensor) or v.shape != x.shape:
        raise ValueError(
            f"model must return a tensor of shape {tuple(x.shape)}, got "
            f"{tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__}"
        )
    return (z - x - v).square().flatten(1).sum(dim=1).mean()


# --------------------------------------------------------------------------------------
# Generalized diffusion: any path x_t = a(t) x + b(t) z, any target y = c(t) x + d(t) z.
# --------------------------------------------------------------------------------------

TARGETS = ("x", "eps", "v", "velocity", "score")


def check_target(name: str, target) -> str:
    """``target`` if it is one of :data:`TARGETS`, else a ValueError naming the argument."""
    return check_one_of(name, target, TARGETS)


def check_path(path) -> "DiffusionPath":
    """``path`` if it is a :class:`DiffusionPath`, else a ValueError."""
    return check_instance("path", path, DiffusionPath, "a cs231n_gen.paths.DiffusionPath")


class DiffusionPath:
    r"""A Gaussian path between data (t = 0) and noise (t = 1): x_t = a(t) x + b(t) z.

    Every diffusion model in the lecture's table is such a path plus a regression target
    y = c(t) x + d(t) z, trained with ||f(x_t, t) - y||^2. The targets (``TARGETS``):

    =============  =====================  ==========================================
    ``x``          c = 1, d = 0           the clean data (a denoiser)
    ``eps``        c = 0, d = 1           the noise (DDPM's epsilon-prediction)
    ``v``          c = -b, d = a          v = a z - b x (Salimans and Ho 2022)
    ``velocity``   c = a', d = b'         dx_t / dt (rectified flow: z - x)
    ``score``      c = 0, d = -1 / b      grad log p_t(x_t) = -E[z | x_t] / b
    =============  =====================  ==========================================

    The optimal prediction of any target is c E[x | x_t] + d E[z | x_t], and since
    x_t = a E[x | x_t] + b E[z | x_t] holds too, a prediction of one target fixes both
    expectations by solving a 2 x 2 system (:meth:`to_x_eps`), hence every other target
    (:meth:`convert`). The system is singular where a d - b c = 0 (x-prediction at
    b = 0, eps-prediction at a = 0): conversions need t strictly inside (0, 1).

    Args:
        name: shown in plots and errors.
        a, b: callables t -> a(t), b(t) on tensors.
        da, db: their derivatives.
    """

    def __init__(self, name: str, a, b, da, db):
        self.name = name
        self._a, self._b, self._da, self._db = a, b, da, db

    def __repr__(self) -> str:
        return f"DiffusionPath({self.name})"

    def _t(self, t, name: str = "t") -> torch.Tensor:
        """A public method's time: a number or a float tensor with values in [0, 1]."""
        if isinstance(t, bool) or not isinstance(t, (Real, torch.Tensor)):
            raise ValueError(f"{name} must be a number or a tensor of times in [0, 1], got {t!r}")
        if not isinstance(t, torch.Tensor):
            t = torch.tensor(float(t), dtype=torch.get_default_dtype())
        check_tensor(name, t)
        if bool(((t < 0) | (t > 1)).any()):
            raise ValueError(f"{name} must lie in [0, 1] (0 = data, 1 = noise), got values in "
                             f"[{t.min().item():.4g}, {t.max().item():.4g}]")
        return t

    def a(self, t) -> torch.Tensor:
        return self._a(self._t(t))

    def b(self, t) -> torch.Tensor:
        return self._b(self._t(t))

    def da(self, t) -> torch.Tensor:
        return self._da(self._t(t))

    def db(self, t) -> torch.Tensor:
        return self._db(self._t(t))

    def snr(self, t) -> torch.Tensor:
        """a(t)^2 / b(t)^2 (infinite at a time where b = 0, such as t = 0 on most paths)."""
        t = self._t(t)
        return (self._a(t) / self._b(t)) ** 2

    def t_at_log_snr(self, log_snr) -> torch.Tensor:
        """The times where log(a^2 / b^2) takes the given values (bisection; SNR falls with t)."""
        if isinstance(log_snr, bool) or not isinstance(log_snr, (Real, torch.Tensor)):
            raise ValueError(f"log_snr must be a number or a tensor, got {log_snr!r}")
        target = check_tensor("log_snr", torch.as_tensor(log_snr, dtype=torch.float64)).double()
        lo = torch.full_like(target, 1e-9)
        hi = torch.full_like(target, 1 - 1e-9)
        for _ in range(60):
            mid = (lo + hi) / 2
            above = torch.log((self._a(mid) / self._b(mid)) ** 2) > target  # still too little noise: go later
            lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
        return ((lo + hi) / 2).to(torch.get_default_dtype())

    def interpolate(self, x: torch.Tensor, z: torch.Tensor, t) -> torch.Tensor:
        """x_t = a(t) x + b(t) z for a batch (t: number or (n,))."""
        x = check_points("x", x)
        z = check_same_shape("z", z, x, "x")
        t = as_time("t", t, x.shape[0], x)[:, None]
        return self._a(t) * x + self._b(t) * z

    def target_coefficients(self, target: str, t) -> tuple[torch.Tensor, torch.Tensor]:
        """(c(t), d(t)) of ``target`` (one of ``TARGETS``)."""
        check_target("target", target)
        return self._coefficients(target, self._t(t))

    def _coefficients(self, target: str, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if target == "x":
            return torch.ones_like(t), torch.zeros_like(t)
        if target == "eps":
            return torch.zeros_like(t), torch.ones_like(t)
        if target == "v":
            return -self._b(t), self._a(t)
        if target == "velocity":
            return self._da(t), self._db(t)
        return torch.zeros_like(t), -1.0 / self._b(t)  # the score

    def target(self, target: str, x: torch.Tensor, z: torch.Tensor, t) -> torch.Tensor:
        """y = c(t) x + d(t) z: the regression target for a batch."""
        check_target("target", target)
        x = check_points("x", x)
        z = check_same_shape("z", z, x, "x")
        t = as_time("t", t, x.shape[0], x)[:, None]
        c, d = self._coefficients(target, t)
        return c * x + d * z

    def _checked(self, y, target, x_t, t):
        """The public conversions' inputs, checked: x_t points, y of its shape, t in [0, 1] where
        the target can be converted (a d - b c != 0, coefficients finite)."""
        check_target("target", target)
        x_t = check_points("x_t", x_t)
        y = check_same_shape("y", y, x_t, "x_t")
        t = as_time("t", t, x_t.shape[0], x_t, rows_of="x_t")
        tt = t.double()[:, None]
        c, d = self._coefficients(target, tt)
        det = self._a(tt) * d - self._b(tt) * c
        if not bool(torch.isfinite(det).all()) or bool((det.abs() < 1e-6).any()):
            raise ValueError(f"t must lie where a {target!r} prediction on the {self.name} path can be converted "
                             f"(a d - b c != 0): use t strictly inside (0, 1), got values in "
                             f"[{t.min().item():.4g}, {t.max().item():.4g}]")
        return y, x_t, t

    def to_x_eps(self, y: torch.Tensor, target: str, x_t: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        r"""(x̂, ẑ) from a prediction ``y`` of ``target`` at x_t.

        Solves [a b; c d] [x̂; ẑ] = [x_t; y]: x̂ = (d x_t - b y) / (a d - b c),
        ẑ = (a y - c x_t) / (a d - b c).
        """
        y, x_t, t = self._checked(y, target, x_t, t)
        return self._to_x_eps(y, x_t, target=target, t=t)

    def _to_x_eps(self, y, x_t, *, target, t):
        """:meth:`to_x_eps` without input checks (samplers call it every step)."""
        t = t[:, None] if t.ndim == 1 else t
        a, b = self._a(t), self._b(t)
        c, d = self._coefficients(target, t)
        det = a * d - b * c
        return (d * x_t - b * y) / det, (a * y - c * x_t) / det

    def convert(self, y: torch.Tensor, source: str, dest: str, x_t: torch.Tensor, t) -> torch.Tensor:
        """A prediction of ``source`` turned into the equivalent prediction of ``dest``."""
        check_target("source", source)
        check_target("dest", dest)
        y, x_t, t = self._checked(y, source, x_t, t)
        x_hat, z_hat = self._to_x_eps(y, x_t, target=source, t=t)
        c, d = self._coefficients(dest, t[:, None])
        out = c * x_hat + d * z_hat
        if not bool(torch.isfinite(out).all()):
            raise ValueError(f"dest {dest!r} is undefined at some of these times on the {self.name} path "
                             "(the score needs b(t) > 0)")
        return out

    def loss(self, model, x: torch.Tensor, target: str, generator: torch.Generator | None = None, *,
             z: torch.Tensor | None = None, t: torch.Tensor | None = None, t_range=(0.0, 1.0)) -> torch.Tensor:
        """The generic diffusion loss mean_n ||model(x_t, t) - (c x + d z)||^2.

        ``t`` defaults to U[t_range] per example (keep it away from where the target
        blows up: the score at b = 0).
        """
        check_callable("model", model, "a model called as model(x_t, t)")
        x = check_points("x", x)
        check_target("target", target)
        generator = check_generator("generator", generator, x.device)
        if z is None:
            z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        else:
            z = check_same_shape("z", z, x, "x")
        if t is None:
            if not isinstance(t_range, (tuple, list)) or len(t_range) != 2:
                raise ValueError(f"t_range must be a pair (low, high), got {t_range!r}")
            lo = check_real("t_range[0]", t_range[0], minimum=0.0, maximum=1.0)
            hi = check_real("t_range[1]", t_range[1], minimum=0.0, maximum=1.0)
            if not lo < hi:
                raise ValueError(f"t_range must have low < high, got {t_range!r}")
            t = lo + (hi - lo) * torch.rand(x.shape[0], generator=generator, device=x.device, dtype=x.dtype)
        else:  # only times from outside are checked (the check reads values back to the host)
            t = as_time("t", t, x.shape[0], x)
        tt = t[:, None]
        c, d = self._coefficients(target, tt)
        y = c * x + d * z
        pred = model(self._a(tt) * x + self._b(tt) * z, t)
        if not isinstance(pred, torch.Tensor) or pred.shape != x.shape:
            raise ValueError(f"model must return a tensor of shape {tuple(x.shape)}, got "
                             f"{tuple(pred.shape) if isinstance(pred, torch.Tensor) else type(pred).__name__}")
        return (pred - y).square().sum(dim=1).mean()


def rectified_flow() -> DiffusionPath:
    """a = 1 - t, b = t: the straight line (velocity target c = -1, d = 1)."""
    return DiffusionPath("rectified flow", lambda t: 1 - t, lambda t: t,
                         lambda t: -torch.ones_like(t), lambda t: torch.ones_like(t))


def vp_cosine() -> DiffusionPath:
    """Variance preserving, a = cos(pi t / 2), b = sin(pi t / 2): a^2 + b^2 = 1."""
    h = math.pi / 2
    return DiffusionPath("VP cosine", lambda t: torch.cos(h * t), lambda t: torch.sin(h * t),
                         lambda t: -h * torch.sin(h * t), lambda t: h * torch.cos(h * t))


def vp_linear(beta_min: float = 0.1, beta_max: float = 20.0) -> DiffusionPath:
    r"""Variance preserving with DDPM's linear betas in continuous time (Song et al. 2021).

    beta(t) = beta_min + t (beta_max - beta_min), alpha_bar(t) = exp(-int_0^t beta),
    a = sqrt(alpha_bar), b = sqrt(1 - alpha_bar). 1000 DDPM steps with betas from 1e-4
    to 0.02 are this path at t = i / 1000 (beta_i = beta(t_i) / 1000).
    """
    beta_min = check_real("beta_min", beta_min, minimum=0.0, strict_min=True)
    beta_max = check_real("beta_max", beta_max, minimum=beta_min)

    def integral(t):
        return beta_min * t + 0.5 * (beta_max - beta_min) * t**2

    def beta(t):
        return beta_min + (beta_max - beta_min) * t

    def a(t):
        return torch.exp(-0.5 * integral(t))

    def b(t):
        return torch.sqrt(-torch.expm1(-integral(t)))

    def da(t):
        return -0.5 * beta(t) * a(t)

    def db(t):
        return 0.5 * beta(t) * torch.exp(-integral(t)) / b(t)

    return DiffusionPath(f"VP linear beta ({beta_min:g}..{beta_max:g})", a, b, da, db)


def ve(sigma_min: float = 0.01, sigma_max: float = 50.0) -> DiffusionPath:
    """Variance exploding: a = 1, b = sigma_min (sigma_max / sigma_min)^t (geometric)."""
    sigma_min = check_real("sigma_min", sigma_min, minimum=0.0, strict_min=True)
    sigma_max = check_real("sigma_max", sigma_max, minimum=sigma_min, strict_min=True)
    log_ratio = math.log(sigma_max / sigma_min)
    return DiffusionPath(f"VE ({sigma_min:g}..{sigma_max:g})", lambda t: torch.ones_like(t),
                         lambda t: sigma_min * torch.exp(log_ratio * t),
                         lambda t: torch.zeros_like(t),
                         lambda t: sigma_min * log_ratio * torch.exp(log_ratio * t))
