"""Lecture 02, rectified flow: particles flowing from noise to data, and the corruption x_t."""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from .. import viz
from .._validate import check_bool, check_int, check_points, check_real, check_tensor
from .player import FramePlayer, static_strip

def flow_player(trajectory, times, reference=None, lim: float = 3.5, n_show: int = 1000, static: bool = True):
    """Particles flowing from noise (t = 1) to data (t = 0); press play or drag.

    Args:
        trajectory: (frames, n, 2) states from :func:`cs231n_gen.sampling.euler`
            with ``return_trajectory=True``.
        times: (frames,) the time of each frame.
        reference: optional data points drawn faintly behind the particles.
        static: also draw a strip of snapshots (the figure that stays in the notebook).
    """
    static = check_bool("static", static)
    traj = check_tensor("trajectory", trajectory, ndim=3, last_dim=2)
    if traj.shape[0] < 1 or traj.shape[1] < 1:
        raise ValueError(f"trajectory must hold at least one frame of one point, got {tuple(traj.shape)}")
    times = check_tensor("times", times, ndim=1)
    if times.shape[0] != traj.shape[0]:
        raise ValueError(f"times must have {traj.shape[0]} entries (one per frame of trajectory), "
                         f"got {times.shape[0]}")
    lim = check_real("lim", lim, minimum=0.0, strict_min=True)
    n_show = check_int("n_show", n_show, minimum=1)
    pts = traj[:, :n_show].detach().cpu()
    ts = times.detach().cpu()
    ref = check_points("reference", reference, 2).detach().cpu() if reference is not None else None

    def draw(ax, i):
        if ref is not None:
            viz.scatter(ax, ref, color=viz.DATA, lim=lim, alpha=0.12, s=3, label="data")
        if i > 0:  # a short tail shows where each particle came from
            j = max(0, i - 3)
            seg = pts[j:i + 1].numpy()
            ax.plot(seg[:, :200, 0], seg[:, :200, 1], color="k", alpha=0.25, lw=0.6)
            ax.plot([], [], color="k", alpha=0.4, lw=0.8, label="last steps")
        viz.scatter(ax, pts[i], color=viz.MODEL, lim=lim, alpha=0.7, s=4, label="particles")
        ax.legend(fontsize=7, loc="lower left", markerscale=2.5, framealpha=0.8)
        ax.set_title(f"t = {float(ts[i]):.2f} (1 = noise, 0 = data)", fontsize=10)

    if static:
        viz.plot_snapshots(pts, ts, lim=lim, reference=ref,
                           title="Sampling: particles flow from noise (t = 1) to data (t = 0)")
        plt.show()
    return FramePlayer(traj.shape[0], draw, lambda i: f"t = {float(ts[i]):.2f}: from 1 (noise) to 0 (data)")


def interpolation_explorer(x, z, n_frames: int = 21, lim: float = 3.5, n_pairs: int = 12, static: bool = True):
    """x_t = (1 - t) x + t z as t slides from 0 (data) to 1 (noise).

    Shows the cloud of x_t and, for ``n_pairs`` pairs, the straight segment from x to z
    with the current x_t on it.
    """
    static = check_bool("static", static)
    x = check_points("x", x, 2).detach().cpu()
    z = check_points("z", z, 2).detach().cpu()
    if x.shape != z.shape:
        raise ValueError(f"z must have the shape of x {tuple(x.shape)}, got {tuple(z.shape)}")
    n_frames = check_int("n_frames", n_frames, minimum=2)
    lim = check_real("lim", lim, minimum=0.0, strict_min=True)
    n_pairs = check_int("n_pairs", n_pairs, minimum=1)
    ts = torch.linspace(0, 1, n_frames)

    def draw(ax, i):
        t = float(ts[i])
        xt = (1 - t) * x + t * z
        viz.scatter(ax, xt, color=viz.MODEL, lim=lim, alpha=0.5, s=3)
        k = min(n_pairs, x.shape[0])
        for a, b in zip(x[:k].numpy(), z[:k].numpy()):
            ax.plot([a[0], b[0]], [a[1], b[1]], color="k", lw=0.6, alpha=0.5)
        ax.scatter(x[:k, 0], x[:k, 1], s=14, color=viz.DATA, zorder=3, label="x (data)")
        ax.scatter(z[:k, 0], z[:k, 1], s=14, color=viz.NOISE, zorder=3, label="z (noise)")
        ax.scatter(xt[:k, 0], xt[:k, 1], s=22, color="k", marker="x", zorder=4, label="x_t")
        ax.legend(loc="lower right", fontsize=7)
        ax.set_title(f"x_t = (1 - t) x + t z,  t = {t:.2f}", fontsize=10)

    if static:
        shown = (0.0, 0.25, 0.5, 0.75, 1.0)
        static_strip(len(shown), lambda ax, k: viz.scatter(ax, (1 - shown[k]) * x + shown[k] * z, color=viz.MODEL,
                                                           lim=lim, title=f"t = {shown[k]:g}"),
                     "Corrupting data: x_t = (1 - t) x + t z", panel_size=(2.6, 2.8))
    return FramePlayer(n_frames, draw, lambda i: f"t = {float(ts[i]):.2f}: from 0 (data) to 1 (noise)", interval=150)
