"""Time ``cs231n-gen grade`` on a batch of submissions of one lecture; print JSON.

The submissions come from the grading test corpus (``tests/grading_corpus.py``): the
correct, empty and wrong notebooks of one lecture, repeated under new student names up to
``--count``. Usage::

    python benchmarks/grading.py                 # 20 submissions of lecture 04, -j 2
    python benchmarks/grading.py --full --count 4
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lecture", default="04_noise_schedules", choices=sorted(grading_corpus.LECTURES))
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("--full", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cs231n-gen-bench-") as tmp:
        root = Path(tmp)
        grading_corpus.build(root / "corpus")
        pool = sorted(p for p in (root / "corpus" / "submissions").iterdir()
                      if (p / f"{args.lecture}.ipynb").exists() and not p.name.startswith(("contain", "garbage")))
        subs = root / "batch"
        for i in range(args.count):
            shutil.copytree(pool[i % len(pool)], subs / f"student{i:03d}")
        start = time.perf_counter()
        records = grade(subs, root / "corpus" / "release", root / "book.csv", jobs=args.jobs, full=args.full,
                        timeout=600 if args.full else 60, progress=None)
        wall = time.perf_counter() - start
    per = [r["seconds"] for r in records]
    print(json.dumps({"lecture": args.lecture, "submissions": len(records), "jobs": args.jobs, "full": args.full,
                      "cpus": os.cpu_count(), "wall_s": round(wall, 1),
                      "median_submission_s": round(statistics.median(per), 1),
                      "statuses": {s: sum(r["status"] == s for rec in records for r in rec["rows"])
                                   for s in ("passed", "failed", "tampered")}}, indent=1))


if __name__ == "__main__":
    main()
