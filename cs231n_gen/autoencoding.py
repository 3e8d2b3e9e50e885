r"""Training the autoencoder of latent diffusion: a VAE with a small KL weight, then a critic.

The encoder gives q(z | x) = N(mu, diag(sigma^2)) and the decoder a reconstruction
x_hat(z). Per image, the loss is

.. math::  L = \underbrace{\lVert x - \hat x(z) \rVert^2}_{\text{reconstruction}}
           + \beta\, \underbrace{D_{KL}(q(z \mid x) \,\Vert\, N(0, I))}_{\text{prior}},
           \qquad z = \mu + \sigma \odot \varepsilon,

with :func:`gaussian_kl` in closed form,
:math:`D_{KL} = \tfrac12 \sum_j (\mu_j^2 + \sigma_j^2 - 1 - \log \sigma_j^2)`.
With :math:`\beta = 1` (and a unit-variance Gaussian decoder) this is the negative ELBO of
the slides' VAE; latent diffusion uses a very small :math:`\beta`, so the latents keep the
detail of the image and are only gently pulled towards N(0, I).

The squared error is the log-likelihood of a Gaussian decoder, and a Gaussian decoder
predicts the *mean* of what could be there: edges come out blurry. A patch critic fixes
that (:func:`train_autoencoder` with ``discriminator=``): the decoder also descends the
hinge generator loss :math:`L_G = -E[D(\hat x)]`, weighted adaptively,

.. math::  \lambda = \frac{\lVert \nabla_{W_{last}} L_{rec} \rVert}
                          {\lVert \nabla_{W_{last}} L_G \rVert + \delta},

the ratio of the two losses' gradient norms at the decoder's last layer
(:func:`adaptive_weight`), so the adversarial term pulls as hard as the reconstruction
term whatever their scales. The adversarial term joins only once reconstruction has
settled (a second run from a trained VAE) and the critic has learned to tell
reconstructions from real images (``disc_start``): a critic that cannot tell them apart
yet only teaches the decoder noise.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import torch

from ._validate import check_generator, check_instance, check_int, check_real, check_tensor, host_readable
from .engine import Loop, RunRecord, batch_source, lr_factor, model_signature, prepare, train_steps
from .gan import hinge_discriminator_loss, hinge_generator_loss
from .runtime import device_of

__all__ = ["gaussian_kl", "adaptive_weight", "AutoencoderSettings", "AutoencoderHistory", "train_autoencoder",
           "encode", "latent_scale", "gaussian_fit_kl"]


def _pair(mean, log_var):
    mean = check_tensor("mean", mean)
    log_var = check_tensor("log_var", log_var)
    if mean.ndim < 2 or mean.shape[0] < 1:
        raise ValueError(f"mean must be shaped (n, ...) with n >= 1, got {tuple(mean.shape)}")
    if log_var.shape != mean.shape:
        raise ValueError(f"log_var must have the shape of mean {tuple(mean.shape)}, got {tuple(log_var.shape)}")
    return mean, log_var


def gaussian_kl(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    r"""KL(N(mean, diag(exp(log_var))) || N(0, I)) per example, shape (n,).

    :math:`\tfrac12 \sum_j (\mu_j^2 + \sigma_j^2 - 1 - \log \sigma_j^2)`, summed over every
    coordinate of an example (channels and positions). Zero exactly when mean = 0 and
    log_var = 0.
    """
    return _gaussian_kl(*_pair(mean, log_var))


def _gaussian_kl(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    return 0.5 * (mean.square() + log_var.exp() - 1.0 - log_var).flatten(1).sum(1)


def adaptive_weight(rec_loss: torch.Tensor, gan_loss: torch.Tensor, last_layer: torch.Tensor,
                    max_weight: float = 1e4, delta: float = 1e-4) -> torch.Tensor:
    r"""lambda = ||grad_W rec_loss|| / (||grad_W gan_loss|| + delta) at the weight W, clamped to [0, max_weight].

    Both losses must still hold their graphs (they are differentiated here, graphs
    kept). The result is detached: it scales the adversarial term, it is not trained.
    """
    for name, value in (("rec_loss", rec_loss), ("gan_loss", gan_loss)):
        if not isinstance(value, torch.Tensor) or value.numel() != 1 or not value.requires_grad \
                or not value.is_floating_point():
            raise ValueError(f"{name} must be a real scalar tensor that still holds its graph, got "
                             f"{value!r:.80}")
        if host_readable(value) and not bool(torch.isfinite(value).all()):
            raise ValueError(f"{name} must be finite, got {float(value)}")
    if not isinstance(last_layer, torch.Tensor) or not last_layer.requires_grad or not last_layer.is_floating_point():
        raise ValueError("last_layer must be a real weight tensor that requires grad (the decoder's last layer "
                         f"weight), got {type(last_layer).__name__}")
    max_weight = check_real("max_weight", max_weight, minimum=0.0, strict_min=True)
    delta = check_real("delta", delta, minimum=0.0, strict_min=True)
    try:
        (g_rec,) = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)
        (g_gan,) = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)
    except RuntimeError as err:
        raise ValueError("last_layer must be a weight both losses were computed through (the decoder's last layer "
                         f"weight): {str(err).splitlines()[0][:160]}") from None
    return (g_rec.norm() / (g_gan.norm() + delta)).clamp(0.0, max_weight).detach()


@dataclass(frozen=True)
class AutoencoderSettings:
    """The settings of :func:`train_autoencoder`, validated once (see its arguments)."""

    batch_size: int = 32
    lr: float = 2e-3
    lr_schedule: str = "cosine"
    kl_weight: float = 1e-3
    disc_weight: float = 0.5
    disc_start: int = 0
    disc_lr: float = 2e-4
    train_encoder: bool = True
    seed: int = 0

    def __post_init__(self):
        fix = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen dataclass)
        fix("batch_size", check_int("batch_size", self.batch_size, minimum=1))
        fix("lr", check_real("lr", self.lr, minimum=0.0, strict_min=True))
        if self.lr_schedule not in ("cosine", "constant"):
            raise ValueError(f"lr_schedule must be 'cosine' or 'constant', got {self.lr_schedule!r}")
        fix("kl_weight", check_real("kl_weight", self.kl_weight, minimum=0.0))
        fix("disc_weight", check_real("disc_weight", self.disc_weight, minimum=0.0))
        fix("disc_start", check_int("disc_start", self.disc_start, minimum=0))
        fix("disc_lr", check_real("disc_lr", self.disc_lr, minimum=0.0, strict_min=True))
        if not isinstance(self.train_encoder, bool):
            raise ValueError(f"train_encoder must be True or False, got {self.train_encoder!r}")
        fix("seed", check_int("seed", self.seed, minimum=0))


@dataclass
class AutoencoderHistory(RunRecord):
    """Per-step records of :func:`train_autoencoder`.

    ``mse`` (reconstruction error per pixel), ``kl`` (nats per image), ``critic`` (the
    critic's hinge loss, 2 when it cannot tell real from reconstructed; 0 without a
    critic), and from ``disc_start`` on ``gan`` (the decoder's hinge loss) and
    ``weight`` (the adaptive lambda), 0 before.
    """

    mse: list = field(default_factory=list)
    kl: list = field(default_factory=list)
    gan: list = field(default_factory=list)
    critic: list = field(default_factory=list)
    weight: list = field(default_factory=list)
    COLUMNS = ("mse", "kl", "gan", "critic", "weight")

    @property
    def steps(self) -> int:
        return len(self.mse)


def _images(name: str, images) -> torch.Tensor:
    images = check_tensor(name, images, ndim=4)
    if images.shape[0] < 1:
        raise ValueError(f"{name} must hold at least one image, got shape {tuple(images.shape)}")
    if float(images.min()) < -1.0 - 1e-4 or float(images.max()) > 1.0 + 1e-4:
        raise ValueError(f"{name} must lie in [-1, 1] (as the data loaders return it), got values in "
                         f"[{float(images.min()):.3g}, {float(images.max()):.3g}]")
    return images


def _check_vae(vae):
    """``vae`` if it is a :class:`~cs231n_gen.nn.autoencoder.VAE`."""
    from .nn.autoencoder import VAE

    return check_instance("vae", vae, VAE, "a cs231n_gen.nn.autoencoder.VAE")


def train_autoencoder(
    vae,
    images: torch.Tensor,
    *,
    steps: int,
    discriminator=None,
    batch_size: int = 32,
    lr: float = 2e-3,
    lr_schedule: str = "cosine",
    kl_weight: float = 1e-3,
    disc_weight: float = 0.5,
    disc_start: int = 0,
    disc_lr: float = 2e-4,
    train_encoder: bool = True,
    seed: int = 0,
    device=None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = True,
    progress: bool = True,
    log_every: int = 25,
    desc: str = "autoencoder",
    cache: bool | None = None,
    shipped: str | None = None,
) -> AutoencoderHistory:
    """Train ``vae`` (a :class:`~cs231n_gen.nn.autoencoder.VAE`) on ``images`` with the engine.

    Args:
        vae: the autoencoder; moved to ``device``.
        images: (N, C, H, W) in [-1, 1]; minibatches are drawn with replacement.
        steps: total optimisation steps (a resumed checkpoint's included).
        discriminator: a :class:`~cs231n_gen.nn.autoencoder.PatchDiscriminator`: it learns
            from the first step, and the adversarial term joins the decoder's loss from
            step ``disc_start`` on, once the critic can tell reconstructions from real
            images (None: a plain VAE).
        batch_size, lr, lr_schedule: Adam on the autoencoder (cosine decay to 0 by default).
        kl_weight: beta, the weight of the KL term per image.
        disc_weight: scales the adaptively weighted adversarial term.
        disc_start: the first step whose decoder loss holds the adversarial term.
        disc_lr: Adam's learning rate for the critic (betas 0.5, 0.9).
        train_encoder: False freezes the encoder (only the decoder learns, from the
            same latents: how a second decoder is fitted to a frozen encoder).
        seed: seeds the batches and the latent draws.
        checkpoint, checkpoint_every, resume, progress, log_every, desc, cache, shipped: as for
            :func:`cs231n_gen.train.fit` (the engine's plumbing).

    Returns an :class:`AutoencoderHistory`.
    """
    from .nn.autoencoder import PatchDiscriminator

    _check_vae(vae)
    if discriminator is not None and not isinstance(discriminator, PatchDiscriminator):
        raise ValueError("discriminator must be a cs231n_gen.nn.autoencoder.PatchDiscriminator or None, got "
                         f"{type(discriminator).__name__}")
    images = _images("images", images)
    if images.shape[1] != vae.in_channels:
        raise ValueError(f"images must have {vae.in_channels} channels (the vae's in_channels), got {images.shape[1]}")
    if images.shape[2] % vae.downsample or images.shape[3] % vae.downsample:
        raise ValueError(f"images must have height and width divisible by the vae's downsample={vae.downsample}, "
                         f"got {tuple(images.shape)}")
    config = AutoencoderSettings(batch_size=batch_size, lr=lr, lr_schedule=lr_schedule, kl_weight=kl_weight,
                                 disc_weight=disc_weight, disc_start=disc_start, disc_lr=disc_lr,
                                 train_encoder=train_encoder, seed=seed)
    loop = Loop(steps=steps, log_every=log_every, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                resume=resume, progress=progress, desc=desc, cache=cache, shipped=shipped)
    device, generator = prepare(device, config.seed)

    vae.to(device)
    draw = batch_source(images, device)
    trained = vae if config.train_encoder else vae.decoder
    optimizer = torch.optim.Adam(trained.parameters(), lr=config.lr)
    modules, optimizers = {"vae": vae}, {"vae": optimizer}
    if discriminator is not None:
        discriminator.to(device)
        critic_optimizer = torch.optim.Adam(discriminator.parameters(), lr=config.disc_lr, betas=(0.5, 0.9))
        modules["critic"], optimizers["critic"] = discriminator, critic_optimizer
    history = AutoencoderHistory()
    pixels = images[0].numel()
    lr_at = lambda i: config.lr * lr_factor(config.lr_schedule, i, loop.steps, 0)  # noqa: E731
    last_layer = vae.decoder.last_layer.weight

    def step(i):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(i)
        x = draw(config.batch_size, generator)
        # Encode (without a graph when the encoder is frozen), draw z, decode.
        with torch.set_grad_enabled(config.train_encoder):
            mean, log_var = vae.encoder(x)
        x_hat = vae.decoder(vae.sample(mean, log_var, generator))
        rec = (x_hat - x).square().flatten(1).sum(1).mean()
        kl = _gaussian_kl(mean, log_var).mean()  # the unchecked forms: no host sync per step (the engine guards NaN)
        loss = rec + config.kl_weight * kl if config.train_encoder else rec
        zero = torch.zeros((), device=x.device)
        g_loss, d_loss, weight = zero, zero, zero
        if discriminator is not None and i >= config.disc_start:  # the adversarial term, weighted at the last layer
            g_loss = hinge_generator_loss(discriminator(x_hat))
            weight = adaptive_weight(rec, g_loss, last_layer)
            loss = loss + config.disc_weight * weight * g_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if discriminator is not None:  # the critic's own hinge step on real images and these reconstructions
            d_loss = hinge_discriminator_loss(discriminator(x), discriminator(x_hat.detach()))
            critic_optimizer.zero_grad(set_to_none=True)
            d_loss.backward()
            critic_optimizer.step()
        return torch.stack([rec.detach() / pixels, kl.detach(), g_loss.detach(), d_loss.detach(), weight])

    def describe(s, row):
        values = ", ".join(f"{k} {v:.4g}" for k, v in zip(AutoencoderHistory.COLUMNS, row))
        return (f"a loss became NaN or infinite at step {s - 1} ({values}). Things to try: a smaller lr or "
                "disc_lr, a smaller disc_weight, a later disc_start.")

    settings = {**asdict(config), "steps": loop.steps, "vae": model_signature(vae),
                "critic": model_signature(discriminator) if discriminator is not None else None,
                "images": list(images.shape)}
    return train_steps(step, loop=loop, kind="autoencoder", settings=settings, history=history, modules=modules,
                       optimizers=optimizers, generators={"generator": generator}, device=device, describe=describe,
                       fingerprinted={"images": images},
                       postfix=lambda rows: {"mse": f"{sum(r[0] for r in rows) / len(rows):.4f}"})


@torch.no_grad()
def encode(vae, images: torch.Tensor, batch_size: int = 512, sample: bool = False,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """The latents of ``images`` under ``vae``: the posterior means (or draws, with ``sample``)."""
    _check_vae(vae)
    images = check_tensor("images", images, ndim=4)
    if images.shape[0] < 1 or images.shape[1] != vae.in_channels or images.shape[2] % vae.downsample \
            or images.shape[3] % vae.downsample:
        raise ValueError(f"images must be shaped (n, {vae.in_channels}, H, W) with n >= 1 and H, W divisible by the "
                         f"vae's downsample={vae.downsample}, got {tuple(images.shape)}")
    batch_size = check_int("batch_size", batch_size, minimum=1)
    if not isinstance(sample, bool):
        raise ValueError(f"sample must be True or False, got {sample!r}")
    device = device_of(vae)
    generator = check_generator("generator", generator, device)
    out = []
    for chunk in images.split(batch_size):
        mean, log_var = vae.encode(chunk.to(device))
        out.append(vae.sample(mean, log_var, generator) if sample else mean)
    return torch.cat(out).to(images.device)


def decode(vae, latents: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Images, on the CPU, of latents a diffusion model made on ``scale`` times the VAE's
    latents (:func:`latent_scale`): ``vae.decode(latents / scale)``, without gradients."""
    _check_vae(vae)
    latents = check_tensor("latents", latents, ndim=4)
    if latents.shape[0] < 1 or latents.shape[1] != vae.latent_channels:
        raise ValueError(f"latents must be shaped (n, {vae.latent_channels}, h, w) with n >= 1, "
                         f"got {tuple(latents.shape)}")
    scale = check_real("scale", scale, minimum=0.0, strict_min=True)
    with torch.no_grad():
        return vae.decode(latents.to(device_of(vae)) / scale).cpu()


def latent_scale(latents: torch.Tensor) -> float:
    """1 / std of ``latents`` over everything: the factor that brings them to unit std.

    Latent diffusion trains on ``scale * z`` so that the noise N(0, I) at t = 1 and the
    data at t = 0 have the same size (Stable Diffusion's 0.18215 is this number for its
    autoencoder).
    """
    latents = check_tensor("latents", latents)
    if latents.numel() < 2:
        raise ValueError(f"latents must hold at least 2 numbers, got shape {tuple(latents.shape)}")
    std = float(latents.float().std())
    if std <= 0.0:
        raise ValueError("latents are all equal (std 0): there is no scale that brings them to unit std")
    return 1.0 / std


def gaussian_fit_kl(latents: torch.Tensor) -> float:
    r"""KL(N(m, S) || N(0, I)) for the Gaussian N(m, S) fitted to ``latents`` (n, ...): a lower bound
    on KL(q(z) || N(0, I)) for the distribution q the latents were drawn from.

    With d numbers per latent, :math:`\tfrac12 (\operatorname{tr} S + m^\top m - d - \log\det S)`.
    It bounds the true KL from below because a Gaussian has the largest entropy of all
    distributions with the same mean and covariance, while the cross-entropy to N(0, I)
    depends on the first two moments only. Needs more latents than numbers per latent.
    """
    latents = check_tensor("latents", latents)
    if latents.ndim < 2:
        raise ValueError(f"latents must be shaped (n, ...), got {tuple(latents.shape)}")
    z = latents.detach().flatten(1).double().cpu()
    n, d = z.shape
    if n <= d:
        raise ValueError(f"latents must hold more examples than numbers per latent to fit a covariance: got n = {n} "
                         f"and d = {d}")
    m = z.mean(0)
    s = torch.cov(z.T)
    sign, logdet = torch.linalg.slogdet(s)
    if float(sign) <= 0:
        raise ValueError("the latents' covariance is singular (some direction never varies): the fitted Gaussian "
                         "has no density and its KL to N(0, I) is infinite")
    return float(0.5 * (torch.trace(s) + m @ m - d - logdet))
