"""Lecture 04 (noise schedules): the logit-normal sampler and the shift."""
from __future__ import annotations

import math
from statistics import NormalDist

import torch

from ._harness import call_student, close, exercise, fail, name_the_mistake


def _logit_normal_quantiles(qs, m, s):
    return torch.tensor([1 / (1 + math.exp(-(m + s * NormalDist().inv_cdf(float(q))))) for q in qs],
                        dtype=torch.float64)


@exercise("logit_normal", references=('cs231n_gen.schedules.logit_normal_t',))
def check_logit_normal_sampler(student_fn, probe):
    """Check ``logit_normal(n, m, s, generator) -> t``: n draws of sigmoid(m + s * N(0, 1))."""
    qs = torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95])
    drawn = (round(probe.uniform(-1.2, 1.2, 0), 2), round(probe.uniform(0.4, 1.6, 1), 2))
    seed = int(torch.randint(0, 2**31, (), generator=probe.generator()))
    for m, s in ((0.0, 1.0), (0.8, 0.5), (-1.0, 1.5), drawn):
        got = call_student("logit_normal", student_fn, 50_000, m, s, torch.Generator().manual_seed(seed))
        if not isinstance(got, torch.Tensor) or got.shape != (50_000,):
            fail(f"logit_normal(n=50000, ...) must return a tensor of shape (50000,), got {got!r}")
        got = got.detach().double()
        if not bool(torch.isfinite(got).all()):
            fail("logit_normal returned NaN or infinite values.")
        if bool((got < 0).any()) or bool((got > 1).any()):
            fail(f"with m = {m}, s = {s} some draws lie outside [0, 1]: squash m + s n with torch.sigmoid.")
        want = _logit_normal_quantiles(qs, m, s)
        have = torch.quantile(got, qs.double())
        if torch.allclose(have, want, atol=0.01):
            continue
        hint = ""
        if abs(s - 1.0) > 0.1 and torch.allclose(have, _logit_normal_quantiles(qs, m, s * s), atol=0.01):
            hint = " The spread looks like s^2: s is the standard deviation, multiply n ~ N(0, 1) by s."
        elif torch.allclose(have, qs.double(), atol=0.02) or torch.allclose(
                have, torch.sigmoid(m + s * qs.double()), atol=0.01):
            hint = (" Your n looks uniform on [0, 1): torch.rand draws uniform numbers; draw n from the standard "
                    "normal, torch.randn.")
        elif torch.allclose(have, 1 - want.flip(0), atol=0.01):
            hint = " The location has the wrong sign: t = sigmoid(m + s n), so m > 0 moves t towards 1 (noise)."
        fail(f"with m = {m}, s = {s} the quantiles {[round(v, 3) for v in qs.tolist()]} of your draws are "
             f"{[round(v, 3) for v in have.tolist()]}; a logit-normal gives {[round(v, 3) for v in want.tolist()]}."
             + hint)
    again = [call_student("logit_normal", student_fn, 1000, 0.0, 1.0, torch.Generator().manual_seed(k))
             for k in (seed + 3, seed + 3, seed + 4)]
    if not torch.equal(again[0], again[1]):
        fail("the distribution is right, but two calls with generators seeded alike gave different draws: "
             "pass generator=generator to torch.randn, so a seed reproduces the training times.")
    if torch.equal(again[0], again[2]):
        fail("two different seeds gave the same draws: draw from the generator you are given.")
    return ("logit_normal is correct: its quantiles match sigmoid(m + s n) for four (m, s) settings, and the "
            "generator makes it reproducible.")


@exercise("shift", references=('cs231n_gen.schedules.shift_time', 'cs231n_gen.schedules._shift'))
def check_shift(student_fn, probe):
    """Check ``shift(t, k) -> t'``: k t / (1 + (k - 1) t), elementwise."""
    inner = torch.rand(4, generator=probe.generator(), dtype=torch.float64)
    t = torch.cat([torch.tensor([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0], dtype=torch.float64), inner])
    for k in (3.0, 0.5, 1.0, round(probe.uniform(1.5, 6.0), 2)):
        got = call_student("shift", student_fn, t.clone(), k)
        if not isinstance(got, torch.Tensor) or got.shape != t.shape:
            fail(f"shift must return a tensor shaped like t {tuple(t.shape)}, got {got!r}")
        got = got.detach().double()
        want = k * t / (1 + (k - 1) * t)
        if close(got, want, 1e-6):
            continue
        hints = [
            (t / (k - (k - 1) * t), "this is the inverse shift (the shift with 1 / k): it moves t towards the "
                                    "data for k > 1, but the shift must move it towards noise "
                                    "(shift(0.5, 3) = 0.75)."),
            (k * t / (1 + k * t), "the denominator is 1 + (k - 1) t, so that t = 1 stays 1."),
            ((k * t).clamp(max=1.0), "scaling t by k and clipping is not the shift: use k t / (1 + (k - 1) t)."),
        ]
        name_the_mistake(got, hints, 1e-6, prefix=f"with k = {k}: ")
        fail(f"with k = {k}: expected {[round(v, 4) for v in want.tolist()]}, "
             f"got {[round(v, 4) for v in got.tolist()]}.")
    return "shift is correct: shift(0.5, 3) = 0.75, it fixes 0 and 1, and k = 1 changes nothing."
