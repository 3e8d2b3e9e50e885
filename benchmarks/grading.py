"""Time ``cs231n-gen grade`` on a batch of submissions of one lecture, in the sandbox and without; print JSON.

The submissions come from the grading test corpus (``tests/grading_corpus.py``): the
correct, empty and wrong notebooks of one lecture, repeated under new student names up to
``--count``. The batch is graded ``--repeats`` times in each mode, the modes taking turns
(bubblewrap sandbox, then ``--no-sandbox``), and the medians are compared: seconds per
submission (the grader's own record of each) and wall time of the batch. Usage::

    python benchmarks/grading.py                      # 8 submissions of lecture 02, -j 1, 3 repeats
    python benchmarks/grading.py --count 20 -j 2 --lecture 04_noise_schedules
    python benchmarks/grading.py --full --count 4 --modes bwrap
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import grading_corpus  # noqa: E402

from cs231n_gen.grading.grade import grade  # noqa: E402
from cs231n_gen.grading.sandbox import bwrap_path  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lecture", default="02_rectified_flow", choices=sorted(grading_corpus.LECTURES))
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("-j", "--jobs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--modes", nargs="+", default=["bwrap", "none"], choices=["bwrap", "none"])
    args = parser.parse_args()
    modes = [m for m in args.modes if m != "bwrap" or bwrap_path()]
    per_mode = {m: {"wall_s": [], "submission_s": [], "statuses": {}} for m in modes}
    with tempfile.TemporaryDirectory(prefix="cs231n-gen-bench-") as tmp:
        root = Path(tmp)
        grading_corpus.build(root / "corpus")
        pool = sorted(p for p in (root / "corpus" / "submissions").iterdir()
                      if (p / f"{args.lecture}.ipynb").exists() and not p.name.startswith(("contain", "garbage",
                                                                                           "tamper")))
        subs = root / "batch"
        for i in range(args.count):
            shutil.copytree(pool[i % len(pool)], subs / f"student{i:03d}")
        for r in range(args.repeats):
            for mode in modes:
                book = root / f"book-{mode}-{r}.csv"
                start = time.perf_counter()
                records = grade(subs, root / "corpus" / "release", book, jobs=args.jobs, full=args.full,
                                timeout=600 if args.full else 60, sandbox=mode, progress=None)
                per_mode[mode]["wall_s"].append(time.perf_counter() - start)
                per_mode[mode]["submission_s"] += [rec["seconds"] for rec in records]
                statuses = per_mode[mode]["statuses"]
                for rec in records:
                    for row in rec["rows"]:
                        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
    result = {"lecture": args.lecture, "submissions": args.count, "jobs": args.jobs, "repeats": args.repeats,
              "full": args.full, "cpus": os.cpu_count(), "modes": {}}
    for mode, data in per_mode.items():
        result["modes"][mode] = {"median_wall_s": round(statistics.median(data["wall_s"]), 2),
                                 "median_submission_s": round(statistics.median(data["submission_s"]), 2),
                                 "wall_s": [round(w, 2) for w in data["wall_s"]],
                                 "statuses": data["statuses"]}
    if {"bwrap", "none"} <= set(per_mode):
        sub = {m: result["modes"][m]["median_submission_s"] for m in ("bwrap", "none")}
        result["sandbox_overhead"] = round(sub["bwrap"] / sub["none"] - 1, 3)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
