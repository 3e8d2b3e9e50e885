# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Generative adversarial networks
#
# *CS231n Lecture 14, "Generative Models 2": GANs.*
#
# Autoregressive models maximise the likelihood of the data; VAEs maximise a lower bound
# on it. **Generative adversarial networks give up on modelling p(x) at all** and keep only
# what we usually want from a generative model: samples.
#
# - Draw a latent $z \sim p(z) = \mathcal N(0, I)$ and map it through a **generator**
#   network: $x = G(z)$. The samples follow the *generator distribution* $p_G$; we want
#   $p_G = p_{data}$.
# - We cannot compare $p_G$ with $p_{data}$ directly (neither density is available), so we
#   train a second network, the **discriminator** $D(x) \in (0, 1)$, to tell real from
#   fake, and train $G$ to fool it.
#
# This notebook plays the game on 2D data, where we can see both players, on 1D data,
# where we can compute the best possible discriminator exactly, and on small images of
# digits. Cells that make a claim check it with an `assert`.
#
# **How long:** about 2.5 minutes in full mode on a 2-core laptop CPU, which trains every
# model here from scratch. To see the results first, start the lecture with
# `cs231n_gen.start_lecture(seed=0, pretrained=True)`: the course's trained models, which
# ship with the package, then stand in for the long trainings (the lecture says so where
# each one appears), and it takes about 20 seconds, as in quick mode (`CS231N_GEN_QUICK=1`).
# Every model trained here also goes into a cache, so a rerun after a kernel restart
# loads it instead of training it again.

# %% tags=["setup"]
# Setup: install the course library when it is missing (Colab), then start the lecture.
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("cs231n_gen") is None:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q",
                           "cs231n-gen @ git+https://github.com/cs231n-gen/cs231n-gen"])

import cs231n_gen

device, QUICK = cs231n_gen.start_lecture(seed=0)

# %%
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from cs231n_gen import budget, gan, metrics, pretrained, seed_everything, viz, widgets
from cs231n_gen.data import GaussianMixture, grid_gaussians, ring_gaussians
from cs231n_gen.data.images import digits
from cs231n_gen.digit_judge import DigitJudge
from cs231n_gen.nn import GaussianGenerator, MLPDiscriminator, MLPGenerator
from cs231n_gen.nn.dcgan import AdaIN, DCDiscriminator, DCGenerator, adain

# %% [markdown]
# ## 1. An implicit density: samples without p(x)
#
# Our data: 8 narrow Gaussians on a ring. The generator is an MLP from a 16-d latent to
# the plane. Before training it maps the Gaussian blob of latents to another blob. Note
# what we *can* do with $G$ (draw as many samples as we like) and what we cannot
# (evaluate $p_G(x)$ at a point: that would need to invert and differentiate $G$).

# %%
ring = ring_gaussians(8, radius=2.0, std=0.1)
MODE_STD = float(ring.stds[0])
x_ring = ring.sample(2500, generator=torch.Generator().manual_seed(1))

G0 = MLPGenerator(z_dim=16, out_dim=2, hidden=128, depth=3).to(device)
with torch.no_grad():
    x_fake = G0(torch.randn(2500, 16, device=device))
viz.plot_samples({"data (p_data)": x_ring, "G(z) before training (p_G)": x_fake},
                 colors=[viz.DATA, viz.MODEL])
plt.show()

# %% [markdown]
# Drawing samples is all $G$ offers. Its density would come from the change-of-variables
# formula, $p_G(x) = p(z)\,/\,|\det \partial G / \partial z|$, which needs $G$ to be
# invertible with a square Jacobian. Ours maps 16 numbers to 2: the Jacobian is 2 x 16,
# it has no determinant, and each point $G$ draws is reached from a whole 14-dimensional
# set of latents, whose probability we would have to integrate. Below: the Jacobian's
# shape, and a second latent, found by gradient descent from a random start, that lands
# on the same point as the first.

# %%
gen_z = torch.Generator().manual_seed(3)
z_a = torch.randn(1, 16, generator=gen_z).to(device)
jacobian = torch.func.jacrev(lambda z: G0(z[None])[0])(z_a[0])
target = G0(z_a).detach()
z_b = torch.randn(1, 16, generator=gen_z).to(device).requires_grad_()
search = torch.optim.Adam([z_b], lr=0.05)
for _ in range(300):  # move z_b until G(z_b) = G(z_a)
    search.zero_grad()
    (G0(z_b) - target).square().sum().backward()
    search.step()
landed = float((G0(z_b) - target).norm())
apart = float((z_b - z_a).norm())
print(f"dG/dz at a latent: {tuple(jacobian.shape)} (2 outputs, 16 inputs)")
print(f"two latents {apart:.2f} apart (a typical latent has norm {16 ** 0.5:.0f}) land {landed:.1e} apart")
assert tuple(jacobian.shape) == (2, 16)
assert landed < 1e-4 and apart > 1.0  # one output, many latents: no formula for p_G(x)

# %% [markdown]
# ## 2. The minimax game
#
# $$\min_G \max_D \; V(G, D) = E_{x \sim p_{data}}[\log D(x)] + E_{z \sim p(z)}[\log(1 - D(G(z)))]$$
#
# $D$ wants $D(x) \to 1$ on real data and $D(G(z)) \to 0$ on fakes; $G$ wants the
# opposite for its fakes. Training alternates gradient steps (the slide's loop):
#
# ```
# while True:
#     D = D + alpha_D * dV/dD      # k times: ascend V
#     G = G - alpha_G * dV/dG      # once: descend V
# ```
#
# In code, D is a network that outputs a **logit** $\ell(x)$ with $D = \sigma(\ell)$, and the
# logs are computed stably as $\log D = -\mathrm{softplus}(-\ell)$,
# $\log(1 - D) = -\mathrm{softplus}(\ell)$. Ascending V is then exactly minimising the
# binary cross-entropy with labels real = 1, fake = 0. Here is one round of the loop,
# written out once; after that `gan.train_gan` runs it for us, with a progress bar,
# snapshots and a NaN guard.

# %%
D0 = MLPDiscriminator(in_dim=2, hidden=128, depth=3).to(device)
opt_g = torch.optim.Adam(G0.parameters(), lr=1e-3, betas=(0.5, 0.9))
opt_d = torch.optim.Adam(D0.parameters(), lr=1e-3, betas=(0.5, 0.9))

x_real = ring.to(device).sample(256)
z = torch.randn(256, 16, device=device)
# D ascends V: minimise -V = BCE(real -> 1, fake -> 0); G's output is detached.
d_loss = gan.discriminator_loss(D0(x_real), D0(G0(z).detach()))
opt_d.zero_grad()
d_loss.backward()
opt_d.step()
# G descends its loss through D (here the non-saturating loss of section 4).
g_loss = gan.nonsaturating_generator_loss(D0(G0(torch.randn(256, 16, device=device))))
opt_g.zero_grad()
g_loss.backward()
opt_g.step()
print(f"V at the start of the round (before D's step) = {-d_loss.item():.3f}  "
      f"(D at chance everywhere would give -log 4 = {-math.log(4):.3f})")

# %% [markdown]
# Now the real run. `snapshot_every` keeps the generator's samples for 1000 fixed latents
# and D's decision surface on a grid, so we can replay the game. The settings (Adam
# 1e-3, betas (0.5, 0.9), and an **R1 penalty** that keeps D smooth around the data;
# section 6 explains why) are a configuration that works here; section 6 shows one that
# does not.

# %%
RING_STEPS = 3000
GOOD = dict(lr_g=1e-3, lr_d=1e-3, betas=(0.5, 0.9), r1_gamma=0.1, batch_size=256)

seed_everything(0)
G_ring = MLPGenerator(16, 2, hidden=128, depth=3)
D_ring = MLPDiscriminator(2, hidden=128, depth=3)
hist_ring = gan.train_gan(G_ring, D_ring, ring, steps=RING_STEPS, **GOOD, device=device,
                          snapshot_every=RING_STEPS // 30, snapshot_grid=(3.5, 90), desc="GAN on the ring",
                          shipped="gan_ring")
print(f"{hist_ring.steps_per_second:.0f} generator steps / s")

# %% [markdown]
# **Replay the game.** The background is $D(x)$: blue where D says "real", red where it
# says "fake". Watch the orange samples slide down D's gradient towards the blue, D
# redraw its boundary, and the colours fade towards white ($D = 1/2$) as the samples
# land on the modes. Press play or drag the slider.

# %%
widgets.gan_training_player(hist_ring, reference=x_ring[:1500])

# %%
samples_ring = gan.sample(G_ring, 2500, generator=torch.Generator(device=device).manual_seed(2))
cov_ring = metrics.mode_coverage(samples_ring, ring.means, MODE_STD)
print(f"modes covered: {cov_ring['covered']}/8, high-quality samples: {cov_ring['high_quality']:.1%}")
print("samples per mode:", cov_ring["counts"])
assert cov_ring["covered"] == 8 and cov_ring["high_quality"] >= 0.8, cov_ring
pretrained.record("gan_ring", modes_covered=cov_ring["covered"], on_a_mode=cov_ring["high_quality"])

# %% [markdown]
# ## 3. "No loss curve to look at"
#
# We are not minimising any single loss. $V$ is what D maximises and G minimises, so when
# both improve it need not move at all. Below: $V$ over training (with $-\log 4$, its value
# when D is at chance) next to two real measures of quality computed on the snapshots,
# W2 to the data (lower is better) and the fraction of samples on a mode.

# %%
ref = ring.sample(1000, generator=torch.Generator().manual_seed(3))
snap_steps = [s.step for s in hist_ring.snapshots]
snap_w2 = [metrics.wasserstein2(s.samples, ref) for s in hist_ring.snapshots]
snap_hq = [metrics.mode_coverage(s.samples, ring.means, MODE_STD)["high_quality"] for s in hist_ring.snapshots]

fig, axes = plt.subplots(1, 3, figsize=(14, 3.3))
axes[0].plot(hist_ring.step, hist_ring.value, color=viz.MODEL, lw=1)
axes[0].axhline(-math.log(4), color="k", ls="--", lw=0.8, label="-log 4")
axes[0].set(title="V(G, D) on each batch", xlabel="step")
axes[0].legend()
axes[1].plot(hist_ring.step, hist_ring.d_real, label="D(x), real")
axes[1].plot(hist_ring.step, hist_ring.d_fake, label="D(G(z)), fake")
axes[1].set(title="what D says", xlabel="step", ylim=(0, 1))
axes[1].legend()
axes[2].plot(snap_steps, snap_w2, "o-", color=viz.DATA, ms=3, label="W2 to data")
ax2 = axes[2].twinx()
ax2.plot(snap_steps, snap_hq, "s-", color=viz.ORACLE, ms=3, label="on-mode fraction")
axes[2].set(title="quality: W2 (blue, lower = better), on-mode (green)",
            xlabel="step", ylabel="W2")
ax2.set_ylabel("on-mode fraction")
fig.tight_layout()
plt.show()

flat_from = next(st for st, v in zip(hist_ring.step, hist_ring.value) if abs(v + math.log(4)) < 0.02)
v_after = [v for st, v in zip(hist_ring.step, hist_ring.value) if st >= flat_from]
hq_after = [q for st, q in zip(snap_steps, snap_hq) if st >= flat_from]
print(f"from step {flat_from} on, V stays in [{min(v_after):.3f}, {max(v_after):.3f}] "
      f"while the on-mode fraction moves between {min(hq_after):.2f} and {max(hq_after):.2f}")
assert max(v_after) - min(v_after) < 0.05 < max(hq_after) - min(hq_after)
assert snap_w2[-1] < 0.5 * snap_w2[0], "quality must improve over training"

# %% [markdown]
# Early in training V and the samples both change, so V can pass for a loss curve. It is
# not one: once the game reaches $V \approx -\log 4$ (both players matched), V is flat
# while the on-mode fraction keeps moving, up as samples settle and sometimes down as
# the game wobbles. The value of the game tells you who is winning *right now*, not how
# good the samples are. That is why GAN papers report sample metrics, and why
# this course always measures quality with a separate function.
#
# ## 4. Saturation at the start of training
#
# Early on, G is bad and D easily rejects its samples: $D(G(z)) \approx 0$. Look at the
# generator's gradient as a function of D's logit $\ell$ on a fake:
#
# - minimax loss $\log(1 - \sigma(\ell))$: derivative $-\sigma(\ell)$, which **vanishes**
#   as $\ell \to -\infty$, exactly when G most needs a signal;
# - non-saturating loss $-\log \sigma(\ell)$: derivative $-(1 - \sigma(\ell))$, which is
#   **largest** there. Both push $D(G(z))$ up; the fixed point is the same.

# %%
logit = torch.linspace(-8, 8, 401, requires_grad=True)
curves = {}
for kind in ("minimax", "nonsaturating"):
    (grad,) = torch.autograd.grad(gan.generator_loss(logit, kind) * logit.numel(), logit)
    curves[kind] = grad.detach()
d_of_logit = torch.sigmoid(logit.detach())
fig, ax = plt.subplots(figsize=(6, 3.3))
ax.plot(d_of_logit, curves["minimax"].abs(), label="minimax: |d/dl log(1 - D)| = D")
ax.plot(d_of_logit, curves["nonsaturating"].abs(), label="non-saturating: |d/dl -log D| = 1 - D")
ax.set(xlabel="D(G(z))", ylabel="|gradient| w.r.t. D's logit",
       title="Where G starts (D(G(z)) ~ 0), minimax gives nothing")
ax.legend(fontsize=8)
plt.show()
assert curves["minimax"][0].abs() < 1e-3 < 0.99 < curves["nonsaturating"][0].abs()

# %% [markdown]
# Now the real thing. We let D train alone for 300 steps first (`d_warmup`), so it starts
# the game confidently rejecting G's samples, then train G with each loss. Plotted: the
# norm of G's gradient (log scale) and what D says about the fakes.

# %%
SAT_STEPS = 1500
SHIPPED_AS = {"minimax": "gan_ring_minimax", "nonsaturating": "gan_ring_nonsaturating"}
sat = {}
for kind in ("minimax", "nonsaturating"):
    seed_everything(0)
    G_s, D_s = MLPGenerator(16, 2, 128, 3), MLPDiscriminator(2, 128, 3)
    h = gan.train_gan(G_s, D_s, ring, steps=SAT_STEPS, g_loss=kind, d_warmup=300, lr_g=1e-3, lr_d=1e-3,
                      betas=(0.5, 0.9), log_every=10, device=device, desc=kind, shipped=SHIPPED_AS[kind])
    s = gan.sample(G_s, 2500, generator=torch.Generator(device=device).manual_seed(2))
    sat[kind] = (h, metrics.mode_coverage(s, ring.means, MODE_STD))

fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
for kind, (h, _) in sat.items():
    axes[0].semilogy(h.step, h.g_grad, label=kind)
    axes[1].plot(h.step, h.d_fake, label=kind)
axes[0].set(title="|grad of G's loss|", xlabel="generator step (D's 300 warm-up steps all come before step 0)",
            ylabel="gradient norm")
axes[0].legend()
axes[1].set(title="D(G(z)) on fakes", xlabel="generator step", ylabel="mean D(G(z))", ylim=(0, 1.02))
axes[1].legend()
fig.tight_layout()
plt.show()

first = {k: h.g_grad[0] for k, (h, _) in sat.items()}
stuck = next((st for st, d in zip(sat["minimax"][0].step, sat["minimax"][0].d_fake) if d > 0.05), None)
print(f"first logged gradient norm: minimax {first['minimax']:.1e}, non-saturating {first['nonsaturating']:.1e}")
print(f"minimax G stays at D(G(z)) < 0.05 until step {stuck}")
for kind, (_, cov) in sat.items():
    print(f"{kind:>14}: {cov['covered']}/8 modes, {cov['high_quality']:.0%} on a mode after {SAT_STEPS} steps")
assert first["nonsaturating"] > 1e4 * first["minimax"]
h_mm = sat["minimax"][0]
rank = lambda v: torch.tensor(v).clamp_min(1e-30).log().argsort().argsort().float()  # noqa: E731
follows = float(torch.corrcoef(torch.stack([rank(h_mm.g_grad), rank(h_mm.d_fake)]))[0, 1])
print(f"minimax: rank correlation between G's gradient norm and D(G(z)) over the run: {follows:.2f}")
assert follows > 0.6  # the minimax gradient rises and falls with D(G(z)), as the first figure says
# Plain SGD moves the weights by lr x gradient. At the starting gradient, a G that does not move keeps
# D rejecting it, so the gradient stays that small: all the steps together move G's weights by this much.
sgd_move = 1e-3 * first["minimax"] * SAT_STEPS
print(f"plain SGD at lr 1e-3, at the starting gradient: G's weights move by {sgd_move:.1e} in {SAT_STEPS} steps")
assert sgd_move < 1e-6
for kind, (h, cov) in sat.items():
    pretrained.record(SHIPPED_AS[kind], first_gradient_norm=h.g_grad[0], modes_covered=cov["covered"])

# %% [markdown]
# The minimax generator starts with a gradient many orders of magnitude smaller and
# sits still while D's confidence is high. Two things in the blue curves need a word:
#
# * **The rescue is not the warm-up.** D's 300 warm-up steps all happen before
#   generator step 0; that the minimax run wakes up near step 300 too is a coincidence
#   of this run. It wakes up because Adam divides each update by the gradient's running
#   scale, so even gradients of $10^{-8}$ move G's weights by a normal step size; G's
#   samples creep, and once they leave the spot D learned to reject, $D(G(z))$ leaves 0.
# * **The jumps.** For the minimax loss, G's gradient *is* $D(G(z))$ (times the
#   gradient of D's logit; the first figure), so the two curves rise and fall together
#   (their rank correlation is printed). When G's samples land where D, trained only
#   against G's earlier samples, has never been told they are fake, D calls them real:
#   $D(G(z))$ spikes to 1 and G's gradient to its largest. D retrains on the new fakes
#   within a few dozen steps and the spike collapses: the oscillation of a game, not
#   the descent of a loss.
#
# With plain SGD, whose step is the learning rate times the gradient and nothing else,
# the minimax generator would stay stuck: at the starting gradient, all its steps
# together would move its weights by the tiny amount printed above. The non-saturating loss never has the problem,
# which is why everyone uses it.
#
# ## 5. Why this is a good objective: the optimal discriminator
#
# For a **fixed** G, the inner maximisation has a closed form. Pointwise, $D(x)$ maximises
# $p_{data}(x)\log D + p_G(x)\log(1 - D)$, whose maximum is at
#
# $$D^*_G(x) = \frac{p_{data}(x)}{p_{data}(x) + p_G(x)}.$$
#
# In 1D with a Gaussian generator we know both densities, so we can train a real
# discriminator against a frozen G and put it next to $D^*$.

# %%
data_1d = GaussianMixture(torch.tensor([[-1.5], [1.5]]), 0.4, weights=torch.tensor([0.3, 0.7]))
seed_everything(0)
G_1d = GaussianGenerator(dim=1, mean=0.0, std=1.0)
D_1d = MLPDiscriminator(in_dim=1, hidden=64, depth=2)
# A decaying learning rate lets D settle on the optimum instead of jittering around it.
gan.train_gan(G_1d, D_1d, data_1d, steps=2000, batch_size=1024, lr_d=2e-3, lr_schedule="cosine",
              train_generator=False, device=device, desc="D against a frozen G")

xs = torch.linspace(-4, 4, 401, device=device)[:, None]
with torch.no_grad():
    p_data, p_g = data_1d.to(device).log_prob(xs).exp(), G_1d.log_prob(xs).exp()
    d_learned = torch.sigmoid(D_1d(xs))
    d_star = gan.optimal_discriminator(data_1d.to(device).log_prob(xs), G_1d.log_prob(xs))
has_mass = (p_data + p_g) / 2 > 0.05
max_err = float((d_learned - d_star).abs()[has_mass].max())

fig, ax = plt.subplots(figsize=(7, 3.3))
ax.fill_between(xs[:, 0].cpu(), p_data.cpu(), alpha=0.3, color=viz.DATA, label="p_data")
ax.fill_between(xs[:, 0].cpu(), p_g.cpu(), alpha=0.3, color=viz.MODEL, label="p_G (frozen)")
ax.plot(xs[:, 0].cpu(), d_star.cpu(), "k--", lw=2, label="D* = p_data / (p_data + p_G)")
ax.plot(xs[:, 0].cpu(), d_learned.cpu(), color=viz.ORACLE, lw=1.5, label="trained D")
ax.set(xlabel="x", ylabel="density (shaded) and D(x) (lines)",
       title=f"Trained D vs the exact optimum (max gap where there is mass: {max_err:.3f})")
ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
plt.show()
assert max_err <= 0.05, max_err

# %% [markdown]
# Plug $D^*$ back in and the generator's objective becomes a divergence:
#
# $$V(G, D^*_G) = -\log 4 + 2\,\mathrm{JSD}(p_{data} \,\|\, p_G),$$
#
# the Jensen-Shannon divergence, which is $\ge 0$ and $= 0$ only at $p_G = p_{data}$.
# Check the identity on the 1D pair above, where G is far from the data: plug $D^*$
# into $V$ itself, $V = E_{x \sim p_{data}}[\log D^*(x)] + E_{x \sim p_G}[\log(1 - D^*(x))]$,
# average over samples of each side, and compare with $-\log 4 + 2\,\mathrm{JSD}$
# estimated on its own.

# %%
g_mc = torch.Generator(device=device).manual_seed(1)
N_MC = budget(full=400_000, quick=100_000)
data_dev = data_1d.to(device)


def d_star_logit(x):  # D* = sigmoid(log p_data - log p_G)
    return data_dev.log_prob(x) - G_1d.log_prob(x)


with torch.no_grad():
    x_data, x_g = data_dev.sample(N_MC, generator=g_mc), G_1d.sample(N_MC, generator=g_mc)
    v_direct = float(gan.value(d_star_logit(x_data), d_star_logit(x_g)))
jsd_1d = gan.js_divergence(data_dev, G_1d, n=N_MC, generator=g_mc)
print(f"V(G, D*) by Monte Carlo = {v_direct:.4f};  -log 4 + 2 JSD = {-math.log(4) + 2 * jsd_1d:.4f}  "
      f"(JSD = {jsd_1d:.4f} nats; -log 4 = {-math.log(4):.4f})")
assert abs(v_direct - (-math.log(4) + 2 * jsd_1d)) < 0.01  # the identity, to Monte Carlo precision
assert v_direct > -math.log(4) + 0.1  # and G is far from the data, so V is well above its minimum

# %% [markdown]
# So the best G makes the two distributions equal, and there $V = -\log 4$ and
# $D^* = 1/2$ everywhere. Check it: a learnable Gaussian G against Gaussian data, now
# training both players.

# %%
data_match = GaussianMixture(torch.tensor([[1.0]]), 0.5)
seed_everything(0)
G_m = GaussianGenerator(dim=1, mean=-1.0, std=1.0)
D_m = MLPDiscriminator(in_dim=1, hidden=64, depth=2)
h_m = gan.train_gan(G_m, D_m, data_match, steps=2000, batch_size=512, lr_g=5e-3,
                    lr_d=2e-3, device=device, desc="Gaussian G vs Gaussian data", shipped="gan_gaussian")
tail = h_m.value[-10:]
v_end = sum(tail) / len(tail)
jsd = gan.js_divergence(data_match.to(device), G_m, generator=torch.Generator(device=device).manual_seed(0))
mu_g, sigma_g = float(G_m.mu.detach()), float(G_m.sigma.detach())  # learned numbers, read without their graph
print(f"G learned mu = {mu_g:.3f} (data 1.0), sigma = {sigma_g:.3f} (data 0.5)")
print(f"V at the end = {v_end:.3f}, -log 4 = {-math.log(4):.3f};  JSD(p_data || p_G) = {jsd:.4f} nats")
print(f"V(G, D*) = -log 4 + 2 JSD = {gan.optimal_value(data_match.to(device), G_m):.3f}")
assert abs(mu_g - 1.0) < 0.1 and abs(sigma_g - 0.5) < 0.1
assert abs(v_end + math.log(4)) < 0.05 and jsd < 0.01
pretrained.record("gan_gaussian", mu=mu_g, sigma=sigma_g, value_at_end=v_end, jsd=jsd)

# %% [markdown]
# The slide's caveats matter, though: this argument assumes D can represent $D^*$ and
# is trained to optimality at every step, with infinite data.
#
# **Capacity, measured.** Go back to the frozen pair of the figure above. There $D^*$
# is high over both data modes and nearly 0 between them, where only G has mass. A
# discriminator whose logit is linear in $x$, $D(x) = \sigma(ax + b)$, is monotone, so it
# cannot be high at $-1.5$, low at $0$ and high again at $1.5$: whichever way it slopes,
# at one of those points it misses $D^*$ by at least half the dip,
# $\frac12(\min(D^*(-1.5), D^*(1.5)) - D^*(0))$. Train one against the same G:

# %%
seed_everything(0)
D_linear = torch.nn.Linear(1, 1)
gan.train_gan(G_1d, D_linear, data_1d, steps=300, batch_size=1024, lr_d=2e-2,
              lr_schedule="cosine", train_generator=False, device=device, desc="linear D against the frozen G")
probe = torch.tensor([[-1.5], [0.0], [1.5]], device=device)
with torch.no_grad():
    d_linear = torch.sigmoid(D_linear(xs))[:, 0]
    v_linear = float(gan.value(D_linear(x_data)[:, 0], D_linear(x_g)[:, 0]))
    at = gan.optimal_discriminator(data_dev.log_prob(probe), G_1d.log_prob(probe)).tolist()  # D* there
    probe_err = float((torch.sigmoid(D_linear(probe))[:, 0] - torch.tensor(at, device=device)).abs().max())
bound = (min(at[0], at[2]) - at[1]) / 2
linear_err = max(float((d_linear - d_star).abs()[has_mass].max()), probe_err)
print(f"D* at -1.5, 0, 1.5: {at[0]:.3f}, {at[1]:.3f}, {at[2]:.3f}: a monotone D misses by >= {bound:.3f}")
print(f"largest gap to D* where there is mass: linear D {linear_err:.3f}, the MLP D above {max_err:.3f}")
print(f"V(G, D): {v_linear:.3f} with the linear D, {v_direct:.3f} with D*; a constant D = 1/2 gives "
      f"-log 4 = {-math.log(4):.3f}")
assert linear_err >= bound > 0.3  # provably far from D*, as trained
assert v_linear < v_direct - 0.2  # so the divergence G would descend is badly underestimated

# %% [markdown]
# The linear D sees G as almost perfect: its $V$ is barely above what a D that always
# says 1/2 gets, while $D^*$ measures a large divergence, so a G trained against it would
# get almost no signal. Real discriminators are far more flexible than this one, but the
# same happens wherever $D^*$ has detail they cannot express. Training D to optimality at
# every step, with infinite data, is the other assumption real training breaks; the next
# section is what happens then.
#
# ## 6. Failure modes: mode collapse
#
# The 25-mode grid (std 0.05, spacing 2) is a standard stress test. First a **bad
# configuration**: the generator learns 10 times faster than the discriminator. D can
# never map the whole data distribution; G keeps jumping to wherever D is currently weak,
# and all its samples end up in the same place. Then the **good configuration** from
# section 2: balanced learning rates and the R1 penalty
# $\frac{\gamma}{2} E\|\nabla_x \ell(x)\|^2$ on real data (Mescheder et al. 2018), which
# stops D from building cliffs around the data that G's gradients then bounce off.

# %%
grid = grid_gaussians(5, spacing=2.0, std=0.05)
GRID_STD = float(grid.stds[0])
GRID_STEPS = 8000
configs = {
    "bad: lr_G = 10 x lr_D": dict(lr_g=1e-3, lr_d=1e-4, betas=(0.5, 0.999)),
    "good: balanced + R1": GOOD,
}
GRID_SHIPPED_AS = {"bad: lr_G = 10 x lr_D": "gan_grid_unbalanced", "good: balanced + R1": "gan_grid_balanced"}
grid_results = {}
for name, cfg in configs.items():
    seed_everything(0)
    G_g, D_g = MLPGenerator(16, 2, 128, 3), MLPDiscriminator(2, 128, 3)
    gan.train_gan(G_g, D_g, grid, steps=GRID_STEPS, **cfg, device=device, desc=name, shipped=GRID_SHIPPED_AS[name])
    s = gan.sample(G_g, 2500, generator=torch.Generator(device=device).manual_seed(2))
    grid_results[name] = (s, metrics.mode_coverage(s, grid.means, GRID_STD))

x_grid = grid.sample(2500, generator=torch.Generator().manual_seed(1))
fig, axes = plt.subplots(1, 3, figsize=(11, 3.8))
viz.scatter(axes[0], x_grid, color=viz.DATA, lim=6, title="data: 25 modes")
for ax, (name, (s, cov)) in zip(axes[1:], grid_results.items()):
    viz.scatter(ax, x_grid, color="k", lim=6, alpha=0.15)
    viz.scatter(ax, s, color=viz.MODEL, lim=6, s=3,
                title=f"{name}\n{cov['covered']}/25 modes, {cov['high_quality']:.0%} on a mode")
fig.tight_layout()
plt.show()

bad, good = grid_results["bad: lr_G = 10 x lr_D"][1], grid_results["good: balanced + R1"][1]
assert bad["covered"] <= 10, bad
assert good["covered"] >= 20, good
assert good["covered"] >= bad["covered"] + 10
assert good["high_quality"] >= 0.4, good
for name, (_, cov) in grid_results.items():
    pretrained.record(GRID_SHIPPED_AS[name], modes_covered=cov["covered"], on_a_mode=cov["high_quality"])

# %% [markdown]
# The metric that shows collapse is **coverage**, not sample quality: a collapsed G can
# put every sample right on a mode. Read the two numbers together, though: the good
# run covers the modes but still leaves many samples on the lines between them (a
# GAN's samples form a continuous image of the latent Gaussian, so it must pass
# *between* the modes somewhere; longer training thins those bridges). Other failure modes from the slide: instability (V
# and the samples oscillate; try `lr_d=1e-2` above) and NaNs (`train_gan` stops with a
# `TrainingDivergedError` that says what to try).
#
# ## 7. Architectures: DCGAN on digits
#
# DCGAN (Radford et al. 2016) was the first GAN architecture that worked on real images:
# strided transposed convolutions up, strided convolutions down, ReLU in G, LeakyReLU
# in D, tanh output, and batch norm in **both** networks, on every layer but G's output
# and D's input. Ours follows it except for D, which has no batch norm: with it, each
# image's score depends on the rest of its batch (real and fake batches are scored
# separately, so the statistics themselves tell them apart), and gradient penalties
# such as the R1 term of section 2 assume a per-image score; later GANs (StyleGAN and
# after) leave it out of D for the same reasons. We train one on scikit-learn's 1,438
# training digits, upsampled to 16 x 16.

# %%
x_digits, y_digits = digits(size=16, split="train")
seed_everything(0)
G_dc = DCGenerator(z_dim=32, size=16, width=32)
D_dc = DCDiscriminator(size=16, width=32)
hist_dc = gan.train_gan(G_dc, D_dc, x_digits, steps=3000, batch_size=64,
                        device=device, desc="DCGAN on digits", shipped="dcgan_digits")
fake_digits = gan.sample(G_dc, 1000, generator=torch.Generator(device=device).manual_seed(0))

fig, axes = plt.subplots(1, 2, figsize=(10, 5))
viz.image_grid(axes[0], x_digits[:64], per_row=8, title="real digits")
viz.image_grid(axes[1], fake_digits[:64], per_row=8, title="DCGAN samples")
plt.show()

# %% [markdown]
# **Are they any good?** We judge images with a classifier trained on the real digits
# (trained once, then cached; its test accuracy is printed). It reports how many of the
# 10 classes the samples cover, how confident it is on them, and a Frechet distance in
# its feature space, next to the same distance for held-out real digits.

# %%
judge = DigitJudge(size=16, device=device)
report = judge.evaluate(fake_digits)
print(f"judge test accuracy: {judge.test_accuracy:.1%}")
print(f"classes covered: {report['classes_covered']}/10, samples per class: {report['class_counts']}")
print(f"mean confidence: {report['confidence']:.2f}")
print(f"Frechet distance: generated {report['frechet']:.1f} vs real held-out digits {report['frechet_real']:.1f}")
assert judge.test_accuracy >= 0.97
assert report["classes_covered"] >= 8, report

# %% [markdown]
# **What does a Frechet distance of that size mean?** The number has no absolute scale:
# it depends on the judge's features. So we calibrate it on damage we can name, applied
# to the held-out real digits: a little noise, a little blur, a shift by two pixels,
# more noise, more blur.

# %%
x_heldout, _ = digits(size=16, split="test")
gen_damage = torch.Generator().manual_seed(0)
damaged = {
    "noise, std 0.2": (x_heldout + 0.2 * torch.randn(x_heldout.shape, generator=gen_damage)).clamp(-1, 1),
    "blur, 3 x 3 box": F.avg_pool2d(x_heldout, 3, stride=1, padding=1, count_include_pad=False),
    "shifted 2 pixels right": torch.roll(x_heldout, 2, dims=3),
    "noise, std 0.5": (x_heldout + 0.5 * torch.randn(x_heldout.shape, generator=gen_damage)).clamp(-1, 1),
    "blur, 5 x 5 box": F.avg_pool2d(x_heldout, 5, stride=1, padding=2, count_include_pad=False),
}
ladder = {"real held-out digits": report["frechet_real"]}
ladder.update({name: judge.evaluate(images)["frechet"] for name, images in damaged.items()})
ladder["DCGAN samples"] = report["frechet"]
for name, value in sorted(ladder.items(), key=lambda kv: kv[1]):
    print(f"{value:7.1f}  {name}")
assert ladder["real held-out digits"] < ladder["noise, std 0.2"] < ladder["noise, std 0.5"]  # more damage,
assert ladder["blur, 3 x 3 box"] < ladder["blur, 5 x 5 box"]  # larger distance
assert ladder["DCGAN samples"] > 3 * ladder["real held-out digits"]
assert ladder["noise, std 0.2"] < ladder["DCGAN samples"] < ladder["blur, 5 x 5 box"]  # a rung among the damage
pretrained.record("dcgan_digits", classes_covered=report["classes_covered"], frechet=report["frechet"],
                  confidence=report["confidence"])

# %% [markdown]
# Read the DCGAN's number against this ladder, not against 0: in the judge's eyes its
# samples sit among the damaged real digits, farther from real digits than the lightest
# damage (noise of std 0.2) and nearer than the heaviest (a 5 x 5 blur; both asserted;
# its exact rung is in the printout), while the judge still reads them as digits of most
# classes with high confidence. They
# are digits, with strokes that are broken or smeared in ways real digits never are. A
# longer training run and a larger network move the number down; a GAN that matched $p_{data}$ would score like the real row.
#
# **Does it copy?** Memorization is on the slide's list of GAN failure modes: a
# generator that reproduces training images would score well on both numbers above.
# For each sample we measure the distance to its nearest training digit and compare it
# with the same distance for held-out real digits, which the GAN never saw
# (`metrics.memorization`; the rectified-flow lecture uses the same yardstick on the
# exact minimiser of the training loss, which does copy).

# %%
copying = metrics.memorization(fake_digits, x_digits, x_heldout)
print(f"nearest-training-digit distance of the samples: {copying['ratio']:.2f} x that of held-out digits; "
      f"near-copies: {100 * copying['copies']:.1f}% of samples, "
      f"{100 * copying['held_out_copies']:.1f}% of held-out digits")
assert copying["ratio"] > 0.8 and copying["copies"] < 0.05, copying  # new images, not copies

# %% [markdown]
# ### Latent space interpolation
#
# A well-trained generator's latent space is smooth: walking in a straight line
# $z_t = t z_0 + (1 - t) z_1$ morphs one sample into another, $x_t = G(z_t)$. Drag $t$.

# %%
g = torch.Generator(device=device).manual_seed(5)
z0 = torch.randn(8, 32, generator=g, device=device)
z1 = torch.randn(8, 32, generator=g, device=device)
widgets.latent_interpolation(G_dc, z0, z1, n_frames=11)

# %% [markdown]
# "Smooth" can be measured: along each walk, neighbouring frames should differ little
# next to the two unrelated samples at its ends (`metrics.interpolation_smoothness`).

# %%
G_dc.eval()
with torch.no_grad():
    walk = torch.stack([G_dc(t * z0 + (1 - t) * z1) for t in torch.linspace(0, 1, 11).tolist()])
G_dc.train()
smooth = metrics.interpolation_smoothness(walk)
print(f"mean step between neighbouring frames {smooth['step']:.2f}; between the two ends (unrelated samples) "
      f"{smooth['ends']:.2f}. A walk's largest step / its ends: median over the 8 walks "
      f"{smooth['max_step_ratio']:.2f}, most abrupt walk {smooth['worst_ratio']:.2f} (an even walk of 10 steps: "
      f"0.10; a jump from one sample to the other: 1)")
assert smooth["max_step_ratio"] < 0.3

# %% [markdown]
# ### StyleGAN's AdaIN
#
# StyleGAN injects a "style" at every layer by predicting a scale $w$ and a shift $b$ per
# channel and applying adaptive instance normalisation:
#
# $$\mathrm{AdaIN}(x, w, b)_i = w_i\,\frac{x_i - \mu(x_i)}{\sigma(x_i)} + b_i.$$
#
# Each channel is normalised to zero mean and unit variance over its pixels, then given
# mean $b_i$ and standard deviation $w_i$: the input keeps its *pattern*, the style sets
# its *statistics*. First the claim, checked; then AdaIN on the three colour channels of
# a photograph, with the style taken from another photograph's channel statistics.

# %%
x_feat = torch.randn(4, 8, 5, 5) * 3 + 7
w_style, b_style = torch.rand(4, 8) + 0.5, torch.randn(4, 8)
y_feat = adain(x_feat, w_style, b_style)
mean_err = float((y_feat.mean((2, 3)) - b_style).abs().max())
std_err = float((y_feat.std((2, 3), unbiased=False) - w_style).abs().max())
print(f"largest gap, output channel mean vs b: {mean_err:.1e};  output channel std vs w: {std_err:.1e}")
assert mean_err < 1e-4 and std_err < 1e-3

from sklearn.datasets import load_sample_images  # noqa: E402  (offline: shipped with scikit-learn)

photos = [torch.tensor(im, dtype=torch.float32).permute(2, 0, 1)[None] / 255 for im in load_sample_images().images]
content, style = photos[0][..., ::2, ::2], photos[1][..., ::2, ::2]
styled = adain(content, style.std((2, 3), unbiased=False), style.mean((2, 3))).clamp(0, 1)
fig, axes = plt.subplots(1, 3, figsize=(12, 3))
for ax, im, title in zip(axes, (content, style, styled),
                         ("content", "style (its channel statistics)", "AdaIN(content; style)")):
    ax.imshow(im[0].permute(1, 2, 0))
    ax.set_title(title)
    ax.axis("off")
plt.show()

style_layer = AdaIN(channels=8, style_dim=16)  # what StyleGAN uses: (w, b) predicted from a style vector
print("AdaIN module output:", tuple(style_layer(x_feat, torch.randn(4, 16)).shape))

# %% [markdown]
# ## Exercises
#
# ### Exercise 1: the non-saturating generator loss
#
# Write `nonsaturating_loss(fake_logits)`: given D's logits on a batch of fakes, return
# $-\frac1n\sum_i \log D(G(z_i))$ with $D = \sigma(\ell)$. It must stay finite when D is
# extremely confident (logit -200). Hint: $-\log\sigma(\ell) = \mathrm{softplus}(-\ell)$.

# %% tags=["exercise"]
import torch


import torch.nn.functional as F  # noqa: E402


def nonsaturating_loss(fake_logits):
    ### BEGIN SOLUTION
    return F.softplus(-fake_logits).mean()
    ### END SOLUTION


# %% tags=["check"]
from cs231n_gen.exercises import check_nonsaturating_loss  # noqa: E402

check_nonsaturating_loss(nonsaturating_loss)

# %% [markdown]
# ### Exercise 2: the optimal discriminator
#
# Write `optimal_d(p_data, p_g)`: given the two densities evaluated at the same points,
# return $D^*$ at each point.

# %% tags=["exercise"]
def optimal_d(p_data, p_g):
    ### BEGIN SOLUTION
    return p_data / (p_data + p_g)
    ### END SOLUTION


# %% tags=["check"]
from cs231n_gen.exercises import check_optimal_discriminator  # noqa: E402

check_optimal_discriminator(optimal_d)

# %% [markdown]
# ## Summary
#
# | slide | what you saw here |
# |---|---|
# | implicit density: $x = G(z)$, no $p(x)$ | section 1: samples only |
# | minimax game, alternating updates | section 2: one round by hand, then `train_gan`; the replay widget |
# | "no loss curve to look at" | section 3: V flat near $-\log 4$ while W2 and on-mode fraction improve |
# | saturation; train G on $-\log D(G(z))$ | section 4: gradients $10^{4}$+ times larger for the non-saturating loss |
# | $D^* = p_{data} / (p_{data} + p_G)$; optimum at $p_G = p_{data}$ | section 5: trained D within 0.05 of $D^*$; $V \to -\log 4$, JSD $\to 0$ |
# | caveats; unstable training, mode collapse | section 6: 25-grid collapse vs the good configuration |
# | DCGAN, StyleGAN AdaIN, latent interpolation | section 7: digits judged by a classifier; AdaIN statistics; the $t$ slider |
#
# GANs give sharp samples from a single forward pass, but there is no loss to watch and
# the game is brittle. Next: **diffusion models**, which replace the game with plain
# regression (lecture 02, rectified flow).
