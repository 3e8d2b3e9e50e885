"""Reflow couplings, the progressive-distillation target, guidance distillation, the w input."""
import copy

import pytest
import torch

from cs231n_gen import metrics
from cs231n_gen.data import eight_gaussians
from cs231n_gen import distillation
from cs231n_gen.distillation import (consistency_loss, consistency_sample, guidance_distillation_loss,
                                     progressive_loss, reflow_loss, reflow_pairs, two_step_target)
from cs231n_gen.guidance import cfg_velocity
from cs231n_gen.nn import TimeMLP
from cs231n_gen.paths import rectified_flow_loss
from cs231n_gen.sampling import euler
from cs231n_gen.train import fit


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def _curved(x, t):
    """A field that changes with x and t, so a wrong time or state shows."""
    t = torch.as_tensor(t, dtype=x.dtype).reshape(-1).expand(x.shape[0])
    return torch.tanh(x.flip(1)) * (1 + 3 * t[:, None]) + torch.cos(5 * t)[:, None]


def test_reflow_pairs_keep_each_sample_with_its_own_noise():
    z = torch.randn(64, 2, generator=_g(1))
    x, z_out = reflow_pairs(_curved, z, 8)
    assert z_out is z
    assert torch.allclose(x, euler(_curved, z, 8))
    # Row i of x depends on row i of z only: shuffling the noise shuffles the samples the same way.
    perm = torch.randperm(64, generator=_g(2))
    x_perm, _ = reflow_pairs(_curved, z[perm], 8)
    assert torch.allclose(x_perm, x[perm], atol=1e-6)


def test_reflow_loss_is_the_rectified_flow_loss_on_the_given_pairs():
    model = TimeMLP(hidden=16, depth=1)
    x, z = torch.randn(32, 2, generator=_g(3)), torch.randn(32, 2, generator=_g(4))
    assert torch.allclose(reflow_loss(model, (x, z), _g(5)), rectified_flow_loss(model, x, _g(5), z=z))
    with pytest.raises(ValueError, match="pairs"):
        reflow_loss(model, x, _g())
    with pytest.raises(ValueError, match="pairs\\[1\\]"):
        reflow_loss(model, (x, z[:5]), _g())


def test_two_step_target_lands_where_two_teacher_steps_land():
    x_t = torch.randn(16, 2, generator=_g(6))
    t = 0.3 + 0.7 * torch.rand(16, generator=_g(7))
    dt = 0.3
    v = two_step_target(_curved, x_t, t, dt)
    mid = x_t - dt / 2 * _curved(x_t, t)
    end = mid - dt / 2 * _curved(mid, t - dt / 2)
    assert torch.allclose(x_t - dt * v, end, atol=1e-6)
    # Not the teacher's single step: the field is curved.
    assert not torch.allclose(v, _curved(x_t, t), atol=1e-3)


def test_two_step_target_of_a_straight_field_is_the_field():
    c = torch.tensor([0.7, -1.3])
    x_t = torch.randn(8, 2, generator=_g(8))
    assert torch.allclose(two_step_target(lambda x, t: c.expand_as(x), x_t, 0.5, 0.25), c.expand(8, 2))


def test_two_step_target_refuses_steps_past_zero():
    with pytest.raises(ValueError, match="t must be at least dt"):
        two_step_target(_curved, torch.zeros(4, 2), 0.1, 0.25)
    with pytest.raises(ValueError, match="dt"):
        two_step_target(_curved, torch.zeros(4, 2), 0.5, 0.0)


def test_progressive_loss_uses_the_student_grid_and_is_zero_for_the_exact_student():
    # Teacher v(x, t) = t c: its two half steps use t c and (t - dt/2) c, so the one-step velocity
    # is their mean, (t - dt/4) c; a student returning that scores 0, and is called at grid times only.
    c = torch.tensor([1.0, -2.0])
    steps = 4
    dt = 1 / steps
    seen = []

    def teacher(x, t):
        return t[:, None] * c

    def student(x, t):
        seen.append(t.clone())
        return (t - dt / 4)[:, None] * c

    loss = progressive_loss(student, teacher, torch.randn(256, 2, generator=_g(9)), _g(10), steps=steps)
    assert float(loss) < 1e-10
    times = torch.cat(seen)
    assert set((times * steps).round().long().tolist()) <= {1, 2, 3, 4}
    assert torch.allclose(times * steps, (times * steps).round())
    assert len(set(times.tolist())) == steps  # every grid time drawn in a batch of 256


def test_consistency_loss_is_zero_for_straight_paths_and_anchored_at_zero():
    # A constant field has straight paths: f(x, t) = x - t c sends every point of one to the same end.
    c = torch.tensor([0.5, -1.5])
    const = lambda x, t: c.expand_as(x)  # noqa: E731
    x = torch.randn(256, 2, generator=_g(11))
    assert float(consistency_loss(const, const, x, _g(12), steps=4)) < 1e-10
    assert float(consistency_loss(_curved, const, x, _g(12), steps=4)) > 0.1
    # With one step the target is the teacher's own Euler step to 0, whatever the student does at t = 0.
    student = lambda x, t: _curved(x, t) * (t[:, None] > 0) + 1e6 * (t[:, None] == 0)  # noqa: E731
    assert float(consistency_loss(student, _curved, x, _g(13), steps=1)) < 1e-10


def test_consistency_loss_trains_the_student_only():
    student, teacher = TimeMLP(hidden=16, depth=1), TimeMLP(hidden=16, depth=1)
    consistency_loss(student, teacher, torch.randn(64, 2, generator=_g(14)), _g(15), steps=4).backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in student.parameters())
    assert all(p.grad is None for p in teacher.parameters())


def test_consistency_sample_jumps_then_renoises():
    z = torch.randn(32, 2, generator=_g(16))
    one = consistency_sample(_curved, z, 1)
    assert torch.allclose(one, z - _curved(z, 1.0))
    c = torch.tensor([0.5, -1.5])
    const = lambda x, t: c.expand_as(x)  # noqa: E731
    three = consistency_sample(const, z, 3, generator=_g(17))  # x_t = (1 - t) x + t z' jumps to (1 - t)(x) + t (z' - c)
    assert torch.isfinite(three).all() and not torch.allclose(three, z - c)
    with pytest.raises(ValueError, match="steps"):
        consistency_sample(const, z, 0)


def test_consistency_distillation_gives_a_one_step_sampler():
    data = eight_gaussians()
    torch.manual_seed(0)
    teacher = TimeMLP(hidden=128, depth=2)
    fit(teacher, rectified_flow_loss, data, steps=800, batch_size=256, lr=2e-3, progress=False)
    student = copy.deepcopy(teacher)
    fit(student, lambda m, b, g: consistency_loss(m, teacher, b, g, steps=4), data, steps=600, batch_size=256,
        lr=1e-3, progress=False)
    sets = metrics.evaluation_sets(data, n_sets=2, n_points=500, generator=_g(18))
    with torch.no_grad():
        teacher_one = metrics.wasserstein2_ratio([euler(teacher, z, 1) for z in sets["noise"]], sets["data"],
                                                 sets["fresh"])
        student_one = metrics.wasserstein2_ratio([consistency_sample(student, z, 1) for z in sets["noise"]],
                                                 sets["data"], sets["fresh"])
    assert student_one * 2 < teacher_one, (student_one, teacher_one)


def test_cfg_velocity_with_one_weight_per_row_matches_it_row_by_row():
    torch.manual_seed(0)
    model = TimeMLP(hidden=16, depth=1, num_classes=3)
    x, t, y = torch.randn(6, 2, generator=_g(11)), torch.rand(6, generator=_g(12)), torch.arange(6) % 3
    w = torch.tensor([0.0, 0.5, 1.0, 2.0, 3.0, 4.0])
    got = cfg_velocity(model, x, t, y, w)
    for i in range(6):
        want = cfg_velocity(model, x[i:i + 1], t[i:i + 1], y[i:i + 1], float(w[i]))
        assert torch.allclose(got[i:i + 1], want, atol=1e-6)
    assert torch.allclose(cfg_velocity(model, x, t, y, torch.tensor(2.0)), cfg_velocity(model, x, t, y, 2.0),
                          atol=1e-6)
    with pytest.raises(ValueError, match="w must be finite and >= 0"):
        cfg_velocity(model, x, t, y, torch.full((6,), -1.0))
    with pytest.raises(ValueError, match=r"w must be a number or a \(6,\) float tensor"):
        cfg_velocity(model, x, t, y, torch.ones(5))


def test_the_old_per_row_guidance_name_says_where_it_went():
    with pytest.raises(ImportError, match="cs231n_gen.guidance.cfg_velocity"):
        distillation.guided_velocity
    with pytest.raises(ImportError, match="cs231n_gen.guidance.cfg_velocity"):
        from cs231n_gen.distillation import guided_velocity  # noqa: F401
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        distillation.no_such_name


def test_a_student_with_the_w_input_starts_as_its_teacher_and_checks_w():
    torch.manual_seed(0)
    teacher = TimeMLP(hidden=16, depth=1, num_classes=3)
    student = TimeMLP(hidden=16, depth=1, num_classes=3, guidance_max=4.0)
    missing = student.load_state_dict(teacher.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("weight_embed") for k in missing)
    x, t, y = torch.randn(8, 2, generator=_g(13)), torch.rand(8, generator=_g(14)), torch.arange(8) % 3
    for w in (0.0, 2.5, torch.linspace(0, 4, 8)):
        assert torch.allclose(student(x, t, y, w), teacher(x, t, y))
    with pytest.raises(ValueError, match="w .*required"):
        student(x, t, y)
    with pytest.raises(ValueError, match=r"w must lie in \[0, 4\]"):
        student(x, t, y, torch.full((8,), 5.0))
    with pytest.raises(ValueError, match="w must"):
        student(x, t, y, 4.5)
    with pytest.raises(ValueError, match="guidance_max=None"):
        teacher(x, t, y, 1.0)
    with pytest.raises(ValueError, match="guidance_max"):
        TimeMLP(guidance_max=0.0)


def test_guidance_distillation_loss_is_zero_for_the_guided_field_itself():
    torch.manual_seed(0)
    teacher = TimeMLP(hidden=16, depth=1, num_classes=3)
    exact = lambda x_t, t, y, w: cfg_velocity(teacher, x_t, t, y, w)  # noqa: E731
    x, y = torch.randn(64, 2, generator=_g(15)), torch.arange(64) % 3
    assert float(guidance_distillation_loss(exact, teacher, x, y, _g(16), w_max=4.0)) < 1e-10
    student = TimeMLP(hidden=16, depth=1, num_classes=3, guidance_max=4.0)
    assert float(guidance_distillation_loss(student, teacher, x, y, _g(16), w_max=4.0)) > 1e-3
    with pytest.raises(ValueError, match="y"):
        guidance_distillation_loss(student, teacher, x, torch.full((64,), 3), _g(), w_max=4.0)  # the null label


def test_straightness_of_a_straight_field_is_one():
    c = torch.tensor([1.5, -0.5])
    _, traj, _ = euler(lambda x, t: c.expand_as(x) + 0 * x, torch.randn(50, 2, generator=_g(17)), 16,
                       return_trajectory=True)
    s = metrics.path_straightness(traj)
    assert s["length_ratio"] == pytest.approx(1.0, abs=1e-5) and s["deviation"] < 1e-5
    _, traj, _ = euler(_curved, torch.randn(50, 2, generator=_g(17)), 16, return_trajectory=True)
    assert metrics.path_straightness(traj)["length_ratio"] > 1.01


def test_reflow_straightens_a_trained_flow_and_one_step_gets_closer():
    """A small end-to-end run: 1-RF on eight Gaussians, one reflow round, one-step W2 at least halved."""
    torch.manual_seed(0)
    data = eight_gaussians()
    teacher = TimeMLP(hidden=128, depth=2)
    fit(teacher, rectified_flow_loss, data, steps=600, batch_size=256, lr=3e-3, progress=False, cache=False)
    pairs = reflow_pairs(teacher, torch.randn(4000, 2, generator=_g(18)), 16)
    student = copy.deepcopy(teacher)
    fit(student, reflow_loss, pairs, steps=400, batch_size=256, lr=1e-3, progress=False, cache=False)
    sets = metrics.evaluation_sets(data, n_sets=2, n_points=500, generator=_g(19))

    def one_step(model):
        with torch.no_grad():
            return metrics.wasserstein2_ratio([euler(model, z, 1) for z in sets["noise"]], sets["data"], sets["fresh"])

    def bend(model):
        with torch.no_grad():
            return metrics.path_straightness(euler(model, sets["noise"][0], 16, return_trajectory=True)[1])

    assert one_step(student) * 2 <= one_step(teacher)
    assert bend(student)["length_ratio"] < bend(teacher)["length_ratio"]
