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
# # Latent diffusion
#
# *CS231n Lecture 14, "Generative Models 2": latent diffusion models (Rombach et al. 2022).*
#
# Everything so far diffused the data itself: 2D points, 8 x 8 digits. Real images are
# big, and a diffusion model pays for every number at every one of its many steps. The
# lecture's way out:
#
# 1. **train an encoder and a decoder** that turn an $H \times W \times 3$ image into a
#    latent of $H/D \times W/D \times C$ numbers and back ("common setting: D = 8, C = 16");
# 2. "How do we train the encoder + decoder? **It's a VAE!** Typically with very small
#    KL prior weight";
# 3. "Problem: decoder outputs often **blurry**. Solution: **add a discriminator!**";
# 4. **freeze the encoder** and train a diffusion model on the latents; after training,
#    "sample random latent, iteratively apply diffusion model to remove noise, run
#    **decoder** to get image".
#
# We build all four on images richer than digits: 32 x 32 colour pictures of shapes
# with captions, drawn procedurally (so nothing is downloaded), and we check each claim:
# how much cheaper a latent step is, how blurry the VAE is and what the critic buys, that
# latent diffusion makes the shapes we ask for, and why sampling the VAE's own prior
# does not (the *aggregated posterior* argument of the lecture notes).
#
# Run the cells top to bottom. Cells that make a claim check it with an `assert`.
#
# **How long:** about 2.5 minutes in full mode on a 2-core laptop CPU, which trains every
# model here from scratch. To see the results first, start the lecture with
# `cs231n_gen.start_lecture(seed=0, pretrained=True)`: the course's trained models, which
# ship with the package, then stand in for the long trainings (the lecture says so where
# each one appears), and it takes about 30 seconds, as in quick mode (`CS231N_GEN_QUICK=1`).
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
import copy
from functools import partial

import matplotlib.pyplot as plt
import torch

from cs231n_gen import pretrained, seed_everything, viz, widgets
from cs231n_gen.autoencoding import encode, gaussian_fit_kl, gaussian_kl, latent_scale, train_autoencoder
from cs231n_gen.data import digits, shapes
from cs231n_gen.data.captioned_shapes import SHAPES
from cs231n_gen.guidance import Guided, conditional_rf_loss
from cs231n_gen.image_metrics import frechet_distance, shape_attributes, shape_features, sharpness
from cs231n_gen.nn import DiT
from cs231n_gen.nn.autoencoder import VAE, PatchDiscriminator, ResBlock
from cs231n_gen.nn.linear_vae import LinearVAE, ppca_log_likelihood
from cs231n_gen.runtime import median_seconds, timing_claims_apply
from cs231n_gen.sampling import euler
from cs231n_gen.train import fit

# %% [markdown]
# ## 1. Why pixels are expensive
#
# The slide's numbers: a 256 x 256 x 3 image becomes a 32 x 32 x 16 latent with D = 8,
# C = 16. Two ratios matter. The latent holds **12x fewer numbers**, and it has **64x
# fewer spatial positions**: a convolution costs in proportion to positions, and
# attention (lecture 06) in proportion to their square.

# %%
image_numbers, latent_numbers = 256 * 256 * 3, 32 * 32 * 16
image_positions, latent_positions = 256 * 256, 32 * 32
print(f"image {image_numbers:,} numbers, latent {latent_numbers:,}: {image_numbers / latent_numbers:.0f}x fewer")
print(f"image {image_positions:,} positions, latent {latent_positions:,}: {image_positions // latent_positions}x fewer")
assert image_numbers / latent_numbers == 12 and image_positions / latent_positions == 64

SIDE, D, C = 32, 4, 4  # our images, downsampling factor and latent channels
print(f"here: {SIDE}x{SIDE}x3 = {SIDE * SIDE * 3} numbers -> {SIDE // D}x{SIDE // D}x{C} = "
      f"{(SIDE // D) ** 2 * C} ({SIDE * SIDE * 3 // ((SIDE // D) ** 2 * C)}x fewer), {D * D}x fewer positions")

# %% [markdown]
# What does that buy? Image diffusion models are convolutional (U-Nets) or attention
# based (lecture 06): every layer runs at every position, so a step costs in proportion to
# the positions. We time one denoising step (a forward pass, batch 64) of the same
# convolutional trunk, the same layers and widths, on pixels and on latents:

# %%
def conv_trunk(channels, width=64):
    """The body of a convolutional denoiser: the same layers whatever the resolution."""
    return torch.nn.Sequential(torch.nn.Conv2d(channels, width, 3, padding=1), ResBlock(width), ResBlock(width),
                               torch.nn.Conv2d(width, channels, 3, padding=1)).to(device)


on_pixels, on_latents = conv_trunk(3), conv_trunk(C)
x_pixels = torch.randn(64, 3, SIDE, SIDE, device=device)
x_latents = torch.randn(64, C, SIDE // D, SIDE // D, device=device)
pixel_step = median_seconds(partial(on_pixels, x_pixels), repeats=9, device=device, at_least_s=0.1)
latent_step = median_seconds(partial(on_latents, x_latents), repeats=9, device=device, at_least_s=0.1)
print(f"convolutional trunk: {1e3 * pixel_step:6.1f} ms per step on pixels, {1e3 * latent_step:5.1f} ms on latents: "
      f"{pixel_step / latent_step:.0f}x cheaper ({D * D}x fewer positions)")
if timing_claims_apply(device):
    assert pixel_step / latent_step >= 4

# %% [markdown]
# Our own denoiser in section 5 is a small **diffusion transformer** (DiT, lecture 06
# opens it up): it cuts its input into 2 x 2 patches and treats each patch as a token,
# so on pixels it would see 256 tokens, on latents 16, and its attention compares every
# token with every other. The same network (same width and depth), timed the same way:

# %%
pixel_dit = DiT(input_size=SIDE, in_channels=3, patch_size=2, width=64, depth=4, num_classes=len(SHAPES)).to(device)
latent_dit = DiT(input_size=SIDE // D, in_channels=C, patch_size=2, width=64, depth=4,
                 num_classes=len(SHAPES)).to(device)
t_probe = torch.rand(64, device=device)
y_probe = torch.randint(0, len(SHAPES), (64,), device=device)
pixel_dit_step = median_seconds(partial(pixel_dit, x_pixels, t_probe, y_probe), repeats=5, device=device,
                                at_least_s=0.1)
latent_dit_step = median_seconds(partial(latent_dit, x_latents, t_probe, y_probe), repeats=9, device=device,
                                 at_least_s=0.1)
print(f"DiT: {1e3 * pixel_dit_step:.1f} ms per step on pixels ({pixel_dit.sequence_length} tokens), "
      f"{1e3 * latent_dit_step:.1f} ms on latents ({latent_dit.sequence_length} tokens): "
      f"{pixel_dit_step / latent_dit_step:.0f}x cheaper")
if timing_claims_apply(device):
    assert pixel_dit_step / latent_dit_step >= 4
del on_pixels, on_latents, pixel_dit, x_pixels

# %% [markdown]
# ## 2. The images
#
# One object on a plain background: a **shape** (circle, square, triangle, cross), a
# **colour** (six), a **size** (small, large) and a **position** (a 3 x 3 grid), with
# a little jitter. Every image comes with its labels and a caption (lecture 07 will
# prompt with them). The course judges generated shape images with
# `shape_attributes`, which reads the four attributes back from the pixels with no
# learning at all (colour by hue, position by centroid, size by area, shape by fitting
# templates); first we check that it reads real images right.

# %%
N_TRAIN = 4096  # in both modes: the course's trained models (quick mode loads them) learned from these
train = shapes(N_TRAIN, generator=torch.Generator().manual_seed(0))
test = shapes(512, generator=torch.Generator().manual_seed(1))

fig, axes = plt.subplots(2, 6, figsize=(12, 5.0), layout="constrained")
for i, ax in enumerate(axes.flat):
    viz.image_grid(ax, test.images[i:i + 1], pad=0)
    ax.set_title(test.captions[i].replace(" at the", "\nat the").replace(" in the", "\nin the"), fontsize=8)
fig.suptitle("Procedural shapes and their captions", fontsize=11)
plt.show()


def judge(images, labels):
    """The fraction of images whose shape, colour, size and position the judge reads as labelled."""
    read = shape_attributes(images)
    return {k: float((read[k].cpu() == labels[k].cpu()).float().mean()) for k in ("shape", "color", "size", "position")}


real_scores = judge(test.images, test.labels)
print("judge on real held-out images:", {k: f"{100 * v:.1f}%" for k, v in real_scores.items()})
assert min(real_scores.values()) >= 0.98

# %% [markdown]
# ## 3. The autoencoder, trained as a VAE
#
# `VAE(latent_channels=4, downsample=4)` (in `cs231n_gen/nn/autoencoder.py`, a file to
# read top to bottom): the encoder halves the resolution twice with strided
# convolutions and residual blocks and predicts a Gaussian
# $q_\phi(z \mid x) = N(\mu(x), \mathrm{diag}\,\sigma^2(x))$ over an 8 x 8 x 4 latent;
# the decoder mirrors it. The loss per image is the slide's VAE bound with a weight
# $\beta$ on the prior term:
#
# $$L = \lVert x - \hat x(z) \rVert^2 + \beta\, D_{KL}\big(q_\phi(z \mid x) \,\Vert\, N(0, I)\big),
# \qquad z = \mu + \sigma \odot \varepsilon .$$
#
# With $\beta = 1$ this is the negative ELBO; latent diffusion uses a **very small**
# $\beta$ (here $10^{-3}$): the latents keep the image's detail, and the prior only keeps
# them from drifting to any scale they like.
#
# **Is the bound a bound?** The slide's derivation says
# $\log p_\theta(x) = \text{ELBO}(x) + D_{KL}\big(q_\phi(z \mid x) \,\Vert\, p_\theta(z \mid x)\big)
# \ge \text{ELBO}(x)$, with equality when the encoder matches the true posterior. For our
# image VAE neither side can be computed, so we check it where both can: a **linear**
# VAE (`LinearVAE`: $p(x \mid z) = N(Wz + b, \sigma^2 I)$, $q(z \mid x) = N(Ax + c,
# \mathrm{diag}\, s^2)$), whose $p_\theta(x) = N(b, WW^T + \sigma^2 I)$ is exact. It is trained
# on the 8 x 8 digits (64 numbers each, 8 latents) by maximising the ELBO ($\beta = 1$),
# and then judged on held-out digits, with three encoders: the untrained model's, an
# encoder that ignores $x$ ($q = p(z)$, the prior) in front of the trained decoder, and
# the trained one.

# %%
x_flat = digits(size=8, split="train")[0].flatten(1).to(device)
x_flat_test = digits(size=8, split="test")[0].flatten(1).to(device)
seed_everything(0)
linear_vae = LinearVAE(data_dim=64, latent_dim=8).to(device)
untrained = copy.deepcopy(linear_vae)
fit(linear_vae, lambda m, x, g: -m.elbo(x).mean(), x_flat, steps=800, batch_size=len(x_flat), lr=3e-2,
    device=device, desc="linear VAE, maximising the ELBO")
prior_encoder = copy.deepcopy(linear_vae)
with torch.no_grad():
    prior_encoder.encoder.weight.zero_(), prior_encoder.encoder.bias.zero_(), prior_encoder.log_var.zero_()
    bounds = {name: (m.log_likelihood(x_flat_test).cpu(), m.elbo(x_flat_test).cpu(),
                     torch.distributions.kl_divergence(m.encoder_distribution(x_flat_test),
                                                       m.posterior(x_flat_test)).cpu())
              for name, m in (("untrained", untrained), ("trained decoder, q = prior", prior_encoder),
                              ("trained", linear_vae))}
    q = linear_vae.encoder_distribution(x_flat_test)
    kl_torch = torch.distributions.kl_divergence(q, torch.distributions.MultivariateNormal(
        torch.zeros_like(q.mean), scale_tril=torch.eye(8, device=device).expand_as(q.scale_tril))).cpu()
    kl_ours = linear_vae.kl(x_flat_test).cpu()
    train_log_p = float(linear_vae.log_likelihood(x_flat).mean())
best_log_p = ppca_log_likelihood(x_flat.cpu(), 8)

fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
for ax, (name, (log_p, elbo, _)) in zip(axes, bounds.items()):
    ax.scatter(log_p, elbo, s=4, alpha=0.5, color=viz.MODEL)
    ends = [float(torch.cat([log_p, elbo]).min()), float(torch.cat([log_p, elbo]).max())]
    ax.plot(ends, ends, "k--", lw=0.8, label="ELBO = log p(x)")
    ax.set(xlabel="log p(x), exact (nats)", title=f"{name}\nmean gap {float((log_p - elbo).mean()):.3g} nats")
    ax.legend(fontsize=8, loc="upper left")
for ax in axes:
    ax.set_ylabel("ELBO (nats)")
fig.suptitle("Every held-out digit sits on or below the diagonal: the ELBO is a lower bound", fontsize=11)
fig.tight_layout()
plt.show()
for name, (log_p, elbo, kl_post) in bounds.items():
    gap = log_p - elbo
    print(f"{name:27s}: log p(x) {float(log_p.mean()):8.2f}, ELBO {float(elbo.mean()):8.2f}, gap: smallest "
          f"{float(gap.min()):.4f}, mean {float(gap.mean()):.4f}; |gap - KL(q || posterior)| <= "
          f"{float((gap - kl_post).abs().max()):.1e}")
    assert float(gap.min()) > -1e-2, name  # a lower bound, digit by digit
    assert torch.allclose(gap, kl_post, atol=1e-2, rtol=1e-3), name  # and the gap is exactly that KL
print(f"training digits: mean log p(x) {train_log_p:.3f}; the best any 8-latent linear-Gaussian model "
      f"can do (probabilistic PCA in closed form): {best_log_p:.3f}")
print(f"KL(q || N(0, I)) per digit: ours against torch.distributions, largest difference "
      f"{float((kl_ours - kl_torch).abs().max()):.1e}")
assert float((bounds["trained"][0] - bounds["trained"][1]).mean()) < 0.05  # tight at the optimum
assert float((bounds["untrained"][0] - bounds["untrained"][1]).mean()) > 1.0  # and loose away from it
assert abs(train_log_p - best_log_p) < 0.05  # the ELBO's optimum is the maximum-likelihood model
assert torch.allclose(kl_ours, kl_torch, rtol=1e-4, atol=1e-4)

# %% [markdown]
# Three things to read off. The bound holds for every digit, trained or not, and the
# gap is exactly $D_{KL}(q \,\Vert\, p(z \mid x))$, as derived. An encoder that ignores
# $x$ loses a lot: the decoder is good, but the bound only credits what $q$ finds. And
# maximising the ELBO over both networks closes the gap *and* finds the best likelihood
# this family has: for a linear VAE the ELBO's optimum is probabilistic PCA's
# maximum-likelihood solution (Lucas et al. 2019).
#
# Back to images. The recipe below takes many small steps (batches of 8 images).

# %%
AE_STEPS = 3000
seed_everything(0)
vae = VAE(in_channels=3, latent_channels=C, width=16, downsample=D)
vae_history = train_autoencoder(vae, train.images, steps=AE_STEPS, batch_size=8, lr=2e-3, kl_weight=1e-3,
                                device=device, desc="VAE (reconstruction + small KL)", shipped="shapes_vae")

fig, axes = plt.subplots(1, 2, figsize=(10, 3))
axes[0].semilogy(vae_history.mse, color=viz.MODEL, lw=0.8)
axes[0].set_ylabel("reconstruction error per pixel")
axes[1].plot(vae_history.kl, color=viz.MODEL, lw=0.8)
axes[1].set_ylabel("KL to N(0, I), nats per image")
for ax in axes:
    ax.set_xlabel("step")
plt.tight_layout()
plt.show()

# %% [markdown]
# Reconstructions of held-out images (decoded from the posterior mean), and what the
# judge reads in them:

# %%
z_test = encode(vae, test.images.to(device))
with torch.no_grad():
    recon_plain = vae.decode(z_test).cpu()
mse_plain = float((recon_plain - test.images).square().mean())
plain_scores = judge(recon_plain, test.labels)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
viz.image_grid(axes[0], test.images[:16], per_row=8, title="held-out images")
viz.image_grid(axes[1], recon_plain[:16], per_row=8, title=f"VAE reconstructions (error {mse_plain:.4f} per pixel)")
plt.tight_layout()
plt.show()
print("judge on reconstructions:", {k: f"{100 * v:.1f}%" for k, v in plain_scores.items()})
assert plain_scores["color"] >= 0.95 and plain_scores["position"] >= 0.95
assert plain_scores["shape"] >= 0.95
pretrained.record("shapes_vae", shape_read=plain_scores["shape"], color_read=plain_scores["color"],
                  mse=mse_plain)

# %% [markdown]
# The autoencoder never saw a digit. Upsampled to 32 x 32 and painted white on black,
# digits are a fair test of whether it learned *images* or only *these shapes*:

# %%
digit_images = digits(size=32, split="test")[0][:16].expand(-1, 3, -1, -1).contiguous()
with torch.no_grad():
    digit_recon = vae.decode(encode(vae, digit_images.to(device))).cpu()
digit_error = float((digit_recon - digit_images).square().mean())
digit_spread = float(digit_images.var())
fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
viz.image_grid(axes[0], digit_images, per_row=8, title="digits (never seen in training)")
viz.image_grid(axes[1], digit_recon, per_row=8, title=f"reconstructions (error {digit_error:.3f} per pixel)")
plt.tight_layout()
plt.show()
print(f"digit reconstruction error {digit_error:.3f} per pixel, {digit_error / mse_plain:.0f}x that of shapes; "
      f"{100 * (1 - digit_error / digit_spread):.0f}% of the digits' pixel variance is reconstructed")
assert digit_error < 0.9 * digit_spread  # something of the digit survives...
assert digit_error > 10 * mse_plain  # ...but far less than of the images it was trained for

# %% [markdown]
# The strokes survive, the colours do not: the decoder paints every stroke in the hues
# of the shapes' palette (white is not among them), so the squared error is large even
# where the outline is right. An autoencoder compresses the images it was trained on,
# which is why latent diffusion models train theirs on the same (huge) distribution as
# the diffusion model, and why a model for a new kind of image usually needs a new
# autoencoder.
#
# **Latent statistics.** The diffusion model will turn N(0, I) noise into latents, so
# the latents should have unit size too. With a small $\beta$ they do not: we measure
# their spread and rescale them by one number, `scale` = 1 / std (Stable Diffusion's
# famous 0.18215 is this number for its autoencoder).

# %%
z_train = encode(vae, train.images.to(device))
scale = latent_scale(z_train)
per_channel = z_train.transpose(0, 1).flatten(1)
for c in range(C):
    print(f"channel {c}: mean {float(per_channel[c].mean()):+.3f}, std {float(per_channel[c].std()):.3f}")
print(f"overall std {float(z_train.std()):.3f} -> scale = {scale:.3f}; the scaled latents have std "
      f"{float((scale * z_train).std()):.3f}")
assert abs(float((scale * z_train).std()) - 1) < 1e-3

# %% [markdown]
# ## 4. Blur, and a patch critic
#
# A squared error is the log-likelihood of a Gaussian decoder, and a Gaussian decoder
# predicts the **mean** of what could be there: where the latent leaves a corner
# uncertain, it paints the average of all the corners it might be, a soft blob. We
# measure sharpness as the variance of the image's Laplacian (large at crisp edges),
# relative to real images.

# %%
real_sharpness = float(sharpness(test.images).mean())
relative_sharpness = lambda images: float(sharpness(images).mean()) / real_sharpness  # noqa: E731
print(f"VAE reconstructions have {100 * relative_sharpness(recon_plain):.0f}% of the real images' sharpness")
assert relative_sharpness(recon_plain) < 0.9  # blurry: edges visibly softer than real ones

# %% [markdown]
# The fix on the slide is a **discriminator**. Ours is a *patch* critic
# (`PatchDiscriminator`): one realness logit per overlapping 22 x 22 patch, so it judges
# edges and local shape, not the whole image. It plays the hinge game of lecture 01's
# family: the critic minimises $E[\max(0, 1 - D(x))] + E[\max(0, 1 + D(\hat x))]$ and
# the decoder adds $-E[D(\hat x)]$ to its loss, weighted **adaptively**,
#
# $$\lambda = \frac{\lVert \nabla_{W_{last}} L_{rec} \rVert}{\lVert \nabla_{W_{last}} L_{G} \rVert + \delta},$$
#
# the ratio of the two losses' gradient norms at the decoder's last layer, so the
# adversarial term pulls exactly as hard as the reconstruction term whatever their
# scales. Following the lecture's recipe the critic comes in **after reconstruction has
# settled**: we start from the trained VAE, freeze the encoder (so both decoders see the
# same latents), let the critic learn for a while (`disc_start`), then switch the
# adversarial term on.
#
# For a fair comparison the plain decoder is trained for the same number of extra steps
# without a critic.

# %%
GAN_STEPS = 1200
DISC_START = 3 * GAN_STEPS // 8  # the critic learns alone until here
seed_everything(2)
decoder_gan = copy.deepcopy(vae)
critic = PatchDiscriminator(in_channels=3, width=32)
gan_history = train_autoencoder(decoder_gan, train.images, discriminator=critic, steps=GAN_STEPS, batch_size=8,
                                train_encoder=False, lr=5e-4, disc_weight=1.0, disc_lr=1e-3,
                                disc_start=DISC_START, device=device, desc="decoder + patch critic",
                                shipped="shapes_decoder_critic")
decoder_more = copy.deepcopy(vae)
more_history = train_autoencoder(decoder_more, train.images, steps=GAN_STEPS, batch_size=8, train_encoder=False,
                                 lr=5e-4, device=device, desc="decoder, no critic (the control)",
                                 shipped="shapes_decoder_more")

fig, axes = plt.subplots(1, 2, figsize=(10, 3))
axes[0].plot(gan_history.critic, color=viz.MODEL, lw=0.8)
axes[0].axhline(2.0, color="k", ls=":", lw=0.8, label="cannot tell real from reconstructed")
axes[0].axvline(DISC_START, color="0.5", lw=0.8, label="adversarial term on")
axes[0].set_ylabel("critic's hinge loss")
axes[0].legend(fontsize=8)
axes[1].plot(range(DISC_START, GAN_STEPS), gan_history.weight[DISC_START:], color=viz.MODEL, lw=0.8)
axes[1].set_yscale("log")
axes[1].set_ylabel("adaptive weight $\\lambda$ (log scale)")
for ax in axes:
    ax.set_xlabel("step")
plt.tight_layout()
plt.show()

# %% [markdown]
# Why does the critic's loss fall so slowly, and stay far above 0? It is an average over
# the 4 x 4 patches of each image, and a patch that is plain background looks the same
# in a real image and in its reconstruction: there the best the critic can do is a logit
# of 0, a loss of exactly 2. Only the patches that hold the object can be told apart, and
# they are what the decoder learns from. Now the three decoders on the same held-out
# latents:

# %%
with torch.no_grad():
    recon_more = decoder_more.decode(z_test).cpu()
    recon_gan = decoder_gan.decode(z_test).cpu()
rows = {"plain VAE": recon_plain, "plain, trained as long (control)": recon_more, "with patch critic": recon_gan}
print(f"{'decoder':34s} {'error/pixel':>11s} {'sharpness':>10s} {'shape read':>10s}")
for name, images in rows.items():
    print(f"{name:34s} {float((images - test.images).square().mean()):11.5f} "
          f"{100 * relative_sharpness(images):9.0f}% {100 * judge(images, test.labels)['shape']:9.1f}%")
sharp_more, sharp_gan = relative_sharpness(recon_more), relative_sharpness(recon_gan)
sharper_share = float((sharpness(recon_gan) > sharpness(recon_more)).float().mean())
mse_more = float((recon_more - test.images).square().mean())
mse_gan = float((recon_gan - test.images).square().mean())
change = "costs" if mse_gan > mse_more else "even lowers"
print(f"\nThe critic brings sharpness from {100 * sharp_more:.0f}% to {100 * sharp_gan:.0f}% of the real images' and "
      f"{change} the squared error ({mse_more:.5f} -> {mse_gan:.5f} per pixel, "
      f"{100 * (mse_gan / mse_more - 1):+.0f}%); "
      f"its reconstruction is the sharper of the two on {100 * sharper_share:.0f}% of the held-out images.")
assert sharp_gan > sharp_more + 0.01, (sharp_gan, sharp_more)
assert sharper_share > 0.6, sharper_share
assert mse_gan > mse_more  # sharper is not closer: the squared error does not improve
pretrained.record("shapes_decoder_critic", sharpness=sharp_gan, sharper_share=sharper_share, mse=mse_gan)
pretrained.record("shapes_decoder_more", sharpness=sharp_more, mse=mse_more)

# %% [markdown]
# The trade is the one the slides describe: the critic does not lower the squared
# error (asserted: a sharp edge one pixel off costs more than a blurred one), it makes
# the edges look like real edges. How much it gains depends on the run: adversarial
# training is a game, not a descent, so another seed gains a different amount, and a
# much larger `disc_weight` lets the game run away from the reconstructions. Drag through held-out examples (same
# latents, two decoders):

# %%
widgets.decoder_comparison(test.images[:24], recon_more[:24], recon_gan[:24], captions=test.captions[:24],
                           per_frame=4)

# %% [markdown]
# ## 5. Diffusion on the frozen latents
#
# Now the slide's last step. The encoder is frozen; every training image becomes
# `scale * z` (the posterior mean, 4 x 8 x 8); and the class-conditional rectified flow of
# lectures 02 and 03 is trained on those latents, with the same `conditional_rf_loss`
# (the label is the shape; dropped to the null label 10% of the time, as DiT does) and
# the same sampler and guidance. The denoiser is the small DiT timed in section 1; for
# now it is just a function $v_\theta(z_t, t, y)$ with the latent's shape (lecture 06
# takes it apart). The only new line is the decoder at the end.

# %%
LD_STEPS = 1200
latents = scale * z_train
shape_labels = train.labels["shape"].to(device)
seed_everything(2)
denoiser = DiT(input_size=SIDE // D, in_channels=C, patch_size=2, width=64, depth=4, heads=4,
               num_classes=len(SHAPES), conditioning="adaln")
ld_history = fit(denoiser, lambda net, b, g: conditional_rf_loss(net, b[0], b[1], 0.1, g), (latents, shape_labels),
                 steps=LD_STEPS, batch_size=128, lr=2e-3, device=device, desc="latent diffusion (shape-conditional)",
                 shipped="latent_dit_shapes")


def generate(labels, w, noise, steps=40):
    """Latent diffusion end to end: noise -> guided flow over latents -> unscale -> decode."""
    z = euler(Guided(denoiser, labels, w), noise, steps) / scale
    with torch.no_grad():
        return decoder_gan.decode(z).cpu()


N_EACH = 64
asked = torch.arange(len(SHAPES), device=device).repeat_interleave(N_EACH)
ld_noise = torch.randn(len(asked), *latents.shape[1:], generator=torch.Generator().manual_seed(3)).to(device)
LD_WS = [0.0, 1.0, 2.0, 4.0]
ld_samples = {w: generate(asked, w, ld_noise) for w in LD_WS}
ld_accuracy = {}
for w in LD_WS:
    read = shape_attributes(ld_samples[w])
    ld_accuracy[w] = float((read["shape"] == asked.cpu()).float().mean())
    print(f"w = {w:g}: {100 * ld_accuracy[w]:5.1f}% have the shape asked for "
          f"({100 * float(read['found'].float().mean()):.0f}% show a clear object)")
assert ld_accuracy[2.0] >= 0.90
assert ld_accuracy[2.0] >= ld_accuracy[0.0]

# %% [markdown]
# The judge reads the shape right in almost every reconstruction (section 3), so the
# misses are the denoiser's. Look at them below: mostly small shapes drawn halfway
# between two shapes (a square with rounded corners, a triangle that could be a cross),
# and a few faint objects (the "clear object" figure above). Guidance sharpens what the
# model knows (from w = 0 to w = 2 the share of right shapes rises); it cannot add what
# the model has not learned.
#
# Why a transformer rather than the MLPs of lectures 02 to 04? An MLP would see the
# latent as one flat vector of 256 numbers: nothing in it knows that a square is a
# square wherever it sits, so it would have to learn each of the nine positions
# separately. The DiT applies the same weights to every patch.

# %%
picks = torch.cat([torch.arange(k * N_EACH, k * N_EACH + 8) for k in range(len(SHAPES))])
widgets.guidance_samples(LD_WS, torch.stack([ld_samples[w][picks] for w in LD_WS]), list(SHAPES))

# %% [markdown]
# ## 6. Why not sample the VAE's prior?
#
# A VAE is already a generative model: draw $z \sim N(0, I)$ and decode. Why train a
# second model on the latents? The lecture notes' answer: the decoder was only ever
# trained on latents from the encoder, i.e. from the **aggregated posterior**
#
# $$q(z) = \frac1N \sum_{n} q_\phi(z \mid x_n),$$
#
# and with a small $\beta$ nothing forces $q(z)$ to look like $N(0, I)$. Sampling the
# prior feeds the decoder latents it never saw; latent diffusion learns $q(z)$ itself.
# We compare both through the same decoder, by the judge and by the Frechet distance
# between the judge's features (colours, centroid, size, template fits) of the samples
# and of real images (no guidance: both are unconditional here).

# %%
prior_z = torch.randn(len(asked), C, SIDE // D, SIDE // D, generator=torch.Generator().manual_seed(4)).to(device)
with torch.no_grad():
    prior_samples = decoder_gan.decode(prior_z).cpu()
reference = shape_features(test.images)
fd_prior = frechet_distance(shape_features(prior_samples), reference)
fd_ld = frechet_distance(shape_features(ld_samples[0.0]), reference)
fd_real = frechet_distance(shape_features(shapes(len(asked), generator=torch.Generator().manual_seed(5)).images),
                           reference)
print(f"Frechet distance to real images: prior samples {fd_prior:.3f}, latent diffusion {fd_ld:.3f}, "
      f"other real images {fd_real:.3f}")
fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
viz.image_grid(axes[0], prior_samples[:16], per_row=8, title=f"z ~ N(0, I), decoded (Frechet {fd_prior:.2f})")
viz.image_grid(axes[1], ld_samples[0.0][torch.randperm(len(asked), generator=torch.Generator().manual_seed(6))[:16]],
               per_row=8, title=f"latent diffusion, w = 0 (Frechet {fd_ld:.2f})")
plt.tight_layout()
plt.show()
assert fd_ld < fd_prior / 3.0
pretrained.record("latent_dit_shapes", shape_accuracy_w0=ld_accuracy[0.0], shape_accuracy_w2=ld_accuracy[2.0],
                  frechet=fd_ld, frechet_prior=fd_prior)

# %% [markdown]
# Where do the two sets of latents live? Project the flattened latents on the two
# directions of largest spread of the training latents (PCA) and draw $N(0, I)$ on the
# same axes; then put a number on the mismatch: the KL from a Gaussian fitted to $q(z)$
# to $N(0, I)$, a **lower bound** on $KL(q(z) \Vert N(0, I))$ (among all distributions
# with given mean and covariance the Gaussian has the largest entropy).

# %%
flat_z = z_train.flatten(1).cpu()
centred = flat_z - flat_z.mean(0)
_, _, directions = torch.linalg.svd(centred[:2048], full_matrices=False)
axes2 = directions[:2].T
prior_flat = torch.randn(len(flat_z), flat_z.shape[1], generator=torch.Generator().manual_seed(7))
fig, ax = plt.subplots(figsize=(4.8, 4.4))
ax.scatter(*(prior_flat @ axes2).T, s=2, alpha=0.3, color=viz.NOISE, label="N(0, I)")
ax.scatter(*(flat_z @ axes2).T, s=2, alpha=0.3, color=viz.MODEL, label="q(z): encoded training images")
ax.set_xlabel("first principal direction of q(z)")
ax.set_ylabel("second")
ax.legend(fontsize=8, markerscale=4)
ax.set_title("The aggregated posterior is not the prior", fontsize=10)
plt.tight_layout()
plt.show()
kl_gap = gaussian_fit_kl(flat_z)
kl_scaled = gaussian_fit_kl(scale * flat_z)
kl_per_image = float(gaussian_kl(*vae.encode(test.images[:256].to(device))).mean())
print(f"KL(q(z) || N(0, I)) >= {kl_gap:.0f} nats (Gaussian fit; {kl_scaled:.0f} after scaling to unit std)")
print(f"for comparison, the KL term of one image's posterior was {kl_per_image:.0f} nats on average")
assert kl_gap > 50 and kl_scaled > 10

# %% [markdown]
# Even rescaled to unit spread, the latents sit on a thin, structured set (one object,
# a plain background) that a single Gaussian describes badly: the decoder turns prior
# draws into smudges and multi-coloured blobs. A larger $\beta$ would pull $q(z)$ toward
# $N(0, I)$, at a price in detail: the KL term charges for every nat the latent keeps
# about the image. Latent
# diffusion keeps the detailed latents and learns their distribution with a model
# strong enough for it.
#
# ## Exercises
#
# **Exercise 1: the VAE's prior term.** Write the KL divergence from
# $N(\mu, \mathrm{diag}\,\sigma^2)$ to $N(0, I)$ per example, given `mean` and
# `log_var` = $\log \sigma^2$ of shape (n, C, h, w): return shape (n,).

# %% tags=["exercise"]
import torch


def kl_divergence(mean, log_var):
    ### BEGIN SOLUTION
    return 0.5 * (mean.square() + log_var.exp() - 1 - log_var).flatten(1).sum(1)
    ### END SOLUTION


# %% tags=["check"]
from cs231n_gen.exercises import check_kl_divergence

check_kl_divergence(kl_divergence)

# %% [markdown]
# **Exercise 2: one latent-diffusion training loss.** Given the velocity model, the
# frozen `vae`, a batch of images `x` with labels `y`, the latent `scale`, the label
# dropout rate and a random generator: encode `x` to its posterior mean **without a
# gradient** (the encoder is frozen), multiply by `scale`, flatten each latent to a row,
# and return `conditional_rf_loss(model, latents, y, p_uncond, generator)`.

# %% tags=["exercise"]
import torch

from cs231n_gen.guidance import conditional_rf_loss


def latent_rf_loss(model, vae, x, y, scale, p_uncond, generator):
    ### BEGIN SOLUTION
    with torch.no_grad():
        mean, _ = vae.encode(x)
    return conditional_rf_loss(model, (scale * mean).flatten(1), y, p_uncond, generator)
    ### END SOLUTION


# %% tags=["check"]
from cs231n_gen.exercises import check_latent_rf_loss

check_latent_rf_loss(latent_rf_loss)

# %% [markdown]
# ## Summary
#
# | slide | what you saw here |
# |---|---|
# | 256 x 256 x 3 -> 32 x 32 x 16: "12x fewer numbers", 64x fewer positions | section 1: the arithmetic; a convolutional denoising step and our transformer denoiser (16x fewer tokens) both measured several times cheaper on latents (printed; asserted at 4x or more) |
# | "Train encoder + decoder ... It's a VAE! Typically with very small KL prior weight" | section 3: the ELBO checked as a bound where log p(x) is exact (a linear VAE); D = 4, C = 4, $\beta = 10^{-3}$; sharp enough to keep shape and colour, not a general image codec (digits) |
# | "Problem: decoder outputs often blurry. Solution: add a discriminator!" | section 4: the plain VAE's reconstructions are measurably softer than real images; a patch critic with the adaptive weight raises sharpness above an equally long plain run (by how much varies from run to run); the squared error does not improve (asserted) |
# | "Sample random latent, iteratively apply diffusion model, run decoder" | section 5: the library's rectified flow, CFG and sampler, unchanged, on scaled frozen latents, with a small DiT: over 90% of samples have the shape asked for at w = 2 |
# | LDMs sample the aggregated posterior, VAEs the prior (notes) | section 6: prior samples are smudges (Frechet several times worse); q(z) is far from N(0, I) |
#
# Next: **diffusion transformers**, which treat these latents as a sequence of tokens.
