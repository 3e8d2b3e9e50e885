"""Lecture 05, latent diffusion: two decoders on the same latents, samples as guidance grows."""
from __future__ import annotations

import textwrap

import torch

from .. import viz
from .._validate import check_bool, check_int, check_real, check_strings, check_tensor
from .player import FramePlayer, frame_picks, static_strip


def _rgb(name: str, value, like=None) -> torch.Tensor:
    value = check_tensor(name, value, ndim=4)
    if value.shape[1] != 3 or value.shape[0] < 1:
        raise ValueError(f"{name} must be RGB images (n, 3, H, W) with n >= 1, got {tuple(value.shape)}")
    if like is not None and value.shape != like.shape:
        raise ValueError(f"{name} must have the shape of the originals {tuple(like.shape)}, got {tuple(value.shape)}")
    return value.detach().float().cpu()


def decoder_comparison(originals, plain, sharp, captions=None, per_frame: int = 4, static: bool = True):
    """Held-out images and what two decoders make of the same latents; drag through the examples.

    Each frame shows ``per_frame`` examples as rows of three: the original, the plain VAE
    decoder's reconstruction, and the decoder trained with the patch critic.

    Args:
        originals, plain, sharp: (n, 3, H, W) images in [-1, 1], row i of each from the
            same image (and the same latent for the two decoders).
        captions: optional list of n captions, each drawn at the left of its row.
        per_frame: examples per frame.
    """
    static = check_bool("static", static)
    originals = _rgb("originals", originals)
    plain = _rgb("plain", plain, originals)
    sharp = _rgb("sharp", sharp, originals)
    per_frame = check_int("per_frame", per_frame, minimum=1)
    n = originals.shape[0]
    if captions is not None:
        captions = check_strings("captions", captions, n, of="one per image")
    frames = max(1, n // per_frame)

    def stack(i):  # rows: examples; columns: original, plain, sharp
        rows = range(i * per_frame, min(n, (i + 1) * per_frame))
        return torch.stack([img for r in rows for img in (originals[r], plain[r], sharp[r])])

    def draw(ax, i, title=True):
        viz.image_grid(ax, stack(i), per_row=3, pad=2)
        if captions is not None:  # each row's caption at its left
            rows = range(i * per_frame, min(n, (i + 1) * per_frame))
            viz.label_rows(ax, [textwrap.fill(captions[r], 18) for r in rows], originals.shape[-1], pad=2, fontsize=7)
        if title:
            ax.set_title("original | plain VAE | with patch critic", fontsize=9)

    def label(i):
        first = i * per_frame
        return f"examples {first + 1}-{min(n, first + per_frame)} of {n}"

    if static:
        picks = frame_picks(frames, 3)
        static_strip(len(picks), lambda ax, k: draw(ax, picks[k]),
                     "The same latents through two decoders (columns: original, plain VAE, with patch critic)",
                     panel_size=(3.6, 3.4) if captions is not None else (2.6, 3.4))
    return FramePlayer(frames, draw, label, size=(4.4, 4.2) if captions is not None else (3.2, 4.2), interval=600)


def guidance_samples(ws, images, names, static: bool = True):
    """Latent-diffusion samples decoded to images as the guidance weight w grows; drag w or press play.

    Args:
        ws: the guidance weights, one per frame (increasing).
        images: (frames, n, 3, H, W) decoded samples; ``images[i]`` drawn with weight
            ``ws[i]`` from the same starting noise, one class per row.
        names: one name per row (the class asked for), written at the row's left.
    """
    static = check_bool("static", static)
    if not isinstance(ws, (list, tuple)) or len(ws) == 0:
        raise ValueError(f"ws must be a non-empty list of guidance weights, got {ws!r}")
    ws = [float(check_real("ws", w, minimum=0.0)) for w in ws]
    images = check_tensor("images", images, ndim=5).detach().float().cpu()
    if images.shape[0] != len(ws) or images.shape[2] != 3:
        raise ValueError(f"images must be shaped ({len(ws)}, n, 3, H, W) (one frame per weight), "
                         f"got {tuple(images.shape)}")
    if not isinstance(names, (list, tuple)) or not names or images.shape[1] % len(names) \
            or not all(isinstance(n, str) for n in names):
        raise ValueError(f"names must be a list of class names (strings) whose count divides n = {images.shape[1]}, "
                         f"got {names!r}")
    per_row = images.shape[1] // len(names)

    def draw(ax, i, title="guidance weight w = "):
        viz.image_grid(ax, images[i], per_row=per_row, pad=2, title=f"{title}{ws[i]:g}")
        viz.label_rows(ax, list(names), images.shape[-1], pad=2)

    # Sized to the grid (a tile about 0.45 inch, room for the row names), not a fixed square.
    width, height = 0.45 * per_row + 0.9, 0.45 * len(names) + 0.5
    if static:
        picks = frame_picks(len(ws), 4)
        rows = 2 if len(picks) == 4 else 1
        static_strip(len(picks) // rows, lambda ax, k: draw(ax, picks[k], title="w = "),
                     "Latent-diffusion samples, one row per class asked for", panel_size=(width, height), rows=rows)
    return FramePlayer(len(ws), draw, lambda i: f"w = {ws[i]:g}", size=(width, height), interval=500)
