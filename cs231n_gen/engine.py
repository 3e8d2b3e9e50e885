"""The one training engine: a step function, driven with all the plumbing around it.

Every trainer in the library (:func:`~cs231n_gen.train.fit`,
:func:`~cs231n_gen.gan.train_gan`) is a *step function* ``step(i)`` that takes
optimisation step i and returns a row of metrics to record (or None), plus the state it
trains (:class:`Trainable`). :func:`run` owns the rest:

- **resume** from a checkpoint, refused with a :class:`CheckpointError` when the file is
  unreadable, damaged, holds non-finite numbers, or was written with other settings
  (every setting, the model's parameter shapes and the loss function included);
- a **progress bar**;
- metrics **buffered on the device** and brought to the host every ``log_every`` steps
  (one sync), where a non-finite value stops training with a
  :class:`TrainingDivergedError` that names the step;
- **checkpoints** every ``checkpoint_every`` steps and at the end, written atomically
  with a checksum (:mod:`cs231n_gen._io`), and never with non-finite parameters: a
  diverged run leaves the last good checkpoint in place;
- the **random state**: the trainer's generators and torch's global CPU and CUDA
  generators (which Dropout draws from), so a resumed run ends with exactly the
  parameters of an uninterrupted one;
- **timing** (:class:`RunStats`).
"""
from __future__ import annotations

import copy
import hashlib
import math
import os
import time
import types
from dataclasses import dataclass
from typing import ClassVar
from pathlib import Path

import torch

from . import _io, cache, threads
from ._validate import check_bool, check_device, check_int, check_module, check_seed, check_text
from .fingerprint import NotFingerprintable, code_digest, code_version, fingerprint
from . import pretrained
from .runtime import caching_runs, get_device


class TrainingDivergedError(RuntimeError):
    """A loss or a parameter became NaN or infinite during training."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from; the message names the file and the way out."""


@dataclass(frozen=True)
class Loop:
    """How the engine drives a trainer (validated once, here).

    Args:
        steps: total optimisation steps, including any already in a resumed checkpoint.
        log_every: steps between host syncs (metrics, NaN check, progress bar).
        checkpoint: a file path, or None for no checkpoints.
        checkpoint_every: save every this many steps (and always at the end).
        resume: continue from ``checkpoint`` when it exists.
        progress: show a progress bar.
        desc: the progress bar's label.
        cache: reuse a finished run with the same inputs from the cache (and store this
            one there); ignored when ``checkpoint`` is given. None: on in a lecture (after
            :func:`~cs231n_gen.start_lecture`), off otherwise.
        shipped: the name of the course's trained model this run makes
            (:mod:`cs231n_gen.pretrained`): depending on the mode it trains, loads the
            shipped model after a few exercise steps, or builds it.
    """

    steps: int
    log_every: int = 50
    checkpoint: Path | None = None
    checkpoint_every: int | None = None
    resume: bool = True
    progress: bool = True
    desc: str = "training"
    cache: bool | None = False
    shipped: str | None = None

    def __post_init__(self):
        if self.cache is None:
            object.__setattr__(self, "cache", caching_runs())
        object.__setattr__(self, "steps", check_int("steps", self.steps, minimum=1))
        object.__setattr__(self, "log_every", check_int("log_every", self.log_every, minimum=1))
        if self.checkpoint is not None:
            if not isinstance(self.checkpoint, (str, os.PathLike)) or str(self.checkpoint) == "":
                raise ValueError(f"checkpoint must be a file path (str or Path) or None, got {self.checkpoint!r}")
            object.__setattr__(self, "checkpoint", Path(self.checkpoint))
            if self.checkpoint.is_dir():
                raise ValueError(f"checkpoint must be a file path, got the folder {str(self.checkpoint)!r}")
        if self.checkpoint_every is not None:
            object.__setattr__(self, "checkpoint_every",
                               check_int("checkpoint_every", self.checkpoint_every, minimum=1))
            if self.checkpoint is None:
                raise ValueError("checkpoint_every was given but checkpoint (a file path) was not")
        for name in ("resume", "progress", "cache"):
            check_bool(name, getattr(self, name))
        check_text("desc", self.desc)
        if self.shipped is not None:
            pretrained._check_name(self.shipped, "shipped")


@dataclass
class Trainable:
    """What a checkpoint holds besides the trainer's own history: named modules,
    optimizers and random generators."""

    modules: dict
    optimizers: dict
    generators: dict


@dataclass
class RunRecord:
    """What every trainer's history holds besides its per-step columns: ``seconds`` and
    ``steps_run`` in this call, and whether the run was ``cached`` (loaded from the cache or
    the shipped models: the times are then those of the run that was saved) or is the
    course's ``shipped`` model. A trainer's history subclasses it and lists the columns
    its steps append to in ``COLUMNS`` (saved and restored as plain lists)."""

    seconds: float = 0.0
    steps_run: int = 0
    cached: bool = False
    shipped: bool = False
    COLUMNS: ClassVar[tuple[str, ...]] = ()

    @property
    def steps_per_second(self) -> float:
        return self.steps_run / self.seconds if self.seconds > 0 else float("nan")

    def took(self, stats: "RunStats") -> None:
        """Take :func:`run`'s account of the call."""
        self.steps_run, self.seconds, self.cached, self.shipped = (stats.steps_run, stats.seconds, stats.cached,
                                                                    stats.shipped)

    def columns(self) -> dict:
        """The per-step columns as plain lists (what a checkpoint and the run cache save)."""
        return {name: getattr(self, name) for name in self.COLUMNS}

    def load_columns(self, saved: dict) -> None:
        """Put back columns saved by :meth:`columns`."""
        for name in self.COLUMNS:
            setattr(self, name, list(saved[name]))

    def append_rows(self, steps_done, rows) -> None:
        """The engine's flushed rows, one value per column in ``COLUMNS``' order (the default ``record``)."""
        for name, column in zip(self.COLUMNS, zip(*rows)):
            getattr(self, name).extend(column)


@dataclass
class RunStats:
    """``start``: the step training began at (after a resume); ``steps_run`` in this call; ``seconds``.

    ``cached``: the run was loaded from the cache or from the shipped models
    (``shipped``); ``steps_run`` and ``seconds`` are then those of the run that was saved.
    """

    start: int
    steps_run: int
    seconds: float
    cached: bool = False
    shipped: bool = False


# ------------------------------------------------------------------ settings and their checks
def plain(value):
    """Settings as plain comparable values: tuples and sizes become lists, paths strings."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, torch.Size)):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def model_signature(module: torch.nn.Module) -> dict:
    """The class and every parameter's and buffer's shape: what must match to resume."""
    check_module("module", module)
    shapes = {name: list(t.shape) for name, t in module.state_dict().items() if isinstance(t, torch.Tensor)}
    return {"class": type(module).__qualname__, "shapes": shapes}


def callable_signature(fn) -> str:
    """A name for a function that changes when its code does (module, name and a digest of
    its source, :func:`cs231n_gen.fingerprint.code_digest`: the same under every Python version).

    Two lambdas differ when their statements differ; a function's closure values are not part of it.
    """
    inner = getattr(fn, "func", None)  # functools.partial
    if inner is not None and callable(inner):
        extra = {k: v for k, v in getattr(fn, "keywords", {}).items() if isinstance(v, (int, float, str, bool))}
        return f"partial({callable_signature(inner)}, {sorted(extra.items())})"
    name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"
    if not isinstance(getattr(fn, "__code__", None), types.CodeType):
        return name
    h = hashlib.sha256()
    code_digest(fn, h)
    return f"{name}#{h.hexdigest()[:12]}"


def _differences(saved: dict, current: dict) -> list[str]:
    keys = sorted(set(saved) | set(current))
    out = []
    for k in keys:
        a, b = saved.get(k, "<missing>"), current.get(k, "<missing>")
        if a != b:
            a_s, b_s = repr(a), repr(b)
            out.append(f"{k}: {a_s[:120]} in the file, {b_s[:120]} now")
    return out


def _all_finite(tensors) -> bool:
    flags = [torch.isfinite(t).all() for t in tensors if t.is_floating_point() or t.is_complex()]
    return bool(torch.stack(flags).all()) if flags else True


def _state_tensors(state: Trainable):
    for m in state.modules.values():
        yield from m.parameters()
        yield from m.buffers()
    for opt in state.optimizers.values():
        for per_param in opt.state.values():
            yield from (v for v in per_param.values() if isinstance(v, torch.Tensor))


def _global_rng() -> dict:
    out = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def _set_global_rng(saved: dict) -> None:
    torch.set_rng_state(saved["cpu"])
    cuda = saved.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _device_of(state: Trainable) -> torch.device:
    for m in state.modules.values():
        for t in m.parameters():
            return t.device
    return torch.device("cpu")


def _snapshot(state: Trainable, history_state) -> dict:
    """Copies of everything a resume restores (modules, optimizers, generators, global
    random state, history), to undo steps with :func:`_put_back`."""
    return {"modules": {k: copy.deepcopy(m.state_dict()) for k, m in state.modules.items()},
            "optimizers": {k: copy.deepcopy(o.state_dict()) for k, o in state.optimizers.items()},
            "generators": {k: g.get_state() for k, g in state.generators.items()},
            "global_rng": _global_rng(),
            "history": copy.deepcopy(history_state[0]()) if history_state is not None else None}


def _put_back(state: Trainable, snapshot: dict, history_state) -> None:
    _restore(state, snapshot, Path("(the state before a trial step)"))
    if history_state is not None:
        history_state[1](copy.deepcopy(snapshot["history"]))


def _trial_step(step, i: int, threads_to_try: int, state: Trainable, history_state) -> list[torch.Tensor]:
    """Step i run with ``threads_to_try`` threads, then undone: the state tensors it left.

    The load follower (:class:`cs231n_gen.threads.LoadFollower`) moves a run to another
    thread count only if that count computes the same numbers: some kernels split their
    sums by thread (a convolution's weight gradient sums over the batch), and a run that
    changed its count midway would then end with other parameters than one that did not.
    The caller runs step i again at the current count and compares.
    """
    saved = _snapshot(state, history_state)
    before = torch.get_num_threads()
    torch.set_num_threads(threads_to_try)
    try:
        step(i)
    finally:
        torch.set_num_threads(before)
    after = [t.detach().clone() for t in _state_tensors(state)]
    _put_back(state, saved, history_state)
    return after


# ---------------------------------------------------------------------------- checkpoints
_WAY_OUT = ("pass resume=False to start over (the file is overwritten at the first save), "
            "delete the file, or choose another checkpoint path")


def _read_checkpoint(path: Path, kind: str, settings: dict) -> dict:
    try:
        state = _io.load(path)
    except _io.UnusableFileError as err:
        raise CheckpointError(f"cannot resume from checkpoint {path}: {err}. To go on, {_WAY_OUT}.") from None
    if not isinstance(state, dict) or state.get("kind") != kind:
        found = state.get("kind") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"checkpoint {path} was written by a {found!r} trainer, not {kind!r}. "
                              f"To go on, {_WAY_OUT}.")
    if state.get("settings") != settings:
        diff = _differences(state.get("settings") or {}, settings)
        raise CheckpointError(f"checkpoint {path} was written with other settings ({'; '.join(diff)}). "
                              f"Resuming would mix two runs; {_WAY_OUT}.")
    return state


def _restore(state: Trainable, saved: dict, path: Path, optimizers: bool = True) -> None:
    try:
        for name, m in state.modules.items():
            m.load_state_dict(saved["modules"][name])
        for name, opt in state.optimizers.items() if optimizers else ():
            opt.load_state_dict(saved["optimizers"][name])
        for name, g in state.generators.items():
            g.set_state(saved["generators"][name].cpu())
        _set_global_rng(saved["global_rng"])
    except (KeyError, RuntimeError, TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} does not fit this run ({type(err).__name__}: "
                              f"{str(err).splitlines()[0][:200]}). To go on, {_WAY_OUT}.") from None
    if not _all_finite(_state_tensors(state)):
        raise CheckpointError(f"checkpoint {path} holds NaN or infinite parameters (a diverged run). "
                              f"To go on, {_WAY_OUT}.")


# ------------------------------------------------------------------------- the run cache
def cache_inputs(state: Trainable, device, summaries: bool = False, **parts) -> dict | None:
    """Fingerprints of what a run starts from: the modules' initial state, the trainer's
    and torch's global random state (CPU and CUDA apart), the device, and ``parts``
    (data, loss function...). None (with one printed line) when one of them cannot be
    fingerprinted. With ``summaries`` (a shipped run) also the statistics of the parts that
    are tensors, which a shipped model's data are compared by when only their bytes differ."""
    rng = _global_rng()
    try:
        return {"device": torch.device(device).type, "modules": fingerprint(state.modules),
                "generators": fingerprint({k: g.get_state() for k, g in state.generators.items()}),
                "global_rng": fingerprint(rng["cpu"]),
                **({"cuda_rng": fingerprint(rng["cuda"])} if "cuda" in rng else {}),
                **{k: fingerprint(v) for k, v in parts.items()},
                **({"summaries": _summaries(parts)} if summaries else {})}
    except NotFingerprintable as err:
        print(f"cs231n_gen: this run is not cached: {err}")
        return None


def _summaries(parts: dict) -> dict:
    """The statistics (:func:`cs231n_gen.pretrained._data_summary`) of the parts that are tensors."""
    found = {k: pretrained._data_summary(v) for k, v in parts.items()}
    return {k: summary for k, summary in found.items() if summary is not None}


def _cache_problem(saved, kind: str, settings: dict, state: Trainable) -> str | None:
    """Why a cached run cannot be used for this one (None: it can)."""
    if not isinstance(saved, dict) or saved.get("kind") != kind or saved.get("settings") != settings:
        return "was written by another trainer or with other settings"
    for key in ("modules", "generators", "global_rng", "history", "stats"):
        if key not in saved:
            return f"lacks its {key!r}"
    for name, module in state.modules.items():
        stored = saved["modules"].get(name)
        current = module.state_dict()
        if not isinstance(stored, dict) or set(stored) != set(current):
            return f"does not hold the tensors of {name!r}"
        for key, value in current.items():
            if not isinstance(stored[key], torch.Tensor) or stored[key].shape != value.shape:
                return f"holds {name}.{key} with another shape"
        if not _all_finite(stored.values()):
            return f"holds NaN or infinite values in {name!r}"
    if set(saved["generators"]) != set(state.generators):
        return "holds other random generators"
    return None


# ------------------------------------------------------------------------------ the loop
def prepare(device, seed: int) -> tuple[torch.device, torch.Generator]:
    """A trainer's device (``device``, else :func:`~cs231n_gen.runtime.get_device`) and its
    random stream there, seeded by ``seed`` (batches, noise and times all draw from it)."""
    device = check_device("device", device) or get_device()
    seed = check_seed("seed", seed)
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return device, generator


def train_steps(step, *, loop: Loop, kind: str, settings: dict, history: RunRecord, modules: dict, optimizers: dict,
                generators: dict, device, describe, fingerprinted: dict, record=None, history_state=None,
                on_start=None, postfix=None) -> RunRecord:
    """A trainer's frame around its step function: the modules in training mode, the run's
    fingerprints (for the cache and the shipped models), :func:`run`, the call's account in
    ``history``, and the modules back in evaluation mode whatever happens.

    ``modules``, ``optimizers``, ``generators``: what the checkpoint holds (by name).
    ``fingerprinted``: the run's other inputs by name (data, loss function) for
    :func:`cache_inputs`. ``record`` defaults to ``history.append_rows`` and
    ``history_state`` to its columns; the rest is as for :func:`run`.
    """
    state = Trainable(modules, optimizers, generators)
    for module in modules.values():
        module.train()
    try:
        inputs = (cache_inputs(state, device, summaries=loop.shipped is not None, **fingerprinted)
                  if loop.cache or loop.shipped else None)
        stats = run(step, state, loop, kind=kind, settings=settings, record=record or history.append_rows,
                    describe=describe, inputs=inputs, on_start=on_start, postfix=postfix,
                    history_state=history_state or (history.columns, history.load_columns))
        history.took(stats)
    finally:
        for module in modules.values():
            module.eval()
    return history


def run(step, state: Trainable, loop: Loop, *, kind: str, settings: dict, record, describe,
        history_state=None, on_start=None, postfix=None, inputs: dict | None = None) -> RunStats:
    """Drive ``step`` from the first unfinished step to ``loop.steps``.

    Args:
        step: ``step(i)`` takes optimisation step i (0-based) and returns a 1-D tensor
            of metrics to record for step i + 1, or None. Rows stay on the device
            until the next flush; every value in them must be finite.
        state: the modules, optimizers and generators the checkpoint holds.
        loop: a :class:`Loop`.
        kind, settings: the trainer's name and its settings (plain values, see
            :func:`plain`); a checkpoint resumes only under the same ones.
        record: ``record(steps, rows)`` receives the flushed rows (host lists) and the
            step numbers they belong to.
        describe: ``describe(step, row)`` words the error for the first non-finite row.
        history_state: ``(get, set)``: the trainer's history as plain values for the
            checkpoint, and how to put it back.
        on_start: ``on_start(start)`` runs after any resume, before the first step.
        postfix: ``postfix(rows) -> dict`` for the progress bar.
        inputs: :func:`cache_inputs` of this run. With ``loop.cache`` (and no
            checkpoint), a finished run with the same kind, settings, inputs and library
            code (:func:`~cs231n_gen.fingerprint.code_version`) is loaded from the cache
            instead of trained: modules, random state and history, as if it had just run.
            With ``loop.shipped`` the inputs are required: they make the recipe
            (:func:`cs231n_gen.pretrained._recipe`) the shipped model is checked against.
    """
    settings = plain(settings)
    path = loop.checkpoint
    start = 0
    stop = loop.steps
    saved_at = None
    cache_key = None
    shipped = _Shipped(loop, kind, settings, inputs) if loop.shipped is not None else None
    if shipped is not None and shipped.payload is not None:
        path, stop = None, shipped.exercise_steps
    if loop.cache and path is None and inputs is not None and (shipped is None or shipped.mode in ("train", "reuse")):
        cache_key = (f"run_{kind}", {"kind": kind, "settings": settings, "inputs": inputs, "code": code_version()})
        cached = cache.load(*cache_key, verify=lambda saved: _cache_problem(saved, kind, settings, state))
        if cached is not None:
            _restore(state, cached, cache.cache_path(*cache_key), optimizers=False)
            if history_state is not None:
                history_state[1](cached["history"])
            stats = cached["stats"]
            if loop.progress and shipped is not None and shipped.mode == "reuse":
                print(f"{loop.desc}: {shipped.reused_from} trains this model; loaded your run of it from the cache "
                      f"({loop.steps} steps, trained in {stats['seconds']:.1f} s)")
            elif loop.progress:
                print(f"{loop.desc}: {loop.steps} steps loaded from the cache (trained earlier in "
                      f"{stats['seconds']:.1f} s; pass cache=False to train again)")
            return RunStats(start=loop.steps, steps_run=int(stats["steps_run"]), seconds=float(stats["seconds"]),
                            cached=True)
    if shipped is not None and shipped.mode == "reuse":  # not in the cache: the course's copy
        shipped.fetch()
        path, stop = None, 0
    if shipped is not None:
        shipped.announce(loop)
    if path is not None and loop.resume and path.exists() and stop == loop.steps:
        saved = _read_checkpoint(path, kind, settings)
        _restore(state, saved, path)
        if history_state is not None:
            history_state[1](saved["history"])
        start = saved_at = int(saved["step"])
    if on_start is not None:
        on_start(start)

    def save(done):
        nonlocal saved_at
        if not _all_finite(_state_tensors(state)):
            kept = f"the checkpoint from step {saved_at} is kept" if saved_at is not None else "nothing was saved"
            raise TrainingDivergedError(
                f"the parameters became NaN or infinite by step {done}, so checkpoint {path} was not written "
                f"({kept}). Things to try: a smaller lr or grad_clip=1.0, then resume=False to start over.")
        _io.save(payload(done), path)
        saved_at = done

    def payload(done, optimizers=True):
        return {"kind": kind, "settings": settings, "step": done,
                "modules": {k: m.state_dict() for k, m in state.modules.items()},
                "optimizers": {k: o.state_dict() for k, o in state.optimizers.items()} if optimizers else {},
                "generators": {k: g.get_state() for k, g in state.generators.items()},
                "global_rng": _global_rng(),
                "history": history_state[0]() if history_state is not None else None}

    bar = None
    if loop.progress and start < stop:
        from tqdm.auto import tqdm

        desc = loop.desc if stop == loop.steps else f"{loop.desc} ({stop} steps to exercise the loop)"
        bar = tqdm(total=stop, initial=start, desc=desc, mininterval=0.5, leave=True)

    pending: list[tuple[int, torch.Tensor]] = []
    follower = threads.LoadFollower.for_this_process(_device_of(state)) if start < stop else None

    def way_out():
        if saved_at is None:
            return ""
        return (f" Checkpoint {path} still holds step {saved_at}; resuming would repeat this run, so pass "
                "resume=False with the new settings.")

    def flush():
        """Bring the buffered rows to the host; stop at the first non-finite value."""
        if not pending:
            return
        steps = [s for s, _ in pending]
        rows = torch.stack([r for _, r in pending]).detach().float().cpu().tolist()
        pending.clear()
        for s, row in zip(steps, rows):
            if not all(math.isfinite(v) for v in row):
                raise TrainingDivergedError(describe(s, row) + way_out())
        record(steps, rows)
        if bar is not None:
            bar.update(steps[-1] - bar.n)
            shown = dict(postfix(rows)) if postfix is not None else {}
            if follower is not None and follower.note is not None:
                shown["threads"] = follower.note
            if shown:
                bar.set_postfix(shown, refresh=False)

    # A loop begun below the policy's count (an earlier loop found a load) computes the policy's
    # numbers only if its steps come out the same at both counts: it checks at its second step
    # (the first can be unlike the others, such as a GAN's discriminator warm-up) unless a
    # checkpoint is saved before that, and if not, it starts over from here at the policy's count.
    begun = None
    check_at = None
    if follower is not None and follower.check_against is not None:
        begun = _snapshot(state, history_state)
        save_first = loop.checkpoint_every is not None and (start + 1) % loop.checkpoint_every == 0
        check_at = start + 1 if stop - start >= 2 and not save_first else start
    steps_run = 0
    t0 = time.perf_counter()
    try:
        i = start
        while i < stop:
            began = time.perf_counter()
            try:
                trial = None
                if follower is not None and follower.trial_threads is not None and (
                        follower.check_against is None or i == check_at):
                    trial = _trial_step(step, i, follower.trial_threads, state, history_state)
                elif follower is not None and follower.proposal is not None:
                    follower.switch()
                row = step(i)
            except TrainingDivergedError as err:
                raise TrainingDivergedError(f"at step {i}: {err}{way_out()}") from None
            if trial is not None:  # the other count must compute the very same step
                same = all(torch.equal(a, b) for a, b in zip(trial, _state_tensors(state), strict=True))
                if not follower.judge(same, "this run") and begun is not None:  # start over at the policy's count
                    _put_back(state, begun, history_state)
                    pending.clear()
                    i, steps_run, begun = start, 0, None
                    if bar is not None:
                        bar.n = start
                        bar.refresh()
                    continue
                begun = None
            elif follower is not None:
                follower.step_done(time.perf_counter() - began)
            done = i + 1
            steps_run += 1
            i += 1
            if row is not None:
                pending.append((done, row.detach().reshape(-1)))
            if done % loop.log_every == 0 or done == stop:
                flush()
            if loop.checkpoint_every is not None and done % loop.checkpoint_every == 0:
                flush()
                save(done)
        flush()
        if path is not None and steps_run:
            save(loop.steps)
    finally:
        seconds = time.perf_counter() - t0
        if follower is not None:
            follower.finish()
        if bar is not None:
            bar.close()
    if shipped is not None and shipped.payload is not None:
        return shipped.install(state, history_state, loop)
    result = {**payload(loop.steps, optimizers=False), "stats": {"steps_run": steps_run, "seconds": seconds}}
    if cache_key is not None and _all_finite(_state_tensors(state)):
        cache.store(*cache_key, result)
    if shipped is not None and shipped.mode == "build":
        shipped.write(result, state)
    return RunStats(start=start, steps_run=steps_run, seconds=seconds)


class _Shipped:
    """A run with ``shipped=name``: what the mode makes of it (see :mod:`cs231n_gen.pretrained`)."""

    def __init__(self, loop: Loop, kind: str, settings: dict, inputs: dict | None):
        self.name = loop.shipped
        if inputs is None:
            raise ValueError(f"shipped={self.name!r}: this run's inputs cannot be fingerprinted (see the line "
                             "above), so no shipped model can be checked against them")
        self.recipe = pretrained._recipe(kind, settings, inputs)
        self.summaries, self.device = inputs.get("summaries"), inputs.get("device")
        self.reused_from = pretrained.reused_from()
        self.mode = "reuse" if self.reused_from is not None else pretrained.mode()
        self.payload = self.manifest = None
        self.exercise_steps = 0
        if self.mode == "load" or (self.mode == "build" and pretrained._shared_in_this_build(self.name, self.recipe)):
            self.fetch()
            if self.mode == "load":
                self.exercise_steps = min(pretrained.EXERCISE_STEPS, loop.steps)

    def fetch(self) -> None:
        """Read the shipped model, after checking it was made by this run's recipe."""
        self.payload, self.manifest = pretrained._fetch(self.name, self.recipe, self.summaries, self.device)

    def announce(self, loop: Loop) -> None:
        """In full mode, one line where the model is trained: what it is, and the way to skip it."""
        if self.mode == "train" and loop.progress:
            print(f"{loop.desc}: training from scratch, {loop.steps} steps (start_lecture(pretrained=True) "
                  f"loads the course's trained model {self.name!r} instead)")

    def install(self, state: Trainable, history_state, loop: Loop) -> RunStats:
        """Put the shipped weights, history and random state in place of the exercise run's."""
        for name, module in state.modules.items():
            try:
                module.load_state_dict(self.payload["modules"][name])
            except (KeyError, RuntimeError) as err:
                raise pretrained.ShippedModelError(
                    f"the shipped model {self.name!r} no longer loads into {type(module).__name__} "
                    f"({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
                    f"{pretrained._rebuild_hint(self.manifest)}") from None
        _set_global_rng(self.payload["global_rng"])
        if history_state is not None:
            history_state[1](self.payload["history"])
        stats, built = self.payload["stats"], self.manifest.get("built", {})
        if self.mode == "build":
            pretrained._adopt(self.name)
        elif loop.progress and self.mode == "reuse":
            print(f"{loop.desc}: {self.reused_from} trains this model; loaded the course's trained copy "
                  f"{self.name!r} ({loop.steps} steps, {float(stats['seconds']):.0f} s on "
                  f"{built.get('device', '?')} when built; start_lecture(pretrained=False) trains it here)")
        elif loop.progress:
            why = "quick mode" if pretrained._choice is None else "start_lecture(pretrained=True)"
            print(f"{loop.desc}: loaded the course's trained model {self.name!r} ({loop.steps} steps, "
                  f"{float(stats['seconds']):.0f} s on {built.get('device', '?')} when built); {why} trained "
                  f"only {self.exercise_steps} steps here to exercise the loop (start_lecture(pretrained=False) "
                  "trains it all)")
        return RunStats(start=loop.steps, steps_run=int(stats["steps_run"]), seconds=float(stats["seconds"]),
                        cached=True, shipped=True)

    def write(self, result: dict, state: Trainable) -> None:
        if not _all_finite(_state_tensors(state)):
            raise TrainingDivergedError(f"shipped model {self.name!r}: the parameters are not finite")
        device = next((p.device.type for m in state.modules.values() for p in m.parameters()), "cpu")
        where = pretrained._write(self.name, self.recipe, result, built={
            "device": device, "steps": result["step"], "seconds": round(result["stats"]["seconds"], 1)},
            summaries=self.summaries)
        print(f"built shipped model {self.name!r}: {where}")


# ------------------------------------------------------------------ shared trainer helpers
def lr_factor(schedule: str, step: int, steps: int, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then constant or a cosine decay to 0 at ``steps``."""
    if schedule not in ("cosine", "constant"):
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {schedule!r}")
    step = check_int("step", step, minimum=0)
    steps = check_int("steps", steps, minimum=1)
    warmup = check_int("warmup", warmup, minimum=0)
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def batch_source(data, device):
    """Turn ``data`` into ``draw(n, generator) -> batch`` on ``device``.

    ``data`` is a tensor of examples (rows drawn with replacement), a tuple of tensors
    with matching rows (batches are tuples of the same rows), an object with
    ``.sample(n, generator=...)``, or a callable ``draw(n, generator)``.
    """
    device = check_device("device", device)
    if isinstance(data, torch.Tensor):
        if data.ndim < 1 or data.shape[0] < 1:
            raise ValueError(f"data as a tensor must have shape (N, ...) with N >= 1, got {tuple(data.shape)}")
        if data.is_floating_point() and not bool(torch.isfinite(data).all()):
            raise ValueError("data contains NaN or infinite values")
        table = data.to(device)

        def draw(n, generator):
            idx = torch.randint(0, table.shape[0], (n,), generator=generator, device=device)
            return table[idx]

        return draw
    if isinstance(data, (tuple, list)) and data and all(isinstance(d, torch.Tensor) for d in data):
        n = data[0].shape[0] if data[0].ndim else 0
        if n < 1 or any(d.ndim < 1 or d.shape[0] != n for d in data):
            raise ValueError("data as a tuple of tensors needs the same number of rows (>= 1) in each, got shapes "
                             f"{[tuple(d.shape) for d in data]}")
        for d in data:
            if d.is_floating_point() and not bool(torch.isfinite(d).all()):
                raise ValueError("data contains NaN or infinite values")
        tables = tuple(d.to(device) for d in data)

        def draw_rows(n_draw, generator):
            idx = torch.randint(0, n, (n_draw,), generator=generator, device=device)
            return tuple(table[idx] for table in tables)

        return draw_rows
    if hasattr(data, "sample"):
        source = data.to(device) if hasattr(data, "to") else data
        return lambda n, generator: source.sample(n, generator=generator)
    if callable(data):
        return data
    raise ValueError(
        "data must be a tensor of examples, a tuple of tensors with matching rows, an object with "
        f".sample(n, generator=...), or a callable draw(n, generator); got {type(data).__name__}"
    )


def data_signature(data) -> dict:
    """What a resume can cheaply check about ``data``: its kind and, for tensors, the shapes."""
    if isinstance(data, torch.Tensor):
        return {"kind": "tensor", "shape": list(data.shape)}
    if isinstance(data, (tuple, list)):
        return {"kind": "rows", "shapes": [list(d.shape) for d in data if isinstance(d, torch.Tensor)]}
    if hasattr(data, "sample"):
        return {"kind": type(data).__qualname__}
    return {"kind": "callable"}
