"""How many CPU threads torch should use here: what the process may use, then measured.

torch starts with one thread per core it sees (``os.cpu_count()``). That count is wrong
in three common places: a container or Binder with a CPU quota far below the host's
cores (cgroup ``cpu.max``), a process pinned to fewer cores (CPU affinity), and a laptop
or shared lab machine where other programs keep the cores busy. In the last case more
threads than free cores is not a little slower but many times slower: torch's worker
threads wait for each other while the scheduler hands their cores to someone else (one
small MLP step measured 10x slower with 2 threads than with 1 next to two busy
processes on a 2-core machine).

:func:`choose_threads` therefore takes the smallest of the affinity, the cgroup quota and
the core count, then times a probe training step (small MLPs and a small convolution)
with each candidate thread count (well under a second in all) and keeps the fewest
threads that are within 15% of the fastest. ``CS231N_GEN_THREADS=n`` skips the measurement and uses ``n``; an
``OMP_NUM_THREADS`` set by the user is an upper bound. :func:`cs231n_gen.start_lecture`
applies the choice once, at the top of every lecture.
"""
from __future__ import annotations

import dataclasses
import math
import os
import statistics
import time

import torch

from ._validate import check_int

THREADS_ENV = "CS231N_GEN_THREADS"


@dataclasses.dataclass(frozen=True)
class ThreadChoice:
    """The thread count chosen, the CPUs the process may use, and why (one line)."""

    threads: int
    usable: int
    reason: str


def _cgroup_quota() -> float | None:
    """CPUs allowed by the cgroup quota (v2 ``cpu.max`` or v1 ``cfs_quota_us``), None if unlimited."""
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int(open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read())
        period = int(open("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def usable_cpus() -> int:
    """The CPUs this process may really use: affinity, cgroup quota and core count, the smallest."""
    counts = [os.cpu_count() or 1]
    if hasattr(os, "sched_getaffinity"):
        counts.append(len(os.sched_getaffinity(0)))
    quota = _cgroup_quota()
    if quota is not None:
        counts.append(max(1, math.floor(quota)))
    return max(1, min(counts))


def _step_seconds(candidates, rounds: int = 12) -> dict:
    """Median seconds of one probe step at each thread count.

    The probe is what the lectures train: one step of a 3 x 256 MLP (batch 512, the 2D
    and digit lectures), one of two 3 x 3 convolutions at 16 channels on 16 x 16 maps
    (batch 32, the image lectures' autoencoders) and one of a transformer's MLP at width
    64 on 1024 tokens (the diffusion transformers), timed together. The counts take turns
    step by step, so that a change in the machine's load during the measurement affects
    them alike; three untimed steps come first (first-call costs).
    """
    before = torch.get_num_threads()
    g = torch.Generator().manual_seed(0)
    nn = torch.nn
    with torch.random.fork_rng(devices=[]):  # the caller's random state stays as it was
        mlp = nn.Sequential(nn.Linear(2, 256), nn.SiLU(), nn.Linear(256, 256), nn.SiLU(),
                            nn.Linear(256, 256), nn.SiLU(), nn.Linear(256, 2))
        conv = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.SiLU(), nn.Conv2d(16, 16, 3, padding=1))
        token_mlp = nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 64))
    opt = torch.optim.SGD([*mlp.parameters(), *conv.parameters(), *token_mlp.parameters()], lr=1e-3)
    x = torch.randn(512, 2, generator=g)
    maps = torch.randn(32, 16, 16, 16, generator=g)
    tokens = torch.randn(1024, 64, generator=g)

    def step():
        loss = mlp(x).square().mean() + conv(maps).square().mean() + token_mlp(tokens).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    times = {n: [] for n in candidates}
    try:
        for _ in range(3):
            step()
        for _ in range(rounds):
            for n in candidates:
                torch.set_num_threads(n)
                start = time.perf_counter()
                step()
                times[n].append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    return {n: statistics.median(t) for n, t in times.items()}


def choose_threads(max_threads: int | None = None) -> ThreadChoice:
    """The thread count for torch on this machine now (see the module docstring)."""
    usable = usable_cpus()
    if max_threads is not None:
        usable = min(usable, check_int("max_threads", max_threads, minimum=1))
    forced = os.environ.get(THREADS_ENV, "").strip()
    if forced:
        try:
            n = int(forced)
        except ValueError:
            raise ValueError(f"{THREADS_ENV} must be a whole number of threads, got {forced!r}") from None
        if n < 1:
            raise ValueError(f"{THREADS_ENV} must be at least 1, got {n}")
        return ThreadChoice(n, usable, f"{THREADS_ENV}={n}")
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) >= 1:
        usable = min(usable, int(omp))
    if usable == 1:
        return ThreadChoice(1, 1, "one usable CPU")
    candidates = sorted({1, usable} | ({2} if usable > 2 else set()))
    seconds = _step_seconds(candidates)
    fastest = min(seconds.values())
    threads = min(n for n, s in seconds.items() if s <= 1.15 * fastest)
    timing = ", ".join(f"{n}: {1e3 * s:.1f} ms" for n, s in seconds.items())
    return ThreadChoice(threads, usable, f"measured per step ({timing})")


def apply_thread_policy(max_threads: int | None = None) -> ThreadChoice:
    """Choose the thread count and give it to torch; return the choice."""
    choice = choose_threads(max_threads)
    torch.set_num_threads(choice.threads)
    return choice
