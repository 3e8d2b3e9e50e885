r"""Samplers: turn noise into data by integrating the learned velocity.

The model predicts v(x_t, t) ~ dx_t/dt. Sampling starts at x_1 ~ N(0, I) and walks the
grid t_0 = 1 > t_1 > ... > t_T = 0 with Euler steps

.. math::  x_{t_{i+1}} = x_{t_i} - (t_i - t_{i+1})\, v(x_{t_i}, t_i),

which on the uniform grid is the slide's ``sample = sample - v / num_steps``.
"""
from __future__ import annotations

import torch

from ._validate import check_int, check_points, check_tensor
from .schedules import time_grid


def _check_times(times: torch.Tensor) -> torch.Tensor:
    times = check_tensor("times", times, ndim=1)
    if times.shape[0] < 2:
        raise ValueError(f"times must hold at least 2 points, got {times.shape[0]}")
    if bool((times[1:] >= times[:-1]).any()):
        raise ValueError("times must be strictly decreasing (sampling runs from t = 1 to t = 0)")
    if bool((times < 0).any()) or bool((times > 1).any()):
        raise ValueError(f"times must lie in [0, 1], got [{times.min().item():.4g}, {times.max().item():.4g}]")
    return times


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
        x: (n, d) starting noise x_1.
        steps: number of uniform steps T (grid [1, 1 - 1/T, ..., 0]).
        times: instead of ``steps``, an explicit decreasing grid ending where you like.
        return_trajectory: also return every intermediate state.

    Returns:
        x_0 of shape (n, d); with ``return_trajectory``, a tuple
        ``(x_0, trajectory, times)`` where trajectory has shape (len(times), n, d) and
        trajectory[i] is the state at times[i] (trajectory[0] is the input noise).
    """
    x = check_points("x", x)
    if (steps is None) == (times is None):
        raise ValueError("give exactly one of steps (an int >= 1) or times (a decreasing grid)")
    if times is None:
        steps = check_int("steps", steps, minimum=1)
        times = time_grid(steps, device=x.device, dtype=x.dtype)
    else:
        times = _check_times(times).to(device=x.device, dtype=x.dtype)
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
