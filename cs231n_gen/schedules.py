"""Where in time to train and where to step when sampling.

Training draws t per example (uniform here; later lectures add logit-normal and
shifted samplers). Sampling walks a decreasing grid from t = 1 (noise) to t = 0 (data).
"""
from __future__ import annotations

import torch

from ._validate import check_int


def uniform_t(n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """n training times drawn from U[0, 1]."""
    n = check_int("n", n, minimum=1)
    return torch.rand(n, generator=generator, device=device)


def time_grid(steps: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """The sampling grid [1, 1 - 1/T, ..., 1/T, 0]: ``steps + 1`` points, T = ``steps``.

    An Euler sampler evaluates the velocity at the first ``steps`` points and steps by
    1/T each time, so it ends exactly at t = 0. (The slide's
    ``torch.linspace(1, 0, num_steps)`` has spacing 1/(T - 1) while stepping 1/T: an
    off-by-one that evaluates the model at t = 0 and never quite reaches it.)
    """
    steps = check_int("steps", steps, minimum=1)
    return torch.linspace(1.0, 0.0, steps + 1, device=device, dtype=dtype)
