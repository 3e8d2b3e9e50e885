"""The load the benchmarks put next to a run: busy processes, started and stopped."""
from __future__ import annotations

import subprocess
import sys


def busy_processes(n: int) -> list:
    """``n`` processes that keep a core busy each (pure-Python loops, like a browser tab or a second notebook)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop(processes: list) -> None:
    """Kill the busy processes and wait until they are gone (what runs next starts on an idle machine)."""
    for p in processes:
        p.kill()
    for p in processes:
        p.wait()
