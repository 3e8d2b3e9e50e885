"""The autoencoder of latent diffusion: the model, its losses, its trainer on the engine."""
import copy

import pytest
import torch

from cs231n_gen import _io, cache
from cs231n_gen.autoencoding import adaptive_weight, encode, gaussian_kl, latent_scale, train_autoencoder
from cs231n_gen.data import shapes
from cs231n_gen.gan import hinge_discriminator_loss, hinge_generator_loss
from cs231n_gen.image_metrics import sharpness, shape_features
from cs231n_gen.nn.autoencoder import VAE, PatchDiscriminator

IMAGES = shapes(64, generator=torch.Generator().manual_seed(0)).images
KW = dict(batch_size=8, progress=False, cache=False, log_every=5)


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_shapes_through_the_autoencoder_and_the_critic():
    torch.manual_seed(0)
    vae = VAE(latent_channels=4, width=8, downsample=4)
    mean, log_var = vae.encode(IMAGES[:5])
    assert mean.shape == log_var.shape == (5, 4, 8, 8) == (5, *vae.latent_shape(32, 32))
    out = vae.decode(mean)
    assert out.shape == (5, 3, 32, 32) and float(out.detach().abs().max()) <= 1
    recon, m, lv = vae(IMAGES[:5])
    assert recon.shape == (5, 3, 32, 32) and torch.equal(m, mean)
    assert VAE(width=8, downsample=8).encode(IMAGES[:2])[0].shape == (2, 4, 4, 4)
    assert VAE(width=8).encode(torch.zeros(2, 3, 48, 16))[0].shape == (2, 4, 12, 4)
    assert PatchDiscriminator(width=8)(IMAGES[:3]).shape == (3, 1, 4, 4)
    with pytest.raises(ValueError, match="x must be shaped .* multiples of 4"):
        vae.encode(torch.zeros(1, 3, 30, 32))
    with pytest.raises(ValueError, match="power of 2"):
        VAE(downsample=6)
    with pytest.raises(ValueError, match="z must have shape"):
        vae.decode(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="NaN"):
        vae.encode(torch.full((1, 3, 32, 32), float("nan")))


def test_gaussian_kl_matches_the_closed_form_and_a_monte_carlo_estimate():
    g = torch.Generator().manual_seed(0)
    mean, log_var = torch.randn(3, 2, 2, 2, generator=g), torch.randn(3, 2, 2, 2, generator=g) * 0.5
    kl = gaussian_kl(mean, log_var)
    var = log_var.exp()
    closed = 0.5 * (mean ** 2 + var - 1 - log_var).flatten(1).sum(1)
    assert kl.shape == (3,) and torch.allclose(kl, closed)
    # Monte Carlo: E_q[log q(z) - log p(z)] for the first example.
    q = torch.distributions.Normal(mean[0].flatten(), (0.5 * log_var[0].flatten()).exp())
    z = q.sample((200000,))
    mc = (q.log_prob(z) - torch.distributions.Normal(0.0, 1.0).log_prob(z)).sum(1).mean()
    assert abs(float(mc) - float(kl[0])) < 0.05 * float(kl[0]) + 0.02
    assert float(gaussian_kl(torch.zeros(2, 4), torch.zeros(2, 4)).abs().max()) == 0.0
    with pytest.raises(ValueError, match="log_var must have the shape of mean"):
        gaussian_kl(mean, log_var[:2])
    with pytest.raises(ValueError, match="mean"):
        gaussian_kl(torch.full((2, 3), float("nan")), torch.zeros(2, 3))


def test_adaptive_weight_is_the_ratio_of_gradient_norms_at_the_last_layer():
    torch.manual_seed(0)
    vae, critic = VAE(width=8), PatchDiscriminator(width=8)
    x = IMAGES[:4]
    x_hat = vae.decode(vae.encode(x)[0])
    rec = (x_hat - x).square().flatten(1).sum(1).mean()
    g_loss = hinge_generator_loss(critic(x_hat))
    w = vae.decoder.last_layer.weight
    lam = adaptive_weight(rec, g_loss, w)
    g_rec = torch.autograd.grad(rec, w, retain_graph=True)[0]
    g_gan = torch.autograd.grad(g_loss, w, retain_graph=True)[0]
    assert not lam.requires_grad
    assert torch.allclose(lam, g_rec.norm() / (g_gan.norm() + 1e-4))
    # Weighted, the adversarial gradient at the last layer is as large as the reconstruction's.
    g_weighted = torch.autograd.grad(lam * g_loss, w, retain_graph=True)[0]
    assert abs(float(g_weighted.norm() / g_rec.norm()) - 1) < 1e-3
    assert float(adaptive_weight(rec, g_loss, w, max_weight=0.5)) == 0.5
    with pytest.raises(ValueError, match="rec_loss"):
        adaptive_weight(rec.detach(), g_loss, w)
    with pytest.raises(ValueError, match="last_layer"):
        adaptive_weight(rec, g_loss, w.detach())


def test_hinge_losses_at_known_points():
    real, fake = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-2.0, 0.0, 1.0])
    # relu(1 - real) = [0, 0.5, 2] -> 5/6; relu(1 + fake) = [0, 1, 2] -> 1
    assert torch.isclose(hinge_discriminator_loss(real, fake), torch.tensor(5 / 6 + 1))
    assert torch.isclose(hinge_generator_loss(fake), torch.tensor(1 / 3))
    maps = torch.zeros(2, 1, 4, 4)
    assert float(hinge_discriminator_loss(maps, maps)) == 2.0  # a critic that cannot tell: 2
    with pytest.raises(ValueError, match="fake_logits"):
        hinge_generator_loss(torch.zeros(0))


def test_train_autoencoder_learns_and_resumes_bit_exactly(tmp_path):
    torch.manual_seed(0)
    start = VAE(width=8)
    full = copy.deepcopy(start)
    h = train_autoencoder(full, IMAGES, steps=30, **KW)
    assert h.steps == 30 and h.mse[-1] < 0.5 * h.mse[0] and all(v == 0 for v in h.critic)

    ckpt = tmp_path / "ae.pt"
    interrupted = copy.deepcopy(start)
    calls = {"n": 0}
    original = interrupted.decoder.forward

    def stop_in_step_15(z):  # the student presses stop during step 15
        calls["n"] += 1
        if calls["n"] == 15:
            raise KeyboardInterrupt
        return original(z)

    interrupted.decoder.forward = stop_in_step_15
    with pytest.raises(KeyboardInterrupt):
        train_autoencoder(interrupted, IMAGES, steps=30, checkpoint=ckpt, checkpoint_every=10, **KW)
    assert _io.load(ckpt)["step"] == 10
    resumed = copy.deepcopy(start)
    h2 = train_autoencoder(resumed, IMAGES, steps=30, checkpoint=ckpt, checkpoint_every=10, **KW)
    assert h2.steps_run == 20 and h2.steps == 30 and _same(resumed, full) and h2.mse == h.mse
    with pytest.raises(ValueError, match="settings"):
        train_autoencoder(copy.deepcopy(start), IMAGES, steps=30, kl_weight=0.5, checkpoint=ckpt, **KW)


def test_the_critic_run_resumes_bit_exactly_and_freezes_the_encoder(tmp_path):
    torch.manual_seed(1)
    vae, critic = VAE(width=8), PatchDiscriminator(width=8)
    args = dict(steps=12, disc_start=4, train_encoder=False, lr=1e-3, **KW)
    a_vae, a_critic = copy.deepcopy(vae), copy.deepcopy(critic)
    h = train_autoencoder(a_vae, IMAGES, discriminator=a_critic, **args)
    assert all(v == 0 for v in h.weight[:4]) and all(v > 0 for v in h.weight[4:])
    assert all(v > 0 for v in h.critic)
    assert _same(a_vae.encoder, vae.encoder) and not _same(a_vae.decoder, vae.decoder)
    ckpt = tmp_path / "gan.pt"
    b_vae, b_critic = copy.deepcopy(vae), copy.deepcopy(critic)
    calls = {"n": 0}
    original = b_critic.forward

    def counted(x):
        calls["n"] += 1
        if calls["n"] == 20:  # inside step 7 (two critic calls per step, three from disc_start on)
            raise KeyboardInterrupt
        return original(x)

    b_critic.forward = counted
    with pytest.raises(KeyboardInterrupt):
        train_autoencoder(b_vae, IMAGES, discriminator=b_critic, checkpoint=ckpt, checkpoint_every=3, **args)
    b_critic.forward = original
    assert 3 <= _io.load(ckpt)["step"] < 12
    train_autoencoder(b_vae, IMAGES, discriminator=b_critic, checkpoint=ckpt, checkpoint_every=3, **args)
    assert _same(b_vae, a_vae) and _same(b_critic, a_critic)


def test_autoencoder_runs_are_cached_and_a_damaged_cache_is_trained_over(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))

    def run():
        torch.manual_seed(2)
        vae = VAE(width=8)
        h = train_autoencoder(vae, IMAGES, steps=8, batch_size=8, progress=False, cache=True)
        return vae, h

    first, h1 = run()
    second, h2 = run()
    assert h2.cached and not h1.cached and _same(first, second) and h2.mse == h1.mse
    (path,) = tmp_path.glob("run_autoencoder_*.pt")
    path.write_bytes(path.read_bytes()[:-20])
    third, h3 = run()
    assert not h3.cached and _same(third, first)
    assert "retraining run_autoencoder" in capsys.readouterr().out


@pytest.mark.parametrize("kwargs, name", [
    (dict(steps=0), "steps"), (dict(kl_weight=-1.0), "kl_weight"), (dict(batch_size=0), "batch_size"),
    (dict(disc_start=-1), "disc_start"), (dict(lr=0.0), "lr"), (dict(train_encoder="no"), "train_encoder"),
    (dict(lr_schedule="step"), "lr_schedule"), (dict(disc_lr=float("nan")), "disc_lr"),
])
def test_train_autoencoder_rejects_bad_settings(kwargs, name):
    args = dict(steps=2, progress=False, cache=False)
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        train_autoencoder(VAE(width=8), IMAGES, **args)


def test_train_autoencoder_rejects_bad_images_and_models():
    with pytest.raises(ValueError, match=r"images must lie in \[-1, 1\]"):
        train_autoencoder(VAE(width=8), IMAGES * 3, steps=1, progress=False)
    with pytest.raises(ValueError, match="images must have 3 channels"):
        train_autoencoder(VAE(width=8), IMAGES[:, :1], steps=1, progress=False)
    with pytest.raises(ValueError, match="vae must be"):
        train_autoencoder(torch.nn.Linear(2, 2), IMAGES, steps=1, progress=False)
    with pytest.raises(ValueError, match="discriminator must be"):
        train_autoencoder(VAE(width=8), IMAGES, steps=1, discriminator=torch.nn.Linear(2, 2), progress=False)


def test_encode_and_latent_scale():
    torch.manual_seed(0)
    vae = VAE(width=8).eval()
    z = encode(vae, IMAGES, batch_size=16)
    assert z.shape == (64, 4, 8, 8) and torch.allclose(z, vae.encode(IMAGES)[0], atol=1e-5)
    s = latent_scale(z)
    assert abs(float((z * s).std()) - 1) < 1e-5
    with pytest.raises(ValueError, match="std 0"):
        latent_scale(torch.ones(4, 3))


def test_sharpness_falls_with_blur_and_features_separate_real_from_blank():
    real = shapes(32, generator=torch.Generator().manual_seed(3)).images
    blurred = torch.nn.functional.avg_pool2d(real, 3, stride=1, padding=1, count_include_pad=False)
    assert float(sharpness(blurred).mean()) < 0.5 * float(sharpness(real).mean())
    f = shape_features(real)
    assert f.shape == (32, 14) and bool(torch.isfinite(f).all())
    blank = shape_features(torch.full((4, 3, 32, 32), -0.8))
    assert bool(torch.isfinite(blank).all())
    with pytest.raises(ValueError, match="images"):
        sharpness(torch.zeros(2, 3, 2, 2))


def test_gaussian_fit_kl_against_known_gaussians():
    from cs231n_gen.autoencoding import gaussian_fit_kl

    g = torch.Generator().manual_seed(0)
    assert abs(gaussian_fit_kl(torch.randn(20000, 2, 2, generator=g))) < 0.01
    mu, sigma = torch.tensor([1.0, -0.5, 0.0]), torch.tensor([0.5, 2.0, 1.0])
    z = mu + sigma * torch.randn(50000, 3, generator=g)
    want = float(0.5 * (sigma ** 2 + mu ** 2 - 1 - (sigma ** 2).log()).sum())
    assert abs(gaussian_fit_kl(z) - want) < 0.02 * want
    with pytest.raises(ValueError, match="more examples"):
        gaussian_fit_kl(torch.randn(3, 4))
    with pytest.raises(ValueError, match="singular"):
        gaussian_fit_kl(torch.cat([torch.randn(100, 1), torch.zeros(100, 1)], 1))
