import math

import pytest
import torch

from cs231n_gen import oracle, paths, schedules
from cs231n_gen.data import eight_gaussians
from cs231n_gen.nn import TimeMLP
from cs231n_gen.sampling import euler


def test_interpolation_endpoints_and_target():
    x, z = torch.randn(10, 2), torch.randn(10, 2)
    assert torch.equal(paths.interpolate(x, z, 0.0), x)
    assert torch.equal(paths.interpolate(x, z, 1.0), z)
    t = torch.rand(10)
    xt = paths.interpolate(x, z, t)
    h = 1e-3
    deriv = (paths.interpolate(x, z, (t + h).clamp(max=1)) - xt) / h
    assert torch.allclose(deriv[t < 0.99], paths.velocity_target(x, z)[t < 0.99], atol=1e-3)


def test_loss_of_the_oracle_is_the_irreducible_loss():
    mix = eight_gaussians()
    g = torch.Generator().manual_seed(0)
    x = mix.sample(100_000, generator=g)
    loss = paths.rectified_flow_loss(oracle.VelocityOracle(mix), x, g)
    assert abs(float(loss) - 3.59) < 0.05  # E_t tr Var(z - x | x_t), see test_metrics


def test_loss_value_on_known_inputs():
    x = torch.tensor([[1.0, 0.0]])
    z = torch.tensor([[0.0, 2.0]])
    zero = lambda xt, t: torch.zeros_like(xt)  # noqa: E731
    assert float(paths.rectified_flow_loss(zero, x, z=z, t=torch.tensor([0.3]))) == pytest.approx(5.0)


def test_time_grid():
    assert torch.allclose(schedules.time_grid(4), torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))
    with pytest.raises(ValueError, match="steps"):
        schedules.time_grid(0)


def test_euler_on_fields_with_known_solutions():
    x1 = torch.randn(20, 2)
    const = lambda x, t: torch.ones_like(x) * torch.tensor([1.0, -2.0])  # noqa: E731
    assert torch.allclose(euler(const, x1, 7), x1 - torch.tensor([1.0, -2.0]), atol=1e-6)
    # dx/dt = a x integrated backwards from t = 1 to 0 by T Euler steps: x1 (1 - a/T)^T
    a, T = 0.7, 10
    lin = lambda x, t: a * x  # noqa: E731
    assert torch.allclose(euler(lin, x1, T), x1 * (1 - a / T) ** T, atol=1e-6)
    # and converges to the exact solution x1 exp(-a)
    assert torch.allclose(euler(lin, x1, 2000), x1 * math.exp(-a), atol=1e-3)


def test_euler_evaluates_on_the_grid_and_returns_trajectory():
    seen = []

    def field(x, t):
        seen.append(float(t[0]))
        assert t.shape == (x.shape[0],)
        return torch.zeros_like(x)

    x1 = torch.randn(5, 2)
    out, traj, times = euler(field, x1, 4, return_trajectory=True)
    assert seen == pytest.approx([1.0, 0.75, 0.5, 0.25])
    assert traj.shape == (5, 5, 2) and torch.equal(traj[0], x1) and torch.equal(traj[-1], out)
    assert torch.allclose(times, schedules.time_grid(4))
    custom = torch.tensor([1.0, 0.9, 0.5, 0.0])
    seen.clear()
    euler(field, x1, times=custom)
    assert seen == pytest.approx([1.0, 0.9, 0.5])


def test_oracle_euler_reaches_the_data():
    mix = eight_gaussians()
    g = torch.Generator().manual_seed(0)
    x = euler(oracle.VelocityOracle(mix), torch.randn(4000, 2, generator=g), 100)
    nearest = torch.cdist(x, mix.means).min(1).values
    assert float((nearest < 0.4).float().mean()) > 0.98
    assert torch.allclose(x.mean(0), mix.mean, atol=0.1)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(x=torch.zeros(3), steps=5), "x"),
        (dict(x=torch.full((3, 2), float("nan")), steps=5), "x"),
        (dict(x=torch.zeros(3, 2), steps=0), "steps"),
        (dict(x=torch.zeros(3, 2), steps=2.5), "steps"),
        (dict(x=torch.zeros(3, 2)), "steps"),
        (dict(x=torch.zeros(3, 2), times=torch.tensor([0.0, 1.0])), "times"),
        (dict(x=torch.zeros(3, 2), times=torch.tensor([2.0, 0.0])), "times"),
    ],
)
def test_euler_rejects_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        euler(lambda x, t: x, **kwargs)


def test_path_functions_reject_bad_input():
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="z"):
        paths.interpolate(x, torch.zeros(4, 3), 0.5)
    with pytest.raises(ValueError, match="t"):
        paths.interpolate(x, x, -0.1)
    with pytest.raises(ValueError, match="t"):
        paths.interpolate(x, x, torch.zeros(3))
    with pytest.raises(ValueError, match="model"):
        paths.rectified_flow_loss(lambda xt, t: xt[:, :1], x)


def test_count_calls_counts_forward_passes_and_rows_of_guided_sampling():
    from cs231n_gen.guidance import Guided
    from cs231n_gen.sampling import CountCalls, euler

    model = TimeMLP(num_classes=3)
    counted = CountCalls(model)
    assert counted.null_label == model.null_label  # read through to the model
    y = torch.zeros(10, dtype=torch.long)
    z = torch.randn(10, 2, generator=torch.Generator().manual_seed(0))
    guided = euler(Guided(counted, y, 2.0), z, 7)
    assert (counted.calls, counted.rows) == (7, 140)  # one batched pass of 2n rows per step: NFE 2
    counted.reset()
    euler(Guided(counted, y, 0.0), z, 7)
    assert (counted.calls, counted.rows) == (7, 70)
    assert torch.equal(guided, euler(Guided(model, y, 2.0), z, 7))  # counting changes nothing
    with pytest.raises(ValueError, match="model"):
        CountCalls(3)


def test_count_calls_reads_attributes_through_a_plain_function_too():
    from cs231n_gen.sampling import CountCalls, euler

    def field(x, t):
        return x

    field.label = "identity"
    counted = CountCalls(field)
    assert counted.label == "identity"
    euler(counted, torch.zeros(4, 2), 3)
    assert (counted.calls, counted.rows) == (3, 12)
    with pytest.raises(AttributeError, match="wrapped model .*'missing'"):
        counted.missing


def test_loss_sampler_and_guidance_take_image_batches():
    """(n, C, H, W) batches go through the same loss, sampler and guidance as (n, d) points."""
    from cs231n_gen.guidance import Guided, cfg_velocity, conditional_rf_loss

    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 2, 3, 3, generator=g)
    flat_net = torch.nn.Linear(18, 18)

    def image_net(x_t, t, y=None):  # the same map, on images
        return flat_net(x_t.flatten(1) * (1 + t[:, None])).view_as(x_t)

    def flat(x_t, t, y=None):
        return flat_net(x_t * (1 + t[:, None]))

    z, t = torch.randn(6, 2, 3, 3, generator=g), torch.rand(6, generator=g)
    assert torch.allclose(paths.interpolate(x, z, t).flatten(1), paths.interpolate(x.flatten(1), z.flatten(1), t))
    a = paths.rectified_flow_loss(image_net, x, z=z, t=t)
    b = paths.rectified_flow_loss(flat, x.flatten(1), z=z.flatten(1), t=t)
    assert torch.allclose(a, b)
    assert torch.allclose(euler(image_net, z, 4).flatten(1), euler(flat, z.flatten(1), 4), atol=1e-6)
    image_net.null_label, flat.null_label = 3, 3
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    assert torch.allclose(cfg_velocity(image_net, z, t, y, 2.0).flatten(1), cfg_velocity(flat, z.flatten(1), t, y, 2.0))
    assert torch.allclose(euler(Guided(image_net, y, 1.5), z, 3).flatten(1),
                          euler(Guided(flat, y, 1.5), z.flatten(1), 3),
                          atol=1e-6)
    loss = conditional_rf_loss(image_net, x, y, 0.3, torch.Generator().manual_seed(1))
    assert loss.shape == () and bool(torch.isfinite(loss))
    with pytest.raises(ValueError, match="x must be a batch"):
        paths.rectified_flow_loss(image_net, torch.randn(5))
