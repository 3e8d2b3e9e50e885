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
        def guided(x_t, tt):
            return 3.0 * model(x_t, tt, labels) - 2.0 * model(x_t, tt, torch.full_like(labels, 3))

        separate = euler(guided, z, 20)
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


def test_noisy_classifier_limits_and_classifier_guidance_identity():
    data = overlapping_classes()
    x = torch.randn(400, 2, generator=torch.Generator().manual_seed(0)) * 2
    y = torch.randint(0, 3, (400,), generator=torch.Generator().manual_seed(1))
    # At pure noise the noisy classifier knows only the prior; at t = 0 it is the clean one.
    assert torch.allclose(oracle.class_log_posterior(data, x, 1.0).exp(), data.class_weights.expand(400, 3), atol=1e-5)
    assert torch.allclose(oracle.class_log_posterior(data, x, 0.0).exp(), data.class_posterior(x), atol=1e-5)
    # CFG with weight w == classifier guidance with scale 1 + w on the unconditional field.
    for t in (0.05, 0.3, 0.6, 0.9):
        for w in (0.0, 1.0, 3.0):
            cg = oracle.classifier_guided_velocity(data, x, t, y, 1 + w)
            cfg = oracle.guided_velocity(data, x, t, y, w)
            assert torch.allclose(cg, cfg, atol=2e-4 * (1 + w)), (t, w)
    # scale 0 is the unconditional field; scale 1 the class-conditional one
    assert torch.allclose(oracle.classifier_guided_velocity(data, x, 0.5, y, 0.0),
                          oracle.velocity(data.mixture, x, 0.5))
    assert torch.allclose(oracle.classifier_guided_velocity(data, x, 0.5, y, 1.0),
                          oracle.class_velocity(data, x, 0.5, y), atol=1e-4)
    with pytest.raises(ValueError, match="t must be < 1"):
        oracle.classifier_guided_velocity(data, x, 1.0, y, 2.0)
    with pytest.raises(ValueError, match="scale"):
        oracle.classifier_guided_velocity(data, x, 0.5, y, float("nan"))
    with pytest.raises(ValueError, match="labelled"):
        oracle.class_log_posterior(data.mixture, x, 0.5)


def test_class_conditional_scores_real_shrunk_and_mislabelled():
    from cs231n_gen import metrics

    data = overlapping_classes()
    g = torch.Generator().manual_seed(2)
    labels = torch.arange(3).repeat_interleave(800)
    real = torch.cat([data.sample_class(c, 800, generator=g) for c in range(3)])
    s = metrics.class_conditional_scores(data, real, labels, generator=g)
    post = data.class_posterior(real)
    assert s["accuracy"] == pytest.approx(float((post.argmax(1) == labels).float().mean()))
    assert 0.8 < s["accuracy"] < 0.92  # the Bayes accuracy of these overlapping classes
    assert 0.75 < s["w2_ratio"] < 1.35 and 0.9 < s["spread"] < 1.1
    # shrink every class towards its mean: sharper, less diverse, farther in W2
    means = torch.stack([real[labels == c].mean(0) for c in range(3)])[labels]
    shrunk = means + 0.4 * (real - means)
    s2 = metrics.class_conditional_scores(data, shrunk, labels, generator=g)
    assert s2["spread"] == pytest.approx(0.16 * s["spread"], rel=0.05)
    assert s2["accuracy"] > s["accuracy"] and s2["w2_ratio"] > 2 * s["w2_ratio"]
    wrong = metrics.class_conditional_scores(data, real, (labels + 1) % 3, generator=g)
    assert wrong["accuracy"] < 0.15 and wrong["w2_ratio"] > 3
    with pytest.raises(ValueError, match="labels"):
        metrics.class_conditional_scores(data, real, torch.full((2400,), 5))
    with pytest.raises(ValueError, match="at least 2"):
        metrics.class_conditional_scores(data, real[:3], torch.tensor([0, 1, 1]))


class _OracleCFGModel(torch.nn.Module):
    """Exact conditional/unconditional fields behind the (x, t, y) interface, null label 3."""

    null_label = 3

    def __init__(self, data, bias=0.0):
        super().__init__()
        self.data, self.bias = data, bias
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t, y):
        out = oracle.velocity(self.data.mixture, x, t).clone()
        rows = y < 3
        if bool(rows.any()):
            out[rows] = oracle.class_velocity(self.data, x[rows], t[rows], y[rows])
        return out + self.bias * (y == 3)[:, None]


def test_branch_errors_split_the_two_fields():
    from cs231n_gen import metrics

    data = overlapping_classes()
    exact = metrics.branch_errors(_OracleCFGModel(data), data, n=4096, generator=torch.Generator().manual_seed(0))
    assert exact["conditional"] < 1e-8 and exact["unconditional"] < 1e-8
    assert exact["oracle_conditional"] < exact["oracle_unconditional"]  # knowing y removes ambiguity
    biased = metrics.branch_errors(_OracleCFGModel(data, bias=0.3), data, n=4096)
    assert biased["conditional"] < 1e-8 and biased["unconditional"] == pytest.approx(2 * 0.09, rel=1e-4)
    with pytest.raises(ValueError, match="null_label"):
        metrics.branch_errors(torch.nn.Linear(2, 2), data)


def test_sharpened_class_distribution():
    from cs231n_gen import metrics

    data = overlapping_classes()
    g = torch.Generator().manual_seed(4)
    # w = 0 is the class itself
    same = data.sample_sharpened(1, 1500, 0.0, generator=g)
    assert metrics.wasserstein2(same, data.sample_class(1, 1500, generator=g)) < 0.2
    # the acceptance rule is the density ratio: compare with importance weights p(y | x)^w
    w = 3.0
    x = data.sample_class(0, 200_000, generator=g)
    weights = data.class_posterior(x)[:, 0] ** w
    want_mean = (weights[:, None] * x).sum(0) / weights.sum()
    sharp = data.sample_sharpened(0, 20_000, w, generator=g)
    assert torch.allclose(sharp.mean(0), want_mean, atol=0.03)
    assert float(data.class_posterior(sharp)[:, 0].mean()) > float(data.class_posterior(x)[:, 0].mean()) + 0.05
    with pytest.raises(ValueError, match="w"):
        data.sample_sharpened(0, 10, -1.0)
    with pytest.raises(ValueError, match="y"):
        data.sample_sharpened(3, 10, 1.0)


def test_class_conditional_variance_is_each_class_oracle():
    data = overlapping_classes()
    x_t = torch.randn(60, 2, generator=torch.Generator().manual_seed(5))
    y = torch.arange(60) % 3
    got = oracle.class_conditional_variance(data, x_t, 0.4, y)
    for c in range(3):
        assert torch.allclose(got[y == c], oracle.conditional_variance(data.class_mixture(c), x_t[y == c], 0.4))
