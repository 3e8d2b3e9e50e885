import math

import pytest
import torch

from cs231n_gen.data import GaussianMixture, checkerboard, eight_gaussians, grid_gaussians, moons, spiral


def test_mixture_moments_and_labels():
    mix = GaussianMixture([[0.0, 0.0], [4.0, 0.0]], std=[0.5, 1.0], weights=[3, 1])
    g = torch.Generator().manual_seed(0)
    x, labels = mix.sample(200_000, generator=g, return_labels=True)
    assert abs(float((labels == 0).float().mean()) - 0.75) < 0.005
    assert torch.allclose(x.mean(0), mix.mean, atol=0.02)
    assert abs(float(x.var(0).sum()) - float(mix.total_variance)) < 0.05
    assert torch.allclose(x[labels == 1].std(0), torch.ones(2), atol=0.01)


def test_log_prob_integrates_to_one_and_matches_single_gaussian():
    mix = eight_gaussians(std=0.3)
    g = torch.linspace(-4, 4, 401)
    xx, yy = torch.meshgrid(g, g, indexing="xy")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    mass = mix.log_prob(pts).exp().sum() * (g[1] - g[0]) ** 2
    assert abs(float(mass) - 1) < 1e-3
    single = GaussianMixture([[1.0, -1.0]], std=2.0)
    x = torch.tensor([[0.0, 0.0]])
    expected = -math.log(2 * math.pi * 4) - (1 + 1) / (2 * 4)
    assert abs(float(single.log_prob(x)) - expected) < 1e-5


def test_posterior_sums_to_one_and_identifies_modes():
    mix = grid_gaussians()
    post = mix.posterior(mix.means)
    assert torch.allclose(post.sum(1), torch.ones(25))
    assert torch.equal(post.argmax(1), torch.arange(25))


def test_factories_shapes_and_seeding():
    for toy in (eight_gaussians(), grid_gaussians(), moons(), checkerboard(), spiral()):
        a = toy.sample(300, generator=torch.Generator().manual_seed(1))
        b = toy.sample(300, generator=torch.Generator().manual_seed(1))
        assert a.shape == (300, 2) and torch.equal(a, b) and torch.isfinite(a).all()
    assert torch.allclose(eight_gaussians(radius=3).means.norm(dim=1), torch.full((8,), 3.0))
    assert grid_gaussians().means.abs().max() == 4


def test_checkerboard_lands_on_dark_squares():
    x = checkerboard(side=2.0).sample(5000)
    cells = torch.floor((x + 2) / 1.0).long()
    assert ((cells[:, 0] + cells[:, 1]) % 2 == 0).all()


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(means=[0.0, 1.0], std=1.0), "means"),
        (dict(means=[[0.0, 0.0]], std=0.0), "std"),
        (dict(means=[[0.0, 0.0]], std=[1.0, 2.0]), "std"),
        (dict(means=[[float("nan"), 0.0]], std=1.0), "means"),
        (dict(means=[[0.0, 0.0], [1.0, 1.0]], std=1.0, weights=[-1, 2]), "weights"),
    ],
)
def test_mixture_rejects_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        GaussianMixture(**kwargs)


def test_sample_and_log_prob_reject_bad_input():
    mix = eight_gaussians()
    with pytest.raises(ValueError, match="n"):
        mix.sample(0)
    with pytest.raises(ValueError, match="x"):
        mix.log_prob(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="x"):
        mix.log_prob(torch.tensor([[float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="std"):
        eight_gaussians(std=-1)
