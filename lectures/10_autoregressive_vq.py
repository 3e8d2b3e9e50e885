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
# # Autoregressive models over VQ latents
#
# *CS231n Lecture 14, "Generative Models 2": "Autoregressive models strike back" (van den
# Oord et al. 2017, VQ-VAE; Razavi et al. 2019, VQ-VAE-2; Esser et al. 2021, VQGAN; Yu et
# al. 2022, Parti), and the summary's modern toolkit.*
#
# An autoregressive model maximises the likelihood of the data exactly, with the chain
# rule:
#
# $$p_\theta(x) = \prod_{i=1}^{N} p_\theta(x_i \mid x_1, \dots, x_{i-1}).$$
#
# The slide's verdict: "too slow on raw pixels", but "they work great on (discrete)
# latents!": train an encoder and decoder that turn an image into a short grid of
# integers, train an autoregressive model on those sequences, then sample integers and
# decode them. This notebook measures each part of that sentence:
#
# 1. a small transformer on **raw pixels** (8x8 digits, 17 grey levels): exact bits per
#    pixel, and what sampling costs as images grow;
# 2. a **VQ-VAE** that turns a 16x16 digit into 4x4 = 16 codes from a codebook of 128,
#    and why most of a codebook dies without help;
# 3. a class-conditional **GPT prior** over those codes; samples, decoded; a widget for
#    temperature and top-k;
# 4. the **likelihood of codes**, against knowing nothing and against each position's
#    histogram;
# 5. the **cost**: one network evaluation per token against diffusion's fixed number of
#    parallel steps;
# 6. the **modern toolkit**: every model of the course in one table.
#
# Run the cells top to bottom. Cells that make a claim check it with an `assert`.
#
# **How long:** about 1.5 minutes in full mode on a 2-core laptop CPU, which trains every
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
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter
from IPython.display import Markdown, display

from cs231n_gen import autoregressive as ar
from cs231n_gen import pretrained, viz, widgets
from cs231n_gen.data import digits
from cs231n_gen.guidance import drop_labels
from cs231n_gen.digit_judge import DigitJudge
from cs231n_gen.nn import GPT, VQVAE, codebook_usage, vqvae_loss
from cs231n_gen.runtime import median_seconds, timing_claims_apply
from cs231n_gen.train import fit

# %% [markdown]
# ## 1. Autoregression on raw pixels
#
# The 8x8 digits of scikit-learn store each pixel as an integer from 0 to 16: an image
# is a sequence of 64 tokens from a vocabulary of 17, read row by row. A transformer with
# a **causal mask** (position $i$ sees positions $\le i$ only) gives every factor
# $p(x_i \mid x_{<i})$ in one pass, so the exact log-likelihood of an image costs one
# forward pass and training is plain next-token cross-entropy
# (`cs231n_gen.nn.GPT`, `cs231n_gen.autoregressive.ar_loss`).
#
# We report **bits per pixel** on held-out digits, $-\frac{1}{64}\log_2 p(x)$, against two
# baselines: the uniform distribution ($\log_2 17 \approx 4.09$ bits: knowing nothing)
# and each pixel's own histogram, drawn independently of the others (knowing where ink
# usually is, but not what the rest of the digit looks like).

# %%
x8, _ = digits(8, "train")
x8_test, _ = digits(8, "test")
pixels, pixels_test = ar.to_levels(x8), ar.to_levels(x8_test)  # (N, 64) integers 0..16
assert torch.equal(ar.from_levels(pixels, 8), x8)  # the data's own integers: nothing is lost

pixel_gpt = GPT(vocab_size=17, block_size=64, width=64, depth=2, heads=4)
fit(pixel_gpt, ar.ar_loss, pixels, steps=500, batch_size=64, lr=2e-3, warmup=30,
    device=device, desc="pixel GPT", shipped="pixel_gpt_digits")
per_pixel = ar.MarginalCodes(pixels, 17)
pixel_bits = {"uniform": math.log2(17), "each pixel's histogram": per_pixel.bits_per_token(pixels_test),
              "pixel GPT (chain rule)": ar.bits_per_token(pixel_gpt, pixels_test.to(device))}
for name, bits in pixel_bits.items():
    print(f"{name:>24}: {bits:.3f} bits per pixel on held-out digits")
assert pixel_bits["pixel GPT (chain rule)"] < pixel_bits["each pixel's histogram"] - 0.3
pretrained.record("pixel_gpt_digits", bits_per_pixel=pixel_bits["pixel GPT (chain rule)"])
assert pixel_bits["each pixel's histogram"] < pixel_bits["uniform"]

# %% [markdown]
# **A normalised density.** The slides' first property of a density: every possible image
# gets a share of one unit of probability, so images compete for it. The chain rule
# gives that for free, as long as each factor sums to 1 over the vocabulary and never
# peeks at later pixels. Check it on a held-out digit: score all $17^2 = 289$ ways to
# finish it (every value of its last two pixels) as whole images, and add them up. The
# sum must be the probability of the first 62 pixels alone; a model whose mask let a
# pixel see the future would miss.

# %%
digit = pixels_test[:1].to(device)
endings = torch.cartesian_prod(torch.arange(17), torch.arange(17)).to(device)  # (289, 2): every last-two-pixel pair
completions = torch.cat([digit[:, :62].expand(len(endings), -1), endings], dim=1)
with torch.no_grad():
    log_p_images = ar.token_log_probs(pixel_gpt, completions).sum(1)  # log p(x) of each whole image
    log_p_start = ar.token_log_probs(pixel_gpt, digit[:, :62]).sum(1)  # log p(x_1..x_62)
share = float((torch.logsumexp(log_p_images, 0) - log_p_start).exp())
real_ending = int((endings == digit[0, 62:]).all(1).nonzero())
print(f"sum over the 289 endings of p(image) / p(first 62 pixels) = {share:.6f}; the digit's own ending takes "
      f"{100 * float((log_p_images[real_ending] - torch.logsumexp(log_p_images, 0)).exp()):.1f}% of it")
assert abs(share - 1) < 1e-4

# %%
gen = torch.Generator(device=device).manual_seed(0)
pixel_samples = ar.sample(pixel_gpt, 40, 64, generator=gen)
fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
viz.image_grid(axes[0], x8_test[:40], per_row=10, title="held-out digits (8x8, 17 levels)")
viz.image_grid(axes[1], ar.from_levels(per_pixel.sample(40, generator=torch.Generator().manual_seed(0)), 8),
               per_row=10, title="each pixel from its own histogram")
viz.image_grid(axes[2], ar.from_levels(pixel_samples.cpu(), 8), per_row=10, title="pixel GPT, one pixel at a time")
plt.tight_layout()
plt.show()

# %% [markdown]
# The histogram baseline knows where ink goes on average and makes grey clouds; the
# chain rule ties each pixel to the ones before it and makes strokes. Now the cost.
# Sampling runs the chain rule forwards: one network evaluation per pixel, each one
# waiting for the last. We time it for images of 4x4, 8x8 and 16x16 pixels (16, 64, 256
# tokens) with a network of the same size (calls shorter than a quarter second are timed
# in bundles that last that long, so one pause of the machine does not decide a number):

# %%
SIDES = [4, 8, 16]
TIMING_BATCH = 16
nets, seconds_per_side = {}, {}
for side in SIDES:
    nets[side] = GPT(vocab_size=17, block_size=side * side + 1, width=64, depth=2, heads=4).to(device)
    seconds_per_side[side] = median_seconds(lambda: ar.sample(nets[side], TIMING_BATCH, side * side, generator=gen),
                                            repeats=1 if side > 8 else 3, at_least_s=0.25)
for side in SIDES:
    print(f"{side:>2}x{side:<2} = {side * side:>3} pixels: {seconds_per_side[side]:6.3f} s for {TIMING_BATCH} images "
          f"({side * side} sequential network evaluations)")
print(f"a 256x256 RGB image would be {256 * 256 * 3:,} sequential evaluations")
growth = seconds_per_side[SIDES[-1]] / seconds_per_side[SIDES[0]]
if timing_claims_apply(device):
    assert growth > (SIDES[-1] / SIDES[0]) ** 2, growth  # more than in proportion to the pixels

# %% [markdown]
# The time grows faster than the number of pixels (see the printout): there are more
# steps, and each step reads a longer prefix. On raw pixels of a real photograph the sequence is
# hundreds of thousands of tokens long: "too slow on raw pixels". The way out is to make
# the sequence short.
#
# ## 2. A discrete autoencoder: the VQ-VAE
#
# A convolutional encoder maps a 16x16 digit to a 4x4 grid of 16-dimensional vectors.
# Each vector is replaced by the nearest of $K = 128$ learned codes, so the image
# becomes **16 integers**; a decoder maps the codes back to pixels
# (`cs231n_gen.nn.VQVAE`, `cs231n_gen.nn.VectorQuantizer`).
#
# The nearest-code lookup has no gradient. The **straight-through** estimator copies the
# decoder's gradient to the encoder as if the lookup were the identity:
# $z_q = z + \mathrm{sg}[e_k - z]$, whose value is the code $e_k$. Two losses do what
# that gradient cannot:
#
# $$\mathcal{L} = \lVert x - D(z_q) \rVert^2 + \underbrace{\lVert \mathrm{sg}[z] - e_k \rVert^2}_{\text{moves the code}}
#   + \beta \underbrace{\lVert z - \mathrm{sg}[e_k] \rVert^2}_{\text{commits the encoder}},
#   \qquad \beta = 0.25 .$$
#
# A code that no encoder output picks gets no gradient at all and never moves: a
# **dead code**. We train the same model twice: once as the original paper initialises
# it (codes uniform in $\pm 1/K$, nothing else), once with two fixes: the codebook starts
# from k-means on the first batch of encoder outputs, and a code unused for 20 batches
# restarts on a random encoder output. Usage is counted over the whole training set.

# %%
x16, y16 = digits(16, "train")
x16_test, y16_test = digits(16, "test")
K = 128
VQ_STEPS, VQ_BATCH = 500, 128
SHIPPED_AS = {"no fix": "vqvae_digits_no_fix", "k-means init + restarts": "vqvae_digits"}
vq_models = {}
for name, settings in {"no fix": dict(init="uniform", restart_after=None),
                       "k-means init + restarts": dict(init="kmeans", restart_after=20)}.items():
    cs231n_gen.seed_everything(0)
    vq_models[name] = VQVAE(channels=1, size=16, grid=4, num_codes=K, code_dim=16, width=32, **settings)
    fit(vq_models[name], vqvae_loss, x16, steps=VQ_STEPS, batch_size=VQ_BATCH, lr=2e-3, device=device,
        desc=f"VQ-VAE, {name}", shipped=SHIPPED_AS[name])
judge = DigitJudge(size=16, device=device)
usage, recon_scores = {}, {}
for name, model in vq_models.items():
    usage[name] = codebook_usage(model.encode(x16.to(device)), K)
    recon = model.decode(model.encode(x16_test.to(device)))
    recon_scores[name] = {"mse": float((recon.cpu() - x16_test).pow(2).mean()),
                          **judge.evaluate(recon.cpu(), y16_test)}
    print(f"{name:>24}: {usage[name]['active']:>3} of {K} codes used over the training set "
          f"(perplexity {usage[name]['perplexity']:5.1f}); held-out reconstruction MSE "
          f"{recon_scores[name]['mse']:.4f}, read as the right digit {100 * recon_scores[name]['accuracy']:.1f}%")
print(f"(the judge reads {100 * judge.test_accuracy:.1f}% of real held-out digits correctly)")
vq = vq_models["k-means init + restarts"]
assert usage["k-means init + restarts"]["fraction_active"] >= 0.9
assert usage["no fix"]["fraction_active"] < 0.5
assert recon_scores["k-means init + restarts"]["mse"] < recon_scores["no fix"]["mse"]
assert recon_scores["k-means init + restarts"]["accuracy"] >= 0.88
for name in vq_models:
    pretrained.record(SHIPPED_AS[name], codes_used=usage[name]["fraction_active"], mse=recon_scores[name]["mse"],
                      digits_read=recon_scores[name]["accuracy"])

# %%
codes_test = vq.encode(x16_test[:12].to(device)).cpu()
fig, axes = plt.subplots(1, 4, figsize=(14, 3.6), gridspec_kw={"width_ratios": [1, 1, 1, 1.4]})
viz.image_grid(axes[0], x16_test[:12], per_row=4, title="held-out digits (16x16)")
viz.code_map(axes[1], codes_test, K, per_row=4, title="their codes (4x4, one colour per code)")
viz.image_grid(axes[2], vq.decode(codes_test.to(device)).cpu(), per_row=4, title="decoded from 16 integers each")
for name, u in usage.items():
    counts = u["counts"].sort(descending=True).values
    axes[3].bar(range(K), counts, width=1.0, alpha=0.7, label=f"{name}: {u['active']} used")
axes[3].set_yscale("log")
axes[3].set_xlabel("codes, most used first")
axes[3].set_ylabel("uses over the training set")
axes[3].set_title("codebook usage", fontsize=10)
axes[3].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# Each digit is now 16 integers instead of 256 grey values, and the decoder turns them
# back into a digit the judge reads correctly about nine times in ten (see the printout,
# next to the judge's own accuracy on real digits). Without the fixes most
# of the codebook never gets picked: the few codes that happened to start near the
# encoder's outputs take everything, and the reconstructions are blurrier for it.
#
# ## 3. A GPT prior over the codes
#
# The prior is the model of section 1 over the new sequences: 16 tokens from a
# vocabulary of 128, with the class as a **prefix** (the first vector the transformer
# reads). As in lecture 03, the label is dropped 10% of the time and replaced by a null
# label, so the same model is also an unconditional prior. The dataset is small (1438
# digits), so the prior uses dropout (section 4 trains one without it, for comparison).

# %%
codes_train = vq.encode(x16.to(device)).reshape(len(x16), -1)  # (N, 16) integers
codes_held = vq.encode(x16_test.to(device)).reshape(len(x16_test), -1)


def prior_loss(model, batch, generator):
    tokens, labels = batch
    return ar.ar_loss(model, (tokens, drop_labels(labels, 0.1, 10, generator)))


prior = GPT(vocab_size=K, block_size=16, width=96, depth=3, heads=4, num_classes=10, dropout=0.3)
PRIOR_STEPS, PRIOR_BATCH = 600, 128
fit(prior, prior_loss, (codes_train, y16.to(device)), steps=PRIOR_STEPS, batch_size=PRIOR_BATCH, lr=2e-3,
    warmup=50, weight_decay=0.1, device=device, desc="GPT prior over codes", shipped="gpt_prior_codes")

N_EACH = 50
labels = torch.arange(10, device=device).repeat_interleave(N_EACH)
samples = {}
for name, settings in {"temperature 1": dict(temperature=1.0),
                       "temperature 1, top-16": dict(temperature=1.0, top_k=16)}.items():
    tokens = ar.sample(prior, len(labels), 16, labels, generator=torch.Generator(device=device).manual_seed(1),
                       **settings)
    samples[name] = vq.decode(tokens).cpu()
sample_scores = {name: judge.evaluate(images, labels.cpu()) for name, images in samples.items()}
for name, s in sample_scores.items():
    print(f"{name:>22}: {100 * s['accuracy']:5.1f}% read as the digit asked for, Frechet distance {s['frechet']:5.1f}")
by_row = torch.cat([torch.arange(j, len(labels), N_EACH) for j in range(4)])  # 4 rows of the digits 0..9
fig, axes = plt.subplots(1, 2, figsize=(11, 2.9))
for ax, (name, images) in zip(axes, samples.items()):
    viz.image_grid(ax, images[by_row], per_row=10, title=f"GPT prior, {name}: "
                                                          f"{100 * sample_scores[name]['accuracy']:.0f}% as asked")
    viz.label_columns(ax, [str(d) for d in range(10)], images.shape[-1], title="digit asked for")
plt.tight_layout()
plt.show()
assert sample_scores["temperature 1, top-16"]["accuracy"] >= 0.85

# %% [markdown]
# **Temperature and top-k.** Each sampling step divides the logits by a temperature
# $\tau$ before the softmax ($\tau < 1$ sharpens towards the most likely code, $\tau > 1$
# flattens) and may keep only the $k$ most likely codes. Low temperatures and small $k$
# trade variety for clean, typical digits; high temperatures let in codes the prior
# thinks unlikely, and the decoded digits break up. Drag the slider, switch top-k:

# %%
TEMPERATURES = [0.5, 0.75, 1.0, 1.25, 1.5, 2.0]
show = torch.arange(10, device=device).repeat(4)  # 4 rows of the digits 0..9
explorer_samples = {}
for name, top_k in {"all codes": None, "top-16": 16, "top-2": 2}.items():
    frames = []
    for temperature in TEMPERATURES:
        tokens = ar.sample(prior, len(show), 16, show, temperature=temperature, top_k=top_k,
                           generator=torch.Generator(device=device).manual_seed(2))
        frames.append(vq.decode(tokens).cpu())
    explorer_samples[name] = torch.stack(frames)
explorer = widgets.sampling_explorer(explorer_samples, TEMPERATURES, per_row=10,
                                     column_labels=[str(d) for d in range(10)])  # the digit each column asked for
plt.show()
as_asked = {t: judge.evaluate(explorer_samples["all codes"][i], show.cpu())["accuracy"]
            for i, t in enumerate(TEMPERATURES)}
print("read as asked, all codes: " + ", ".join(f"temperature {t:g}: {100 * a:.0f}%" for t, a in as_asked.items()))
assert as_asked[TEMPERATURES[0]] > as_asked[TEMPERATURES[-1]]
explorer

# %% [markdown]
# ## 4. The likelihood of codes
#
# The prior gives the exact probability of a code sequence. We compare bits per token on
# the held-out digits' codes with $\log_2 K = 7$ bits (uniform: knowing nothing) and with
# the baseline that draws **each position's code from its histogram**, per class
# (`cs231n_gen.autoregressive.MarginalCodes`): the chain rule with every dependence
# between codes dropped. Decoded, those baseline samples are what a prior that learned
# nothing about how codes fit together would make.

# %%
marginal = ar.MarginalCodes(codes_train.cpu(), K, y16, num_classes=10)
code_bits = {"uniform": math.log2(K),
             "each position's histogram, per class": marginal.bits_per_token(codes_held.cpu(), y16_test),
             "GPT prior, no label (null)": ar.bits_per_token(prior, codes_held),
             "GPT prior, with the label": ar.bits_per_token(prior, codes_held, y16_test.to(device))}
for name, bits in code_bits.items():
    print(f"{name:>38}: {bits:.3f} bits per code ({16 * bits:6.1f} bits per digit)")
marginal_images = vq.decode(marginal.sample(len(labels), labels.cpu(),
                                            torch.Generator().manual_seed(3)).to(device)).cpu()
marginal_scores = judge.evaluate(marginal_images, labels.cpu())
prior_scores = sample_scores["temperature 1"]
print(f"decoded histogram samples: {100 * marginal_scores['accuracy']:.1f}% as asked, "
      f"Frechet {marginal_scores['frechet']:.1f}"
      f"; GPT prior at temperature 1: {100 * prior_scores['accuracy']:.1f}%, Frechet {prior_scores['frechet']:.1f} "
      f"(held-out real digits: {marginal_scores['frechet_real']:.1f})")
fig, axes = plt.subplots(1, 2, figsize=(11, 2.9))
viz.image_grid(axes[0], marginal_images[by_row], per_row=10, title="each position's code from its histogram")
viz.image_grid(axes[1], samples["temperature 1"][by_row], per_row=10, title="GPT prior (temperature 1)")
plt.tight_layout()
plt.show()
assert code_bits["GPT prior, with the label"] < code_bits["each position's histogram, per class"]
assert code_bits["each position's histogram, per class"] < code_bits["uniform"]
assert prior_scores["frechet"] < marginal_scores["frechet"]
assert prior_scores["accuracy"] > marginal_scores["accuracy"]

# %% [markdown]
# **Why the dropout.** The same prior, trained the same way with `dropout=0`:

# %%
no_dropout = GPT(vocab_size=K, block_size=16, width=96, depth=3, heads=4, num_classes=10, dropout=0.0)
fit(no_dropout, prior_loss, (codes_train, y16.to(device)), steps=PRIOR_STEPS, batch_size=PRIOR_BATCH, lr=2e-3,
    warmup=50, weight_decay=0.1, device=device, desc="GPT prior, no dropout", shipped="gpt_prior_no_dropout")
fitting, histogram_bits = {}, code_bits["each position's histogram, per class"]
for name, net in (("dropout 0.3", prior), ("no dropout", no_dropout)):
    fitting[name] = (ar.bits_per_token(net, codes_train, y16.to(device)),
                     ar.bits_per_token(net, codes_held, y16_test.to(device)))
    print(f"{name:>12}: {fitting[name][0]:.3f} bits per code on the training digits, {fitting[name][1]:.3f} on "
          f"held-out ones (histogram baseline: {histogram_bits:.3f})")
assert fitting["no dropout"][0] < fitting["dropout 0.3"][0]  # it fits the training codes better...
assert fitting["no dropout"][1] > fitting["dropout 0.3"][1]  # ...and held-out ones worse
pretrained.record("gpt_prior_no_dropout", bits_train=fitting["no dropout"][0], bits_held_out=fitting["no dropout"][1])

# %% [markdown]
# Without dropout the prior learns the training digits' codes far better and held-out
# digits' codes worse: with 1438 sequences it starts to memorise. Both
# stay well below the histogram baseline. Held-out bits per code are what to watch (and
# where to stop training); the training number alone would pick the memoriser.

# %% [markdown]
# **Two of three models give the third.** The prior is a class-conditional generative
# model, $p(\text{codes} \mid y)$, and the label frequencies are $p(y)$; Bayes' rule turns
# the two into a classifier, $p(y \mid \text{codes}) \propto p(\text{codes} \mid y)\, p(y)$,
# with no classifier ever trained. Score each held-out digit's codes under all ten
# labels and pick the most probable, then put it next to the judge, a CNN trained to read
# digits from their pixels:

# %%
with torch.no_grad():
    log_lik = torch.stack([ar.token_log_probs(prior, codes_held, torch.full((len(codes_held),), c, device=device))
                           .sum(1).cpu() for c in range(10)], dim=1)  # log p(codes | y), (N, 10)
log_p_y = torch.log(torch.bincount(y16, minlength=10).float() / len(y16))
bayes = (log_lik + log_p_y).argmax(1)
judge_reads = judge.predict(x16_test)
bayes_acc, judge_acc = float((bayes == y16_test).float().mean()), float((judge_reads == y16_test).float().mean())
agree = float((bayes == judge_reads).float().mean())
print(f"held-out digits read correctly: Bayes' rule on the prior {100 * bayes_acc:.1f}%, the trained judge "
      f"{100 * judge_acc:.1f}% (chance: 10%); the two agree on {100 * agree:.1f}% of the digits")
assert bayes_acc > 0.85 and agree > 0.85 and judge_acc > bayes_acc
pretrained.record("gpt_prior_codes", digits_as_asked_top16=sample_scores["temperature 1, top-16"]["accuracy"],
                  bits_train=fitting["dropout 0.3"][0], bits_held_out=fitting["dropout 0.3"][1],
                  bayes_accuracy=bayes_acc)

# %% [markdown]
# A model trained only to *generate* codes, turned around by Bayes' rule, reads most
# held-out digits as the judge does. The judge is better: it was trained for exactly this
# question on the pixels, while the prior spends its capacity on everything about a
# digit's codes. Generative and discriminative models answer different questions, and
# with the class-conditional model and $p(y)$ in hand the discriminative one comes free.

# %% [markdown]
# The prior beats both baselines on held-out codes, and its samples are digits where the
# histogram's are patchworks: each of its codes is plausible where it sits, but codes
# that never occur together get put side by side.
#
# These are bits per **code**, not per pixel, and they do not bound the pixels'
# likelihood: the decoder is deterministic, so $p(x)$ of an image is not defined by this
# model at all, and two images with the same codes get the same probability. Section 1's
# bits per pixel and this section's bits per code measure different things. What the
# prior's likelihood does give exactly is a number to compare priors on the same codes
# (and to stop training when the held-out number stops falling).
#
# ## 5. What a sample costs: one token at a time against parallel steps
#
# An autoregressive sampler makes one network evaluation per token, in order. A
# diffusion sampler makes a fixed number of evaluations (32 here, as in lectures 05 to
# 08), each over **all** the tokens at once. We time both with the same transformers as
# in section 1, for grids of 4x4, 8x8 and 16x16 tokens. (A key-value cache makes
# each autoregressive step cheaper, as it does in language models, but the steps stay
# sequential.)

# %%
DIFFUSION_STEPS = 32
cost = {}
for side in SIDES:
    n_tokens, net = side * side, nets[side]
    full_grid = torch.randint(0, 17, (TIMING_BATCH, n_tokens), device=device)
    cost[n_tokens] = {"autoregressive": seconds_per_side[side],  # measured in section 1
                      "diffusion": median_seconds(lambda: [net(full_grid) for _ in range(DIFFUSION_STEPS)],
                                                  repeats=3, at_least_s=0.25)}
fig, ax = plt.subplots(figsize=(5.2, 3.6))
for kind, marker in (("autoregressive", "o"), ("diffusion", "s")):
    ax.plot(list(cost), [cost[n][kind] for n in cost], marker=marker,
            label=f"{kind}: {'one step per token' if kind == 'autoregressive' else f'{DIFFUSION_STEPS} steps'}")
ax.set_xscale("log", base=2)
ax.set_yscale("log")
ax.set_xticks(list(cost), [str(n) for n in cost])
ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
ax.yaxis.set_minor_formatter(NullFormatter())
ax.set_xlabel("tokens per image")
ax.set_ylabel(f"seconds for {TIMING_BATCH} images")
ax.set_title("sampling cost, same network", fontsize=10)
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
for n, c in cost.items():
    print(f"{n:>3} tokens: autoregressive {c['autoregressive']:.3f} s ({n} steps), "
          f"diffusion {c['diffusion']:.3f} s ({DIFFUSION_STEPS} steps): "
          f"ratio {c['autoregressive'] / c['diffusion']:.2f}")
ratios = [cost[n]["autoregressive"] / cost[n]["diffusion"] for n in cost]
if timing_claims_apply(device):
    assert ratios[0] < 1 and ratios[-1] > 2 * ratios[0], ratios
    assert ratios[-1] > 1.5, ratios  # diffusion ahead at 256 tokens

# %% [markdown]
# With 16 tokens the autoregressive sampler makes half as many evaluations as 32
# diffusion steps, on shorter inputs, and wins. The autoregressive cost grows with the
# number of tokens (more steps, and each step reads a longer prefix) while diffusion's
# number of steps stays fixed, so the ratio climbs with every doubling of the side
# (at 256 tokens diffusion is well ahead). That is why
# autoregressive image models work on short grids of discrete latents (VQ-VAE's 32x32,
# Parti's 32x32 codes of a 256x256 image), and why diffusion is the usual choice when the
# sequence is long, as in video.
#
# ## 6. The modern toolkit
#
# The lecture's summary: "a prevalent modern recipe composes multiple generative
# paradigms": an autoencoder to compress, and an autoregressive or diffusion model over
# its latents. Here is every model of the course, each placed by what this course
# measured. Rows measured in this notebook carry their numbers; the others name the
# lecture that measures them and the bar it asserts.

# %%
rows = [
    ("VAE (05)", "1", "lower bound (ELBO)", "encode, edit, decode", "blurry; its own prior samples badly (05)"),
    ("GAN (01)", "1", "none", "the latent (interpolation, 01)", "sharp; can drop modes (01)"),
    ("pixel AR (here)", f"{64} (one per pixel)", f"exact: {pixel_bits['pixel GPT (chain rule)']:.2f} bits/pixel",
     "a prefix (a class, the top of an image)",
     f"strokes; {growth:.0f}x the sampling time for {(SIDES[-1] / SIDES[0]) ** 2:.0f}x the pixels"),
    ("VQ-VAE + GPT prior (here)", "16 (one per code) + decoder",
     f"exact on codes: {code_bits['GPT prior, with the label']:.2f} bits/code",
     "class prefix, temperature, top-k",
     f"{100 * sample_scores['temperature 1, top-16']['accuracy']:.0f}% as asked, FD "
     f"{sample_scores['temperature 1, top-16']['frechet']:.1f} (real {marginal_scores['frechet_real']:.1f})"),
    ("rectified flow / diffusion (02-04, 09)", "32 (x2 with CFG)", "through the ODE (not computed here)",
     "CFG weight", "W2 near fresh data in 2D (02); guided digits the judge reads as asked (08)"),
    ("distilled flow (08)", "1 to 4", "none", "w as input", "within 3 points of its 32-step teacher (08)"),
    ("latent diffusion / DiT (05-07)", "32 x2 + decoder", "none", "labels, text, CFG",
     ">= 90% shapes as asked (05, 06); text prompts (07)"),
]
header = ("model (lecture)", "network evaluations per sample", "likelihood", "control", "quality")
table = "\n".join("| " + " | ".join(row) + " |" for row in [header, ("---",) * len(header), *rows])
display(Markdown(table))

# %% [markdown]
# No single row wins every column, which is the summary's takeaway: one-step models
# (GAN, VAE, a distilled flow) are fastest; autoregressive models give exact likelihoods
# and simple controls but pay one step per token; diffusion pays a fixed number of steps
# and takes guidance well. Modern systems combine them: a VQ or KL autoencoder (often
# trained with a GAN loss, lecture 05's patch critic) to make the sequence short, then an
# autoregressive or diffusion model over its latents.
#
# ## Exercises
#
# **Exercise 1: the straight-through quantiser.** Given vectors `z` (N, D), a codebook
# (K, D) and the commitment weight `beta`, return `(z_q, codes, loss)`: the index of each
# row's nearest code (squared distance), `z_q` whose value is that code and whose
# gradient reaches `z` unchanged, and the VQ loss
# `mean((sg[z] - e)^2) + beta * mean((z - sg[e])^2)` (means over all entries; `sg` is
# `.detach()`).

# %% tags=["exercise"]
import torch


def quantize(z, codebook, beta):
    ### BEGIN SOLUTION
    codes = torch.cdist(z, codebook).argmin(dim=1)
    e = codebook[codes]
    z_q = z + (e - z).detach()
    loss = (z.detach() - e).pow(2).mean() + beta * (z - e.detach()).pow(2).mean()
    return z_q, codes, loss
    ### END SOLUTION


# %% tags=["check"]
from cs231n_gen.exercises import check_straight_through

check_straight_through(quantize)

# %% [markdown]
# **Exercise 2: one sampling step.** Given logits (B, V), a temperature $\tau > 0$, `top_k`
# (an int, or None for no cut) and a `torch.Generator`, return one token per row: keep
# exactly the `top_k` largest logits (every other logit becomes $-\infty$), divide by
# $\tau$, and draw from the softmax with `torch.multinomial(..., generator=generator)`.

# %% tags=["exercise"]
import torch


def sample_next(logits, temperature, top_k, generator):
    ### BEGIN SOLUTION
    if top_k is not None:
        keep = logits.topk(top_k, dim=1).indices
        logits = torch.full_like(logits, float("-inf")).scatter(1, keep, logits.gather(1, keep))
    probs = torch.softmax(logits / temperature, dim=1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)
    ### END SOLUTION


# %% tags=["check"]
from cs231n_gen.exercises import check_sample_next

check_sample_next(sample_next)

# %% [markdown]
# ## Summary
#
# | slide | what you saw here |
# |---|---|
# | $p_\theta(x) = \prod_i p_\theta(x_i \mid x_{<i})$ | section 1: exact bits per pixel, below each pixel's own histogram |
# | "too slow on raw pixels" | section 1: one evaluation per pixel; the time grows faster than the number of pixels |
# | "train encoder + decoder" (VQ-VAE) | section 2: 16 codes per digit; dead codes without k-means init and restarts, a full codebook with them |
# | "train autoregressive model to model sequences of discrete latents" | sections 3 and 4: a class-conditional GPT over codes, below the histogram baseline in bits per code, with samples the judge reads as asked |
# | "sample discrete latents ..., pass to decoder" | section 3: temperature and top-k; decoded samples in a widget |
# | (autoregressive against diffusion) | section 5: sequential steps grow with tokens, diffusion's stay fixed |
# | "combining VAEs, GANs, autoregressive models, and diffusion" | section 6: the course's models in one table |
#
# This is the end of the course's lectures: from a GAN's two-player game to a
# transformer writing a digit sixteen codes at a time.
