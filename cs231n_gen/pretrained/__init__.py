"""The course's trained models, shipped inside the package.

A lecture names each model worth shipping at the call that trains it
(``fit(..., shipped="shapes_vae")``; :func:`~cs231n_gen.gan.train_gan` and
:func:`~cs231n_gen.autoencoding.train_autoencoder` take the same argument). What
that call then does depends on the mode (:func:`mode`):

- ``"train"`` (full mode, the default for students): train from scratch, as if the
  argument were absent.
- ``"load"`` (quick mode, or ``start_lecture(pretrained=True)``): check that the
  shipped model was made by *this* recipe, train a few steps (:data:`EXERCISE_STEPS`)
  so the loop, the loss and the progress bar still run, then put the shipped weights,
  loss history and random state in place: every later cell continues exactly as it
  would after the full training on the machine that built the model.
- ``"build"`` (``python -m cs231n_gen.pretrained build``): train at the full budget
  and write the model next to its recipe into :func:`folder`.

A lecture that uses a model an earlier lecture trained wraps that call in
``with pretrained.reusing("lecture 05"):``. In full mode, unless the student asked to
train everything (``start_lecture(pretrained=False)`` or ``CS231N_GEN_PRETRAINED=0``),
the call then takes the student's own run of that lecture from the run cache when it is
there, and the course's copy otherwise, without training a step: the earlier lecture
already showed the training.

**The recipe** is what determines the weights: the trainer, its settings (the full
step count included), the model's class and initial weights, the data, the loss
function (its code and the values it reads; library functions by name), and the CPU
random state at the start. It is a dict of fingerprints
(:mod:`cs231n_gen.fingerprint`), not of the library's source text, so a refactor that
changes no number keeps the shipped models valid, and a change of any ingredient makes
the quick-mode lecture fail with the command that rebuilds the model.

Each model is two files in :func:`folder`: ``<name>.pt`` (tensors only, written with
:func:`cs231n_gen._io.save`, digest checked on load) and ``<name>.json`` (the recipe,
its fingerprint, how and where it was built, and the numbers the lecture asserted
about it, see :func:`record`).
"""
from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import math
import os
from pathlib import Path

import torch

from .. import _io

MODE_ENV = "CS231N_GEN_PRETRAINED"  # "1": load, "0": train, "build": build; unset: load in quick mode
DIR_ENV = "CS231N_GEN_PRETRAINED_DIR"  # where the models are read and written (default: inside the package)
BUILD_ID_ENV = "CS231N_GEN_PRETRAINED_BUILD_ID"  # one id per build, so two lectures can share a model
LECTURE_ENV = "CS231N_GEN_PRETRAINED_LECTURE"  # the lecture a build is executing
EXERCISE_STEPS = 30

_choice: bool | None = None  # start_lecture(pretrained=...)
_reused_from: str | None = None  # inside ``with reusing(...)``: the lecture that trains the model


class ShippedModelError(RuntimeError):
    """A shipped model that cannot stand in for training: missing, damaged, made by
    another recipe, or no longer fitting the current class. The message says how to rebuild."""


def folder() -> Path:
    """Where the shipped models live: ``$CS231N_GEN_PRETRAINED_DIR``, else ``models/`` in this package."""
    explicit = os.environ.get(DIR_ENV)
    return Path(explicit) if explicit else Path(__file__).resolve().parent / "models"


def _check_name(name, argument: str = "name") -> str:
    """A model's name: letters, digits and underscores (it names two files)."""
    if not isinstance(name, str) or not name or not name.replace("_", "").isalnum() or not name.isascii():
        raise ValueError(f"{argument} must be {'None or ' if argument == 'shipped' else ''}a model name of ASCII "
                         f"letters, digits and _, got {name!r}")
    return name


def _choose(pretrained) -> None:
    """Record ``start_lecture(pretrained=...)``: True loads, False trains, None leaves it to the mode."""
    global _choice
    if pretrained is not None and not isinstance(pretrained, bool):
        raise ValueError(f"pretrained must be True, False or None (load in quick mode only), got {pretrained!r}")
    _choice = pretrained


def mode() -> str:
    """``"build"``, ``"load"`` or ``"train"``: what a call with ``shipped=...`` does now.

    ``CS231N_GEN_PRETRAINED=build`` builds; otherwise ``start_lecture(pretrained=True/False)``
    decides, then ``CS231N_GEN_PRETRAINED=1/0``, then the budget: quick mode loads, full mode trains.
    """
    from ..runtime import is_quick

    env = os.environ.get(MODE_ENV, "").strip().lower()
    if env == "build":
        return "build"
    if _choice is not None:
        return "load" if _choice else "train"
    if env in ("1", "true", "yes", "on"):
        return "load"
    if env in ("0", "false", "no", "off"):
        return "train"
    if env:
        raise ValueError(f"{MODE_ENV} must be 1 (load the shipped models), 0 (train them) or build, got {env!r}")
    return "load" if is_quick() else "train"


def reusing(lecture: str):
    """``with reusing("lecture 05"):`` a run with ``shipped=...`` inside the block is a model
    that ``lecture`` already trained.

    In full mode (:func:`mode` ``"train"``, not chosen by ``start_lecture(pretrained=False)``
    or ``CS231N_GEN_PRETRAINED=0``) such a run trains nothing: it loads the same recipe's run
    from the run cache (the student's own, when that lecture ran here), else the shipped
    model. In every other case the run does what :func:`mode` says, as outside the block.
    """
    if not isinstance(lecture, str) or not lecture.strip():
        raise ValueError(f"lecture must name the lecture that trains the model (like 'lecture 05'), got {lecture!r}")
    return _reusing(lecture.strip())


@contextlib.contextmanager
def _reusing(lecture: str):
    global _reused_from
    outer, _reused_from = _reused_from, lecture
    try:
        yield
    finally:
        _reused_from = outer


def reused_from() -> str | None:
    """The lecture whose model a run with ``shipped=...`` reuses now (see :func:`reusing`), or None."""
    if _reused_from is None or mode() != "train" or _choice is not None or os.environ.get(MODE_ENV, "").strip():
        return None
    return _reused_from


# ----------------------------------------------------------------------------- recipes
_RECIPE_INPUTS = ("modules", "global_rng")  # inputs every run has; the trainer adds data, loss_fn...
_DEVICE_BOUND = ("generators", "cuda_rng", "device")  # differ between devices for the same recipe
_NOT_RECIPE = _DEVICE_BOUND + ("summaries",)


def _recipe(kind: str, settings: dict, inputs: dict) -> dict:
    """The recipe of a run: trainer ``kind``, ``settings`` (plain values) and the
    fingerprints in ``inputs`` (:func:`cs231n_gen.engine.cache_inputs`) that do not
    depend on the device (the trainers' generators are seeded by ``settings['seed']``)."""
    if not isinstance(inputs, dict) or any(k not in inputs for k in _RECIPE_INPUTS):
        raise ValueError(f"inputs must be the fingerprints of a run (with {_RECIPE_INPUTS}), got {inputs!r}")
    return {"kind": kind, "settings": settings,
            "inputs": {k: v for k, v in sorted(inputs.items()) if k not in _NOT_RECIPE}}


def _recipe_fingerprint(rec: dict) -> str:
    """SHA-256 of a recipe's canonical JSON."""
    return hashlib.sha256(json.dumps(rec, sort_keys=True).encode()).hexdigest()


_WORDS = {"modules": "the initial weights", "global_rng": "the random state at the start",
          "loss_fn": "the loss function or the values it reads"}


def _differences(shipped: dict, current: dict) -> list[str]:
    """What differs between two recipes, one phrase per ingredient."""
    out = []
    if shipped.get("kind") != current.get("kind"):
        out.append(f"trainer {shipped.get('kind')!r} then, {current.get('kind')!r} now")
    old, new = shipped.get("settings") or {}, current.get("settings") or {}
    for key in sorted(set(old) | set(new)):
        if old.get(key, "<missing>") != new.get(key, "<missing>"):
            out.append(f"setting {key}: {str(old.get(key, '<missing>'))[:80]} then, "
                       f"{str(new.get(key, '<missing>'))[:80]} now")
    old, new = shipped.get("inputs") or {}, current.get("inputs") or {}
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            out.append(f"{_WORDS.get(key, 'the ' + key)} (fingerprint {str(old.get(key))[:10]} then, "
                       f"{str(new.get(key))[:10]} now)")
    return out


# -------------------------------------------------------------------------- the files
def _paths(name: str) -> tuple[Path, Path]:
    """The weights file and the manifest of model ``name``."""
    _check_name(name)
    return folder() / f"{name}.pt", folder() / f"{name}.json"


def manifest(name: str) -> dict | None:
    """The manifest of shipped model ``name``, or None when there is none."""
    _, meta = _paths(name)
    if not meta.exists():
        return None
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ShippedModelError(f"the manifest {meta} cannot be read ({err}); {_rebuild_hint(None)}") from None
    if not isinstance(data, dict) or not isinstance(data.get("recipe"), dict):
        raise ShippedModelError(f"the manifest {meta} has no recipe; {_rebuild_hint(None)}")
    return data


def available() -> dict[str, dict]:
    """Every shipped model's manifest, by name."""
    root = folder()
    if not root.is_dir():
        return {}
    return {p.stem: manifest(p.stem) for p in sorted(root.glob("*.json"))}


def _rebuild_hint(data: dict | None) -> str:
    """How to make a shipped model right again (the build command for its lectures)."""
    which = "".join(f" --lecture {lecture[:2]}" for lecture in (data or {}).get("lectures") or [])
    return (f"rebuild it with `python -m cs231n_gen.pretrained build{which}`, "
            "or train it here instead: start_lecture(pretrained=False)")


SUMMARY_TOLERANCE = 1e-4  # relative: float rounding and a few flipped argmins, not another data set
ACROSS_DEVICES_TOLERANCE = 1e-2  # relative, on a device the model was not built on: a GPU's kernels round otherwise
_SUMMARY_CHUNK = 1 << 20


def _data_summary(value) -> list | None:
    """Statistics of training data that survive float rounding: per tensor its shape,
    dtype, mean, root mean square and a weighted mean (weights cos(0.618 k) over the
    flattened entries, so a reordering shows). None for data that are not tensors."""
    tensors = [value] if isinstance(value, torch.Tensor) else list(value) if isinstance(value, (tuple, list)) else []
    if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
        return None
    out = []
    for t in tensors:
        flat = t.detach().reshape(-1)
        sums = torch.zeros(3, dtype=torch.float64)
        for start in range(0, flat.numel(), _SUMMARY_CHUNK):  # in chunks: a float64 copy of the data would be large
            part = flat[start:start + _SUMMARY_CHUNK].cpu().double()
            weights = torch.cos(0.618 * torch.arange(start, start + part.numel(), dtype=torch.float64))
            sums += torch.stack([part.sum(), part.square().sum(), (part * weights).sum()])
        mean, square, probe = (sums / max(flat.numel(), 1)).tolist()
        out.append({"shape": list(t.shape), "dtype": str(t.dtype), "mean": mean, "rms": square ** 0.5, "probe": probe})
    return out


def _summaries_agree(shipped, current, tolerance: float = SUMMARY_TOLERANCE) -> bool:
    if not shipped or not current or len(shipped) != len(current):
        return False
    for a, b in zip(shipped, current):
        if a["shape"] != b["shape"] or a["dtype"] != b["dtype"]:
            return False
        scale = max(a["rms"], b["rms"], 1e-12)
        if any(abs(a[k] - b[k]) > tolerance * scale for k in ("mean", "rms", "probe")):
            return False
    return True


def _fetch(name: str, rec: dict, summaries: dict | None = None, device: str | None = None) -> tuple[dict, dict]:
    """The payload and manifest of shipped model ``name``, after checking it was made by ``rec``.

    Data that are another model's outputs (lecture 05's latents) can differ in their last
    bits on another machine (other CPU instructions, another device). When only the data's
    bytes differ and their ``summaries`` (:func:`_data_summary`) agree with the build's
    within :data:`SUMMARY_TOLERANCE`, the model is used, with one printed line.

    On a ``device`` of another type than the build's (a GPU; the course builds on a CPU),
    more differences come from the device alone and are accepted the same way: the CPU
    random state at the start and the initial weights drawn from it (the cells before drew
    their numbers from the GPU's generator instead), and data computed by earlier models
    whose summaries agree within :data:`ACROSS_DEVICES_TOLERANCE`. The trainer, its
    settings (the model's class and shapes among them) and the loss must still be the build's.
    """
    data = manifest(name)
    weights, meta = _paths(name)
    if data is None or not weights.exists():
        raise ShippedModelError(f"no shipped model named {name!r} in {folder()}; {_rebuild_hint(data)}")
    problems = _differences(data["recipe"], rec)
    old_inputs, shipped_summaries = data["recipe"].get("inputs") or {}, data.get("data_summaries") or {}
    differing = [k for k in set(old_inputs) | set(rec["inputs"]) if old_inputs.get(k) != rec["inputs"].get(k)]
    close = [k for k in differing if _summaries_agree(shipped_summaries.get(k), (summaries or {}).get(k))]
    built_on = (data.get("built") or {}).get("device", "cpu")
    elsewhere = [] if device is None or device == built_on else [
        k for k in differing if k not in close and (k in ("global_rng", "modules") or _summaries_agree(
            shipped_summaries.get(k), (summaries or {}).get(k), ACROSS_DEVICES_TOLERANCE))]
    if problems and len(close) + len(elsewhere) == len(differing) == len(problems):
        if close:
            print(f"note: the training data of the shipped model {name!r} ({', '.join(sorted(close))}) differ from "
                  "the build's in their last bits (they are computed by another model, here on this machine) and "
                  f"agree with them to {SUMMARY_TOLERANCE:g}")
        if elsewhere:
            print(f"note: the shipped model {name!r} was built on the {built_on}; here on {device}, "
                  f"{', '.join(sorted(_WORDS.get(k, 'the ' + k) for k in elsewhere))} "
                  "differ as they do between devices "
                  "(the earlier cells drew their random numbers on this device; data computed by earlier models agree "
                  f"to {ACROSS_DEVICES_TOLERANCE:g}): it is used, and the numbers that follow are this device's")
        problems = []
    if problems:
        raise ShippedModelError(f"the shipped model {name!r} was trained by another recipe than this cell's: "
                                f"{'; '.join(problems[:6])}. Its numbers would not be this cell's; "
                                f"{_rebuild_hint(data)}")
    if data.get("recipe_fingerprint") != _recipe_fingerprint(data["recipe"]):
        raise ShippedModelError(f"the manifest {meta} was edited after it was built (its recipe does not match "
                                f"its fingerprint); {_rebuild_hint(data)}")
    try:
        payload = _io.load(weights)
    except _io.UnusableFileError as err:
        raise ShippedModelError(f"{err}; {_rebuild_hint(data)}") from None
    if payload.get("recipe_fingerprint") != data["recipe_fingerprint"]:
        raise ShippedModelError(f"{weights} and {meta} come from different builds; {_rebuild_hint(data)}")
    return payload, data


def _write(name: str, rec: dict, payload: dict, built: dict, summaries: dict | None = None) -> Path:
    """Save a trained run as shipped model ``name`` (weights first, then the manifest that points at them)."""
    weights, meta = _paths(name)
    fp = _recipe_fingerprint(rec)
    previous = manifest(name)
    build_id = os.environ.get(BUILD_ID_ENV, "")
    lecture = os.environ.get(LECTURE_ENV, "")
    lectures, numbers = [], {}
    if previous is not None and previous.get("recipe_fingerprint") == fp:  # the same model, rebuilt
        lectures, numbers = list(previous.get("lectures") or []), dict(previous.get("numbers") or {})
    elif previous is not None and build_id and previous.get("build_id") == build_id:
        raise ShippedModelError(f"two lectures ship different models under the name {name!r} "
                                f"({', '.join(previous.get('lectures') or [])} and {lecture}); give one "
                                "of them another name")
    if lecture and lecture not in lectures:
        lectures.append(lecture)
    _io.save({**payload, "recipe_fingerprint": fp}, weights)
    data = {"name": name, "recipe_fingerprint": fp, "recipe": rec, "lectures": lectures, "build_id": build_id,
            "built": {**built, "torch": torch.__version__,
                      "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")},
            "bytes": weights.stat().st_size, "data_summaries": summaries or {},
            "numbers": numbers}
    weights.chmod(0o644)  # package data: readable by everyone who installs it
    _save_manifest(name, data)
    return weights


def _save_manifest(name: str, data: dict) -> None:
    meta = _paths(name)[1]
    _io.write_text(meta, json.dumps(data, indent=1, sort_keys=True) + "\n")
    meta.chmod(0o644)


def _shared_in_this_build(name: str, rec: dict) -> bool:
    """In a build: whether an earlier lecture of the same build already wrote ``name`` by ``rec``."""
    build_id = os.environ.get(BUILD_ID_ENV, "")
    data = manifest(name)
    return bool(build_id and data is not None and data.get("build_id") == build_id
                and data.get("recipe_fingerprint") == _recipe_fingerprint(rec))


def _adopt(name: str) -> None:
    """In a build: list the current lecture among the users of ``name`` (built earlier in this build)."""
    data = manifest(name)
    lecture = os.environ.get(LECTURE_ENV, "")
    if data is not None and lecture and lecture not in data["lectures"]:
        data["lectures"].append(lecture)
        _save_manifest(name, data)


def record(name: str, **numbers) -> None:
    """Write the numbers a lecture asserts about shipped model ``name`` into its manifest.

    Only in a build (:func:`mode` ``"build"``); elsewhere it checks its arguments and
    does nothing, so a lecture can call it unconditionally after its asserts.
    """
    _check_name(name)
    clean = {}
    for key, value in numbers.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{key} must be a finite number, got {value!r}")
        clean[key] = float(f"{float(value):.7g}")  # seven significant digits, so 1e-12 stays 1e-12
    if mode() != "build":
        return
    data = manifest(name)
    if data is None:
        raise ShippedModelError(f"record({name!r}): no shipped model of that name was built in this run")
    data["numbers"] = {**data.get("numbers", {}), **clean}
    _save_manifest(name, data)
