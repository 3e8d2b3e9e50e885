"""Device choice, seeding and the quick/full budget switch every lecture uses."""
from __future__ import annotations

import math
import os
import random
import statistics
import time

import numpy as np
import torch

from ._validate import check_callable, check_device, check_int, check_module, check_real, check_seed

QUICK_ENV = "CS231N_GEN_QUICK"


def get_device(prefer: str | None = None) -> torch.device:
    """The best available device: CUDA, then Apple MPS, then CPU.

    ``prefer`` ("cpu", "cuda", "mps") forces a choice; asking for one that is not
    available raises ``ValueError``.
    """
    if prefer is not None:
        if not isinstance(prefer, str) or prefer not in ("cpu", "cuda", "mps"):
            raise ValueError(f"prefer must be 'cpu', 'cuda' or 'mps', got {prefer!r}")
        if prefer == "cuda" and not torch.cuda.is_available():
            raise ValueError("prefer='cuda' but no CUDA device is available")
        if prefer == "mps" and not _mps_available():
            raise ValueError("prefer='mps' but no MPS device is available")
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def seed_everything(seed: int = 0) -> int:
    """Seed Python, NumPy and PyTorch (all devices) so a lecture reruns identically.

    Returns the seed. On the CPU the same seed gives the same numbers; GPU kernels
    may still differ in the last bits.
    """
    seed = check_seed("seed", seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return seed


def is_quick() -> bool:
    """True when ``CS231N_GEN_QUICK`` is set to a true value (1, true, yes, on)."""
    return os.environ.get(QUICK_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def budget(full, quick):
    """Pick a budget: ``full`` for students, ``quick`` for CI and graders.

    Quick mode is on when the environment variable ``CS231N_GEN_QUICK=1``. Both values
    must be of the same kind (two ints, two floats, ...); ints must be >= 1.
    """
    if type(full) is not type(quick):
        raise ValueError(
            f"full and quick must be of the same type, got {type(full).__name__} "
            f"and {type(quick).__name__}"
        )
    if isinstance(full, int) and not isinstance(full, bool):
        check_int("full", full, minimum=1)
        check_int("quick", quick, minimum=1)
    return quick if is_quick() else full


CACHE_RUNS_ENV = "CS231N_GEN_CACHE_RUNS"
_lecture_caches_runs = False


def caching_runs() -> bool:
    """Whether trainers reuse finished runs from the cache by default: after
    :func:`start_lecture` (``cache=True``), unless ``CS231N_GEN_CACHE_RUNS=0``."""
    return _lecture_caches_runs and os.environ.get(CACHE_RUNS_ENV, "1").strip() != "0"


def start_lecture(seed: int = 0, device: str | None = None, cache: bool = True,
                  pretrained: bool | None = None) -> tuple[torch.device, bool]:
    """Everything a lecture's first cell does, in one call: returns ``(device, QUICK)``.

    Picks the device (:func:`get_device`, ``device`` forces one), on the CPU the number of
    torch threads (:func:`cs231n_gen.threads.apply_thread_policy`: what the process may use,
    measured), seeds Python, NumPy and PyTorch (:func:`seed_everything`), reads quick mode
    (``CS231N_GEN_QUICK``) and prints one line saying what it chose, so a rerun of the notebook
    starts from the same state.
    With ``cache`` (the default) every model the lecture trains is cached, keyed by
    everything that made it (:mod:`cs231n_gen.fingerprint`), so a rerun after a kernel
    restart loads instead of training; ``CS231N_GEN_CACHE_RUNS=0`` turns that off.
    ``pretrained``: True puts the course's shipped trained models (:mod:`cs231n_gen.pretrained`)
    in place of the long trainings (after a few steps that exercise the loop), False trains
    everything here; None (the default) loads them in quick mode only.
    """
    global _lecture_caches_runs
    if device is not None and (not isinstance(device, str) or device not in ("cpu", "cuda", "mps")):
        raise ValueError(f"device must be None (the best available), 'cpu', 'cuda' or 'mps', got {device!r}")
    if not isinstance(cache, bool):
        raise ValueError(f"cache must be True or False, got {cache!r}")
    from . import pretrained as shipped

    shipped._choose(pretrained)
    _lecture_caches_runs = cache
    chosen = get_device(device)
    from .threads import apply_thread_policy

    threads = apply_thread_policy() if chosen.type == "cpu" else None
    seed = seed_everything(seed)
    quick = is_quick()
    from . import __version__

    mode = f"quick ({QUICK_ENV}=1: small budgets, for tests)" if quick else "full"
    cached = "on" if caching_runs() else "off"
    models = {"load": "the course's trained models", "train": "trained here", "build": "built for shipping"}
    print(f"cs231n-gen {__version__} | device: {chosen} | mode: {mode} | seed: {seed} | "
          f"torch {torch.__version__}, {_threads_line(threads)} | models: {models[shipped.mode()]} | "
          f"cache of trained models: {cached}")
    return chosen, quick


def _threads_line(choice) -> str:
    if choice is None:
        return f"{torch.get_num_threads()} CPU thread(s)"
    how = "measured" if choice.reason.startswith("measured") else choice.reason
    return f"{choice.threads} of {choice.usable} usable CPU thread(s) ({how})"


def median_seconds(fn, repeats: int = 5, warmup: int = 1, device=None, at_least_s: float = 0.0) -> float:
    """The median wall time of ``fn()`` over at least ``repeats`` runs, after ``warmup``
    untimed runs, at the CPU thread count that runs it fastest on this machine now.

    Runs under ``torch.no_grad()``. On CUDA (``device``, default: the current
    :func:`get_device`) each run is closed by a synchronisation, so queued kernels count.
    Medians, because a shared machine makes single timings noisy. The loops inside ``fn``
    do not follow the load (:func:`cs231n_gen.threads.held`).

    **Thread count.** A load that started after the lecture chose its count (a browser, a
    second notebook) can make every call at that count 10-100x slower (measured: a 6 ms DiT
    step took 0.7 s with two threads next to two busy processes on a 2-core machine), and a
    cost claim would compare the load's pauses instead of the work. So on a CPU with more
    than one usable thread, the warmup is followed by one timed run at each count of
    :func:`cs231n_gen.threads.timing_counts` (the count there is now and fewer), fewest
    first. If more threads won, they run once more and must win again, else the fewest
    count times: under a load, more threads are now and then as fast as fewer and then
    many times slower, and fewer threads are never far slower (1.2-1.6x idle, on these
    lectures). The winner's runs count among the repeats; the count is put back afterwards.

    **Bundles.** ``at_least_s`` > 0 times short calls in bundles: each timed run makes
    ``k`` calls back to back, ``k`` = the fewest that last ``at_least_s`` at the pace of
    the fastest warmup run, and the time is per call. A 15 ms call timed alone is at the
    mercy of one pause of the machine (a browser drawing a figure, a page fault): a 50 ms
    pause in it reads as 4x the cost; in a bundle of 200 ms it reads as 1.25x, and the
    median of the bundles drops it. Needs ``warmup`` >= 1 (the warmup runs size the bundle).
    """
    check_callable("fn", fn, "a function of no arguments")
    repeats = check_int("repeats", repeats, minimum=1)
    warmup = check_int("warmup", warmup, minimum=0)
    device = check_device("device", device) or get_device()
    at_least_s = check_real("at_least_s", at_least_s, minimum=0.0, maximum=60.0)
    if at_least_s > 0 and warmup == 0:
        raise ValueError(f"warmup must be >= 1 when at_least_s > 0 (the warmup runs size the bundles), "
                         f"got warmup=0 with at_least_s={at_least_s}")

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def timed(calls: int) -> float:
        sync()
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        return (time.perf_counter() - start) / calls

    from .threads import held, timing_counts

    before = torch.get_num_threads()
    with torch.no_grad(), held():  # (no load follower inside what is timed: the count is chosen here)
        try:
            fastest_warmup = min((timed(1) for _ in range(warmup)), default=0.0)
            calls = max(1, math.ceil(at_least_s / fastest_warmup)) if at_least_s > 0 and fastest_warmup > 0 else 1
            counts = timing_counts(device)
            runs = {n: [] for n in counts}
            best = counts[0]
            if len(counts) > 1:
                for n in counts:  # one run at each count, fewest first
                    torch.set_num_threads(n)
                    runs[n].append(timed(calls))
                best = min(counts, key=lambda n: (runs[n][0], n))
                if best != counts[0]:  # more threads won: once more, to tell a lull in a load from no load
                    torch.set_num_threads(best)
                    runs[best].append(timed(calls))
                    if max(runs[best]) >= min(runs[n][0] for n in counts if n != best):
                        best = counts[0]
            torch.set_num_threads(best)
            times = runs[best] + [timed(calls) for _ in range(repeats - len(runs[best]))]
        finally:
            torch.set_num_threads(before)
    return statistics.median(times)


def training_step_seconds(model, loss, repeats: int = 5, device=None, at_least_s: float = 0.0) -> float:
    """The median wall time of one training step's work: gradients zeroed, ``loss(model)``
    (a scalar) computed and back-propagated (no optimizer step), timed by :func:`median_seconds`
    (``at_least_s``: short steps timed in bundles, as there)."""
    check_module("model", model)
    check_callable("loss", loss, "a function of the model returning a scalar loss")

    def step():  # (median_seconds runs fn under no_grad: a training step turns gradients back on)
        model.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss(model).backward()

    return median_seconds(step, repeats=repeats, device=device, at_least_s=at_least_s)


def timing_claims_apply(device=None) -> bool:
    """Whether a lecture's claims about what costs more time hold on ``device`` (default:
    :func:`get_device`) at the lecture's sizes, said in one printed line where they do not.

    On a CPU, time follows the arithmetic: a layer over 16x the positions takes several
    times as long. The lectures' models and batches are far too small to fill a GPU, where
    each kernel costs about its launch, whatever its size: a step over 16x the positions
    can take the same time, and a method with more but smaller kernels (factorised
    attention, a key-value cache) can be the slower one. The lectures time on every device
    and assert their cost claims where they apply (the course's CPU budget is what they
    are about).
    """
    device = check_device("device", device) or get_device()
    if device.type == "cpu":
        return True
    print(f"(on {device.type}, these batches are too small to fill the device: a step costs about its kernel "
          "launches whatever its size, so the timings above do not follow the arithmetic; the cost claims are "
          "asserted on a CPU)")
    return False


def device_of(model) -> torch.device:
    """The device a model (or an oracle holding a ``mixture``) computes on; CPU otherwise."""
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device
        for b in model.buffers():
            return b.device
        mixture = getattr(model, "mixture", None)
        if mixture is not None:
            return mixture.device
    return torch.device("cpu")
