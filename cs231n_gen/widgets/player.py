"""The frame machinery every explorer shares, written once.

* :class:`FramePlayer`: a Play button and a slider over precomputed frames; each frame
  is drawn by ``draw(ax, i)`` on first view, kept as PNG bytes and swapped into an
  ``ipywidgets.Image``, so scrubbing only swaps pictures.
* :func:`live_figure`: an image redrawn whenever one of its controls changes (for
  figures cheap enough to draw on every slider move).
* :func:`static_strip`: a row of panels drawn with the same ``draw`` function, shown
  before the widget so the notebook still tells its story where widgets do not run
  (GitHub, nbval, a PDF export).
"""
from __future__ import annotations

import io

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from .._validate import check_callable, check_int, check_real, check_text

FRAME_DPI = 110


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=FRAME_DPI)
    return buf.getvalue()


def _size_pair(name: str, size) -> tuple[float, float]:
    if not (isinstance(size, (tuple, list)) and len(size) == 2):
        raise ValueError(f"{name} must be a (width, height) pair in inches, got {size!r}")
    return tuple(check_real(name, v, minimum=0.0, strict_min=True) for v in size)


class FramePlayer:
    """A Play button and a slider over ``n_frames`` frames drawn by ``draw(ax, i)``."""

    def __init__(self, n_frames: int, draw, label, size=(4.2, 4.2), interval: int = 120):
        import ipywidgets as W

        self.n_frames = check_int("n_frames", n_frames, minimum=1)
        check_callable("draw", draw, "a function draw(ax, i)")
        check_callable("label", label, "a function label(i) -> str")
        size = _size_pair("size", size)
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
        self.caption = W.Label(value=label(0), layout=W.Layout(margin="0 0 0 18px"))  # clear of the handle
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

    def redraw(self) -> None:
        """Forget the drawn frames (what ``draw`` shows has changed) and redraw the current one."""
        self._cache.clear()
        self.show_frame(self.slider.value)

    def _on_change(self, change) -> None:
        self.show_frame(change["new"])

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


def live_figure(controls, draw, size):
    """An Image redrawn by ``draw(ax)`` whenever one of ``controls`` changes (cheap figures only)."""
    import ipywidgets as W

    if not isinstance(controls, (list, tuple)) or not controls or \
            not all(callable(getattr(c, "observe", None)) for c in controls):
        raise ValueError(f"controls must be a non-empty list of widgets (objects with .observe), got {controls!r}")
    check_callable("draw", draw, "a function draw(ax)")
    size = _size_pair("size", size)
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


def frame_picks(n_frames: int, count: int = 5) -> list[int]:
    """``count`` frame indices spread evenly from the first to the last (fewer if n_frames is small)."""
    n_frames = check_int("n_frames", n_frames, minimum=1)
    count = check_int("count", count, minimum=1)
    return sorted({round(j * (n_frames - 1) / max(count - 1, 1)) for j in range(count)})


def static_strip(panels: int, draw, title: str, panel_size=(2.8, 2.9), rows: int = 1) -> None:
    """``rows`` rows of ``panels`` axes under ``title``, shown at once; panel ``k`` (counted
    row by row) is drawn by ``draw(ax, k)``."""
    panels = check_int("panels", panels, minimum=1)
    rows = check_int("rows", rows, minimum=1)
    check_callable("draw", draw, "a function draw(ax, k)")
    check_text("title", title)
    w, h = _size_pair("panel_size", panel_size)
    fig, axes = plt.subplots(rows, panels, figsize=(w * panels, h * rows), squeeze=False)
    for k, ax in enumerate(axes.reshape(-1)):
        draw(ax, k)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    plt.show()
