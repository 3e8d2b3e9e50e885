"""Training speed of a lecture's 2D model under torch's default thread count and the course's policy.

Trains the rectified-flow ``TimeMLP`` (3 x 256) with ``fit`` for a fixed number of steps,
on an idle machine and next to two busy processes (pure-Python loops, like a browser tab
and a second notebook), with torch's default threads (one per core it sees) and with
``cs231n_gen.threads.choose_threads`` chosen under the same conditions. Prints JSON:
median steps/s over ``--repeats`` runs, and the ratios busy/idle and policy/default.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

from cs231n_gen.data import eight_gaussians
from cs231n_gen.nn.mlp import TimeMLP
from cs231n_gen.paths import rectified_flow_loss
from cs231n_gen.threads import choose_threads, usable_cpus
from cs231n_gen.train import fit


def steps_per_s(threads: int, steps: int) -> float:
    torch.set_num_threads(threads)
    data = eight_gaussians().sample(20_000, generator=torch.Generator().manual_seed(0))
    model = TimeMLP()
    start = time.perf_counter()
    fit(model, lambda m, b, g: rectified_flow_loss(m, b, generator=g), data, steps=steps, device="cpu",
        progress=False, cache=False)
    return steps / (time.perf_counter() - start)


def measure(label: str, default: int, steps: int, repeats: int) -> dict:
    choice = choose_threads()
    speeds = {"default": [], "policy": []}
    for _ in range(repeats):  # alternate, so slow drifts in the load hit both alike
        speeds["default"].append(steps_per_s(default, steps))
        speeds["policy"].append(steps_per_s(choice.threads, steps))
    return {"condition": label, "default_threads": default, "policy_threads": choice.threads,
            "policy_reason": choice.reason,
            "default_steps_per_s": round(statistics.median(speeds["default"]), 1),
            "policy_steps_per_s": round(statistics.median(speeds["policy"]), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    default = torch.get_num_threads()
    idle = measure("idle", default, args.steps, args.repeats)
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        time.sleep(1.0)
        busy = measure("two busy processes", default, args.steps, args.repeats)
    finally:
        for h in hogs:
            h.kill()
    print(json.dumps({
        "usable_cpus": usable_cpus(), "results": [idle, busy],
        "busy_over_idle_policy": round(busy["policy_steps_per_s"] / idle["policy_steps_per_s"], 2),
        "busy_over_idle_default": round(busy["default_steps_per_s"] / idle["default_steps_per_s"], 2),
        "idle_policy_over_default": round(idle["policy_steps_per_s"] / idle["default_steps_per_s"], 2),
    }, indent=1))


if __name__ == "__main__":
    main()
