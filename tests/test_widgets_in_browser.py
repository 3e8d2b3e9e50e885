"""End to end: the lectures' widgets render and respond in a real JupyterLab.

nbval executes notebooks but never renders an output, so it cannot see the classic
student-facing failure, a box reading "Error displaying widget: model not found"
(mismatched ipywidgets / jupyterlab_widgets, or a widget the front end cannot build).
This test can. For every lecture that uses widgets it

1. starts JupyterLab from this environment (private copy of the notebooks, random
   port and token, see ``_jupyterlab.LabServer``) and opens the lecture in headless
   Chromium driven by Playwright;
2. runs all cells (quick mode, as in the rest of the suite) and fails on any error output;
3. checks that no output reads "Error displaying widget", that every widget output
   the kernel produced is rendered as a visible widget view (progress bars included),
   and that sliders and play buttons are visible;
4. for every widget that shows an image next to a slider: moves the slider with the
   keyboard and asserts that the pixels of the image changed; presses play and
   asserts the animation advanced; where there is a text box, types a prompt and
   presses Enter (the image must change), then a word outside the vocabulary (a
   message must name it); where there are toggle buttons, picks the second one (the
   image must change);
5. saves screenshots (the whole page, every widget after its slider moved, each widget
   with a play button mid-animation, and every figure of the body) to a folder printed
   at the end of the run.

Each lecture's kernel is shut down as soon as its checks are done. An interrupt
(SIGINT, or SIGTERM, which the test session turns into one) at any moment leaves no
JupyterLab, kernel or browser behind, and a watcher process (``_reaper.py``) covers
a test process killed outright; ``test_browser_cleanup.py`` checks both.
``$CS231N_GEN_BROWSER_NOTEBOOKS`` (paths joined by ``os.pathsep``) checks other
notebooks than the lectures.

Chromium comes from the system (``/usr/bin/chromium`` on Debian; ``$CS231N_GEN_BROWSER``
overrides); no browser is ever downloaded. Without one the test skips, loudly.
"""
from __future__ import annotations

import os
import re
import time
import warnings
from pathlib import Path

import pytest

from _jupyterlab import LabServer, Reaper, find_browser

LECTURES = Path(__file__).resolve().parent.parent / "lectures"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
USES_WIDGETS = re.compile(r"\bwidgets\.\w+\(|\bipywidgets\b")


def lectures_with_widgets() -> list[Path]:
    explicit = os.environ.get("CS231N_GEN_BROWSER_NOTEBOOKS")
    if explicit:
        return [Path(p) for p in explicit.split(os.pathsep) if p]
    found = []
    for src in sorted(LECTURES.glob("[0-9][0-9]_*.py")):
        if USES_WIDGETS.search(src.read_text()):
            found.append(src.with_suffix(".ipynb"))
    return found


WIDGET_LECTURES = lectures_with_widgets()
# Quick mode runs a lecture in minutes; full mode may take much longer on a laptop.
QUICK = os.environ.get("CS231N_GEN_QUICK", "1").strip().lower() in ("1", "true", "yes", "on")
RUN_TIMEOUT_S = float(os.environ.get("CS231N_GEN_BROWSER_TIMEOUT", "900" if QUICK else "5400"))
ANSI = re.compile(r"\x1b\[[0-9;]*m")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-dev-shm-usage"]

# What the notebook looks like from the front end's own model (JupyterLab exposes its
# application object with --LabApp.expose_app_in_browser).
NOTEBOOK_STATE_JS = """
() => {
  const app = window.jupyterapp;
  const panel = app && app.shell.currentWidget;
  if (!panel || !panel.content || !panel.sessionContext) return null;
  const cells = panel.content.widgets.filter(c => c.model.type === 'code');
  let pending = 0, widgets = 0;
  const errors = [];
  cells.forEach((c, i) => {
    if (c.model.executionCount === null) pending += 1;
    for (const o of c.model.outputs.toJSON()) {
      if (o.output_type === 'error') errors.push({cell: i, source: c.model.sharedModel.getSource(),
                                                  error: o.ename + ': ' + o.evalue, traceback: o.traceback});
      if (o.data && o.data['%s']) widgets += 1;
    }
  });
  const running = [...panel.node.querySelectorAll('.jp-InputPrompt')]
      .filter(n => n.textContent.includes('*')).length;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  return {cells: cells.length, pending, running, errors, widgets,
          status: kernel ? kernel.status : 'none'};
}
""" % WIDGET_MIME


def test_lectures_with_widgets_are_found():
    assert WIDGET_LECTURES, f"no lecture in {LECTURES} uses widgets: the browser test would check nothing"


@pytest.fixture(scope="module")
def reaper():
    """Stops the browser, JupyterLab and kernels should this process die without a teardown."""
    guard = Reaper()
    try:
        yield guard
    finally:
        guard.release()


@pytest.fixture(scope="module")
def browser(reaper):
    path = find_browser()
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - the dev extra installs it
        reason = "the playwright package is not installed (pip install -e '.[dev]')"
    if reason is None and path is None:
        reason = ("NO BROWSER: install Debian's chromium (apt-get install chromium) or set "
                  "CS231N_GEN_BROWSER; the widgets were NOT checked in a real JupyterLab")
    if reason:
        warnings.warn(reason)
        pytest.skip(reason)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        reaper.watch_descendants()
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def lab(reaper, tmp_path_factory):
    server = LabServer(WIDGET_LECTURES, tmp_path_factory.mktemp("jupyterlab"),
                       env={"CS231N_GEN_QUICK": os.environ.get("CS231N_GEN_QUICK", "1"),
                            "MPLBACKEND": "module://matplotlib_inline.backend_inline"},
                       reaper=reaper)
    try:
        server.start()
        yield server
    finally:
        forced = server.stop()
        leftovers = [p.pid for p in server.children_at_stop if p.is_running() and p.status() != "zombie"]
        assert not leftovers, f"processes left running after JupyterLab shut down: {leftovers}"
        if forced:
            warnings.warn(f"JupyterLab left {len(forced)} process(es) behind; killed {forced}")


def _dismiss_dialogs(page):
    """Accept a 'Select Kernel' dialog if JupyterLab shows one."""
    accept = page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept")
    if accept.count():
        accept.first.click()


def _describe_error(err: dict) -> str:
    """The failing code cell (its start), the error and the end of its traceback, as nbval would show them."""
    source = "\n".join(err["source"].splitlines()[:6])
    trace = ANSI.sub("", "\n".join(err.get("traceback") or [])).splitlines()
    return (f"code cell {err['cell'] + 1} raised {err['error']}\n--- cell ---\n{source}\n"
            f"--- traceback (end) ---\n" + "\n".join(trace[-25:]))


_interrupted = lambda: None  # noqa: E731 (set per test by _notice_interrupts)


@pytest.fixture(autouse=True)
def _notice_interrupts(interrupted):
    global _interrupted
    _interrupted = interrupted


def _stop_if_interrupted():
    if _interrupted():
        raise KeyboardInterrupt(f"stopped by signal {_interrupted()}")


def _wait_for(page, predicate, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    state = None
    while time.monotonic() < deadline:
        _stop_if_interrupted()
        _dismiss_dialogs(page)
        state = page.evaluate(NOTEBOOK_STATE_JS)
        if state and state["errors"]:
            pytest.fail(_describe_error(state["errors"][0]))
        if state and predicate(state):
            return state
        page.wait_for_timeout(500)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}; last state {state}")


def _image_pixels(img) -> bytes:
    img.scroll_into_view_if_needed()
    return img.screenshot(animations="disabled")


def _wait_for_pixels(page, img, before: bytes, what: str, timeout_s: float = 15.0) -> None:
    """Wait until the image's pixels differ from ``before``; fail naming ``what`` otherwise."""
    for _ in range(int(timeout_s / 0.25)):
        _stop_if_interrupted()
        page.wait_for_timeout(250)
        if _image_pixels(img) != before:
            return
    raise AssertionError(f"{what} did not change its image within {timeout_s:g} s")


@pytest.mark.parametrize("notebook", WIDGET_LECTURES, ids=lambda p: p.stem)
def test_widgets_render_and_respond(notebook, browser, lab, screenshot_dir):
    assert lab.kernel_pids() == [], f"kernels of earlier notebooks still run: {lab.kernel_pids()}"
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    console_errors = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    try:
        page.goto(lab.notebook_url(notebook.name))
        page.wait_for_selector(".jp-Notebook", timeout=60_000)
        _wait_for(page, lambda s: s["status"] == "idle", 120, "the kernel to start")

        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        state = _wait_for(page, lambda s: s["pending"] == 0 and s["running"] == 0 and s["status"] == "idle",
                          RUN_TIMEOUT_S, "all cells to run")
        assert state["widgets"] > 0, f"{notebook.name} produced no widget output"

        # 1. Nothing failed to render.
        # ipywidgets draws a failed view as an error icon ("Click to show javascript
        # error"); the words "Error displaying widget" sit in its hidden details.
        broken = page.locator(".jupyter-widgets-error-widget, :text('Error displaying widget')")
        assert broken.count() == 0, (f"{notebook.name}: {broken.count()} widget(s) failed to display: "
                                     f"{' '.join(broken.first.text_content().split())[:300]!r}")
        # Every other renderer tags its output node with the MIME type it drew; the widget
        # renderer does not, so an untagged output node is a widget view (or its error box).
        outputs = page.locator(".jp-OutputArea-output:not([data-mime-type])")
        assert outputs.count() == state["widgets"], (
            f"{notebook.name}: the kernel sent {state['widgets']} widget(s), the page renders {outputs.count()}")
        sliders = page.locator(".jp-OutputArea-output .widget-slider")
        assert sliders.count() > 0, f"{notebook.name}: no slider rendered"

        page.screenshot(path=str(screenshot_dir / f"{notebook.stem}.png"))
        for k in range(outputs.count()):
            out = outputs.nth(k)
            out.scroll_into_view_if_needed()
            view = out.locator(".jupyter-widgets").first
            assert view.count() and view.is_visible(), (
                f"{notebook.name}: widget output {k} shows no widget:\n{out.inner_text()[:300]}")
            for control in out.locator(".widget-slider, .widget-play").all():
                assert control.is_visible(), f"{notebook.name}: a control of widget {k} is not visible"

            # 2. A text box drives its figure: a typed prompt (Enter) changes the image, and a
            #    word the model does not know gives a message, not a traceback.
            img = out.locator("img")
            text_box = out.locator(".widget-text input")
            if text_box.count() and img.count():
                text_box.first.fill("a purple circle")
                text_box.first.press("Enter")
                for _ in range(60):
                    page.wait_for_timeout(250)
                    if "purple" in out.inner_text():
                        break
                assert "purple" in out.inner_text() and "Traceback" not in out.inner_text(), (
                    f"{notebook.name}: an unknown word in widget {k} gave no message:\n{out.inner_text()[:300]}")
                before = _image_pixels(img.first)
                text_box.first.fill("a small green cross at the bottom left")
                text_box.first.press("Enter")
                _wait_for_pixels(page, img.first, before, f"{notebook.name}: typing a prompt into widget {k}")
                out.screenshot(path=str(screenshot_dir / f"{notebook.stem}-widget{k}-prompt.png"))

            # 3. Toggle buttons switch the figure's source (a flow, a model): the image changes.
            toggles = out.locator(".widget-toggle-button")
            if toggles.count() > 1 and img.count():
                before = _image_pixels(img.first)
                toggles.nth(1).click()
                _wait_for_pixels(page, img.first, before, f"{notebook.name}: switching widget {k} to its second source")
                switched = _image_pixels(img.first)
                toggles.nth(0).click()  # back, so the sliders below act on the first source
                _wait_for_pixels(page, img.first, switched, f"{notebook.name}: switching widget {k} back")

            # 4. Sliders drive their figures.
            handle = out.locator(".widget-slider .noUi-handle")
            if handle.count() == 0 or img.count() == 0:
                continue
            before = _image_pixels(img.first)
            handle.first.click()
            for _ in range(3):
                page.keyboard.press("ArrowRight")
            _wait_for_pixels(page, img.first, before, f"{notebook.name}: moving the slider of widget {k}")
            out.screenshot(path=str(screenshot_dir / f"{notebook.stem}-widget{k}.png"))  # every widget, played or not

            # 5. Play animates (and a screenshot of it mid-animation for people to look at).
            play = out.locator(".widget-play button").first
            if play.count():
                page.keyboard.press("Home")  # back to the first frame
                page.wait_for_timeout(800)
                start = _image_pixels(img.first)
                play.click()
                page.wait_for_timeout(1500)
                out.screenshot(path=str(screenshot_dir / f"{notebook.stem}-widget{k}-playing.png"))
                assert _image_pixels(img.first) != start, f"{notebook.name}: pressing play on widget {k} did nothing"

        # 6. The body's figures, as the page draws them, for people to look at.
        figures = page.locator('.jp-OutputArea-output[data-mime-type="image/png"] img')
        for j in range(figures.count()):
            figure = figures.nth(j)
            figure.scroll_into_view_if_needed()
            box = figure.bounding_box()
            assert box and box["width"] > 50 and box["height"] > 50, f"{notebook.name}: figure {j} renders as {box}"
            figure.screenshot(path=str(screenshot_dir / f"{notebook.stem}-figure{j:02d}.png"), animations="disabled")
    except Exception as err:
        if _interrupted():  # the interrupt closed the page under us: report the interrupt, not the page
            raise KeyboardInterrupt(f"stopped by signal {_interrupted()}") from err
        page.screenshot(path=str(screenshot_dir / f"{notebook.stem}-FAILED.png"))
        print("JupyterLab log tail:\n" + lab.log_tail())
        print("browser console errors:\n" + "\n".join(console_errors[-20:]))
        raise
    finally:
        page.close()
        forced = lab.shutdown_kernels()
    assert not forced, f"{notebook.name}: its kernel ignored the shutdown request and was killed: {forced}"
