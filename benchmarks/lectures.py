"""Run every lecture top to bottom on this machine's device and print JSON timings.

For each lecture (``lectures/NN_*.ipynb``): wall time, time per top-level section (the
``## `` headings), peak memory of the kernel process, peak device memory on CUDA, the
torch threads at the end and every thread switch the progress bars reported.
Usage::

    python benchmarks/lectures.py                    # full mode, every lecture
    python benchmarks/lectures.py --quick 02 04      # quick mode, lectures 02 and 04
    python benchmarks/lectures.py --busy 2 01        # next to two busy processes
    python benchmarks/lectures.py --busy 2 --load-after-first-cell 01
    python benchmarks/lectures.py --repeats 3 01     # median of three runs
    python benchmarks/lectures.py --sitting          # the README's table: see below
    python benchmarks/lectures.py --gpu-sitting --minutes 8   # on a GPU: see gpu_sitting

Runs with the run cache off (``CS231N_GEN_CACHE_RUNS=0``), so every model trains.
``--busy N`` starts N processes that keep a core busy each (pure-Python loops, like a
browser tab or a second notebook), for the whole run, or with
``--load-after-first-cell`` once the lecture's first code cell (which chooses the thread
count on a machine that is still idle) has run: the load then arrives mid-lecture, and
the threads must follow it.

``--sitting`` measures what the README's timing table shows, in one sitting: for each
lecture full mode, quick mode, and full mode with two busy processes arriving after the
first cell. It writes the JSON to ``--out`` (default
``benchmarks/results/lectures.json``); ``--table FILE`` prints that file's table, and
``--readme FILE`` puts it into the README between its two timing-table markers (with
``--gpu FILE``, a ``--gpu-sitting`` JSON, as one more column).

``--printed FILE`` also writes what each quick-mode run printed (its code cells' output
text, line by line) to FILE; ``--compare-printed A B`` lists the lines that differ between
two such files: a change that should leave every number alone is checked this way (lines
that report a measured time differ from run to run by nature).
"""
from __future__ import annotations

import argparse
import datetime
import difflib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from _load import busy_processes, stop  # (benchmarks/ is on the path when a script here runs)

ROOT = Path(__file__).resolve().parents[1]
PROBE = """import json as _json, resource as _resource, torch as _torch
print("CS231N_GEN_PEAKS " + _json.dumps({
    "peak_host_mb": round(_resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    "peak_device_mb": round(_torch.cuda.max_memory_allocated() / 2**20, 1) if _torch.cuda.is_available() else None,
    "device": str(_torch.cuda.get_device_name(0)) if _torch.cuda.is_available() else "cpu",
    "threads": _torch.get_num_threads(), "thread_switches": __import__("cs231n_gen.threads").threads.switches()}))
"""


def _seconds(cell) -> float:
    ex = cell.get("metadata", {}).get("execution", {})
    try:
        start = datetime.datetime.fromisoformat(ex["iopub.execute_input"].replace("Z", "+00:00"))
        end = datetime.datetime.fromisoformat(ex["shell.execute_reply"].replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return 0.0
    return (end - start).total_seconds()


def run_lecture(path: Path, quick: bool, timeout: int, load_after_first_cell: int = 0) -> dict:
    """One run; ``load_after_first_cell``: busy processes to start once the first code cell ran."""
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    env = {**os.environ, "CS231N_GEN_QUICK": "1" if quick else "0", "CS231N_GEN_CACHE_RUNS": "0", "MPLBACKEND": "Agg"}
    hogs = []

    def after_cell(cell, cell_index, **_):
        if load_after_first_cell and not hogs and cell.cell_type == "code":
            hogs.extend(busy_processes(load_after_first_cell))

    try:
        start = time.perf_counter()
        NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=True, on_cell_executed=after_cell,
                       resources={"metadata": {"path": str(path.parent)}}).execute(env=env)
        wall = time.perf_counter() - start
    finally:
        stop(hogs)
    sections, heading = {}, "(before the first section)"
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("## "):
                    heading = line[3:].strip()
        elif cell.cell_type == "code":
            sections[heading] = sections.get(heading, 0.0) + _seconds(cell)
    printed = [line for cell in nb.cells[:-1] if cell.cell_type == "code" for out in cell.get("outputs", [])
               if out.get("output_type") == "stream" and out.get("name") == "stdout"
               for line in out.get("text", "").splitlines()]
    peaks = {}
    for out in nb.cells[-1].get("outputs", []):
        for line in out.get("text", "").splitlines():
            if line.startswith("CS231N_GEN_PEAKS "):
                peaks = json.loads(line.split(" ", 1)[1])
    return {"lecture": path.stem, "wall_s": round(wall, 1),
            "sections_s": {k: round(v, 1) for k, v in sections.items() if v >= 0.05}, **peaks, "printed": printed}


def median_run(path: Path, quick: bool, timeout: int, repeats: int, load_after_first_cell: int = 0) -> dict:
    """The run with the median wall time of ``repeats`` runs, with every run's wall time."""
    runs = sorted((run_lecture(path, quick, timeout, load_after_first_cell) for _ in range(repeats)),
                  key=lambda r: r["wall_s"])
    median = dict(runs[(len(runs) - 1) // 2])
    if repeats > 1:
        median["wall_s_runs"] = [r["wall_s"] for r in runs]
        median["wall_s"] = round(statistics.median(median["wall_s_runs"]), 1)
    return median


def machine() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}


def _guarded_run(path: Path, quick: bool, timeout: int, load_after_first_cell: int = 0,
                 printed: bool = False) -> dict:
    """:func:`run_lecture`, or a record of its error (a failing cell); its printed lines only if ``printed``."""
    try:
        run = run_lecture(path, quick, timeout, load_after_first_cell)
        if not printed:
            del run["printed"]
        return run
    except Exception as err:  # a failing cell: recorded
        return {"lecture": path.stem, "error": f"{type(err).__name__}: {str(err)[-2000:]}"}


def write_json(path: Path, value) -> None:
    """``value`` as JSON at ``path``, written atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=1) + "\n")
    tmp.replace(path)


def compare_printed(a: Path, b: Path) -> int:
    """Print the lines that differ between two ``--printed`` files; the number of lectures that differ."""
    before, after = json.loads(a.read_text()), json.loads(b.read_text())
    differ = 0
    for lecture in sorted(set(before) | set(after)):
        diff = list(difflib.unified_diff(before.get(lecture, []), after.get(lecture, []), lineterm="", n=0))
        print(f"{lecture}: {'the same' if not diff else f'{len(diff) - 2} lines differ'}")
        for line in diff[2:]:
            print(f"  {line}")
        differ += bool(diff)
    return differ


def sitting(paths: list[Path], timeout: int, out: Path, printed: Path | None = None) -> dict:
    """Full, quick and loaded-full runs of every lecture, one lecture after another; saved as it goes."""
    result = {"date": datetime.date.today().isoformat(), "machine": machine(),
              "busy": "two busy processes, started once the lecture's first code cell has run", "lectures": []}
    out.parent.mkdir(parents=True, exist_ok=True)
    quick_printed = {}
    for path in paths:
        row = {"lecture": path.stem}
        for key, quick, load in (("full", False, 0), ("quick", True, 0), ("full_busy", False, 2)):
            print(f"{path.stem}: {key} ...", file=sys.stderr, flush=True)
            row[key] = _guarded_run(path, quick, timeout, load, printed=quick)
            if "error" in row[key]:  # a failing cell: recorded, and the sitting goes on
                print(f"  failed: {row[key]['error'][-300:]}", file=sys.stderr, flush=True)
                continue
            print(f"  {row[key]['wall_s']} s, {row[key].get('peak_host_mb')} MB", file=sys.stderr, flush=True)
        quick_printed[path.stem] = row["quick"].pop("printed", None)
        result["lectures"].append(row)
        write_json(out, result)
        if printed is not None:
            write_json(printed, quick_printed)
    return result


def _report(path: Path, key: str, run: dict) -> None:
    said = (f"{run['wall_s']} s, sections {run['sections_s']}" if "error" not in run
            else f"failed: {run['error'][-600:]}")
    print(f"{path.stem}: {key} {said}", file=sys.stderr, flush=True)


def gpu_sitting(paths: list[Path], timeout: int, out: Path, minutes: float) -> dict:
    """The GPU column. First every lecture in quick mode, all at once (a check that each runs
    and its asserts hold on the device; the times overlap, so they are no timings). Then full
    mode, one lecture after another, each timed alone, the slowest on the CPU first (from the
    CPU sitting's JSON, where there is one); once ``minutes`` have passed, the full runs left
    run all at once (``"together"``: a correctness check whose times are upper bounds). Saved
    as it goes, so a run cut short keeps what it measured."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    import multiprocessing

    begun = time.perf_counter()
    rows = {path: {"lecture": path.stem} for path in paths}
    result = {"date": datetime.date.today().isoformat(), "machine": machine(),
              "quick": "all lectures at once (a correctness check; the times overlap)", "lectures": list(rows.values())}
    out.parent.mkdir(parents=True, exist_ok=True)

    def save():
        write_json(out, result)

    def all_at_once(todo: list[Path], quick: bool, key: str) -> None:
        with ProcessPoolExecutor(len(todo), mp_context=multiprocessing.get_context("spawn")) as pool:
            running = {pool.submit(_guarded_run, path, quick, timeout): path for path in todo}
            for done in as_completed(running):
                rows[running[done]][key] = done.result()
                _report(running[done], key, rows[running[done]][key])
                save()

    all_at_once(paths, True, "quick")
    cpu = ROOT / "benchmarks" / "results" / "lectures.json"
    cpu_full = {}
    if cpu.exists():
        cpu_full = {r["lecture"]: r.get("full", {}).get("wall_s", 0) for r in json.loads(cpu.read_text())["lectures"]}
    left = sorted(paths, key=lambda p: -cpu_full.get(p.stem, 0))
    while left and time.perf_counter() - begun < 60 * minutes:
        path = left.pop(0)
        rows[path]["full"] = _guarded_run(path, False, timeout)
        _report(path, "full", rows[path]["full"])
        save()
    if left:
        all_at_once(left, False, "full_together")
    return result


BUDGET = {"full_s": 300, "quick_s": 90, "peak_mb": 1536, "busy_ratio": 2.5}
TABLE_BEGIN, TABLE_END = "<!-- lecture timings: begin (benchmarks/lectures.py --readme) -->", \
    "<!-- lecture timings: end -->"


def _failed(row: dict) -> list[str]:
    """The runs of a sitting's lecture row that failed (full, quick, full_busy)."""
    return [key for key in ("full", "quick", "full_busy") if "error" in row[key]]


def _gpu_cell(row: dict | None, cpu_full: dict) -> str:
    """A lecture's GPU column: the full mode's time and speed-up over the CPU, and whether quick mode ran."""
    if row is None:
        return "not run"
    quick = "quick mode ran" if "wall_s" in row.get("quick", {}) else "quick mode failed" if "quick" in row else ""
    if "wall_s" in row.get("full", {}):
        full = f"{row['full']['wall_s']:.0f} s"
        if "wall_s" in cpu_full:
            full += f" ({cpu_full['wall_s'] / row['full']['wall_s']:.1f}x the CPU)"
    elif "wall_s" in row.get("full_together", {}):
        full = f"under {row['full_together']['wall_s']:.0f} s (run next to others)"
    elif "full" in row or "full_together" in row:
        full = "full mode failed"
    else:
        full = "full mode not run"
    return f"{full}; {quick}" if quick else full


def table(result: dict, gpu: dict | None = None) -> str:
    """The README's timing table for one sitting (its JSON), with a GPU column from a
    :func:`gpu_sitting`'s JSON where ``gpu`` is given."""
    m = result["machine"]
    lines = [f"Measured {result['date']} in one sitting (`python benchmarks/lectures.py --sitting`, "
             f"[JSON](benchmarks/results/lectures.json)): {m['cpus']} cores ({m['cpu']}), torch {m['torch']}, "
             "the run cache off, the digit judge already cached. Budgets: full mode 5 minutes, quick mode "
             "90 s, memory 1.5 GB, next to busy programs 2.5x idle.", "",
             "| # | full mode | quick mode | peak memory | full mode, two busy processes from the first cell on |"
             + (" GPU |" if gpu else ""),
             "|---|---|---|---|---|" + ("---|" if gpu else "")]
    gpu_rows = {r["lecture"]: r for r in (gpu or {}).get("lectures", [])}
    if gpu:
        g = gpu["machine"]
        lines[0] += (f" GPU column: {g['device']} with {g['cpus']} cores, torch {g['torch']}, on {gpu['date']} "
                     "([JSON](benchmarks/results/lectures_gpu.json), `--gpu-sitting`).")
    for row in result["lectures"]:
        full, quick, busy = row["full"], row["quick"], row["full_busy"]
        failed = _failed(row)
        cells = [f"{r['wall_s']:.0f} s" if key not in failed else "failed (see the JSON)"
                 for key, r in (("full", full), ("quick", quick))]
        peak = max(r.get("peak_host_mb") or 0 for r in (full, quick, busy))
        if "full_busy" in failed:
            loaded = "failed (see the JSON)"
        elif "full" in failed:
            loaded = f"{busy['wall_s']:.0f} s"
        else:
            switches = busy.get("thread_switches") or []
            moved = f"; threads {', '.join(switches)}" if switches else ""
            loaded = f"{busy['wall_s'] / full['wall_s']:.2f}x idle ({busy['wall_s']:.0f} s{moved})"
        line = f"| {row['lecture'][:2]} | {cells[0]} | {cells[1]} | {peak / 1024:.2f} GB | {loaded} |"
        if gpu:
            line += f" {_gpu_cell(gpu_rows.get(row['lecture']), full)} |"
        lines.append(line)
    return "\n".join(lines)


def over_budget(result: dict) -> list[str]:
    """Every budget a lecture of this sitting misses, in words."""
    misses = []
    for row in result["lectures"]:
        full, quick, busy = row["full"], row["quick"], row["full_busy"]
        failed = _failed(row)
        if failed:
            misses.append(f"{row['lecture']}: failed in {', '.join(failed)}")
            continue
        peak = max(full.get("peak_host_mb") or 0, quick.get("peak_host_mb") or 0)
        for what, value, limit in (("full mode", full["wall_s"], BUDGET["full_s"]),
                                   ("quick mode", quick["wall_s"], BUDGET["quick_s"]),
                                   ("peak MB", peak, BUDGET["peak_mb"]),
                                   ("busy / idle", busy["wall_s"] / full["wall_s"], BUDGET["busy_ratio"])):
            if value > limit:
                misses.append(f"{row['lecture']}: {what} {value:.1f} > {limit}")
    return misses


def put_in_readme(readme: Path, text: str) -> None:
    body = readme.read_text()
    if TABLE_BEGIN not in body or TABLE_END not in body:
        raise SystemExit(f"{readme} has no timing-table markers ({TABLE_BEGIN} ... {TABLE_END})")
    head, rest = body.split(TABLE_BEGIN, 1)
    tail = rest.split(TABLE_END, 1)[1]
    readme.write_text(f"{head}{TABLE_BEGIN}\n{text}\n{TABLE_END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lectures", nargs="*", help="lecture numbers (default: all)")
    parser.add_argument("--quick", action="store_true", help="quick mode (CS231N_GEN_QUICK=1)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    parser.add_argument("--busy", type=int, default=0, help="busy processes running alongside")
    parser.add_argument("--load-after-first-cell", action="store_true",
                        help="start the busy processes once the first code cell has run")
    parser.add_argument("--repeats", type=int, default=1, help="runs per lecture (the median is reported)")
    parser.add_argument("--sitting", action="store_true", help="full, quick and loaded runs: the README's table")
    parser.add_argument("--gpu-sitting", action="store_true",
                        help="the table's GPU column: every lecture in quick mode at once, then full mode one by one")
    parser.add_argument("--minutes", type=float, default=60.0, help="with --gpu-sitting: no full run starts after this")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "lectures.json")
    parser.add_argument("--table", type=Path, help="print the table of a sitting's JSON")
    parser.add_argument("--gpu", type=Path, help="with --table: a --gpu-sitting JSON for the GPU column")
    parser.add_argument("--readme", type=Path, help="with --table: write the table into this README")
    parser.add_argument("--printed", type=Path, help="write what each quick-mode run printed to this JSON file")
    parser.add_argument("--compare-printed", type=Path, nargs=2, metavar=("BEFORE", "AFTER"),
                        help="list the printed lines that differ between two --printed files")
    args = parser.parse_args()
    if args.compare_printed:
        sys.exit(1 if compare_printed(*args.compare_printed) else 0)
    if args.busy < 0 or args.repeats < 1:
        parser.error(f"--busy must be at least 0 and --repeats at least 1, got {args.busy} and {args.repeats}")
    if args.table is not None:
        result = json.loads(args.table.read_text())
        text = table(result, json.loads(args.gpu.read_text()) if args.gpu else None)
        if args.readme is not None:
            put_in_readme(args.readme, text)
        print(text)
        for miss in over_budget(result):
            print(f"over budget: {miss}", file=sys.stderr)
        return
    paths = sorted((ROOT / "lectures").glob("[0-9][0-9]_*.ipynb"))
    if args.lectures:
        paths = [p for p in paths if p.name[:2] in args.lectures]
        if not paths:
            parser.error(f"no lecture numbered {args.lectures}")
    if args.gpu_sitting:
        gpu_sitting(paths, args.timeout, args.out, args.minutes)
        return
    if args.sitting:
        result = sitting(paths, args.timeout, args.out, args.printed)
        print(table(result))
        for miss in over_budget(result):
            print(f"over budget: {miss}", file=sys.stderr)
        return
    later = args.busy if args.load_after_first_cell else 0
    hogs = busy_processes(args.busy - later)
    try:
        results = [median_run(p, args.quick, args.timeout, args.repeats, later) for p in paths]
    finally:
        stop(hogs)
    printed = {r["lecture"]: r.pop("printed") for r in results}
    if args.printed is not None and args.quick:
        write_json(args.printed, printed)
    print(json.dumps({"mode": "quick" if args.quick else "full", "busy_processes": args.busy,
                      "load_after_first_cell": args.load_after_first_cell,
                      "cpus": os.cpu_count(), "lectures": results}, indent=1))


if __name__ == "__main__":
    main()
