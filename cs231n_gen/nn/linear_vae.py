r"""A VAE whose likelihood is exact: linear-Gaussian encoder and decoder.

Model (probabilistic PCA, Tipping and Bishop 1999):

    p(z) = N(0, I_k),    p_theta(x | z) = N(W z + b, sigma^2 I_d),
    so   p_theta(x) = N(b, W W^T + sigma^2 I_d)            (exact, in closed form).

Encoder: q_phi(z | x) = N(A x + c, diag(s^2)), one variance per latent coordinate.

Everything the VAE bound is about can be computed exactly here, with no sampling:

    ELBO(x) = E_q[log p_theta(x | z)] - KL(q_phi(z | x) || p(z))
            = log p_theta(x) - KL(q_phi(z | x) || p_theta(z | x))  <=  log p_theta(x),

where the reconstruction term is, for z ~ q with mean m and variances s^2,

    E_q[log p(x | z)] = -d/2 log(2 pi sigma^2) - (||x - W m - b||^2 + sum_j s_j^2 ||W_j||^2) / (2 sigma^2),

and the true posterior is Gaussian too, p(z | x) = N(M^{-1} W^T (x - b), sigma^2 M^{-1}) with
M = W^T W + sigma^2 I. The bound is tight exactly when q equals that posterior, which a
diagonal q can match when W's columns are orthogonal; at the maximum of the ELBO over both
encoder and decoder they are, and the model is the maximum-likelihood probabilistic PCA
(Lucas et al. 2019, "Don't blame the ELBO"). :func:`ppca_log_likelihood` gives that
maximum in closed form, to measure a trained model against.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .._validate import check_int, check_model_input, check_tensor
from ..autoencoding import gaussian_kl

__all__ = ["LinearVAE", "ppca_log_likelihood"]


class LinearVAE(nn.Module):
    """q(z | x) = N(A x + c, diag(s^2)) and p(x | z) = N(W z + b, sigma^2 I): see the module."""

    def __init__(self, data_dim: int, latent_dim: int):
        super().__init__()
        self.data_dim = check_int("data_dim", data_dim, minimum=1)
        self.latent_dim = check_int("latent_dim", latent_dim, minimum=1)
        if self.latent_dim >= self.data_dim:
            raise ValueError(f"latent_dim must be below data_dim ({self.data_dim}), got {latent_dim}")
        self.encoder = nn.Linear(self.data_dim, self.latent_dim)  # A x + c: the posterior mean
        self.log_var = nn.Parameter(torch.zeros(self.latent_dim))  # log s^2, one per latent coordinate
        self.decoder = nn.Linear(self.latent_dim, self.data_dim)  # W z + b
        self.log_noise = nn.Parameter(torch.zeros(()))  # log sigma^2

    def _x(self, x):
        x = check_model_input("x", x, (None, self.data_dim))
        if x.shape[0] < 1:
            raise ValueError(f"x must hold at least one row, got shape {tuple(x.shape)}")
        return x

    def reconstruction(self, x: torch.Tensor) -> torch.Tensor:
        """E_q[log p(x | z)] per example, in closed form (no sampling)."""
        x = self._x(x)
        mean, var, noise = self.encoder(x), self.log_var.exp(), self.log_noise.exp()
        residual = (x - self.decoder(mean)).square().sum(1)
        spread = (var * self.decoder.weight.square().sum(0)).sum()  # E||W (z - m)||^2
        return -0.5 * self.data_dim * (math.log(2 * math.pi) + self.log_noise) - (residual + spread) / (2 * noise)

    def kl(self, x: torch.Tensor) -> torch.Tensor:
        """KL(q(z | x) || N(0, I)) per example."""
        mean = self.encoder(self._x(x))
        return gaussian_kl(mean, self.log_var.expand_as(mean))

    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        """The evidence lower bound per example, exactly: reconstruction - KL."""
        return self.reconstruction(x) - self.kl(x)

    def marginal(self) -> torch.distributions.MultivariateNormal:
        """p_theta(x) = N(b, W W^T + sigma^2 I), the model's exact density."""
        w = self.decoder.weight
        cov = w @ w.T + self.log_noise.exp() * torch.eye(self.data_dim, device=w.device, dtype=w.dtype)
        return torch.distributions.MultivariateNormal(self.decoder.bias, covariance_matrix=cov)

    def log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """log p_theta(x) per example, exactly."""
        return self.marginal().log_prob(self._x(x))

    def posterior(self, x: torch.Tensor) -> torch.distributions.MultivariateNormal:
        """The true posterior p_theta(z | x) = N(M^-1 W^T (x - b), sigma^2 M^-1), M = W^T W + sigma^2 I."""
        x = self._x(x)
        w, noise = self.decoder.weight, self.log_noise.exp()
        m = w.T @ w + noise * torch.eye(self.latent_dim, device=w.device, dtype=w.dtype)
        m_inv = torch.linalg.inv(m)
        mean = (x - self.decoder.bias) @ w @ m_inv.T
        return torch.distributions.MultivariateNormal(mean, covariance_matrix=noise * m_inv)

    def encoder_distribution(self, x: torch.Tensor) -> torch.distributions.MultivariateNormal:
        """q_phi(z | x) as a torch distribution (a Gaussian with diagonal covariance)."""
        mean = self.encoder(self._x(x))
        scale = torch.diag((0.5 * self.log_var).exp())
        return torch.distributions.MultivariateNormal(mean, scale_tril=scale.expand(len(mean), -1, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.elbo(x)


def ppca_log_likelihood(x: torch.Tensor, latent_dim: int) -> float:
    r"""The largest mean log-likelihood any k-latent linear-Gaussian model reaches on ``x``.

    Tipping and Bishop's closed form: with the eigenvalues lambda_1 >= ... >= lambda_d of
    the sample covariance S, the maximum has sigma^2 = the mean of the d - k smallest and
    W W^T + sigma^2 I with eigenvalues lambda_1..lambda_k, sigma^2, ..., sigma^2, so
    mean log p = -1/2 (d log 2 pi + sum_{j<=k} log lambda_j + (d - k) log sigma^2 + d)
    (the trace term tr(C^-1 S) is k + (d - k) sigma^2 / sigma^2 = d).
    """
    x = check_tensor("x", x, ndim=2)
    d = x.shape[1]
    k = check_int("latent_dim", latent_dim, minimum=1)
    if k >= d or len(x) < 2:
        raise ValueError(f"latent_dim must be below the data's dimension {d} and x must hold at least 2 rows, "
                         f"got latent_dim={latent_dim} and {len(x)} rows")
    centred = x.double() - x.double().mean(0)
    eig = torch.linalg.eigvalsh(centred.T @ centred / len(x)).flip(0)
    noise = eig[k:].mean()
    if float(noise) <= 0:
        raise ValueError("x must vary in more than latent_dim directions (the discarded variance is 0)")
    return float(-0.5 * (d * math.log(2 * math.pi) + eig[:k].log().sum() + (d - k) * noise.log() + d))
