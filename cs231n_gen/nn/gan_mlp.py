r"""Small GAN players for 1D and 2D data, and a generator whose density is known.

``MLPGenerator`` maps z ~ N(0, I) to a point; ``MLPDiscriminator`` maps a point to a
logit l(x), D(x) = sigmoid(l(x)). ``GaussianGenerator`` is the simplest generator of
all, x = mu + sigma * z: its density p_G is a Gaussian we can evaluate, which is what
lets a lecture put a trained discriminator next to the exact
D*(x) = p_data / (p_data + p_G).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .._validate import check_generator, check_int, check_labels, check_model_input, check_real, check_tensor


def _mlp(n_in: int, n_out: int, hidden: int, depth: int, activation) -> nn.Sequential:
    layers, width = [], n_in
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), activation()]
        width = hidden
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


class MLPGenerator(nn.Module):
    """G(z): ``depth`` hidden layers of ``hidden`` ReLU units, z of size ``z_dim``."""

    def __init__(self, z_dim: int = 16, out_dim: int = 2, hidden: int = 256, depth: int = 3):
        super().__init__()
        self.z_dim = check_int("z_dim", z_dim, minimum=1)
        self.out_dim = check_int("out_dim", out_dim, minimum=1)
        self.net = _mlp(self.z_dim, self.out_dim, check_int("hidden", hidden, minimum=1),
                        check_int("depth", depth, minimum=1), nn.ReLU)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(check_model_input("z", z, (None, self.z_dim)))


class MLPDiscriminator(nn.Module):
    """l(x): ``depth`` hidden layers of ``hidden`` LeakyReLU(0.2) units; returns (n,) logits."""

    def __init__(self, in_dim: int = 2, hidden: int = 256, depth: int = 3):
        super().__init__()
        self.in_dim = check_int("in_dim", in_dim, minimum=1)
        self.net = _mlp(self.in_dim, 1, check_int("hidden", hidden, minimum=1),
                        check_int("depth", depth, minimum=1), lambda: nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(check_model_input("x", x, (None, self.in_dim)))[:, 0]


class GaussianGenerator(nn.Module):
    """x = mu + sigma * z with learnable mu and log sigma: p_G = N(mu, diag(sigma^2)).

    Has ``log_prob`` and ``sample`` like a data distribution, so the exact optimal
    discriminator and the Jensen-Shannon divergence to the data can be computed.
    """

    def __init__(self, dim: int = 1, mean=0.0, std=1.0):
        super().__init__()
        self.z_dim = self.dim = check_int("dim", dim, minimum=1)
        mean_t = torch.full((self.dim,), check_real("mean", mean)) if not isinstance(mean, torch.Tensor) \
            else check_tensor("mean", mean, ndim=1).float()
        std = check_real("std", std, minimum=0.0, strict_min=True)
        if mean_t.shape != (self.dim,):
            raise ValueError(f"mean must have shape ({self.dim},), got {tuple(mean_t.shape)}")
        self.mu = nn.Parameter(mean_t.clone())
        self.log_sigma = nn.Parameter(torch.full((self.dim,), math.log(std)))

    @property
    def sigma(self) -> torch.Tensor:
        return self.log_sigma.exp()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.mu + self.sigma * check_model_input("z", z, (None, self.dim))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        x = check_tensor("x", x, ndim=2, last_dim=self.dim)
        u = (x - self.mu) / self.sigma
        return (-0.5 * u.pow(2) - self.log_sigma - 0.5 * math.log(2 * math.pi)).sum(dim=1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        n = check_int("n", n, minimum=1)
        generator = check_generator("generator", generator, self.mu.device)
        z = torch.randn(n, self.dim, generator=generator, device=self.mu.device)
        return self(z)


class ConditionalMLPGenerator(nn.Module):
    r"""G(z, y) of a conditional GAN, written as a generator of labelled pairs.

    The conditional game (Mirza and Osindero 2014),

        min_G max_D  E_{(x, y) ~ p_data}[log D(x, y)] + E_{z, y ~ p(y)}[log(1 - D(G(z, y), y))],

    is the ordinary GAN game on pairs (x, y), with a generator that is *handed* its
    label. So this module draws y itself from the last latent coordinate u ~ N(0, 1)
    (y is the class whose slice of [0, 1] under ``class_probs`` holds Phi(u), so
    y ~ class_probs) and returns ``[G(z, y), one_hot(y)]``: any GAN trainer, with an
    :class:`MLPDiscriminator` over ``out_dim + num_classes`` inputs and data rows
    ``[x, one_hot(y)]``, then trains a conditional GAN. :meth:`generate` asks for chosen
    labels.
    """

    def __init__(self, num_classes: int, noise_dim: int = 16, out_dim: int = 2, hidden: int = 128,
                 depth: int = 3, class_probs: torch.Tensor | None = None):
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        self.noise_dim = check_int("noise_dim", noise_dim, minimum=1)
        self.out_dim = check_int("out_dim", out_dim, minimum=1)
        self.z_dim = self.noise_dim + 1  # the noise, then the coordinate that picks the label
        if class_probs is None:
            class_probs = torch.full((self.num_classes,), 1.0 / self.num_classes)
        probs = check_tensor("class_probs", class_probs, ndim=1).float()
        if probs.shape[0] != self.num_classes or bool((probs < 0).any()) or abs(float(probs.sum()) - 1) > 1e-4:
            raise ValueError(f"class_probs must be {self.num_classes} non-negative numbers summing to 1, "
                             f"got {class_probs!r}")
        self.register_buffer("class_edges", probs.cumsum(0)[:-1].clone())
        self.net = _mlp(self.noise_dim + self.num_classes, self.out_dim, check_int("hidden", hidden, minimum=1),
                        check_int("depth", depth, minimum=1), nn.ReLU)

    def generate(self, noise: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x = G(noise, y) for chosen labels: noise (n, noise_dim), y (n,) integers."""
        noise = check_model_input("noise", noise, (None, self.noise_dim))
        y = check_labels("y", y, noise.shape[0], self.num_classes, noise.device, rows_of="noise")
        onehot = nn.functional.one_hot(y, self.num_classes).to(noise.dtype)
        return self.net(torch.cat([noise, onehot], dim=1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """[G(z_noise, y), one_hot(y)] with y picked by z's last coordinate."""
        z = check_model_input("z", z, (None, self.z_dim))
        u = torch.special.ndtr(z[:, -1].contiguous())  # Phi(u): uniform on [0, 1]
        y = torch.bucketize(u, self.class_edges.to(u.dtype), right=True)
        onehot = nn.functional.one_hot(y, self.num_classes).to(z.dtype)
        return torch.cat([self.net(torch.cat([z[:, :-1], onehot], dim=1)), onehot], dim=1)
