import math

import pytest
import torch

from cs231n_gen import metrics, oracle
from cs231n_gen.data import eight_gaussians
from cs231n_gen.nn import TimeMLP


def test_wasserstein2_known_values():
    a = torch.randn(300, 2)
    assert metrics.wasserstein2(a, a) == pytest.approx(0.0, abs=1e-6)
    shift = torch.tensor([3.0, 4.0])
    assert metrics.wasserstein2(a, a + shift) == pytest.approx(5.0, rel=1e-4)
    # a permutation of the same points is the same measure
    assert metrics.wasserstein2(a, a[torch.randperm(300)]) == pytest.approx(0.0, abs=1e-6)
    # unequal sizes: two points vs their four copies
    p = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    assert metrics.wasserstein2(p, p.repeat(2, 1)) == pytest.approx(0.0, abs=1e-6)


def test_wasserstein2_ratio_separates_good_from_bad():
    mix = eight_gaussians()
    g = torch.Generator().manual_seed(0)
    sets = lambda: [mix.sample(1000, generator=g) for _ in range(3)]  # noqa: E731
    data, fresh, same = sets(), sets(), sets()
    good = metrics.wasserstein2_ratio(same, data, fresh)
    assert 0.7 < good < 1.4
    collapsed = [s[s[:, 0] > 0] for s in sets()]  # only half the modes
    assert metrics.wasserstein2_ratio(collapsed, data, fresh) > 3
    with pytest.raises(ValueError, match="fresh"):
        metrics.wasserstein2_ratio(same, data, fresh[:2])


def test_wasserstein2_ratio_solves_the_baseline_once_per_content(monkeypatch):
    g = torch.Generator().manual_seed(1)
    data = [torch.randn(50, 2, generator=g) for _ in range(2)]
    fresh = [torch.randn(50, 2, generator=g) for _ in range(2)]
    samples = [[torch.randn(50, 2, generator=g) + k for _ in range(2)] for k in range(3)]
    solved = []
    exact = metrics.wasserstein2
    monkeypatch.setattr(metrics, "wasserstein2", lambda a, b: solved.append(1) or exact(a, b))
    monkeypatch.setattr(metrics, "_BASELINES", type(metrics._BASELINES)())
    ratios = [metrics.wasserstein2_ratio(s, data, fresh) for s in samples]
    assert len(solved) == 2 + 3 * 2  # the baseline's two pairs once, then the samples' pairs
    want = [sum(exact(a, d) for a, d in zip(s, data)) / sum(exact(f, d) for f, d in zip(fresh, data))
            for s in samples]
    assert ratios == pytest.approx(want, rel=1e-12)
    fresh[0].add_(1.0)  # changed in place: a new baseline, solved again
    solved.clear()
    changed = metrics.wasserstein2_ratio(samples[0], data, fresh)
    assert len(solved) == 4 and changed != pytest.approx(ratios[0])
    metrics.wasserstein2_ratio(samples[0], [d.clone() for d in data], [f.clone() for f in fresh])
    assert len(solved) == 6  # equal copies: the remembered baseline


def test_sliced_wasserstein_and_mmd():
    a = torch.randn(2000, 2)
    b = torch.randn(2000, 2)
    far = b + 2
    g = torch.Generator().manual_seed(0)
    assert metrics.sliced_wasserstein(a, b, generator=g) < 0.1
    # a shift by (2, 2) projects to 2 * (u1 + u2); its mean square over directions is 4
    assert metrics.sliced_wasserstein(a, far, n_projections=2000, generator=g) == pytest.approx(2.0, rel=0.1)
    assert metrics.mmd(a, b) < 0.01 < metrics.mmd(a, far)
    with pytest.raises(ValueError, match="bandwidths"):
        metrics.mmd(a, b, bandwidths=[0.0])


def test_excess_loss_of_oracle_is_zero_and_of_untrained_net_is_large():
    mix = eight_gaussians()
    g = torch.Generator().manual_seed(1)
    r = metrics.excess_loss(oracle.VelocityOracle(mix), mix, n=20000, generator=g)
    assert r["excess"] < 1e-10
    assert r["oracle"] == pytest.approx(3.59, rel=0.02)
    torch.manual_seed(0)
    bad = metrics.excess_loss(TimeMLP(), mix, n=4096, generator=g)
    assert bad["ratio"] > 0.3
    assert bad["oracle"] == pytest.approx(r["oracle"], rel=0.05)


def test_metrics_reject_bad_input():
    a = torch.randn(10, 2)
    with pytest.raises(ValueError, match="b"):
        metrics.wasserstein2(a, torch.randn(10, 3))
    with pytest.raises(ValueError, match="a"):
        metrics.wasserstein2(torch.full((3, 2), float("nan")), a)
    with pytest.raises(ValueError, match="n_projections"):
        metrics.sliced_wasserstein(a, a, n_projections=0)
    with pytest.raises(ValueError, match="n"):
        metrics.excess_loss(oracle.VelocityOracle(eight_gaussians()), eight_gaussians(), n=0)


def test_mode_coverage_counts_distinct_modes_and_quality():
    from cs231n_gen.data import ring_gaussians

    mix = ring_gaussians(8, radius=2.0, std=0.02)
    g = torch.Generator().manual_seed(0)
    x = mix.sample(2500, generator=g)
    r = metrics.mode_coverage(x, mix.means, 0.02)
    assert r["covered"] == 8 and r["high_quality"] > 0.98 and sum(r["counts"]) == round(2500 * r["high_quality"])
    # collapse onto 3 modes, plus junk between modes
    collapsed = torch.cat([x[torch.isin(torch.cdist(x, mix.means).argmin(1), torch.tensor([0, 1, 2]))],
                           torch.zeros(100, 2)])
    r = metrics.mode_coverage(collapsed, mix.means, 0.02)
    assert r["covered"] == 3 and r["high_quality"] < 0.95
    # a single sample covers exactly one mode (its nearest), never its neighbours
    one = metrics.mode_coverage(mix.means[:1], mix.means, 0.02)
    assert one["covered"] == 1
    with pytest.raises(ValueError, match="std"):
        metrics.mode_coverage(x, mix.means, 0.0)
    with pytest.raises(ValueError, match="means"):
        metrics.mode_coverage(x, torch.zeros(3, 3), 0.1)


def test_mode_coverage_within_std_catches_shrunken_modes():
    mix = eight_gaussians(std=0.1)
    x, k = mix.sample(20_000, generator=torch.Generator().manual_seed(0), return_labels=True)
    real = metrics.mode_coverage(x, mix.means, 0.1)["within_std"]
    assert real == pytest.approx(0.1, rel=0.03)
    shrunk = mix.means[k] + 0.8 * (x - mix.means[k])
    assert metrics.mode_coverage(shrunk, mix.means, 0.1)["within_std"] == pytest.approx(0.08, rel=0.03)


def test_path_straightness_on_known_shapes():
    t = torch.linspace(0, 1, 201)
    line = torch.stack([t, 2 * t], 1)[:, None]  # (201, 1, 2)
    ang = torch.linspace(0, math.pi, 201)
    arc = torch.stack([torch.cos(ang), torch.sin(ang)], 1)[:, None]  # a half circle over its diameter
    wiggle = torch.stack([0.01 * t, 0.005 * torch.sin(math.pi * t)], 1)[:, None]  # short chord, bent
    paths = torch.cat([line * 2, arc * 4, line * 3, wiggle], dim=1)
    s = metrics.path_straightness(paths)
    # medians over the four paths; the bent short one is not the "most bent" long path
    assert s["most_bent"] == 1 and s["max_deviation"] == pytest.approx(0.5, abs=1e-4)
    assert s["deviation"] == pytest.approx(0.25, abs=1e-4)  # median of 0, 0, 1/2 and the wiggle's 1/2
    assert s["length_ratio"] > 1.2
    with pytest.raises(ValueError, match="trajectory"):
        metrics.path_straightness(torch.zeros(5, 3, 2))  # no path goes anywhere
    with pytest.raises(ValueError, match="trajectory"):
        metrics.path_straightness(line[:1])


def test_interpolation_smoothness_tells_an_even_walk_from_a_jump():
    ts = torch.linspace(0, 1, 11)
    a, b = torch.zeros(3, 1, 4, 4), torch.ones(3, 1, 4, 4)
    even = torch.stack([(1 - s) * a + s * b for s in ts])
    jump = torch.stack([a if s < 0.5 else b for s in ts])
    e, j = metrics.interpolation_smoothness(even), metrics.interpolation_smoothness(jump)
    assert e["ends"] == pytest.approx(4.0) and e["max_step_ratio"] == pytest.approx(0.1, abs=1e-5)
    assert j["max_step_ratio"] == pytest.approx(1.0) and j["step"] == pytest.approx(e["step"], rel=1e-5)
    mixed = torch.cat([even, jump[:, :1]], dim=1)  # three even walks and one jump
    m = metrics.interpolation_smoothness(mixed)
    assert m["max_step_ratio"] == pytest.approx(0.1, abs=1e-5) and m["worst_ratio"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="frames"):
        metrics.interpolation_smoothness(torch.stack([a, a, a]))


def test_memorization_tells_copies_from_new_items():
    gen = torch.Generator().manual_seed(0)
    train = torch.randn(200, 1, 4, 4, generator=gen)
    held_out = torch.randn(100, 1, 4, 4, generator=gen)
    copies = train[:50] + 1e-4  # near-duplicates of training items
    fresh = torch.randn(50, 1, 4, 4, generator=gen)  # new draws from the same distribution
    d = metrics.nearest_neighbor_distances(copies, train, batch_size=7)
    assert d.shape == (50,) and float(d.max()) == pytest.approx(4e-4, rel=1e-2)  # 16 pixels off by 1e-4
    c, f = metrics.memorization(copies, train, held_out), metrics.memorization(fresh, train, held_out)
    assert c["ratio"] < 0.01 and c["copies"] == 1.0 and torch.equal(c["nearest"], torch.arange(50))
    assert 0.7 < f["ratio"] < 1.3 and f["copies"] < 0.1 and f["held_out_copies"] < 0.1
    half = metrics.memorization(torch.cat([copies[:25], fresh[:25]]), train, held_out)
    assert half["copies"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="samples must hold items of 16 numbers"):
        metrics.memorization(torch.zeros(3, 15), train, held_out)
    with pytest.raises(ValueError, match="held_out must not repeat"):
        metrics.memorization(fresh, train, train)
    with pytest.raises(ValueError, match="copy_threshold"):
        metrics.memorization(fresh, train, held_out, copy_threshold=0)
    with pytest.raises(ValueError, match="items"):
        metrics.nearest_neighbor_distances(torch.zeros(0, 16), train)
