"""Lecture 08, distillation: the same noise sent through the flow before and after reflow."""
from __future__ import annotations


from .. import viz
from .._validate import check_bool, check_callable, check_int, check_points, check_real, check_tensor, check_text
from .player import FramePlayer, static_strip


class SwitchPlayer:
    """A :class:`FramePlayer` whose frames come from one of several sources, picked by buttons.

    ``draw(ax, name, i)`` draws frame ``i`` of source ``name``; switching source redraws
    the current frame (the slider stays where it is, so the two can be compared at one t).
    """

    def __init__(self, names, n_frames: int, draw, label, size=(4.6, 4.6), description: str = "flow"):
        import ipywidgets as W

        if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) for n in names):
            raise ValueError(f"names must be a non-empty list of strings (one per source), got {names!r}")
        check_callable("draw", draw, "a function draw(ax, name, i)")
        check_text("description", description)
        self.names = list(names)
        self.buttons = W.ToggleButtons(options=self.names, value=self.names[0], description=description)
        self.player = FramePlayer(n_frames, lambda ax, i: draw(ax, self.buttons.value, i), label, size=size)
        self.buttons.observe(lambda _change: self.player.redraw(), names="value")
        self.widget = W.VBox([self.buttons, self.player.widget])

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


def reflow_player(trajectories: dict, times, reference=None, lim: float = 3.5, n_show: int = 800, n_paths: int = 60,
                  static: bool = True):
    """Particles from the same noise, flow by flow (1-RF, 2-RF, ...): pick a flow, press play.

    Args:
        trajectories: name -> (frames, n, 2) states from :func:`cs231n_gen.sampling.euler`
            with ``return_trajectory=True``, all started from the same noise on the same grid.
        times: (frames,) the time of each frame.
        reference: optional data points drawn faintly behind the particles.
        n_show: particles drawn; n_paths: of those, how many draw their whole path so far.
        static: also draw each flow halfway and at the end, side by side (the figure
            that stays in the notebook).
    """
    static = check_bool("static", static)
    if not isinstance(trajectories, dict) or not trajectories:
        raise ValueError(f"trajectories must be a non-empty dict name -> (frames, n, 2) tensor, got {trajectories!r}")
    trajs = {str(k): check_tensor(f"trajectories[{k!r}]", v, ndim=3, last_dim=2).detach().cpu()
             for k, v in trajectories.items()}
    shapes = {tuple(v.shape) for v in trajs.values()}
    if len(shapes) != 1:
        raise ValueError(f"trajectories must all have one shape (same noise, same grid), got {sorted(shapes)}")
    frames = next(iter(shapes))[0]
    times = check_tensor("times", times, ndim=1).detach().cpu()
    if times.shape[0] != frames:
        raise ValueError(f"times must have {frames} entries (one per frame of the trajectories), got {times.shape[0]}")
    lim = check_real("lim", lim, minimum=0.0, strict_min=True)
    n_show = check_int("n_show", n_show, minimum=1)
    n_paths = check_int("n_paths", n_paths, minimum=0)
    ref = check_points("reference", reference, 2).detach().cpu() if reference is not None else None
    names = list(trajs)

    def draw(ax, name, i, n_lines=n_paths):
        pts = trajs[name][:, :n_show]
        if ref is not None:
            viz.scatter(ax, ref, color=viz.DATA, lim=lim, alpha=0.12, s=3, label="data")
        if i > 0 and n_lines:
            seg = pts[:i + 1, :n_lines].numpy()
            ax.plot(seg[:, :, 0], seg[:, :, 1], color="k", alpha=0.45, lw=0.8)
            ax.plot([], [], color="k", alpha=0.45, lw=0.8, label="paths so far")
            viz.scatter(ax, pts[0, :n_lines], color=viz.NOISE, lim=lim, alpha=0.8, s=5, label="start (noise)")
        viz.scatter(ax, pts[i], color=viz.MODEL, lim=lim, alpha=0.7, s=4, label="particles now")
        ax.legend(fontsize=6.5, loc="lower left", markerscale=2.5, framealpha=0.8)
        ax.set_title(f"{name}, t = {float(times[i]):.2f} (1 = noise, 0 = data)", fontsize=10)

    if static:
        at = (frames // 2, frames - 1)  # halfway, and the end
        static_strip(len(names), lambda ax, k: draw(ax, names[k % len(names)], at[k // len(names)]),
                     "The same noise through each flow: halfway (top), samples (bottom)",
                     panel_size=(3.4, 3.5), rows=2)
    return SwitchPlayer(names, frames, draw, lambda i: f"t = {float(times[i]):.2f}: from 1 (noise) to 0 (data)")
