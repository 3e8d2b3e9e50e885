"""Lecture 07, text-to-image and video: a prompt box over a text-to-image model, and a clip player."""
from __future__ import annotations

import html

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from .. import viz
from .._validate import check_bool, check_callable, check_int, check_real, check_tensor, check_text
from .player import FRAME_DPI, FramePlayer, _png, static_strip


class PromptBox:
    """Type a prompt, press Enter (or move the guidance slider): a grid of samples for it.

    ``generate(prompt, w)`` returns images (n, 3, S, S) in [-1, 1]. A ``ValueError`` from
    it (an unknown word, say) is shown as a message under the box and the last images
    stay; any other error is shown the same way, with its type.
    """

    def __init__(self, generate, prompt: str, w: float = 3.0, w_max: float = 6.0, per_row: int = 8,
                 size=(6.4, 2.2)):
        import ipywidgets as W

        check_callable("generate", generate, "a function generate(prompt, w) -> images (n, 3, S, S)")
        prompt = check_text("prompt", prompt)
        w_max = check_real("w_max", w_max, minimum=0.0, strict_min=True)
        w = check_real("w", w, minimum=0.0, maximum=w_max)
        self.per_row = check_int("per_row", per_row, minimum=1)
        if not (isinstance(size, (tuple, list)) and len(size) == 2):
            raise ValueError(f"size must be a (width, height) pair in inches, got {size!r}")
        self._generate, self._size = generate, tuple(check_real("size", v, minimum=0.0, strict_min=True)
                                                      for v in size)
        self.text = W.Text(value=prompt, description="prompt", continuous_update=False,
                           layout=W.Layout(width="420px"))
        self.weight = W.FloatSlider(value=w, min=0.0, max=w_max, step=0.5, description="guidance w",
                                    continuous_update=False, layout=W.Layout(width="320px"))
        width, height = (round(v * FRAME_DPI) for v in self._size)
        self.image = W.Image(format="png", layout=W.Layout(width=f"{width}px", height=f"{height}px"))
        self.message = W.HTML(value="")
        self.text.observe(self._on_change, names="value")
        self.weight.observe(self._on_change, names="value")
        self.widget = W.VBox([W.HBox([self.text, self.weight]), self.image, self.message])
        self.render(prompt, w)

    def render(self, prompt: str, w: float) -> bool:
        """Draw the samples for ``prompt`` at weight ``w``; False (and a message) if generate refused."""
        try:
            images = check_tensor("generate's images", self._generate(prompt, float(w)), ndim=4)
        except Exception as err:  # shown to the student instead of a traceback in the widget's log
            what = "" if isinstance(err, ValueError) else f"{type(err).__name__}: "
            self.message.value = f"<span style='color:#b00'>{html.escape(what + str(err))}</span>"
            return False
        fig = Figure(figsize=self._size)
        viz.image_grid(fig.add_subplot(1, 1, 1), images, per_row=self.per_row,
                       title=f"\u201c{prompt}\u201d, w = {w:g}")
        fig.tight_layout()
        self.image.value = _png(fig)
        self.message.value = f"{len(images)} samples"
        return True

    def _on_change(self, _change) -> None:
        self.render(self.text.value, self.weight.value)

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


def prompt_box(generate, prompt: str, w: float = 3.0, w_max: float = 6.0, per_row: int = 8, static: bool = True):
    """A :class:`PromptBox` (with ``static``, first a figure of the samples for ``prompt``)."""
    static = check_bool("static", static)
    box = PromptBox(generate, prompt, w, w_max, per_row)
    if static:
        static_strip(1, lambda ax, k: viz.image_grid(ax, generate(prompt, w), per_row=per_row),
                     f"\u201c{prompt}\u201d, w = {w:g}", panel_size=(6.4, 2.2))
    return box


def clip_player(videos, captions, per_row: int = 4, static: bool = True):
    """Clips played side by side, one frame at a time: press play or drag the frame slider.

    Args:
        videos: (n, T, 3, S, S) clips in [-1, 1] (a few: every clip is drawn in each frame).
        captions: one caption per clip (the prompt it was made from), drawn under the clip.
        per_row: clips per row.
    """
    static = check_bool("static", static)
    videos = check_tensor("videos", videos, ndim=5).detach().float().cpu()
    if videos.shape[0] < 1 or videos.shape[2] != 3:
        raise ValueError(f"videos must be RGB clips (n, T, 3, S, S) with n >= 1, got {tuple(videos.shape)}")
    n, frames = videos.shape[:2]
    if not isinstance(captions, (list, tuple)) or len(captions) != n or not all(isinstance(c, str) for c in captions):
        raise ValueError(f"captions must be a list of {n} strings (one per clip of videos), got {captions!r:.80}")
    per_row = check_int("per_row", per_row, minimum=1)

    def draw(ax, i):  # every clip at frame i, with the prompt that made it underneath
        viz.captioned_grid(ax, videos[:, i], list(captions), per_row=per_row, wrap=16)

    def label(i):
        return f"frame {i + 1} of {frames}"

    if static:  # every clip as a row of frames
        fig, ax = plt.subplots(figsize=(min(1.0 * frames, 12) + 2.5, 1.1 * n + 0.4))
        viz.image_grid(ax, videos.flatten(0, 1), per_row=frames, pad=2)
        viz.label_rows(ax, list(captions), videos.shape[-1], pad=2)
        ax.set_title("each row a clip, frames left to right", fontsize=9)
        fig.tight_layout()
        plt.show()
    width = 1.25 * min(n, per_row)
    height = width * viz.captioned_grid_aspect(list(captions), videos.shape[-2], videos.shape[-1], per_row, wrap=16)
    return FramePlayer(frames, draw, label, size=(width + 0.2, height + 0.2), interval=250)
