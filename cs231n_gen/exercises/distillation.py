"""Lecture 08 (distillation): the reflow couplings and the progressive-distillation target."""
from __future__ import annotations

import torch

from ._harness import call_student, close, exercise, fail, name_the_mistake


class _ProbeField(torch.nn.Module):
    """A fixed curved field v(x, t) in 2D (different along t, so the time of a call matters)."""

    def __init__(self, generator: torch.Generator):
        super().__init__()
        self.A = torch.randn(2, 2, generator=generator) * 0.6
        self.b = torch.randn(2, generator=generator)

    def forward(self, x, t):
        t = torch.as_tensor(t, dtype=x.dtype).reshape(-1).expand(x.shape[0])
        return torch.tanh(x @ self.A.T) * (1 + 2 * t[:, None]) + torch.sin(3 * t)[:, None] * self.b


def _euler(field, z, steps, grid, sign=1.0):
    x = z
    for k in range(steps):
        t, t_next = grid(k, steps), grid(k + 1, steps)
        x = x - sign * (t - t_next) * field(x, torch.full((x.shape[0],), t))
    return x


def _linspace_euler(field, z, steps):
    x = z
    for t in torch.linspace(1, 0, steps).tolist():
        x = x - field(x, torch.full((x.shape[0],), t)) / steps
    return x


@exercise("reflow_pairs", references=('cs231n_gen.distillation.reflow_pairs',))
def check_reflow_pairs(student_fn, probe):
    """Check ``reflow_pairs(model, z, steps) -> (x, z)``: each noise row and the flow's sample of it."""
    g = probe.generator()
    field = _ProbeField(probe.generator(1))
    z = torch.randn(32, 2, generator=g)
    for steps in (4, 1):
        z_in = z.clone()
        with torch.no_grad():
            got = call_student("reflow_pairs", student_fn, field, z_in, steps)
        if not (isinstance(got, (tuple, list)) and len(got) == 2
                and all(isinstance(v, torch.Tensor) and v.shape == z.shape for v in got)):
            fail(f"reflow_pairs must return a pair (x, z) of tensors shaped {tuple(z.shape)}, got {got!r}")
        x_got, z_got = (v.detach() for v in got)
        want = _euler(field, z, steps, lambda k, n: 1 - k / n)
        if close(x_got, z, 1e-5) and close(z_got, want, 1e-5):
            fail("the pair is the wrong way round: return (x, z), the sample first and its noise second.")
        if not close(z_got, z, 1e-6):
            fail("the noise in the pair is not the noise the sample was made from. Reflow trains on "
                 "couplings: each x must come with ITS OWN z (return the z you integrated), not a fresh "
                 "draw; with fresh noise the pairs are independent again and reflow relearns the curved flow.")
        if close(x_got, want, 1e-4):
            continue
        hints = [
            (_euler(field, z, steps, lambda k, n: k / n), "time runs the wrong way: sampling starts at noise, "
                                                          "t = 1, and steps down to t = 0."),
            (_euler(field, z, steps, lambda k, n: 1 - k / n, sign=-1.0),
             "the step has the wrong sign: the velocity points from data to noise (v = z - x), so a step "
             "towards data is x <- x - dt * v."),
            (_linspace_euler(field, z, steps) if steps > 1 else None,
             "the time grid is off by one (torch.linspace(1, 0, T) holds T points 1/(T - 1) apart, t = 0 "
             "included): with T steps the model is called at t = 1, 1 - 1/T, ..., 1/T and each step moves 1/T."),
        ]
        name_the_mistake(x_got, hints, 1e-4, prefix=f"with steps = {steps}: ")
        fail(f"with steps = {steps} the samples are not the Euler integration of the model from z "
             f"(largest difference {float((x_got - want).abs().max()):.4g}).")
    return "reflow_pairs is correct: every sample comes paired with the noise it was made from."


@exercise("two_step_target", references=('cs231n_gen.distillation.two_step_target',
                                  'cs231n_gen.distillation._two_step'))
def check_two_step_target(student_fn, probe):
    """Check ``two_step_target(teacher, x_t, t, dt)``: the velocity of one step that lands where two half steps do."""
    g = probe.generator()
    field = _ProbeField(probe.generator(1))
    x_t = torch.randn(32, 2, generator=g)
    for dt in (0.25, 0.5):
        t = dt + (1 - dt) * torch.rand(32, generator=g)
        with torch.no_grad():
            got = call_student("two_step_target", student_fn, field, x_t.clone(), t.clone(), dt)
        if not isinstance(got, torch.Tensor) or got.shape != x_t.shape:
            fail(f"two_step_target must return a velocity shaped {tuple(x_t.shape)}, got {got!r}")
        got = got.detach()
        h = dt / 2

        def two_steps(t_mid, first=None):
            v1 = field(x_t, t) if first is None else first
            x_mid = x_t - h * v1
            return x_mid - h * field(x_mid, t_mid)

        x_end = two_steps(t - h)
        want = (x_t - x_end) / dt
        if close(got, want, 1e-4):
            continue
        hints = [
            ((x_t - two_steps(t - dt)) / dt, "the second teacher step is evaluated at t - dt: the midpoint of the "
                                             "student's step is t - dt/2, where the first half step lands."),
            ((x_t - two_steps(t)) / dt, "the second teacher step is evaluated at the starting time t: after the "
                                        "first half step the state is at time t - dt/2."),
            (field(x_t, t), "that is the teacher's velocity at x_t alone; take two teacher half steps and return "
                            "the velocity of the one step that lands at the same place."),
            (x_end, "that is where the two teacher steps land; the student predicts a velocity: (x_t - x'') / dt."),
            ((x_end - x_t) / dt, "the sign is flipped: a velocity v moves x_t to x_t - dt * v, so "
                                 "v = (x_t - x'') / dt."),
            ((x_t - x_end) / h, "divide by the student's whole step dt (two teacher half steps of dt/2 make one)."),
            ((x_t - (x_t - dt * field(x_t, t) - dt * field(x_t - dt * field(x_t, t), t - dt))) / dt,
             "the teacher takes two steps of size dt, covering 2 dt: its steps are dt/2 each, so together they "
             "cover one student step."),
        ]
        name_the_mistake(got, hints, 1e-4, prefix=f"with dt = {dt}: ")
        fail(f"with dt = {dt} the target does not match (x_t - x'') / dt for two teacher steps of dt/2 "
             f"(largest difference {float((got - want).abs().max()):.4g}).")
    return "two_step_target is correct: one student step of dt lands where two teacher steps of dt/2 land."
