"""Interactive explorers built from core ipywidgets (they render in JupyterLab,
Classic Notebook, VS Code and Colab without extra front-end packages).

Each explorer precomputes what its slider scrubs through, renders frames to PNG on
first view (cached afterwards) and shows them in an ``ipywidgets.Image``, so dragging
only swaps pictures. Each ``*_explorer``/``*_player`` function also draws a static
figure first, so the notebook still tells its story where widgets do not run
(GitHub, nbval, a PDF export).
"""
from __future__ import annotations

import io

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from . import viz
from ._validate import check_bool, check_callable, check_int, check_labels, check_module, check_points, check_real, check_tensor


FRAME_DPI = 110


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=FRAME_DPI)
    return buf.getvalue()


class FramePlayer:
    """A Play button and a slider over ``n_frames`` frames drawn by ``draw(ax, i)``."""

    def __init__(self, n_frames: int, draw, label, size=(4.2, 4.2), interval: int = 120):
        import ipywidgets as W

        self.n_frames = check_int("n_frames", n_frames, minimum=1)
        check_callable("draw", draw, "a function draw(ax, i)")
        check_callable("label", label, "a function label(i) -> str")
        if not (isinstance(size, (tuple, list)) and len(size) == 2):
            raise ValueError(f"size must be a (width, height) pair in inches, got {size!r}")
        size = tuple(check_real("size", v, minimum=0.0, strict_min=True) for v in size)
        interval = check_int("interval", interval, minimum=1)
        self._draw, self._label, self._size = draw, label, size
        self._cache: dict[int, bytes] = {}
        # Shown at its own pixel size: left alone, JupyterLab stretches an Image to the
        # output's full width, which blurs the frame and pushes the slider off screen.
        width, height = (round(v * FRAME_DPI) for v in size)
        self.image = W.Image(format="png", value=self.frame_png(0),
                             layout=W.Layout(width=f"{width}px", height=f"{height}px"))
        self.play = W.Play(min=0, max=n_frames - 1, step=1, value=0, interval=interval,
                           description="play", layout=W.Layout(width="auto"))
        self.slider = W.IntSlider(min=0, max=n_frames - 1, step=1, value=0, readout=False,
                                  continuous_update=True, layout=W.Layout(width="320px"))
        self.caption = W.Label(value=label(0))
        W.jslink((self.play, "value"), (self.slider, "value"))
        self.slider.observe(self._on_change, names="value")
        self.widget = W.VBox([W.HBox([self.play, self.slider, self.caption]), self.image])

    def frame_png(self, i: int) -> bytes:
        i = check_int("i", i, minimum=0)
        if i >= self.n_frames:
            raise ValueError(f"i must be < {self.n_frames}, got {i}")
        if i not in self._cache:
            fig = Figure(figsize=self._size)
            ax = fig.add_subplot(1, 1, 1)
            self._draw(ax, i)
            fig.tight_layout()
            self._cache[i] = _png(fig)
        return self._cache[i]

    def show_frame(self, i: int) -> None:
        i = check_int("i", i, minimum=0)
        if i >= self.n_frames:
            raise ValueError(f"i must be < {self.n_frames}, got {i}")
        self.image.value = self.frame_png(i)
        self.caption.value = self._label(i)

    def _on_change(self, change) -> None:
        self.show_frame(change["new"])

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


def _live_figure(controls, draw, size):
    """An Image redrawn by ``draw(ax)`` whenever one of ``controls`` changes (cheap figures only)."""
    import ipywidgets as W

    image = W.Image(format="png", layout=W.Layout(width=f"{round(size[0] * FRAME_DPI)}px",
                                                   height=f"{round(size[1] * FRAME_DPI)}px"))

    def render(*_):
        fig = Figure(figsize=size)
        draw(fig.add_subplot(1, 1, 1))
        fig.tight_layout()
        image.value = _png(fig)

    for control in controls:
        control.observe(render, names="value")
    render()
    return image


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
            viz.scatter(ax, ref, color=viz.DATA, lim=lim, alpha=0.12, s=3)
        if i > 0:  # a short tail shows where each particle came from
            j = max(0, i - 3)
            seg = pts[j:i + 1].numpy()
            ax.plot(seg[:, :200, 0], seg[:, :200, 1], color="k", alpha=0.25, lw=0.6)
        viz.scatter(ax, pts[i], color=viz.MODEL, lim=lim, alpha=0.7, s=4)
        ax.set_title(f"t = {float(ts[i]):.2f}", fontsize=11)

    if static:
        viz.plot_snapshots(pts, ts, lim=lim, reference=ref,
                           title="Sampling: particles flow from noise (t = 1) to data (t = 0)")
        plt.show()
    return FramePlayer(traj.shape[0], draw, lambda i: f"t = {float(ts[i]):.2f}")


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
        fig, axes = plt.subplots(1, 5, figsize=(13, 2.8))
        for ax, t in zip(axes, (0.0, 0.25, 0.5, 0.75, 1.0)):
            viz.scatter(ax, (1 - t) * x + t * z, color=viz.MODEL, lim=lim, title=f"t = {t:g}")
        fig.suptitle("Corrupting data: x_t = (1 - t) x + t z", fontsize=11)
        fig.tight_layout()
        plt.show()
    return FramePlayer(n_frames, draw, lambda i: f"t = {float(ts[i]):.2f}", interval=150)


def gan_training_player(history, reference=None, lim: float = 3.5, n_show: int = 1000, static: bool = True):
    """Scrub through a 2D GAN's training: D's decision surface, the data, G's samples.

    Args:
        history: a :class:`cs231n_gen.gan.GANHistory` from ``train_gan`` run with
            ``snapshot_every`` (and ``snapshot_grid`` for the decision surface).
        reference: data points drawn in black for comparison.
    """
    static = check_bool("static", static)
    from .gan import GANHistory

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
        viz.plot_gan_snapshot(ax, snaps[i], reference=ref, lim=lim, n_show=n_show,
                              title=f"step {snaps[i].step}: blue = D says real, red = fake")

    if static:
        picks = sorted({round(j * (len(snaps) - 1) / 4) for j in range(5)})
        fig, axes = plt.subplots(1, len(picks), figsize=(2.8 * len(picks), 2.9), squeeze=False)
        for ax, j in zip(axes[0], picks):
            viz.plot_gan_snapshot(ax, snaps[j], reference=ref, lim=lim, n_show=n_show)
        fig.suptitle("The game over training: G's samples (orange), data (black), D(x) (blue = real, red = fake)",
                     fontsize=10)
        fig.tight_layout()
        plt.show()
    return FramePlayer(len(snaps), draw, label, size=(4.4, 4.4), interval=250)


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


def guidance_explorer(ws, samples, labels, reference=None, captions=None, lim: float = 4.5, static: bool = True):
    """Class-conditional samples as the guidance weight w grows; drag w or press play.

    Args:
        ws: the guidance weights, one per frame (increasing).
        samples: (frames, n, 2) samples, ``samples[i]`` drawn with weight ``ws[i]``
            from the same starting noise, so a point can be followed across frames.
        labels: (n,) the class each sample was asked to be (coloured by class).
        reference: optional real data drawn faintly behind the samples.
        captions: optional strings, one per frame, shown next to the slider (scores).
    """
    static = check_bool("static", static)
    if not isinstance(ws, (list, tuple, torch.Tensor)) or len(ws) == 0:
        raise ValueError(f"ws must be a non-empty list of guidance weights, got {ws!r}")
    ws = [float(check_real("ws", w, minimum=0.0)) for w in ws]
    lim = check_real("lim", lim, minimum=0.0, strict_min=True)
    pts = check_tensor("samples", samples, ndim=3, last_dim=2).detach().cpu()
    if len(ws) != pts.shape[0]:
        raise ValueError(f"ws must have {pts.shape[0]} entries (one per frame of samples), got {len(ws)}")
    labels = check_labels("labels", labels, pts.shape[1], len(viz.CLASS_COLORS), "cpu")
    ref = check_points("reference", reference, 2).detach().cpu() if reference is not None else None
    if captions is not None and len(captions) != len(ws):
        raise ValueError(f"captions must have {len(ws)} entries (one per frame), got {len(captions)}")

    def label(i):
        return f"w = {ws[i]:g}" + (f": {captions[i]}" if captions is not None else "")

    def draw(ax, i, size=4.0, title="guidance weight w = "):
        if ref is not None:
            viz.scatter(ax, ref, color=viz.NOISE, lim=lim, alpha=0.15, s=size - 1)
        viz.class_scatter(ax, pts[i], labels, lim=lim, s=size, alpha=0.6, title=f"{title}{ws[i]:g}")

    if static:
        picks = sorted({round(j * (len(ws) - 1) / 4) for j in range(5)})
        fig, axes = plt.subplots(1, len(picks), figsize=(2.8 * len(picks), 3.0), squeeze=False)
        for ax, j in zip(axes[0], picks):
            draw(ax, j, size=2.0, title="w = ")
        fig.suptitle("Guided samples, coloured by the class asked for (grey: real data)", fontsize=10)
        fig.tight_layout()
        plt.show()
    return FramePlayer(len(ws), draw, label, size=(4.4, 4.4), interval=300)


def time_sampler_explorer(reference=None, reference_label: str = "difficulty", static: bool = True):
    """Sliders for a training-time sampler: base (uniform or logit-normal), m, s and the shift.

    Draws the density p(t) of :class:`cs231n_gen.schedules.TimeSampler` against the
    uniform one, with its median and the share of draws at the ends, so one can see
    where training effort goes.

    Args:
        reference: optional ``(t, values)`` curve drawn in grey on its own axis (for
            instance the oracle's difficulty per noise level), to compare with.
        reference_label: the axis label of that curve.
    """
    static = check_bool("static", static)
    import ipywidgets as W

    from .schedules import TimeSampler

    ref = None
    if reference is not None:
        if not (isinstance(reference, (tuple, list)) and len(reference) == 2):
            raise ValueError(f"reference must be a pair (t, values) of 1-D tensors, got {reference!r}")
        ref_t = check_tensor("reference[0]", reference[0], ndim=1).detach().cpu()
        ref_v = check_tensor("reference[1]", reference[1], ndim=1).detach().cpu()
        if ref_t.shape != ref_v.shape:
            raise ValueError(f"reference must be (t, values) of equal length, got {ref_t.shape[0]} and {ref_v.shape[0]}")
        ref = (ref_t, ref_v)
    grid = torch.linspace(0.0025, 0.9975, 399)

    def summary(sampler):
        draws = sampler(40_000, generator=torch.Generator().manual_seed(0))
        low, high = float((draws < 0.1).float().mean()), float((draws > 0.9).float().mean())
        return float(draws.median()), low, high

    def draw(ax, sampler, title=None):
        dens = sampler.density(grid)
        ax.fill_between(grid, dens, color=viz.MODEL, alpha=0.3)
        ax.plot(grid, dens, color=viz.MODEL, lw=2, label=f"p(t): {sampler}")
        ax.axhline(1.0, color="k", ls=":", lw=1, label="uniform")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, max(3.0, min(8.0, float(dens.max()) * 1.1)))
        ax.set_xlabel("noise level t  (0 = data, 1 = noise)")
        ax.set_ylabel("density of training t")
        if ref is not None:
            twin = ax.twinx()
            twin.plot(ref[0], ref[1], color=viz.NOISE, lw=1.5, ls="--")
            twin.set_ylabel(reference_label, color=viz.NOISE, fontsize=8)
            twin.tick_params(axis="y", colors=viz.NOISE, labelsize=7)
            twin.set_ylim(0, None)
        median, low, high = summary(sampler)
        ax.axvline(median, color=viz.MODEL, lw=0.8)
        ax.legend(loc="upper left", fontsize=7)
        ax.set_title(title or f"median {median:.2f};  t < 0.1: {100 * low:.0f}%,  t > 0.9: {100 * high:.0f}%",
                     fontsize=9)

    if static:
        presets = [TimeSampler(), TimeSampler("logit_normal"), TimeSampler("logit_normal", m=0.0, s=1.0, shift=3.0),
                   TimeSampler(shift=3.0)]
        fig, axes = plt.subplots(1, len(presets), figsize=(3.4 * len(presets), 3.0))
        for ax, sampler in zip(axes, presets):
            draw(ax, sampler, title=str(sampler))
            ax.get_legend().remove()
        fig.suptitle("Where training spends its effort: the density of t under four samplers", fontsize=10)
        fig.tight_layout()
        plt.show()

    base = W.ToggleButtons(options=[("logit-normal", "logit_normal"), ("uniform", "uniform")], value="logit_normal")
    m = W.FloatSlider(value=0.0, min=-2.0, max=2.0, step=0.1, description="m", continuous_update=True)
    s = W.FloatSlider(value=1.0, min=0.3, max=2.0, step=0.1, description="s", continuous_update=True)
    shift = W.FloatLogSlider(value=1.0, base=2, min=-2, max=3, step=0.25, description="shift",
                             continuous_update=True)
    image = _live_figure((base, m, s, shift), lambda ax: draw(ax, TimeSampler(base.value, m=m.value, s=s.value,
                                                                             shift=shift.value)), (5.6, 3.4))
    return W.VBox([W.HBox([base]), W.HBox([m, s, shift]), image])


def path_explorer(mixture, paths: dict, targets=("eps", "x", "v", "velocity", "score"), lim: float = 3.5,
                  n: int = 15, static: bool = True):
    """Pick a path and a target, drag t: the marginal p_t and the exact field of that target.

    Args:
        mixture: a :class:`~cs231n_gen.data.GaussianMixture` (its p_t is again a mixture,
            with means a mu_k and variances a^2 s_k^2 + b^2, so it is drawn exactly).
        paths: ``{name: DiffusionPath}``.
        targets: the prediction targets offered (see :data:`cs231n_gen.paths.TARGETS`).
    """
    import ipywidgets as W

    from . import oracle as _oracle
    from .data.toy2d import GaussianMixture
    from .paths import check_path, check_target

    if not isinstance(mixture, GaussianMixture) or mixture.dim != 2:
        raise ValueError("mixture must be a 2D cs231n_gen.data.GaussianMixture")
    if not isinstance(paths, dict) or not paths:
        raise ValueError(f"paths must be a non-empty dict of name -> DiffusionPath, got {paths!r}")
    for path in paths.values():
        check_path(path)
    if not isinstance(targets, (list, tuple)) or not targets:
        raise ValueError(f"targets must be a non-empty list of target names, got {targets!r}")
    targets = [check_target("targets", t) for t in targets]
    lim = check_real("lim", lim, minimum=0.0, strict_min=True)
    n = check_int("n", n, minimum=2)
    mixture = mixture.to("cpu")
    grid = torch.linspace(-lim * 0.9, lim * 0.9, n)
    gx, gy = torch.meshgrid(grid, grid, indexing="xy")
    pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)

    def marginal(path, t):
        a, b = float(path.a(torch.tensor(t))), float(path.b(torch.tensor(t)))
        return GaussianMixture(mixture.means * a, torch.sqrt(a**2 * mixture.stds**2 + b**2), mixture.weights), a, b

    def draw(ax, name, target, t):
        path = paths[name]
        p_t, a, b = marginal(path, t)
        view = max(lim, 3 * b) if b > lim else lim
        viz.plot_density(ax, p_t, lim=view, resolution=120)
        field_pts = pts * (view / lim)
        y = _oracle.predict(mixture, field_pts, t, path, target)
        scale = float(y.norm(dim=1).max()) / (0.2 * view) + 1e-12
        ax.quiver(field_pts[:, 0], field_pts[:, 1], y[:, 0], y[:, 1], color="k", angles="xy",
                  scale_units="xy", scale=scale, width=0.004)
        ax.set_title(f"{name}, t = {t:.2f}: a = {a:.2f}, b = {b:.2f}\narrows: optimal {target} prediction",
                     fontsize=9)

    if static:
        first = next(iter(paths))
        fig, axes = plt.subplots(1, 4, figsize=(12, 3.4))
        for ax, t in zip(axes, (0.05, 0.3, 0.6, 0.9)):
            draw(ax, first, targets[0], t)
        fig.tight_layout()
        plt.show()

    path_box = W.Dropdown(options=list(paths), value=next(iter(paths)), description="path")
    target_box = W.Dropdown(options=targets, value=targets[0], description="target")
    t_slider = W.FloatSlider(value=0.5, min=0.02, max=0.98, step=0.02, description="t", continuous_update=True)
    image = _live_figure((path_box, target_box, t_slider),
                         lambda ax: draw(ax, path_box.value, target_box.value, t_slider.value), (4.6, 4.6))
    return W.VBox([W.HBox([path_box, target_box]), t_slider, image])
