"""Run every lecture top to bottom on this machine's device and print JSON timings.

For each lecture (``lectures/NN_*.ipynb``): wall time, time per top-level section (the
``## `` headings), peak memory of the kernel process, and peak device memory on CUDA.
Usage::

    python benchmarks/lectures.py                    # full mode, every lecture
    python benchmarks/lectures.py --quick 02 04      # quick mode, lectures 02 and 04
    python benchmarks/lectures.py --busy 2 01        # next to two busy processes
    python benchmarks/lectures.py --repeats 3 01     # median of three runs

Runs with the run cache off (``CS231N_GEN_CACHE_RUNS=0``), so every model trains.
``--busy N`` starts N processes that keep a core busy each (pure-Python loops, like a
browser tab or a second notebook) for the whole run, to see how a lecture copes with a
machine it does not have to itself; the thread count the lecture chose is in the output.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
PROBE = """import json as _json, resource as _resource, torch as _torch
print("CS231N_GEN_PEAKS " + _json.dumps({
    "peak_host_mb": round(_resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    "peak_device_mb": round(_torch.cuda.max_memory_allocated() / 2**20, 1) if _torch.cuda.is_available() else None,
    "device": str(_torch.cuda.get_device_name(0)) if _torch.cuda.is_available() else "cpu",
    "threads": _torch.get_num_threads()}))
"""


def _seconds(cell) -> float:
    ex = cell.get("metadata", {}).get("execution", {})
    try:
        start = datetime.datetime.fromisoformat(ex["iopub.execute_input"].replace("Z", "+00:00"))
        end = datetime.datetime.fromisoformat(ex["shell.execute_reply"].replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return 0.0
    return (end - start).total_seconds()


def run_lecture(path: Path, quick: bool, timeout: int) -> dict:
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    env_before = dict(os.environ)
    os.environ.update(CS231N_GEN_QUICK="1" if quick else "0", CS231N_GEN_CACHE_RUNS="0", MPLBACKEND="Agg")
    try:
        start = time.perf_counter()
        NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=True,
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        wall = time.perf_counter() - start
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    sections, heading = {}, "(before the first section)"
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("## "):
                    heading = line[3:].strip()
        elif cell.cell_type == "code":
            sections[heading] = sections.get(heading, 0.0) + _seconds(cell)
    peaks = {}
    for out in nb.cells[-1].get("outputs", []):
        for line in out.get("text", "").splitlines():
            if line.startswith("CS231N_GEN_PEAKS "):
                peaks = json.loads(line.split(" ", 1)[1])
    return {"lecture": path.stem, "wall_s": round(wall, 1),
            "sections_s": {k: round(v, 1) for k, v in sections.items() if v >= 0.05}, **peaks}


def median_run(path: Path, quick: bool, timeout: int, repeats: int) -> dict:
    """The run with the median wall time of ``repeats`` runs, with every run's wall time."""
    runs = sorted((run_lecture(path, quick, timeout) for _ in range(repeats)), key=lambda r: r["wall_s"])
    median = dict(runs[(len(runs) - 1) // 2])
    if repeats > 1:
        median["wall_s_runs"] = [r["wall_s"] for r in runs]
        median["wall_s"] = round(statistics.median(median["wall_s_runs"]), 1)
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lectures", nargs="*", help="lecture numbers (default: all)")
    parser.add_argument("--quick", action="store_true", help="quick mode (CS231N_GEN_QUICK=1)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    parser.add_argument("--busy", type=int, default=0, help="busy processes running alongside")
    parser.add_argument("--repeats", type=int, default=1, help="runs per lecture (the median is reported)")
    args = parser.parse_args()
    if args.busy < 0 or args.repeats < 1:
        parser.error(f"--busy must be at least 0 and --repeats at least 1, got {args.busy} and {args.repeats}")
    paths = sorted((ROOT / "lectures").glob("[0-9][0-9]_*.ipynb"))
    if args.lectures:
        paths = [p for p in paths if p.name[:2] in args.lectures]
        if not paths:
            parser.error(f"no lecture numbered {args.lectures}")
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        results = [median_run(p, args.quick, args.timeout, args.repeats) for p in paths]
    finally:
        for hog in hogs:
            hog.kill()
    print(json.dumps({"mode": "quick" if args.quick else "full", "busy_processes": args.busy,
                      "cpus": os.cpu_count(), "lectures": results}, indent=1))


if __name__ == "__main__":
    main()
