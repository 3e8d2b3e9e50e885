"""Lecture 06, diffusion transformers: the token grid of a latent as the patch size changes."""
from __future__ import annotations

import torch
from matplotlib import patheffects

from .. import viz
from .._validate import check_bool, check_int, check_tensor
from .player import FramePlayer, static_strip


def token_grid(image, latent_shape, patch_sizes=(1, 2, 4, 8), static: bool = True):
    """An image cut into the tokens a DiT sees; drag to change the patch size.

    The image is drawn with the patch borders of a ``p x p`` patchify of its latent (one
    latent position covers ``H / h`` pixels), each token numbered in the order the
    sequence holds them (row by row), with the sequence length and the numbers per token.

    Args:
        image: one RGB image (3, H, W) in [-1, 1].
        latent_shape: (C, h, w), the shape of the image's latent.
        patch_sizes: patch sizes p to show, each dividing h and w.
    """
    static = check_bool("static", static)
    image = check_tensor("image", image, ndim=3).detach().float().cpu()
    if image.shape[0] != 3:
        raise ValueError(f"image must be one RGB image (3, H, W), got {tuple(image.shape)}")
    if not (isinstance(latent_shape, (tuple, list, torch.Size)) and len(latent_shape) == 3):
        raise ValueError(f"latent_shape must be (C, h, w), got {latent_shape!r}")
    c, h, w = (check_int("latent_shape", v, minimum=1) for v in latent_shape)
    if image.shape[1] % h or image.shape[2] % w:
        raise ValueError(f"latent_shape {(c, h, w)} must divide the image's size {tuple(image.shape[1:])}")
    if not isinstance(patch_sizes, (tuple, list)) or not patch_sizes:
        raise ValueError(f"patch_sizes must be a non-empty list of patch sizes, got {patch_sizes!r}")
    sizes = [check_int("patch_sizes", p, minimum=1) for p in patch_sizes]
    for p in sizes:
        if h % p or w % p:
            raise ValueError(f"patch_sizes must divide the latent's size {h}x{w}, got {p}")
    down = image.shape[1] // h

    def describe(p, sep=" "):
        n = (h // p) * (w // p)
        return f"patch {p}x{p}: {n} token{'s' if n > 1 else ''}{sep}of {p} * {p} * {c} = {p * p * c} numbers"

    def draw(ax, i):
        p = sizes[i]
        viz.image_grid(ax, image[None], pad=0)
        step = p * down
        for k in range(0, image.shape[1] + 1, step):
            ax.axhline(k - 0.5, color="white", lw=1.0, alpha=0.7)
        for k in range(0, image.shape[2] + 1, step):
            ax.axvline(k - 0.5, color="white", lw=1.0, alpha=0.7)
        if (h // p) * (w // p) <= 64:
            for r in range(h // p):
                for col in range(w // p):
                    ax.text(col * step + step / 2 - 0.5, r * step + step / 2 - 0.5, str(r * (w // p) + col),
                            color="white", ha="center", va="center", fontsize=max(6, 14 - h // p),
                            path_effects=[patheffects.withStroke(linewidth=2, foreground="black")])
        ax.set_title(describe(p, sep="\n"), fontsize=9)

    if static:
        static_strip(len(sizes), lambda ax, k: draw(ax, k),
                     "The same image as a sequence of tokens, numbered in sequence order", panel_size=(2.9, 3.1))
    return FramePlayer(len(sizes), draw, lambda i: describe(sizes[i]),
                       size=(4.0, 4.0), interval=700)
