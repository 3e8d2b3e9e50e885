r"""Fewer sampling steps by distillation: reflow, progressive and guidance distillation.

A rectified-flow sampler integrates dx/dt = v(x, t) from t = 1 (noise) to t = 0 (data)
with Euler steps, one network evaluation (NFE) each. The exact field is curved, so few
large steps land in the wrong place: one step from z lands on x = z - v(z, 1) =
E[x], the data mean, for every z. Three ways to buy the steps back with training:

**Reflow** (Liu et al. 2023, rectified flow's own distillation). Send noise z through the
trained flow to get its sample x = ODE(z), and train a new flow on the *pairs* (x, z)
with the ordinary loss: x_t = (1 - t) x + t z, target z - x. The pairs no longer cross
(they come from a deterministic map), so the new field's paths are straighter and a few
Euler steps go further. :func:`reflow_pairs`, :func:`reflow_loss`.

**Progressive distillation** (Salimans and Ho 2022). A student with N steps of size
dt = 1/N learns to land, in one step, where its teacher lands in two steps of dt/2:

.. math::  x' = x_t - \tfrac{dt}{2} v_T(x_t, t), \quad
           x'' = x' - \tfrac{dt}{2} v_T(x', t - \tfrac{dt}{2}), \quad
           v^\star = (x_t - x'') / dt,

and regresses v_S(x_t, t) on v^\star at the student's own grid times t = k / N. The
student then teaches the next one: 32 -> 16 -> 8 -> 4 -> 2 -> 1 steps.
:func:`two_step_target`, :func:`progressive_loss`.

**Consistency distillation** (Song et al. 2023). A consistency function f(x_t, t) maps
*every* point of an ODE path to the path's end, so one evaluation at t = 1 is a sample.
Written as f(x, t) = x - t u(x, t) (so f(x, 0) = x, and a flow's own u = v makes f one
Euler step to 0), the student learns to agree with itself one teacher step earlier:

.. math::  x_s = x_t - (t - s)\, v_T(x_t, t), \qquad
           L = \lVert f_\theta(x_t, t) - \mathrm{sg}[f_\theta(x_s, s)] \rVert^2,

on a grid t = k / N, s = (k - 1) / N; at s = 0 the target is x_s itself, the anchor that
ties the whole chain to data. :func:`consistency_loss`, :func:`consistency_sample`.

**Guidance distillation** (Meng et al. 2023). Classifier-free guidance costs two
evaluations per step, (1 + w) v(x, y) - w v(x, null). A student that takes w as an
input, v_S(x, t, y, w), regresses on that combination for w drawn from a range, and
then needs one evaluation per step at any w. :func:`guidance_distillation_loss` (its
target is :func:`cs231n_gen.guidance.cfg_velocity` with one w per row).

Every loss here is ``loss(model, batch, generator)``-shaped once its settings are bound,
so :func:`cs231n_gen.train.fit` trains students like any other model.
"""
from __future__ import annotations

import torch

from ._moved import moved_names
from ._validate import (as_time, check_batch, check_callable, check_generator, check_int, check_labels, check_real,
                        check_same_shape, per_row)
from .guidance import cfg_velocity
from .paths import interpolate, rectified_flow_loss
from .sampling import euler

__all__ = ["reflow_pairs", "reflow_loss", "two_step_target", "progressive_loss", "consistency_loss",
           "consistency_sample", "guidance_distillation_loss"]
__getattr__ = moved_names(__name__, {
    "guided_velocity": ("cs231n_gen.guidance.cfg_velocity", "it takes one weight per row (a (n,) tensor w) too"),
})


@torch.no_grad()
def reflow_pairs(model, noise: torch.Tensor, steps: int, **model_kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """The couplings (x, z) for reflow: each noise row z and the sample the flow makes of it.

    x = Euler(model, z, ``steps``), integrated from t = 1 to t = 0; ``model_kwargs`` (a
    label, say) are passed to every evaluation. Returns ``(x, z)`` with z the given noise
    itself: a sample must be paired with *its own* noise (a fresh draw would make the
    pairs independent again, and reflow would learn the original, curved flow).
    """
    check_callable("model", model, "a model called as model(x_t, t)")
    noise = check_batch("noise", noise)
    steps = check_int("steps", steps, minimum=1)
    try:
        return euler(model, noise, steps, **model_kwargs), noise
    except ValueError as err:
        raise ValueError(f"model rejected noise: {err}") from err


def reflow_loss(model, pairs, generator: torch.Generator | None = None) -> torch.Tensor:
    """The rectified-flow loss on fixed couplings ``pairs = (x, z)`` (from :func:`reflow_pairs`).

    x_t = (1 - t) x + t z with t ~ U[0, 1]; the loss is mean ||model(x_t, t) - (z - x)||^2.
    """
    if not isinstance(pairs, (tuple, list)) or len(pairs) != 2:
        raise ValueError(f"pairs must be a tuple (x, z) of samples and their noise, got {type(pairs).__name__}"
                         + (f" of length {len(pairs)}" if isinstance(pairs, (tuple, list)) else ""))
    x = check_batch("pairs[0] (samples x)", pairs[0])
    z = check_same_shape("pairs[1] (noise z)", pairs[1], x, "pairs[0]")
    return rectified_flow_loss(model, x, generator, z=z)


@torch.no_grad()
def two_step_target(teacher, x_t: torch.Tensor, t, dt: float, **model_kwargs) -> torch.Tensor:
    r"""The velocity of one step of size ``dt`` that lands where two teacher steps of dt/2 land.

    x' = x_t - (dt/2) v_T(x_t, t); x'' = x' - (dt/2) v_T(x', t - dt/2); returns
    (x_t - x'') / dt, which equals the mean of the two teacher velocities. ``t`` is a
    number or a (n,) tensor of times with t >= dt (the step must stay in [0, 1]).
    """
    check_callable("teacher", teacher, "a model called as teacher(x_t, t)")
    x_t = check_batch("x_t", x_t)
    dt = check_real("dt", dt, minimum=0.0, maximum=1.0, strict_min=True)
    t = as_time("t", t, x_t.shape[0], x_t, rows_of="x_t")
    if bool((t < dt - 1e-6).any()):
        raise ValueError(f"t must be at least dt = {dt:g} (a step from t lands at t - dt >= 0), "
                         f"got a minimum of {float(t.min()):.4g}")
    try:
        return _two_step(teacher, x_t, t, dt, model_kwargs)
    except ValueError as err:
        raise ValueError(f"teacher rejected x_t: {err}") from err


def _two_step(teacher, x_t, t, dt, model_kwargs):
    """:func:`two_step_target` without input checks (no host reads: the training loop calls it)."""
    half = dt / 2
    x_mid = x_t - half * teacher(x_t, t, **model_kwargs)
    x_end = x_mid - half * teacher(x_mid, t - half, **model_kwargs)
    return (x_t - x_end) / dt


def _output(name: str, v, like: torch.Tensor) -> torch.Tensor:
    if not isinstance(v, torch.Tensor) or v.shape != like.shape:
        raise ValueError(f"{name} must return a tensor of shape {tuple(like.shape)}, got "
                         f"{tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__}")
    return v


def progressive_loss(student, teacher, x: torch.Tensor, generator: torch.Generator | None = None, *,
                     steps: int, **model_kwargs) -> torch.Tensor:
    """Progressive distillation: a ``steps``-step student matches two steps of its teacher.

    Draws z ~ N(0, I) and a time from the student's grid t = k / steps (k = 1..steps),
    forms x_t = (1 - t) x + t z from the data batch ``x``, and returns
    mean ||student(x_t, t) - v*||^2 with v* = :func:`two_step_target` (teacher, x_t, t,
    1 / steps). ``model_kwargs`` go to both networks (labels, a guidance weight).
    """
    check_callable("student", student, "a model called as student(x_t, t)")
    check_callable("teacher", teacher, "a model called as teacher(x_t, t)")
    x = check_batch("x", x)
    dt = 1.0 / check_int("steps", steps, minimum=1)
    generator = check_generator("generator", generator, x.device)
    z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    k = torch.randint(1, steps + 1, (x.shape[0],), generator=generator, device=x.device)
    t = k.to(x.dtype) * dt
    x_t = interpolate(x, z, t)
    with torch.no_grad():
        target = _two_step(teacher, x_t, t, dt, model_kwargs)
    v = _output("student", student(x_t, t, **model_kwargs), x)
    return (v - target).square().flatten(1).sum(dim=1).mean()


def _jump(model, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """f(x_t, t) = x_t - t u(x_t, t): where the consistency model says x_t's path ends."""
    return x_t - per_row(t, x_t) * _output("student", model(x_t, t), x_t)


def consistency_loss(student, teacher, x: torch.Tensor, generator: torch.Generator | None = None, *,
                     steps: int) -> torch.Tensor:
    """Consistency distillation on the grid t = k / ``steps`` (see the module docstring).

    Draws z ~ N(0, I) and k in 1..steps, forms x_t = (1 - t) x + t z from the data batch
    ``x``, takes one teacher Euler step to s = t - 1 / steps, and returns the mean of
    ||f(x_t, t) - sg[f(x_s, s)]||^2 with f(x, t) = x - t student(x, t).
    """
    check_callable("student", student, "a model called as student(x_t, t)")
    check_callable("teacher", teacher, "a model called as teacher(x_t, t)")
    x = check_batch("x", x)
    steps = check_int("steps", steps, minimum=1)
    generator = check_generator("generator", generator, x.device)
    z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    k = torch.randint(1, steps + 1, (x.shape[0],), generator=generator, device=x.device)
    t, s = k.to(x.dtype) / steps, (k - 1).to(x.dtype) / steps
    x_t = interpolate(x, z, t)
    with torch.no_grad():
        x_s = x_t - per_row(t - s, x_t) * _output("teacher", teacher(x_t, t), x)
        target = _jump(student, x_s, s)  # the student one teacher step earlier, held fixed
    return (_jump(student, x_t, t) - target).square().flatten(1).sum(dim=1).mean()


@torch.no_grad()
def consistency_sample(student, z: torch.Tensor, steps: int = 1, generator: torch.Generator | None = None):
    """Multistep consistency sampling: jump to the data, re-noise to a lower t, jump again.

    One step is f(z, 1). With ``steps`` = K, the times 1 > t_2 > ... > t_K are evenly
    spaced, and each later step jumps from x_t = (1 - t) x + t z' with fresh noise z'.
    """
    check_callable("student", student, "a model called as student(x_t, t)")
    z = check_batch("z", z)
    steps = check_int("steps", steps, minimum=1)
    generator = check_generator("generator", generator, z.device)
    try:
        x = _jump(student, z, torch.ones(len(z), device=z.device, dtype=z.dtype))
    except ValueError as err:
        raise ValueError(f"z must be a batch the student takes: {err}") from err
    for k in range(1, steps):
        t = torch.full((len(z),), 1 - k / steps, device=z.device, dtype=z.dtype)
        noise = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
        x = _jump(student, interpolate(x, noise, t), t)
    return x


def guidance_distillation_loss(student, teacher, x: torch.Tensor, y: torch.Tensor,
                               generator: torch.Generator | None = None, *, w_max: float) -> torch.Tensor:
    """Guidance distillation: ``student(x_t, t, y, w)`` regresses on the teacher's CFG velocity.

    For a batch of data ``x`` with labels ``y``: z ~ N(0, I), t ~ U[0, 1], w ~ U[0, w_max]
    per example, x_t = (1 - t) x + t z; the target is
    :func:`~cs231n_gen.guidance.cfg_velocity` (teacher, x_t, t, y, w) with one w per row,
    two teacher branches, and the student gets one evaluation to match it.
    """
    check_callable("student", student, "a model called as student(x_t, t, y, w)")
    check_callable("teacher", teacher, "a class-conditional model called as teacher(x_t, t, y)")
    if not isinstance(getattr(teacher, "null_label", None), int):
        raise ValueError(f"teacher must be a class-conditional model with an integer .null_label (trained with "
                         f"label dropout), got {type(teacher).__name__}")
    x = check_batch("x", x)
    w_max = check_real("w_max", w_max, minimum=0.0, strict_min=True)
    generator = check_generator("generator", generator, x.device)
    n = x.shape[0]
    null_label = teacher.null_label
    y = check_labels("y", y, n, null_label, x.device)  # real classes only
    z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    t = torch.rand(n, generator=generator, device=x.device, dtype=x.dtype)
    w = w_max * torch.rand(n, generator=generator, device=x.device, dtype=x.dtype)
    x_t = interpolate(x, z, t)
    with torch.no_grad():
        target = cfg_velocity(teacher, x_t, t, y, w, null_label=null_label)
    v = _output("student", student(x_t, t, y, w), x)
    return (v - target).square().flatten(1).sum(dim=1).mean()
