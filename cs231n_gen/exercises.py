"""Checks for the lecture exercises.

Each ``check_<name>(student_fn)`` runs the student's function on probe inputs, compares
it with the library's reference, and on a mismatch names the usual mistake it matches
(sign of v, direction of time, an off-by-one time grid, ...). It raises
``AssertionError`` with that hint, or prints a short confirmation.
"""
from __future__ import annotations

import torch

from .paths import rectified_flow_loss
from .sampling import euler


class _ProbeVelocity(torch.nn.Module):
    """A fixed, nonlinear field v(x, t) that records the times it is called with."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(1234)
        self.A = torch.randn(2, 2, generator=g) * 0.5
        self.b = torch.randn(2, generator=g)
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


def _close(a, b, tol=1e-5) -> bool:
    return torch.allclose(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64), rtol=tol, atol=tol)


def _fail(msg: str):
    raise AssertionError(msg)


def check_rf_loss(student_fn) -> None:
    """Check ``rf_loss(model, x, z, t) -> scalar``: mean over the batch of ||model(x_t, t) - (z - x)||^2."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, generator=g) * 2
    z = torch.randn(64, 2, generator=g)
    t = torch.rand(64, generator=g)
    model = _ProbeVelocity()
    try:
        got = student_fn(model, x.clone(), z.clone(), t.clone())
    except Exception as err:  # show students their own error, with context
        _fail(f"rf_loss raised {type(err).__name__}: {err}")
    if not isinstance(got, torch.Tensor) or got.numel() != 1:
        _fail(f"rf_loss must return a scalar tensor (one number), got {got!r}")
    got = got.detach().reshape(())
    want = rectified_flow_loss(model, x, z=z, t=t)
    if _close(got, want):
        print(f"rf_loss is correct (loss {float(got):.4f} on the probe batch).")
        return

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
        (variant(line, lambda x, z: x - z), "the target has the wrong sign: v = z - x points from data to noise, not x - z."),
        (variant(lambda x, z, tt: tt * x + (1 - tt) * z, lambda x, z: z - x),
         "time runs the wrong way in x_t: at t = 0 x_t must be the clean data, so x_t = (1 - t) x + t z."),
        (variant(line, lambda x, z: z - x, t_in=1 - t), "the model is given 1 - t: pass it the same t used to build x_t."),
        (variant(line, lambda x, z: z - x, reduce="sum"),
         "the loss is summed over the batch: average over examples (sum over the 2 coordinates, mean over the batch)."),
        (variant(line, lambda x, z: z - x, reduce="all"),
         "the loss is averaged over coordinates too: sum the squared error over the 2 coordinates, then average over the batch."),
    ]
    for value, hint in hints:
        if _close(got, value):
            _fail("rf_loss: " + hint)
    _fail(f"rf_loss returned {float(got):.5f} but the rectified-flow loss on the probe batch is {float(want):.5f}. "
          "Check x_t = (1 - t) x + t z, the target v = z - x, and the reduction.")


def check_euler_sampler(student_fn) -> None:
    """Check ``euler_sample(model, z, num_steps) -> x_0`` against the reference sampler."""
    g = torch.Generator().manual_seed(1)
    z = torch.randn(32, 2, generator=g)
    for steps in (4, 10, 1):
        model = _ProbeVelocity()
        try:
            got = student_fn(model, z.clone(), steps)
        except Exception as err:
            _fail(f"euler_sample raised {type(err).__name__}: {err}")
        if not isinstance(got, torch.Tensor) or got.shape != z.shape:
            _fail(f"euler_sample must return a tensor of shape {tuple(z.shape)}, got {got!r}")
        calls = [float(c.reshape(-1)[0]) for c in model.calls]
        ref_model = _ProbeVelocity()
        want = euler(ref_model, z, steps)
        grid = [1 - i / steps for i in range(steps)]
        if _close(got, want, 1e-4):
            continue
        if len(calls) != steps:
            _fail(f"euler_sample with num_steps={steps} called the model {len(calls)} times; "
                  f"it should take exactly {steps} steps (one model call each).")
        if calls and _close(calls[0], 0.0):
            _fail("euler_sample walks time forwards: sampling starts from noise at t = 1 and ends at data, t = 0.")
        if steps > 1 and _close(calls[-1], 0.0) and _close(calls[0], 1.0):
            _fail("euler_sample evaluates the model at t = 0, on torch.linspace(1, 0, num_steps): that grid has "
                  "spacing 1/(num_steps - 1) but each step moves 1/num_steps. Use t = 1 - i / num_steps for "
                  "i = 0, ..., num_steps - 1.")
        if steps > 1 and _close(calls[0], 1 - 1 / steps):
            _fail("euler_sample evaluates the velocity at the end of each step (t - 1/T) instead of its start "
                  "(t): Euler uses the velocity where the step begins, starting at t = 1.")
        if _close(calls, grid):
            plus = z.clone()
            for t in grid:
                plus = plus + ref_model(plus, torch.full((z.shape[0],), t)) / steps
            if _close(got, plus, 1e-4):
                _fail("euler_sample steps the wrong way: v = z - x points towards noise, so going from noise "
                      "to data means x = x - v / num_steps.")
        _fail(f"euler_sample with num_steps={steps} does not match the reference Euler sampler "
              f"(your model calls were at t = {[round(c, 3) for c in calls]}, expected {[round(c, 3) for c in grid]}).")
    print("euler_sample is correct (matches the reference for 4, 10 and 1 steps).")


def check_nonsaturating_loss(student_fn) -> None:
    """Check ``nonsaturating_loss(fake_logits) -> scalar``: -mean(log D(G(z))), D = sigmoid(logit)."""
    from . import gan

    probes = {
        "typical logits": torch.tensor([-2.0, -0.5, 0.0, 0.7, 3.0]),
        "a confident discriminator (logit -200: D(G(z)) ~ 1e-87)": torch.tensor([-200.0, -120.0, -30.0]),
        "a fooled discriminator (logit +40)": torch.tensor([40.0, 25.0]),
    }
    for what, logits in probes.items():
        x = logits.clone().requires_grad_(True)
        try:
            got = student_fn(x)
        except Exception as err:
            _fail(f"nonsaturating_loss raised {type(err).__name__} on {what}: {err}")
        if not isinstance(got, torch.Tensor) or got.numel() != 1:
            _fail(f"nonsaturating_loss must return a scalar tensor, got {got!r}")
        want = gan.nonsaturating_generator_loss(logits)
        if not torch.isfinite(got):
            _fail(f"the loss is {float(got.detach())} on {what}: log(sigmoid(l)) underflows for very negative l. "
                  "Write -log D = softplus(-l) (torch.nn.functional.softplus), which is exact and stable.")
        if _close(got.detach(), want, tol=1e-4):
            continue
        lo = logits.double()
        hints = [
            (-_softplus(lo).mean(), "this is the minimax loss log(1 - D(G(z))): the non-saturating one is -log D(G(z))."),
            (_softplus(lo).mean(), "this is -log(1 - D(G(z))): the generator wants D(G(z)) -> 1, so use -log D(G(z))."),
            (-_softplus(-lo).mean(), "the sign is flipped: the loss to minimise is -log D(G(z)) (positive), not log D(G(z))."),
            (_softplus(-lo).sum(), "the loss is summed over the batch: take the mean."),
            ((1 - torch.sigmoid(lo)).mean(), "this is 1 - D(G(z)), not its log: use -log D(G(z))."),
        ]
        for value, hint in hints:
            if _close(got.detach(), value, tol=1e-4):
                _fail(f"On {what}: {hint}")
        _fail(f"On {what}: expected {float(want):.6f}, got {float(got.detach()):.6f}.")
    x = torch.tensor([-8.0, -6.0]).requires_grad_(True)
    try:
        student_fn(x).backward()
    except RuntimeError:
        pass  # no graph to differentiate: reported just below
    if x.grad is None or not torch.allclose(x.grad, -(1 - torch.sigmoid(x.detach())) / 2, atol=1e-4):
        _fail("the value is right but the gradient is not: compute the loss with differentiable torch "
              "operations on the logits (no .item(), no .detach()).")
    print("nonsaturating_loss is correct, finite for very confident discriminators, and has the "
          "gradient -(1 - D) / n per logit.")


def check_optimal_discriminator(student_fn) -> None:
    """Check ``optimal_d(p_data, p_g) -> D*``: elementwise p_data / (p_data + p_g) from density values."""
    p = torch.tensor([0.5, 0.1, 0.0, 0.3, 2.0])
    q = torch.tensor([0.5, 0.3, 0.2, 0.0, 1.0])
    try:
        got = student_fn(p.clone(), q.clone())
    except Exception as err:
        _fail(f"optimal_d raised {type(err).__name__}: {err}")
    if not isinstance(got, torch.Tensor) or got.shape != p.shape:
        _fail(f"optimal_d must return a tensor with one value per point (shape {tuple(p.shape)}), got {got!r}")
    want = p / (p + q)
    if _close(got, want):
        print("optimal_d is correct: 1/2 where the densities agree, 1 where only data lives, 0 where only G does.")
        return
    hints = [
        (q / (p + q), "this is 1 - D*: D* is the probability that x is REAL, p_data / (p_data + p_G)."),
        (p / q.clamp(min=1e-12), "this is the density ratio p_data / p_G; D* divides by the sum p_data + p_G."),
        (p / (p + q) / 2, "D* has no factor 1/2: where p_data = p_G it equals 1/2 already."),
    ]
    for value, hint in hints:
        if _close(got, value):
            _fail(hint)
    _fail(f"expected {want.tolist()}, got {got.tolist()}.")


def _softplus(x):
    return torch.nn.functional.softplus(x)
