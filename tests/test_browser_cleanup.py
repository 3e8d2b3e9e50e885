"""An interrupted browser test leaves no JupyterLab, kernel or browser behind.

Each case starts ``test_widgets_in_browser.py`` in a subprocess, on a one-widget
notebook whose first cell sleeps, waits for a chosen moment (JupyterLab starting, the
kernel starting, cells running), sends a signal, and then checks the process table:
every process the run started carries a tag in its environment, and none may survive.

SIGTERM and SIGINT must be cleaned up by the test's own teardown (the watcher that
backs it up reports when it had to step in, and must not have); SIGKILL, which no
teardown survives, must be cleaned up by the watcher (``_reaper.py``).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import nbformat
import psutil
import pytest

from _jupyterlab import find_browser

HERE = Path(__file__).resolve().parent
TAG = "CS231N_GEN_CLEANUP_TAG"
SLEEPY_CELL = """\
import os, time
from pathlib import Path
import ipywidgets as widgets
Path(os.environ["CS231N_GEN_CLEANUP_MARKER"]).write_text(str(os.getpid()))
time.sleep(600)"""

pytestmark = pytest.mark.skipif(find_browser() is None, reason="no Chromium: see test_widgets_in_browser.py")


def _sleepy_notebook(folder: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SLEEPY_CELL), nbformat.v4.new_code_cell("widgets.IntSlider()")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / "sleepy.ipynb"
    nbformat.write(nb, path)
    return path


def _interruptible() -> None:
    """In the child, before Python starts: SIGINT back to its default.

    A suite started as a background job (``cmd &`` in a script, nohup) inherits SIGINT
    ignored, and Python then installs no KeyboardInterrupt handler: the run under test
    would shrug off the very signal this file sends it.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _tagged(tag: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(TAG) == tag and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


def _describe(proc: psutil.Process) -> str:
    try:
        return f"{proc.pid} {' '.join(proc.cmdline())[:120]}"
    except psutil.Error:
        return str(proc.pid)


def _wait_for(moment: str, run: subprocess.Popen, marker: Path, log: Path, timeout_s: float = 120) -> None:
    """Block until the run reaches ``moment``."""
    needle = {"server starting": "jupyterlab", "kernel starting": "ipykernel"}.get(moment)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert run.poll() is None, (f"the browser test ended (code {run.returncode}) before {moment!r}:\n"
                                    f"{log.read_text()[-3000:]}")
        if moment == "cells running":
            if marker.exists():
                return
        else:
            try:
                kids = psutil.Process(run.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                kids = []
            for kid in kids:
                try:
                    if any(needle in part for part in kid.cmdline()):
                        return
                except psutil.Error:
                    pass
        time.sleep(0.05)
    pytest.fail(f"the browser test did not reach {moment!r} within {timeout_s:.0f} s")


@pytest.mark.parametrize("signum, to_group, moment", [
    (signal.SIGTERM, False, "server starting"),
    (signal.SIGINT, False, "kernel starting"),
    (signal.SIGINT, False, "cells running"),
    (signal.SIGTERM, False, "cells running"),
    (signal.SIGINT, True, "cells running"),   # Ctrl-C in a terminal: the whole process group
    (signal.SIGKILL, False, "cells running"),
], ids=["SIGTERM-server-starting", "SIGINT-kernel-starting", "SIGINT-cells-running",
        "SIGTERM-cells-running", "ctrl-c-group-cells-running", "SIGKILL-cells-running"])
def test_interrupted_browser_test_leaves_nothing_behind(signum, to_group, moment, tmp_path):
    tag = uuid.uuid4().hex
    marker = tmp_path / "kernel-is-running"
    log = tmp_path / "run.log"
    reaper_log = tmp_path / "reaper.log"
    env = dict(os.environ, **{TAG: tag, "CS231N_GEN_CLEANUP_MARKER": str(marker),
                              "CS231N_GEN_BROWSER_NOTEBOOKS": str(_sleepy_notebook(tmp_path)),
                              "CS231N_GEN_SCREENSHOTS": str(tmp_path / "shots"),
                              "CS231N_GEN_REAPER_LOG": str(reaper_log)})
    with open(log, "w") as out:
        run = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                "-k", "render_and_respond", str(HERE / "test_widgets_in_browser.py")],
                               cwd=HERE.parent, env=env, stdout=out, stderr=subprocess.STDOUT,
                               start_new_session=True, preexec_fn=_interruptible)
    try:
        _wait_for(moment, run, marker, log)
        if to_group:
            os.killpg(run.pid, signum)
        else:
            run.send_signal(signum)
        try:
            run.wait(timeout=90)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the browser test was still running 90 s after {signal.Signals(signum).name}")
        deadline = time.monotonic() + 30
        while (left := _tagged(tag)) and time.monotonic() < deadline:
            time.sleep(0.5)
        output = log.read_text()
        reaped = reaper_log.read_text() if reaper_log.exists() else ""
        assert not left, (f"after {signal.Signals(signum).name} at {moment!r}, still running:\n"
                          + "\n".join(map(_describe, left)) + f"\n--- output ---\n{output[-3000:]}")
        if signum == signal.SIGKILL:
            assert "reaper: stopped" in reaped, f"the watcher stopped nothing after SIGKILL?\n{output[-3000:]}"
        else:
            assert run.returncode == pytest.ExitCode.INTERRUPTED, f"exit code {run.returncode}\n{output[-3000:]}"
            assert not reaped, f"the teardown left processes for the watcher to stop: {reaped}\n{output[-3000:]}"
    finally:
        for proc in _tagged(tag):  # never leave this test's own mess behind
            try:
                proc.kill()
            except psutil.Error:
                pass
