"""Matplotlib figures for the 2D lectures.

Every function draws onto an ``ax`` you pass (or makes its own figure) and returns the
figure or axes, so a notebook cell can compose panels. Colours follow one rule: data
is blue, noise is grey, generated samples are orange, the oracle is green; classes
of labelled data take ``CLASS_COLORS`` in label order.
"""
from __future__ import annotations

import textwrap

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch

from ._validate import (as_float_tensor, check_axes, check_bool, check_callable, check_int, check_labels, check_points,
                        check_real, check_strings, check_tensor, check_text)
from .data.toy2d import check_mixture
from .runtime import device_of

DATA = "#1f77b4"
NOISE = "#7f7f7f"
MODEL = "#ff7f0e"
ORACLE = "#2ca02c"
CLASS_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


def _lim(lim) -> float:
    return check_real("lim", lim, minimum=0.0, strict_min=True)


def _size(name, size) -> float:
    return check_real(name, size, minimum=0.0, strict_min=True)


def _reference(name, points):
    """Optional (n, 2) points drawn behind a figure, checked under the caller's argument name."""
    return None if points is None else check_points(name, points, 2)


def _square(ax, lim: float) -> None:
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def scatter(ax, points, color=MODEL, lim: float = 3.5, title: str | None = None, s: float = 2.0, alpha=0.5, **kw):
    """A square scatter plot of (n, 2) points."""
    check_axes("ax", ax)
    lim = _lim(lim)
    s = check_real("s", s, minimum=0.0, strict_min=True)
    alpha = check_real("alpha", alpha, minimum=0.0, maximum=1.0)
    pts = _np(check_points("points", points, 2))
    ax.scatter(pts[:, 0], pts[:, 1], s=s, color=color, alpha=alpha, linewidths=0, **kw)
    _square(ax, lim)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def class_scatter(ax, points, labels, lim: float = 3.5, title: str | None = None, s: float = 2.0, alpha=0.5,
                  legend: bool = False):
    """A square scatter plot of (n, 2) points coloured by their class label (0..7), with a key if ``legend``."""
    check_axes("ax", ax)
    lim = _lim(lim)
    s = check_real("s", s, minimum=0.0, strict_min=True)
    alpha = check_real("alpha", alpha, minimum=0.0, maximum=1.0)
    pts = check_points("points", points, 2).detach().cpu()
    labels = check_labels("labels", labels, pts.shape[0], len(CLASS_COLORS), "cpu", rows_of="points")
    legend = check_bool("legend", legend)
    for c in torch.unique(labels).tolist():
        rows = _np(pts[labels == c])
        ax.scatter(rows[:, 0], rows[:, 1], s=s, color=CLASS_COLORS[c], alpha=alpha, linewidths=0, label=f"y = {c}")
    _square(ax, lim)
    if legend:
        ax.legend(fontsize=7, loc="lower left", markerscale=max(1.0, 12 / s), framealpha=0.8)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def plot_density(ax, mixture, lim: float = 3.5, resolution: int = 200, cmap="Blues"):
    """Filled contours of a mixture's density on [-lim, lim]^2."""

    check_axes("ax", ax)
    mixture = check_mixture("mixture", mixture)
    lim = _lim(lim)
    resolution = check_int("resolution", resolution, minimum=8)
    g = torch.linspace(-lim, lim, resolution)
    xx, yy = torch.meshgrid(g, g, indexing="xy")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1).to(mixture.device)
    dens = mixture.log_prob(pts).exp().reshape(resolution, resolution)
    ax.contourf(_np(xx), _np(yy), _np(dens), levels=12, cmap=cmap)
    _square(ax, lim)
    return ax


def step_axis(ax, counts, label: str = "steps") -> None:
    """A log-scaled x axis of step counts, ticked at ``counts`` as plain numbers (1, 2, 5, not 10^0)."""
    check_axes("ax", ax)
    if not isinstance(counts, (list, tuple)):
        raise ValueError(f"counts must be a list of step counts, got {counts!r}")
    counts = [check_int("counts", c, minimum=1) for c in counts]
    if not counts:
        raise ValueError("counts must hold at least one step count")
    ax.set_xscale("log")
    ax.set_xticks(counts, [str(c) for c in counts])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel(label)


def curves(ax, x, series: dict, *, xlabel: str, ylabel: str, title: str | None = None, logy: bool = False,
           reference: tuple | None = None, styles: dict | None = None, ms: float = 4.0):
    """A measured quantity against a knob: one line per entry of ``series`` (label -> the y
    value at each x), markers on the measured points, a legend.

    Args:
        ax: the axes to draw on.
        x: the knob's values (numbers, one per point of every line), or label -> the values
            of that line (lines measured at different settings, e.g. each method at its own
            step counts).
        series: label -> y values (as many as the line's x, finite; > 0 with ``logy``).
        xlabel, ylabel, title: the axis labels and the panel's title.
        logy: a log y axis, ticked in plain numbers (20, 30, not 2 x 10^1) when the values lie
            between 0.001 and 100000, in powers of ten otherwise.
        reference: (value, label) for a dotted horizontal line (real data's value, the
            exact model's, ...).
        styles: label -> (format, colour), e.g. ``{"exact fields": ("s--", ORACLE)}``;
            lines without one take "o-" in matplotlib's colour cycle.
        ms: marker size.

    Returns ``ax``.
    """
    check_axes("ax", ax)
    if not isinstance(series, dict) or not series or not all(isinstance(k, str) for k in series):
        raise ValueError(f"series must be a non-empty dict of label -> y values, got {series!r:.80}")
    if isinstance(x, dict):
        if set(x) != set(series):
            raise ValueError(f"x, given per line, must have the labels of series {sorted(series)}, got {sorted(x)}")
        xs = {label: as_float_tensor(f"x[{label!r}]", v, ndim=1) for label, v in x.items()}
    else:
        xs = dict.fromkeys(series, as_float_tensor("x", x, ndim=1))
    xlabel, ylabel = check_text("xlabel", xlabel), check_text("ylabel", ylabel)
    title = None if title is None else check_text("title", title)
    logy = check_bool("logy", logy)
    styles = {} if styles is None else styles
    if not isinstance(styles, dict) or not all(isinstance(v, (tuple, list)) and len(v) == 2
                                               and all(isinstance(p, str) for p in v) for v in styles.values()):
        raise ValueError(f"styles must be a dict of label -> (format, colour), got {styles!r:.80}")
    ms = _size("ms", ms)
    low, high = float("inf"), 0.0
    for label, y in series.items():
        y = as_float_tensor(f"series[{label!r}]", y, ndim=1)
        x = xs[label]
        if y.shape != x.shape:
            raise ValueError(f"series[{label!r}] must hold {x.shape[0]} values (one per x), got {y.shape[0]}")
        if logy and bool((y <= 0).any()):
            raise ValueError(f"series[{label!r}] must be > 0 on a log axis (logy=True), got {float(y.min()):.4g}")
        low, high = min(low, float(y.min())), max(high, float(y.max()))
        fmt, color = styles.get(label, ("o-", None))
        ax.plot(_np(x), _np(y), fmt, color=color, ms=ms, label=label)
    if reference is not None:
        if not (isinstance(reference, (tuple, list)) and len(reference) == 2 and isinstance(reference[1], str)):
            raise ValueError(f"reference must be (value, label), got {reference!r}")
        ax.axhline(check_real("reference[0]", reference[0]), color="k", ls=":", lw=0.8, label=reference[1])
    if logy:
        ax.set_yscale("log")
        if 1e-3 <= low and high < 1e5:  # plain numbers (0.01, 20) where they read well; else 10^k
            plain = matplotlib.ticker.FormatStrFormatter("%g")
            ax.yaxis.set_major_formatter(plain)
            # Within a decade the minor ticks carry the labels; over more, only the powers of ten (uncrowded).
            ax.yaxis.set_minor_formatter(plain if high <= 10 * low else matplotlib.ticker.NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return ax


def plot_samples(panels: dict, lim: float = 3.5, size: float = 3.0, colors=None):
    """One square panel per entry of ``{title: points}``; returns the figure."""
    if not isinstance(panels, dict) or not panels:
        raise ValueError(f"panels must be a dict with at least one {{title: points}} entry, got {panels!r}")
    lim, size = _lim(lim), _size("size", size)
    for title, pts in panels.items():
        check_points(f"panels[{title!r}]", pts, 2)
    fig, axes = plt.subplots(1, len(panels), figsize=(size * len(panels), size), squeeze=False)
    palette = colors or [DATA, NOISE, MODEL, ORACLE]
    for i, (ax, (title, pts)) in enumerate(zip(axes[0], panels.items())):
        scatter(ax, pts, color=palette[i % len(palette)], lim=lim, title=title)
    fig.tight_layout()
    return fig


@torch.no_grad()
def plot_field(ax, field, t: float, lim: float = 3.5, n: int = 17, color="k", background=None, scale=None):
    """Arrows of -v(x, t) on an n x n grid: the way a sample moves as t decreases.

    ``field`` is any callable ``field(x, t)`` (a trained model or an oracle).
    """
    check_axes("ax", ax)
    check_callable("field", field, "a velocity field called as field(x, t)")
    t = check_real("t", t, minimum=0.0, maximum=1.0)
    n = check_int("n", n, minimum=2)
    lim = _lim(lim)
    background = _reference("background", background)
    if background is not None:
        scatter(ax, background, color=NOISE, lim=lim, alpha=0.25)
    g = torch.linspace(-lim * 0.9, lim * 0.9, n)
    xx, yy = torch.meshgrid(g, g, indexing="xy")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    dev = device_of(field)
    v = field(pts.to(dev), torch.full((pts.shape[0],), t, device=dev)).cpu()
    move = -v
    ax.quiver(_np(pts[:, 0]), _np(pts[:, 1]), _np(move[:, 0]), _np(move[:, 1]), color=color,
              angles="xy", scale_units="xy", scale=scale or 4.0, width=0.004)
    _square(ax, lim)
    return ax


def compare_fields(fields: dict, times, lim: float = 3.5, n: int = 15, background=None, size: float = 2.6,
                   colors=None):
    """A grid of quiver plots: one row per ``{name: field}``, one column per time.

    ``colors`` gives one arrow colour per row (default: oracle green, model orange, black,
    repeating).
    """
    if not isinstance(fields, dict) or not fields:
        raise ValueError(f"fields must be a dict with at least one {{name: field}} entry, got {fields!r}")
    if not isinstance(times, (list, tuple, torch.Tensor)) or len(times) == 0:
        raise ValueError(f"times must be a non-empty list of times in [0, 1], got {times!r}")
    times = [check_real("times", t, minimum=0.0, maximum=1.0) for t in times]
    lim, size = _lim(lim), _size("size", size)
    fig, axes = plt.subplots(len(fields), len(times), figsize=(size * len(times), size * len(fields)), squeeze=False)
    colors = list(colors) if colors is not None else [ORACLE, MODEL, "k"]
    if not colors:
        raise ValueError("colors must hold at least one colour")
    for r, (name, field) in enumerate(fields.items()):
        for c, t in enumerate(times):
            ax = axes[r, c]
            bg = background[c] if isinstance(background, (list, tuple)) else background
            plot_field(ax, field, t, lim=lim, n=n, color=colors[r % len(colors)], background=bg)
            if r == 0:
                ax.set_title(f"t = {t:g}", fontsize=10)
            if c == 0:
                ax.set_ylabel(name, fontsize=10)
    fig.tight_layout()
    return fig


def plot_trajectories(ax, trajectory, n_show: int = 300, lim: float = 3.5, reference=None):
    """Paths of ``n_show`` particles from noise (grey dots) to samples (orange dots)."""
    check_axes("ax", ax)
    traj = check_tensor("trajectory", trajectory, ndim=3)
    if traj.shape[0] < 1 or traj.shape[1] < 1 or traj.shape[2] != 2:
        raise ValueError(f"trajectory must have shape (frames, n, 2) with frames, n >= 1, got {tuple(traj.shape)}")
    n_show = min(check_int("n_show", n_show, minimum=1), traj.shape[1])
    lim = _lim(lim)
    reference = _reference("reference", reference)
    tr = _np(traj[:, :n_show])
    if reference is not None:
        scatter(ax, reference, color=DATA, lim=lim, alpha=0.15)
    ax.plot(tr[:, :, 0], tr[:, :, 1], color="k", alpha=0.15, lw=0.6)
    ax.scatter(tr[0, :, 0], tr[0, :, 1], s=4, color=NOISE, zorder=3)
    ax.scatter(tr[-1, :, 0], tr[-1, :, 1], s=4, color=MODEL, zorder=3)
    _square(ax, lim)
    return ax


def plot_snapshots(trajectory, times, at=(1.0, 0.75, 0.5, 0.25, 0.0), lim: float = 3.5, reference=None,
                   size: float = 2.6, title: str | None = None):
    """Particles at several times of a sampling trajectory (nearest grid point to each)."""
    traj = check_tensor("trajectory", trajectory, ndim=3)
    if traj.shape[0] < 1 or traj.shape[1] < 1 or traj.shape[2] != 2:
        raise ValueError(f"trajectory must have shape (frames, n, 2) with frames, n >= 1, got {tuple(traj.shape)}")
    times = check_tensor("times", times, ndim=1)
    if times.shape[0] != traj.shape[0]:
        raise ValueError(f"times must have {traj.shape[0]} entries (one per frame of trajectory), got {times.shape[0]}")
    if not isinstance(at, (list, tuple)) or not at:
        raise ValueError(f"at must be a non-empty list of times in [0, 1], got {at!r}")
    at = [check_real("at", t, minimum=0.0, maximum=1.0) for t in at]
    lim, size = _lim(lim), _size("size", size)
    reference = _reference("reference", reference)
    fig, axes = plt.subplots(1, len(at), figsize=(size * len(at), size), squeeze=False)
    for ax, t in zip(axes[0], at):
        i = int((times.cpu() - t).abs().argmin())
        if reference is not None:
            scatter(ax, reference, color=DATA, lim=lim, alpha=0.15)
        scatter(ax, traj[i], color=MODEL, lim=lim, title=f"t = {float(times[i]):.2f}")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def plot_loss(history, ax=None, window: int = 100, label: str | None = None):
    """The training loss (raw, faint) and its running mean over ``window`` steps."""
    if not (hasattr(history, "loss") and hasattr(history, "smoothed")):
        raise ValueError(f"history must be what fit() returned (a History), got {type(history).__name__}")
    window = check_int("window", window, minimum=1)
    if ax is not None:
        check_axes("ax", ax)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    ax.plot(history.loss, color=MODEL, alpha=0.25, lw=0.5)
    ax.plot(history.smoothed(window), color=MODEL, lw=1.5, label=label or f"running mean ({window})")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8)
    return ax


def plot_decision(ax, decision, lim: float, alpha: float = 0.85):
    """D(x) on a square grid (rows = y, from :class:`cs231n_gen.gan.Snapshot`) as a heat map.

    Blue where D says "real" (D near 1), red where it says "fake" (D near 0), white at 1/2.
    """
    check_axes("ax", ax)
    dec = check_tensor("decision", decision, ndim=2)
    lim = _lim(lim)
    alpha = check_real("alpha", alpha, minimum=0.0, maximum=1.0)
    im = ax.imshow(_np(dec), origin="lower", extent=(-lim, lim, -lim, lim), cmap="RdBu",
                   vmin=0.0, vmax=1.0, alpha=alpha, interpolation="bilinear")
    _square(ax, lim)
    return im


def plot_gan_snapshot(ax, snapshot, reference=None, lim: float = 3.5, n_show: int = 1000, title: str | None = None,
                      key: bool = False):
    """One moment of a 2D GAN game: D's decision surface, the data, the generator's samples.

    With ``key=True`` also a colour bar for D(x) (white is 1/2: D cannot tell) and a legend
    for the two kinds of points.
    """
    from .gan import Snapshot

    check_axes("ax", ax)
    if not isinstance(snapshot, Snapshot):
        raise ValueError(f"snapshot must be a cs231n_gen.gan.Snapshot, got {type(snapshot).__name__}")
    lim = _lim(lim)
    n_show = check_int("n_show", n_show, minimum=1)
    reference = _reference("reference", reference)
    key = check_bool("key", key)
    if snapshot.decision is not None:
        surface = plot_decision(ax, snapshot.decision, lim)
        if key:
            bar = ax.figure.colorbar(surface, ax=ax, fraction=0.046, pad=0.03, ticks=[0, 0.5, 1])
            bar.ax.set_yticklabels(["0: fake", "1/2", "1: real"], fontsize=7)
            bar.set_label("D(x)", fontsize=8)
    if reference is not None:
        scatter(ax, reference, color="k", lim=lim, alpha=0.25, s=2, label="data")
    scatter(ax, snapshot.samples[:n_show], color=MODEL, lim=lim, alpha=0.8, s=4, label="G(z)")
    if key:
        ax.legend(fontsize=7, loc="lower left", markerscale=3, framealpha=0.8)
    ax.set_title(title if title is not None else f"step {snapshot.step}", fontsize=10)
    return ax


def _mosaic(tiles: np.ndarray, ncol: int, pad: int) -> np.ndarray:
    """(n, h, w, c) tiles in [0, 1] -> one canvas, ``ncol`` tiles a row, ``pad`` white pixels between."""
    n, h, w, c = tiles.shape
    nrows = int(np.ceil(n / ncol))
    canvas = np.ones((nrows * (h + pad) + pad, ncol * (w + pad) + pad, c))
    for i in range(n):
        r, q = divmod(i, ncol)
        canvas[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = tiles[i]
    return canvas


def image_grid(ax, images, per_row: int | None = None, title: str | None = None, pad: int = 1):
    """Show (n, C, h, w) images in [-1, 1] as one mosaic: C = 1 as grey (ink dark on white),
    C = 3 as colour (on a white frame)."""
    check_axes("ax", ax)
    imgs = check_tensor("images", images, ndim=4).detach().float().cpu().clamp(-1, 1)
    n, c, h, w = imgs.shape
    if c not in (1, 3) or n < 1:
        raise ValueError(f"images must be at least one image with 1 or 3 channels, got shape {tuple(imgs.shape)}")
    pad = check_int("pad", pad, minimum=0)
    ncol = check_int("per_row", per_row if per_row is not None else int(np.ceil(np.sqrt(n))), minimum=1)
    pixels = (1 - imgs) / 2 if c == 1 else (imgs + 1) / 2
    canvas = _mosaic(pixels.permute(0, 2, 3, 1).numpy(), ncol, pad)
    if c == 1:
        ax.imshow(canvas[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(canvas, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def _tile_centres(labels, tile: int, pad: int, what: str) -> list[float]:
    """Pixel centres of the first len(labels) rows or columns of an :func:`image_grid` mosaic."""
    labels = check_strings("labels", labels, of=f"one per {what}")
    tile, pad = check_int("tile", tile, minimum=1), check_int("pad", pad, minimum=0)
    return [pad + k * (tile + pad) + (tile - 1) / 2 for k in range(len(labels))]


def label_columns(ax, labels, tile: int, pad: int = 1, title: str | None = None) -> None:
    """Write ``labels`` over the columns of an :func:`image_grid` of ``tile``-pixel images."""
    check_axes("ax", ax)
    ax.set_xticks(_tile_centres(labels, tile, pad, "column"), labels, fontsize=7)
    ax.xaxis.tick_top()
    ax.tick_params(axis="x", length=0, pad=1)
    if title:
        ax.set_xlabel(title, fontsize=8)
        ax.xaxis.set_label_position("top")


def label_rows(ax, labels, tile: int, pad: int = 1, fontsize: float = 8) -> None:
    """Write ``labels`` at the left of the rows of an :func:`image_grid` of ``tile``-pixel images."""
    check_axes("ax", ax)
    fontsize = check_real("fontsize", fontsize, minimum=0.0, strict_min=True)
    ax.set_yticks(_tile_centres(labels, tile, pad, "row"), labels, fontsize=fontsize)
    ax.tick_params(axis="y", length=0)


def _caption_room(lines, h: int, w: int) -> tuple[float, float]:
    """The gap between tiles and the height under each tile for its wrapped caption ``lines``, in pixels."""
    return 0.15 * w, 0.13 * h * max(len(t) for t in lines) + 0.08 * h


def captioned_grid_aspect(captions, h: int, w: int, per_row: int, wrap: int = 18) -> float:
    """Height / width of what :func:`captioned_grid` draws, to size a figure that fits it."""
    captions = check_strings("captions", captions)
    h, w = check_int("h", h, minimum=1), check_int("w", w, minimum=1)
    per_row, wrap = check_int("per_row", per_row, minimum=1), check_int("wrap", wrap, minimum=4)
    gap, text_h = _caption_room([textwrap.wrap(t, wrap) or [""] for t in captions], h, w)
    ncol, rows = min(len(captions), per_row), -(-len(captions) // per_row)
    return rows * (h + gap + text_h) / (ncol * (w + gap) - gap)


def captioned_grid(ax, images, captions, per_row: int | None = None, wrap: int = 18, fontsize: float = 6.5):
    """Images in [-1, 1], (n, C, h, w), each with its caption underneath (wrapped every ``wrap`` characters)."""
    check_axes("ax", ax)
    imgs = check_tensor("images", images, ndim=4).detach().float().cpu().clamp(-1, 1)
    n, c, h, w = imgs.shape
    if c not in (1, 3) or n < 1:
        raise ValueError(f"images must be at least one image with 1 or 3 channels, got shape {tuple(imgs.shape)}")
    captions = check_strings("captions", captions, n, of="one per image of images")
    ncol = check_int("per_row", per_row if per_row is not None else int(np.ceil(np.sqrt(n))), minimum=1)
    wrap = check_int("wrap", wrap, minimum=4)
    fontsize = check_real("fontsize", fontsize, minimum=0.0, strict_min=True)
    lines = [textwrap.wrap(t, wrap) or [""] for t in captions]
    gap, text_h = _caption_room(lines, h, w)
    for k in range(n):
        r, col = divmod(k, ncol)
        x0, y0 = col * (w + gap), r * (h + gap + text_h)
        tile = (1 - imgs[k, 0]) / 2 if c == 1 else (imgs[k].permute(1, 2, 0) + 1) / 2
        ax.imshow(tile.numpy(), extent=(x0, x0 + w, y0 + h, y0), interpolation="nearest",
                  **({"cmap": "gray", "vmin": 0, "vmax": 1} if c == 1 else {}))
        ax.text(x0 + w / 2, y0 + h + 0.06 * h, "\n".join(lines[k]), ha="center", va="top", fontsize=fontsize)
    rows = -(-n // ncol)
    ax.set_xlim(-0.5, min(n, ncol) * (w + gap) - gap + 0.5)
    ax.set_ylim(rows * (h + gap + text_h), -0.5)
    ax.set_aspect("equal")
    ax.axis("off")
    return ax


def code_map(ax, codes, num_codes: int, per_row: int | None = None, title: str | None = None, pad: int = 1):
    """Show (n, g, g) integer code grids as one mosaic, one colour per code id (K distinct hues,
    the same id always the same colour), so repeated codes and their layout can be seen."""
    check_axes("ax", ax)
    num_codes = check_int("num_codes", num_codes, minimum=1)
    if not isinstance(codes, torch.Tensor) or codes.is_floating_point() or codes.ndim != 3 or codes.shape[0] < 1:
        raise ValueError(f"codes must be an integer tensor shaped (n, g, g) with n >= 1, got {codes!r:.80}")
    if bool(((codes < 0) | (codes >= num_codes)).any()):
        raise ValueError(f"codes must lie in 0..{num_codes - 1} (num_codes={num_codes}), got values in "
                         f"{int(codes.min())}..{int(codes.max())}")
    pad = check_int("pad", pad, minimum=0)
    codes = codes.detach().cpu().long()
    ncol = check_int("per_row", per_row if per_row is not None else int(np.ceil(np.sqrt(len(codes)))), minimum=1)
    # Hues spread by the golden ratio, so neighbouring ids get very different colours.
    hues = (np.arange(num_codes) * 0.618034) % 1.0
    palette = plt.cm.hsv(hues)[:, :3] * np.where(np.arange(num_codes) % 2, 0.75, 1.0)[:, None]
    ax.imshow(_mosaic(palette[codes.numpy()], ncol, pad), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    return ax
