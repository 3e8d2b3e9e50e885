"""Lecture 01, GANs: the game over training, and walks through the latent space."""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from .. import viz
from .._validate import check_bool, check_int, check_module, check_points, check_real, check_tensor
from .player import FramePlayer, frame_picks, static_strip

def gan_training_player(history, reference=None, lim: float = 3.5, n_show: int = 1000, static: bool = True):
    """Scrub through a 2D GAN's training: D's decision surface, the data, G's samples.

    Args:
        history: a :class:`cs231n_gen.gan.GANHistory` from ``train_gan`` run with
            ``snapshot_every`` (and ``snapshot_grid`` for the decision surface).
        reference: data points drawn in black for comparison.
    """
    static = check_bool("static", static)
    from ..gan import GANHistory

    if not isinstance(history, GANHistory):
        raise ValueError(f"history must be what train_gan() returned (a GANHistory), got {type(history).__name__}")
    n_show = check_int("n_show", n_show, minimum=1)
    lim = check_real("lim", lim, minimum=0.0, strict_min=True)
    snaps = history.snapshots
    if not snaps:
        raise ValueError("history has no snapshots: train with train_gan(..., snapshot_every=N)")
    if snaps[0].samples.ndim != 2 or snaps[0].samples.shape[1] != 2:
        raise ValueError(f"gan_training_player needs 2D samples, got shape {tuple(snaps[0].samples.shape)}")
    ref = check_points("reference", reference, 2).detach().cpu() if reference is not None else None
    lim = history.grid[0] if history.grid is not None else lim

    def label(i):
        return f"step {snaps[i].step}"

    def draw(ax, i):
        viz.plot_gan_snapshot(ax, snaps[i], reference=ref, lim=lim, n_show=n_show, key=True,
                              title=f"step {snaps[i].step}")

    if static:
        picks = frame_picks(len(snaps))
        static_strip(len(picks), lambda ax, k: viz.plot_gan_snapshot(ax, snaps[picks[k]], reference=ref, lim=lim,
                                                                     n_show=n_show),
                     "The game over training: G's samples (orange), data (black), D(x) (blue = real, red = fake)")
    return FramePlayer(len(snaps), draw, label, size=(5.2, 4.4), interval=250)


def latent_interpolation(generator_net, z0, z1, n_frames: int = 11, per_row: int | None = None, static: bool = True):
    """x_t = G(z_t), z_t = t z0 + (1 - t) z1 for pairs of latents; slide t from 0 to 1.

    Args:
        generator_net: an image generator (z -> (n, 1, h, w) in [-1, 1]).
        z0, z1: (pairs, z_dim) latents; row k interpolates z1[k] (t = 0) to z0[k] (t = 1).
        n_frames: number of t values in [0, 1].
    """
    static = check_bool("static", static)
    check_module("generator_net", generator_net)
    z0 = check_tensor("z0", z0, ndim=2)
    z1 = check_tensor("z1", z1, ndim=2)
    if z0.shape != z1.shape:
        raise ValueError(f"z1 must have the shape of z0 {tuple(z0.shape)}, got {tuple(z1.shape)}")
    n_frames = check_int("n_frames", n_frames, minimum=2)
    ts = torch.linspace(0, 1, n_frames)
    was_training = generator_net.training
    generator_net.eval()
    with torch.no_grad():
        frames = torch.stack([generator_net(t * z0 + (1 - t) * z1).cpu() for t in ts.tolist()])
    generator_net.train(was_training)
    if frames.ndim != 5:
        raise ValueError(f"generator_net must return images (n, c, h, w), got shape {tuple(frames.shape[1:])}")
    pairs = z0.shape[0]
    per_row = check_int("per_row", per_row, minimum=1) if per_row is not None else min(pairs, 8)

    def draw(ax, i):
        viz.image_grid(ax, frames[i], per_row=per_row, title=f"x_t = G(t z0 + (1 - t) z1),  t = {float(ts[i]):.2f}")

    if static:
        fig, ax = plt.subplots(figsize=(min(12, 0.9 * n_frames), 0.9 * pairs + 0.4))
        strip = frames.transpose(0, 1).reshape(pairs * n_frames, *frames.shape[2:])
        viz.image_grid(ax, strip, per_row=n_frames,
                       title="Latent interpolation: each row walks from G(z1) (left) to G(z0) (right)")
        fig.tight_layout()
        plt.show()
    rows = -(-pairs // per_row)
    return FramePlayer(n_frames, draw, lambda i: f"t = {float(ts[i]):.2f}",
                       size=(0.75 * per_row + 0.4, 0.75 * rows + 0.5), interval=150)
