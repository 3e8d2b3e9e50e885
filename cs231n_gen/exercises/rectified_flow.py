"""Lecture 02 (rectified flow): the loss and the Euler sampler."""
from __future__ import annotations

import torch

from ..paths import rectified_flow_loss
from ..sampling import euler
from ._harness import call_student, close, exercise, fail, name_the_mistake


class _ProbeVelocity(torch.nn.Module):
    """A fixed, nonlinear field v(x, t) = A x + sin(3t) b + t^2 that records its call times."""

    def __init__(self, generator: torch.Generator):
        super().__init__()
        state = generator.get_state()  # every instance from one generator state is the same field
        self.A = torch.randn(2, 2, generator=generator) * 0.5
        self.b = torch.randn(2, generator=generator)
        generator.set_state(state)
        self.calls: list[torch.Tensor] = []

    def forward(self, x, t):
        t = torch.as_tensor(t, dtype=x.dtype)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        t = t.reshape(-1)
        if t.shape[0] == 1:
            t = t.expand(x.shape[0])
        self.calls.append(t.detach().clone())
        return x @ self.A.T + torch.sin(3 * t)[:, None] * self.b + (t**2)[:, None]


@exercise("rf_loss", references=('cs231n_gen.paths.rectified_flow_loss',))
def check_rf_loss(student_fn, probe):
    """Check ``rf_loss(model, x, z, t) -> scalar``: mean over the batch of ||model(x_t, t) - (z - x)||^2."""
    g = probe.generator()
    x = torch.randn(64, 2, generator=g) * 2
    z = torch.randn(64, 2, generator=g)
    t = torch.rand(64, generator=g)
    field = probe.generator(1)
    model = _ProbeVelocity(field)
    got = call_student("rf_loss", student_fn, model, x.clone(), z.clone(), t.clone())
    if not isinstance(got, torch.Tensor) or got.numel() != 1:
        fail(f"rf_loss must return a scalar tensor (one number), got {got!r}")
    got = got.detach().reshape(())
    want = rectified_flow_loss(model, x, z=z, t=t)
    if close(got, want):
        return f"rf_loss is correct (loss {float(got):.4f} on the probe batch)."

    def variant(xt_fn, target_fn, reduce="mean", t_in=None):
        tt = t[:, None]
        v = model(xt_fn(x, z, tt), t if t_in is None else t_in)
        err = (target_fn(x, z) - v).square()
        if reduce == "mean":
            return err.sum(1).mean()
        if reduce == "sum":
            return err.sum()
        return err.mean()

    line = lambda x, z, tt: (1 - tt) * x + tt * z  # noqa: E731
    hints = [
        (variant(line, lambda x, z: x - z),
         "the target has the wrong sign: v = z - x points from data to noise, not x - z."),
        (variant(lambda x, z, tt: tt * x + (1 - tt) * z, lambda x, z: z - x),
         "time runs the wrong way in x_t: at t = 0 x_t must be the clean data, so x_t = (1 - t) x + t z."),
        (variant(line, lambda x, z: z - x, t_in=1 - t),
         "the model is given 1 - t: pass it the same t used to build x_t."),
        (variant(line, lambda x, z: z - x, reduce="sum"),
         "the loss is summed over the batch: average over examples (sum over the 2 coordinates, mean over the batch)."),
        (variant(line, lambda x, z: z - x, reduce="all"),
         "the loss is averaged over coordinates too: sum the squared error over the 2 coordinates, "
         "then average over the batch."),
    ]
    name_the_mistake(got, hints, prefix="rf_loss: ")
    fail(f"rf_loss returned {float(got):.5f} but the rectified-flow loss on the probe batch is {float(want):.5f}. "
         "Check x_t = (1 - t) x + t z, the target v = z - x, and the reduction.")


@exercise("euler_sample", references=('cs231n_gen.sampling.euler',))
def check_euler_sampler(student_fn, probe):
    """Check ``euler_sample(model, z, num_steps) -> x_0`` against the reference sampler."""
    z = torch.randn(32, 2, generator=probe.generator())
    field = probe.generator(1)
    for steps in (4, 10, 1):
        model = _ProbeVelocity(field)
        got = call_student("euler_sample", student_fn, model, z.clone(), steps)
        if not isinstance(got, torch.Tensor) or got.shape != z.shape:
            fail(f"euler_sample must return a tensor of shape {tuple(z.shape)}, got {got!r}")
        calls = [float(c.reshape(-1)[0]) for c in model.calls]
        ref_model = _ProbeVelocity(field)
        want = euler(ref_model, z, steps)
        grid = [1 - i / steps for i in range(steps)]
        if close(got, want, 1e-4):
            continue
        if len(calls) != steps:
            fail(f"euler_sample with num_steps={steps} called the model {len(calls)} times; "
                 f"it should take exactly {steps} steps (one model call each).")
        if calls and close(calls[0], 0.0):
            fail("euler_sample walks time forwards: sampling starts from noise at t = 1 and ends at data, t = 0.")
        if steps > 1 and close(calls[-1], 0.0) and close(calls[0], 1.0):
            fail("euler_sample evaluates the model at t = 0, on torch.linspace(1, 0, num_steps): that grid has "
                 "spacing 1/(num_steps - 1) but each step moves 1/num_steps. Use t = 1 - i / num_steps for "
                 "i = 0, ..., num_steps - 1.")
        if steps > 1 and close(calls[0], 1 - 1 / steps):
            fail("euler_sample evaluates the velocity at the end of each step (t - 1/T) instead of its start "
                 "(t): Euler uses the velocity where the step begins, starting at t = 1.")
        if close(calls, grid):
            plus, full = z.clone(), z.clone()
            for t in grid:
                tt = torch.full((z.shape[0],), t)
                plus = plus + ref_model(plus, tt) / steps
                full = full - ref_model(full, tt)
            if close(got, plus, 1e-4):
                fail("euler_sample steps the wrong way: v = z - x points towards noise, so going from noise "
                     "to data means x = x - v / num_steps.")
            if close(got, full, 1e-4):
                fail("euler_sample moves by the whole velocity each step (x = x - v): a step covers dt = "
                     "1 / num_steps of time, so x = x - v / num_steps.")
            fail(f"euler_sample calls the model at the right times (t = {[round(c, 3) for c in calls]}), so "
                 "the update is what differs: each step is x = x - v(x, t) / num_steps, with v evaluated at the "
                 "current x.")
        fail(f"euler_sample with num_steps={steps} does not match the reference Euler sampler "
             f"(your model calls were at t = {[round(c, 3) for c in calls]}, expected {[round(c, 3) for c in grid]}).")
    return "euler_sample is correct (matches the reference for 4, 10 and 1 steps)."
