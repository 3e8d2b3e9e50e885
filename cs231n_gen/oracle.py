r"""The exact optimal predictions for Gaussian-mixture data: the "physical limit".

For data :math:`x \sim \sum_k \pi_k N(\mu_k, s_k^2 I)`, noise :math:`z \sim N(0, I)` and
:math:`x_t = a\,x + b\,z` (rectified flow: a = 1 - t, b = t), everything is Gaussian
once we condition on the component k:

.. math::
    x_t \mid k \sim N(a \mu_k, \sigma_k^2 I), \qquad \sigma_k^2 = a^2 s_k^2 + b^2,

    E[x \mid x_t, k] = \mu_k + \frac{a s_k^2}{\sigma_k^2}(x_t - a\mu_k), \qquad
    E[z \mid x_t, k] = \frac{b}{\sigma_k^2}(x_t - a\mu_k),

and the component posterior is :math:`r_k(x_t) \propto \pi_k N(x_t; a\mu_k, \sigma_k^2 I)`.
The minimiser of the training loss E||f(x_t, t) - (z - x)||^2 is the conditional mean

.. math::  v^*(x_t, t) = E[z - x \mid x_t] = \sum_k r_k \big(E[z \mid x_t, k] - E[x \mid x_t, k]\big).

It is an *average* over all (x, z) pairs that could have produced x_t, so its loss is
not zero: the leftover is E tr Var(z - x | x_t), the irreducible loss. Limits: at t = 1
(x_t = z) E[x | x_t] is the data mean, so v* = x_t - E[x]; at t = 0 (x_t = x)
E[z | x_t] = 0 is the noise mean, so v* = -x_t.
"""
from __future__ import annotations

import torch

from ._validate import as_time, check_int, check_labels, check_points, check_real
from .data.toy2d import GaussianMixture


def _check_mixture(mixture) -> GaussianMixture:
    if not isinstance(mixture, GaussianMixture):
        raise ValueError(
            f"mixture must be a cs231n_gen.data.GaussianMixture, got {type(mixture).__name__}"
        )
    return mixture


def _per_component(mixture, x_t, t, check_values=True):
    """Responsibilities r (n, K), E[x|x_t,k] and E[z|x_t,k] (n, K, D), and a, b, sigma^2."""
    mixture = _check_mixture(mixture)
    x_t = check_points("x_t", x_t, mixture.dim)
    t = as_time("t", t, x_t.shape[0], x_t, check_values=check_values)
    means = mixture.means.to(x_t)
    s2 = mixture.stds.to(x_t) ** 2
    log_w = torch.log(mixture.weights.to(x_t))
    a, b = (1 - t)[:, None], t[:, None]  # (n, 1)
    var = a**2 * s2 + b**2  # (n, K)
    diff = x_t[:, None, :] - a[:, :, None] * means[None]  # (n, K, D)
    log_r = log_w - 0.5 * mixture.dim * torch.log(var) - 0.5 * diff.square().sum(-1) / var
    r = torch.softmax(log_r, dim=1)
    ex = means[None] + (a * s2 / var)[:, :, None] * diff
    ez = (b / var)[:, :, None] * diff
    return r, ex, ez, a, b, s2, var


def component_posterior(mixture: GaussianMixture, x_t: torch.Tensor, t) -> torch.Tensor:
    """r_k(x_t) = p(k | x_t): which mode the noisy point came from, shape (n, K)."""
    return _per_component(mixture, x_t, t)[0]


def posterior_mean(mixture: GaussianMixture, x_t: torch.Tensor, t) -> torch.Tensor:
    """E[x | x_t]: the optimal denoiser, shape (n, D)."""
    r, ex, *_ = _per_component(mixture, x_t, t)
    return (r[:, :, None] * ex).sum(1)


def noise_mean(mixture: GaussianMixture, x_t: torch.Tensor, t) -> torch.Tensor:
    """E[z | x_t]: the optimal noise prediction, shape (n, D)."""
    r, _, ez, *_ = _per_component(mixture, x_t, t)
    return (r[:, :, None] * ez).sum(1)


def velocity(mixture: GaussianMixture, x_t: torch.Tensor, t, *, check_values: bool = True) -> torch.Tensor:
    """v*(x_t, t) = E[z - x | x_t]: the best any velocity network can do, shape (n, D)."""
    r, ex, ez, *_ = _per_component(mixture, x_t, t, check_values=check_values)
    return (r[:, :, None] * (ez - ex)).sum(1)


def conditional_variance(mixture: GaussianMixture, x_t: torch.Tensor, t) -> torch.Tensor:
    r"""tr Var(z - x | x_t), shape (n,): the loss even the oracle pays at x_t.

    Within component k (per coordinate), v = z - x has variance 1 + s^2 and covariance
    b - a s^2 with x_t, so Var(v | x_t, k) = 1 + s^2 - (b - a s^2)^2 / sigma_k^2; the
    mixture adds the spread of the component means (law of total variance).
    """
    r, ex, ez, a, b, s2, var = _per_component(mixture, x_t, t)
    within = mixture.dim * (1 + s2 - (b - a * s2) ** 2 / var)  # (n, K)
    m = ez - ex  # (n, K, D)
    second = (r * (within + m.square().sum(-1))).sum(1)
    mean = (r[:, :, None] * m).sum(1)
    return second - mean.square().sum(1)


def irreducible_loss(
    mixture: GaussianMixture,
    t,
    n: int = 4096,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The oracle's expected loss at each time in ``t`` (a number or 1-D tensor).

    E_{x_t ~ p_t} tr Var(z - x | x_t), estimated from ``n`` draws of x_t per time.
    Returns a tensor of the same length as ``t``.
    """
    mixture = _check_mixture(mixture)
    n = check_int("n", n, minimum=1)
    times = torch.as_tensor(t, dtype=mixture.means.dtype, device=mixture.device).reshape(-1)
    out = []
    for ti in times:
        x = mixture.sample(n, generator=generator)
        z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        xt = (1 - ti) * x + ti * z
        out.append(conditional_variance(mixture, xt, ti).mean())
    return torch.stack(out)


class VelocityOracle(torch.nn.Module):
    """The exact optimal velocity as a model: ``VelocityOracle(mixture)(x_t, t)``.

    Drop it into any sampler in place of a trained network to see the best that
    network could ever do.
    """

    def __init__(self, mixture: GaussianMixture):
        super().__init__()
        self.mixture = _check_mixture(mixture)

    def forward(self, x_t: torch.Tensor, t) -> torch.Tensor:
        return velocity(self.mixture, x_t, t, check_values=False)


def affine_loss(
    mixture: GaussianMixture,
    t,
    n: int = 8192,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The loss of the best *affine* predictor v ~ W x_t + c at each time in ``t``.

    Fitted by least squares on ``n`` fresh (x, z) pairs per time and scored on another
    ``n``. Where this matches :func:`irreducible_loss`, the optimal velocity is a simple
    (affine) function of x_t and easy to learn; where it is far above, the network must
    learn a sharply nonlinear field (which mode did x_t come from?).
    """
    mixture = _check_mixture(mixture)
    n = check_int("n", n, minimum=mixture.dim + 2)
    times = torch.as_tensor(t, dtype=mixture.means.dtype, device=mixture.device).reshape(-1)
    out = []
    for ti in times:
        sets = []
        for _ in range(2):
            x = mixture.sample(n, generator=generator)
            z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            xt = (1 - ti) * x + ti * z
            sets.append((torch.cat([xt, torch.ones(n, 1, device=x.device, dtype=x.dtype)], 1), z - x))
        (a_fit, v_fit), (a_test, v_test) = sets
        coef = torch.linalg.lstsq(a_fit.double(), v_fit.double()).solution
        out.append((a_test.double() @ coef - v_test.double()).square().sum(1).mean().to(x.dtype))
    return torch.stack(out)


def class_velocity(labelled, x_t: torch.Tensor, t, y) -> torch.Tensor:
    """v*(x_t, t | y): the optimal conditional velocity, each row under its own class.

    ``labelled`` is a :class:`~cs231n_gen.data.LabelledMixture`; ``y`` an int or (n,) labels.
    """
    from .data.toy2d import LabelledMixture

    if not isinstance(labelled, LabelledMixture):
        raise ValueError(f"labelled must be a LabelledMixture, got {type(labelled).__name__}")
    x_t = check_points("x_t", x_t, labelled.dim)
    n = x_t.shape[0]
    y = check_labels("y", y, n, labelled.n_classes, x_t.device)
    t = as_time("t", t, n, x_t)
    out = torch.empty_like(x_t)
    for c in range(labelled.n_classes):
        rows = y == c
        if bool(rows.any()):
            out[rows] = velocity(labelled.class_mixture(c).to(x_t.device), x_t[rows], t[rows])
    return out


def guided_velocity(labelled, x_t: torch.Tensor, t, y, w: float) -> torch.Tensor:
    """(1 + w) v*(x_t, t | y) - w v*(x_t, t): classifier-free guidance with exact fields."""
    w = check_real("w", w, minimum=0.0)
    v_cond = class_velocity(labelled, x_t, t, y)
    if w == 0.0:
        return v_cond
    return (1 + w) * v_cond - w * velocity(labelled.mixture.to(x_t.device), x_t, t)
