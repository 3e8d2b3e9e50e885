"""Lecture 05 (latent diffusion): the VAE's KL term and one latent-diffusion training step."""
from __future__ import annotations

import threading

import torch

from ._harness import call_student, close, exercise, fail, name_the_mistake


_GLOBAL_RNG = threading.Lock()


def _kl(mean, log_var):
    return 0.5 * (mean.square() + log_var.exp() - 1.0 - log_var).flatten(1).sum(1)


@exercise("kl_divergence", references=('cs231n_gen.autoencoding.gaussian_kl', 'cs231n_gen.autoencoding._gaussian_kl'))
def check_kl_divergence(student_fn, probe):
    """Check ``kl_divergence(mean, log_var)``: KL(N(mean, exp(log_var)) || N(0, I)) per example, shape (n,)."""
    g = probe.generator()
    mean = torch.randn(6, 2, 3, 3, generator=g)
    log_var = torch.randn(6, 2, 3, 3, generator=g) * 0.8 - 0.5
    got = call_student("kl_divergence", student_fn, mean.clone(), log_var.clone())
    if not isinstance(got, torch.Tensor):
        fail(f"kl_divergence must return a tensor, got {type(got).__name__}")
    want = _kl(mean, log_var)
    if got.shape != want.shape:
        if got.numel() == 1 and (close(got, want.sum(), 1e-4) or close(got, want.mean(), 1e-4)):
            fail("kl_divergence returned one number for the whole batch: return one KL per example, shape (n,), "
                 "summed over that example's coordinates only (.flatten(1).sum(1)).")
        fail(f"kl_divergence must return shape {tuple(want.shape)} (one KL per example), got {tuple(got.shape)}")
    got = got.detach()
    if close(got, want, 1e-4):
        return "kl_divergence is correct: 1/2 sum(mu^2 + sigma^2 - 1 - log sigma^2) per example, zero at N(0, I)."
    var = log_var.exp()
    hints = [
        (2 * want, "the factor 1/2 is missing: KL = 1/2 sum(mu^2 + sigma^2 - 1 - log sigma^2)."),
        (_kl(mean, log_var).div(mean[0].numel()), "the KL was averaged over the coordinates: the KL of a diagonal "
                                                  "Gaussian is the SUM of the per-coordinate KLs."),
        (0.5 * (mean.square() + var - 1.0 + log_var).flatten(1).sum(1), "the sign of the log term: it is "
                                                                        "- log sigma^2 (= - log_var)."),
        (0.5 * (mean.square() + log_var.exp().sqrt() - 1.0 - 0.5 * log_var).flatten(1).sum(1),
         "log_var is the log of the VARIANCE sigma^2, so sigma^2 = exp(log_var) (not exp(log_var / 2), which is "
         "sigma) and log sigma^2 = log_var."),
        (0.5 * (mean.square() + var.square() - 1.0 - 2 * log_var).flatten(1).sum(1),
         "exp(log_var) is already sigma^2: squaring it again gives sigma^4."),
        (0.5 * (mean.square() - 1.0).flatten(1).sum(1), "the last term is log sigma^2 = log_var, not sigma^2 "
                                                        "(they cancelled each other)."),
        (0.5 * (mean.square() + var - 1.0).flatten(1).sum(1), "the - log sigma^2 term is missing (it is what "
                                                              "stops sigma from shrinking to 0)."),
    ]
    name_the_mistake(got, hints, 1e-4)
    signed = (log_var.square() + 1e-12).log()
    if close(got, 0.5 * (mean.square() + log_var.square() - 1.0 - signed).flatten(1).sum(1), 1e-4):
        fail("log_var was used as the standard deviation sigma. It is log sigma^2: sigma^2 = exp(log_var).")
    fail(f"kl_divergence does not match 1/2 sum(mu^2 + exp(log_var) - 1 - log_var) (largest difference "
         f"{float((got - want).abs().max()):.4g}).")


def _probe_models(probe):
    """A small frozen VAE and a small conditional velocity model over its flattened latents."""
    from ..nn import TimeMLP
    from ..nn.autoencoder import VAE

    with _GLOBAL_RNG, torch.random.fork_rng(devices=[]):  # a grader runs checks in threads
        torch.manual_seed(int(torch.randint(0, 2 ** 31, (), generator=probe.generator(7))))
        vae = VAE(latent_channels=2, width=4).eval()
        model = TimeMLP(dim=2 * 4 * 4, hidden=16, depth=2, num_classes=3)
    for p in vae.parameters():
        p.requires_grad_(True)  # as after training: a student must keep the gradient out of it
    return vae, model


@exercise("latent_rf_loss")
def check_latent_rf_loss(student_fn, probe):
    """Check ``latent_rf_loss(model, vae, x, y, scale, p_uncond, generator)``: the RF loss on frozen, scaled latents."""
    from ..guidance import conditional_rf_loss

    g = probe.generator()
    x = torch.rand(8, 3, 16, 16, generator=g) * 2 - 1
    y = torch.randint(0, 3, (8,), generator=g)
    scale = probe.uniform(1.5, 3.0)
    seed = int(torch.randint(0, 2 ** 31, (), generator=probe.generator(3)))
    vae, model = _probe_models(probe)
    before = [p.detach().clone() for p in vae.parameters()]

    def reference(latents):
        return conditional_rf_loss(model, latents, y, 0.1, torch.Generator().manual_seed(seed)).detach()

    got = call_student("latent_rf_loss", student_fn, model, vae, x.clone(), y.clone(), scale, 0.1,
                       torch.Generator().manual_seed(seed))
    if not isinstance(got, torch.Tensor) or got.numel() != 1:
        fail(f"latent_rf_loss must return a scalar tensor, got {got!r}")
    if not got.requires_grad:
        fail("the loss carries no gradient: the model's prediction must stay in the graph (only the encoder is "
             "frozen).")
    for p in vae.parameters():
        p.grad = None
    model.zero_grad(set_to_none=True)
    got.backward()
    if any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in vae.encoder.parameters()):
        fail("the gradient reaches the encoder: it is frozen in latent diffusion. Encode under torch.no_grad() "
             "(or .detach() the latents) so only the diffusion model learns.")
    if any(not torch.equal(a, b) for a, b in zip(before, vae.parameters())):
        fail("latent_rf_loss changed the autoencoder's weights: it must only read them.")
    got = got.detach()
    with torch.no_grad():
        mean, log_var = vae.encode(x)
    want = reference((scale * mean).flatten(1))
    if close(got, want, 1e-5):
        return ("latent_rf_loss is correct: frozen posterior means, scaled to unit size, flattened, and the "
                "class-conditional rectified-flow loss on them.")
    draw = torch.Generator().manual_seed(seed)
    sampled = (scale * vae.sample(mean, log_var, draw)).flatten(1)
    hints = [
        (reference(mean.flatten(1)), "the latents were not scaled: multiply them by scale (1 / their std) so that "
                                     "data and noise have the same size."),
        (reference((mean / scale).flatten(1)), "the latents were divided by scale: multiply (scale = 1 / std)."),
        (conditional_rf_loss(model, sampled, y, 0.1, draw).detach(),
         "the latents were drawn from q(z | x) with the same generator: use the posterior MEAN (vae.encode(x)[0]), "
         "and leave the generator to the loss."),
        (reference((scale * log_var).flatten(1)), "vae.encode returns (mean, log_var): the latent is the first one."),
    ]
    name_the_mistake(got, hints, 1e-5)
    fail(f"latent_rf_loss gives {float(got):.5f}, the reference {float(want):.5f}. Encode x to its posterior mean "
         "(no gradient), multiply by scale, flatten each latent to a row, and return "
         "conditional_rf_loss(model, latents, y, p_uncond, generator).")
