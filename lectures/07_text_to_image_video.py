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
# # Text-to-image and text-to-video
#
# *CS231n Lecture 14, "Generative Models 2": how a text prompt conditions a latent
# diffusion transformer, and what changes for video.*
#
# The slides draw today's text-to-image systems as one pipeline:
#
# > Text Prompt -> **Pretrained text encoder** (e.g. T5, CLIP) -> Text embeddings D x L ->
# > **Diffusion Transformer** (noisy latents h x w x c, timestep) -> clean latents ->
# > **Decoder** -> output image H x W x 3
#
# FLUX.1 [dev] fills it in with T5 + CLIP as text encoders, an autoencoder with 8 x 8
# downsampling and a 12B-parameter DiT. Text-to-video (Movie Gen, Sora, Wan, ...) keeps
# the pipeline and gives the latents a time axis: Movie Gen's DiT (30B) denoises a
# latent of 128 x 72 x 16 per frame ("8x8x8 downsample"), about 76K tokens. (The slide's box
# writes 32 x 128 x 72 x 16 next to "76K tokens": with 1 x 2 x 2 patches 32 frames give
# 32 x 64 x 36 = 73,728 tokens; 76K, 76,032, needs the 33 latent frames of the slide's other
# box, 257 frames downsampled 8x in time plus the first, as lecture 06 computes.)
#
# Lectures 05 and 06 built the last two boxes: a frozen autoencoder and a DiT. This
# lecture builds the first one and connects them, all small enough to train here:
#
# 1. a text encoder, "pre-trained" contrastively against images (CLIP's recipe), then
#    frozen;
# 2. a DiT that reads the frozen text embeddings by cross-attention, with caption dropout
#    for guidance; a prompt box to type into; what the cross-attention looks at;
# 3. prompts for colour-shape pairs that neither the text encoder nor the DiT ever saw;
# 4. video: moving shapes, space-time tokens, what full and factorised attention cost as
#    clips get longer, and a small text-to-video model.
#
# Run the cells top to bottom. Cells that make a claim check it with an `assert`.
#
# **How long:** about 4 minutes in full mode on a 2-core laptop CPU, which trains every
# model here from scratch. To see the results first, start the lecture with
# `cs231n_gen.start_lecture(seed=0, pretrained=True)`: the course's trained models, which
# ship with the package, then stand in for the long trainings (the lecture says so where
# each one appears), and it takes about 50 seconds, as in quick mode (`CS231N_GEN_QUICK=1`).
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
import torch.nn.functional as F

from cs231n_gen import budget, pretrained, seed_everything, viz, widgets
from cs231n_gen.autoencoding import decode, encode, latent_scale, train_autoencoder
from cs231n_gen.contrastive import clip_loss, freeze, retrieval_accuracy, similarity
from cs231n_gen.data import moving_shapes, shapes
from cs231n_gen.data.captioned_shapes import ATTRIBUTES, COLORS, PHRASINGS, POSITIONS, SHAPES, SIZES, caption
from cs231n_gen.data.clips import DIRECTIONS, clip_caption
from cs231n_gen.guidance import GuidedByText, caption_rf_loss
from cs231n_gen.image_metrics import clip_attributes, shape_attributes
from cs231n_gen.nn import CLIP, DiT, ImageEncoder, TextEncoder, VideoDiT, inflate
from cs231n_gen.nn.autoencoder import VAE
from cs231n_gen.runtime import timing_claims_apply, training_step_seconds
from cs231n_gen.sampling import euler
from cs231n_gen.tokenizer import Tokenizer
from cs231n_gen.train import fit

# %% [markdown]
# ## 1. A text encoder, pre-trained in miniature
#
# **Tokens.** A text encoder first cuts the prompt into tokens. T5 and CLIP use
# vocabularies of 32K-50K sub-word pieces; our captions use 24 words, so a word is a
# token. `Tokenizer` maps a batch of captions to ids (padded with 0 to the longest) and a
# mask that is True on real tokens, the "D x L" of the slides with L the caption length.
# A word it does not know is an error that says which word, not a silent wrong id.

# %%
tok = Tokenizer()
ids, mask = tok.encode(["a small red circle at the top left", "blue square, large, center"])
print(f"vocabulary: {len(tok)} tokens (id 0 = padding): {' '.join(tok.vocabulary[1:])}")
print("ids:\n", ids, "\nmask:\n", mask.int())
assert tok.decode(ids, mask) == ["a small red circle at the top left", "blue square large center"]
try:
    tok.encode("a purple circle")
except ValueError as err:
    print("\nunknown word ->", str(err)[:90], "...")

# %% [markdown]
# **Contrastive pre-training.** CLIP (Radford et al. 2021) trains a text encoder and an
# image encoder together on image-caption pairs from the web: in a batch of B pairs, the
# B x B matrix of cosine similarities over a temperature $\tau$,
# $S_{ij} = \cos(u_i, v_j) / \tau$, should have its largest entry of every row and every
# column on the diagonal (the matching pair). The loss is cross-entropy in both
# directions,
#
# $$\mathcal{L} = \tfrac12\big[\mathrm{CE}(S, \mathrm{diag}) + \mathrm{CE}(S^\top, \mathrm{diag})\big],$$
#
# so every other caption in the batch is a negative for an image, and every other image
# a negative for a caption. Ours: a two-layer transformer over the caption's tokens, a
# small convolutional network over the image, 64-dimensional embeddings, and a learned
# temperature starting at CLIP's 0.07. Each image is captioned in one of three phrasings,
# drawn at random ("a small red circle at the top left", "red circle, small, top left",
# "at the top left, a small red circle"), so the encoder has to learn what the words
# mean, not where they sit.
#
# Four colour-shape pairs are **held out**, here and in section 2: no blue circle, red
# square, yellow triangle or green cross is ever shown to the text encoder or to the
# diffusion model (section 3 asks for them).

# %%
HOLD = [(SHAPES.index("circle"), COLORS.index("blue")), (SHAPES.index("square"), COLORS.index("red")),
        (SHAPES.index("triangle"), COLORS.index("yellow")), (SHAPES.index("cross"), COLORS.index("green"))]
LENGTH = 10  # the longest caption has 9 words
N_PAIRS = 4096  # in both modes: the course's trained models (quick mode loads them) learned from these
pairs = shapes(N_PAIRS, generator=torch.Generator().manual_seed(0), exclude=HOLD)
phrasing = torch.randint(PHRASINGS, (N_PAIRS,), generator=torch.Generator().manual_seed(5))
pair_captions = [caption(*(int(pairs.labels[a][i]) for a in ATTRIBUTES), phrasing=int(phrasing[i]))
                 for i in range(N_PAIRS)]
pair_ids, pair_mask = tok.encode(pair_captions, length=LENGTH)

seed_everything(0)
clip = CLIP(TextEncoder(len(tok), LENGTH, width=64, depth=2, heads=4, embed_dim=64),
            ImageEncoder(3, 32, width=32, embed_dim=64))
clip_history = fit(clip, lambda m, b, g: clip_loss(*m(b[0], b[1], b[2]), m.temperature),
                   (pairs.images, pair_ids, pair_mask), steps=600, batch_size=128, lr=1e-3,
                   device=device, desc="CLIP (text and image encoders)", shipped="clip_shapes")
freeze(clip)
print(f"learned temperature {float(clip.temperature):.3f} (started at 0.07)")

# %% [markdown]
# How well does it match? Held-out pairs (images and captions it never trained on, from
# the seen combinations), in batches of 64: the similarity matrix of the first 12, and
# **retrieval**: for each image, is the most similar caption of the batch its own? Two
# images of a batch can have identical attributes, and then identical captions; we count
# retrieving either as right (and also report the strict count).

# %%
test = shapes(512, generator=torch.Generator().manual_seed(1), exclude=HOLD)
test_ids, test_mask = tok.encode(test.captions, length=LENGTH)
groups = sum(test.labels[a] * k for a, k in zip(ATTRIBUTES, (1, 4, 24, 48)))  # one number per attribute set
with torch.no_grad():
    image_emb, text_emb = clip(test.images.to(device), test_ids.to(device), test_mask.to(device))
batches = range(0, 512, 64)
retrieval = sum(retrieval_accuracy(image_emb[k:k + 64], text_emb[k:k + 64], groups[k:k + 64]) for k in batches) / 8
strict = sum(retrieval_accuracy(image_emb[k:k + 64], text_emb[k:k + 64]) for k in batches) / 8
sims = similarity(image_emb[:12], text_emb[:12]).cpu()

fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [1.25, 1]})
viz.plot_loss(clip_history, ax=axes[0], window=20)
axes[0].set_ylabel("contrastive loss")
axes[0].axhline(torch.log(torch.tensor(128.0)), color=viz.NOISE, ls="--", lw=1)
axes[0].text(5, float(torch.log(torch.tensor(128.0))) - 0.3, "log 128: chance", fontsize=8, color=viz.NOISE)
axes[0].set_title("CLIP training (batch 128)", fontsize=10)
im = axes[1].imshow(sims.T, cmap="viridis")  # rows: captions, columns: images
axes[1].set_yticks(range(12), [c.replace("a ", "", 1) for c in test.captions[:12]], fontsize=7)
axes[1].set_xticks(range(12), [f"img {i}" for i in range(12)], fontsize=7, rotation=90)
axes[1].set_ylabel("caption")
axes[1].set_title("cosine similarity, caption x image", fontsize=10)
plt.colorbar(im, ax=axes[1], fraction=0.046)
plt.tight_layout()
plt.show()
off_diagonal = sims[~torch.eye(12, dtype=torch.bool)]
print(f"retrieval, image -> caption, top-1 in batches of 64: {100 * retrieval:.1f}% (strict, own caption only: "
      f"{100 * strict:.1f}%; chance 1.6%)")
print(f"cosine similarity: matching pairs {float(sims.diag().mean()):.2f}, "
      f"other pairs {float(off_diagonal.mean()):.2f}")
assert retrieval >= 0.90
assert sims.diag().mean() > off_diagonal.mean() + 0.3
pretrained.record("clip_shapes", retrieval=retrieval, similarity_gap=sims.diag().mean() - off_diagonal.mean())

# %% [markdown]
# **Paraphrases.** The three phrasings of the same object should land close together,
# closer than the same phrasing of an object that differs in one attribute. For every
# attribute set of the held-out batch we compare the pooled embeddings:

# %%
def pooled(texts):
    i, m = tok.encode(texts, length=LENGTH)
    with torch.no_grad():
        return F.normalize(clip.text.embed(i.to(device), m.to(device)), dim=1).cpu()


labels = [tuple(int(test.labels[a][i]) for a in ATTRIBUTES) for i in range(64)]
same = torch.stack([pooled([caption(*lab, phrasing=k) for k in range(PHRASINGS)]) for lab in labels])  # (64, 3, d)
paraphrase_cos = torch.stack([same[:, i] @ same[:, j].T for i, j in ((0, 1), (0, 2), (1, 2))]).diagonal(dim1=1, dim2=2)
changed = {}
for k, attribute in enumerate(ATTRIBUTES):
    sizes = (len(SHAPES), len(COLORS), len(SIZES), len(POSITIONS))[k]
    other = [lab[:k] + ((lab[k] + 1) % sizes,) + lab[k + 1:] for lab in labels]
    changed[attribute] = (same[:, 0] * pooled([caption(*lab) for lab in other])).sum(1)
print(f"cosine similarity of paraphrases (same object, other words): {float(paraphrase_cos.mean()):.3f}")
for attribute, cos in changed.items():
    print(f"  same phrasing, {attribute} changed: {float(cos.mean()):.3f}")
example = caption(*labels[0], phrasing=0), caption(*labels[0], phrasing=1), caption(*labels[0], phrasing=2)
print(f"e.g. {example}: pairwise {[round(float(c), 3) for c in paraphrase_cos[:, 0]]}")
assert float(paraphrase_cos.mean()) > max(float(c.mean()) for c in changed.values())

# %% [markdown]
# Word order barely matters to the embedding, while a single changed attribute moves it
# far: the encoder has learned what the captions *say* about the image, because that is
# all the contrastive loss rewards. The same pressure at web scale (CLIP: 400M pairs)
# gives an encoder whose embeddings know about objects, styles and places.
#
# Now it is **frozen** (`freeze`: no parameter needs a gradient, eval mode): the slides'
# "pretrained text encoder" is never trained with the diffusion model. Its token
# embeddings (one 64-vector per word, each informed by the whole caption through
# attention) are the "text embeddings D x L" the DiT will read.

# %%
print(f"text encoder: {sum(p.numel() for p in clip.text.parameters()):,} parameters, "
      f"{sum(p.numel() for p in clip.text.parameters() if p.requires_grad)} trainable")
frozen_text = {k: v.clone() for k, v in clip.text.state_dict().items()}
assert not any(p.requires_grad for p in clip.parameters())

# %% [markdown]
# ## 2. Text-to-image
#
# **The latents** are lecture 05's: the same autoencoder, the same recipe on the same
# images, not trained again (your run of lecture 05 from the cache, or the course's
# trained copy; `start_lecture(pretrained=False)` trains it here). It is the pipeline's
# pre-trained decoder, and like the real ones it was trained on everything, held-out pairs
# included; it knows nothing about captions.

# %%
SIDE, D, C = 32, 4, 4
train = shapes(4096, generator=torch.Generator().manual_seed(0))
seed_everything(0)
vae = VAE(in_channels=3, latent_channels=C, width=16, downsample=D)
with pretrained.reusing("lecture 05"):
    train_autoencoder(vae, train.images, steps=3000, batch_size=8, lr=2e-3, kl_weight=1e-3,
                      device=device, desc="lecture 05's VAE", shipped="shapes_vae")
vae.eval()
scale = latent_scale(encode(vae, train.images.to(device)))
latents = scale * encode(vae, pairs.images.to(device))  # the captioned images, held-out pairs excluded
print(f"{len(latents)} captioned images -> latents {tuple(latents.shape[1:])}, scale {scale:.3f}")


# %% [markdown]
# **The text embeddings** of every training caption come from the frozen encoder once,
# before training (large systems precompute their T5 embeddings the same way): a
# (N, L, 64) tensor and its padding mask.
#
# **The model** is lecture 06's DiT with `conditioning="cross"`: after self-attention,
# every image token attends to the caption's token embeddings (queries from the image,
# keys and values from the text, padded positions masked out); the time step still
# enters by adaLN-Zero. **Caption dropout**: 10% of the time the caption is dropped (its
# mask row set all False, which the model reads as "no caption", a learned null vector),
# so one network learns both $v(x_t, t, \text{caption})$ and $v(x_t, t, \varnothing)$ and
# classifier-free guidance works exactly as in lecture 03:
# $v = (1 + w)\,v(x_t, \text{caption}) - w\,v(x_t, \varnothing)$.

# %%
with torch.no_grad():
    context = clip.text(pair_ids.to(device), pair_mask.to(device))  # (N, L, 64): what the DiT reads
pair_mask = pair_mask.to(device)
print(f"text embeddings: {tuple(context.shape)} (captions x tokens x width), {int(pair_mask.sum(1).min())} to "
      f"{int(pair_mask.sum(1).max())} real tokens per caption")

seed_everything(2)
t2i = DiT(input_size=8, in_channels=C, patch_size=2, width=64, depth=4, heads=4, context_dim=64,
          conditioning="cross")
t2i_history = fit(t2i, lambda m, b, g: caption_rf_loss(m, b[0], b[1], b[2], 0.1, g), (latents, context, pair_mask),
                  steps=1200, batch_size=128, lr=2e-3, device=device,
                  desc="text-to-image DiT", shipped="t2i_dit")
t2i.eval()
assert all(torch.equal(v, frozen_text[k]) for k, v in clip.text.state_dict().items())  # the encoder stayed frozen


def text_to_image(prompts, w, seed=3, steps=30):
    """Images for a list of prompts: frozen text encoder -> guided DiT sampling -> decoder."""
    i, m = tok.encode(prompts, length=LENGTH)
    i, m = i.to(device), m.to(device)
    with torch.no_grad():
        ctx = clip.text(i, m)
    noise = torch.randn(len(prompts), C, 8, 8, generator=torch.Generator().manual_seed(seed)).to(device)
    return decode(vae, euler(GuidedByText(t2i, ctx, m, w), noise, steps), scale)


prompts = ["a large red circle at the top left", "a small blue square in the center",
           "a large green triangle at the bottom right", "yellow cross, small, top",
           "magenta square, large, left", "at the bottom, a small cyan circle"]
fig, axes = plt.subplots(1, len(prompts), figsize=(2.3 * len(prompts), 2.9))
for ax, prompt in zip(axes, prompts):
    viz.image_grid(ax, text_to_image([prompt] * 4, 3.0), per_row=2)
    ax.set_title(prompt.replace(" at the", "\nat the").replace(", ", ",\n", 1).replace(" in the", "\nin the"),
                 fontsize=8)
fig.suptitle("Four samples per prompt, w = 3", fontsize=10)
plt.tight_layout()
plt.show()

# %% [markdown]
# **Measured.** 256 captions of held-out test images (seen combinations, the data's own
# phrasing), one sample each, with and without guidance, judged attribute by attribute
# by `shape_attributes` (which reads shapes from the pixels without any learning):

# %%
N_EVAL = 256


def judge(labels, prompts, w, seed=3):
    read = shape_attributes(text_to_image(prompts, w, seed))
    return {a: float((read[a].cpu() == labels[a][:len(prompts)]).float().mean()) for a in ATTRIBUTES}


seen = {w: judge(test.labels, test.captions[:N_EVAL], w) for w in (0.0, 3.0)}
print(f"{'':22s} " + " ".join(f"{a:>9s}" for a in ATTRIBUTES))
for w, r in seen.items():
    print(f"seen pairs, w = {w:g}:     " + " ".join(f"{100 * r[a]:8.1f}%" for a in ATTRIBUTES))
assert seen[3.0]["color"] >= 0.95 and seen[3.0]["shape"] >= 0.85 and seen[3.0]["position"] >= 0.85

# %% [markdown]
# **Type a prompt.** The box below runs the whole pipeline (tokenizer, frozen text
# encoder, guided DiT, decoder) on whatever you type; press Enter, or move the guidance
# weight. Words outside the vocabulary get a message instead of images. Try a position
# the captions never phrase this way ("left, a red cross"), or leave out attributes ("a
# circle") and watch the samples vary in what the prompt leaves open.

# %%
widgets.prompt_box(lambda prompt, w: text_to_image([prompt] * 8, w, seed=4), "a large blue triangle at the top right",
                   w=3.0)

# %% [markdown]
# **Where the words go.** Each cross-attention layer gives every image token a
# distribution over the caption's tokens. We take generated images, noise their latents
# halfway back ($t = 0.5$), and read the maps of all four blocks (averaged over heads and
# blocks). For one prompt, each word's map over the 4 x 4 grid of image tokens, drawn
# over the image:

# %%
def attention_maps(prompts, seed=5, t=0.5):
    """Samples for the prompts, and each image token's attention over the words at time t: (B, 16, L)."""
    i, m = tok.encode(prompts, length=LENGTH)
    i, m = i.to(device), m.to(device)
    with torch.no_grad():
        ctx = clip.text(i, m)
        noise = torch.randn(len(prompts), C, 8, 8, generator=torch.Generator().manual_seed(seed)).to(device)
        z0 = euler(GuidedByText(t2i, ctx, m, 3.0), noise, 30)
        zt = (1 - t) * z0 + t * torch.randn(z0.shape, generator=torch.Generator().manual_seed(seed + 1)).to(device)
        maps = t2i.cross_attention_maps(zt, torch.full((len(prompts),), t, device=device), ctx, m).mean(0)
    return decode(vae, z0, scale), maps.cpu(), m.cpu()


MAP_PROMPT = "a large red triangle at the bottom right"
image, maps, _ = attention_maps([MAP_PROMPT])
words = MAP_PROMPT.split()
fig, axes = plt.subplots(1, len(words) + 1, figsize=(1.9 * (len(words) + 1), 2.3))
viz.image_grid(axes[0], image, pad=0, title="sample")
for k, (ax, word) in enumerate(zip(axes[1:], words)):
    viz.image_grid(ax, image, pad=0)
    ax.imshow(maps[0, :, k].view(4, 4), cmap="magma", alpha=0.65, extent=(-0.5, 31.5, 31.5, -0.5),
              vmin=0, vmax=float(maps[0].max()), interpolation="nearest")
    ax.set_title(f"\u201c{word}\u201d", fontsize=9)
fig.suptitle(f"Cross-attention from the 16 image tokens to each word (t = 0.5): {MAP_PROMPT}", fontsize=10)
plt.tight_layout()
plt.show()

# %% [markdown]
# One picture can mislead, so we measure over many. For 64 test captions we split the 16
# image tokens of each generated image into those that cover the object (at least a fifth
# of their 8 x 8 pixels differ clearly from the background) and the rest, and add up the
# attention each group gives to each kind of word:

# %%
KIND = {**{w: "colour" for w in COLORS}, **{w: "shape" for w in SHAPES}, **{w: "size" for w in SIZES},
        **{w: "position" for p in POSITIONS for w in p.split()}, **{w: "filler" for w in ("a", "at", "the", "in")}}
KINDS = ("colour", "shape", "size", "position", "filler")
images, maps, _ = attention_maps(test.captions[:64], seed=6)
background = images[:, :, :1, :1]  # the corner pixel: the plain background
on_object = F.avg_pool2d(((images - background).norm(dim=1, keepdim=True) > 0.5).float(), 8).flatten(1) > 0.2
mass = {"object": torch.zeros(len(KINDS)), "background": torch.zeros(len(KINDS))}
counts = {"object": 0, "background": 0}
for b, text in enumerate(test.captions[:64]):
    kinds = torch.tensor([KINDS.index(KIND[w]) for w in text.split()])
    per_kind = torch.zeros(16, len(KINDS)).index_add_(1, kinds, maps[b, :, :len(kinds)])  # (tokens, kinds)
    for group, rows in (("object", on_object[b]), ("background", ~on_object[b])):
        mass[group] += per_kind[rows].sum(0)
        counts[group] += int(rows.sum())
share = {g: mass[g] / counts[g] for g in mass}
print(f"{'attention from':22s} " + " ".join(f"{k:>9s}" for k in KINDS))
for g in share:
    print(f"{g + f' tokens ({counts[g]})':22s} " + " ".join(f"{100 * v:8.1f}%" for v in share[g]))
what = lambda g: float(share[g][KINDS.index("colour")] + share[g][KINDS.index("shape")])  # noqa: E731
print(f"colour and shape words: {100 * what('object'):.0f}% of the object tokens' attention, "
      f"{100 * what('background'):.0f}% of the background tokens'")
assert what("object") > 1.5 * what("background")
assert share["background"][KINDS.index("position")] > share["object"][KINDS.index("position")]

# %% [markdown]
# The tokens that end up under the object read the words that say *what* it is (colour
# and shape) far more than background tokens do (the shares printed above, asserted at
# one and a half times or more); background tokens spend their
# attention on the position words (and on the fillers, which, like a no-op, say nothing):
# for them the question is whether the object is here at all. Nobody told the model which
# word is which: the split comes from the denoising loss alone.

# %% [markdown]
# ## 3. Pairs never seen
#
# No blue circle, red square, yellow triangle or green cross was in the text encoder's
# or the DiT's training data, though every one of those shapes and colours was, in other
# pairings. Asked for one, does the model compose "blue" and "circle", or fall back on the
# pairings it knows? Captions of the four held-out pairs at random sizes and positions,
# judged the same way:

# %%
held_labels = {a: torch.randint(n, (N_EVAL,), generator=torch.Generator().manual_seed(8 + k))
               for k, (a, n) in enumerate(zip(ATTRIBUTES, (len(SHAPES), len(COLORS), len(SIZES), len(POSITIONS))))}
pick = torch.randint(len(HOLD), (N_EVAL,), generator=torch.Generator().manual_seed(12))
held_labels["shape"] = torch.tensor([HOLD[p][0] for p in pick])
held_labels["color"] = torch.tensor([HOLD[p][1] for p in pick])
held_captions = [caption(*(int(held_labels[a][i]) for a in ATTRIBUTES)) for i in range(N_EVAL)]
held = {w: judge(held_labels, held_captions, w) for w in (0.0, 3.0)}
print(f"{'':26s} " + " ".join(f"{a:>9s}" for a in ATTRIBUTES))
for name, results in (("seen pairs", seen), ("held-out pairs", held)):
    for w, r in results.items():
        print(f"{name + f', w = {w:g}:':26s} " + " ".join(f"{100 * r[a]:8.1f}%" for a in ATTRIBUTES))

fig, axes = plt.subplots(1, len(HOLD), figsize=(2.6 * len(HOLD), 2.9))
for ax, (s, c) in zip(axes, HOLD):
    prompt = f"a large {COLORS[c]} {SHAPES[s]} in the center"
    viz.image_grid(ax, text_to_image([prompt] * 4, 3.0, seed=9), per_row=2, title=f"{prompt}\n(never seen)")
plt.tight_layout()
plt.show()
assert held[3.0]["color"] >= 0.9 and held[3.0]["shape"] >= 0.8
pretrained.record("t2i_dit", **{f"seen_{a}_w3": seen[3.0][a] for a in ATTRIBUTES},
                  held_out_color_w3=held[3.0]["color"], held_out_shape_w3=held[3.0]["shape"],
                  object_words_share=what("object"), background_words_share=what("background"))

# %% [markdown]
# ## 4. Text-to-video
#
# **Clips.** A shape crosses the frame in a straight line through its centre, left,
# right, up or down, over T = 8 frames, with captions such as "a small red circle moving
# left". Press play:

# %%
T = 8
N_CLIPS = 2048
shown = moving_shapes(4, T, generator=torch.Generator().manual_seed(9), lane=1)
widgets.clip_player(shown.videos, shown.captions)

# %% [markdown]
# **Latents with a time axis.** Every frame goes through the same frozen image encoder:
# a clip becomes a (T, 4, 8, 8) latent. (Video autoencoders also compress time: Movie
# Gen's "8x8x8 downsample" turns 257 frames into 33 latent frames. Ours does not: our
# clips are short and consecutive frames differ by a whole object's step.)
#
# **Space-time tokens.** Each latent frame is cut into p x p patches as in the image DiT;
# the clip is T (8/p)^2 tokens, each with a position in the frame and a frame index
# (fixed sin-cos embeddings of both). Self-attention over all of them at once is **full
# space-time attention**: one sequence of T N tokens, cost ~ (T N)^2. Video DiTs often
# **factorise** it: attention within each frame (T sequences of N tokens), then along
# time at each position (N sequences of T tokens), cost ~ T N^2 + N T^2. `VideoDiT` has
# both. What does a training step cost as clips get longer (2 x 2 patches, N = 16 tokens
# per frame, batch 4)?

# %%
def video_step_seconds(frames, attention, repeats):
    net = VideoDiT(frames, 8, C, 2, width=64, depth=4, heads=4, context_dim=64, attention=attention).to(device)
    x = torch.randn(4, frames, C, 8, 8, device=device)
    ctx, m = context[:4], pair_mask[:4]
    seconds = training_step_seconds(net, lambda n: caption_rf_loss(n, x, ctx, m, 0.1,
                                                                   torch.Generator(device=device).manual_seed(0)),
                                    repeats=repeats, device=device, at_least_s=0.1)
    return net.sequence_length, seconds


FRAME_COUNTS = budget(full=[1, 2, 4, 8, 16, 32, 64, 128], quick=[1, 8, 128])
cost = {(f, a): video_step_seconds(f, a, budget(full=5, quick=3)) for f in FRAME_COUNTS
        for a in ("full", "factorised")}
print(f"{'frames T':>8s} {'tokens T N':>10s} {'full (ms)':>10s} {'factorised (ms)':>16s} {'full / factorised':>18s}")
for f in FRAME_COUNTS:
    (n, full_s), (_, fact_s) = cost[f, "full"], cost[f, "factorised"]
    print(f"{f:8d} {n:10d} {1e3 * full_s:10.1f} {1e3 * fact_s:16.1f} {full_s / fact_s:17.2f}x")

fig, ax = plt.subplots(figsize=(5.4, 3.5))
clip_tokens = [cost[f, "full"][0] for f in FRAME_COUNTS]
viz.curves(ax, clip_tokens,
           {f"{a} attention": [1e3 * cost[f, a][1] for f in FRAME_COUNTS] for a in ("full", "factorised")},
           styles={"full attention": ("o-", viz.MODEL), "factorised attention": ("s-", viz.DATA)}, logy=True, ms=6,
           xlabel="frames and tokens per clip", ylabel="ms per training step (batch 4)",
           title="Video DiT step cost against clip length")
viz.step_axis(ax, clip_tokens, "frames and tokens per clip")
ax.set_xticks(clip_tokens, [f"T={f}\n{16 * f}" for f in FRAME_COUNTS], fontsize=8)
plt.tight_layout()
plt.show()
longest, shortest = FRAME_COUNTS[-1], FRAME_COUNTS[0]
growth = {a: cost[longest, a][1] / cost[shortest, a][1] for a in ("full", "factorised")}
print(f"from T = {shortest} to T = {longest} ({longest // shortest}x the tokens): full attention "
      f"{growth['full']:.1f}x slower, factorised {growth['factorised']:.1f}x")
if timing_claims_apply(device):
    assert cost[longest, "full"][1] > cost[longest, "factorised"][1]
    assert growth["full"] > growth["factorised"]

# %% [markdown]
# The linear layers (projections, MLP) cost the same per token, so both curves grow in
# proportion to T while the clips are short (more slowly at one or two frames, where fixed
# per-step costs still count). Full attention adds a term in $(TN)^2$: every token
# compares itself with all T N. Factorised attention compares each token with the N = 16
# of its frame and the T of its position, $TN(N + T)$ pairs instead of $(TN)^2$: at
# T = 128 that is 14x fewer. For short clips the factorised block is the *slower* one (it
# runs two attention layers where one would do); it wins once attention is a large part
# of the work (the table shows at which T). With our width of 64 the linear layers stay
# large next to attention up to a few hundred tokens (lecture 06: attention's share is
# about N / (6H + N)); at Movie Gen's 76K tokens a full attention layer compares 5.8
# billion pairs per head and dominates everything, which is why video models factorise or
# compress.
#
# **Training a text-to-video model.** Video models rarely start from scratch: Movie Gen,
# Emu Video and others first train a text-to-image model and then extend it in time.
# `inflate` does that with our text-to-image DiT: a factorised `VideoDiT` of the same size
# gets every per-frame weight (patch embedding, spatial attention, cross-attention, MLP,
# final layer), and a new temporal attention whose gate starts at zero. At step 0 it *is*
# the image model, run on each frame separately (we check that below); training on clips
# opens the time axis. It reads the same frozen text encoder, which never saw a clip
# caption: "moving", "up" and "down" were not in its training, so their embeddings are
# whatever the untrained weights give, distinct vectors all the same, and the video model
# learns what they mean (a frozen encoder only has to tell prompts apart; what it knows
# beyond that is a head start).
#
# Our clips cross the centre of the frame (lane 1), so a caption pins down the path up to
# a little jitter. With the object on any of three lanes the model would also have to
# agree with itself, across frames, on which lane it drew, a harder problem than this
# lecture's training budget is sized for.

# %%
clips = moving_shapes(N_CLIPS, T, generator=torch.Generator().manual_seed(10), lane=1)
clip_latents = scale * encode(vae, clips.videos.flatten(0, 1).to(device)).view(N_CLIPS, T, C, 8, 8)
clip_ids, clip_mask = tok.encode(clips.captions, length=LENGTH)
clip_mask = clip_mask.to(device)
with torch.no_grad():
    clip_context = clip.text(clip_ids.to(device), clip_mask)
seed_everything(6)  # (the timings above drew random weights: start the video model from a known state)
t2v = inflate(t2i, T, attention="factorised")
with torch.no_grad():  # at step 0 the video model is the image model on every frame
    x_probe, t_probe = clip_latents[:4], torch.rand(4, device=device)
    per_frame = torch.stack([t2i(x_probe[:, k], t_probe, context=clip_context[:4], context_mask=clip_mask[:4])
                             for k in range(T)], 1)
    assert torch.allclose(t2v(x_probe, t_probe, context=clip_context[:4], context_mask=clip_mask[:4]), per_frame,
                          atol=1e-4)
print(f"{N_CLIPS} clips -> latents {tuple(clip_latents.shape[1:])}, {t2v.sequence_length} space-time tokens per clip; "
      f"the inflated model matches the image model frame by frame")
t2v_history = fit(t2v, lambda m, b, g: caption_rf_loss(m, b[0], b[1], b[2], 0.1, g),
                  (clip_latents, clip_context, clip_mask), steps=1000, batch_size=32,
                  lr=2e-3, device=device, desc="text-to-video DiT", shipped="t2v_dit")
t2v.eval()


def text_to_video(prompts, w, seed=3, steps=30):
    i, m = tok.encode(prompts, length=LENGTH)
    i, m = i.to(device), m.to(device)
    with torch.no_grad():
        ctx = clip.text(i, m)
        noise = torch.randn(len(prompts), T, C, 8, 8, generator=torch.Generator().manual_seed(seed)).to(device)
        z = euler(GuidedByText(t2v, ctx, m, w), noise, steps)
    return decode(vae, z.flatten(0, 1), scale).view(len(prompts), T, 3, SIDE, SIDE)


# %% [markdown]
# **Measured**: captions of held-out clips, one clip each. The judge reads every frame
# (shape, colour, the object's centroid); the direction of motion is the largest
# component of the centroid's least-squares slope over the frames.

# %%
N_VIDEO_EVAL = 128
video_test = moving_shapes(N_VIDEO_EVAL, T, generator=torch.Generator().manual_seed(11), lane=1)
video_results = {}
for w in (0.0, 3.0):
    read = clip_attributes(text_to_video(video_test.captions, w, steps=20))
    majority = {a: read[a].mode(1).values[:, None] for a in ("shape", "color")}
    video_results[w] = {
        "direction": float((read["direction"] == video_test.labels["direction"]).float().mean()),
        "shape": float((read["shape"] == video_test.labels["shape"][:, None]).float().mean()),
        "color": float((read["color"] == video_test.labels["color"][:, None]).float().mean()),
        "constant": float(((read["shape"] == majority["shape"]) & (read["color"] == majority["color"]))
                          .float().mean()),
        "all frames": float(((read["shape"] == read["shape"][:, :1]) & (read["color"] == read["color"][:, :1]))
                            .all(1).float().mean()),
    }
print("direction: the motion the prompt asked for; shape, colour: frames showing the one asked for; constant: "
      "frames that agree with their clip's most common shape and colour; all frames: clips read the same in every "
      "frame")
for w, r in video_results.items():
    print(f"w = {w:g}: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in r.items()))
r = video_results[3.0]
assert r["direction"] >= 0.8 and r["constant"] >= 0.9 and r["color"] >= 0.9
pretrained.record("t2v_dit", **{f"{k.replace(' ', '_')}_w3": v for k, v in r.items()})

# %% [markdown]
# The motion follows the prompt, and the colour stays put. The shape is the fragile part:
# now and then one frame of a clip shows a blob the judge reads as another shape, which
# is why fewer clips read the same in *every* frame than frames agree with their clip.
# Keeping an object the same object from frame to frame is, at any scale, much of what
# video models spend their capacity and data on. Four prompts, one for each direction:

# %%
video_prompts = [clip_caption(s, c, 1, d) for s, c, d in ((0, 0, 0), (1, 4, 1), (2, 2, 2), (3, 5, 3))]
generated = text_to_video(video_prompts, 3.0, seed=13)
for prompt, r in zip(video_prompts, clip_attributes(generated)["direction"]):
    print(f"{prompt!r}: the judge sees it moving {DIRECTIONS[int(r)]}")
widgets.clip_player(generated, video_prompts)

# %% [markdown]
# ## Exercises
#
# **Exercise 1: the contrastive loss.** Given image embeddings and text embeddings (both
# (B, d), row i of each from the same pair) and a temperature, return `(logits, loss)`:
# `logits[i, j]` is the cosine similarity of image i and text j over the temperature
# (rows are images), and `loss` is CLIP's symmetric cross-entropy towards the diagonal,
# the mean of the image-to-text and text-to-image losses.

# %% tags=["exercise"]
import torch
import torch.nn.functional as F


def clip_loss_exercise(image_emb, text_emb, temperature):
    ### BEGIN SOLUTION
    logits = F.normalize(image_emb, dim=1) @ F.normalize(text_emb, dim=1).T / temperature
    target = torch.arange(len(logits))
    return logits, (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    ### END SOLUTION


# %% tags=["check"]
from cs231n_gen.exercises import check_clip_loss

check_clip_loss(clip_loss_exercise)

# %% [markdown]
# **Exercise 2: cross-attention with a padding mask.** Image tokens `x` (B, N, D) attend
# to caption tokens `context` (B, L, E), of which only those with `mask` True (B, L) are
# real words; the rest is padding. With the projections `wq` (D, h), `wk` and `wv` (E, h),
# return one head of attention, shape (B, N, h): queries from `x`, keys and values from
# `context`, scores divided by $\sqrt{h}$, padded tokens never attended to.

# %% tags=["exercise"]
import torch


def masked_cross_attention(x, context, mask, wq, wk, wv):
    ### BEGIN SOLUTION
    q, k, v = x @ wq, context @ wk, context @ wv
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
    return scores.softmax(-1) @ v
    ### END SOLUTION


# %% tags=["check"]
from cs231n_gen.exercises import check_masked_cross_attention

check_masked_cross_attention(masked_cross_attention)

# %% [markdown]
# ## Summary
#
# | slide | what you saw here |
# |---|---|
# | "Pretrained text encoder (e.g. T5, CLIP)" | section 1: a transformer over caption tokens trained with CLIP's symmetric contrastive loss; over 90% top-1 retrieval in batches of 64; paraphrases land together; then frozen |
# | "Text embeddings D x L" | section 2: one 64-vector per word, a padding mask, computed once before training |
# | "Cross-attention / joint attention: common for text" | section 2: image tokens attend to the words; the maps show where each word goes |
# | text-to-image with guidance | section 2: caption dropout gives the null caption; at w = 3 the judge reads the colour asked for in 95% or more of the samples, the shape and the position in 85% or more (asserted) |
# | (composition) | section 3: colour-shape pairs never seen in training come out right |
# | "Text-to-Video Diffusion", Movie Gen's 76K tokens | section 4: frames encoded by the image autoencoder, space-time tokens, full attention's cost growing faster than factorised attention's, a small factorised video DiT that moves shapes the way the prompt says |
#
# Next: **distillation**: the same models, sampled in a few steps instead of dozens.
