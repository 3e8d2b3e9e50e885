"""Classifier-free guidance: label dropout, the conditional loss, batched CFG, exact guided fields."""
import pytest
import torch

from cs231n_gen import oracle
from cs231n_gen.data import overlapping_classes
from cs231n_gen.guidance import Guided, cfg_velocity, conditional_rf_loss, drop_labels
from cs231n_gen.nn import TimeMLP
from cs231n_gen.sampling import euler


@pytest.fixture
def model():
    torch.manual_seed(0)
    return TimeMLP(dim=2, hidden=32, depth=2, num_classes=3)


def test_drop_labels_rate_and_values():
    y = torch.randint(0, 3, (20000,), generator=torch.Generator().manual_seed(0))
    out = drop_labels(y, 0.3, null_label=3, generator=torch.Generator().manual_seed(1))
    dropped = out == 3
    assert abs(float(dropped.float().mean()) - 0.3) < 0.015
    assert torch.equal(out[~dropped], y[~dropped])
    assert torch.equal(drop_labels(y, 0.0, 3), y) and bool((drop_labels(y, 1.0, 3) == 3).all())
    for p in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="p_uncond"):
            drop_labels(y, p, 3)


def test_conditional_loss_uses_null_labels(model):
    x, y = torch.randn(64, 2), torch.randint(0, 3, (64,))
    z, t = torch.randn(64, 2), torch.rand(64)
    never = conditional_rf_loss(model, x, y, p_uncond=0.0, z=z, t=t)
    always = conditional_rf_loss(model, x, y, p_uncond=1.0, z=z, t=t)
    x_t = (1 - t[:, None]) * x + t[:, None] * z
    want_cond = (model(x_t, t, y) - (z - x)).square().sum(1).mean()
    want_null = (model(x_t, t, torch.full_like(y, 3)) - (z - x)).square().sum(1).mean()
    assert torch.allclose(never, want_cond) and torch.allclose(always, want_null)
    with pytest.raises(ValueError, match="y must lie"):
        conditional_rf_loss(model, x, torch.full((64,), 7))
    with pytest.raises(ValueError, match="y must have 64"):
        conditional_rf_loss(model, x, y[:10])


def test_batched_cfg_equals_two_separate_calls(model):
    x, t, y = torch.randn(50, 2), torch.rand(50), torch.randint(0, 3, (50,))
    with torch.no_grad():
        for w in (0.0, 1.0, 4.0):
            two_calls = (1 + w) * model(x, t, y) - w * model(x, t, torch.full_like(y, 3))
            assert torch.allclose(cfg_velocity(model, x, t, y, w), two_calls, atol=1e-6)
        # Whole samplers agree too: batched guidance vs the two-call formula at every step.
        z = torch.randn(200, 2, generator=torch.Generator().manual_seed(3))
        labels = torch.arange(200) % 3
        batched = euler(Guided(model, labels, 2.0), z, 20)
        separate = euler(lambda x_t, tt: 3.0 * model(x_t, tt, labels) - 2.0 * model(x_t, tt, torch.full_like(labels, 3)),
                         z, 20)
        assert torch.allclose(batched, separate, atol=1e-5)


def test_cfg_bad_inputs(model):
    x, t = torch.randn(4, 2), torch.rand(4)
    with pytest.raises(ValueError, match="w"):
        cfg_velocity(model, x, t, 0, float("nan"))
    with pytest.raises(ValueError, match="w"):
        Guided(model, 0, -1.0)
    with pytest.raises(ValueError, match="y"):
        Guided(model, 9, 1.0)
    with pytest.raises(ValueError, match="null_label"):
        cfg_velocity(torch.nn.Linear(2, 2), x, t, 0, 1.0)
    with pytest.raises(ValueError, match="labels"):
        Guided(model, torch.tensor([0, 1]), 1.0)(x, t)


def test_labelled_mixture_posterior_and_classes():
    data = overlapping_classes()
    x, y = data.sample(4000, generator=torch.Generator().manual_seed(0))
    post = data.class_posterior(x)
    assert torch.allclose(post.sum(1), torch.ones(4000), atol=1e-5)
    bayes_acc = float((post.argmax(1) == y).float().mean())
    assert 0.6 < bayes_acc < 0.97  # the classes really overlap, yet are mostly separable
    assert torch.allclose(data.class_weights, torch.full((3,), 1 / 3))
    assert data.class_mixture(1).n_components == 2
    with pytest.raises(ValueError, match="y must be a class"):
        data.class_mixture(3)


def test_exact_guided_field_sharpens_the_class():
    data = overlapping_classes()
    z = torch.randn(3000, 2, generator=torch.Generator().manual_seed(1))
    y = torch.arange(3000) % 3

    def accuracy(w):
        x0 = euler(lambda x_t, t: oracle.guided_velocity(data, x_t, t, y, w), z, 100)
        return float((data.class_posterior(x0).argmax(1) == y).float().mean())

    acc0, acc4 = accuracy(0.0), accuracy(4.0)
    # w = 0 samples p(x | y) itself, so its accuracy is the Bayes accuracy of true class samples.
    x_true = torch.cat([data.sample_class(c, 1000, generator=torch.Generator().manual_seed(c)) for c in range(3)])
    y_true = torch.arange(3).repeat_interleave(1000)
    bayes = float((data.class_posterior(x_true).argmax(1) == y_true).float().mean())
    assert abs(acc0 - bayes) < 0.04
    assert acc4 > 0.99 > acc0 + 0.05
    with pytest.raises(ValueError, match="y must"):
        oracle.class_velocity(data, z[:3], 0.5, torch.tensor([0, 1, 5]))
