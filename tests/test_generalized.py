"""Generalized diffusion: paths, targets and their conversions, the oracle on any path, samplers."""
import math

import pytest
import torch

from cs231n_gen import metrics, oracle, sampling
from cs231n_gen import paths as P
from cs231n_gen.data import GaussianMixture, eight_gaussians

PATHS = [P.rectified_flow(), P.vp_cosine(), P.vp_linear(), P.ve()]


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_every_conversion_round_trips(path):
    g = torch.Generator().manual_seed(0)
    t = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    x = torch.randn(99, 3, generator=g, dtype=torch.float64) * 2
    z = torch.randn(99, 3, generator=g, dtype=torch.float64)
    x_t = path.interpolate(x, z, t)
    for source in P.TARGETS:
        y = path.target(source, x, z, t)
        x_hat, z_hat = path.to_x_eps(y, source, x_t, t)
        assert torch.allclose(x_hat, x, rtol=1e-5, atol=1e-5) and torch.allclose(z_hat, z, rtol=1e-5, atol=1e-5)
        for dest in P.TARGETS:
            want = path.target(dest, x, z, t)
            got = path.convert(y, source, dest, x_t, t)
            assert torch.allclose(got, want, rtol=1e-5, atol=1e-5), (path.name, source, dest)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_derivatives_match_finite_differences(path):
    t = torch.linspace(0.02, 0.98, 49, dtype=torch.float64)
    h = 1e-6
    assert torch.allclose(path.da(t), (path.a(t + h) - path.a(t - h)) / (2 * h), rtol=1e-5, atol=1e-6)
    assert torch.allclose(path.db(t), (path.b(t + h) - path.b(t - h)) / (2 * h), rtol=1e-5, atol=1e-6)


def test_variance_preserving_and_exploding():
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    for path in (P.vp_cosine(), P.vp_linear()):
        assert torch.allclose(path.a(t) ** 2 + path.b(t) ** 2, torch.ones_like(t))
        g = torch.Generator().manual_seed(1)
        x = torch.randn(200_000, 1, generator=g)  # unit variance data
        x_t = path.interpolate(x, torch.randn(x.shape, generator=g), 0.4)
        assert float(x_t.var()) == pytest.approx(1.0, abs=0.01)
    ve = P.ve(sigma_max=50.0)
    assert float(ve.a(torch.tensor(0.7))) == 1.0 and float(ve.b(torch.tensor(1.0))) == pytest.approx(50.0)
    # continuous VP-linear at t = i / 1000 is DDPM's discrete schedule, betas 1e-4 .. 0.02
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    alpha_bar = torch.cumprod(1 - betas, 0)
    i = torch.tensor([99, 299, 499, 799, 999])
    cont = P.vp_linear().a((i + 1).double() / 1000) ** 2
    assert torch.allclose(cont, alpha_bar[i], rtol=0.02, atol=1e-4)


def test_standard_v_and_the_slides_slip():
    path = P.vp_cosine()
    g = torch.Generator().manual_seed(2)
    x, z, t = torch.randn(10, 2, generator=g), torch.randn(10, 2, generator=g), torch.rand(10, generator=g)
    a, b = path.a(t)[:, None], path.b(t)[:, None]
    v = path.target("v", x, z, t)
    assert torch.allclose(v, a * z - b * x)  # Salimans and Ho: v = alpha eps - sigma x
    # on the cosine path v is the velocity in the angle phi = pi t / 2
    assert torch.allclose(path.target("velocity", x, z, t), math.pi / 2 * v, atol=1e-6)
    # the slide's y = b z - a x is a different target (c = -a, d = b), not c = b, d = -a
    assert not torch.allclose(b * z - a * x, b * x - a * z)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_oracle_predictions_on_any_path(path):
    mix = GaussianMixture([[0.0, 1.0], [2.0, -1.0], [-1.5, -0.5]], std=[0.4, 0.7, 0.5], weights=[1, 2, 1])
    x_t = torch.randn(64, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 2
    for t in (0.1, 0.5, 0.9):
        tt = torch.tensor(t, dtype=torch.float64)
        a, b = float(path.a(tt)), float(path.b(tt))
        marginal = GaussianMixture(mix.means * a, torch.sqrt(a**2 * mix.stds**2 + b**2), mix.weights)
        x = x_t.clone().requires_grad_(True)
        exact_score = torch.autograd.grad(marginal.to(dtype=torch.float64).log_prob(x).sum(), x)[0]
        score = oracle.predict(mix.to(dtype=torch.float64), x_t, t, path, "score")
        assert torch.allclose(score, exact_score, atol=1e-6), (path.name, t)
        eps = oracle.predict(mix.to(dtype=torch.float64), x_t, t, path, "eps")
        assert torch.allclose(eps, -b * score, atol=1e-6)
        x_hat = oracle.predict(mix.to(dtype=torch.float64), x_t, t, path, "x")
        assert torch.allclose(a * x_hat + b * eps, x_t, atol=1e-6)  # consistency: x_t = a E[x] + b E[z]
    rf = oracle.predict(mix, x_t.float(), 0.3, P.rectified_flow(), "velocity")
    assert torch.allclose(rf, oracle.velocity(mix, x_t.float(), 0.3), atol=1e-5)
    with pytest.raises(ValueError, match="target"):
        oracle.predict(mix, x_t.float(), 0.3, path, "noise")
    with pytest.raises(ValueError, match="path"):
        oracle.Oracle(mix, "vp", "eps")


SAMPLERS = {
    "DDPM ancestral": lambda m, z, p, tg, g: sampling.ddpm(m, z, 1000, path=p, target=tg, generator=g),
    "DDIM": lambda m, z, p, tg, g: sampling.ddim(m, z, 400, path=p, target=tg),
    "PF-ODE Euler": lambda m, z, p, tg, g: sampling.probability_flow(m, z, 400, path=p, target=tg),
    "PF-ODE Heun": lambda m, z, p, tg, g: sampling.probability_flow(m, z, 200, path=p, target=tg, method="heun"),
    "reverse SDE": lambda m, z, p, tg, g: sampling.reverse_sde(m, z, 500, path=p, target=tg, generator=g),
    "Langevin": lambda m, z, p, tg, g: sampling.langevin(m, z, 30, 20, path=p, target=tg, generator=g),
}


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_oracle_driven_samplers_reach_the_data(name):
    """Proof the samplers are right, not just plausible: with the exact model they sample p_data."""
    mix = eight_gaussians()
    path = P.vp_linear()
    g = torch.Generator().manual_seed(4)
    target = "eps"
    model = oracle.Oracle(mix, path, target)
    outs, data, fresh = [], [], []
    for _ in range(8):  # eight sets of 1000 points: the ratio of a perfect sampler is within about +-0.05
        z = torch.randn(1000, 2, generator=g) * float(path.b(torch.tensor(0.999)))
        outs.append(SAMPLERS[name](model, z, path, target, g))
        data.append(mix.sample(1000, generator=g))
        fresh.append(mix.sample(1000, generator=g))
    ratio = metrics.wasserstein2_ratio(outs, data, fresh)
    assert ratio <= 1.15, (name, ratio)
    spread = metrics.mode_coverage(torch.cat(outs), mix.means, std=0.1)["within_std"]
    assert abs(spread / 0.1 - 1) < 0.1, (name, spread)  # and the modes keep their width


def test_sampler_bad_inputs():
    model = oracle.Oracle(eight_gaussians(), P.vp_linear(), "eps")
    z = torch.randn(10, 2)
    with pytest.raises(ValueError, match="path"):
        sampling.ddim(model, z, 10, path="vp", target="eps")
    with pytest.raises(ValueError, match="target"):
        sampling.ddpm(model, z, 10, path=P.vp_linear(), target="noise")
    with pytest.raises(ValueError, match="t_end"):
        sampling.ddim(model, z, 10, path=P.vp_linear(), target="eps", t_start=0.2, t_end=0.5)
    with pytest.raises(ValueError, match="method"):
        sampling.probability_flow(model, z, 10, path=P.vp_linear(), target="eps", method="rk4")
    with pytest.raises(ValueError, match="steps"):
        sampling.reverse_sde(model, z, 0, path=P.vp_linear(), target="eps")
    with pytest.raises(ValueError, match="levels"):
        sampling.langevin(model, z, 1, 5, path=P.vp_linear(), target="eps")
    with pytest.raises(ValueError, match="sigma_max"):
        P.ve(sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="target"):
        P.vp_cosine().target_coefficients("noise", 0.5)


def test_samplers_take_any_time_grid():
    mix, path = eight_gaussians(), P.vp_linear()
    model = oracle.Oracle(mix, path, "eps")
    z = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    uniform = torch.linspace(0.999, 0.0, 11)
    runs = {
        "ddim": lambda **kw: sampling.ddim(model, z, path=path, target="eps", **kw),
        "probability_flow": lambda **kw: sampling.probability_flow(model, z, path=path, target="eps",
                                                                   method="heun", **kw),
        "ddpm": lambda **kw: sampling.ddpm(model, z, path=path, target="eps",
                                           generator=torch.Generator().manual_seed(1), **kw),
        "reverse_sde": lambda **kw: sampling.reverse_sde(model, z, path=path, target="eps",
                                                         generator=torch.Generator().manual_seed(1), **kw),
    }
    log_grid = sampling.log_snr_times(path, 10)
    for name, run in runs.items():
        assert torch.equal(run(steps=10), run(times=uniform)), name  # the default grid, given explicitly
        assert not torch.equal(run(times=log_grid), run(steps=10)), name  # a different grid changes the result
    counted = sampling.CountCalls(model)
    sampling.ddim(counted, z, path=path, target="eps", times=log_grid)
    assert counted.calls == 10
    with pytest.raises(ValueError, match="exactly one of steps"):
        sampling.ddim(model, z, 10, path=path, target="eps", times=log_grid)
    with pytest.raises(ValueError, match="exactly one of steps"):
        sampling.ddim(model, z, path=path, target="eps")
    with pytest.raises(ValueError, match="times must be strictly decreasing"):
        sampling.ddpm(model, z, path=path, target="eps", times=log_grid.flip(0))
    with pytest.raises(ValueError, match="times"):
        sampling.ddim(oracle.Oracle(mix, P.rectified_flow(), "velocity"), z, path=P.rectified_flow(),
                      target="eps", times=torch.tensor([1.0, 0.5, 0.0]))  # eps cannot be converted at t = 1


def test_log_snr_grid_is_even_in_log_snr_and_ends_at_zero():
    for path in PATHS:
        times = sampling.log_snr_times(path, 8, t_start=0.99, t_last=0.01)
        assert times.shape == (9,) and float(times[-1]) == 0.0 and float(times[0]) == pytest.approx(0.99)
        log_snr = torch.log(path.snr(times[:-1].double()))
        steps = log_snr[1:] - log_snr[:-1]
        assert torch.allclose(steps, steps.mean().expand_as(steps), rtol=1e-3), path.name
        assert bool((steps > 0).all()), path.name  # the SNR grows toward the data
    with pytest.raises(ValueError, match="t_last"):
        sampling.log_snr_times(P.vp_linear(), 8, t_start=0.5, t_last=0.6)
    with pytest.raises(ValueError, match="steps"):
        sampling.log_snr_times(P.vp_linear(), 1)
    with pytest.raises(ValueError, match="t_start"):
        sampling.log_snr_times(P.vp_linear(), 5, t_start=1.5)


def test_time_at_log_snr_inverts_the_snr():
    for path in PATHS:
        t = torch.tensor([0.01, 0.2, 0.5, 0.9, 0.99])
        back = path.t_at_log_snr(torch.log(path.snr(t.double())))
        assert torch.allclose(back, t, atol=1e-5), path.name
    with pytest.raises(ValueError, match="t_end"):
        sampling.langevin(oracle.Oracle(eight_gaussians(), P.vp_linear(), "eps"), torch.randn(5, 2), 3, 2,
                          path=P.vp_linear(), target="eps", t_end=0.0)


def test_generic_loss_is_the_recipe():
    path = P.vp_cosine()
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    model = lambda x_t, t: x_t * t[:, None]  # noqa: E731
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(6))
    got = path.loss(model, x, "v", g1)
    z = torch.randn(x.shape, generator=g2)
    t = torch.rand(64, generator=g2)
    x_t = path.interpolate(x, z, t)
    want = (model(x_t, t) - path.target("v", x, z, t)).square().sum(1).mean()
    assert torch.allclose(got, want)
    rf = P.rectified_flow()
    assert torch.allclose(rf.loss(model, x, "velocity", z=z, t=t),
                          (model(rf.interpolate(x, z, t), t) - (z - x)).square().sum(1).mean())
    for bad in ((0.5, 0.2), (0.0, 1.5), "0..1"):
        with pytest.raises(ValueError, match="t_range"):
            path.loss(model, x, "v", t_range=bad)
    with pytest.raises(ValueError, match="target"):
        path.loss(model, x, "noise")
