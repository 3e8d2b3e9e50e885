r"""Samplers: turn noise into data by integrating the learned velocity.

The model predicts v(x_t, t) ~ dx_t/dt. Sampling starts at x_1 ~ N(0, I) and walks the
grid t_0 = 1 > t_1 > ... > t_T = 0 with Euler steps

.. math::  x_{t_{i+1}} = x_{t_i} - (t_i - t_{i+1})\, v(x_{t_i}, t_i),

which on the uniform grid is the slide's ``sample = sample - v / num_steps``.

For generalized diffusion (any :class:`~cs231n_gen.paths.DiffusionPath`, any target)
the same module has DDPM ancestral sampling (:func:`ddpm`), DDIM (:func:`ddim`), the
probability-flow ODE with Euler or Heun steps (:func:`probability_flow`), the reverse
SDE with Euler-Maruyama (:func:`reverse_sde`) and annealed Langevin dynamics
(:func:`langevin`). Each converts the model's prediction to (x̂, ẑ) with
:meth:`~cs231n_gen.paths.DiffusionPath.to_x_eps`, so any model drives any sampler.

:class:`CountCalls` wraps a model and counts what a sampler asks of it: forward calls
and rows evaluated (the number of function evaluations, NFE, per sample).
"""
from __future__ import annotations

import functools
import inspect

import torch
from torch import nn

from ._validate import (check_batch, check_callable, check_generator, check_int, check_points, check_real,
                        check_sampling_times)
from .paths import check_path, check_target
from .schedules import time_grid
from .threads import following, trial_running


def _follows_load(sampler):
    """The sampler's model calls follow the machine's load (:class:`cs231n_gen.threads.FollowedCalls`):
    a long sampling loop moves to fewer threads when another program starts, never changing its result."""

    signature = inspect.signature(sampler)

    @functools.wraps(sampler)
    def wrapped(*args, **kwargs):
        try:
            call = signature.bind(*args, **kwargs)
        except TypeError:  # let the sampler word it
            return sampler(*args, **kwargs)
        model, x = call.arguments["model"], call.arguments["x"]
        if not callable(model) or not isinstance(x, torch.Tensor):  # the sampler's own checks say what is wrong
            return sampler(*args, **kwargs)
        with following(model, x.device) as call.arguments["model"]:
            return sampler(*call.args, **call.kwargs)

    return wrapped


class CountCalls(nn.Module):
    """``CountCalls(model)`` behaves like ``model`` and counts its use.

    ``calls`` is the number of forward passes, ``rows`` the number of rows (samples)
    evaluated over all of them; ``rows / n`` for a batch of ``n`` samples is the number
    of function evaluations per sample (NFE). Attributes of the model (``null_label``...)
    are read through. ``reset()`` sets both counts to 0.
    """

    def __init__(self, model):
        super().__init__()
        check_callable("model", model, "a model called as model(x_t, t, ...)")
        self.model = model
        self.calls = 0
        self.rows = 0

    def forward(self, x_t, *args, **kwargs):
        if not trial_running():  # (a load follower's trial run is not part of the sampling)
            self.calls += 1
            self.rows += int(x_t.shape[0]) if isinstance(x_t, torch.Tensor) and x_t.ndim > 0 else 1
        return self.model(x_t, *args, **kwargs)

    def reset(self) -> None:
        self.calls = self.rows = 0

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            pass
        # A module model lives in _modules, a plain function in __dict__.
        model = self.__dict__.get("_modules", {}).get("model", self.__dict__.get("model"))
        if model is None:
            raise AttributeError(f"CountCalls has no attribute {name!r} (no model wrapped yet)")
        try:
            return getattr(model, name)
        except AttributeError:
            raise AttributeError(
                f"CountCalls: neither the counter nor the wrapped model "
                f"({type(model).__name__}) has an attribute {name!r}") from None


@_follows_load
@torch.no_grad()
def euler(
    model,
    x: torch.Tensor,
    steps: int | None = None,
    *,
    times: torch.Tensor | None = None,
    return_trajectory: bool = False,
    **model_kwargs,
):
    """Integrate dx/dt = model(x, t) from t = 1 down to t = 0 with Euler steps.

    Args:
        model: callable ``model(x, t, **model_kwargs)`` with t a (n,) tensor.
        x: (n, d) or (n, C, H, W) starting noise x_1.
        steps: number of uniform steps T (grid [1, 1 - 1/T, ..., 0]).
        times: instead of ``steps``, an explicit decreasing grid ending where you like.
        return_trajectory: also return every intermediate state.

    Returns:
        x_0 of shape (n, d); with ``return_trajectory``, a tuple
        ``(x_0, trajectory, times)`` where trajectory has shape (len(times), *x.shape) and
        trajectory[i] is the state at times[i] (trajectory[0] is the input noise).
    """
    check_callable("model", model, "a model called as model(x, t)")
    x = check_batch("x", x)
    if (steps is None) == (times is None):
        raise ValueError("give exactly one of steps (an int >= 1) or times (a decreasing grid)")
    if times is None:
        steps = check_int("steps", steps, minimum=1)
        times = time_grid(steps, device=x.device, dtype=x.dtype)
    else:
        times = check_sampling_times(times).to(device=x.device, dtype=x.dtype)
    trajectory = [x] if return_trajectory else None
    n = x.shape[0]
    for i in range(times.shape[0] - 1):
        t, t_next = times[i], times[i + 1]
        v = model(x, t.expand(n), **model_kwargs)
        x = x - (t - t_next) * v
        if return_trajectory:
            trajectory.append(x)
    if return_trajectory:
        return x, torch.stack(trajectory), times
    return x


# --------------------------------------------------------------------------------------
# Samplers for any path and any prediction target (generalized diffusion).
# --------------------------------------------------------------------------------------

def _check_convertible(path, target, name, t):
    """The model's ``target`` prediction must be convertible to (x̂, ẑ) at time ``t`` (a d - b c != 0)."""
    tt = torch.tensor([t], dtype=torch.float64)
    c, d = path._coefficients(target, tt)
    det = path._a(tt) * d - path._b(tt) * c
    if not bool(torch.isfinite(det).all()) or float(det.abs()) < 1e-6:
        raise ValueError(f"{name}={t:g} is a time where a {target!r} prediction on the {path.name} path cannot be "
                         f"turned into x and eps (a d - b c = {float(det):.3g}); choose {name} strictly inside "
                         "(0, 1), e.g. 0.999")


def _setup(model, x, steps, path, target, t_start, t_end, generator=None, times=None):
    """Checked (x, grid): ``steps`` uniform steps from t_start to t_end, or the given ``times``."""
    check_callable("model", model, "callable as model(x_t, t)")
    x = check_points("x", x)
    check_path(path)
    check_target("target", target)
    check_generator("generator", generator, x.device)
    if (steps is None) == (times is None):
        raise ValueError("give exactly one of steps (an int >= 1: a uniform grid from t_start to t_end) or "
                         "times (a decreasing grid, e.g. sampling.log_snr_times(path, steps))")
    if times is not None:
        times = check_sampling_times(times).to(device=x.device, dtype=x.dtype)
        _check_convertible(path, target, "times[0]", float(times[0]))
        return x, times
    steps = check_int("steps", steps, minimum=1)
    t_start = check_real("t_start", t_start, minimum=0.0, maximum=1.0)
    t_end = check_real("t_end", t_end, minimum=0.0, maximum=1.0)
    if not t_end < t_start:
        raise ValueError(f"t_end must be < t_start (sampling runs from noise to data), got {t_end} and {t_start}")
    _check_convertible(path, target, "t_start", t_start)
    times = torch.linspace(t_start, t_end, steps + 1, device=x.device, dtype=x.dtype)
    return x, times


def log_snr_times(path, steps: int, t_start: float = 0.999, t_last: float = 0.002) -> torch.Tensor:
    r"""A sampling grid with its steps evenly spaced in log SNR, log(a^2 / b^2).

    ``steps`` points from ``t_start`` down to ``t_last``, evenly spaced in log SNR, then
    t = 0 (where the SNR is infinite): ``steps + 1`` times, ``steps`` model calls. On a
    VP path the SNR changes fastest near t = 0, where a uniform grid in t is coarsest
    relative to the change; this grid puts the steps where the noise level moves.
    """
    check_path(path)
    steps = check_int("steps", steps, minimum=2)
    t_start = check_real("t_start", t_start, minimum=0.0, maximum=1.0, strict_min=True)
    t_last = check_real("t_last", t_last, minimum=0.0, maximum=1.0, strict_min=True)
    if not t_last < t_start:
        raise ValueError(f"t_last must be < t_start, got {t_last} and {t_start}")
    ends = torch.log(path.snr(torch.tensor([t_start, t_last], dtype=torch.float64)))
    if not bool(torch.isfinite(ends).all()):
        raise ValueError(f"the {path.name} path has no finite log SNR at t_start={t_start:g} or t_last={t_last:g}; "
                         "choose both strictly inside (0, 1)")
    grid = path.t_at_log_snr(torch.linspace(float(ends[0]), float(ends[1]), steps, dtype=torch.float64))
    grid[0], grid[-1] = t_start, t_last  # the bisection's last digits
    return torch.cat([grid.float(), torch.zeros(1)])


def _x_eps(model, path, target, x, t):
    """(x̂, ẑ) from the model's prediction of ``target`` at (x, t) (t a 0-d tensor)."""
    tt = t.expand(x.shape[0])
    return path._to_x_eps(model(x, tt), x, target=target, t=tt)


def _velocity(model, path, target, x, t):
    x_hat, z_hat = _x_eps(model, path, target, x, t)
    return path._da(t) * x_hat + path._db(t) * z_hat


@_follows_load
@torch.no_grad()
def probability_flow(model, x: torch.Tensor, steps: int | None = None, *, path, target: str, method: str = "euler",
                     t_start: float = 0.999, t_end: float = 0.0, times: torch.Tensor | None = None) -> torch.Tensor:
    r"""Integrate the probability-flow ODE dx/dt = a'(t) x̂ + b'(t) ẑ from t_start down to t_end.

    x̂ and ẑ come from the model's prediction of ``target`` (:meth:`DiffusionPath.to_x_eps`);
    for rectified flow with the velocity target this is :func:`euler`. ``method="heun"``
    averages the slopes at both ends of each step (second order; the last step is a
    plain Euler step, since many targets cannot be converted at t = 0). ``times``
    replaces the uniform grid of ``steps`` (e.g. :func:`log_snr_times`).
    """
    x, times = _setup(model, x, steps, path, target, t_start, t_end, times=times)
    if method not in ("euler", "heun"):
        raise ValueError(f"method must be 'euler' or 'heun', got {method!r}")
    steps = times.shape[0] - 1
    for i in range(steps):
        t, t_next = times[i], times[i + 1]
        slope = _velocity(model, path, target, x, t)
        x_next = x + (t_next - t) * slope
        if method == "heun" and i < steps - 1:
            x_next = x + (t_next - t) * 0.5 * (slope + _velocity(model, path, target, x_next, t_next))
        x = x_next
    return x


@_follows_load
@torch.no_grad()
def ddim(model, x: torch.Tensor, steps: int | None = None, *, path, target: str, t_start: float = 0.999,
         t_end: float = 0.0, times: torch.Tensor | None = None) -> torch.Tensor:
    r"""DDIM (eta = 0): jump to the next noise level keeping the predicted noise,
    x_s = a(s) x̂ + b(s) ẑ. Deterministic; a first-order solver of the probability-flow ODE.
    ``times`` replaces the uniform grid of ``steps`` (e.g. :func:`log_snr_times`)."""
    x, times = _setup(model, x, steps, path, target, t_start, t_end, times=times)
    for i in range(times.shape[0] - 1):
        x_hat, z_hat = _x_eps(model, path, target, x, times[i])
        s = times[i + 1]
        x = path._a(s) * x_hat + path._b(s) * z_hat
    return x


@_follows_load
@torch.no_grad()
def ddpm(model, x: torch.Tensor, steps: int | None = None, *, path, target: str,
         generator: torch.Generator | None = None, t_start: float = 0.999, t_end: float = 0.0,
         times: torch.Tensor | None = None) -> torch.Tensor:
    r"""Ancestral sampling (DDPM): draw x_s ~ q(x_s | x_t, x = x̂) at each step.

    For s < t the forward process consistent with the path's marginals has
    x_t | x_s ~ N(a_{t|s} x_s, b_{t|s}^2 I) with a_{t|s} = a_t / a_s and
    b_{t|s}^2 = b_t^2 - a_{t|s}^2 b_s^2, and Bayes' rule gives the Gaussian posterior

    .. math::  q(x_s \mid x_t, x) = N\Big(\frac{a_s b_{t|s}^2}{b_t^2}\,x + \frac{a_{t|s} b_s^2}{b_t^2}\,x_t,\;
               \frac{b_{t|s}^2 b_s^2}{b_t^2} I\Big).

    With DDPM's discrete betas this is exactly Ho et al.'s sampler (beta_t = b_{t|s}^2
    for a VP path); the last step to b = 0 returns x̂. ``times`` replaces the uniform grid.
    """
    x, times = _setup(model, x, steps, path, target, t_start, t_end, generator, times=times)
    for i in range(times.shape[0] - 1):
        t, s = times[i], times[i + 1]
        x_hat, _ = _x_eps(model, path, target, x, t)
        a_t, b_t, a_s, b_s = path._a(t), path._b(t), path._a(s), path._b(s)
        a_ts = a_t / a_s
        b_ts2 = (b_t**2 - a_ts**2 * b_s**2).clamp_min(0.0)
        mean = (a_s * b_ts2 / b_t**2) * x_hat + (a_ts * b_s**2 / b_t**2) * x
        std = torch.sqrt(b_ts2 * b_s**2 / b_t**2)
        x = mean + std * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x


@_follows_load
@torch.no_grad()
def reverse_sde(model, x: torch.Tensor, steps: int | None = None, *, path, target: str,
                generator: torch.Generator | None = None, t_start: float = 0.999, t_end: float = 0.0,
                denoise: bool = True, times: torch.Tensor | None = None) -> torch.Tensor:
    r"""Euler-Maruyama on the reverse-time SDE (Song et al. 2021).

    The path's marginals come from the forward SDE dx = f(t) x dt + g(t) dw with
    f = a'/a and g^2 = (b^2)' - 2 f b^2. Its time reversal is

    .. math::  dx = [f(t)\,x - g(t)^2\,\nabla \log p_t(x)]\,dt + g(t)\,d\bar w,

    integrated from t_start down to t_end with the score from the model's prediction
    (s = -ẑ / b). With ``denoise`` the final state is replaced by its x̂ (Tweedie's
    estimate), which removes the last step's noise. ``times`` replaces the uniform grid.
    """
    x, times = _setup(model, x, steps, path, target, t_start, t_end, generator, times=times)
    t_start, t_end = float(times[0]), float(times[-1])
    if float(path._a(torch.tensor(t_start, dtype=torch.float64))) < 1e-6:
        raise ValueError(f"t_start={t_start:g} is where a(t) = 0 on the {path.name} path, so the SDE's drift a'/a is "
                         "infinite there; choose t_start < 1, e.g. 0.999")
    if denoise and t_end > 0:
        _check_convertible(path, target, "t_end", t_end)
    for i in range(times.shape[0] - 1):
        t, t_next = times[i], times[i + 1]
        dt = t_next - t  # negative
        a, b, da, db = path._a(t), path._b(t), path._da(t), path._db(t)
        f = da / a
        g2 = (2 * b * db - 2 * f * b**2).clamp_min(0.0)
        _, z_hat = _x_eps(model, path, target, x, t)
        score = -z_hat / b
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x = x + (f * x - g2 * score) * dt + torch.sqrt(g2 * -dt) * noise
    if denoise and float(path._b(times[-1])) > 0:
        x = _x_eps(model, path, target, x, times[-1])[0]
    return x


@_follows_load
@torch.no_grad()
def langevin(model, x: torch.Tensor, levels: int, steps_per_level: int, *, path, target: str,
             step_scale: float = 0.5, generator: torch.Generator | None = None, t_start: float = 0.999,
             t_end: float = 0.002, denoise: bool = True) -> torch.Tensor:
    r"""Annealed Langevin dynamics (Song and Ermon 2019) with the model's score.

    At each of ``levels`` noise levels t (from t_start down to t_end, evenly spaced in
    log SNR, i.e. a geometric sequence of noise scales) take ``steps_per_level`` steps
    x <- x + eps s(x, t) + sqrt(2 eps) n with eps = step_scale * b(t)^2 (steps scaled
    to the level's noise), where s = -ẑ / b is the score of p_t. Langevin needs
    only the score: no SDE, no ODE; it samples p_t for each t in turn, ending near
    p_data. With ``denoise`` the result is mapped to x̂ at the last level (Tweedie).
    """
    levels = check_int("levels", levels, minimum=2)
    x, _ = _setup(model, x, levels - 1, path, target, t_start, t_end, generator)
    if t_end <= 0:
        raise ValueError(f"t_end must be > 0 for Langevin (the score at b = 0 is undefined), got {t_end}")
    _check_convertible(path, target, "t_end", t_end)
    log_snr = torch.log(path.snr(torch.tensor([t_start, t_end], dtype=torch.float64)))
    times = path.t_at_log_snr(torch.linspace(float(log_snr[0]), float(log_snr[1]), levels)).to(x)
    steps_per_level = check_int("steps_per_level", steps_per_level, minimum=1)
    step_scale = check_real("step_scale", step_scale, minimum=0.0, strict_min=True)
    for t in times:
        eps = step_scale * path._b(t) ** 2
        for _ in range(steps_per_level):
            _, z_hat = _x_eps(model, path, target, x, t)
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x - eps * z_hat / path._b(t) + torch.sqrt(2 * eps) * noise
    if denoise:
        x = _x_eps(model, path, target, x, times[-1])[0]
    return x
