"""Training-time t samplers, the shift, and the SNR-matching identity behind it."""
import math

import pytest
import torch
import torch.nn.functional as F

from cs231n_gen import schedules as S
from cs231n_gen.paths import rectified_flow
from cs231n_gen.data.images import digits


def test_logit_normal_median_and_mass():
    t = S.logit_normal_t(400_000, generator=torch.Generator().manual_seed(0))
    assert float(t.median()) == pytest.approx(0.5, abs=0.005)
    inside = float(((t >= 0.1) & (t <= 0.9)).float().mean())
    assert inside == pytest.approx(0.972, abs=0.003)  # P(|n| <= logit 0.9 = 2.197) = 0.972
    shifted = S.logit_normal_t(100_000, m=1.0, generator=torch.Generator().manual_seed(0))
    assert float(shifted.median()) == pytest.approx(1 / (1 + math.exp(-1)), abs=0.005)
    with pytest.raises(ValueError, match="s"):
        S.logit_normal_t(10, s=0.0)


def test_logit_normal_density_integrates_to_one():
    t = torch.linspace(1e-6, 1 - 1e-6, 200001, dtype=torch.float64)
    p = S.logit_normal_density(t, m=0.3, s=0.8)
    assert float(torch.trapezoid(p, t)) == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ValueError, match="inside"):
        S.logit_normal_density(torch.tensor([0.0, 0.5]))


def test_shift_maps_half_to_three_quarters_and_is_monotone():
    assert float(S.shift_time(torch.tensor(0.5), 3.0)) == pytest.approx(0.75)
    t = torch.linspace(0, 1, 1001)
    for s in (0.5, 1.0, 3.0):
        u = S.shift_time(t, s)
        assert u[0] == 0 and u[-1] == 1 and bool((u[1:] > u[:-1]).all())
    assert torch.allclose(S.shift_time(t, 1.0), t)
    assert bool((S.shift_time(t[1:-1], 3.0) > t[1:-1]).all())  # towards noise
    grid = S.shifted_time_grid(10, 3.0)
    assert grid[0] == 1 and grid[-1] == 0 and grid.shape == (11,)
    with pytest.raises(ValueError, match="shift"):
        S.shift_time(t, 0.0)
    with pytest.raises(ValueError, match="t must"):
        S.shift_time(torch.tensor([1.5]), 2.0)


def test_snr_matching_shift_identity_algebraically():
    t = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    snr = rectified_flow().snr
    for k in (2, 3, 4):
        shift = S.snr_matching_shift(8 * 8, 8 * k * 8 * k)
        assert shift == pytest.approx(k)
        t_high = S.shift_time(t, shift)
        assert torch.allclose(k**2 * snr(t_high), snr(t), rtol=1e-10)


def test_snr_matching_shift_numerically_on_upsampled_digits():
    """Upsample digits by k, noise at t' = shift(t, k), average k x k blocks: the noise left
    over has the same level as noising the small digits at t."""
    x_small, _ = digits(8, "all")
    k, t = 4, 0.5
    x_big = F.interpolate(x_small, scale_factor=k, mode="nearest")
    g = torch.Generator().manual_seed(0)
    t_big = float(S.shift_time(torch.tensor(t), S.snr_matching_shift(64, 64 * k * k)))
    small = S.block_snr(x_small, t, generator=g)
    # block_snr itself: the clean signal power over the noise power t^2
    assert small == pytest.approx(float(((1 - t) * x_small).square().mean()) / t**2, rel=0.02)
    big_same_t = S.block_snr(x_big, t, block=k, generator=g)
    big_shifted = S.block_snr(x_big, t_big, block=k, generator=g)
    assert big_same_t == pytest.approx(k**2 * small, rel=0.05)  # same t: 16x too easy
    assert big_shifted == pytest.approx(small, rel=0.05)  # shifted t: matched
    with pytest.raises(ValueError, match="block"):
        S.block_snr(x_big, t, block=5)
    with pytest.raises(ValueError, match="t"):
        S.block_snr(x_big, 0.0)


def test_time_sampler_draws_match_its_density():
    g = torch.Generator().manual_seed(0)
    for sampler in (S.TimeSampler(), S.TimeSampler("logit_normal"), S.TimeSampler(shift=3.0),
                    S.TimeSampler("logit_normal", m=-0.5, s=0.7, shift=2.0)):
        t = sampler(200_000, generator=g)
        assert float(t.min()) >= 0 and float(t.max()) <= 1
        hist = torch.histc(t, 40, 0, 1) / t.numel() * 40
        density = sampler.density(torch.linspace(0.000125, 0.999875, 4000))  # midpoints of 4000 cells
        assert float(density.mean()) == pytest.approx(1.0, abs=0.01)  # integrates to 1
        bins = density.reshape(40, 100).mean(1)  # each histogram bar: the density's mean over its bin
        assert torch.allclose(hist, bins, atol=0.06 + 0.03 * bins.max()), (sampler, (hist - bins).abs().max())
    assert float(S.TimeSampler(shift=3.0)(100_000, generator=g).median()) == pytest.approx(0.75, abs=0.01)
    assert str(S.TimeSampler("logit_normal", shift=3.0)) == "logit-normal(m=0, s=1), shift 3"
    for kwargs, name in ((dict(kind="beta"), "kind"), (dict(s=0.0), "s"), (dict(shift=-1.0), "shift"),
                         (dict(m=float("nan")), "m")):
        with pytest.raises(ValueError, match=name):
            S.TimeSampler(**kwargs)
    with pytest.raises(ValueError, match="strictly inside"):
        S.TimeSampler().density(torch.tensor([0.0, 0.5]))
