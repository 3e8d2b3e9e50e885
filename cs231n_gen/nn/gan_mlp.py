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

from .._validate import check_generator, check_int, check_model_input, check_real, check_tensor


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
