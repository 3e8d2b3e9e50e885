"""Lecture 10, autoregressive models over VQ latents: samples as temperature and top-k change."""
from __future__ import annotations

from .. import viz
from .._validate import check_bool, check_int, check_real, check_strings, check_tensor
from .distillation import SwitchPlayer
from .player import static_strip


def sampling_explorer(samples: dict, temperatures, per_row: int = 10, column_labels=None, static: bool = True):
    """Decoded samples of one prior, drawn at several temperatures and top-k cut-offs.

    Buttons pick the top-k setting, the slider (or play) walks through the temperatures.

    Args:
        samples: setting name (such as "all tokens", "top-8") -> (len(temperatures), n,
            C, H, W) images in [-1, 1], drawn from the same labels in the same order.
        temperatures: the temperature of each frame, in order.
        per_row: images per row (one row per class when the labels are 0..9 in turn).
        column_labels: optional ``per_row`` strings written over the columns (such as the
            class each column was asked for).
        static: also draw every setting at the lowest, a middle and the highest temperature
            (the figure that stays in the notebook).
    """
    static = check_bool("static", static)
    per_row = check_int("per_row", per_row, minimum=1)
    if not isinstance(temperatures, (list, tuple)) or not temperatures:
        raise ValueError(f"temperatures must be a non-empty list of numbers, got {temperatures!r}")
    temps = [check_real(f"temperatures[{i}]", t, minimum=0.0) for i, t in enumerate(temperatures)]
    if not isinstance(samples, dict) or not samples:
        raise ValueError(f"samples must be a non-empty dict name -> (frames, n, C, H, W) images, got {samples!r:.80}")
    sets = {str(k): check_tensor(f"samples[{k!r}]", v, ndim=5).detach().cpu() for k, v in samples.items()}
    shapes = {tuple(v.shape) for v in sets.values()}
    if len(shapes) != 1 or next(iter(shapes))[0] != len(temps):
        raise ValueError(f"samples must all be shaped ({len(temps)}, n, C, H, W) (one frame per temperature), "
                         f"got {sorted(shapes)}")
    names = list(sets)
    if column_labels is not None:
        column_labels = check_strings("column_labels", column_labels, per_row, of="one per column")

    def draw(ax, name, i):
        viz.image_grid(ax, sets[name][i], per_row=per_row, title=f"{name}, temperature {temps[i]:g}")
        if column_labels is not None:  # what each column was asked for, along the top
            viz.label_columns(ax, column_labels, sets[name].shape[-1], title="asked for")

    if static:
        at = sorted({0, len(temps) // 2, len(temps) - 1})
        static_strip(len(at), lambda ax, k: draw(ax, names[k // len(at)], at[k % len(at)]),
                     "Samples as the temperature rises (left to right), for each top-k setting (rows)",
                     panel_size=(3.8, 1.9), rows=len(names))
    return SwitchPlayer(names, len(temps), draw, lambda i: f"temperature {temps[i]:g}", size=(5.4, 2.6),
                        description="top-k")
