"""Two-dimensional toy distributions: the lectures' laboratory.

``GaussianMixture`` is the workhorse: it samples, evaluates its density and knows
its own component posteriors, which is what lets :mod:`cs231n_gen.oracle` compute
the exact optimal denoiser. The other toys (moons, checkerboard, spiral) only
sample; they are there to show that nothing in the training recipe depends on the
data being a mixture.
"""
from __future__ import annotations

import math

import torch

from .._validate import (as_float_tensor, check_device, check_dtype, check_generator, check_instance, check_int,
                         check_points, check_real)


class GaussianMixture:
    r"""A mixture of isotropic Gaussians :math:`p(x) = \sum_k \pi_k N(x; \mu_k, s_k^2 I)`.

    Args:
        means: (K, D) component means.
        std: one standard deviation for all components, or K of them.
        weights: (K,) non-negative mixture weights (normalised here); uniform if None.
    """

    def __init__(self, means, std, weights=None):
        means = as_float_tensor("means", means, ndim=2)
        if means.shape[0] < 1 or means.shape[1] < 1:
            raise ValueError(f"means must have shape (K, D) with K, D >= 1, got {tuple(means.shape)}")
        k = means.shape[0]
        std = as_float_tensor("std", std).to(means)
        if std.ndim == 0:
            std = std.expand(k).clone()
        if std.shape != (k,):
            raise ValueError(f"std must be a number or have shape ({k},) (one per row of means), "
                             f"got shape {tuple(std.shape)}")
        if bool((std <= 0).any()):
            raise ValueError(f"std must be > 0, got {std.tolist()}")
        if weights is None:
            weights = torch.full((k,), 1.0 / k)
        weights = as_float_tensor("weights", weights).to(means)
        if weights.shape != (k,):
            raise ValueError(f"weights must have shape ({k},) (one per row of means), got shape {tuple(weights.shape)}")
        if bool((weights < 0).any()) or float(weights.sum()) <= 0:
            raise ValueError(f"weights must be >= 0 with a positive sum, got {weights.tolist()}")
        self.means = means
        self.stds = std
        self.weights = weights / weights.sum()

    # -- basic facts ---------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def device(self) -> torch.device:
        return self.means.device

    @property
    def mean(self) -> torch.Tensor:
        """E[x] = sum_k pi_k mu_k, shape (D,)."""
        return self.weights @ self.means

    @property
    def total_variance(self) -> torch.Tensor:
        """tr Cov[x] = sum_k pi_k (D s_k^2 + |mu_k|^2) - |E x|^2 (a 0-d tensor)."""
        second = self.weights @ (self.dim * self.stds**2 + (self.means**2).sum(1))
        return second - (self.mean**2).sum()

    def to(self, device=None, dtype=None) -> "GaussianMixture":
        """A copy on another device or dtype."""
        device = check_device("device", device)
        if dtype is not None:
            check_dtype("dtype", dtype)
        out = GaussianMixture.__new__(GaussianMixture)
        out.means = self.means.to(device=device, dtype=dtype)
        out.stds = self.stds.to(device=device, dtype=dtype)
        out.weights = self.weights.to(device=device, dtype=dtype)
        return out

    def __repr__(self) -> str:
        return (
            f"GaussianMixture(K={self.n_components}, D={self.dim}, "
            f"std in [{self.stds.min().item():.3g}, {self.stds.max().item():.3g}])"
        )

    # -- sampling and density ------------------------------------------------------
    def sample(self, n: int, generator: torch.Generator | None = None, return_labels: bool = False):
        """Draw ``n`` points (and, with ``return_labels``, their component indices)."""
        n = check_int("n", n, minimum=1)
        generator = check_generator("generator", generator, self.device)
        labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.dim, generator=generator, device=self.device, dtype=self.means.dtype)
        x = self.means[labels] + self.stds[labels, None] * noise
        return (x, labels) if return_labels else x

    def component_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log pi_k + log N(x; mu_k, s_k^2 I) for every component: shape (n, K)."""
        x = check_points("x", x, self.dim)
        means, stds, weights = (a.to(x) for a in (self.means, self.stds, self.weights))
        sq = torch.cdist(x, means).square()  # (n, K)
        var = stds**2
        log_norm = -0.5 * self.dim * torch.log(2 * math.pi * var)
        return torch.log(weights) + log_norm - 0.5 * sq / var

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x), shape (n,)."""
        return torch.logsumexp(self.component_log_prob(x), dim=1)

    def posterior(self, x: torch.Tensor) -> torch.Tensor:
        """p(k | x), shape (n, K): which component produced each point."""
        return torch.softmax(self.component_log_prob(x), dim=1)


def eight_gaussians(radius: float = 2.0, std: float = 0.1) -> GaussianMixture:
    """Eight equal Gaussians evenly spaced on a circle of the given radius."""
    return ring_gaussians(8, radius=radius, std=std)


def ring_gaussians(n_modes: int = 8, radius: float = 2.0, std: float = 0.1) -> GaussianMixture:
    """``n_modes`` equal Gaussians evenly spaced on a circle."""
    n_modes = check_int("n_modes", n_modes, minimum=1)
    radius = check_real("radius", radius, minimum=0.0, strict_min=True)
    std = check_real("std", std, minimum=0.0, strict_min=True)
    angles = torch.arange(n_modes) * (2 * math.pi / n_modes)
    means = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    return GaussianMixture(means, std)


def grid_gaussians(n_side: int = 5, spacing: float = 2.0, std: float = 0.05) -> GaussianMixture:
    """An ``n_side`` x ``n_side`` grid of equal Gaussians centred at the origin.

    The defaults are the classic 25-mode benchmark: modes at {-4, -2, 0, 2, 4}^2, std 0.05.
    """
    n_side = check_int("n_side", n_side, minimum=1)
    spacing = check_real("spacing", spacing, minimum=0.0, strict_min=True)
    std = check_real("std", std, minimum=0.0, strict_min=True)
    coords = (torch.arange(n_side) - (n_side - 1) / 2) * spacing
    gx, gy = torch.meshgrid(coords, coords, indexing="ij")
    means = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
    return GaussianMixture(means, std)


class _SampleOnly:
    """Base for toys that can be sampled but have no closed-form density here."""

    dim = 2

    def __init__(self):
        self.device = torch.device("cpu")

    def to(self, device=None, dtype=None):
        import copy

        device = check_device("device", device)
        if dtype is not None:
            check_dtype("dtype", dtype)
        out = copy.copy(self)
        if device is not None:
            out.device = device
        return out

    def _draw(self, n, generator):  # pragma: no cover - implemented by subclasses
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None, return_labels: bool = False):
        """Draw ``n`` points (and, with ``return_labels``, which part each came from)."""
        n = check_int("n", n, minimum=1)
        generator = check_generator("generator", generator)
        gen_device = generator.device if generator is not None else torch.device("cpu")
        x, labels = self._draw(n, generator, gen_device)
        x, labels = x.to(self.device), labels.to(self.device)
        return (x, labels) if return_labels else x


class TwoMoons(_SampleOnly):
    """Two interleaved half circles (label 0: upper, label 1: lower), centred and scaled."""

    def __init__(self, noise: float = 0.05, scale: float = 1.5):
        super().__init__()
        self.noise = check_real("noise", noise, minimum=0.0)
        self.scale = check_real("scale", scale, minimum=0.0, strict_min=True)

    def _draw(self, n, generator, dev):
        labels = torch.randint(0, 2, (n,), generator=generator, device=dev)
        angle = torch.rand(n, generator=generator, device=dev) * math.pi
        upper = torch.stack([torch.cos(angle), torch.sin(angle)], 1)
        lower = torch.stack([1 - torch.cos(angle), 0.5 - torch.sin(angle)], 1)
        x = torch.where(labels[:, None] == 0, upper, lower) - torch.tensor([0.5, 0.25], device=dev)
        x = x + self.noise * torch.randn(n, 2, generator=generator, device=dev)
        return self.scale * x, labels


class Checkerboard(_SampleOnly):
    """Uniform on the dark squares of a 4 x 4 checkerboard spanning [-side, side]^2."""

    def __init__(self, side: float = 2.0):
        super().__init__()
        self.side = check_real("side", side, minimum=0.0, strict_min=True)

    def _draw(self, n, generator, dev):
        cell = self.side / 2
        col = torch.randint(0, 4, (n,), generator=generator, device=dev)
        row = 2 * torch.randint(0, 2, (n,), generator=generator, device=dev) + (col % 2)
        offset = torch.rand(n, 2, generator=generator, device=dev)
        x = (torch.stack([col, row], 1).float() + offset) * cell - self.side
        return x, (row * 4 + col)


class Spiral(_SampleOnly):
    """Two interleaved spiral arms (label = arm), radius up to ``radius``."""

    def __init__(self, turns: float = 1.5, radius: float = 2.5, noise: float = 0.08):
        super().__init__()
        self.turns = check_real("turns", turns, minimum=0.0, strict_min=True)
        self.radius = check_real("radius", radius, minimum=0.0, strict_min=True)
        self.noise = check_real("noise", noise, minimum=0.0)

    def _draw(self, n, generator, dev):
        labels = torch.randint(0, 2, (n,), generator=generator, device=dev)
        s = torch.rand(n, generator=generator, device=dev).sqrt()
        angle = s * self.turns * 2 * math.pi + labels * math.pi
        r = s * self.radius
        x = torch.stack([r * torch.cos(angle), r * torch.sin(angle)], 1)
        x = x + self.noise * torch.randn(n, 2, generator=generator, device=dev)
        return x, labels


def moons(noise: float = 0.05, scale: float = 1.5) -> TwoMoons:
    """Two interleaved half circles."""
    return TwoMoons(noise=noise, scale=scale)


def checkerboard(side: float = 2.0) -> Checkerboard:
    """The 4 x 4 checkerboard."""
    return Checkerboard(side=side)


def spiral(turns: float = 1.5, radius: float = 2.5, noise: float = 0.08) -> Spiral:
    """Two spiral arms."""
    return Spiral(turns=turns, radius=radius, noise=noise)


class LabelledMixture:
    r"""A Gaussian mixture whose components belong to classes (for conditional models).

    p(x, y) = sum over the components k of class y of pi_k N(x; mu_k, s_k^2 I). Gives
    the exact class posterior p(y | x) (the "perfect classifier" that scores guided
    samples) and each class-conditional p(x | y) as a :class:`GaussianMixture`.

    Args:
        mixture: the :class:`GaussianMixture` over all components.
        component_classes: (K,) class of each component, values 0..C-1, every class used.
    """

    def __init__(self, mixture: GaussianMixture, component_classes):
        if not isinstance(mixture, GaussianMixture):
            raise ValueError(f"mixture must be a GaussianMixture, got {type(mixture).__name__}")
        if not isinstance(component_classes, (torch.Tensor, list, tuple)):
            raise ValueError(f"component_classes must be {mixture.n_components} integers, got {component_classes!r}")
        try:
            classes = torch.as_tensor(component_classes)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"component_classes must be {mixture.n_components} integers, "
                             f"got {component_classes!r}") from None
        if classes.dtype not in (torch.int32, torch.int64) or classes.shape != (mixture.n_components,):
            raise ValueError(f"component_classes must be {mixture.n_components} integers, got {component_classes!r}")
        classes = classes.long().to(mixture.device)
        n_classes = int(classes.max()) + 1
        if int(classes.min()) < 0 or torch.unique(classes).numel() != n_classes:
            raise ValueError(f"component_classes must use every class 0..C-1, got {classes.tolist()}")
        self.mixture = mixture
        self.component_classes = classes
        self.n_classes = n_classes

    @property
    def dim(self) -> int:
        return self.mixture.dim

    @property
    def device(self) -> torch.device:
        return self.mixture.device

    @property
    def class_weights(self) -> torch.Tensor:
        """p(y), shape (C,)."""
        return torch.zeros(self.n_classes, device=self.device).index_add_(0, self.component_classes,
                                                                          self.mixture.weights)

    def to(self, device=None, dtype=None) -> "LabelledMixture":
        """A copy on another device or dtype."""
        mixture = self.mixture.to(device, dtype)
        return LabelledMixture(mixture, self.component_classes.to(mixture.device))

    def _check_class(self, y: int) -> int:
        if isinstance(y, bool) or not isinstance(y, int) or not 0 <= y < self.n_classes:
            raise ValueError(f"y must be a class in 0..{self.n_classes - 1}, got {y!r}")
        return y

    def class_mixture(self, y: int) -> GaussianMixture:
        """p(x | y) as a :class:`GaussianMixture` (the class's components, renormalised)."""
        keep = self.component_classes == self._check_class(y)
        m = self.mixture
        return GaussianMixture(m.means[keep], m.stds[keep], m.weights[keep])

    def sample(self, n: int, generator: torch.Generator | None = None):
        """(x, y): n points with their class labels."""
        x, k = self.mixture.sample(n, generator=generator, return_labels=True)
        return x, self.component_classes[k]

    def sample_class(self, y: int, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n points from p(x | y)."""
        return self.class_mixture(y).sample(n, generator=generator)

    def sample_sharpened(self, y: int, n: int, w: float, generator: torch.Generator | None = None) -> torch.Tensor:
        r"""n points from the sharpened class distribution p(x | y)^{1+w} / p(x)^w.

        That is p_w(x | y) ∝ p(x) p(y | x)^{1+w} ∝ p(x | y) p(y | x)^w: what the guided
        *score* would target if guidance acted on the data distribution alone. Drawn by
        rejection: propose from p(x | y), accept with probability p(y | x)^w (<= 1).
        """
        y = self._check_class(y)
        n = check_int("n", n, minimum=1)
        w = check_real("w", w, minimum=0.0)
        kept, have = [], 0
        for _ in range(1000):
            x = self.sample_class(y, max(4 * n, 1024), generator=generator)
            u = torch.rand(x.shape[0], generator=generator, device=x.device)
            x = x[u < self.class_posterior(x)[:, y] ** w]
            kept.append(x)
            have += x.shape[0]
            if have >= n:
                return torch.cat(kept)[:n]
        raise ValueError(f"w = {w} is too large: rejection sampling accepted only {have} of the {n} points asked for")

    def class_posterior(self, x: torch.Tensor) -> torch.Tensor:
        """p(y | x), shape (n, C): the Bayes-optimal classifier."""
        post = self.mixture.posterior(x)
        out = torch.zeros(post.shape[0], self.n_classes, device=post.device, dtype=post.dtype)
        return out.index_add_(1, self.component_classes.to(post.device), post)


def overlapping_classes(std: float = 0.65) -> LabelledMixture:
    """Three classes that overlap: each a pair of Gaussians, arranged around the origin.

    Class c has components at angles 120 c and 120 c + 40 degrees (radius 1.5 and 1.0).
    Neighbouring classes share a lot of mass, so a conditional model has something to
    be unsure about and guidance has something to sharpen.
    """
    means, classes = [], []
    for c in range(3):
        for angle, radius in ((120.0 * c, 1.5), (120.0 * c + 40.0, 1.0)):
            a = math.radians(angle)
            means.append([radius * math.cos(a), radius * math.sin(a)])
            classes.append(c)
    return LabelledMixture(GaussianMixture(torch.tensor(means), std), classes)


def check_mixture(name: str, mixture) -> GaussianMixture:
    """``mixture`` if it is a :class:`GaussianMixture`, else a ValueError naming the argument."""
    return check_instance(name, mixture, GaussianMixture, "a cs231n_gen.data.GaussianMixture")


def check_labelled_mixture(labelled) -> LabelledMixture:
    """``labelled`` if it is a :class:`LabelledMixture`, else a ValueError."""
    return check_instance("labelled", labelled, LabelledMixture, "a LabelledMixture")
