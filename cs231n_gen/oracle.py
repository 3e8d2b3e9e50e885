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

from ._validate import as_time, check_generator, check_int, check_labels, check_points, check_real, check_times
from .data.toy2d import GaussianMixture, check_labelled_mixture, check_mixture
from .paths import check_path, check_target


class _Posterior:
    r"""Per-component posterior weights and the scalars that build every oracle quantity.

    Conditioned on component k everything is affine in x_t:

    .. math::
        E[x \mid x_t, k] = (1 - a d_k)\,\mu_k + d_k\,x_t, \quad d_k = a s_k^2 / \sigma_k^2,
        \qquad E[z \mid x_t, k] = e_k\,(x_t - a \mu_k), \quad e_k = b / \sigma_k^2,

    so averaging over r_k(x_t) needs only (n, K) numbers and two matrix products with
    the (K, D) means: no (n, K, D) tensor. That keeps the oracle cheap for image-sized
    data (thousands of components in hundreds of dimensions). Distances are computed in
    float64, since |x_t - a mu_k|^2 = |x_t|^2 - 2 a x_t . mu_k + a^2 |mu_k|^2 cancels.
    """

    def __init__(self, mixture, x_t, t, path=None):
        """``mixture``, ``x_t`` (n, D) and ``t`` (n,) as checked by :func:`_evaluate`;
        ``path`` a :class:`~cs231n_gen.paths.DiffusionPath` (None: rectified flow)."""
        self.dim = mixture.dim
        x = x_t.double()
        self.x = x
        self.t = t.double()[:, None]  # (n, 1)
        self.path = path
        self.means = mixture.means.to(x)
        self.s2 = mixture.stds.to(x) ** 2
        if path is None:
            self.a, self.b = 1 - self.t, self.t
        else:
            self.a, self.b = path._a(self.t), path._b(self.t)
        self.var = self.a**2 * self.s2 + self.b**2  # (n, K)
        self.x_sq = x.square().sum(1, keepdim=True)  # (n, 1)
        self.mu_sq = self.means.square().sum(1)  # (K,)
        self.x_mu = x @ self.means.T  # (n, K)
        dist = (self.x_sq - 2 * self.a * self.x_mu + self.a**2 * self.mu_sq).clamp_min(0.0)
        log_w = torch.log(mixture.weights.to(x))
        log_r = log_w - 0.5 * self.dim * torch.log(self.var) - 0.5 * dist / self.var
        self.r = torch.softmax(log_r, dim=1)
        self.d = self.a * self.s2 / self.var
        self.e = self.b / self.var

    def posterior_mean(self):
        return (self.r * (1 - self.a * self.d)) @ self.means + (self.r * self.d).sum(1, keepdim=True) * self.x

    def noise_mean(self):
        return (self.r * self.e).sum(1, keepdim=True) * self.x - (self.r * self.a * self.e) @ self.means

    def velocity(self):
        # E[z - x | x_t, k] = alpha_k x_t + beta_k mu_k
        alpha = self.e - self.d
        beta = -(1 + self.a * alpha)
        return (self.r * alpha).sum(1, keepdim=True) * self.x + (self.r * beta) @ self.means, alpha, beta

    def velocity_variance(self):
        """tr Var(z - x | x_t): within-component variance plus the spread of the means."""
        mean, alpha, beta = self.velocity()
        within = self.dim * (1 + self.s2 - (self.b - self.a * self.s2) ** 2 / self.var)  # (n, K)
        m_sq = alpha**2 * self.x_sq + 2 * alpha * beta * self.x_mu + beta**2 * self.mu_sq
        second = (self.r * (within + m_sq)).sum(1)
        return (second - mean.square().sum(1)).clamp_min(0.0)


_CHUNK_ENTRIES = 1 << 21  # rows x components per chunk: keeps each (n, K) float64 array near 16 MB


def _evaluate(mixture, x_t, t, what, check_values=True, path=None):
    """Apply ``what(posterior)`` to chunks of rows, so n x K never grows past ``_CHUNK_ENTRIES``."""
    mixture = check_mixture("mixture", mixture)
    x_t = check_points("x_t", x_t, mixture.dim)
    t = as_time("t", t, x_t.shape[0], x_t, check_values=check_values, rows_of="x_t")
    rows = max(1, _CHUNK_ENTRIES // mixture.n_components)
    parts = [what(_Posterior(mixture, x_t[i:i + rows], t[i:i + rows], path)).to(x_t.dtype)
             for i in range(0, x_t.shape[0], rows)]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def component_posterior(mixture: GaussianMixture, x_t: torch.Tensor, t) -> torch.Tensor:
    """r_k(x_t) = p(k | x_t): which mode the noisy point came from, shape (n, K)."""
    return _evaluate(mixture, x_t, t, lambda post: post.r)


def posterior_mean(mixture: GaussianMixture, x_t: torch.Tensor, t) -> torch.Tensor:
    """E[x | x_t]: the optimal denoiser, shape (n, D)."""
    return _evaluate(mixture, x_t, t, _Posterior.posterior_mean)


def noise_mean(mixture: GaussianMixture, x_t: torch.Tensor, t) -> torch.Tensor:
    """E[z | x_t]: the optimal noise prediction, shape (n, D)."""
    return _evaluate(mixture, x_t, t, _Posterior.noise_mean)


def velocity(mixture: GaussianMixture, x_t: torch.Tensor, t, *, check_values: bool = True) -> torch.Tensor:
    """v*(x_t, t) = E[z - x | x_t]: the best any velocity network can do, shape (n, D)."""
    return _evaluate(mixture, x_t, t, lambda post: post.velocity()[0], check_values=check_values)


def conditional_variance(mixture: GaussianMixture, x_t: torch.Tensor, t) -> torch.Tensor:
    r"""tr Var(z - x | x_t), shape (n,): the loss even the oracle pays at x_t.

    Within component k (per coordinate), v = z - x has variance 1 + s^2 and covariance
    b - a s^2 with x_t, so Var(v | x_t, k) = 1 + s^2 - (b - a s^2)^2 / sigma_k^2; the
    mixture adds the spread of the component means (law of total variance).
    """
    return _evaluate(mixture, x_t, t, _Posterior.velocity_variance)


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
    return _average_per_time(mixture, t, n, generator,
                             lambda x, xt, ti: conditional_variance(mixture, xt, ti).mean())


def predict(mixture: GaussianMixture, x_t: torch.Tensor, t, path, target: str, *,
            check_values: bool = True) -> torch.Tensor:
    r"""The optimal prediction of any target on any path: E[c x + d z | x_t], shape (n, D).

    ``path`` is a :class:`~cs231n_gen.paths.DiffusionPath` (x_t = a x + b z) and
    ``target`` one of :data:`~cs231n_gen.paths.TARGETS`; e.g. ``target="score"`` gives
    the exact score grad log p_t(x_t) = -E[z | x_t] / b(t), ``"eps"`` the optimal noise
    prediction, ``"x"`` the optimal denoiser.
    """
    path = check_path(path)
    check_target("target", target)
    if check_values:
        x_t = check_points("x_t", x_t, check_mixture("mixture", mixture).dim)
        tt = as_time("t", t, x_t.shape[0], x_t, rows_of="x_t").double()
        c, d = path._coefficients(target, tt)
        if not (bool(torch.isfinite(c).all()) and bool(torch.isfinite(d).all())):
            raise ValueError(f"target {target!r} is undefined at some of these t on the {path.name} path "
                             "(the score needs b(t) > 0, i.e. t > 0); use t in (0, 1]")

    def what(post):
        c, d = path._coefficients(target, post.t)
        return c * post.posterior_mean() + d * post.noise_mean()

    return _evaluate(mixture, x_t, t, what, check_values=check_values, path=path)


class Oracle(torch.nn.Module):
    """``Oracle(mixture, path, target)(x_t, t)``: the exact prediction as a model, for any sampler."""

    def __init__(self, mixture: GaussianMixture, path, target: str = "velocity"):
        super().__init__()
        self.mixture = check_mixture("mixture", mixture)
        self.path = check_path(path)
        self.target = check_target("target", target)

    def forward(self, x_t: torch.Tensor, t) -> torch.Tensor:
        on_cpu = isinstance(x_t, torch.Tensor) and x_t.device.type == "cpu"  # value checks are free there
        return predict(self.mixture, x_t, t, self.path, self.target, check_values=on_cpu)


def _average_per_time(mixture, t, n, generator, score) -> torch.Tensor:
    """For each time in ``t``: draw n pairs (x, z), form x_t, return ``score(x, x_t, t)``."""
    mixture = check_mixture("mixture", mixture)
    n = check_int("n", n, minimum=1)
    times = check_times("t", t, dtype=mixture.means.dtype, device=mixture.device)
    check_generator("generator", generator, mixture.device)
    out = []
    for ti in times:
        x = mixture.sample(n, generator=generator)
        z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        out.append(score(x, (1 - ti) * x + ti * z, ti))
    return torch.stack(out)


def denoising_error(
    mixture: GaussianMixture,
    t,
    n: int = 2048,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The optimal denoiser's mean squared error per coordinate at each time in ``t``.

    E ||E[x | x_t] - x||^2 / D over x ~ p_data, z ~ N(0, I), from ``n`` draws per time:
    how much of the clean data even a perfect model cannot recover from x_t. It is 0 at
    t = 0 and the data's variance per coordinate at t = 1; *where* in between it rises
    is where the model has decisions to make. Returns a tensor of the same length as ``t``.
    """
    return _average_per_time(mixture, t, n, generator,
                             lambda x, xt, ti: (posterior_mean(mixture, xt, ti) - x).square().mean())


class VelocityOracle(torch.nn.Module):
    """The exact optimal velocity as a model: ``VelocityOracle(mixture)(x_t, t)``.

    Drop it into any sampler in place of a trained network to see the best that
    network could ever do.
    """

    def __init__(self, mixture: GaussianMixture):
        super().__init__()
        self.mixture = check_mixture("mixture", mixture)

    def forward(self, x_t: torch.Tensor, t) -> torch.Tensor:
        on_cpu = isinstance(x_t, torch.Tensor) and x_t.device.type == "cpu"  # value checks are free there
        return velocity(self.mixture, x_t, t, check_values=on_cpu)


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
    mixture = check_mixture("mixture", mixture)
    n = check_int("n", n, minimum=mixture.dim + 2)
    times = check_times("t", t, dtype=mixture.means.dtype, device=mixture.device)
    check_generator("generator", generator, mixture.device)
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
    return _by_class(labelled, x_t, t, y, velocity)


def class_conditional_variance(labelled, x_t: torch.Tensor, t, y) -> torch.Tensor:
    """tr Var(z - x | x_t, y), shape (n,): the loss the exact conditional field pays, row by row."""
    return _by_class(labelled, x_t, t, y, conditional_variance)


def _by_class(labelled, x_t, t, y, quantity) -> torch.Tensor:
    """``quantity(p(x | y_i), x_t_i, t_i)`` for each row, grouped by class (one call per class)."""
    labelled = check_labelled_mixture(labelled)
    x_t = check_points("x_t", x_t, labelled.dim)
    n = x_t.shape[0]
    y = check_labels("y", y, n, labelled.n_classes, x_t.device, rows_of="x_t")
    t = as_time("t", t, n, x_t, rows_of="x_t")
    out = None
    for c in range(labelled.n_classes):
        rows = y == c
        if bool(rows.any()):
            value = quantity(labelled.class_mixture(c).to(x_t.device), x_t[rows], t[rows])
            if out is None:
                out = value.new_empty((n,) + tuple(value.shape[1:]))
            out[rows] = value
    return out


def guided_velocity(labelled, x_t: torch.Tensor, t, y, w: float) -> torch.Tensor:
    """(1 + w) v*(x_t, t | y) - w v*(x_t, t): classifier-free guidance with exact fields."""
    w = check_real("w", w, minimum=0.0)
    v_cond = class_velocity(labelled, x_t, t, y)
    if w == 0.0:
        return v_cond
    return (1 + w) * v_cond - w * velocity(labelled.mixture.to(x_t.device), x_t, t)


def class_log_posterior(labelled, x_t: torch.Tensor, t) -> torch.Tensor:
    r"""log p_t(y | x_t), shape (n, C): the exact *noisy* classifier.

    The classifier that classifier guidance needs must read noisy inputs: at time t it
    sees x_t, not x. For a labelled mixture it is the sum of the component posteriors
    r_k(x_t) over the components of each class; at t = 1 it is the prior p(y) and at
    t = 0 the clean-data :meth:`~cs231n_gen.data.LabelledMixture.class_posterior`.
    """
    labelled = check_labelled_mixture(labelled)
    x_t = check_points("x_t", x_t, labelled.dim)
    t = as_time("t", t, x_t.shape[0], x_t, rows_of="x_t")
    r = component_posterior(labelled.mixture.to(x_t.device), x_t, t)
    classes = labelled.component_classes.to(x_t.device)
    post = torch.zeros(x_t.shape[0], labelled.n_classes, device=x_t.device, dtype=x_t.dtype)
    return torch.log(post.index_add(1, classes, r).clamp_min(1e-30))


def classifier_guided_velocity(labelled, x_t: torch.Tensor, t, y, scale: float) -> torch.Tensor:
    r"""Classifier guidance: the unconditional v* steered by a noisy classifier's gradient.

    Guidance in score form adds ``scale`` times grad log p_t(y | x_t) to the score
    grad log p_t(x_t). For x_t = (1 - t) x + t z the velocity and the score are related by
    v = -(x_t + t s) / (1 - t) (since s = -E[z | x_t] / t), so the same shift reads, in velocities,

    .. math::  v = v^*(x_t, t) - \text{scale}\,\frac{t}{1 - t}\,\nabla_{x_t} \log p_t(y \mid x_t).

    The gradient is taken by autograd through :func:`class_log_posterior`, as one would
    through a trained classifier. With ``scale = 1 + w`` this is exactly the
    classifier-free guided field (1 + w) v*(. | y) - w v* (:func:`guided_velocity`): CFG
    is classifier guidance with the classifier p_t(y | x_t) implied by the generative
    model itself. Needs t < 1 (the factor t / (1 - t) is infinite at pure noise).
    """
    labelled = check_labelled_mixture(labelled)
    scale = check_real("scale", scale, minimum=0.0)
    x_t = check_points("x_t", x_t, labelled.dim)
    n = x_t.shape[0]
    y = check_labels("y", y, n, labelled.n_classes, x_t.device, rows_of="x_t")
    t = as_time("t", t, n, x_t, rows_of="x_t")
    if bool((t >= 1).any()):
        raise ValueError("t must be < 1 for classifier guidance (the gradient is scaled by t / (1 - t))")
    with torch.enable_grad():
        x = x_t.detach().requires_grad_(True)
        log_p = class_log_posterior(labelled, x, t).gather(1, y[:, None]).sum()
        grad = torch.autograd.grad(log_p, x)[0]
    v = velocity(labelled.mixture.to(x_t.device), x_t, t)
    return v - scale * (t / (1 - t))[:, None] * grad
