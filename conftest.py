"""Test-session defaults: notebooks run in quick mode unless told otherwise.

Set CS231N_GEN_QUICK=0 to execute the lectures at their full (student) budget.
The variable is set before any notebook kernel starts, so kernels inherit it. So is
CS231N_GEN_CACHE_RUNS=0: the lectures train for real in tests instead of loading what
an earlier run cached (tests of the cache itself turn it on explicitly).

Each lecture runs once per session: where the browser test executes a lecture in a
real JupyterLab (every cell, failing on any error, like nbval), nbval's own run of that
notebook is deselected, and the summary says so. Without a browser, nbval runs them.

A SIGTERM (a ``timeout`` wrapper, a CI runner's limit) is handled like Ctrl-C: pytest
stops and runs every fixture's teardown, so kernels, JupyterLab and the browser are
shut down instead of outliving the run. The signal is also recorded (the
``interrupted`` fixture): Playwright's event loop can swallow the KeyboardInterrupt, so
the browser test's waits check the record and stop themselves. SIGINT keeps Python's
own handler: with a replacement, an interrupted browser test could hang (asyncio, under
Playwright, treats the default handler specially).
"""
import importlib.util
import os
import signal
import threading
from pathlib import Path

os.environ.setdefault("CS231N_GEN_QUICK", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("CS231N_GEN_CACHE_RUNS", "0")


import pytest  # noqa: E402

_PREVIOUS_HANDLERS = pytest.StashKey[dict]()
_RUN_IN_BROWSER = pytest.StashKey[list]()
BROWSER_TEST = "test_widgets_in_browser.py::test_widgets_render_and_respond["
_SIGNALLED: list[str] = []  # the SIGTERMs this session received (Playwright's event loop may swallow the interrupt)


def _terminate_like_ctrl_c(signum, frame):
    _SIGNALLED.append(signal.Signals(signum).name)
    raise KeyboardInterrupt(f"stopped by signal {signal.Signals(signum).name}")


def pytest_configure(config):
    if threading.current_thread() is threading.main_thread():
        config.stash[_PREVIOUS_HANDLERS] = {sig: signal.signal(sig, _terminate_like_ctrl_c)
                                            for sig in (signal.SIGTERM,)}


def pytest_unconfigure(config):
    for sig, previous in config.stash.get(_PREVIOUS_HANDLERS, {}).items():
        if previous is not None:
            signal.signal(sig, previous)


@pytest.fixture(scope="session")
def interrupted():
    """``interrupted()``: "SIGTERM" once this session received one, else None.

    A KeyboardInterrupt raised while Playwright's event loop runs can be swallowed and come
    back as a closed page, or not at all; long waits check this instead.
    """
    return lambda: _SIGNALLED[0] if _SIGNALLED else None


_SCREENSHOTS = pytest.StashKey[Path]()


@pytest.fixture(scope="session")
def screenshot_dir(request, tmp_path_factory):
    """Where browser tests save screenshots: $CS231N_GEN_SCREENSHOTS, else a temp folder.

    The folder is printed at the end of the run so a person can look at the pictures.
    """
    explicit = os.environ.get("CS231N_GEN_SCREENSHOTS")
    path = Path(explicit) if explicit else tmp_path_factory.mktemp("browser-screenshots", numbered=False)
    path.mkdir(parents=True, exist_ok=True)
    request.config.stash[_SCREENSHOTS] = path
    return path


_GRADING_TESTS = ("test_grading.py", "test_grading_nbgrader.py", "test_gradescope.py")


def _skip_grading_without_a_sandbox(items) -> None:
    """The grader needs bubblewrap (or an explicit --no-sandbox): without it, its tests skip with a reason."""
    import shutil

    if shutil.which("bwrap") is not None:
        return
    skip = pytest.mark.skip(reason="bubblewrap (bwrap) is not installed: the grader sandboxes every submission "
                                   "with it (apt-get install bubblewrap)")
    for item in items:
        if Path(str(item.fspath)).name in _GRADING_TESTS:
            item.add_marker(skip)


@pytest.hookimpl(trylast=True)  # after -k / -m, so only the browser runs that will happen count
def pytest_collection_modifyitems(session, config, items):
    _skip_grading_without_a_sandbox(items)
    covered = {}
    for item in items:
        if BROWSER_TEST in item.nodeid:
            notebook = Path(item.callspec.params["notebook"]).resolve()
            covered[notebook] = item
    if not covered:
        return
    module = next(iter(covered.values())).module
    if importlib.util.find_spec("playwright") is None or module.find_browser() is None:
        return  # the browser test will skip: nbval must execute the lectures
    keep, dropped = [], []
    for item in items:
        path = Path(str(item.fspath)).resolve()
        (dropped if path.suffix == ".ipynb" and path in covered else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
        config.stash[_RUN_IN_BROWSER] = sorted({Path(str(i.fspath)).name for i in dropped})


def pytest_terminal_summary(terminalreporter, config):
    in_browser = config.stash.get(_RUN_IN_BROWSER, None)
    if in_browser:
        terminalreporter.write_sep("-", "lectures executed once")
        terminalreporter.write_line(f"{len(in_browser)} notebook(s) executed by the browser test (all cells, failing "
                                    f"on any error); nbval's second run of them was deselected: {', '.join(in_browser)}")
    path = config.stash.get(_SCREENSHOTS, None)
    if path is not None:
        shots = sorted(p.name for p in path.glob("*.png"))
        terminalreporter.write_sep("-", "browser screenshots")
        terminalreporter.write_line(f"{len(shots)} screenshot(s) in {path}")
        for name in shots:
            terminalreporter.write_line(f"  {name}")


@pytest.fixture(scope="session")
def digit_cache(tmp_path_factory):
    """One cache folder for the whole test session, so the digit judge trains once."""
    from cs231n_gen import cache

    mp = pytest.MonkeyPatch()
    mp.setenv(cache.CACHE_ENV, str(tmp_path_factory.mktemp("cs231n-gen-cache")))
    try:
        yield cache.cache_dir()
    finally:
        mp.undo()
