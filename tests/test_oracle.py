import pytest
import torch

from cs231n_gen import oracle
from cs231n_gen.data import GaussianMixture, eight_gaussians


def _monte_carlo(mix, x_t, t, n=400_000, seed=0):
    """E[x | x_t] and E[z | x_t] by self-normalised importance weighting over x ~ p_data.

    p(x | x_t) is proportional to p(x) N(x_t; (1 - t) x, t^2 I), so with x drawn from the
    data the weights are the Gaussian likelihoods of x_t.
    """
    g = torch.Generator().manual_seed(seed)
    x = mix.sample(n, generator=g).double()
    logw = -((x_t.double()[None] - (1 - t) * x) ** 2).sum(1) / (2 * t * t)
    w = torch.softmax(logw, 0)
    ex = (w[:, None] * x).sum(0)
    ez = (x_t.double() - (1 - t) * ex) / t
    return ex, ez


@pytest.mark.parametrize("t", [0.2, 0.5, 0.8])
def test_posterior_means_match_monte_carlo(t):
    mix = GaussianMixture([[0.0, 1.0], [2.0, -1.0], [-1.5, -0.5]], std=[0.4, 0.7, 0.5], weights=[1, 2, 1])
    for point in ([0.3, 0.1], [1.0, -0.8]):
        x_t = torch.tensor(point)
        ex_mc, ez_mc = _monte_carlo(mix, x_t, t)
        ex = oracle.posterior_mean(mix, x_t[None], t)[0].double()
        ez = oracle.noise_mean(mix, x_t[None], t)[0].double()
        assert torch.allclose(ex, ex_mc, atol=0.02), (ex, ex_mc)
        assert torch.allclose(ez, ez_mc, atol=0.03), (ez, ez_mc)
        v = oracle.velocity(mix, x_t[None], t)[0].double()
        assert torch.allclose(v, ez - ex, atol=1e-5)


def test_velocity_matches_regression_on_pairs():
    """v* is the conditional mean: averaging z - x over pairs landing near x_t recovers it."""
    mix = eight_gaussians()
    g = torch.Generator().manual_seed(1)
    x = mix.sample(1_000_000, generator=g)
    z = torch.randn(x.shape, generator=g)
    t, point = 0.6, torch.tensor([0.5, -0.2])
    near = ((1 - t) * x + t * z - point).norm(dim=1) < 0.05
    assert near.sum() > 500
    v_mc = (z - x)[near].mean(0)
    assert torch.allclose(oracle.velocity(mix, point[None], t)[0], v_mc, atol=0.15)


def test_limits_at_both_ends():
    mix = eight_gaussians(std=0.2)
    pts = torch.randn(100, 2) * 2
    # t = 1: x_t is pure noise, E[x | x_t] = data mean, v* = x_t - mean
    for t in (1.0, 1 - 1e-6):
        assert torch.allclose(oracle.posterior_mean(mix, pts, t), mix.mean.expand(100, 2), atol=1e-4)
    assert torch.allclose(oracle.velocity(mix, pts, 1.0), pts - mix.mean, atol=1e-5)
    # t = 0: x_t is the data point, E[z | x_t] = 0, E[x | x_t] = x_t, v* = -x_t
    for t in (0.0, 1e-7):
        assert torch.allclose(oracle.noise_mean(mix, pts, t), torch.zeros(100, 2), atol=1e-4)
        assert torch.allclose(oracle.posterior_mean(mix, pts, t), pts, atol=1e-4)
    assert torch.allclose(oracle.velocity(mix, pts, 0.0), -pts, atol=1e-5)


def test_conditional_variance_matches_monte_carlo_and_limits():
    mix = eight_gaussians(std=0.2)
    g = torch.Generator().manual_seed(2)
    t = 0.4
    x = mix.sample(200_000, generator=g)
    z = torch.randn(x.shape, generator=g)
    xt = (1 - t) * x + t * z
    v_star = oracle.velocity(mix, xt, t)
    mc = ((z - x) - v_star).square().sum(1).mean()
    exact = oracle.conditional_variance(mix, xt, t).mean()
    assert abs(float(mc - exact)) < 0.02 * float(exact)
    # at t = 0 only the noise is unknown (variance 2 in 2D); at t = 1 only the data
    assert torch.allclose(oracle.irreducible_loss(mix, 0.0, generator=g), torch.tensor([2.0]), atol=1e-4)
    assert torch.allclose(oracle.irreducible_loss(mix, 1.0, generator=g), mix.total_variance[None], atol=1e-4)


def test_affine_loss_equals_oracle_at_the_ends_and_not_in_the_middle():
    mix = eight_gaussians()
    g = torch.Generator().manual_seed(3)
    ts = torch.tensor([0.0, 0.25, 1.0])
    aff = oracle.affine_loss(mix, ts, n=20000, generator=g)
    irr = oracle.irreducible_loss(mix, ts, n=20000, generator=g)
    gap = (aff - irr) / irr
    assert gap[0].abs() < 0.03 and gap[2].abs() < 0.03
    assert gap[1] > 1.0


def test_velocity_oracle_module_matches_function():
    mix = eight_gaussians()
    pts = torch.randn(50, 2)
    t = torch.rand(50)
    assert torch.allclose(oracle.VelocityOracle(mix)(pts, t), oracle.velocity(mix, pts, t))


def test_oracle_rejects_bad_input():
    mix = eight_gaussians()
    with pytest.raises(ValueError, match="mixture"):
        oracle.velocity("not a mixture", torch.zeros(3, 2), 0.5)
    with pytest.raises(ValueError, match="x_t"):
        oracle.velocity(mix, torch.zeros(3, 5), 0.5)
    with pytest.raises(ValueError, match="x_t"):
        oracle.velocity(mix, torch.full((3, 2), float("nan")), 0.5)
    with pytest.raises(ValueError, match="t"):
        oracle.velocity(mix, torch.zeros(3, 2), 1.5)
    with pytest.raises(ValueError, match="t"):
        oracle.velocity(mix, torch.zeros(3, 2), torch.tensor([0.1, float("nan"), 0.2]))
    with pytest.raises(ValueError, match="n"):
        oracle.irreducible_loss(mix, 0.5, n=0)


def test_denoising_error_ends_and_resolution_shift():
    import torch.nn.functional as F

    from cs231n_gen.data import digits
    from cs231n_gen.schedules import shift_time

    mix = eight_gaussians(std=0.1)
    g = torch.Generator().manual_seed(0)
    ends = oracle.denoising_error(mix, [0.0, 1.0], n=4096, generator=g)
    assert float(ends[0]) < 1e-6
    assert float(ends[1]) == pytest.approx(float(mix.total_variance) / 2, rel=0.05)
    # Upsampling images by k makes the same t k^2 times less noisy; the shift t' = k t / (1 + (k - 1) t)
    # gives back exactly the low-resolution difficulty curve (memorising oracle over 300 digits).
    x, _ = digits(8, "train")
    small = GaussianMixture(x[:300].flatten(1), std=0.01)
    big = GaussianMixture(F.interpolate(x[:300], scale_factor=4, mode="nearest").flatten(1), std=0.01)
    t = torch.tensor([0.3, 0.5, 0.7])
    e_small = oracle.denoising_error(small, t, n=1024, generator=g)
    e_same_t = oracle.denoising_error(big, t, n=1024, generator=g)
    e_shifted = oracle.denoising_error(big, shift_time(t, 4.0), n=1024, generator=g)
    assert torch.allclose(e_shifted, e_small, atol=0.02), (e_shifted, e_small)
    assert float((e_small - e_same_t).max()) > 0.1


def test_large_inputs_are_processed_in_chunks_with_identical_results(monkeypatch):
    mix = GaussianMixture(torch.randn(30, 4), std=0.2)
    x = torch.randn(100, 4, generator=torch.Generator().manual_seed(0))
    t = torch.rand(100, generator=torch.Generator().manual_seed(1))
    whole = [f(mix, x, t) for f in (oracle.component_posterior, oracle.velocity, oracle.conditional_variance)]
    monkeypatch.setattr(oracle, "_CHUNK_ENTRIES", 7 * 30)  # 7 rows at a time
    chunked = [f(mix, x, t) for f in (oracle.component_posterior, oracle.velocity, oracle.conditional_variance)]
    for a, b in zip(whole, chunked):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-6)
