"""Lecture 09, generalized diffusion: any path, any target, the exact field at any t."""
from __future__ import annotations

import torch

from .. import viz
from .._validate import check_bool, check_int, check_real
from .player import live_figure, static_strip

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

    from .. import oracle as _oracle

    static = check_bool("static", static)
    from ..data.toy2d import GaussianMixture
    from ..paths import check_path, check_target

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

    def draw(ax, name, target, t, compact=False):
        path = paths[name]
        p_t, a, b = marginal(path, t)
        view = max(lim, 3 * b) if b > lim else lim
        viz.plot_density(ax, p_t, lim=view, resolution=120)
        field_pts = pts * (view / lim)
        y = _oracle.predict(mixture, field_pts, t, path, target)
        scale = float(y.norm(dim=1).max()) / (0.2 * view) + 1e-12
        ax.quiver(field_pts[:, 0], field_pts[:, 1], y[:, 0], y[:, 1], color="k", angles="xy",
                  scale_units="xy", scale=scale, width=0.004)
        if compact:  # in the static grid the figure title names the target
            ax.set_title(f"{name}\nt = {t:.2f}: a = {a:.2f}, b = {b:.2f}", fontsize=8)
            return
        ax.set_title(f"{name}, t = {t:.2f}: a = {a:.2f}, b = {b:.2f}\narrows: optimal {target} prediction",
                     fontsize=9)

    if static:  # every path at the same four times: how fast each one destroys the signal
        names, shown = list(paths), (0.05, 0.3, 0.6, 0.9)
        static_strip(len(shown), lambda ax, k: draw(ax, names[k // len(shown)], targets[0], shown[k % len(shown)],
                                                    compact=True),
                     f"Each path (a row) at four times: the density of x_t and the optimal {targets[0]} prediction",
                     panel_size=(2.9, 3.1), rows=len(names))

    path_box = W.Dropdown(options=list(paths), value=next(iter(paths)), description="path")
    target_box = W.Dropdown(options=targets, value=targets[0], description="target")
    t_slider = W.FloatSlider(value=0.5, min=0.02, max=0.98, step=0.02, description="t", continuous_update=True)
    image = live_figure((path_box, target_box, t_slider),
                         lambda ax: draw(ax, path_box.value, target_box.value, t_slider.value), (4.6, 4.6))
    return W.VBox([W.HBox([path_box, target_box]), t_slider, image])
