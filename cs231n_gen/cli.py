"""The ``cs231n-gen`` command (also ``python -m cs231n_gen``): release, grade, check, gradescope."""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def _table(records) -> str:
    lines = [f"{'student':14} {'lecture':28} {'exercise':24} {'points':>6}  status    message"]
    for rec in records:
        for row in rec["rows"]:
            flags = "; ".join(list(rec["flags"]) + list(row["flags"]))
            lines.append(f"{rec['student'][:14]:14} {rec['lecture'][:28]:28} {row['exercise'][:24]:24} "
                         f"{row['points']:>3}/{row['max_points']:<2}  {row['status']:8}  {row['message'][:90]}"
                         + (f"\n{'':76}flags: {flags}" if flags else ""))
    return "\n".join(lines)


def _timeout(args) -> float:
    if args.timeout is None:
        return 600.0 if args.full else 60.0
    if not args.timeout > 0:
        raise ValueError(f"--timeout must be a positive number of seconds, got {args.timeout}")
    return args.timeout


def _release(args) -> int:
    from .grading.release import release

    manifest = release(args.notebooks, args.out)
    for stem, entry in manifest["lectures"].items():
        names = ", ".join(e["name"] for e in entry["exercises"])
        print(f"released {stem}: {len(entry['exercises'])} exercises ({names}), {entry['max_points']} points")
    print(f"wrote {len(manifest['lectures'])} notebooks and release.json to {args.out}")
    return 0


def _grading_tools() -> None:
    """Grading runs notebooks under pytest and nbval: the ``grade`` extra installs them."""
    import importlib.util

    missing = [name for name in ("pytest", "nbval") if importlib.util.find_spec(name) is None]
    if missing:
        raise ValueError(f"grading needs {' and '.join(missing)}, which are not installed; install them with: "
                         'pip install "cs231n-gen[grade]"')


def _grade(args) -> int:
    from .grading.grade import grade, summary_path

    _grading_tools()

    records = grade(args.submissions, args.release, args.out, jobs=args.jobs, timeout=_timeout(args),
                    memory_mb=args.memory_mb, full=args.full, sandbox="none" if args.no_sandbox else args.sandbox)
    points = sum(r["points"] for rec in records for r in rec["rows"])
    total = sum(r["max_points"] for rec in records for r in rec["rows"])
    print(f"gradebook: {args.out} ({len(records)} submissions, {points}/{total} points); "
          f"per student: {summary_path(args.out)}")
    return 0


def _check(args) -> int:
    from .grading.grade import Limits, Submission, grade_submission
    from .grading.release import load_release, release
    import secrets

    _grading_tools()
    notebook = Path(args.notebook)
    with tempfile.TemporaryDirectory(prefix="cs231n-gen-check-") as tmp:
        if args.release:
            release_dir = Path(args.release)
            manifest = load_release(release_dir)
        else:  # the notebook is its own reference: its check and lecture cells are taken as they are
            release_dir = Path(tmp)
            manifest = release([notebook], release_dir)
        if args.release and notebook.stem not in manifest["lectures"]:
            from .grading.grade import _lecture_of
            lecture = _lecture_of(notebook, manifest, folder_form=False)
        else:
            lecture = notebook.stem
        sub = Submission("you", lecture, notebook)
        from .grading.sandbox import bwrap_problem  # your own code on your own machine: a sandbox if it works

        limits = Limits(timeout=_timeout(args), full=args.full, sandbox="none" if bwrap_problem() else "bwrap")
        record = grade_submission(sub, release_dir, manifest, seed=secrets.randbelow(2**40), limits=limits)
        for row in record["rows"]:
            row["flags"] = [f for f in row["flags"] if f != "unsandboxed"]
    print(_table([record]))
    points = sum(r["points"] for r in record["rows"])
    total = sum(r["max_points"] for r in record["rows"])
    print(f"\n{points}/{total} points, as a grader would record them (probes drawn from a fresh seed).")
    return 0 if points == total else 1


def _gradescope(args) -> int:
    from .grading import gradescope

    if args.try_:
        _grading_tools()
        if args.release or args.out:
            raise ValueError("--try takes the zip and a notebook only (no release folder, no --out)")
        results = gradescope.try_zip(*args.try_)
        print(gradescope.results_table(results))
        return 0
    if not args.release or not args.out:
        raise ValueError("give the release folder and --out autograder.zip (or --try ZIP NOTEBOOK for a dry run)")
    written = gradescope.export(args.release, args.out, per_lecture=args.per_lecture, cpu_torch=not args.cuda_torch,
                                wheel=args.wheel, timeout=_timeout(args), memory_mb=args.memory_mb)
    for path in written:
        print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MB): upload it as the autograder of a "
              "Gradescope programming assignment")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="cs231n-gen", description="Release the lectures to students and "
                                     "grade their exercises.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("release", help="write student copies of lecture notebooks and release.json")
    p.add_argument("notebooks", nargs="+", help="lecture notebooks (.ipynb) with their solutions")
    p.add_argument("--out", required=True, help="folder for the student notebooks and release.json")
    p.set_defaults(run=_release)

    p = sub.add_parser("grade", help="grade a folder of submissions into a CSV gradebook")
    p.add_argument("submissions", help="folder of NAME.ipynb or NAME/LECTURE.ipynb submissions")
    p.add_argument("--release", required=True, help="the folder 'cs231n-gen release' wrote")
    p.add_argument("--out", required=True, help="the gradebook CSV (records are kept next to it)")
    p.add_argument("-j", "--jobs", type=int, default=1, help="submissions graded at once (default 1)")
    p.add_argument("--timeout", type=float, help="seconds per cell (default 60; 600 with --full)")
    p.add_argument("--memory-mb", type=int, default=3000, help="memory limit of a submission's kernel (MB)")
    p.add_argument("--full", action="store_true", help="run the whole lecture (quick mode), not just the exercises")
    p.add_argument("--sandbox", choices=("auto", "bwrap"), default="auto",
                   help="where student code runs (default: bubblewrap, required unless --no-sandbox)")
    p.add_argument("--no-sandbox", action="store_true",
                   help="run student code as you, with your files and network (every row flagged 'unsandboxed')")
    p.set_defaults(run=_grade)

    p = sub.add_parser("check", help="run your notebook's exercise checks as a grader would")
    p.add_argument("notebook", help="your lecture notebook (.ipynb)")
    p.add_argument("--release", help="the released folder, to compare your notebook with it")
    p.add_argument("--timeout", type=float, help="seconds per cell (default 60; 600 with --full)")
    p.add_argument("--full", action="store_true", help="run the whole lecture (quick mode)")
    p.set_defaults(run=_check)

    p = sub.add_parser("gradescope", help="write a Gradescope autograder zip from a release (or --try one)")
    p.add_argument("release", nargs="?", help="the folder 'cs231n-gen release' wrote")
    p.add_argument("--out", help="the zip to write (autograder.zip)")
    p.add_argument("--per-lecture", action="store_true", help="one zip per lecture (OUT-LECTURE.zip)")
    p.add_argument("--cuda-torch", action="store_true", help="install PyTorch's default (CUDA) build, not the CPU one")
    p.add_argument("--wheel", help="a built cs231n_gen wheel to bundle (default: build it from the source tree)")
    p.add_argument("--timeout", type=float, help="seconds per cell (default 60)")
    p.add_argument("--memory-mb", type=int, default=3000, help="memory limit of a submission's kernel (MB)")
    p.add_argument("--try", dest="try_", nargs=2, metavar=("ZIP", "NOTEBOOK"),
                   help="dry run: grade NOTEBOOK with the zip's run_autograder in a local copy of Gradescope's folders")
    p.set_defaults(run=_gradescope, full=False)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ValueError as err:
        print(f"cs231n-gen {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
