"""Checks for the lecture exercises.

Each ``check_<name>(student_fn)`` runs the student's function on probe inputs, compares
it with the library's reference, and on a mismatch names the usual mistake it matches
(sign of v, direction of time, an off-by-one time grid, ...). It raises
``AssertionError`` with that hint, or prints a short confirmation.
"""
from __future__ import annotations

import functools
import math

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


def _takes_a_function(check):
    """A check is given the student's function: anything else is a clear ValueError, not a failed probe."""
    @functools.wraps(check)
    def run(student_fn):
        if not callable(student_fn):
            raise ValueError(f"student_fn must be your function (pass the function itself, without calling it), "
                             f"got {type(student_fn).__name__}")
        return check(student_fn)

    return run


@_takes_a_function
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


@_takes_a_function
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
            plus, full = z.clone(), z.clone()
            for t in grid:
                tt = torch.full((z.shape[0],), t)
                plus = plus + ref_model(plus, tt) / steps
                full = full - ref_model(full, tt)
            if _close(got, plus, 1e-4):
                _fail("euler_sample steps the wrong way: v = z - x points towards noise, so going from noise "
                      "to data means x = x - v / num_steps.")
            if _close(got, full, 1e-4):
                _fail("euler_sample moves by the whole velocity each step (x = x - v): a step covers dt = "
                      "1 / num_steps of time, so x = x - v / num_steps.")
            _fail(f"euler_sample calls the model at the right times (t = {[round(c, 3) for c in calls]}), so "
                  "the update is what differs: each step is x = x - v(x, t) / num_steps, with v evaluated at the "
                  "current x.")
        _fail(f"euler_sample with num_steps={steps} does not match the reference Euler sampler "
              f"(your model calls were at t = {[round(c, 3) for c in calls]}, expected {[round(c, 3) for c in grid]}).")
    print("euler_sample is correct (matches the reference for 4, 10 and 1 steps).")


@_takes_a_function
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
        for eps in (1e-12, 1e-10, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3):
            if _close(got.detach(), -torch.log(torch.sigmoid(lo) + eps).mean(), tol=1e-4):
                _fail(f"On {what}: -log(sigmoid(l) + {eps:g}) stops growing at -log({eps:g}) = {-math.log(eps):.1f}, "
                      "and its gradient vanishes there: the generator gets no signal exactly when D rejects its "
                      "samples most. Write -log D = softplus(-l) (torch.nn.functional.softplus) instead of adding "
                      "an epsilon.")
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


@_takes_a_function
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
        (p / (p + q) / 2, "D* has no factor 1/2: where p_data = p_G it equals 1/2 already."),
    ]
    for value, hint in hints:
        if _close(got, value):
            _fail(hint)
    has_g = q > 0  # the ratio p / q is inf or NaN where q = 0: compare where it is defined
    if _close(got.detach()[has_g], (p / q)[has_g]):
        _fail("this is the density ratio p_data / p_G (infinite where p_G = 0); D* divides by the sum: "
              "p_data / (p_data + p_G), which stays between 0 and 1.")
    _fail(f"expected {want.tolist()}, got {got.tolist()}.")


def _softplus(x):
    return torch.nn.functional.softplus(x)


class _ProbeConditional(torch.nn.Module):
    """A fixed field v(x, t, y) with labels 0..2 and null label 3; records each call's batch size."""

    null_label = 3

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(4321)
        self.A = torch.randn(2, 2, generator=g) * 0.5
        self.emb = torch.randn(4, 2, generator=g)
        self.calls: list[int] = []

    def forward(self, x, t, y):
        t = torch.as_tensor(t, dtype=x.dtype).reshape(-1).expand(x.shape[0])
        self.calls.append(int(x.shape[0]))
        return x @ self.A.T + torch.cos(2 * t)[:, None] * self.emb[y] + t[:, None]


@_takes_a_function
def check_cfg_velocity(student_fn) -> None:
    """Check ``guided_velocity(model, x, t, y, w, null_label)``: (1 + w) v_y - w v_null, one batched call."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(16, 2, generator=g)
    t = torch.rand(16, generator=g)
    y = torch.randint(0, 3, (16,), generator=g)
    for w in (2.0, 0.5, 0.0):
        model = _ProbeConditional()
        try:
            got = student_fn(model, x.clone(), t.clone(), y.clone(), w, 3)
        except Exception as err:
            _fail(f"guided_velocity raised {type(err).__name__}: {err}")
        if not isinstance(got, torch.Tensor) or got.shape != x.shape:
            _fail(f"guided_velocity must return a tensor of shape {tuple(x.shape)}, got {got!r}")
        with torch.no_grad():
            reference = _ProbeConditional()  # the same field; keeps model.calls the student's alone
            v_y, v_null = reference(x, t, y), reference(x, t, torch.full_like(y, 3))
        got = got.detach()
        want = (1 + w) * v_y - w * v_null
        if not _close(got, want, 1e-4):
            hints = [
                ((1 + w) * v_null - w * v_y, "the two predictions are swapped: weight (1 + w) goes to the "
                                             "conditional v_y and -w to the unconditional v_null."),
                (w * v_y + (1 - w) * v_null, "that is the other convention, v_null + w (v_y - v_null), in which "
                                             "w = 1 means no guidance. The lecture's w is one less: use "
                                             "(1 + w) v_y - w v_null, so w = 0 is the plain conditional model."),
                ((1 + w) * v_y + w * v_null, "the unconditional prediction must be subtracted: -w v_null."),
                (v_y + w * v_null, "guidance extrapolates from v_null through v_y: (1 + w) v_y - w v_null."),
            ]
            for value, hint in hints:
                if _close(got, value, 1e-4):
                    _fail(f"with w = {w}: {hint}")
            _fail(f"with w = {w} guided_velocity does not match (1 + w) v_y - w v_null "
                  f"(largest difference {float((got - want).abs().max()):.4g}).")
        if w > 0 and model.calls != [2 * x.shape[0]]:
            _fail(f"the values are right, but the model was called with batches of {model.calls} rows. "
                  f"Evaluate both predictions in ONE call of {2 * x.shape[0]} rows: stack x with itself "
                  "(torch.cat) and the labels y with a batch of null labels, then split the output in two.")
    print("guided_velocity is correct: (1 + w) v_y - w v_null from one batched forward pass.")


@_takes_a_function
def check_cfg_loss(student_fn) -> None:
    """Check ``cfg_loss(model, x, y, z, t, u, p_uncond, null_label)``: the RF loss with labels dropped where u < p."""
    g = torch.Generator().manual_seed(6)
    n = 64
    x = torch.randn(n, 2, generator=g) * 2
    y = torch.randint(0, 3, (n,), generator=g)
    z = torch.randn(n, 2, generator=g)
    t = torch.rand(n, generator=g)
    u = torch.rand(n, generator=g)

    def loss(labels):
        model = _ProbeConditional()
        tt = t[:, None]
        return (model((1 - tt) * x + tt * z, t, labels) - (z - x)).square().sum(1).mean()

    null = torch.full_like(y, 3)
    for p in (0.5, 0.2, 0.0, 1.0):
        y_in = y.clone()
        try:
            got = student_fn(_ProbeConditional(), x.clone(), y_in, z.clone(), t.clone(), u.clone(), p, 3)
        except Exception as err:
            _fail(f"cfg_loss raised {type(err).__name__}: {err}")
        if not isinstance(got, torch.Tensor) or got.numel() != 1:
            _fail(f"cfg_loss must return a scalar tensor, got {got!r}")
        if not torch.equal(y_in, y):
            _fail("cfg_loss changed the labels it was given (in place): the caller's y must stay intact. "
                  "Build the dropped labels with torch.where(...) instead of assigning into y.")
        got = got.detach().reshape(())
        want = loss(torch.where(u < p, null, y))
        if _close(got, want, 1e-5):
            continue
        hints = [
            (loss(torch.where(u >= p, null, y)), "labels are dropped where u >= p_uncond, i.e. with probability "
                                                 "1 - p_uncond. Drop them where u < p_uncond."),
            (loss(y), "no label was dropped: replace y by null_label where u < p_uncond."),
            (loss(null), "every label was dropped: only those with u < p_uncond become null_label."),
            (loss(torch.where(u < p, torch.zeros_like(y), y)), "dropped labels became 0, which is a real class: "
                                                               "use null_label, the extra label the model keeps "
                                                               "for 'no condition'."),
        ]
        all_or_none = _close(got, loss(y), 1e-5) or _close(got, loss(null), 1e-5)
        if all_or_none and 0 < p < 1:  # one coin for the whole batch? flip the first coin and see
            u_flip = u.clone()
            u_flip[0] = p / 2 if float(u[0]) >= p else (1 + p) / 2
            other = student_fn(_ProbeConditional(), x.clone(), y.clone(), z.clone(), t.clone(), u_flip, p, 3)
            if not _close(torch.as_tensor(other).detach().reshape(()), got, 1e-5):
                _fail(f"with p_uncond = {p}: one coin decides for the whole batch (changing u[0] alone dropped "
                      "or kept every label): each example needs its own coin, drop label i where u[i] < p_uncond.")
        for value, hint in hints:
            if _close(got, value, 1e-5):
                _fail(f"with p_uncond = {p}: {hint}")
        _fail(f"with p_uncond = {p}: expected {float(want):.5f}, got {float(got):.5f}. Check x_t = (1 - t) x + t z, "
              "the target z - x, and the reduction (sum over coordinates, mean over the batch).")
    print("cfg_loss is correct: labels dropped exactly where u < p_uncond, for p_uncond = 0, 0.2, 0.5 and 1.")


@_takes_a_function
def check_logit_normal_sampler(student_fn) -> None:
    """Check ``logit_normal(n, m, s, generator) -> t``: n draws of sigmoid(m + s * N(0, 1))."""
    from statistics import NormalDist

    qs = torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95])
    for m, s in ((0.0, 1.0), (0.8, 0.5), (-1.0, 1.5)):
        try:
            got = student_fn(50_000, m, s, torch.Generator().manual_seed(0))
        except Exception as err:
            _fail(f"logit_normal raised {type(err).__name__}: {err}")
        if not isinstance(got, torch.Tensor) or got.shape != (50_000,):
            _fail(f"logit_normal(n=50000, ...) must return a tensor of shape (50000,), got {got!r}")
        got = got.detach().double()
        if not bool(torch.isfinite(got).all()):
            _fail("logit_normal returned NaN or infinite values.")
        if bool((got < 0).any()) or bool((got > 1).any()):
            _fail(f"with m = {m}, s = {s} some draws lie outside [0, 1]: squash m + s n with torch.sigmoid.")
        want = torch.tensor([1 / (1 + math.exp(-(m + s * NormalDist().inv_cdf(float(q))))) for q in qs],
                            dtype=torch.float64)
        have = torch.quantile(got, qs.double())
        if torch.allclose(have, want, atol=0.01):
            continue
        sq = torch.tensor([1 / (1 + math.exp(-(m + s * s * NormalDist().inv_cdf(float(q))))) for q in qs],
                          dtype=torch.float64)
        hint = ""
        if abs(s - 1.0) > 0.1 and torch.allclose(have, sq, atol=0.01):
            hint = " The spread looks like s^2: s is the standard deviation, multiply n ~ N(0, 1) by s."
        elif torch.allclose(have, qs.double(), atol=0.02) or torch.allclose(
                have, torch.sigmoid(m + s * qs.double()), atol=0.01):
            hint = (" Your n looks uniform on [0, 1): torch.rand draws uniform numbers; draw n from the standard "
                    "normal, torch.randn.")
        elif torch.allclose(have, 1 - want.flip(0), atol=0.01):
            hint = " The location has the wrong sign: t = sigmoid(m + s n), so m > 0 moves t towards 1 (noise)."
        _fail(f"with m = {m}, s = {s} the quantiles {[round(v, 3) for v in qs.tolist()]} of your draws are "
              f"{[round(v, 3) for v in have.tolist()]}; a logit-normal gives {[round(v, 3) for v in want.tolist()]}."
              + hint)
    try:
        again = [student_fn(1000, 0.0, 1.0, torch.Generator().manual_seed(seed)) for seed in (3, 3, 4)]
    except Exception as err:
        _fail(f"logit_normal raised {type(err).__name__}: {err}")
    if not torch.equal(again[0], again[1]):
        _fail("the distribution is right, but two calls with generators seeded alike gave different draws: "
              "pass generator=generator to torch.randn, so a seed reproduces the training times.")
    if torch.equal(again[0], again[2]):
        _fail("two different seeds gave the same draws: draw from the generator you are given.")
    print("logit_normal is correct: its quantiles match sigmoid(m + s n) for three (m, s) settings, and the "
          "generator makes it reproducible.")


@_takes_a_function
def check_shift(student_fn) -> None:
    """Check ``shift(t, k) -> t'``: k t / (1 + (k - 1) t), elementwise."""
    t = torch.tensor([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0], dtype=torch.float64)
    for k in (3.0, 0.5, 1.0):
        try:
            got = student_fn(t.clone(), k)
        except Exception as err:
            _fail(f"shift raised {type(err).__name__}: {err}")
        if not isinstance(got, torch.Tensor) or got.shape != t.shape:
            _fail(f"shift must return a tensor shaped like t {tuple(t.shape)}, got {got!r}")
        got = got.detach().double()
        want = k * t / (1 + (k - 1) * t)
        if _close(got, want, 1e-6):
            continue
        hints = [
            (t / (k - (k - 1) * t), "this is the inverse shift (the shift with 1 / k): it moves t towards the "
                                    "data for k > 1, but the shift must move it towards noise "
                                    "(shift(0.5, 3) = 0.75)."),
            (k * t / (1 + k * t), "the denominator is 1 + (k - 1) t, so that t = 1 stays 1."),
            ((k * t).clamp(max=1.0), "scaling t by k and clipping is not the shift: use k t / (1 + (k - 1) t)."),
        ]
        for value, hint in hints:
            if _close(got, value, 1e-6):
                _fail(f"with k = {k}: {hint}")
        _fail(f"with k = {k}: expected {[round(v, 4) for v in want.tolist()]}, got {[round(v, 4) for v in got.tolist()]}.")
    print("shift is correct: shift(0.5, 3) = 0.75, it fixes 0 and 1, and k = 1 changes nothing.")


def _path_probe():
    """A batch on the VP cosine path with its coefficients as (n, 1) tensors (float64)."""
    from .paths import vp_cosine

    path = vp_cosine()
    g = torch.Generator().manual_seed(7)
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)[:, None]
    x = torch.randn(19, 2, generator=g, dtype=torch.float64) * 2
    z = torch.randn(19, 2, generator=g, dtype=torch.float64)
    return path, t, x, z


@_takes_a_function
def check_eps_conversions(student_fn) -> None:
    """Check ``eps_to_x_and_velocity(eps, x_t, a, b, da, db) -> (x_hat, velocity)``."""
    path, t, x, z = _path_probe()
    a, b, da, db = path.a(t), path.b(t), path.da(t), path.db(t)
    x_t = a * x + b * z
    try:
        got = student_fn(z.clone(), x_t.clone(), a, b, da, db)
    except Exception as err:
        _fail(f"eps_to_x_and_velocity raised {type(err).__name__}: {err}")
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        _fail(f"eps_to_x_and_velocity must return two tensors (x_hat, velocity), got {type(got).__name__}")
    x_hat, vel = (torch.as_tensor(v).double() for v in got)
    if x_hat.shape != x.shape or vel.shape != x.shape:
        _fail(f"both outputs must have the shape of x_t {tuple(x.shape)}")
    if not _close(x_hat, x, 1e-6):
        hints = [((x_t + b * z) / a, "the noise is subtracted: x_t = a x + b eps, so x_hat = (x_t - b eps) / a."),
                 ((x_t - b * z) * a, "divide by a, not multiply: x_hat = (x_t - b eps) / a."),
                 (x_t - b * z, "you forgot to divide by a: x_hat = (x_t - b eps) / a."),
                 ((x_t - a * z) / b, "a and b are swapped: x_t = a x + b eps, so x_hat = (x_t - b eps) / a.")]
        for value, hint in hints:
            if _close(x_hat, value, 1e-6):
                _fail("x_hat: " + hint)
        _fail("x_hat does not recover the clean data: solve x_t = a x + b eps for x.")
    want = da * x + db * z
    if not _close(vel, want, 1e-6):
        for value, hint in ((a * x + b * z, "that is x_t itself: the velocity uses the derivatives, a' x + b' eps."),
                            (z - x, "z - x is the velocity of rectified flow only; on this path it is a' x + b' eps."),
                            (-b * x + a * z, "that is the v-prediction target a eps - b x, not the velocity a' x + b' eps.")):
            if _close(vel, value, 1e-6):
                _fail("velocity: " + hint)
        _fail("the velocity should be d x_t / dt = a' x_hat + b' eps.")
    print("eps_to_x_and_velocity is correct on the VP cosine path at 19 noise levels.")


@_takes_a_function
def check_ddpm_step(student_fn) -> None:
    """Check ``ddpm_step(x_t, x_hat, a_t, b_t, a_s, b_s, noise) -> x_s`` (the forward posterior draw)."""
    path, t, x, z = _path_probe()
    s = t - 0.04
    a_t, b_t, a_s, b_s = path.a(t), path.b(t), path.a(s), path.b(s)
    x_t = a_t * x + b_t * z
    g = torch.Generator().manual_seed(8)
    x_hat = x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64)
    noise = torch.randn(x.shape, generator=g, dtype=torch.float64)
    try:
        got = student_fn(x_t.clone(), x_hat.clone(), a_t, b_t, a_s, b_s, noise.clone())
    except Exception as err:
        _fail(f"ddpm_step raised {type(err).__name__}: {err}")
    if not isinstance(got, torch.Tensor) or got.shape != x.shape:
        _fail(f"ddpm_step must return a tensor of shape {tuple(x.shape)}, got {got!r}")
    got = got.detach().double()
    a_ts = a_t / a_s
    b_ts2 = b_t**2 - a_ts**2 * b_s**2
    mean = a_s * b_ts2 / b_t**2 * x_hat + a_ts * b_s**2 / b_t**2 * x_t
    std = (b_ts2 * b_s**2 / b_t**2).sqrt()
    if _close(got, mean + std * noise, 1e-6):
        print("ddpm_step is correct: mean and standard deviation of q(x_s | x_t, x_hat) both match.")
        return
    # First the mean: with zero noise the step must return it exactly.
    try:
        got_mean = student_fn(x_t.clone(), x_hat.clone(), a_t, b_t, a_s, b_s, torch.zeros_like(noise))
    except Exception as err:
        _fail(f"ddpm_step raised {type(err).__name__} with zero noise: {err}")
    if not isinstance(got_mean, torch.Tensor) or got_mean.shape != x.shape:
        _fail(f"ddpm_step must return a tensor of shape {tuple(x.shape)}, got {got_mean!r}")
    got_mean = got_mean.detach().double()
    if not _close(got_mean, mean, 1e-6):
        mean_hints = [
            (a_s * x_hat, "with zero noise you return a_s x_hat: that re-noises x_hat from scratch and forgets x_t; "
                          "the posterior mean mixes x_hat and x_t."),
            (a_s * x_hat + b_s * (x_t - a_t * x_hat) / b_t, "this is the deterministic DDIM step; DDPM's mean is "
                                                             "a_s b_{t|s}^2 / b_t^2 x_hat + a_{t|s} b_s^2 / b_t^2 x_t."),
            (a_ts * b_s**2 / b_t**2 * x_hat + a_s * b_ts2 / b_t**2 * x_t, "the weights of x_hat and x_t are swapped: "
                                                                          "x_hat gets a_s b_{t|s}^2 / b_t^2."),
            (x_t, "with zero noise the step returns x_t unchanged: the mean moves toward x_hat."),
        ]
        for value, hint in mean_hints:
            if _close(got_mean, value, 1e-6):
                _fail("The mean (your output with noise = 0) is wrong: " + hint)
        _fail("The mean (your output with noise = 0) is wrong: it should be a_s b_{t|s}^2 / b_t^2 x_hat + "
              "a_{t|s} b_s^2 / b_t^2 x_t, with a_{t|s} = a_t / a_s and b_{t|s}^2 = b_t^2 - a_{t|s}^2 b_s^2.")
    # The mean is right, so the rest is the noise term: read off the scale you gave it.
    biggest = noise.abs().argmax(dim=1, keepdim=True)  # per row, the coordinate with the most noise
    scale = (got - mean).gather(1, biggest) / noise.gather(1, biggest)
    std_hints = [(torch.zeros_like(std), "you add no noise: DDPM draws x_s, so add std * noise."),
                 (std**2, "you multiply the noise by the variance; multiply it by the standard deviation."),
                 (b_s.expand_as(std), "the noise scale is b_s, the spread of x_s given the clean x; given x_t it is "
                                      "smaller: sqrt(b_{t|s}^2 b_s^2 / b_t^2)."),
                 (b_ts2.sqrt(), "the noise scale is b_{t|s}, the forward step's; the posterior's is "
                                "sqrt(b_{t|s}^2 b_s^2 / b_t^2).")]
    for value, hint in std_hints:
        if _close(scale, value, 1e-4):
            _fail("The mean is right; the noise is not: " + hint)
    _fail("The mean is right; the noise is not: x_s = mean + std * noise with std = sqrt(b_{t|s}^2 b_s^2 / b_t^2).")
