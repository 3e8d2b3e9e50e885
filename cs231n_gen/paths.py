r"""Interpolation paths between data and noise, in the lecture's time convention.

Time runs the lecture's way: t = 0 is clean data x, t = 1 is pure noise z ~ N(0, I).
The rectified-flow path is the straight line

.. math::  x_t = (1 - t)\,x + t\,z, \qquad v = \frac{d x_t}{dt} = z - x,

and a network f(x_t, t) is trained to regress v with the squared error
:math:`L = \mathbb{E}\,\|f(x_t, t) - (z - x)\|^2`. Sampling integrates
dx/dt = f(x, t) backwards from t = 1 to t = 0 (see :mod:`cs231n_gen.sampling`).
"""
from __future__ import annotations

import torch

from ._validate import as_time, check_points, check_tensor


def interpolate(x: torch.Tensor, z: torch.Tensor, t) -> torch.Tensor:
    """x_t = (1 - t) x + t z for a batch (x, z: (n, d); t: number, (n,) or (n, 1))."""
    x = check_points("x", x)
    z = check_tensor("z", z)
    if z.shape != x.shape:
        raise ValueError(f"z must have the shape of x {tuple(x.shape)}, got {tuple(z.shape)}")
    t = as_time("t", t, x.shape[0], x)[:, None]
    return (1 - t) * x + t * z


def velocity_target(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The regression target v = z - x: the straight line's velocity from data to noise."""
    x = check_points("x", x)
    z = check_tensor("z", z)
    if z.shape != x.shape:
        raise ValueError(f"z must have the shape of x {tuple(x.shape)}, got {tuple(z.shape)}")
    return z - x


def rectified_flow_loss(
    model,
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    z: torch.Tensor | None = None,
    t: torch.Tensor | None = None,
) -> torch.Tensor:
    """The rectified-flow training loss on one batch of data ``x`` of shape (n, d).

    Draws z ~ N(0, I) and t ~ U[0, 1] per example (or uses the given ones), forms
    x_t = (1 - t) x + t z and returns mean_n ||model(x_t, t) - (z - x)||^2 (squared
    error summed over coordinates, averaged over the batch).
    """
    x = check_points("x", x)
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
    return (z - x - v).square().sum(dim=1).mean()
