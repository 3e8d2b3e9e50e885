"""Test-session defaults: notebooks run in quick mode unless told otherwise.

Set CS231N_GEN_QUICK=0 to execute the lectures at their full (student) budget.
The variable is set before any notebook kernel starts, so kernels inherit it.
"""
import os
from pathlib import Path

os.environ.setdefault("CS231N_GEN_QUICK", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


import pytest  # noqa: E402

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


def pytest_terminal_summary(terminalreporter, config):
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
