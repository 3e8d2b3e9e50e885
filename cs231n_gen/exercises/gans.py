"""Lecture 01 (GANs): the non-saturating generator loss and the optimal discriminator."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .. import gan
from ._harness import call_student, close, exercise, fail, name_the_mistake


@exercise("nonsaturating_loss", references=('cs231n_gen.gan.nonsaturating_generator_loss',
                                  'cs231n_gen.gan.generator_loss',
                                  'cs231n_gen.gan._g_loss'))
def check_nonsaturating_loss(student_fn, probe):
    """Check ``nonsaturating_loss(fake_logits) -> scalar``: -mean(log D(G(z))), D = sigmoid(logit)."""
    jitter = torch.rand(5, generator=probe.generator()) * 0.2
    probes = {
        "typical logits": torch.tensor([-2.0, -0.5, 0.0, 0.7, 3.0]) + jitter,
        "a confident discriminator (logit -200: D(G(z)) ~ 1e-87)": torch.tensor([-200.0, -120.0, -30.0]) + jitter[:3],
        "a fooled discriminator (logit +40)": torch.tensor([40.0, 25.0]) + jitter[:2],
    }
    for what, logits in probes.items():
        x = logits.clone().requires_grad_(True)
        got = call_student(f"nonsaturating_loss on {what}", student_fn, x)
        if not isinstance(got, torch.Tensor) or got.numel() != 1:
            fail(f"nonsaturating_loss must return a scalar tensor, got {got!r}")
        want = gan.nonsaturating_generator_loss(logits)
        if not torch.isfinite(got):
            fail(f"the loss is {float(got.detach())} on {what}: log(sigmoid(l)) underflows for very negative l. "
                 "Write -log D = softplus(-l) (torch.nn.functional.softplus), which is exact and stable.")
        if close(got.detach(), want, tol=1e-4):
            continue
        lo = logits.double()
        hints = [
            (-F.softplus(lo).mean(),
             "this is the minimax loss log(1 - D(G(z))): the non-saturating one is -log D(G(z))."),
            (F.softplus(lo).mean(),
             "this is -log(1 - D(G(z))): the generator wants D(G(z)) -> 1, so use -log D(G(z))."),
            (-F.softplus(-lo).mean(),
             "the sign is flipped: the loss to minimise is -log D(G(z)) (positive), not log D(G(z))."),
            (F.softplus(-lo).sum(), "the loss is summed over the batch: take the mean."),
            ((1 - torch.sigmoid(lo)).mean(), "this is 1 - D(G(z)), not its log: use -log D(G(z))."),
        ]
        name_the_mistake(got.detach(), hints, tol=1e-4, prefix=f"On {what}: ")
        for eps in (1e-12, 1e-10, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3):
            if close(got.detach(), -torch.log(torch.sigmoid(lo) + eps).mean(), tol=1e-4):
                fail(f"On {what}: -log(sigmoid(l) + {eps:g}) stops growing at -log({eps:g}) = {-math.log(eps):.1f}, "
                     "and its gradient vanishes there: the generator gets no signal exactly when D rejects its "
                     "samples most. Write -log D = softplus(-l) (torch.nn.functional.softplus) instead of adding "
                     "an epsilon.")
        fail(f"On {what}: expected {float(want):.6f}, got {float(got.detach()):.6f}.")
    x = (torch.tensor([-8.0, -6.0]) + jitter[:2]).requires_grad_(True)
    try:
        student_fn(x).backward()
    except RuntimeError:
        pass  # no graph to differentiate: reported just below
    if x.grad is None or not torch.allclose(x.grad, -(1 - torch.sigmoid(x.detach())) / 2, atol=1e-4):
        fail("the value is right but the gradient is not: compute the loss with differentiable torch "
             "operations on the logits (no .item(), no .detach()).")
    return ("nonsaturating_loss is correct, finite for very confident discriminators, and has the "
            "gradient -(1 - D) / n per logit.")


@exercise("optimal_d", references=('cs231n_gen.gan.optimal_discriminator',))
def check_optimal_discriminator(student_fn, probe):
    """Check ``optimal_d(p_data, p_g) -> D*``: elementwise p_data / (p_data + p_g) from density values."""
    g = probe.generator()
    p = 0.05 + 2 * torch.rand(7, generator=g)
    q = 0.05 + 2 * torch.rand(7, generator=g)
    p[2], q[3] = 0.0, 0.0  # where only G lives, and where only the data does
    got = call_student("optimal_d", student_fn, p.clone(), q.clone())
    if not isinstance(got, torch.Tensor) or got.shape != p.shape:
        fail(f"optimal_d must return a tensor with one value per point (shape {tuple(p.shape)}), got {got!r}")
    want = p / (p + q)
    if close(got, want):
        return "optimal_d is correct: 1/2 where the densities agree, 1 where only data lives, 0 where only G does."
    hints = [
        (q / (p + q), "this is 1 - D*: D* is the probability that x is REAL, p_data / (p_data + p_G)."),
        (p / (p + q) / 2, "D* has no factor 1/2: where p_data = p_G it equals 1/2 already."),
    ]
    name_the_mistake(got, hints)
    has_g = q > 0  # the ratio p / q is inf or NaN where q = 0: compare where it is defined
    if close(got.detach()[has_g], (p / q)[has_g]):
        fail("this is the density ratio p_data / p_G (infinite where p_G = 0); D* divides by the sum: "
             "p_data / (p_data + p_G), which stays between 0 and 1.")
    fail(f"expected {[round(v, 4) for v in want.tolist()]}, got {[round(v, 4) for v in got.detach().tolist()]}.")
