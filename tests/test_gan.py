"""cs231n_gen.gan: losses (values and gradients at known points), D*, JSD, the training loop."""
import math

import pytest
import torch

from cs231n_gen import gan
from cs231n_gen.data import GaussianMixture, ring_gaussians
from cs231n_gen.metrics import mode_coverage
from cs231n_gen.nn import GaussianGenerator, MLPDiscriminator, MLPGenerator
from cs231n_gen.train import TrainingDivergedError


def test_losses_at_known_points():
    zero = torch.zeros(3)
    # D = 1/2 everywhere: V = 2 log(1/2) = -log 4.
    assert gan.value(zero, zero).item() == pytest.approx(-math.log(4))
    assert gan.discriminator_loss(zero, zero).item() == pytest.approx(math.log(4))
    assert gan.minimax_generator_loss(zero).item() == pytest.approx(math.log(0.5))
    assert gan.nonsaturating_generator_loss(zero).item() == pytest.approx(math.log(2))
    # A perfect discriminator: V -> 0 from below.
    assert gan.value(torch.full((2,), 30.0), torch.full((2,), -30.0)).item() == pytest.approx(0.0, abs=1e-10)
    # Explicit values against the definitions with probabilities.
    logits = torch.tensor([-2.0, 0.5, 3.0])
    d = torch.sigmoid(logits)
    assert gan.nonsaturating_generator_loss(logits).item() == pytest.approx(-torch.log(d).mean().item(), rel=1e-6)
    assert gan.minimax_generator_loss(logits).item() == pytest.approx(torch.log(1 - d).mean().item(), rel=1e-6)
    assert gan.discriminator_loss(logits, logits.flip(0)).item() == pytest.approx(
        (-torch.log(d).mean() - torch.log(1 - d.flip(0)).mean()).item(), rel=1e-6)


def test_losses_accept_column_logits_and_stay_finite():
    logits = torch.tensor([[-80.0], [80.0]])
    for v in (gan.discriminator_loss(logits, logits), gan.minimax_generator_loss(logits),
              gan.nonsaturating_generator_loss(logits)):
        assert torch.isfinite(v)


def test_gradients_saturate_only_for_minimax():
    logits = torch.tensor([-10.0, 0.0, 10.0], requires_grad=True)
    (g_mm,) = torch.autograd.grad(gan.minimax_generator_loss(logits) * 3, logits)
    (g_ns,) = torch.autograd.grad(gan.nonsaturating_generator_loss(logits) * 3, logits)
    d = torch.sigmoid(logits.detach())
    assert torch.allclose(g_mm, -d, atol=1e-6)  # d/dl log(1 - sigmoid(l)) = -D
    assert torch.allclose(g_ns, -(1 - d), atol=1e-6)  # d/dl -log sigmoid(l) = -(1 - D)
    assert abs(g_mm[0]) < 1e-4 and abs(g_ns[0]) > 0.9999  # D(G(z)) ~ 0: only minimax vanishes
    (g_d,) = torch.autograd.grad(gan.discriminator_loss(logits, torch.zeros(3)) * 3, logits)
    assert torch.allclose(g_d, -(1 - d), atol=1e-6)


def test_generator_loss_dispatch_and_bad_inputs():
    logits = torch.randn(5)
    assert gan.generator_loss(logits, "minimax") == gan.minimax_generator_loss(logits)
    with pytest.raises(ValueError, match="kind"):
        gan.generator_loss(logits, "wasserstein")
    with pytest.raises(ValueError, match="fake_logits"):
        gan.nonsaturating_generator_loss(torch.randn(4, 2))
    with pytest.raises(ValueError, match="real_logits"):
        gan.discriminator_loss(torch.tensor([float("nan")]), logits)


def test_optimal_discriminator():
    p = torch.tensor([0.5, 0.1, 0.0, 0.3])
    q = torch.tensor([0.5, 0.3, 0.2, 0.0])
    d = gan.optimal_discriminator(p.log(), q.log())
    assert torch.allclose(d, torch.tensor([0.5, 0.25, 0.0, 1.0]))
    both_zero = gan.optimal_discriminator(torch.tensor([-math.inf]), torch.tensor([-math.inf]))
    assert both_zero.item() == 0.5
    far = gan.optimal_discriminator(torch.tensor([-1000.0]), torch.tensor([-1010.0]))  # no underflow to 0/0
    assert far.item() == pytest.approx(torch.sigmoid(torch.tensor(10.0)).item())
    with pytest.raises(ValueError, match="log_p_model"):
        gan.optimal_discriminator(p, q[:2])
    with pytest.raises(ValueError, match="log_p_data"):
        gan.optimal_discriminator(torch.tensor([float("nan")]), torch.tensor([0.0]))


def test_js_divergence_and_optimal_value():
    g = torch.Generator().manual_seed(0)
    p = GaussianMixture(torch.tensor([[0.0]]), 1.0)
    assert gan.js_divergence(p, p, generator=g) == pytest.approx(0.0, abs=1e-6)
    assert gan.optimal_value(p, p, generator=g) == pytest.approx(-math.log(4), abs=1e-6)
    far = GaussianMixture(torch.tensor([[50.0]]), 1.0)
    assert gan.js_divergence(p, far, generator=g) == pytest.approx(math.log(2), abs=1e-3)
    # Two unit Gaussians one apart: compare with numerical integration.
    q = GaussianGenerator(1, mean=1.0, std=1.0)
    x = torch.linspace(-12, 13, 200001)[:, None]
    with torch.no_grad():
        lp, lq = p.log_prob(x), q.log_prob(x)
    m = torch.logaddexp(lp, lq) - math.log(2)
    dx = float(x[1] - x[0])
    exact = 0.5 * float((lp.exp() * (lp - m)).sum() * dx + (lq.exp() * (lq - m)).sum() * dx)
    with torch.no_grad():
        assert gan.js_divergence(p, q, n=200000, generator=g) == pytest.approx(exact, abs=3e-3)
    with pytest.raises(ValueError, match="q must have"):
        gan.js_divergence(p, object())


def test_gaussian_generator_density():
    G = GaussianGenerator(2, mean=torch.tensor([1.0, -1.0]), std=0.5)
    x = torch.tensor([[1.0, -1.0]])
    assert G.log_prob(x).item() == pytest.approx(2 * (-math.log(0.5) - 0.5 * math.log(2 * math.pi)), rel=1e-5)
    s = G.sample(20000, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(s.mean(0), torch.tensor([1.0, -1.0]), atol=0.02)
    assert torch.allclose(s.std(0), torch.tensor([0.5, 0.5]), atol=0.02)
    with pytest.raises(ValueError, match="std"):
        GaussianGenerator(1, std=0.0)


def test_train_gan_covers_the_ring_and_beats_a_collapsed_run():
    ring = ring_gaussians(8)
    torch.manual_seed(0)
    G, D = MLPGenerator(16, 2, 128, 3), MLPDiscriminator(2, 128, 3)
    h = gan.train_gan(G, D, ring, steps=800, lr_g=1e-3, lr_d=1e-3, betas=(0.5, 0.9), r1_gamma=0.1,
                      device="cpu", progress=False, snapshot_every=400, snapshot_grid=(3.0, 16))
    s = gan.sample(G, 2500, generator=torch.Generator().manual_seed(1))
    cov = mode_coverage(s, ring.means, 0.1)
    assert cov["covered"] >= 7 and cov["high_quality"] >= 0.5, cov
    assert [snap.step for snap in h.snapshots] == [0, 400, 800]
    assert h.snapshots[0].decision.shape == (16, 16) and h.snapshots[-1].samples.shape == (1000, 2)
    assert len(h.value) == len(h.g_grad) == 800 // 50
    assert all(-10 < v <= 0 for v in h.value)


def test_train_gan_frozen_generator_and_warmup():
    data = GaussianMixture(torch.tensor([[2.0]]), 0.3)
    G, D = GaussianGenerator(1), MLPDiscriminator(1, 16, 1)
    before = [p.detach().clone() for p in G.parameters()]
    h = gan.train_gan(G, D, data, steps=100, train_generator=False, d_warmup=50, lr_d=1e-2, device="cpu",
                      progress=False, log_every=10)
    assert all(torch.equal(a, b) for a, b in zip(before, G.parameters()))
    assert h.d_real[-1] > 0.6 > 0.4 > h.d_fake[-1]


def test_train_gan_resume_is_exact(tmp_path):
    ring = ring_gaussians(8)

    def make():
        torch.manual_seed(0)
        return MLPGenerator(4, 2, 16, 2), MLPDiscriminator(2, 16, 2)

    kw = dict(steps=40, batch_size=32, device="cpu", progress=False, log_every=10, seed=3)
    G1, D1 = make()
    full = gan.train_gan(G1, D1, ring, **kw)
    ck = tmp_path / "gan.pt"
    calls = {"n": 0}

    def data_then_interrupt(n, generator):  # the run dies while drawing step 21's batch
        calls["n"] += 1
        if calls["n"] > 20:
            raise KeyboardInterrupt
        return ring.sample(n, generator=generator)

    G2, D2 = make()
    with pytest.raises(KeyboardInterrupt):
        gan.train_gan(G2, D2, data_then_interrupt, checkpoint=ck, checkpoint_every=20, **kw)
    G3, D3 = make()
    resumed = gan.train_gan(G3, D3, lambda n, generator: ring.sample(n, generator=generator),
                            checkpoint=ck, checkpoint_every=20, **kw)
    for a, b in zip(G1.parameters(), G3.parameters()):
        assert torch.equal(a, b)
    assert resumed.value == full.value and resumed.steps_run == 20
    with pytest.raises(ValueError, match="settings"):
        gan.train_gan(*make(), ring, checkpoint=ck, **{**kw, "lr_d": 1e-3})


def test_train_gan_nan_guard_and_bad_settings():
    G, D = MLPGenerator(2, 2, 8, 1), MLPDiscriminator(2, 8, 1)
    bad = lambda n, generator: torch.full((n, 2), float("nan"))  # noqa: E731
    with pytest.raises(ValueError, match="data.*NaN"):
        gan.train_gan(G, D, bad, steps=20, device="cpu", progress=False, log_every=5)
    ring8 = ring_gaussians(8)

    def exploding(n, generator):  # the generator's weights blow up after a few steps
        exploding.calls += 1
        if exploding.calls == 7:
            with torch.no_grad():
                next(G.parameters()).fill_(float("inf"))
        return ring8.sample(n, generator=generator)

    exploding.calls = 0
    with pytest.raises(TrainingDivergedError, match="non-finite"):
        gan.train_gan(G, D, exploding, steps=20, device="cpu", progress=False, log_every=5)
    ring = ring_gaussians(8)
    for kwargs, name in ((dict(g_loss="hinge"), "g_loss"), (dict(d_steps=0), "d_steps"), (dict(lr_g=0.0), "lr_g"),
                         (dict(betas=(0.5,)), "betas"), (dict(r1_gamma=-1.0), "r1_gamma"),
                         (dict(lr_schedule="step"), "lr_schedule"),
                         (dict(snapshot_grid=(3.0,)), "snapshot_grid"), (dict(checkpoint_every=5), "checkpoint")):
        with pytest.raises(ValueError, match=name):
            gan.train_gan(G, D, ring, steps=2, device="cpu", progress=False, **kwargs)
    with pytest.raises(ValueError, match="z_dim"):
        gan.train_gan(torch.nn.Linear(2, 2), D, ring, steps=2, device="cpu", progress=False)


def test_conditional_generator_draws_labels_from_class_probs_and_obeys_them():
    from cs231n_gen.nn import ConditionalMLPGenerator

    torch.manual_seed(0)
    probs = torch.tensor([0.2, 0.3, 0.5])
    g = ConditionalMLPGenerator(3, noise_dim=4, out_dim=2, hidden=8, depth=1, class_probs=probs)
    z = torch.randn(30000, 5, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = g(z)
    onehot = out[:, 2:]
    assert torch.equal(onehot.sum(1), torch.ones(len(z)))
    assert torch.allclose(onehot.mean(0), probs, atol=0.01)
    y = onehot.argmax(1)
    with torch.no_grad():
        assert torch.allclose(out[:, :2], g.generate(z[:, :4], y))  # the pair is G(z, y) with its y
        assert not torch.allclose(g.generate(z[:5, :4], torch.zeros(5, dtype=torch.long)),
                                  g.generate(z[:5, :4], torch.full((5,), 2)))


def test_conditional_generator_checks_its_settings():
    from cs231n_gen.nn import ConditionalMLPGenerator

    with pytest.raises(ValueError, match="class_probs"):
        ConditionalMLPGenerator(3, class_probs=torch.tensor([0.5, 0.6, -0.1]))
    with pytest.raises(ValueError, match="class_probs"):
        ConditionalMLPGenerator(3, class_probs=torch.tensor([0.5, 0.5]))
    g = ConditionalMLPGenerator(3, noise_dim=4)
    with pytest.raises(ValueError, match="y"):
        g.generate(torch.randn(2, 4), torch.tensor([0, 3]))
