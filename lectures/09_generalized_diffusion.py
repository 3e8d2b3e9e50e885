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
# # Generalized diffusion and its perspectives
#
# *CS231n Lecture 14, "Generative Models 2": generalized diffusion, and diffusion as a
# latent variable model, a score estimator and an SDE solver.*
#
# The diffusion literature looks like a zoo: DDPM, score matching, SDEs, DDIM, v-prediction,
# variance preserving, variance exploding, rectified flow. The lecture's point is that
# they are all **one recipe** with a few knobs:
#
# ```
# sample x ~ p_data, z ~ p_noise, t ~ p_t
# x_t    = a(t) x + b(t) z          # the path
# y_gt   = c(t) x + d(t) z          # the target
# y_pred = f(x_t, t)
# loss   = ||y_gt - y_pred||^2
# ```
#
# Rectified flow is $a = 1 - t$, $b = t$, $c = -1$, $d = 1$. In this notebook we build the
# other choices, show that a prediction of any target can be **converted** into any
# other (so the samplers of every "perspective" can run any model), check each sampler
# against the exact answer, and train three models that differ only in their target.
#
# Run the cells top to bottom. Cells that make a claim check it with an `assert`.
#
# **How long:** about 2 minutes in full mode on a 2-core laptop CPU, which trains every
# model here from scratch. To see the results first, start the lecture with
# `cs231n_gen.start_lecture(seed=0, pretrained=True)`: the course's trained models, which
# ship with the package, then stand in for the long trainings (the lecture says so where
# each one appears), and it takes about 70 seconds, as in quick mode (`CS231N_GEN_QUICK=1`).
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

from cs231n_gen import budget, seed_everything
from cs231n_gen import metrics, oracle, paths, pretrained, sampling, viz, widgets
from cs231n_gen.data import GaussianMixture, eight_gaussians
from cs231n_gen.nn import TimeMLP
from cs231n_gen.train import fit

# %% [markdown]
# ## 1. One recipe
#
# `paths.DiffusionPath` holds $a(t)$, $b(t)$ and their derivatives; `path.target(name,
# x, z, t)` builds $y = c(t) x + d(t) z$ for a named target, and `path.loss(model, x,
# target)` is the four-line recipe above. Rectified flow is one instance:

# %%
rf = paths.rectified_flow()
g = torch.Generator().manual_seed(0)
x, z, t = torch.randn(5, 2, generator=g), torch.randn(5, 2, generator=g), torch.rand(5, generator=g)
assert torch.allclose(rf.interpolate(x, z, t), (1 - t[:, None]) * x + t[:, None] * z)
assert torch.allclose(rf.target("velocity", x, z, t), z - x)
print("rectified flow: a = 1 - t, b = t; its velocity target has c = -1, d = 1 (checked)")

# %% [markdown]
# ## 2. Paths: variance preserving and variance exploding
#
# * **Variance preserving (VP)**: $a^2 + b^2 = 1$, i.e. $a = \sqrt{\bar\alpha(t)}$,
#   $b = \sqrt{1 - \bar\alpha(t)}$ for some $\bar\alpha$ falling from 1 to 0. If $x$ and
#   $z$ are independent with unit variance, every $x_t$ has unit variance too. Two
#   classics: the **cosine** path $a = \cos(\pi t/2)$, $b = \sin(\pi t/2)$, and DDPM's
#   **linear betas** in continuous time, $\bar\alpha(t) = \exp(-\int_0^t \beta)$ with
#   $\beta$ rising linearly from 0.1 to 20. *Notation:* the slides write VP as
#   $a = \sqrt{\sigma(t)}$, $b = \sqrt{1 - \sigma(t)}$; their $\sigma(t)$ is the
#   $\bar\alpha(t)$ of DDPM and of this notebook (the signal's share of the variance),
#   not the noise level $\sigma(t)$ of VE below (section 9 collects every such clash).
# * **Variance exploding (VE)**: $a = 1$, $b = \sigma(t)$ growing (here geometrically
#   from 0.01 to 50). $\sigma(1)$ must be big enough to drown all the signal in $x$.

# %%
PATHS = {"rectified flow": rf, "VP cosine": paths.vp_cosine(), "VP linear (DDPM)": paths.vp_linear(),
         "VE": paths.ve(0.01, 50.0)}
tt = torch.linspace(0, 1, 201)
fig, axes = plt.subplots(1, 3, figsize=(13, 3.3))
for name, path in PATHS.items():
    axes[0].plot(tt, path.a(tt), label=name)
    if name != "VE":
        axes[1].plot(tt, path.b(tt), label=name)
    axes[2].plot(tt[1:-1], path.snr(tt[1:-1]), label=name)
axes[0].set_title("a(t): how much signal (VE: always 1)", fontsize=10)
axes[1].set_title("b(t): how much noise (VE: up to 50)", fontsize=10)
axes[2].set_title("signal-to-noise ratio a^2 / b^2", fontsize=10)
axes[2].set_yscale("log")
for ax, ylabel in zip(axes, ("a(t), scale of the data", "b(t), std of the noise", "SNR(t) (log scale)")):
    ax.set_xlabel("t")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

unit = torch.randn(100_000, 2, generator=g)  # unit-variance data
for name in ("VP cosine", "VP linear (DDPM)"):
    path = PATHS[name]
    variances = [float(path.interpolate(unit, torch.randn(unit.shape, generator=g), s).var(0).mean())
                 for s in (0.2, 0.5, 0.8)]
    print(f"{name}: variance of x_t at t = 0.2, 0.5, 0.8: {[round(v, 3) for v in variances]}")
    assert all(abs(v - 1) < 0.02 for v in variances)
    assert torch.allclose(path.a(tt) ** 2 + path.b(tt) ** 2, torch.ones_like(tt), atol=1e-6)
ve_path = PATHS["VE"]
print(f"VE: b(1) = {float(ve_path.b(torch.tensor(1.0))):.0f}, SNR(1) = {float(ve_path.snr(torch.tensor(1.0))):.1e}, "
      f"b(0) = {float(ve_path.b(torch.tensor(0.0))):g}")
ends = torch.tensor([0.0, 1.0])
for name, path in PATHS.items():
    snr0, snr1 = path.snr(ends).tolist()
    assert snr0 > 1e3 and snr1 < 1e-2, (name, snr0, snr1)  # from (nearly) clean data to (nearly) pure noise
    exact_start = bool(path.a(ends[:1]) == 1 and path.b(ends[:1]) == 0)
    assert exact_start == (not name.startswith("VE")), name  # only VE starts off the data, at b(0) = sigma_min

# %% [markdown]
# The paths differ in *how fast* they destroy the signal (the SNR curves), not in what
# they are: every one ends where the signal is lost in the noise (SNR tiny at $t = 1$)
# and starts where the noise is negligible (SNR huge at $t = 0$). Only rectified flow
# and VP start exactly at the data ($a(0) = 1$, $b(0) = 0$); VE starts at
# $x_0 = x + b(0)\,z$ with a small $b(0) = \sigma_{min}$: a sample that reaches $t = 0$
# still carries noise of std $\sigma_{min} = 0.01$, negligible next to the data's spread. Pick a path and a target
# below and drag $t$: the background is the exact density of $x_t$ for the eight
# Gaussians (a mixture again, with means $a\mu_k$ and variances $a^2 s^2 + b^2$), and the
# arrows are the optimal prediction of the chosen target at each point (from the oracle,
# which now works on any path: `oracle.predict(mixture, x_t, t, path, target)`).

# %%
data = eight_gaussians()
widgets.path_explorer(data, PATHS)

# %% [markdown]
# ## 3. Targets, and converting between them
#
# | target | $y$ | $c(t)$ | $d(t)$ |
# |---|---|---|---|
# | x-prediction | $x$ | 1 | 0 |
# | $\epsilon$-prediction | $z$ | 0 | 1 |
# | v-prediction | $a z - b x$ | $-b$ | $a$ |
# | velocity (flow) | $\frac{d x_t}{dt} = a' x + b' z$ | $a'$ | $b'$ |
# | score | $\nabla \log p_t(x_t)$ | 0 | $-1/b$ (in expectation) |
#
# **A slip on the slide.** The v-prediction line reads $y = b(t) z - a(t) x$ with
# $c = b$, $d = -a$; those two do not agree ($b z - a x$ has $c = -a$, $d = b$). The
# standard definition (Salimans and Ho 2022) is $v = a z - b x$, i.e. $c = -b$, $d = a$.
# It has a meaning: on a VP path write $a = \cos\phi$, $b = \sin\phi$; then
# $x_t = \cos\phi\, x + \sin\phi\, z$ and $\frac{d x_t}{d\phi} = -\sin\phi\,x + \cos\phi\,z = v$:
# v is the velocity along the circle from data to noise. On the cosine path
# $\phi = \pi t / 2$, so the flow velocity is exactly $\frac{\pi}{2} v$ (checked below).
#
# **Why one model can serve every sampler.** The optimal prediction of any target is
# $c\,E[x \mid x_t] + d\,E[z \mid x_t]$, and always $x_t = a\,E[x \mid x_t] + b\,E[z \mid x_t]$.
# So a prediction $y$ of one target gives both expectations by solving
#
# $$\begin{pmatrix} a & b \\ c & d \end{pmatrix} \begin{pmatrix} \hat x \\ \hat z \end{pmatrix}
# = \begin{pmatrix} x_t \\ y \end{pmatrix}, \qquad
# \hat x = \frac{d\,x_t - b\,y}{ad - bc}, \quad \hat z = \frac{a\,y - c\,x_t}{ad - bc},$$
#
# and then any other target is $c'\hat x + d'\hat z$; the score is $-\hat z / b$
# (Tweedie's formula: $\nabla \log p_t(x_t) = -E[z \mid x_t] / b$). The system is
# singular where $ad = bc$: $x$-prediction says nothing about the noise at $b = 0$,
# $\epsilon$-prediction nothing about the data at $a = 0$.

# %%
t_check = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
xd = 2 * torch.randn(99, 2, generator=g, dtype=torch.float64)
zd = torch.randn(99, 2, generator=g, dtype=torch.float64)
worst = 0.0
for name, path in PATHS.items():
    x_t = path.interpolate(xd, zd, t_check)
    for source in paths.TARGETS:
        y = path.target(source, xd, zd, t_check)
        for dest in paths.TARGETS:
            want = path.target(dest, xd, zd, t_check)
            err = (path.convert(y, source, dest, x_t, t_check) - want).abs() / (1 + want.abs())
            worst = max(worst, float(err.max()))
print(f"every conversion between {len(paths.TARGETS)} targets on {len(PATHS)} paths, t in [0.01, 0.99]: "
      f"largest relative error {worst:.1e}")
assert worst < 1e-5
cos_path = PATHS["VP cosine"]
assert torch.allclose(cos_path.target("velocity", xd, zd, t_check), math.pi / 2 * cos_path.target("v", xd, zd, t_check))

# %% [markdown]
# ## 4. DDPM: diffusion as a latent-variable model
#
# DDPM (Ho et al. 2020) tells the same story in discrete time. A fixed **forward
# process** adds a little Gaussian noise at each of $T = 1000$ steps,
# $q(x_i \mid x_{i-1}) = \mathcal N(\sqrt{1 - \beta_i}\,x_{i-1}, \beta_i I)$, with $\beta_i$
# rising linearly from $10^{-4}$ to $0.02$. The noisy states $x_1, \dots, x_T$ are latent
# variables (like a VAE's, but the encoder is fixed and only the decoder, the reverse
# process, is learned). Composing Gaussians gives the **closed-form marginal**
#
# $$q(x_i \mid x_0) = \mathcal N\big(\sqrt{\bar\alpha_i}\,x_0,\,(1 - \bar\alpha_i) I\big),
# \qquad \bar\alpha_i = \prod_{j \le i} (1 - \beta_j),$$
#
# which is a VP path with $a = \sqrt{\bar\alpha}$, $b = \sqrt{1 - \bar\alpha}$: the
# continuous "VP linear" path above at $t = i / T$. We check both claims by running the
# 1000-step chain.

# %%
betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
alpha_bar = torch.cumprod(1 - betas, 0)
x0 = data.sample(20_000, generator=g).double()
chain = x0.clone()
checkpoints = {}
for i, beta in enumerate(betas):
    chain = torch.sqrt(1 - beta) * chain + torch.sqrt(beta) * torch.randn(chain.shape, generator=g, dtype=torch.float64)
    if i + 1 in (100, 300, 600):
        checkpoints[i + 1] = chain.clone()
vp_lin = PATHS["VP linear (DDPM)"]
for i, state in checkpoints.items():
    a_i, b_i = math.sqrt(alpha_bar[i - 1]), math.sqrt(1 - alpha_bar[i - 1])
    # regress the state on x0: slope a_i, residual variance b_i^2
    slope = float((state * x0).sum() / (x0 * x0).sum())
    resid = float((state - slope * x0).var())
    a_cont = float(vp_lin.a(torch.tensor(i / 1000)))
    print(f"step {i}: chain slope {slope:.4f} vs sqrt(alpha_bar) {a_i:.4f} vs continuous a(t) {a_cont:.4f}; "
          f"residual variance {resid:.4f} vs 1 - alpha_bar {b_i ** 2:.4f}")
    assert abs(slope - a_i) < 0.01 and abs(resid - b_i**2) < 0.01 and abs(a_cont - a_i) < 0.01

# %% [markdown]
# **The loss.** Training maximises a variational lower bound (the ELBO). Its term for
# step $i$ is a KL divergence between two Gaussians with the same variance
# $\tilde\beta_i = \frac{1 - \bar\alpha_{i-1}}{1 - \bar\alpha_i}\beta_i$: the forward
# posterior $q(x_{i-1} \mid x_i, x_0)$ and the model's step $p_\theta(x_{i-1} \mid x_i)$,
# whose mean is the posterior mean with the model's guess
# $\hat x_0 = (x_i - \sqrt{1 - \bar\alpha_i}\,\epsilon_\theta) / \sqrt{\bar\alpha_i}$ plugged
# in. The notes work it out to a weighted $\epsilon$-error,
#
# $$\mathrm{KL}\big(q \,\|\, p_\theta\big) = \lambda_i\,\|\epsilon - \epsilon_\theta\|^2,
# \qquad \lambda_i = \frac{\beta_i^2}{2\,\tilde\beta_i\,(1 - \beta_i)\,(1 - \bar\alpha_i)}.$$
#
# Check it numerically at a few steps, with the KL computed by `torch.distributions`
# from the two Gaussians themselves and an arbitrary (wrong) noise guess $\epsilon_\theta$:

# %%
from torch.distributions import Normal, kl_divergence  # noqa: E402

x0_few = x0[:8]
eps = torch.randn(x0_few.shape, generator=g, dtype=torch.float64)
eps_guess = eps + 0.5 * torch.randn(x0_few.shape, generator=g, dtype=torch.float64)
weights = {}
for i in (2, 50, 300, 999):
    beta_i, ab_i, ab_prev = betas[i - 1], alpha_bar[i - 1], alpha_bar[i - 2]
    var = (1 - ab_prev) / (1 - ab_i) * beta_i  # beta tilde

    def posterior_mean(x0_hat, x_i):
        return (ab_prev.sqrt() * beta_i * x0_hat + (1 - beta_i).sqrt() * (1 - ab_prev) * x_i) / (1 - ab_i)

    x_i = ab_i.sqrt() * x0_few + (1 - ab_i).sqrt() * eps
    x0_hat = (x_i - (1 - ab_i).sqrt() * eps_guess) / ab_i.sqrt()
    kl = kl_divergence(Normal(posterior_mean(x0_few, x_i), var.sqrt()),
                       Normal(posterior_mean(x0_hat, x_i), var.sqrt())).sum(1)
    weights[i] = float(beta_i**2 / (2 * var * (1 - beta_i) * (1 - ab_i)))
    assert torch.allclose(kl, weights[i] * (eps - eps_guess).square().sum(1), rtol=1e-9)
print("KL(q || p_theta) = lambda_i * |eps - eps_theta|^2 at steps 2, 50, 300, 999; lambda_i = "
      + ", ".join(f"{w:.2g}" for w in weights.values()))
assert max(weights.values()) > 100 * min(weights.values()) and weights[2] == max(weights.values())

# %% [markdown]
# The weights $\lambda_i$ span two orders of magnitude (largest at the first, nearly
# noise-free steps, smallest in the middle of the chain). Ho et al.'s simplification drops them: train every step on the plain
# $\|\epsilon_\theta(x_t, t) - z\|^2$, the recipe with $c = 0$, $d = 1$. That is a
# different weighting of the same per-step errors, and it gave better samples.
#
# **The ancestral sampler.** The reverse process steps from $x_t$ to a slightly less
# noisy $x_s$ by drawing from $q(x_s \mid x_t, x = \hat x)$, the forward posterior with
# the model's guess of the clean data plugged in. For any path it is Gaussian:
#
# $$q(x_s \mid x_t, x) = \mathcal N\Big(\tfrac{a_s b_{t|s}^2}{b_t^2}\,x
#   + \tfrac{a_{t|s} b_s^2}{b_t^2}\,x_t,\ \tfrac{b_{t|s}^2 b_s^2}{b_t^2} I\Big), \qquad
#   a_{t|s} = \tfrac{a_t}{a_s},\ b_{t|s}^2 = b_t^2 - a_{t|s}^2 b_s^2
# $$
#
# (`sampling.ddpm`; with DDPM's discrete betas, $b_{t|s}^2 = \beta_t$ and this is the
# sampler of the paper). **DDIM** (Song et al. 2021) is its deterministic counterpart:
# keep the predicted noise instead of drawing fresh noise,
# $x_s = a_s \hat x + b_s \hat z$ (`sampling.ddim`).
#
# ## 5. Diffusion learns the score
#
# The **score** of a density, $\nabla_x \log p(x)$, points toward higher probability.
# Tweedie's formula says the optimal noise prediction *is* a scaled score:
# $\nabla \log p_t(x_t) = -E[z \mid x_t] / b(t)$. For the mixture the score of $p_t$ is
# known in closed form, so we can compare: the oracle's score (from `oracle.predict(...,
# "score")`) against the gradient of $\log p_t$ taken by autograd.

# %%
pts = 3 * torch.randn(500, 2, generator=g, dtype=torch.float64)
data64 = data.to(dtype=torch.float64)
for t_s in (0.1, 0.4, 0.8):
    a_s, b_s = float(vp_lin.a(torch.tensor(t_s))), float(vp_lin.b(torch.tensor(t_s)))
    p_t = GaussianMixture(data64.means * a_s, torch.sqrt(a_s**2 * data64.stds**2 + b_s**2), data64.weights)
    q = pts.clone().requires_grad_(True)
    autograd_score = torch.autograd.grad(p_t.log_prob(q).sum(), q)[0]
    tweedie = oracle.predict(data64, pts, t_s, vp_lin, "score")
    assert torch.allclose(tweedie, autograd_score, atol=1e-8)
print("-E[z | x_t] / b(t) equals grad log p_t(x_t) (autograd of the exact density) at t = 0.1, 0.4, 0.8")

# %% [markdown]
# Knowing the score is enough to sample: **Langevin dynamics**
# $x \leftarrow x + \epsilon\,\nabla \log p(x) + \sqrt{2\epsilon}\,n$ samples $p$ when run
# long enough with small steps. Plain Langevin on $p_{data}$ gets stuck between far-apart
# modes; **annealed** Langevin (Song and Ermon 2019) runs it on $p_t$ for a decreasing
# sequence of noise levels, starting where $p_t$ is smooth (`sampling.langevin`).
#
# ## 6. Diffusion solves an SDE
#
# In continuous time the path's marginals are those of a **forward SDE**
# $dx = f(t)\,x\,dt + g(t)\,dw$ with $f = a'/a$ and $g^2 = (b^2)' - 2 f b^2$. Anderson's
# theorem gives its **time reversal**,
# $dx = [f x - g^2 \nabla \log p_t(x)]\,dt + g\,d\bar w$, which runs from noise to data
# (`sampling.reverse_sde`, Euler-Maruyama). Dropping the noise and halving the score
# term gives an ODE with the same marginals, the **probability-flow ODE**, whose velocity
# is exactly the flow target $a'\hat x + b'\hat z$ (`sampling.probability_flow`, Euler or
# Heun).
#
# Every sampler above takes a model of **any** target on **any** path and converts. The
# proof that they are right, not just plausible: drive each with the exact model and
# compare the samples with the data.

# %%
# The course's W2 protocol: ten sets of 1000 points, and the ratio a
# third draw of real data scores printed next to the samplers' (a ratio below 1 is noise).
sample_gen = torch.Generator().manual_seed(1)
sets = metrics.evaluation_sets(data, n_sets=10, generator=sample_gen)
data_sets, fresh_sets, noise_sets = sets["data"], sets["fresh"], sets["noise"]
exact_eps = oracle.Oracle(data, vp_lin, "eps")
# The samplers start at t = 0.999, not at 1 (the reverse SDE needs a(t) > 0, below), where
# x_t is almost pure noise with standard deviation b(0.999): standard noise scaled by it.
b_start = float(vp_lin.b(torch.tensor(0.999)))

SAMPLERS = {
    "DDPM ancestral, 1000 steps": lambda m, z, gen: sampling.ddpm(m, z, 1000, path=vp_lin, target="eps", generator=gen),
    "DDIM, 400 steps": lambda m, z, gen: sampling.ddim(m, z, 400, path=vp_lin, target="eps"),
    "PF-ODE Euler, 400 steps": lambda m, z, gen: sampling.probability_flow(m, z, 400, path=vp_lin, target="eps"),
    "PF-ODE Heun, 200 steps": lambda m, z, gen: sampling.probability_flow(m, z, 200, path=vp_lin, target="eps",
                                                                          method="heun"),
    "reverse SDE (Euler-Maruyama), 500 steps": lambda m, z, gen: sampling.reverse_sde(m, z, 500, path=vp_lin,
                                                                                      target="eps", generator=gen),
    "annealed Langevin, 30 levels x 20": lambda m, z, gen: sampling.langevin(m, z, 30, 20, path=vp_lin,
                                                                             target="eps", generator=gen),
}
MODE_STD = float(data.stds[0])
real_spread = metrics.mode_coverage(torch.cat(sets["real"]), data.means, std=MODE_STD)["within_std"]
real_ratio = metrics.wasserstein2_ratio(sets["real"], data_sets, fresh_sets)
print(f"{'sampler':42s} model calls | W2 ratio | spread of each mode")
print(f"{'fresh real data (the reference row)':42s}      -      |   {real_ratio:.2f}   |   {real_spread:.3f}")
counted = sampling.CountCalls(exact_eps)  # counts what each sampler asks of the model
exact_results, calls, spreads = {}, {}, {}
for name, run in SAMPLERS.items():
    counted.reset()
    outs = [run(counted, b_start * z, sample_gen) for z in noise_sets]
    exact_results[name], calls[name] = outs, counted.calls // len(noise_sets)
    ratio = metrics.wasserstein2_ratio(outs, data_sets, fresh_sets)
    spread = spreads[name] = metrics.mode_coverage(torch.cat(outs), data.means, std=MODE_STD)["within_std"]
    print(f"{name:42s}    {calls[name]:4d}     |   {ratio:.2f}   |   {spread:.3f}")
    assert ratio <= 1.15, (name, ratio)
    assert abs(spread / real_spread - 1) < 0.1, (name, spread)
assert calls["PF-ODE Heun, 200 steps"] == 2 * 200 - 1  # Heun: two evaluations a step, one on the last
# Fewer steps, so a larger last step: its denoising shrinks each mode, and W2 does not see it.
COARSE = {"DDPM ancestral, 200 steps": lambda m, z, gen: sampling.ddpm(m, z, 200, path=vp_lin, target="eps",
                                                                         generator=gen),
          "DDIM, 100 steps": lambda m, z, gen: sampling.ddim(m, z, 100, path=vp_lin, target="eps")}
for name, run in COARSE.items():
    counted.reset()
    outs = [run(counted, b_start * z, sample_gen) for z in noise_sets]
    ratio = metrics.wasserstein2_ratio(outs, data_sets, fresh_sets)
    spread = metrics.mode_coverage(torch.cat(outs), data.means, std=MODE_STD)["within_std"]
    print(f"{name:42s}    {counted.calls // len(noise_sets):4d}     |   {ratio:.2f}   |   {spread:.3f}  "
          f"({100 * (spread / real_spread - 1):+.0f}% against real data)")
    assert spread < 0.95 * real_spread and ratio <= 1.15, (name, spread, ratio)  # too narrow, yet W2 is content
assert calls["annealed Langevin, 30 levels x 20"] == 30 * 20 + 1  # plus the final denoising

# Every panel looks alike at full size; the close-up of one mode (bottom) shows the widths.
panels = {"fresh real data": (torch.cat(sets["real"]), real_spread)}
panels.update({name.split(",")[0]: (torch.cat(outs), spreads[name]) for name, outs in exact_results.items()})
mode = data.means[0]
fig, axes = plt.subplots(2, len(panels), figsize=(2.1 * len(panels), 4.4))
for c, (title, (pts, spread)) in enumerate(panels.items()):
    color = viz.DATA if c == 0 else viz.ORACLE
    viz.scatter(axes[0, c], pts[:1000], color=color, lim=3.5, title=title)
    near = pts[(pts - mode).norm(dim=1) < 0.5]
    axes[1, c].scatter(near[:, 0], near[:, 1], s=2, alpha=0.35, color=color)
    axes[1, c].add_patch(plt.Circle(mode.tolist(), 2 * MODE_STD, fill=False, ls="--", lw=1, color="k"))
    axes[1, c].set(xlim=(float(mode[0]) - 0.45, float(mode[0]) + 0.45), ylim=(float(mode[1]) - 0.45,
                   float(mode[1]) + 0.45), xticks=[], yticks=[], aspect="equal")
    axes[1, c].set_title(f"one mode: width {spread / MODE_STD:.2f} std", fontsize=8)
fig.suptitle("Six samplers driven by the exact eps-prediction on the VP linear path (dashed: 2 std of the data)",
             fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# All six reach the data: a W2 ratio of 1 means "as close as fresh real data", and each
# mode has the right width. (Read both columns: W2 does not penalise modes that are a
# little too *narrow*. The last step of DDPM and the final denoising of Langevin return
# the posterior mean $E[x \mid x_t]$ at a small but nonzero noise level, which shrinks
# each mode slightly; with 200 DDPM steps instead of 1000, or 100 DDIM steps, the modes
# come out more than 5% too narrow while the W2 ratio stays as good as ever: the last
# two rows of the table, asserted.) These step counts are generous on purpose: the
# uniform grid in $t$ is a poor fit for the VP linear path, whose signal-to-noise ratio
# changes fastest near $t = 0$ (the end of this section places the steps better). Langevin places its noise levels evenly in log-SNR, as annealed Langevin
# always has. The stochastic samplers (DDPM, reverse SDE, Langevin) inject fresh noise,
# which corrects earlier errors; the deterministic ones (DDIM, the probability-flow ODE)
# map each noise to one sample, which is what makes distillation and inversion possible.
#
# Why do they all start at $t = 0.999$? The reverse SDE's drift has $f = a'/a$, infinite
# where $a(t) = 0$: at $t = 1$ on rectified flow and on the cosine path. The library
# refuses to start there, with an error that says what to do, rather than returning NaN:

# %%
for name in ("rectified flow", "VP cosine"):
    exact_v = oracle.Oracle(data, PATHS[name], "velocity")
    try:
        sampling.reverse_sde(exact_v, noise_sets[0][:100], 50, path=PATHS[name], target="velocity", t_start=1.0)
    except ValueError as err:
        print(f"{name}, t_start = 1: ValueError: {err}")
    else:
        raise AssertionError(f"reverse_sde started where a(t) = 0 on {name} without complaint")
    safe = sampling.reverse_sde(exact_v, noise_sets[0][:100], 50, path=PATHS[name], target="velocity",
                                generator=sample_gen)
    assert bool(torch.isfinite(safe).all())
print("with the default t_start = 0.999 both run and return finite samples")

# %% [markdown]
# ### Where to put the steps
#
# A uniform grid in $t$ spends its steps where the VP linear path changes least. What
# the sampler must track is the noise level, so place the steps evenly in
# **log SNR** $= \log(a^2 / b^2)$ instead (`sampling.log_snr_times(path, steps)`: every
# sampler takes such a grid as `times=`). Below, DDIM with the exact model on both grids,
# scored on the ten evaluation sets by W2 and by the width of each mode.

# %%
GRID_STEPS = budget(full=[5, 10, 20, 50, 100], quick=[5, 10, 20, 50])
grid_scores = {"uniform in t": [], "uniform in log SNR": []}
for steps in GRID_STEPS:
    for name, grid in (("uniform in t", dict(steps=steps)),
                       ("uniform in log SNR", dict(times=sampling.log_snr_times(vp_lin, steps)))):
        outs = [sampling.ddim(exact_eps, b_start * z, path=vp_lin, target="eps", **grid) for z in noise_sets]
        spread = metrics.mode_coverage(torch.cat(outs), data.means, std=MODE_STD)["within_std"]
        grid_scores[name].append((metrics.wasserstein2_ratio(outs, data_sets, fresh_sets), spread / real_spread))

fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
log_grid, t_grid = sampling.log_snr_times(vp_lin, 10), torch.linspace(0.999, 0, 11)  # DDIM's default grid
for row, (name, grid) in enumerate((("uniform in t", t_grid), ("uniform in log SNR", log_grid))):
    axes[0].plot(grid, [row] * len(grid), "|", ms=18, mew=2, color=viz.MODEL if row == 0 else viz.ORACLE)
axes[0].set_yticks([0, 1], ["uniform in t", "uniform\nin log SNR"])
axes[0].set_ylim(-0.6, 1.6)
axes[0].set_xlabel("t (10 steps each)")
axes[0].set_title("where the steps go", fontsize=10)
grid_styles = {"uniform in t": ("o-", viz.MODEL), "uniform in log SNR": ("s-", viz.ORACLE)}
viz.curves(axes[1], GRID_STEPS, {name: [r for r, _ in grid_scores[name]] for name in grid_styles}, styles=grid_styles,
           xlabel="DDIM steps (model calls)", ylabel="W2 ratio (1 = as good as real)",
           reference=(real_ratio, "fresh real data"))
axes[2].axhspan(0.9, 1.1, color="k", alpha=0.08, label="within 10% of real")
axes[2].axhline(1.0, color="k", lw=0.8, ls=":")
viz.curves(axes[2], GRID_STEPS, {name: [w for _, w in grid_scores[name]] for name in grid_styles}, styles=grid_styles,
           xlabel="DDIM steps (model calls)", ylabel="mode width / real mode width")
for ax in axes[1:]:
    viz.step_axis(ax, GRID_STEPS, "DDIM steps (model calls)")
fig.suptitle("DDIM with the exact model on the VP linear path: two grids, same number of steps", fontsize=10)
fig.tight_layout()
plt.show()

width_at = {name: dict(zip(GRID_STEPS, (w for _, w in scores))) for name, scores in grid_scores.items()}
print("mode width / real at 20 and 50 steps: uniform in t "
      f"{width_at['uniform in t'][20]:.2f}, {width_at['uniform in t'][50]:.2f}; "
      f"uniform in log SNR {width_at['uniform in log SNR'][20]:.2f}, {width_at['uniform in log SNR'][50]:.2f}")
assert abs(width_at["uniform in log SNR"][20] - 1) < 0.1  # 20 steps suffice on the log-SNR grid...
assert abs(width_at["uniform in t"][50] - 1) > 0.15  # ...where 50 uniform steps still squeeze the modes
assert width_at["uniform in t"][20] < 0.8

# %% [markdown]
# Same model, same number of calls: twenty steps evenly spaced in log SNR give modes
# of the right width, while the uniform grid still squeezes them at fifty steps and
# needs about a hundred. W2 alone would not tell you (both grids score near the real
# reference from ten steps on): narrow modes cost it little. The uniform grid's coarse
# last steps are the problem: from $t = 0.05$ to $0$ the SNR grows without bound, and a
# single DDIM jump across that range returns something close to the posterior mean,
# which pulls each mode inward. This is the sampling-side twin of the noise-schedules
# lecture, where *training* puts its effort where the noise level matters; samplers
# in practice use log-SNR (DPM-Solver) or similar non-uniform grids (Karras et al.'s
# EDM) for the same reason.

# %% [markdown]
# ## 7. Same recipe, three targets
#
# Now learned models. We train the same network on the same path (VP linear) for the
# same number of steps, changing only the target: $x$, $\epsilon$ or $v$. To compare
# them on common ground we convert every model's prediction to the clean-data estimate
# $\hat x$ and to the noise estimate $\hat z$ (equivalently the score,
# $\hat s = -\hat z / b$), and measure both against the oracle at each noise level:
# $E\|\hat x - E[x \mid x_t]\|^2$ and $E\|\hat z - E[z \mid x_t]\|^2 = b^2 E\|\hat s - s^*\|^2$.

# %%
TRAIN_STEPS = 5000
T_RANGE = (0.001, 0.999)
models = {}
for target in ("x", "eps", "v"):
    seed_everything(0)
    net = TimeMLP(dim=2, hidden=256, depth=3)
    fit(net, lambda m, xb, gen, target=target: vp_lin.loss(m, xb, target, gen, t_range=T_RANGE), data,
        steps=TRAIN_STEPS, batch_size=512, lr=2e-3, device=device, desc=f"{target}-prediction",
        shipped=f"vp_{target}_prediction")
    models[target] = net.cpu().eval()

T_ERR = [0.01, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.95]
eval_gen = torch.Generator().manual_seed(2)
x_err = {target: [] for target in models}
z_err = {target: [] for target in models}
for t_e in T_ERR:
    xb = data.sample(4096, generator=eval_gen)
    x_t = vp_lin.interpolate(xb, torch.randn(xb.shape, generator=eval_gen), t_e)
    best_x = oracle.predict(data, x_t, t_e, vp_lin, "x")
    best_z = oracle.predict(data, x_t, t_e, vp_lin, "eps")
    for target, net in models.items():
        with torch.no_grad():
            x_hat, z_hat = vp_lin.to_x_eps(net(x_t, torch.full((4096,), t_e)), target, x_t, t_e)
        x_err[target].append(float((x_hat - best_x).square().sum(1).mean()))
        z_err[target].append(float((z_hat - best_z).square().sum(1).mean()))

w2_table = {}
for target, net in models.items():
    outs = [sampling.ddim(net, b_start * z, 100, path=vp_lin, target=target) for z in noise_sets]
    w2_table[target] = metrics.wasserstein2_ratio(outs, data_sets, fresh_sets)

fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
TITLES = {"x_hat": "error of the clean-data estimate x_hat",
          "z_hat": "error of the noise estimate z_hat (= b^2 x score error)"}
for ax, errors, estimate in ((axes[0], x_err, "x_hat"), (axes[1], z_err, "z_hat")):
    viz.curves(ax, T_ERR, {f"{target}-prediction": errors[target] for target in models}, logy=True,
               xlabel="noise level t", ylabel=f"E |{estimate} - oracle's {estimate}|^2 (log)", title=TITLES[estimate])
fig.suptitle(f"Three targets, same network and budget ({TRAIN_STEPS} steps), compared with the oracle", fontsize=10)
plt.tight_layout()
plt.show()

print("target | W2 ratio (DDIM, 100 steps) | x_hat error at t = 0.01 / 0.95 | z_hat error at t = 0.01 / 0.95")
low, high = T_ERR.index(0.01), T_ERR.index(0.95)
for target in models:
    print(f"{target:6s} |          {w2_table[target]:.2f}              |      {x_err[target][low]:.4f} / "
          f"{x_err[target][high]:.4f}         |      {z_err[target][low]:.4f} / {z_err[target][high]:.4f}")

assert z_err["x"][low] > 3 * z_err["eps"][low]  # x-prediction: poor noise (score) estimate at low noise
assert x_err["eps"][high] > 3 * x_err["x"][high]  # eps-prediction: poor clean-data estimate at high noise
assert x_err["v"][high] < x_err["eps"][high] and z_err["v"][low] < z_err["x"][low]  # v avoids both blow-ups
for target in models:
    pretrained.record(f"vp_{target}_prediction", w2_ratio_ddim_100=w2_table[target], x_error_t001=x_err[target][low],
                      z_error_t001=z_err[target][low], x_error_t095=x_err[target][high])

# %% [markdown]
# The differences come straight from the conversions:
#
# * **x-prediction** at low noise: $\hat z = (x_t - a\hat x)/b$ divides the model's
#   error by $b \to 0$. A tiny error in $\hat x$ becomes a huge error in the noise (and
#   in the score), exactly where the sampler makes its final, fine-grained moves.
# * **$\epsilon$-prediction** at high noise: $\hat x = (x_t - b\hat z)/a$ divides by
#   $a \to 0$. Near pure noise its clean-data estimate, and with it the first sampling
#   steps, are noisy. (On this data that costs little: the first steps only need the
#   rough mean, and later steps correct them.)
# * **v-prediction**, $v = a z - b x$, never divides by a vanishing number
#   ($ad - bc = a^2 + b^2 = 1$ on a VP path): it avoids both blow-ups. It is the safe
#   default when the ends matter (Salimans and Ho introduced it for distillation to a
#   few steps, where the high-noise end carries much of the work). Rectified flow's
#   velocity $z - x$ has the same property.
#
# Which target gives the best *samples* is an empirical question that depends on the
# data, the network and the sampler; the table above is the honest answer for this
# network, this data and this budget. The ends where each target is weak are not.
#
# Finally DDPM as its authors ran it: the learned $\epsilon$ model with ancestral
# sampling.

# %%
ddpm_outs = [sampling.ddpm(models["eps"], b_start * z, 1000, path=vp_lin, target="eps", generator=sample_gen)
             for z in noise_sets]
ddpm_ratio = metrics.wasserstein2_ratio(ddpm_outs, data_sets, fresh_sets)
ddpm_modes = metrics.mode_coverage(torch.cat(ddpm_outs), data.means, std=MODE_STD)
print(f"learned eps-prediction, DDPM ancestral sampling (1000 steps): W2 ratio {ddpm_ratio:.2f}, "
      f"{100 * ddpm_modes['high_quality']:.1f}% of samples on a mode, mode spread {ddpm_modes['within_std']:.3f} "
      f"(real data: {real_spread:.3f})")
fig = viz.plot_samples({"data": data_sets[0], "DDPM, learned eps": ddpm_outs[0]}, colors=[viz.DATA, viz.MODEL])
plt.show()
assert ddpm_ratio <= 1.4
pretrained.record("vp_eps_prediction", ddpm_w2_ratio=ddpm_ratio, ddpm_on_a_mode=ddpm_modes["high_quality"])

# %% [markdown]
# ## 8. Perspectives on diffusion
#
# The lecture lists eight ways to look at the same model (after Sander Dieleman's
# "Perspectives on diffusion"). The ones this course demonstrates, and where:
#
# | perspective | what it says | where you saw it |
# |---|---|---|
# | latent variable model | fixed noising encoder, learned decoder, ELBO gives $\epsilon$-prediction | section 4: the 1000-step chain and its closed-form marginal; DDPM sampling in sections 6 and 7 |
# | score matching | the network estimates $\nabla \log p_t$ | section 5: Tweedie's score vs autograd; Langevin in section 6 |
# | SDE solver | sampling integrates the reverse-time SDE | section 6: Euler-Maruyama on the reverse SDE |
# | flow | a deterministic ODE carries noise to data | section 6: the probability-flow ODE; the rectified-flow notebook |
# | autoencoder | a denoiser maps noisy inputs to clean ones | section 3: $\hat x$, the x-prediction, is a denoising autoencoder at every noise level |
# | expectation estimator | the optimal prediction is a conditional mean | the oracle throughout: $E[x \mid x_t]$, $E[z \mid x_t]$ (rectified-flow notebook, section 6) |
#
# (The lecture's other two, recurrent networks and autoregressive models, are about
# unrolling the sampler and about spectral ordering; they are not demonstrated here.)
#
# ## 9. Notation recap: the course, the slides and the papers
#
# The same ideas go by different letters and opposite directions. Before you read a
# paper or someone else's code, find its row here.
#
# | what | this course (and the slides) | elsewhere | to convert |
# |---|---|---|---|
# | direction of time | $t = 0$ data, $t = 1$ noise; sampling runs from 1 to 0 | flow matching (Lipman et al. 2023) and code built on it (torchcfm, most flow-matching tutorials): $t = 0$ noise, $t = 1$ data; DDPM: integer steps $1, \dots, T$, $T$ = noise | $t_{theirs} = 1 - t$ |
# | rectified flow | $x_t = (1 - t)\,x + t\,z$, velocity $v = z - x$ | flow matching: $x_t = t\,x + (1 - t)\,z$, $u = x - z$ | $u = -v$ (the same line, walked the other way) |
# | any path | $x_t = a(t)\,x + b(t)\,z$ | DDPM: $\sqrt{\bar\alpha_t}\,x_0 + \sqrt{1 - \bar\alpha_t}\,\epsilon$; VDM: $\alpha_t x + \sigma_t \epsilon$; the slides' VP: $\sqrt{\sigma(t)}\,x + \sqrt{1 - \sigma(t)}\,z$ | $a = \sqrt{\bar\alpha} = \alpha_t$; the slides' $\sigma(t)$ is $\bar\alpha(t)$, not a noise level |
# | noise level | $b(t)$ (VE: $\sigma(t)$, with $a = 1$) | EDM and score SDEs: $\sigma$; VDM: $\sigma_t$ | on VE, $b = \sigma$ |
# | signal-to-noise ratio | $a^2 / b^2$, and log SNR | VDM: $\mathrm{SNR}(t) = \alpha_t^2 / \sigma_t^2$, $\lambda = \log \mathrm{SNR}$; DPM-Solver: half of it | same quantity |
# | noise | $z$ | $\epsilon$ (DDPM, most code) | same |
# | targets | $x$, $\epsilon$, $v = a z - b x$, velocity $a' x + b' z$, score $-z / b$ (section 3) | Salimans and Ho's $v = \alpha_t \epsilon - \sigma_t x$; the slides' v has a slip (section 3) | section 3's conversions |
# | network call | `model(x_t, t, y)` (label last: optional) | the slides: `model(x_t, y, t)` | argument order only |
# | guidance weight | $v = (1 + w)\,v^y - w\,v^\varnothing$: $w = 0$ is no guidance (slides, Ho and Salimans) | the lecture notes and most libraries ("guidance scale"): $v^\varnothing + s\,(v^y - v^\varnothing)$, $s = 1$ is no guidance | $s = 1 + w$ |
# | training-time sampler | logit-normal location $m$, spread $s$ | SD3 (Esser et al. 2024) writes the same $m, s$ | same |
# | resolution shift | factor $k$: $t' = k t / (1 + (k - 1) t)$ | SD3 and most code also call the shift factor $s$ (or "shift") | $k$ = their shift |
#
# ## Exercises
#
# **Exercise 1: conversions.** Given an $\epsilon$-prediction `eps` at `x_t` on a path
# with coefficients `a`, `b` and derivatives `da`, `db` (tensors broadcastable against
# `x_t`), return the implied clean-data estimate $\hat x$ and the implied velocity
# $a'\hat x + b'\hat z$.

# %% tags=["exercise"]
def eps_to_x_and_velocity(eps, x_t, a, b, da, db):
    ### BEGIN SOLUTION
    x_hat = (x_t - b * eps) / a
    return x_hat, da * x_hat + db * eps
    ### END SOLUTION


# %% tags=["check"]
from cs231n_gen.exercises import check_eps_conversions

check_eps_conversions(eps_to_x_and_velocity)

# %% [markdown]
# **Exercise 2: one DDPM ancestral step.** Given the current state `x_t`, the model's
# clean-data estimate `x_hat`, the path coefficients at the current time (`a_t`, `b_t`)
# and at the next, less noisy time (`a_s`, `b_s`), and a standard normal `noise`, return
# one draw of $x_s$ from $q(x_s \mid x_t, x = \hat x)$ (section 4's formula).

# %% tags=["exercise"]
def ddpm_step(x_t, x_hat, a_t, b_t, a_s, b_s, noise):
    ### BEGIN SOLUTION
    a_ts = a_t / a_s
    b_ts2 = b_t**2 - a_ts**2 * b_s**2
    mean = a_s * b_ts2 / b_t**2 * x_hat + a_ts * b_s**2 / b_t**2 * x_t
    return mean + (b_ts2 * b_s**2 / b_t**2) ** 0.5 * noise
    ### END SOLUTION


# %% tags=["check"]
from cs231n_gen.exercises import check_ddpm_step

check_ddpm_step(ddpm_step)

# %% [markdown]
# ## Summary
#
# | slide | what you saw here |
# |---|---|
# | $x_t = a x + b z$, $y = c x + d z$, one loss | section 1: `path.loss`; rectified flow is $a = 1-t, b = t, c = -1, d = 1$ |
# | VP ($a^2 + b^2 = 1$) and VE ($a = 1$, large $\sigma$) | section 2: variance stays 1 on VP paths; VE's SNR at $t = 1$ is $4 \cdot 10^{-4}$ |
# | x-, $\epsilon$-, v-prediction | section 3: all targets convert into each other (to $10^{-5}$); the slide's v line is corrected to $v = a z - b x$ |
# | latent variable model | section 4: the 1000-step chain has the closed-form marginal of the VP linear path |
# | learns the score | section 5: $-E[z \mid x_t]/b = \nabla \log p_t$; Langevin samples with it |
# | solves an SDE | section 6: reverse SDE, probability-flow ODE (Euler, Heun), DDPM, DDIM, Langevin: all reach the data with the exact model |
# | (where to put the steps) | section 6: 20 DDIM steps evenly spaced in log SNR keep each mode's width; 50 uniform steps in $t$ do not |
# | "how do we choose these functions?" | section 7: the target decides where errors are amplified; v is the balanced choice |
# | notation | section 9: one table of the course's letters against the slides' and the papers' |
#
# Next: **autoregressive models over VQ latents**: the other way to model p(x) exactly,
# one token at a time.
