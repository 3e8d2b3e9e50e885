"""Lecture 04, noise schedules: where a training-time sampler spends its effort."""
from __future__ import annotations

import torch

from .. import viz
from .._validate import check_bool, check_tensor
from .player import live_figure, static_strip

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

    from ..schedules import TimeSampler

    ref = None
    if reference is not None:
        if not (isinstance(reference, (tuple, list)) and len(reference) == 2):
            raise ValueError(f"reference must be a pair (t, values) of 1-D tensors, got {reference!r}")
        ref_t = check_tensor("reference[0]", reference[0], ndim=1).detach().cpu()
        ref_v = check_tensor("reference[1]", reference[1], ndim=1).detach().cpu()
        if ref_t.shape != ref_v.shape:
            raise ValueError(f"reference must be (t, values) of equal length, "
                             f"got {ref_t.shape[0]} and {ref_v.shape[0]}")
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
        ax.axvline(median, color=viz.MODEL, lw=0.8, label="median of t")
        ax.legend(loc="upper left", fontsize=7)
        ax.set_title(title or f"median {median:.2f};  t < 0.1: {100 * low:.0f}%,  t > 0.9: {100 * high:.0f}%",
                     fontsize=9)

    if static:  # the four samplers the lecture then trains with (its section 3)
        presets = [TimeSampler(), TimeSampler("logit_normal"), TimeSampler("logit_normal", m=-0.5),
                   TimeSampler(shift=3.0)]

        def panel(ax, k):
            draw(ax, presets[k], title=str(presets[k]))
            if k:  # one legend, in the first panel: density, uniform, median
                ax.get_legend().remove()
            else:
                handles, labels = ax.get_legend_handles_labels()
                ax.legend(handles, ["p(t)"] + labels[1:], loc="upper right", fontsize=7)

        static_strip(len(presets), panel, "Where training spends its effort: the density of t under four samplers",
                     panel_size=(3.4, 3.0))

    base = W.ToggleButtons(options=[("logit-normal", "logit_normal"), ("uniform", "uniform")], value="logit_normal")
    m = W.FloatSlider(value=0.0, min=-2.0, max=2.0, step=0.1, description="m", continuous_update=True)
    s = W.FloatSlider(value=1.0, min=0.3, max=2.0, step=0.1, description="s", continuous_update=True)
    shift = W.FloatLogSlider(value=1.0, base=2, min=-2, max=3, step=0.25, description="shift",
                             continuous_update=True)
    image = live_figure((base, m, s, shift), lambda ax: draw(ax, TimeSampler(base.value, m=m.value, s=s.value,
                                                                             shift=shift.value)), (5.6, 3.4))
    return W.VBox([W.HBox([base]), W.HBox([m, s, shift]), image])
