"""``python -m cs231n_gen.pretrained``: list the shipped models, or rebuild them from scratch.

``build`` executes each lecture that ships a model at its full budget, in a fresh
kernel, with ``CS231N_GEN_PRETRAINED=build``: every call with ``shipped=name`` trains
and writes ``name.pt`` and ``name.json`` (its recipe, and the numbers the lecture then
asserts about it) into the package's ``models/`` folder (``--out`` for another one).
It runs on the best device there is (:func:`cs231n_gen.get_device`).
"""
from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
import time
from pathlib import Path

from . import BUILD_ID_ENV, DIR_ENV, LECTURE_ENV, MODE_ENV, available, folder

SHIPPED_CALL = re.compile(r"shipped=")


def default_lectures_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "lectures"


def lectures_that_ship(lectures_dir: Path, only: list[str] | None) -> list[Path]:
    """The lecture notebooks whose source names a shipped model (``only``: their numbers, e.g. 05)."""
    found = []
    for source in sorted(lectures_dir.glob("[0-9][0-9]_*.py")):
        notebook = source.with_suffix(".ipynb")
        if only and source.name[:2] not in only:
            continue
        if SHIPPED_CALL.search(source.read_text(encoding="utf-8")) and notebook.exists():
            found.append(notebook)
    if only:
        missing = sorted(set(only) - {p.name[:2] for p in found})
        if missing:
            raise SystemExit(f"no lecture numbered {', '.join(missing)} ships a model in {lectures_dir}")
    return found


def build(args) -> int:
    import nbformat
    from nbclient import NotebookClient

    lectures_dir = Path(args.lectures)
    notebooks = lectures_that_ship(lectures_dir, args.lecture)
    out = Path(args.out) if args.out else folder()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.update({MODE_ENV: "build", DIR_ENV: str(out), "CS231N_GEN_QUICK": "0",
                       "CS231N_GEN_CACHE_RUNS": "0"})
    # one id for the whole build (an id already set continues an earlier build: models two
    # lectures share are then trained once)
    os.environ.setdefault(BUILD_ID_ENV, time.strftime("%Y%m%dT%H%M%S-") + secrets.token_hex(4))
    times = {}
    for notebook in notebooks:
        os.environ[LECTURE_ENV] = notebook.stem
        print(f"building the models of {notebook.stem} (full budget) ...", flush=True)
        nb = nbformat.read(notebook, as_version=4)
        start = time.perf_counter()
        NotebookClient(nb, timeout=args.timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(notebook.parent)}}).execute()
        times[notebook.stem] = time.perf_counter() - start
        print(f"  {notebook.stem}: {times[notebook.stem]:.0f} s", flush=True)
    os.environ[DIR_ENV] = str(out)
    if not args.lecture:  # a whole build: what no lecture made this time is no longer used
        for name, meta in available().items():
            if meta.get("build_id") != os.environ[BUILD_ID_ENV]:
                for suffix in (".pt", ".json"):
                    (out / f"{name}{suffix}").unlink(missing_ok=True)
                print(f"removed {name}: no lecture ships it any more")
    show(out_dir=out, lectures={n.stem for n in notebooks})
    print(f"built {len(notebooks)} lecture(s) in {sum(times.values()):.0f} s")
    return 0


def show(out_dir: Path | None = None, lectures: set | None = None) -> int:
    """One line a model: its lectures, size, build time and device, and the numbers asserted about it."""
    models = available()
    total = 0
    for name, meta in models.items():
        if lectures and not set(meta["lectures"]) & lectures:
            continue
        size = (out_dir or folder()).joinpath(f"{name}.pt").stat().st_size
        total += size
        built = meta.get("built", {})
        numbers = ", ".join(f"{k} {v:.4g}" for k, v in sorted(meta.get("numbers", {}).items()))
        print(f"{name:24} {size / 1e6:6.2f} MB  {built.get('steps', '?'):>5} steps {built.get('seconds', 0):6.0f} s "
              f"on {built.get('device', '?'):4}  {','.join(lec[:2] for lec in meta['lectures']):9} {numbers}")
    print(f"{total / 1e6:.1f} MB of shipped models in {out_dir or folder()}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cs231n_gen.pretrained", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the shipped models, their sizes and recorded numbers")
    b = sub.add_parser("build", help="rebuild shipped models by executing their lectures at full budget")
    b.add_argument("--lecture", action="append", metavar="NN", help="only this lecture (repeatable), e.g. 05")
    b.add_argument("--lectures", default=str(default_lectures_dir()), help="the folder of lecture notebooks")
    b.add_argument("--out", default=None, help=f"where to write the models (default {folder()})")
    b.add_argument("--timeout", type=int, default=3600, help="seconds a cell may run")
    args = parser.parse_args(argv)
    if args.command == "list":
        return show()
    return build(args)


if __name__ == "__main__":
    sys.exit(main())
