"""The grader's side inside the kernel that runs a submission.

The graded notebook runs the lecture's setup cell, then :func:`seal`, then each
student exercise cell followed by a grader cell that calls :func:`run_check`.

- :func:`seal` (before any student code) keeps references to every check and to the
  objects a check relies on: the attributes of the library's modules, of ``builtins``,
  of the torch and numerical modules the checks call, the methods of ``torch.Tensor``,
  and the entries of ``sys.modules``.
- :func:`run_check` compares all of them with the sealed references (before and after
  calling the student's function: a function can patch things while it runs), calls
  the *sealed* check with the grader's seed, and appends one JSON line carrying the
  grader's one-time token to the results file. A patched check, library function or
  builtin is reported as tampering, whatever the check said.
"""
from __future__ import annotations

import builtins
import json
import math
import os
import sys
import threading

import torch
import torch.nn.functional

from .. import exercises

_WATCHED_MODULES = ("builtins", "math", "json", "os", "sys", "torch", "torch.nn", "torch.nn.functional",
                    "torch.linalg", "numpy", "functools")
_WATCHED_CLASSES = {"torch.Tensor": torch.Tensor, "torch.nn.Module": torch.nn.Module, "torch.Generator": torch.Generator}
_VOLATILE = {"_", "__", "___", "exit", "quit", "get_ipython", "display", "__IPYTHON__", "_ih", "_oh", "_dh", "In",
             "Out", "_i", "_ii", "_iii", "__builtins__", "ps1", "ps2", "last_type", "last_value", "last_traceback",
             "last_exc", "stdin", "stdout", "stderr", "displayhook", "excepthook", "path_importer_cache",
             "_getframe", "environ", "_clear_type_cache", "input", "raw_input", "getpass"}
_sealed = None


def _library_modules():
    return sorted(name for name in sys.modules if (name == "cs231n_gen" or name.startswith("cs231n_gen."))
                  and name != __name__)  # this module's own state changes as it grades


def _snapshot() -> dict:
    watched = [m for m in _library_modules() + list(_WATCHED_MODULES) if sys.modules.get(m) is not None]
    modules = {name: sys.modules[name] for name in watched}
    attributes = {}
    for name, module in modules.items():
        library = name.startswith("cs231n_gen")
        attributes[name] = {key: value for key, value in vars(module).items()
                            if key not in _VOLATILE and (library or callable(value) or isinstance(value, type(sys)))}
    for label, cls in _WATCHED_CLASSES.items():
        attributes[label] = dict(vars(cls))
    return {"modules": modules, "attributes": attributes}


def seal() -> None:
    """Keep references to the checks and to everything they rely on (call before student code)."""
    global _sealed
    if _sealed is not None:
        raise RuntimeError("the grading kernel is already sealed")
    _sealed = {"checks": dict(exercises.CHECKS), "snapshot": _snapshot(), "open": builtins.open,
               "dumps": json.dumps, "threads": {t.ident for t in threading.enumerate()},
               "fsync": os.fsync, "Thread": threading.Thread}


def _differences() -> list[str]:
    """What changed since :func:`seal` in the sealed modules, classes and ``sys.modules``."""
    before = _sealed["snapshot"]
    found = []
    for name, module in before["modules"].items():
        if sys.modules.get(name) is not module:
            found.append(f"sys.modules[{name!r}] was replaced")
    for owner, attrs in before["attributes"].items():
        now = vars(before["modules"][owner] if owner in before["modules"] else _WATCHED_CLASSES[owner])
        for key, value in attrs.items():
            if key not in now:
                found.append(f"{owner}.{key} was deleted")
            elif now[key] is not value and not _same_value(now[key], value):
                found.append(f"{owner}.{key} was changed")
        if owner in _WATCHED_CLASSES:  # a new method on a class overrides the inherited one
            found += [f"{owner}.{key} was added" for key in now if key not in attrs]
    for thread in threading.enumerate():
        if thread.ident not in _sealed["threads"] and type(thread).__name__ != "TMonitor" and thread.is_alive():
            found.append(f"a thread was started ({thread.name})")
    return found


def _same_value(a, b) -> bool:
    """Plain data that compares equal counts as unchanged (a module may rebuild a constant)."""
    plain = (int, float, str, bytes, bool, type(None))
    return isinstance(a, plain) and type(a) is type(b) and (a == b or (isinstance(a, float) and math.isnan(a)
                                                                          and math.isnan(b)))


def run_check(exercise: str, check: str, function: str, *, seed: int, token: str, results: str) -> None:
    """Judge one exercise and append the verdict to ``results``; raise ``AssertionError`` if it did not pass."""
    if _sealed is None:
        raise RuntimeError("seal() must run before the first exercise")
    tamper = _differences()
    namespace = sys.modules["__main__"].__dict__
    student_fn = namespace.get(function)
    check_fn = _sealed["checks"][check]
    if student_fn is None:
        passed, message = False, (f"{function}() is not defined: the exercise cell was deleted, renamed, or "
                                  "raised before defining it")
    elif not callable(student_fn):
        passed, message = False, f"{function} is not a function (it is a {type(student_fn).__name__})"
    else:
        result = check_fn(student_fn, seed=seed, raise_on_fail=False)
        passed, message = result.passed, result.message
        tamper += [d for d in _differences() if d not in tamper]
    line = _sealed["dumps"]({"exercise": exercise, "passed": bool(passed), "message": str(message),
                             "tamper": tamper, "token": token})
    with _sealed["open"](results, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        _sealed["fsync"](f.fileno())
    if tamper:
        raise AssertionError(f"{exercise}: not graded, the library was changed from student code: "
                             + "; ".join(tamper[:5]))
    if not passed:
        raise AssertionError(f"{exercise}: {message}")
    print(f"{exercise}: passed. {message}")
