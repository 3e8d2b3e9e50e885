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
the core count, then times three probe training steps (a 2D MLP, a small convolution, a
transformer's MLP) with each candidate thread count (about a second in all). For each
count it takes the worst slowdown against the best count over the three steps
(:func:`_worst_slowdown`), and keeps the fewest threads whose worst slowdown is within 15%
(or the smallest there is): idle, more threads speed up the convolution and cost the MLP
nothing; next to busy programs they cost the MLP 2x, and one thread wins.
``CS231N_GEN_THREADS=n`` skips the measurement and uses ``n``; an ``OMP_NUM_THREADS``
set by the user is an upper bound. :func:`cs231n_gen.start_lecture`
applies the choice once, at the top of every lecture.

A machine's load changes while a lecture runs. :class:`LoadFollower` watches the steps
of every training run (:func:`cs231n_gen.engine.run`) and moves to fewer threads when the
steps slow down sharply, and back when the load has gone, by trying the other count on
the training's own steps. It never changes a run's results: the engine first runs one
step at the new count, undoes it, runs it at the old count and compares every parameter
and optimizer state bit for bit; only a run that computes the same numbers switches, the
others keep their count and say so in their progress bar. With MKL's strict conditional
numerical reproducibility (``MKL_CBWR=AUTO,STRICT``, which ``import cs231n_gen`` sets
unless the user set it) matrix products and attention give the same bits at any thread
count (a 2D MLP and a small DiT were checked); a convolution's weight gradient, a pointwise
convolution and a batch norm's statistics do not (they are summed in per-thread pieces).
The course's models (transformers, CLIP, the VQ-VAE, lecture 05's autoencoder, the DCGAN)
use :mod:`cs231n_gen.nn.layers`; any other run the engine's check finds different computes
at the policy's count.

A loop begins at the count the loop before it left, and checks once, early, that it
computes there what it would at the count :func:`apply_thread_policy` chose; if not, it
starts over at that count. When to look for a load or for its end is the process's
schedule, not each loop's, so a lecture of many short loops pays for a look as rarely as
one long loop would.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import statistics
import time
import weakref
from pathlib import Path

import torch

from ._validate import check_bool, check_callable, check_device, check_int, check_real, check_text

THREADS_ENV = "CS231N_GEN_THREADS"
TOLERANCE = 1.15  # a thread count this close to the best on every probe step counts as the best


@dataclasses.dataclass(frozen=True)
class ThreadChoice:
    """The thread count chosen, the CPUs the process may use, and why (one line)."""

    threads: int
    usable: int
    reason: str


def _cgroup_quota() -> float | None:
    """CPUs allowed by the cgroup quota (v2 ``cpu.max`` or v1 ``cfs_quota_us``), None if unlimited."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
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


def _probe_steps():
    """One training step of each kind the lectures run, as ``{name: step function}``.

    ``mlp``: a 3 x 256 MLP on a batch of 512 2D points (the 2D and digit lectures);
    ``conv``: two 3 x 3 convolutions at 16 channels on 16 x 16 maps, batch 32 (the image
    lectures' autoencoders); ``tokens``: a transformer's MLP at width 64 on 1024 tokens
    (the diffusion transformers and the GPT). Built from a private random stream.
    """
    g = torch.Generator().manual_seed(0)
    nn = torch.nn
    with torch.random.fork_rng(devices=[]):  # the caller's random state stays as it was
        models = {
            "mlp": nn.Sequential(nn.Linear(2, 256), nn.SiLU(), nn.Linear(256, 256), nn.SiLU(),
                                 nn.Linear(256, 256), nn.SiLU(), nn.Linear(256, 2)),
            "conv": nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.SiLU(), nn.Conv2d(16, 16, 3, padding=1)),
            "tokens": nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 64)),
        }
    inputs = {"mlp": torch.randn(512, 2, generator=g), "conv": torch.randn(32, 16, 16, 16, generator=g),
              "tokens": torch.randn(1024, 64, generator=g)}

    def step_of(name):
        model, x = models[name], inputs[name]
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)

        def step():
            loss = model(x).square().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step
    return {name: step_of(name) for name in models}


def _step_seconds(candidates, rounds: int = 4, block: int = 3) -> dict:
    """Mean seconds of each probe step (:func:`_probe_steps`) at each thread count:
    ``{threads: {step name: seconds}}``.

    Each measurement is ``block`` steps in a row, as in training: next to busy programs,
    a single step with two threads can look as fast as with one, while steps in a row
    run 10-30x slower (measured on a 2-core machine with two busy processes). The counts
    take turns round by round, so that a change in the machine's load affects them alike;
    a count already 2x slower than the best on some step after a round is not timed again
    (under load its steps are the slow ones), which keeps the probe to about a second.
    The mean, not the median: under load the slow blocks come and go, and training pays
    for them all.
    """
    before = torch.get_num_threads()
    steps = _probe_steps()
    times = {n: {name: [] for name in steps} for n in candidates}
    active = list(candidates)
    try:
        for n in candidates:  # first-call costs, untimed
            torch.set_num_threads(n)
            for step in steps.values():
                step()
        for _ in range(rounds):
            for n in active:
                torch.set_num_threads(n)
                for name, step in steps.items():
                    start = time.perf_counter()
                    for _ in range(block):
                        step()
                    times[n][name].append((time.perf_counter() - start) / block)
            means = {n: {name: statistics.fmean(t) for name, t in times[n].items()} for n in active}
            slowdown = _worst_slowdown(means)
            active = [n for n in active if slowdown[n] <= max(2.0, min(slowdown.values()))]
    finally:
        torch.set_num_threads(before)
    return {n: {name: statistics.fmean(t) for name, t in by_step.items()} for n, by_step in times.items()}


def _worst_slowdown(seconds: dict) -> dict:
    """For each thread count, the largest factor by which it is slower than the best count
    on any one probe step: ``max_s seconds[n][s] / min_m seconds[m][s]``.

    Judging by the worst step rather than the total keeps a small model from paying for
    a large one: next to busy programs, two threads may speed up a convolution by 1.2x
    and slow a 2D MLP down by 2x (the threads wait for each other while the scheduler
    runs someone else); the total would hide the 2x, the worst step does not.
    """
    best = {name: min(by_step[name] for by_step in seconds.values()) for name in next(iter(seconds.values()))}
    return {n: max(by_step[name] / best[name] for name in best) for n, by_step in seconds.items()}


def _limits(max_threads: int | None = None) -> tuple[int, int | None]:
    """``(usable, forced)``: the CPUs the policy may use (affinity, cgroup quota, core count,
    ``max_threads`` and a user's ``OMP_NUM_THREADS``), and the count ``CS231N_GEN_THREADS``
    forces (None when unset)."""
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
        return usable, n
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) >= 1:
        usable = min(usable, int(omp))
    return usable, None


def _candidates(usable: int) -> list[int]:
    """The thread counts the policy chooses among: 1, 2 and ``usable``."""
    return sorted({1, usable} | ({2} if usable > 2 else set()))


def choose_threads(max_threads: int | None = None) -> ThreadChoice:
    """The thread count for torch on this machine now (see the module docstring)."""
    usable, forced = _limits(max_threads)
    if forced is not None:
        return ThreadChoice(forced, usable, f"{THREADS_ENV}={forced}")
    if usable == 1:
        return ThreadChoice(1, 1, "one usable CPU")
    seconds = _step_seconds(_candidates(usable))
    slowdown = _worst_slowdown(seconds)
    bar = max(TOLERANCE, min(slowdown.values()))
    threads = min(n for n, s in slowdown.items() if s <= bar)
    timing = "; ".join(f"{n}: " + ", ".join(f"{name} {1e3 * t:.1f}" for name, t in by_step.items())
                       for n, by_step in seconds.items())
    return ThreadChoice(threads, usable, f"measured ms per step ({timing})")


def timing_counts(device=None) -> list[int]:
    """The thread counts a timing compares before it times (:func:`cs231n_gen.runtime.median_seconds`):
    the count there is now and the policy's smaller candidates (:func:`_candidates`), fewest
    first. Never more threads than now: a loop left fewer because of a load, and under a
    load one run with more threads can take 20x as long (a loop's follower abandons such a
    try after one slow step; a timed call cannot be cut short). Only the count there is now
    on CUDA, with one usable CPU, or where ``CS231N_GEN_THREADS`` forces one."""
    device = check_device("device", device)
    now = torch.get_num_threads()
    if device is not None and device.type != "cpu":
        return [now]
    usable, forced = _limits()
    if forced is not None or usable < 2:
        return [now]
    return sorted({n for n in _candidates(usable) if n < now} | {now})


def _quiet_numpy_blas() -> None:
    """One thread for numpy's own BLAS (OpenBLAS, apart from torch's). The library's numpy
    work is small (optimal-transport costs, scikit-learn's datasets), and OpenBLAS's idle
    workers spin after each call: next to POT's single-threaded solver they halved its
    speed (W2 between 2000-point sets: 1.9 s for three with two OpenBLAS threads, 0.9 s
    with one, idle 2-core machine)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # (scikit-learn brings it; without it numpy keeps its default)
        return
    ThreadpoolController().select(internal_api="openblas").limit(limits=1)


def apply_thread_policy(max_threads: int | None = None) -> ThreadChoice:
    """Choose the thread count and give it to torch (numpy's own BLAS gets one); return the choice."""
    global _policy_threads
    choice = choose_threads(max_threads)
    torch.set_num_threads(choice.threads)
    _policy_threads = choice.threads
    _quiet_numpy_blas()
    return choice


_NOTES: list[str] = []
_policy_threads: int | None = None  # the count apply_thread_policy chose: where every loop's results are computed


def switches() -> list[str]:
    """What the load followers of this process did, oldest first, in the words their
    progress bars showed (``"1 (was 2: load)"``, ``"2 kept (...)"``)."""
    return list(_NOTES)


class _Schedule:
    """When this process's loops may next look for a load on no evidence (a loop's first
    look) and last tried another count, shared by the loops one after another: a lecture of
    many short loops (a sampler called per noise set) neither looks for a load at the start
    of every loop nor rechecks a gone load more often than one long loop would. A try on
    evidence (steps 1.6x slower) waits only for the loop's own back-off."""

    def __init__(self, now: float):
        self.last_try = self.next_look = check_real("now", now)
        self.look_gap_s = LoadFollower.MIN_GAP_S
        self.recheck_s = LoadFollower.RECHECK_S


_shared_schedule: _Schedule | None = None


class LoadFollower:
    """Follows the machine's load while a long loop runs, by the time its own steps take.

    The count :func:`apply_thread_policy` chose fits the machine as it was when the lecture
    started. When another program starts later (a video call, a second notebook), threads
    that were free become contended, and a step with more threads than free cores can run
    4-50x slower (the threads wait for each other while the scheduler runs someone else).

    The loop reports each step's wall time (:meth:`step_done`). Over windows of at least
    ``WINDOW_S`` seconds and ``WINDOW_STEPS`` steps (or two steps, once a window has lasted
    ``WINDOW_MAX_S``: a step that a load slowed 20x does not hold a window for half a minute)
    the follower takes the median step time (the first window after a start or a switch lets
    the machine settle), and it remembers the fastest window at each count: the speed with the
    machine to itself.

    - A loop begins at the count the last loop left (:meth:`begin`). After its first two
      settled windows at the top count, it *tries* the next smaller count
      (:func:`_candidates`): the load may have come after the policy's choice but before
      this loop, and the loop has no idle speed of its own to compare with (idle, this
      costs two windows at a count about 1.25x slower).
    - Two windows in a row ``CHANGE`` times slower than that mean the load arrived: it
      tries the next smaller count.
    - Below the largest count it tries the next larger one every ``RECHECK_S`` seconds
      (the load may have left; one thread speeds up too little when it leaves to tell).
    - A try lasts two windows and is kept when they are ``BETTER`` times faster than the
      two before it, and, for a try of more threads, no more than ``CHANGE`` times slower
      than the fastest window at that count (the load is gone only if the speed it took away
      is back: under a load, more threads are now and then as fast as fewer, and then 20x
      slower). A single step ``GIVE_UP`` times slower than the two windows before the try
      ends it at once. Otherwise the loop goes back, and the next try in that direction
      waits twice as long (slower: from ``MIN_GAP_S`` up to ``MAX_GAP_S``; recheck: up to
      ``RECHECK_MAX_S``). The loop keeps training through a try; a loop that ends first
      judges it on the steps it ran (:meth:`finish`). The first look's and the
      recheck's waits are the process's (:class:`_Schedule`), not the loop's: the next
      loop goes on with them.

    The measurement is the training's own steps, not the policy's probe: the probe's
    steps are milliseconds long, a few of them in a row fit in the scheduler's time
    slices, and right when a load starts a short probe can find two threads as fast as
    one while the training's steps run 3x slower.

    A new count is only *proposed* (:attr:`proposal`): the loop moves with :meth:`switch`
    once it knows the move leaves its results alone (:attr:`invariant`, see
    :func:`cs231n_gen.engine.run`), or stays with :meth:`keep`. A loop begun below the
    policy's count checks once, early, that it computes the policy's numbers
    (:attr:`check_against`, :meth:`judge`), and otherwise starts over at the policy's count.
    :attr:`note` says what happened, in a few words for a progress bar's postfix.
    """

    WINDOW_S = 0.3
    WINDOW_STEPS = 5
    WINDOW_MAX_S = 2.0
    CHANGE = 1.6
    BETTER = 1.1
    GIVE_UP = 5.0
    MIN_EVIDENCE = 3
    MIN_GAP_S = 3.0
    MAX_GAP_S = 60.0
    RECHECK_S = 20.0
    RECHECK_MAX_S = 160.0

    def __init__(self, usable: int, clock=time.perf_counter, schedule: "_Schedule | None" = None):
        self.usable = check_int("usable", usable, minimum=2)
        self.counts = _candidates(self.usable)
        self.clock = clock
        if schedule is not None and not isinstance(schedule, _Schedule):
            raise ValueError(f"schedule must be a threads._Schedule or None, got {type(schedule).__name__}")
        self.schedule = schedule if schedule is not None else _Schedule(clock())
        self.next_try_down = clock()
        self.gap_s = self.MIN_GAP_S
        self.window: list[float] = []
        self.since_switch: list[float] = []  # the step times of a try, since its switch
        self.window_start = None
        self.settled = False
        self.recent: list[float] = []  # the window medians at the current count, oldest first
        self.fastest: dict[int, float] = {}  # the fastest window at each count
        self.trying = None  # (the count a try came from, its two windows' mean)
        self.looked = False  # the first two settled windows: one try of the next smaller count
        self.proposal = None
        self.check_against = None  # the policy's count, while a loop begun at another one has not yet checked
        self.invariant = None  # does the loop compute the same numbers at every count? (the loop finds out)
        self.fixed = None
        self.note = None

    @classmethod
    def for_this_process(cls, device=None) -> "LoadFollower | None":
        """A follower for a loop on ``device``, or None where there is nothing to follow:
        CUDA, one usable CPU, a count forced with ``CS231N_GEN_THREADS``, or inside :func:`held`."""
        if _held or (device is not None and torch.device(device).type != "cpu"):
            return None
        usable, forced = _limits()
        if forced is not None or usable < 2:
            return None
        global _shared_schedule
        if _shared_schedule is None:
            _shared_schedule = _Schedule(time.perf_counter())
        follower = cls(usable, schedule=_shared_schedule)
        follower.begin()
        return follower

    def begin(self) -> None:
        """Begin the loop at the count the last loop left (the load it found). Where that is
        not the policy's count, the loop's results must still be the policy's: the loop
        checks once, early, that a step (or call) comes out the very same at the policy's
        count (:attr:`check_against`), and if not it goes back and computes everything there
        (:meth:`judge`)."""
        policy = _policy_threads if _policy_threads is not None else torch.get_num_threads()
        if torch.get_num_threads() != policy:
            self.check_against, self.looked = policy, True

    @property
    def trial_threads(self) -> int | None:
        """The count a trial step (or call) should run at now, or None: the policy's while the
        start check is pending, else a proposed count whose effect on the results is unknown."""
        if self.check_against is not None:
            return self.check_against
        if self.proposal is not None and self.invariant is None:
            return self.proposal
        return None

    def judge(self, same: bool, what: str = "this loop") -> bool:
        """The verdict of a trial at :attr:`trial_threads`: ``same`` when it gave the very same
        numbers as the current count. The start check passes (stay) or fails: back to the
        policy's count, kept there, and the caller redoes the work done at the other count
        (returns False). A proposal moves when ``same``, else the loop keeps its count."""
        same, what = check_bool("same", same), check_text("what", what)
        self.invariant = same
        if self.check_against is not None:
            policy, self.check_against = self.check_against, None
            if not same:
                torch.set_num_threads(policy)
                self.keep(f"{what}'s results depend on the count")
            return same
        if same:
            self.switch()
        else:
            self.keep(f"{what}'s results depend on the count")
        return same

    @property
    def threads(self) -> int:
        return torch.get_num_threads()

    def step_done(self, seconds: float) -> None:
        """Take one step's wall time; may set :attr:`proposal` (a thread count to move to)."""
        seconds = check_real("seconds", seconds, minimum=0.0)
        now = self.clock()
        if self.window_start is None:
            self.window_start = now
        if self.check_against is not None:  # no proposals before the start check
            return
        self.window.append(seconds)
        if self.trying is not None:
            self.since_switch.append(seconds)
            if self.threads != self.trying[0] and seconds > self.GIVE_UP * self.trying[1]:
                self._judge_try(self.threads, seconds, now)  # (far slower: no need to wait for two windows)
                return
        lasted = now - self.window_start
        if lasted < self.WINDOW_S or len(self.window) < (self.WINDOW_STEPS if lasted < self.WINDOW_MAX_S else 2):
            return
        typical = statistics.median(self.window)
        self.window, self.window_start = [], None
        if not self.settled:
            self.settled = True
            return
        n = self.threads
        self.fastest[n] = min(self.fastest.get(n, math.inf), typical)
        self.recent = [*self.recent[-1:], typical]
        if len(self.recent) < 2 or self.fixed is not None or n not in self.counts:
            return
        pair = statistics.fmean(self.recent)
        if self.trying is not None:
            self._judge_try(n, pair, now)
            return
        at, plan = self.counts.index(n), self.schedule
        first_look = not self.looked  # (the load may have come before this run started)
        self.looked = True
        looking = first_look and n == self.usable and now >= plan.next_look
        if at > 0 and (looking or (now >= self.next_try_down and min(self.recent) > self.CHANGE * self.fastest[n])):
            self.trying, self.proposal = (n, pair, looking), self.counts[at - 1]
            if looking:  # the process's next look on no evidence waits, longer each time it does not pay
                plan.next_look = now + plan.look_gap_s
                plan.look_gap_s = min(2 * plan.look_gap_s, self.MAX_GAP_S)
        elif at < len(self.counts) - 1 and now - plan.last_try > plan.recheck_s:
            self.trying, self.proposal = (n, pair, False), self.counts[at + 1]
        else:
            return
        plan.last_try = now

    def _judge_try(self, n: int, pair: float, now: float) -> None:
        came_from, before, looking = self.trying
        self.trying, plan = None, self.schedule
        went_down = n < came_from
        recovered = went_down or n not in self.fastest or pair <= self.CHANGE * self.fastest[n]
        if pair * self.BETTER < before and recovered:  # faster (and, going up, about as fast as it was idle): stay
            self.note = f"{n} (was {came_from}: {'load' if went_down else 'load gone'})"
            _NOTES.append(self.note)
            self.gap_s, plan.look_gap_s, plan.recheck_s = self.MIN_GAP_S, self.MIN_GAP_S, self.RECHECK_S
        else:  # no faster: go back, and wait longer before the next try this way
            self.proposal = came_from
            if went_down:
                if not looking:  # (a look on no evidence backed off when it began)
                    self.next_try_down = now + self.gap_s
                    self.gap_s = min(2 * self.gap_s, self.MAX_GAP_S)
            else:
                plan.recheck_s = min(2 * plan.recheck_s, self.RECHECK_MAX_S)
        plan.last_try = now

    def switch(self) -> None:
        """Move to the proposed count."""
        if self.proposal is None:
            raise ValueError("switch() needs a proposal: step_done proposes a count when the steps call for one")
        torch.set_num_threads(self.proposal)
        self.proposal, self.settled, self.recent, self.window, self.window_start = None, False, [], [], None
        self.since_switch = []

    def finish(self) -> None:
        """The loop ended. A try still running is judged on the steps it ran (their median
        against the two windows before it), so that the next loop begins at what this one
        found; with fewer than ``MIN_EVIDENCE`` steps at the new count it goes back to the
        count it came from (the code after the loop runs at a count measured, not a guess)."""
        if self.trying is not None and self.threads != self.trying[0]:
            if len(self.since_switch) >= self.MIN_EVIDENCE:
                self._judge_try(self.threads, statistics.median(self.since_switch), self.clock())
                if self.proposal is not None:  # no faster: back
                    torch.set_num_threads(self.proposal)
            else:
                torch.set_num_threads(self.trying[0])
        self.trying = self.proposal = None

    def keep(self, reason: str) -> None:
        """Stay at the current count for the rest of the loop, for ``reason``."""
        if not check_text("reason", reason).strip():
            raise ValueError("reason must say why the count stays, got an empty string")
        self.proposal, self.trying, self.check_against, self.fixed = None, None, None, reason
        self.note = f"{self.threads} kept ({reason})"
        _NOTES.append(self.note)


_trial_running = False
_held = 0  # inside threads.held(): no loop follows the load


@contextlib.contextmanager
def held():
    """Inside this block no loop follows the load: code being timed
    (:func:`cs231n_gen.runtime.median_seconds`, which chooses the count itself before it
    times) runs with no trial runs and no switches inside a timed run."""
    global _held
    _held += 1
    try:
        yield
    finally:
        _held -= 1


def trial_running() -> bool:
    """Whether the current call is a load follower's trial run (:class:`FollowedCalls`), which
    the loop's result does not use: a counter of model calls leaves it out."""
    return _trial_running


def _same(a, b) -> bool:
    """Whether two results (tensors, or tuples and lists of them) hold the very same numbers."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


class FollowedCalls:
    """A function called once per step of a long loop (a sampler's model), following the load.

    Each call is timed for a :class:`LoadFollower`. When the follower wants a trial
    (:attr:`LoadFollower.trial_threads`: the policy's count at the first call of a loop begun
    at another count, or a proposed count), that call runs twice, at the current count and at
    the trial's, with the random state put back in between, so the loop consumes the same
    random numbers either way; the result is the policy's (at the start check) or the current
    count's (at a proposal). The loop moves (or stays at the count it began with) only when
    both runs gave the very same numbers: results never depend on the load.

    The verdict is remembered per function and argument shapes (:func:`_verdict_key`), so a
    sweep that calls a sampler many times with the same model checks once.
    A function with side effects sees one extra call per check; :func:`trial_running`
    tells it apart (a :class:`~cs231n_gen.sampling.CountCalls` counter does not count it).
    """

    def __init__(self, fn, follower: LoadFollower):
        check_callable("fn", fn, "a function called once per step of the loop")
        if not isinstance(follower, LoadFollower):
            raise ValueError(f"follower must be a LoadFollower, got {type(follower).__name__}")
        self.fn, self.follower = fn, follower

    def __call__(self, *args, **kwargs):
        f = self.follower
        other = f.trial_threads
        if other is not None:
            key = _verdict_key(torch.get_num_threads(), other, args, kwargs)
            known = _verdicts_of(self.fn).get(key) if key is not None else None
            if known is not None:  # checked before: no trial
                f.judge(known)
            else:
                return self._trial_call(other, key, args, kwargs)
        if f.proposal is not None:
            f.switch()
        began = time.perf_counter()
        out = self.fn(*args, **kwargs)
        f.step_done(time.perf_counter() - began)
        return out

    def _trial_call(self, other: int, key, args, kwargs):
        global _trial_running
        f, current = self.follower, torch.get_num_threads()
        checking = f.check_against is not None  # the trial's count (the policy's) gives the result
        rng = torch.get_rng_state()
        torch.set_num_threads(other)
        _trial_running = not checking
        try:
            at_other = self.fn(*args, **kwargs)
        finally:
            _trial_running = False
            torch.set_num_threads(current)
        rng_after = torch.get_rng_state()
        torch.set_rng_state(rng)
        _trial_running = checking
        try:
            out = self.fn(*args, **kwargs)
        finally:
            _trial_running = False
        same = _same(at_other, out)
        if key is not None:
            _verdicts_of(self.fn)[key] = same
        f.judge(same)
        if checking and not same:  # the policy's result, and the random state it left
            torch.set_rng_state(rng_after)
            return at_other
        return out


_verdicts = weakref.WeakKeyDictionary()  # function -> {_verdict_key: same numbers at both counts}


def _verdicts_of(fn) -> dict:
    try:
        return _verdicts.setdefault(fn, {})
    except TypeError:  # (not weakly referable: nothing remembered)
        return {}


def _verdict_key(a: int, b: int, args, kwargs):
    """What a verdict about a function holds for: the two counts and the shapes and types of the
    arguments (kernels choose how to split work by shape, not by value); None when an
    argument is neither a tensor nor a plain number, string or None."""
    def shape(v):
        if isinstance(v, torch.Tensor):
            return ("tensor", tuple(v.shape), str(v.dtype), v.device.type)
        if v is None or isinstance(v, (bool, int, float, str)):
            return (type(v).__name__,)
        raise TypeError
    try:
        return (min(a, b), max(a, b), tuple(shape(v) for v in args),
                tuple(sorted((k, shape(v)) for k, v in kwargs.items())))
    except TypeError:
        return None


class following:  # noqa: N801 (used as a context manager, like torch.no_grad)
    """``with following(model, device) as model:`` the loop's calls of ``model`` follow the load
    (:class:`FollowedCalls`); on CUDA, with one usable CPU or a forced count, ``model`` itself.
    On leaving, a try still running goes back to the count it came from."""

    def __init__(self, fn, device=None):
        check_callable("fn", fn, "a function called once per step of the loop")
        self.follower = LoadFollower.for_this_process(check_device("device", device))
        self.fn = fn if self.follower is None else FollowedCalls(fn, self.follower)

    def __enter__(self):
        return self.fn

    def __exit__(self, *exc):
        if self.follower is not None:
            self.follower.finish()
        return False
