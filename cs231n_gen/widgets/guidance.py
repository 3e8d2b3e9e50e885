"""Lecture 03, classifier-free guidance: samples as the guidance weight grows."""
from __future__ import annotations

import torch

from .. import viz
from .._validate import check_bool, check_labels, check_points, check_real, check_tensor
from .player import FramePlayer, frame_picks, static_strip

def guidance_explorer(ws, samples, labels, reference=None, captions=None, lim: float = 4.5, static: bool = True):
    """Class-conditional samples as the guidance weight w grows; drag w or press play.

    Args:
        ws: the guidance weights, one per frame (increasing).
        samples: (frames, n, 2) samples, ``samples[i]`` drawn with weight ``ws[i]``
            from the same starting noise, so a point can be followed across frames.
        labels: (n,) the class each sample was asked to be (coloured by class, with a key).
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

    def draw(ax, i, size=4.0, title="guidance weight w = ", legend=True):
        if ref is not None:
            viz.scatter(ax, ref, color=viz.NOISE, lim=lim, alpha=0.15, s=size - 1, label="real data")
        viz.class_scatter(ax, pts[i], labels, lim=lim, s=size, alpha=0.6, title=f"{title}{ws[i]:g}", legend=legend)

    if static:
        picks = frame_picks(len(ws))
        static_strip(len(picks), lambda ax, k: draw(ax, picks[k], size=2.0, title="w = ", legend=k == 0),
                     "Guided samples, coloured by the class asked for (grey: real data)", panel_size=(2.8, 3.0))
    return FramePlayer(len(ws), draw, label, size=(4.4, 4.4), interval=300)
