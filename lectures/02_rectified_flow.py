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
# # Diffusion, the clean way: rectified flow
#
# *CS231n Lecture 14, "Generative Models 2": diffusion models.*
#
# The diffusion literature is a thicket of notation. The lecture cuts through it with
# the simplest modern formulation, **rectified flow**:
#
# 1. pick a noise distribution $z \sim p_{noise} = \mathcal N(0, I)$;
# 2. corrupt data $x$ at a noise level $t \in [0, 1]$: $x_t = (1 - t)\,x + t\,z$
#    (**t = 0 is clean data, t = 1 is pure noise**);
# 3. train a network $f_\theta(x_t, t)$ to predict the velocity $v = z - x$;
# 4. generate by starting from noise at $t = 1$ and taking small steps against $v$
#    until $t = 0$.
#
# We do all four on 2D data, where we can *see* everything, and where we can compute
# the exact answer the network is trying to learn. Along the way you will meet the
# lecture's key question: **what is the optimal prediction for the network?**
#
# Run the cells top to bottom. Cells that make a claim check it with an `assert`.
#
# **How long:** about 1 minute in full mode on a 2-core laptop CPU, which trains every
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
import matplotlib.pyplot as plt
import torch

from cs231n_gen import budget, seed_everything
from cs231n_gen import metrics, oracle, pretrained, viz, widgets
from cs231n_gen.data import GaussianMixture, digits, eight_gaussians
from cs231n_gen.nn import TimeMLP
from cs231n_gen.paths import rectified_flow_loss
from cs231n_gen.sampling import euler
from cs231n_gen.train import fit

# %% [markdown]
# ## 1. Data and noise
#
# Our data distribution is a mixture of eight Gaussians on a ring of radius 2 (each
# with standard deviation 0.1). Only *samples* of it are used for training: the
# formula is what lets us check the answers later. The noise distribution is a unit
# Gaussian.

# %%
data = eight_gaussians(radius=2.0, std=0.1)
MODE_STD = float(data.stds[0])
x_data = data.sample(2000)
z_noise = torch.randn(2000, 2)

fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
viz.plot_density(axes[0], data)
axes[0].set_title("p_data (density)", fontsize=10)
viz.scatter(axes[1], x_data, color=viz.DATA, title="x ~ p_data (samples)")
viz.scatter(axes[2], z_noise, color=viz.NOISE, title="z ~ p_noise = N(0, I)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 2. Corrupting data at noise level t
#
# Pair every data point $x$ with its own noise $z$ and slide along the straight line
# between them:
#
# $$x_t = (1 - t)\,x + t\,z, \qquad t = 0 \text{ no noise}, \quad t = 1 \text{ full noise.}$$
#
# The velocity along that line is constant: $\frac{d x_t}{dt} = z - x = v$. Drag the
# slider (or press play): every point moves in a straight line, yet the *cloud* morphs
# from eight blobs into one Gaussian.

# %%
widgets.interpolation_explorer(x_data[:600], z_noise[:600])

# %% [markdown]
# ## 3. Training: the loop from the slide
#
# The slide's training loop, for one example at a time:
#
# ```python
# for x in dataset:
#     z = torch.randn_like(x)
#     t = random.uniform(0, 1)
#     xt = (1 - t) * x + t * z
#     v = model(xt, t)
#     loss = (z - x - v).square().sum()
# ```
#
# Below is the same thing for a batch: each example gets its own noise and its own
# $t$, and the loss averages over the batch. `fit` (from the library) does the rest:
# device, optimiser, progress bar, loss history.

# %%
def rf_loss(model, x, generator=None):
    z = torch.randn(x.shape, generator=generator, device=x.device)
    t = torch.rand(len(x), 1, generator=generator, device=x.device)
    xt = (1 - t) * x + t * z
    v = model(xt, t)
    return (z - x - v).square().sum(dim=1).mean()


# The six lines above are exactly the library's loss (same noise, same t, same value):
g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
probe_model = TimeMLP()
assert torch.allclose(rf_loss(probe_model, x_data[:256], g1), rectified_flow_loss(probe_model, x_data[:256], g2))

# %%
TRAIN_STEPS = 6000
model = TimeMLP(dim=2, hidden=256, depth=3)
history = fit(model, rf_loss, data, steps=TRAIN_STEPS, batch_size=512, lr=2e-3, device=device, shipped="rf_2d")
print(f"{history.steps} steps at {history.steps_per_second:.0f} steps/s; final loss {history.smoothed(200)[-1]:.3f}")

ax = viz.plot_loss(history, window=200)
ax.set_ylim(0, 8)
ax.set_title("Rectified-flow training loss: it levels off far above 0", fontsize=10)
plt.show()

# %% [markdown]
# The loss levels off far above 0 (its final smoothed value is printed above). That is
# not a training failure: we will see in section 6 that **no** network can do better.
#
# ## 4. Sampling: Euler steps from t = 1 to t = 0
#
# To generate, start from noise and follow the predicted velocity backwards in time:
#
# ```python
# sample = torch.randn(x_shape)
# for t in torch.linspace(1, 0, num_steps):
#     v = model(sample, t)
#     sample = sample - v / num_steps
# ```
#
# One detail to get right: `torch.linspace(1, 0, num_steps)` holds `num_steps` points
# spaced $1/(T-1)$ apart, *including* $t = 0$, while each step moves $1/T$. The
# consistent grid evaluates at $t = 1, 1 - \frac1T, \dots, \frac1T$ and lands exactly
# on $t = 0$; that is what `cs231n_gen.sampling.euler` does (and what the second
# exercise asks you to write).
#
# How good are the samples? We compare them to the data with the exact 2-Wasserstein
# distance (optimal transport). Even a fresh draw of real data is not at distance 0
# from another draw (finite samples), so we report the **W2 ratio**
# $W_2(\text{samples}, \text{data}) / W_2(\text{fresh data}, \text{data})$:
# 1 means "as close as new real data". It is noisy for a single set of points (the
# eight modes get slightly different counts by chance), so the course's protocol
# averages over ten sets of 1000 points and prints what a *third*
# draw of real data scores next to every model: ratios that far below 1 are noise, not
# "better than real".

# %%
SAMPLE_STEPS = 50
gen = torch.Generator(device=device).manual_seed(1)
sets = metrics.evaluation_sets(data.to(device), n_sets=10, generator=gen)
noise_sets, data_sets, fresh_sets = sets["noise"], sets["data"], sets["fresh"]

learned_sets = [euler(model, z, SAMPLE_STEPS) for z in noise_sets]
oracle_model = oracle.VelocityOracle(data.to(device))
oracle_sets = [euler(oracle_model, z, SAMPLE_STEPS) for z in noise_sets]

w2_learned = metrics.wasserstein2_ratio(learned_sets, data_sets, fresh_sets)
w2_oracle = metrics.wasserstein2_ratio(oracle_sets, data_sets, fresh_sets)
w2_real = metrics.wasserstein2_ratio(sets["real"], data_sets, fresh_sets)
print(f"W2 ratio, {SAMPLE_STEPS} Euler steps: learned model {w2_learned:.3f}, exact velocity (oracle) {w2_oracle:.3f}"
      f"  |  fresh real data {w2_real:.3f}")
cover = {name: metrics.mode_coverage(torch.cat(outs), data.means, std=MODE_STD)
         for name, outs in (("learned", learned_sets), ("oracle", oracle_sets), ("real data", sets["real"]))}
for name, c in cover.items():
    print(f"{name:>9}: {c['covered']}/8 modes, {100 * c['high_quality']:.1f}% of samples on a mode, spread within "
          f"a mode {c['within_std']:.3f} (the modes' std: {MODE_STD:g})")

fig = viz.plot_samples({"data": data_sets[0], f"learned model, {SAMPLE_STEPS} steps": learned_sets[0],
                        f"oracle, {SAMPLE_STEPS} steps": oracle_sets[0]},
                       colors=[viz.DATA, viz.MODEL, viz.ORACLE])
plt.show()

assert w2_oracle <= 1.1, w2_oracle
assert w2_learned <= 1.3, w2_learned
assert abs(w2_real - 1) < 0.15, w2_real  # what "noise in the ratio" looks like
assert cover["learned"]["covered"] == 8 and abs(cover["oracle"]["within_std"] - MODE_STD) < 0.1 * MODE_STD

# %% [markdown]
# ## 5. Watching the particles flow
#
# `euler(..., return_trajectory=True)` keeps every intermediate state. Press play:
# 1000 particles start as a Gaussian blob at $t = 1$ and flow onto the eight modes at
# $t = 0$. Notice that early on everything drifts together, and the particles only
# "decide" which mode to join late in the flow.

# %%
x0, trajectory, times = euler(model, noise_sets[0][:1000], SAMPLE_STEPS, return_trajectory=True)
widgets.flow_player(trajectory, times, reference=data_sets[0][:1000])

# %%
fig, ax = plt.subplots(figsize=(4.5, 4.5))
viz.plot_trajectories(ax, trajectory, n_show=300, reference=data_sets[0])
ax.set_title("300 sampling paths: noise (grey) to samples (orange)", fontsize=10)
plt.show()

# %% [markdown]
# Are the paths straight? Every training pair $(x, z)$ was joined by a straight line,
# but the sampler follows the *averaged* velocity. Measure each path against its chord
# (the segment from its noise to its sample): the largest distance of the path from the
# chord, as a fraction of the chord's length, is 0 for a straight path
# (`metrics.path_straightness`). The exact velocity's paths are measured the same way.

# %%
_, oracle_traj, _ = euler(oracle_model, noise_sets[0][:1000], SAMPLE_STEPS, return_trajectory=True)
bend = {"learned": metrics.path_straightness(trajectory), "exact (oracle)": metrics.path_straightness(oracle_traj)}
for name, b in bend.items():
    print(f"{name:>14}: the typical (median) path strays {100 * b['deviation']:.1f}% of its chord's length from "
          f"it (the most bent long path: {100 * b['max_deviation']:.0f}%) and is {b['length_ratio']:.2f}x as long")

k = bend["exact (oracle)"]["most_bent"]
path = oracle_traj[:, k].cpu()
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
viz.scatter(axes[0], data_sets[0], color=viz.DATA, lim=3.5, alpha=0.1, s=2)
axes[0].plot(path[:, 0], path[:, 1], color=viz.ORACLE, lw=2, label="sampling path (exact velocity)")
axes[0].plot(path[[0, -1], 0], path[[0, -1], 1], "k--", lw=1.2, label="its chord")
axes[0].legend(fontsize=8, loc="center")  # the middle of the ring is empty
axes[0].set_title("the most bent of the longer half of 1000 exact paths", fontsize=10)
chord = path[-1] - path[0]
rel = path - path[0]
along = (rel @ chord) / chord.dot(chord)
off = (rel - along[:, None].clamp(0, 1) * chord).norm(dim=1) / chord.norm()
axes[1].plot(torch.linspace(1, 0, len(off)), off, color=viz.ORACLE, lw=2)
axes[1].invert_xaxis()
axes[1].set(xlabel="t (sampling runs from 1 to 0)", ylabel="distance from the chord / chord length",
            title="how far that path strays from a straight line")
plt.tight_layout()
plt.show()
assert bend["exact (oracle)"]["deviation"] > 0.03 and bend["learned"]["deviation"] > 0.03  # curved, not straight
assert bend["exact (oracle)"]["max_deviation"] > 0.2

# %% [markdown]
# The paths are *not* straight (the plotted one curves away from its chord by a large
# fraction of its length), even though every training pair was joined by a straight
# line: early on every particle drifts toward the middle of the data, and only late in
# the flow does it turn toward its mode. Why? That is the next section.
#
# ## 6. What is the network trying to learn?
#
# Many pairs $(x, z)$ give the same $x_t$. The network sees only $x_t$ and $t$, so the
# best it can do under the squared loss is the **average** target over all pairs that
# could have produced $x_t$:
#
# $$v^*(x_t, t) = \mathbb E[z - x \mid x_t] = \mathbb E[z \mid x_t] - \mathbb E[x \mid x_t].$$
#
# For a Gaussian mixture this conditional expectation has a closed form (Bayes' rule
# per mode, then a weighted average), implemented in `cs231n_gen.oracle`. It is the
# "physical limit": the field a perfect network would learn. Below, the arrows show
# $-v$, the direction a sample moves as $t$ decreases, over the cloud of $x_t$ (grey).

# %%
QUIVER_TIMES = [1.0, 0.75, 0.5, 0.25, 0.05]
backgrounds = [(1 - t) * x_data[:800] + t * z_noise[:800] for t in QUIVER_TIMES]
fig = viz.compare_fields({"oracle v*": oracle.VelocityOracle(data), "learned": model.cpu()},
                         QUIVER_TIMES, background=backgrounds)
fig.suptitle("Optimal (top) and learned (bottom) sampling direction -v at several t", y=1.02)
plt.show()
model.to(device)

# How close is the learned field? Its excess loss E||f - v*||^2 at each t, relative to
# the loss that even v* pays there.
gen_eval = torch.Generator(device=device).manual_seed(2)
for t in QUIVER_TIMES:
    r = metrics.excess_loss(model, data, n=8192, t=t, generator=gen_eval)
    print(f"t = {t:4.2f}: excess {r['excess']:.4f} = {100 * r['ratio']:5.2f}% of the oracle's loss {r['oracle']:.3f}")
    assert r["ratio"] < 0.05, (t, r)

# %% [markdown]
# Read the arrows where the grey points are. At small $t$, between the modes and far
# from the cloud, the exact field's arrows are long (they point at a mode from far
# away, and $-v^*$ grows with the distance) while the learned ones are short or
# aimless: no training $x_t$ ever landed there, so the loss never asked the network
# anything about those places, and a sampler, which only visits where the grey points
# are, never asks either. The excess-loss numbers above are averaged where the data
# is, which is the part that matters.
#
# ## 7. Why the optimal prediction is an average
#
# Take one noisy point $x_t$ at $t = 0.5$ and collect training pairs $(x, z)$ whose
# $x_t$ lands near it. Their targets $v = z - x$ (thin arrows) point every which way:
# the data point could have come from several modes. The network is trained on all of
# them, so its best answer is their mean (thick black), which is exactly the oracle's
# $v^*$ (green).

# %%
t_probe, point, radius = 0.5, torch.tensor([0.6, 0.3]), 0.08
gen_mc = torch.Generator().manual_seed(3)
x_mc = data.sample(400_000, generator=gen_mc)
z_mc = torch.randn(x_mc.shape, generator=gen_mc)
near = ((1 - t_probe) * x_mc + t_probe * z_mc - point).norm(dim=1) < radius
v_pairs = (z_mc - x_mc)[near]
v_star = oracle.velocity(data, point[None], t_probe)[0]
print(f"{int(near.sum())} pairs land within {radius} of x_t = {point.tolist()}; "
      f"mean target {v_pairs.mean(0).numpy().round(2)}, oracle v* {v_star.numpy().round(2)}")
assert (v_pairs.mean(0) - v_star).norm() < 0.15

fig, ax = plt.subplots(figsize=(4.8, 4.8))
viz.scatter(ax, x_data, color=viz.DATA, alpha=0.2, lim=3.5)
show = v_pairs[:60]
ax.quiver(point[0].repeat(len(show)), point[1].repeat(len(show)), show[:, 0], show[:, 1], color=viz.NOISE,
          angles="xy", scale_units="xy", scale=1, width=0.004, alpha=0.6)
ax.quiver(point[0], point[1], *v_pairs.mean(0), color="k", angles="xy", scale_units="xy", scale=1, width=0.012)
ax.quiver(point[0], point[1], *v_star, color=viz.ORACLE, angles="xy", scale_units="xy", scale=1, width=0.006)
ax.set_title("targets z - x of pairs through one x_t (grey),\ntheir mean (black) and the oracle v* (green)", fontsize=9)
plt.show()

# %% [markdown]
# The ends of the time range are easy, because there the average is simple:
#
# * **Full noise, $t = 1$**: $x_t = z$ tells us nothing about $x$, so
#   $\mathbb E[x \mid x_t]$ is the **mean of $p_{data}$** and $v^* = x_t - \mathbb E[x]$.
#   A sampling step from $t = 1$ heads straight for the data mean.
# * **No noise, $t = 0$**: $x_t = x$ tells us nothing about $z$, so
#   $\mathbb E[z \mid x_t]$ is the **mean of $p_{noise}$** (zero) and $v^* = -x_t$.
# * **In between** the network must work out *which mode* $x_t$ came from: the field is
#   sharply nonlinear, and the targets are most ambiguous.
#
# Both ends are affine functions of $x_t$. So a good measure of "how hard is this noise
# level" is how much worse the best *affine* predictor does than the optimal one. We
# also plot the loss the oracle pays (the irreducible loss) and the learned model's loss.

# %%
grid_pts = torch.randn(500, 2) * 2
mean = data.mean
assert torch.allclose(oracle.posterior_mean(data, grid_pts, 1.0), mean.expand(500, 2), atol=1e-5)
assert torch.allclose(oracle.velocity(data, grid_pts, 1.0), grid_pts - mean, atol=1e-5)
assert torch.allclose(oracle.noise_mean(data, grid_pts, 0.0), torch.zeros(500, 2), atol=1e-6)
assert torch.allclose(oracle.velocity(data, grid_pts, 0.0), -grid_pts, atol=1e-5)
print("t = 1: E[x | x_t] is the data mean; t = 0: E[z | x_t] is the noise mean (0). Checked.")

t_curve = torch.linspace(0, 1, budget(full=21, quick=11))
gen_curve = torch.Generator().manual_seed(4)
loss_oracle = oracle.irreducible_loss(data, t_curve, n=budget(full=16384, quick=4096), generator=gen_curve)
loss_affine = oracle.affine_loss(data, t_curve, n=budget(full=16384, quick=4096), generator=gen_curve)
loss_model = torch.tensor([metrics.excess_loss(model, data, n=4096, t=float(t), generator=gen_eval)["excess"]
                           for t in t_curve]) + loss_oracle

fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
axes[0].plot(t_curve, loss_affine, "--", color="k", label="best affine predictor")
axes[0].plot(t_curve, loss_oracle, color=viz.ORACLE, lw=4, alpha=0.5, label="oracle v* (irreducible)")
axes[0].plot(t_curve, loss_model, "o", ms=3, color=viz.MODEL, label="learned model (on top of the oracle)")
axes[0].set_xlabel("noise level t")
axes[0].set_ylabel("E ||prediction - (z - x)||^2")
axes[0].legend(fontsize=8)
gap = (loss_affine - loss_oracle) / loss_oracle
axes[1].plot(t_curve, 100 * gap, color="k")
axes[1].set_xlabel("noise level t")
axes[1].set_ylabel("affine loss above oracle (%)")
axes[1].set_title("how nonlinear v* is: 0 at both ends", fontsize=10)
plt.tight_layout()
plt.show()

print(f"affine gap at t = 0: {100 * gap[0]:.1f}%, at t = 1: {100 * gap[-1]:.1f}%, "
      f"largest {100 * gap.max():.0f}% at t = {float(t_curve[gap.argmax()]):.2f}")
assert abs(gap[0]) < 0.03 and abs(gap[-1]) < 0.03
assert gap.max() > 1.0 and 0 < t_curve[gap.argmax()] < 1
t_peak, t_easiest = float(t_curve[gap.argmax()]), float(t_curve[loss_oracle.argmin()])
print(f"the nonlinearity peaks at t = {t_peak:.2f}; the irreducible loss is lowest at t = {t_easiest:.2f} "
      f"({float(loss_oracle.min()):.2f}, against {float(loss_oracle[0]):.2f} at t = 0 and "
      f"{float(loss_oracle[-1]):.2f} at t = 1)")
assert abs(t_peak - t_easiest) <= 0.15  # the hardest level to learn is where the least is left to guess

# %% [markdown]
# What this figure says:
#
# * The loss never reaches zero: the green curve is what a *perfect* network pays. Our
#   model's total excess loss over the oracle is tiny (measured below), so the level
#   where training levelled off is almost all irreducible (checked below too).
# * The learned model's points sit on the oracle's curve: at this scale its excess loss
#   is invisible (section 6 measured it at each $t$).
# * The hard, ambiguous noise levels are in between the ends (for these narrow,
#   well-separated modes the peak sits at fairly low $t$). Yet uniform $t$ spends equal
#   effort on every noise level: the **noise schedules** lecture fixes that.
# * "Hardest" is not "highest loss". The irreducible loss is *lowest* right where the
#   nonlinearity peaks: there $x_t$ lies close to one mode, so little is left to guess
#   about the target, but getting that answer means deciding *which* mode, a sharply
#   nonlinear function of $x_t$. The loss measures what cannot be known; the gap
#   measures how much work it takes to know the rest.

# %%
excess = metrics.excess_loss(model, data, n=65536, generator=gen_eval)
print(f"over t ~ U[0, 1]: oracle loss {excess['oracle']:.3f}, learned model's excess {excess['excess']:.4f} "
      f"= {100 * excess['ratio']:.2f}% of it")
assert excess["ratio"] <= 0.02, excess
final_loss = history.smoothed(200)[-1]
print(f"training levelled off at {final_loss:.3f}: {final_loss / excess['oracle']:.3f} x the irreducible loss")
assert abs(final_loss / excess["oracle"] - 1) < 0.05  # the plateau of section 3 is the oracle's loss

# %% [markdown]
# ## 8. How many steps?
#
# Euler's method follows the velocity in a straight line for a whole step. The true
# paths curve (section 5), so big steps overshoot. The extreme case is **one step**:
# from $t = 1$, $x_0 = z - v^*(z, 1) = z - (z - \mathbb E[x]) = \mathbb E[x]$: every sample
# lands on the data mean, the average of all modes. Below: quality against the number
# of steps, for the learned model and the exact velocity.

# %%
STEP_COUNTS = [1, 2, 5, 10, 20, 50]
SWEEP_REPEATS = 4
ratios = {"learned": [], "oracle": []}
on_mode = {"learned": [], "oracle": []}
grids = {}
real = metrics.mode_coverage(fresh_sets[0], data.means, std=MODE_STD)["high_quality"]
print(f"fresh real data: {100 * real:.1f}% of points within 3 std of a mode")
for steps in STEP_COUNTS:
    for name, field in (("learned", model), ("oracle", oracle_model)):
        outs = [euler(field, z, steps) for z in noise_sets[:SWEEP_REPEATS]]
        ratios[name].append(metrics.wasserstein2_ratio(outs, data_sets[:SWEEP_REPEATS], fresh_sets[:SWEEP_REPEATS]))
        on_mode[name].append(metrics.mode_coverage(torch.cat(outs), data.means, std=MODE_STD)["high_quality"])
        grids[name, steps] = outs[0]
    print(f"{steps:3d} steps: W2 ratio learned {ratios['learned'][-1]:5.2f}, oracle {ratios['oracle'][-1]:5.2f}"
          f"  |  on a mode: learned {100 * on_mode['learned'][-1]:5.1f}%, oracle {100 * on_mode['oracle'][-1]:5.1f}%")

fig, axes = plt.subplots(2, 4, figsize=(11, 5.6))
for c, steps in enumerate([1, 2, 5, 50]):
    for r, name in enumerate(["learned", "oracle"]):
        viz.scatter(axes[r, c], data_sets[0], color=viz.DATA, alpha=0.1)
        viz.scatter(axes[r, c], grids[name, steps], color=viz.MODEL if r == 0 else viz.ORACLE,
                    title=f"{name}, {steps} step{'s' if steps > 1 else ''}")
plt.tight_layout()
plt.show()

fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
LINES = {"learned": "learned", "oracle": "oracle v*"}
styles = {"learned": ("o-", viz.MODEL), "oracle v*": ("s--", viz.ORACLE)}
viz.curves(axes[0], STEP_COUNTS, {label: ratios[name] for name, label in LINES.items()}, logy=True, styles=styles,
           xlabel="Euler steps", ylabel="W2 ratio (1 = perfect)", reference=(1.0, "fresh real data"))
viz.curves(axes[1], STEP_COUNTS, {label: [100 * v for v in on_mode[name]] for name, label in LINES.items()},
           styles=styles, xlabel="Euler steps", ylabel="% of samples within 3 std of a mode",
           reference=(100 * real, "fresh real data"))
for ax in axes:
    viz.step_axis(ax, STEP_COUNTS, "Euler steps")
plt.tight_layout()
plt.show()

one_step = euler(oracle_model, noise_sets[0], 1)
assert torch.allclose(one_step, data.mean.to(one_step).expand_as(one_step), atol=1e-4)
assert ratios["oracle"][0] > 5 and ratios["learned"][0] > 5
assert ratios["oracle"][-1] < ratios["oracle"][1] / 2
assert on_mode["oracle"][-1] > on_mode["oracle"][2] + 0.05  # 50 steps clearly beat 5 on the modes
assert on_mode["oracle"][-1] > real - 0.03
assert on_mode["learned"][-1] > 0.93
pretrained.record("rf_2d", w2_ratio_50_steps=w2_learned, excess_loss_ratio=excess["ratio"],
                  on_a_mode_50_steps=on_mode["learned"][-1])
for name in ratios:  # W2 at 5 steps is as low as at 50, while the modes are still bridged (asserted above)
    assert ratios[name][2] < ratios[name][-1] + 0.2, (name, ratios[name])
print("One oracle step sends every sample to the data mean: checked.")

# %% [markdown]
# What goes wrong with too few steps: each step moves along an *averaged* direction.
# With one step, everything collapses to the mean of the data; with two, samples fill
# the disk inside the ring; with five, the modes appear but are joined by bridges of
# samples that took a wrong turn; by 50 the samples are as close to the data as fresh
# data is.
#
# **Read the two metrics together.** At five steps the W2 ratio is already as low as at
# 50 steps (the table above; checked), yet the picture shows bridges between the modes. W2 is blind to them: the stray
# points sit *between* modes, where they cheaply absorb the random imbalance in mode
# counts that dominates W2 for sets of 1000 points (which is also why these ratios
# wobble from one set to the next). The fraction of samples that land on a mode catches what W2 misses.
# No single number tells the whole story; look at the samples too.
#
# The learned model tracks the oracle's W2 at every step count, but it leaves a few
# percent more samples between the modes: its remaining error lives where the optimal
# field is sharpest (small $t$, the $t = 0.25$ column in section 6), and more training
# or a schedule that spends more effort there (next lectures) shrinks it. Making
# few-step sampling work is what **distillation** and straighter paths are for.
#
# ## 9. A perfect network would only copy its training set
#
# The oracle is the best prediction for the true $p_{data}$. But a network never sees
# $p_{data}$: it sees $N$ training examples, and the loss it minimises is the loss over
# their **empirical distribution** $\hat p = \frac1N \sum_i \delta_{x_i}$. The exact
# minimiser of *that* loss is the oracle of $\hat p$, and sampling with it can only end
# on a training example: as $t \to 0$ the posterior over "which $x_i$ made this $x_t$"
# collapses onto one of them, and the last step lands on it. A perfect fit of the
# training loss is memorization.
#
# We take the 1,438 training digits at their native 8 x 8 (64 numbers each), build the
# oracle of their empirical distribution (a mixture of 1,438 spikes, std 0.001), and
# sample it. Next to it: a network trained on the same digits, and the same network
# trained on only 16 of them. The yardstick is held-out real digits: for each sample,
# the distance to its **nearest training image**, divided by the same distance for real
# digits the model never saw (`metrics.memorization`). About 1 or more: new images;
# near 0: copies.

# %%
x_train8, _ = digits(size=8, split="train")
x_test8, _ = digits(size=8, split="test")
train8, test8 = x_train8.flatten(1), x_test8.flatten(1)
few8 = train8[torch.randperm(len(train8), generator=torch.Generator().manual_seed(1))[:16]]
MEM_STEPS = 3000
z_mem = torch.randn(1000, 64, generator=torch.Generator().manual_seed(5))

empirical = GaussianMixture(train8, std=1e-3)  # the training set as a distribution: 1,438 spikes
memorized = {"empirical oracle": euler(oracle.VelocityOracle(empirical), z_mem, 50)}
flows = {"network, 1,438 digits": train8, "network, 16 digits": few8}
SHIPPED_AS = {"network, 1,438 digits": "rf_digits_all", "network, 16 digits": "rf_digits_16"}
for name, train_set in flows.items():
    seed_everything(0)
    net = TimeMLP(dim=64, hidden=256, depth=3, time_dim=64)
    fit(net, rectified_flow_loss, train_set, steps=MEM_STEPS, batch_size=128, lr=2e-3, device=device, desc=name,
        shipped=SHIPPED_AS[name])
    memorized[name] = euler(net, z_mem.to(device), 50).cpu()
training_sets = {"empirical oracle": train8, **flows}
reports = {name: metrics.memorization(s, training_sets[name], test8) for name, s in memorized.items()}
for name, r in reports.items():
    print(f"{name:22s}: nearest-training-image distance {r['ratio']:.3f} x that of held-out digits, "
          f"{100 * r['copies']:.0f}% near-copies (held-out digits: {100 * r['held_out_copies']:.0f}%)")

fig = plt.figure(figsize=(11, 4.6))
grid_spec = fig.add_gridspec(2, 4, width_ratios=[1.25, 1, 1, 1])
ax = fig.add_subplot(grid_spec[:, 0])
held_out_d, net_d = reports["empirical oracle"]["held_out_distances"], reports["network, 1,438 digits"]["distances"]
bins = torch.linspace(0, float(torch.cat([held_out_d, net_d]).max()), 40).numpy()
ax.hist(held_out_d, bins=bins, color="k", alpha=0.35, label="held-out real digits")
ax.hist(net_d, bins=bins, color=viz.MODEL, alpha=0.6, label="network, 1,438 digits")  # the 16-digit one: ratio above
ax.axvline(float(reports["empirical oracle"]["distances"].max()), color=viz.ORACLE, lw=4,
           label=f"empirical oracle: all {len(z_mem)} samples at 0")
ax.set_xlabel("distance to the nearest of the 1,438 training images")
ax.set_ylabel("count")
ax.legend(fontsize=8)
for col, (name, r) in enumerate(reports.items(), start=1):
    picks = torch.arange(6)
    pairs = torch.cat([memorized[name][picks], training_sets[name][r["nearest"][picks]]])
    for row, (part, label) in enumerate([(pairs[:6], "samples"), (pairs[6:], "nearest training image")]):
        viz.image_grid(fig.add_subplot(grid_spec[row, col]), part.view(-1, 1, 8, 8).clamp(-1, 1), per_row=3,
                       title=f"{name}:\n{label}" if row == 0 else label)
fig.tight_layout()
plt.show()

oracle_mem, net_mem, few_mem = (reports[k] for k in reports)
assert oracle_mem["ratio"] < 0.05 and oracle_mem["copies"] > 0.95, oracle_mem  # the exact minimiser copies
assert net_mem["ratio"] > 0.8 and net_mem["copies"] < 0.05, net_mem  # the network makes new images
assert few_mem["ratio"] < net_mem["ratio"] - 0.3, (few_mem, net_mem)  # few examples: toward copying
assert few_mem["copies"] > 0.15, few_mem
pretrained.record("rf_digits_all", nearest_distance_ratio=net_mem["ratio"], near_copies=net_mem["copies"])
pretrained.record("rf_digits_16", nearest_distance_ratio=few_mem["ratio"], near_copies=few_mem["copies"])

# %% [markdown]
# The empirical oracle returns training digits, pixel for pixel: its samples sit at
# distance 0 from the training set, where no held-out digit comes. The network trained
# on all 1,438 digits never copies: its samples are as far from the training set as new
# real digits (further, in fact: they are blurrier than real digits, a flaw of a small
# MLP, not a sign of creativity). Trained on 16 digits, the same network drifts toward
# its training images, and with the full budget a good share of its samples are
# near-copies. So a network generalises *because* it does not minimise its training
# loss exactly: limited capacity, limited training and the smoothness of the functions
# it can represent keep it away from the empirical oracle. With few examples and
# enough training it gets there, the diffusion counterpart of the GAN failure mode
# the GAN lecture measured on its DCGAN (section 7 there).
#
# ## Exercises
#
# **Exercise 1: the loss.** Write the rectified-flow loss for a batch, given the data
# `x` (n, 2), the noise `z` (n, 2) and the times `t` (n,). Return the mean over the
# batch of the squared error summed over the two coordinates.

# %% tags=["exercise"]
def rf_loss_exercise(model, x, z, t):
    ### BEGIN SOLUTION
    t = t[:, None]
    xt = (1 - t) * x + t * z
    v = model(xt, t[:, 0])
    return (z - x - v).square().sum(dim=1).mean()
    ### END SOLUTION


# %% tags=["check"]
from cs231n_gen.exercises import check_rf_loss

check_rf_loss(rf_loss_exercise)

# %% [markdown]
# **Exercise 2: the sampler.** Write Euler sampling: start at `z` (which is $x_1$),
# take `num_steps` equal steps from $t = 1$ down to $t = 0$, and return $x_0$. Call the
# model as `model(x, t)` with `t` a tensor of shape (n,).

# %% tags=["exercise"]
import torch


def euler_sample(model, z, num_steps):
    ### BEGIN SOLUTION
    x = z
    for i in range(num_steps):
        t = torch.full((x.shape[0],), 1 - i / num_steps)
        x = x - model(x, t) / num_steps
    return x
    ### END SOLUTION


# %% tags=["check"]
from cs231n_gen.exercises import check_euler_sampler

check_euler_sampler(euler_sample)

# %% [markdown]
# ## Summary
#
# | slide | what you saw here |
# |---|---|
# | $x_t = (1-t)x + tz$, $v = z - x$ | section 2: straight lines from data to noise |
# | training loop (6 lines) | section 3: the same lines, batched; loss levels off far above 0 |
# | sampling: $x \leftarrow x - v_t / T$ | sections 4-5: 50 Euler steps reach the data (W2 ratio near 1) |
# | optimal prediction is an average | sections 6-7: oracle $v^* = E[z - x \mid x_t]$, learned field matches it |
# | $t = 1$: mean of $p_{data}$; $t = 0$: mean of $p_{noise}$ | section 7: checked exactly; the middle is the hard part |
# | "often T = 50" | section 8: 1 step collapses to the mean, 50 steps are as good as fresh data |
# | memorization | section 9: the exact minimiser of the training loss copies training digits; a network does not, unless trained long on few |
#
# Next: **classifier-free guidance** (conditioning on a label and sharpening it) and
# **noise schedules** (spending training effort where it matters).
