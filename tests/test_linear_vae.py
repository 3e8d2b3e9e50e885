"""The linear VAE: its ELBO is a bound on an exact likelihood, and the gap is the KL to the posterior."""
from __future__ import annotations

import math

import pytest
import torch

from cs231n_gen.nn.linear_vae import LinearVAE, ppca_log_likelihood


def _data(n=400, d=6, k=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, k, generator=g)
    return (torch.randn(n, k, generator=g) @ w.T + 0.3 * torch.randn(n, d, generator=g) + 1.0).double()


def test_elbo_is_the_exact_bound_with_the_posterior_kl_as_gap():
    torch.manual_seed(0)
    vae = LinearVAE(6, 2).double()
    x = _data()
    with torch.no_grad():
        gap = vae.log_likelihood(x) - vae.elbo(x)
        kl_post = torch.distributions.kl_divergence(vae.encoder_distribution(x), vae.posterior(x))
    assert float(gap.min()) > 0
    assert torch.allclose(gap, kl_post, atol=1e-9, rtol=1e-9)


def test_reconstruction_term_matches_monte_carlo():
    torch.manual_seed(1)
    vae = LinearVAE(6, 2).double()
    x = _data(n=3)
    with torch.no_grad():
        q = vae.encoder_distribution(x)
        z = q.sample((200_000,))  # (S, n, k)
        mean = vae.decoder(z)
        noise = vae.log_noise.exp()
        log_lik = (-0.5 * (6 * math.log(2 * math.pi * noise)) - (x - mean).square().sum(-1) / (2 * noise)).mean(0)
        assert torch.allclose(vae.reconstruction(x), log_lik, rtol=2e-3)


def test_kl_matches_torch_distributions():
    torch.manual_seed(2)
    vae = LinearVAE(6, 3)
    with torch.no_grad():
        vae.log_var.copy_(torch.tensor([-1.0, 0.5, 2.0]))
        x = _data().float()
        q = vae.encoder_distribution(x)
        prior = torch.distributions.MultivariateNormal(torch.zeros(3), scale_tril=torch.eye(3))
        assert torch.allclose(vae.kl(x), torch.distributions.kl_divergence(q, prior), atol=1e-4, rtol=1e-5)


def test_ppca_closed_form_is_the_likelihood_of_the_closed_form_model():
    x = _data(n=500, d=5, k=2, seed=3)
    k = 2
    centred = x - x.mean(0)
    eig, vec = torch.linalg.eigh(centred.T @ centred / len(x))
    eig, vec = eig.flip(0), vec.flip(1)
    noise = eig[k:].mean()
    w = vec[:, :k] * (eig[:k] - noise).sqrt()
    cov = w @ w.T + noise * torch.eye(5, dtype=x.dtype)
    direct = torch.distributions.MultivariateNormal(x.mean(0), covariance_matrix=cov).log_prob(x).mean()
    assert ppca_log_likelihood(x, k) == pytest.approx(float(direct), abs=1e-9)
    # and no other linear-Gaussian model of that size beats it (a perturbed one, say)
    worse = torch.distributions.MultivariateNormal(x.mean(0), covariance_matrix=cov * 1.1).log_prob(x).mean()
    assert float(worse) < ppca_log_likelihood(x, k)


def test_maximising_the_elbo_reaches_the_maximum_likelihood():
    x = _data(n=600, d=6, k=2, seed=4).float()
    torch.manual_seed(0)
    vae = LinearVAE(6, 2)
    opt = torch.optim.Adam(vae.parameters(), lr=3e-2)
    for _ in range(800):
        opt.zero_grad()
        (-vae.elbo(x).mean()).backward()
        opt.step()
    with torch.no_grad():
        assert float((vae.log_likelihood(x) - vae.elbo(x)).mean()) < 0.02
        assert float(vae.log_likelihood(x).mean()) == pytest.approx(ppca_log_likelihood(x, 2), abs=0.02)


@pytest.mark.parametrize("kwargs", [dict(data_dim=2, latent_dim=2), dict(data_dim=0, latent_dim=1)])
def test_bad_sizes_are_named(kwargs):
    with pytest.raises(ValueError, match="latent_dim|data_dim"):
        LinearVAE(**kwargs)


def test_ppca_needs_spread_in_the_discarded_directions():
    x = torch.randn(10, 1).repeat(1, 3)  # all variance in one direction
    with pytest.raises(ValueError, match="discarded variance"):
        ppca_log_likelihood(x, 1)
