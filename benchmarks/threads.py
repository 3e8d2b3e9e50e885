"""Training speed of a lecture's 2D model under torch's default thread count and the course's policy.

Trains the rectified-flow ``TimeMLP`` (3 x 256) with ``fit`` for a fixed number of steps,
on an idle machine and next to two busy processes (pure-Python loops, like a browser tab
and a second notebook), with torch's default threads (one per core it sees) and with
``cs231n_gen.threads.choose_threads`` chosen under the same conditions. Then the load
changes mid-run: two busy processes start ``--change-after`` seconds into a longer run
that began on an idle machine, or stop that long into one that began next to them; each
with the load follower (``cs231n_gen.threads.LoadFollower``) and without it (the count
chosen at the start kept, ``CS231N_GEN_THREADS``). Prints JSON: median steps/s over
``--repeats`` runs, and each condition's speed as a fraction of the idle speed.
"""
from __future__ import annotations

import argparse
import json
import statistics
import os
import threading
import time

import torch

from cs231n_gen.data import eight_gaussians
from cs231n_gen.nn.mlp import TimeMLP
from cs231n_gen.paths import rectified_flow_loss
from cs231n_gen.threads import THREADS_ENV, choose_threads, usable_cpus
from cs231n_gen.train import fit

from _load import busy_processes, stop  # (benchmarks/ is on the path when a script here runs)


def steps_per_s(threads: int, steps: int, fixed: bool = False) -> float:
    """Training speed starting at ``threads``; ``fixed``: kept all run (no load follower)."""
    torch.set_num_threads(threads)
    data = eight_gaussians().sample(20_000, generator=torch.Generator().manual_seed(0))
    model = TimeMLP()
    before = os.environ.get(THREADS_ENV)
    if fixed:
        os.environ[THREADS_ENV] = str(threads)
    try:
        start = time.perf_counter()
        fit(model, lambda m, b, g: rectified_flow_loss(m, b, generator=g), data, steps=steps, device="cpu",
            progress=False, cache=False)
        return steps / (time.perf_counter() - start)
    finally:
        if before is None:
            os.environ.pop(THREADS_ENV, None)
        else:
            os.environ[THREADS_ENV] = before


def measure(label: str, default: int, steps: int, repeats: int) -> dict:
    choice = choose_threads()
    speeds = {"default": [], "policy": []}
    for _ in range(repeats):  # alternate, so slow drifts in the load hit both alike
        speeds["default"].append(steps_per_s(default, steps, fixed=True))
        speeds["policy"].append(steps_per_s(choice.threads, steps, fixed=True))
    return {"condition": label, "default_threads": default, "policy_threads": choice.threads,
            "policy_reason": choice.reason,
            "default_steps_per_s": round(statistics.median(speeds["default"]), 1),
            "policy_steps_per_s": round(statistics.median(speeds["policy"]), 1)}


def changing_load(kind: str, follow: bool, steps: int, after: float) -> dict:
    """Steps/s of one run whose load starts (``kind="start"``) or stops (``"stop"``) ``after``
    seconds in; the thread count is chosen under the load at the run's start."""
    running = busy_processes(2) if kind == "stop" else []
    try:
        if running:
            time.sleep(1.0)
        threads = choose_threads().threads
        change = threading.Timer(after, lambda: stop(running) if kind == "stop"
                                 else running.extend(busy_processes(2)))
        change.start()
        try:
            speed = steps_per_s(threads, steps, fixed=not follow)
        finally:
            change.cancel()
        return {"speed": speed, "threads_at_start": threads, "threads_at_end": torch.get_num_threads()}
    finally:
        stop(running)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--long-steps", type=int, default=4000, help="steps of the runs whose load changes")
    parser.add_argument("--change-after", type=float, default=3.0, help="seconds into those runs")
    args = parser.parse_args()
    default = torch.get_num_threads()
    idle = measure("idle", default, args.steps, args.repeats)
    running = busy_processes(2)
    try:
        time.sleep(1.0)
        busy = measure("two busy processes", default, args.steps, args.repeats)
    finally:
        stop(running)
    idle_long = statistics.median(steps_per_s(choose_threads().threads, args.long_steps)
                                  for _ in range(args.repeats))
    changes = {}
    for kind in ("start", "stop"):
        for follow in (True, False):
            runs = [changing_load(kind, follow, args.long_steps, args.change_after) for _ in range(args.repeats)]
            name = f"load {'starts' if kind == 'start' else 'stops'} mid-run, {'follower' if follow else 'fixed'}"
            changes[name] = {"steps_per_s": round(statistics.median(r["speed"] for r in runs), 1),
                             "of_idle": round(statistics.median(r["speed"] for r in runs) / idle_long, 2),
                             "of_idle_runs": [round(r["speed"] / idle_long, 2) for r in runs],
                             "threads_start_end": [(r["threads_at_start"], r["threads_at_end"]) for r in runs]}
    print(json.dumps({
        "usable_cpus": usable_cpus(), "results": [idle, busy],
        "busy_over_idle_policy": round(busy["policy_steps_per_s"] / idle["policy_steps_per_s"], 2),
        "busy_over_idle_default": round(busy["default_steps_per_s"] / idle["default_steps_per_s"], 2),
        "idle_policy_over_default": round(idle["policy_steps_per_s"] / idle["default_steps_per_s"], 2),
        "idle_steps_per_s_long": round(idle_long, 1), "load_changes": changes,
    }, indent=1))


if __name__ == "__main__":
    main()
