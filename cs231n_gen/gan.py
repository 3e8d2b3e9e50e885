r"""Generative adversarial networks: the losses, the optimal discriminator, a training loop.

The game (Goodfellow et al. 2014), with D(x) = sigmoid(l(x)) and l the discriminator's
logit:

.. math::  \min_G \max_D V(G, D), \qquad
           V(G, D) = E_{x \sim p_{data}}[\log D(x)] + E_{z \sim p(z)}[\log(1 - D(G(z)))].

Everything here works on logits, where the logs are stable:
``log D = -softplus(-l)`` and ``log(1 - D) = -softplus(l)``.

- The discriminator ascends V, i.e. minimises the binary cross-entropy
  :func:`discriminator_loss` = -V (real labelled 1, fake labelled 0).
- The generator descends V: :func:`minimax_generator_loss` = E[log(1 - D(G(z)))].
  Its gradient with respect to the fake logit is -D(G(z)), which vanishes exactly when
  D confidently rejects the fakes, as it does at the start of training (saturation).
- The fix from the same paper: :func:`nonsaturating_generator_loss` = -E[log D(G(z))],
  whose gradient -(1 - D(G(z))) is largest exactly then. Same fixed point, better
  gradients.
- The hinge losses (:func:`hinge_discriminator_loss`, :func:`hinge_generator_loss`)
  take logits of any shape, such as a patch discriminator's map; the autoencoder of
  latent diffusion uses them (:mod:`cs231n_gen.autoencoding`).
- For a fixed generator the best discriminator is
  :func:`optimal_discriminator` D*(x) = p_data / (p_data + p_G), and then
  V(G, D*) = -log 4 + 2 JSD(p_data || p_G) (:func:`optimal_value`): minimising over G
  minimises the Jensen-Shannon divergence, at p_G = p_data where V = -log 4.

:func:`train_gan` is the alternating loop (``d_steps`` discriminator ascents per
generator descent) with the plumbing of :func:`cs231n_gen.train.fit`: device, seeded
randomness, progress bar, a NaN guard, atomic checkpoints with exact resume, plus
snapshots of the generator (and of D's decision surface on 2D data) for widgets.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from ._validate import check_density, check_device, check_generator, check_int, check_module, check_real, check_tensor
from .engine import (
    Loop,
    RunRecord,
    TrainingDivergedError,
    batch_source,
    data_signature,
    lr_factor,
    model_signature,
    prepare,
    train_steps,
)
from .runtime import device_of

GENERATOR_LOSSES = ("nonsaturating", "minimax")
LOG4 = math.log(4.0)


# ----------------------------------------------------------------------------- losses
def _logits(name: str, value) -> torch.Tensor:
    value = check_tensor(name, value)
    if value.ndim == 2 and value.shape[1] == 1:
        value = value[:, 0]
    if value.ndim != 1 or value.shape[0] == 0:
        raise ValueError(f"{name} must be logits of shape (n,) or (n, 1), got {tuple(value.shape)}")
    return value


def _d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def _g_loss(fake: torch.Tensor, kind: str) -> torch.Tensor:
    return F.softplus(-fake).mean() if kind == "nonsaturating" else -F.softplus(fake).mean()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-V: -E[log D(x)] - E[log(1 - D(G(z)))] (binary cross-entropy, real = 1, fake = 0)."""
    return _d_loss(_logits("real_logits", real_logits), _logits("fake_logits", fake_logits))


def value(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The game's value V = E[log D(x)] + E[log(1 - D(G(z)))] (<= 0; -log 4 at D = 1/2)."""
    return -discriminator_loss(real_logits, fake_logits)


def minimax_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """E[log(1 - D(G(z)))], the generator's part of V (descend it). Saturates when D(G(z)) -> 0."""
    return _g_loss(_logits("fake_logits", fake_logits), "minimax")


def nonsaturating_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """-E[log D(G(z))]: same optimum as the minimax loss, strong gradients when D(G(z)) -> 0."""
    return _g_loss(_logits("fake_logits", fake_logits), "nonsaturating")


def generator_loss(fake_logits: torch.Tensor, kind: str = "nonsaturating") -> torch.Tensor:
    """The generator loss named ``kind`` ("nonsaturating" or "minimax")."""
    if kind == "nonsaturating":
        return nonsaturating_generator_loss(fake_logits)
    if kind == "minimax":
        return minimax_generator_loss(fake_logits)
    raise ValueError(f"kind must be one of {GENERATOR_LOSSES}, got {kind!r}")


def _patch_logits(name: str, value) -> torch.Tensor:
    value = check_tensor(name, value)
    if value.ndim < 1 or value.shape[0] == 0:
        raise ValueError(f"{name} must be logits shaped (n,) or (n, ...) per patch with n >= 1, "
                         f"got {tuple(value.shape)}")
    return value


def hinge_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """E[max(0, 1 - l(x))] + E[max(0, 1 + l(G(z)))]: D stops pushing once a logit is past the margin.

    Logits of any shape (one per image, or a patch discriminator's map); the means run
    over every logit.
    """
    real, fake = _patch_logits("real_logits", real_logits), _patch_logits("fake_logits", fake_logits)
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def hinge_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """-E[l(G(z))]: the generator raises the critic's score of its outputs (no margin, no saturation)."""
    return -_patch_logits("fake_logits", fake_logits).mean()


# ------------------------------------------------------------ the optimal discriminator
def optimal_discriminator(log_p_data: torch.Tensor, log_p_model: torch.Tensor) -> torch.Tensor:
    """D*(x) = p_data(x) / (p_data(x) + p_G(x)), from the two log densities at the same x.

    Computed as sigmoid(log p_data - log p_G), which is exact and stable far in the
    tails. Where both densities are 0 (both logs -inf) D* is undefined; 1/2 is returned.
    """
    a = check_tensor("log_p_data", log_p_data, finite=False)
    b = check_tensor("log_p_model", log_p_model, finite=False)
    if a.shape != b.shape:
        raise ValueError(f"log_p_model must have the shape of log_p_data {tuple(a.shape)}, got {tuple(b.shape)}")
    for name, v in (("log_p_data", a), ("log_p_model", b)):
        if bool(torch.isnan(v).any()) or bool((v == float("inf")).any()):
            raise ValueError(f"{name} must be finite log densities (or -inf for zero density), got NaN or +inf")
    both_zero = torch.isinf(a) & torch.isinf(b)
    d = torch.sigmoid(torch.where(both_zero, torch.zeros_like(a), a - b))
    return d


@torch.no_grad()
def js_divergence(p, q, n: int = 20000, generator: torch.Generator | None = None) -> float:
    r"""Monte-Carlo Jensen-Shannon divergence (in nats, between 0 and log 2).

    JSD(p || q) = 1/2 E_p[log(2p / (p + q))] + 1/2 E_q[log(2q / (p + q))], with both
    expectations estimated from ``n`` samples. ``p`` and ``q`` need ``.sample`` and
    ``.log_prob`` (a :class:`~cs231n_gen.data.GaussianMixture`, a
    :class:`~cs231n_gen.nn.GaussianGenerator`).
    """
    check_density("p", p)
    check_density("q", q)
    n = check_int("n", n, minimum=2)
    check_generator("generator", generator)

    def half(a, b):
        x = a.sample(n, generator=generator)
        la, lb = a.log_prob(x), b.log_prob(x)
        return (math.log(2.0) + la - torch.logaddexp(la, lb)).mean()

    return max(0.0, float(0.5 * half(p, q) + 0.5 * half(q, p)))  # the estimate can dip below 0


def optimal_value(p_data, p_model, n: int = 20000, generator: torch.Generator | None = None) -> float:
    """V(G, D*) = -log 4 + 2 JSD(p_data || p_G): the value when D is the best it can be."""
    check_density("p_data", p_data)
    check_density("p_model", p_model)
    return -LOG4 + 2.0 * js_divergence(p_data, p_model, n=n, generator=generator)


# ------------------------------------------------------------------------- sampling
def _z_dim(generator_net) -> int:
    check_module("generator_net", generator_net)
    z_dim = getattr(generator_net, "z_dim", None)
    if not isinstance(z_dim, int) or z_dim < 1:
        raise ValueError(f"generator_net must have an integer attribute z_dim >= 1, got {z_dim!r}")
    return z_dim


def sample_latents(generator_net, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """z ~ N(0, I) of shape (n, generator_net.z_dim)."""
    n = check_int("n", n, minimum=1)
    z_dim = _z_dim(generator_net)
    device = check_device("device", device) or device_of(generator_net)
    generator = check_generator("generator", generator, device)
    return torch.randn(n, z_dim, generator=generator, device=device)


@torch.no_grad()
def sample(generator_net, n: int, generator: torch.Generator | None = None, batch_size: int = 4096) -> torch.Tensor:
    """x = G(z) for n fresh latents, in eval mode, in batches."""
    n = check_int("n", n, minimum=1)
    _z_dim(generator_net)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    was_training = generator_net.training
    generator_net.eval()
    out = [generator_net(sample_latents(generator_net, min(batch_size, n - i), generator))
           for i in range(0, n, batch_size)]
    generator_net.train(was_training)
    return torch.cat(out)


# --------------------------------------------------------------------- training loop
@dataclass
class Snapshot:
    """The game at one step: G(z) for fixed latents and, on 2D data, D on a grid."""

    step: int
    samples: torch.Tensor
    decision: torch.Tensor | None = None  # D(x) on the grid, shape (res, res), rows = y


@dataclass
class GANHistory(RunRecord):
    """What happened during :func:`train_gan` (one entry per logged step for the curves).

    ``value`` is V on each discriminator batch (= -d_loss); ``d_real`` and ``d_fake``
    are the mean D(x) on real and generated batches; ``g_grad`` is the norm of the
    generator's gradient (all parameters) at that step; ``snapshots`` holds
    :class:`Snapshot` objects every ``snapshot_every`` steps (and at step 0).
    ``cached``: loaded from the cache (``seconds`` and ``steps_run`` are the cached run's);
    ``shipped``: it is the course's shipped trained model (:mod:`cs231n_gen.pretrained`).
    """

    step: list = field(default_factory=list)
    d_loss: list = field(default_factory=list)
    g_loss: list = field(default_factory=list)
    value: list = field(default_factory=list)
    d_real: list = field(default_factory=list)
    d_fake: list = field(default_factory=list)
    g_grad: list = field(default_factory=list)
    snapshots: list = field(default_factory=list)
    grid: tuple | None = None  # (lim, res) of the decision surfaces
    COLUMNS = ("step", "d_loss", "g_loss", "value", "d_real", "d_fake", "g_grad")

    @property
    def steps(self) -> int:
        return self.step[-1] if self.step else 0


def decision_grid(lim: float, res: int, device=None) -> torch.Tensor:
    """The (res * res, 2) points of a square grid over [-lim, lim]^2, row-major in y."""
    lim = check_real("lim", lim, minimum=0.0, strict_min=True)
    res = check_int("res", res, minimum=2)
    ticks = torch.linspace(-lim, lim, res, device=check_device("device", device))
    yy, xx = torch.meshgrid(ticks, ticks, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)


@dataclass(frozen=True)
class GANSettings:
    """The optimisation settings of :func:`train_gan`, validated once (see its arguments)."""

    batch_size: int = 256
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple = (0.5, 0.999)
    lr_schedule: str = "constant"
    d_steps: int = 1
    d_warmup: int = 0
    train_generator: bool = True
    g_loss: str = "nonsaturating"
    r1_gamma: float = 0.0
    seed: int = 0

    def __post_init__(self):
        fix = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen dataclass)
        fix("batch_size", check_int("batch_size", self.batch_size, minimum=2))
        fix("lr_g", check_real("lr_g", self.lr_g, minimum=0.0, strict_min=True))
        fix("lr_d", check_real("lr_d", self.lr_d, minimum=0.0, strict_min=True))
        if not (isinstance(self.betas, (tuple, list)) and len(self.betas) == 2):
            raise ValueError(f"betas must be a pair (beta1, beta2), got {self.betas!r}")
        fix("betas", tuple(check_real(f"betas[{i}]", b, minimum=0.0, maximum=0.9999)
                           for i, b in enumerate(self.betas)))
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        fix("d_steps", check_int("d_steps", self.d_steps, minimum=1))
        fix("d_warmup", check_int("d_warmup", self.d_warmup, minimum=0))
        if not isinstance(self.train_generator, bool):
            raise ValueError(f"train_generator must be True or False, got {self.train_generator!r}")
        if self.g_loss not in GENERATOR_LOSSES:
            raise ValueError(f"g_loss must be one of {GENERATOR_LOSSES}, got {self.g_loss!r}")
        fix("r1_gamma", check_real("r1_gamma", self.r1_gamma, minimum=0.0))
        fix("seed", check_int("seed", self.seed, minimum=0))


def train_gan(
    generator_net: torch.nn.Module,
    discriminator_net: torch.nn.Module,
    data,
    *,
    steps: int,
    batch_size: int = 256,
    lr_g: float = 2e-4,
    lr_d: float = 2e-4,
    betas: tuple = (0.5, 0.999),
    lr_schedule: str = "constant",
    d_steps: int = 1,
    d_warmup: int = 0,
    train_generator: bool = True,
    g_loss: str = "nonsaturating",
    r1_gamma: float = 0.0,
    seed: int = 0,
    device=None,
    snapshot_every: int | None = None,
    snapshot_n: int = 1000,
    snapshot_grid: tuple | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = True,
    progress: bool = True,
    log_every: int = 50,
    desc: str = "GAN",
    cache: bool | None = None,
    shipped: str | None = None,
) -> GANHistory:
    """Alternating gradient updates: ``d_steps`` D ascents on V, then one G step.

    Args:
        generator_net: maps z of shape (n, generator_net.z_dim) to samples.
        discriminator_net: maps samples to logits of shape (n,) or (n, 1).
        data: a tensor of examples, an object with ``.sample(n, generator=...)``, or a
            callable ``draw(n, generator)`` (as for :func:`~cs231n_gen.train.fit`).
        steps: generator steps in all (including those in a resumed checkpoint).
        lr_g, lr_d, betas: Adam settings of each player (DCGAN's 2e-4, (0.5, 0.999)).
        lr_schedule: "constant" or "cosine" (both learning rates decay to 0 by the last
            step, which lets the samples settle onto the modes at the end).
        d_steps: discriminator steps per generator step (k in Goodfellow et al.).
        d_warmup: discriminator-only steps before the first generator step: D starts
            the game already able to tell the initial G's samples from data (the
            situation in which the minimax loss saturates).
        train_generator: False freezes G and trains only D (against a fixed p_G, e.g. to
            compare D with the exact optimum); the history still logs both losses.
        g_loss: "nonsaturating" (-log D(G(z))) or "minimax" (log(1 - D(G(z)))).
        r1_gamma: weight of the R1 penalty (gamma / 2) E||grad_x l(x)||^2 on real data
            (Mescheder et al. 2018), which keeps D from sharpening without bound around
            the data and damps the oscillations of the game; 0 turns it off.
        snapshot_every: keep G(z) for ``snapshot_n`` fixed latents every this many
            steps (and at step 0); with ``snapshot_grid=(lim, res)`` on 2D data also D
            on a res x res grid over [-lim, lim]^2.
        checkpoint, checkpoint_every, resume: as in :func:`~cs231n_gen.train.fit`.
        log_every: steps between host syncs (progress, NaN check, history entries).
        cache: reuse a finished run with the same inputs from the cache, as in
            :func:`~cs231n_gen.train.fit` (None: on in a lecture, off otherwise).
        shipped: the name of the course's trained model this call makes, as in
            :func:`~cs231n_gen.train.fit`.

    Returns:
        A :class:`GANHistory`. Raises :class:`~cs231n_gen.train.TrainingDivergedError`
        when a loss turns NaN or infinite.
    """
    for name, net in (("generator_net", generator_net), ("discriminator_net", discriminator_net)):
        if not isinstance(net, torch.nn.Module):
            raise ValueError(f"{name} must be a torch.nn.Module, got {type(net).__name__}")
    z_dim = _z_dim(generator_net)
    config = GANSettings(batch_size=batch_size, lr_g=lr_g, lr_d=lr_d, betas=betas, lr_schedule=lr_schedule,
                         d_steps=d_steps, d_warmup=d_warmup, train_generator=train_generator, g_loss=g_loss,
                         r1_gamma=r1_gamma, seed=seed)
    loop = Loop(steps=steps, log_every=log_every, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                resume=resume, progress=progress, desc=desc, cache=cache, shipped=shipped)
    if snapshot_every is not None:
        snapshot_every = check_int("snapshot_every", snapshot_every, minimum=1)
    snapshot_n = check_int("snapshot_n", snapshot_n, minimum=1)
    if snapshot_grid is not None:
        if not (isinstance(snapshot_grid, (tuple, list)) and len(snapshot_grid) == 2):
            raise ValueError(f"snapshot_grid must be (lim, res), got {snapshot_grid!r}")
        snapshot_grid = (check_real("snapshot_grid[0] (lim)", snapshot_grid[0], minimum=0.0, strict_min=True),
                         check_int("snapshot_grid[1] (res)", snapshot_grid[1], minimum=2))
    device, rng = prepare(device, config.seed)

    G, D = generator_net.to(device), discriminator_net.to(device)
    draw = batch_source(data, device)
    opt_g = torch.optim.Adam(G.parameters(), lr=config.lr_g, betas=config.betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=config.lr_d, betas=config.betas)
    snap_rng = torch.Generator(device=device)
    snap_rng.manual_seed(config.seed + 1)
    z_fixed = torch.randn(snapshot_n, z_dim, generator=snap_rng, device=device)
    grid = decision_grid(*snapshot_grid, device=device) if snapshot_grid is not None else None
    history = GANHistory(grid=snapshot_grid)
    batch = config.batch_size

    @torch.no_grad()
    def snapshot(step):
        G.eval()
        D.eval()
        samples = G(z_fixed).detach().cpu()
        decision = None
        if grid is not None and samples.ndim == 2 and samples.shape[1] == 2:
            res = snapshot_grid[1]
            decision = torch.sigmoid(D(grid).reshape(-1)).reshape(res, res).cpu()
        history.snapshots.append(Snapshot(step, samples, decision))
        G.train()
        D.train()

    def d_step():
        real = draw(batch, rng)
        with torch.no_grad():
            fake = G(torch.randn(batch, z_dim, generator=rng, device=device))
        if config.r1_gamma:
            real.requires_grad_(True)
        try:
            real_logits = D(real).reshape(-1)
        except ValueError as err:
            raise ValueError(f"discriminator_net rejected a batch drawn from data: {err}") from err
        fake_logits = judge_fakes(fake)
        d_loss = _d_loss(real_logits, fake_logits)  # unchecked: no host sync per step
        total = d_loss
        if config.r1_gamma:
            (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
            total = d_loss + 0.5 * config.r1_gamma * grad.pow(2).reshape(grad.shape[0], -1).sum(1).mean()
        opt_d.zero_grad(set_to_none=True)
        total.backward()
        opt_d.step()
        return d_loss, real_logits, fake_logits

    def judge_fakes(fake):
        """D's logits on G's samples; samples D cannot take (NaN, inf) mean G has diverged."""
        try:
            return D(fake).reshape(-1)
        except ValueError as err:
            raise TrainingDivergedError(f"the generator's samples became non-finite ({err}). Things to try: "
                                        "smaller learning rates, r1_gamma > 0, the non-saturating loss.") from err

    def step(i):
        factor = lr_factor(config.lr_schedule, i, loop.steps, 0)
        for opt, base in ((opt_g, config.lr_g), (opt_d, config.lr_d)):
            for group in opt.param_groups:
                group["lr"] = base * factor
        # Discriminator: ascend V (descend the cross-entropy) on fresh real and fake batches.
        D.requires_grad_(True)
        for _ in range(config.d_steps + (config.d_warmup if i == 0 else 0)):
            d_loss, real_logits, fake_logits = d_step()
        # Generator: descend its loss through a frozen D.
        D.requires_grad_(False)
        logits = judge_fakes(G(torch.randn(batch, z_dim, generator=rng, device=device)))
        loss_g = _g_loss(logits, config.g_loss)
        if config.train_generator:
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
        # Snapshots for the widgets; a row of metrics on the steps that are logged.
        done = i + 1
        if snapshot_every is not None and done % snapshot_every == 0:
            snapshot(done)
        if done % loop.log_every and done != loop.steps:
            return None
        with torch.no_grad():
            grads = [p.grad.norm() for p in G.parameters() if p.grad is not None]
            g_grad = torch.linalg.vector_norm(torch.stack(grads)) if grads else torch.zeros((), device=device)
            return torch.stack([d_loss.detach(), loss_g.detach(), torch.sigmoid(real_logits).mean(),
                                torch.sigmoid(fake_logits).mean(), g_grad])

    def record(steps_done, rows):
        for s, (dl, gl, dr, df, gg) in zip(steps_done, rows):
            history.step.append(s)
            history.d_loss.append(dl)
            history.g_loss.append(gl)
            history.value.append(-dl)
            history.d_real.append(dr)
            history.d_fake.append(df)
            history.g_grad.append(gg)

    def describe(s, row):
        return (f"a GAN loss became non-finite by step {s} (D loss {row[0]}, G loss {row[1]}, |grad G| {row[4]}). "
                "Things to try: smaller learning rates, the non-saturating loss, r1_gamma > 0, and checking the "
                "data for NaN.")

    def get_history():
        return {"lists": history.columns(),
                "snapshots": [{"step": s.step, "samples": s.samples, "decision": s.decision}
                              for s in history.snapshots]}

    def set_history(saved):
        history.load_columns(saved["lists"])
        history.snapshots = [Snapshot(s["step"], s["samples"], s["decision"]) for s in saved["snapshots"]]

    def on_start(start):
        if snapshot_every is not None and start == 0 and not history.snapshots:
            snapshot(0)

    settings = {**asdict(config), "steps": loop.steps, "generator_net": model_signature(G),
                "discriminator_net": model_signature(D), "data": data_signature(data),
                "snapshots": [snapshot_every, snapshot_n, snapshot_grid]}
    try:
        return train_steps(step, loop=loop, kind="gan", settings=settings, history=history, modules={"G": G, "D": D},
                           optimizers={"opt_g": opt_g, "opt_d": opt_d}, generators={"rng": rng}, device=device,
                           describe=describe, record=record, fingerprinted={"data": data},
                           history_state=(get_history, set_history), on_start=on_start,
                           postfix=lambda rows: {"V": f"{-rows[-1][0]:.3f}", "D_real": f"{rows[-1][2]:.2f}",
                                                 "D_fake": f"{rows[-1][3]:.2f}"})
    finally:
        D.requires_grad_(True)  # the generator's phase froze it
