"""The one skeleton every exercise check shares.

A check is written as ``body(student_fn, probe)``: it draws its probe inputs from
``probe`` (seeded, so a grader can choose fresh probes and a memorised answer fails),
calls the student's function, and either returns the confirmation to print or calls
:func:`fail` with the mistake it recognised. :func:`exercise` turns that body into the
public ``check_<name>(student_fn, *, seed=None, raise_on_fail=True)``:

- in a notebook it prints the confirmation and returns a :class:`CheckResult`, or raises
  :class:`ExerciseFailed` (an ``AssertionError``) whose message names the mistake;
- a grader passes ``raise_on_fail=False`` and reads the returned :class:`CheckResult`.

Each exercise also declares its *references*: the library functions that solve it
(``exercise(name, references=("cs231n_gen.paths.rectified_flow_loss",))``), chosen so that
no legitimate solution needs them. While the student's function runs, :func:`call_student`
watches for them (:func:`watch_references`) and fails the check naming the one that ran.
The grader goes further: in its sandbox those functions are removed from the library
(:mod:`cs231n_gen.grading.sandbox`), so a student who switches the watch off gains nothing.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import importlib
import sys
import threading

import torch

from .._validate import check_bool, check_callable, check_int

DEFAULT_SEED = 0  # what a student's own run uses; the grader draws another


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """The verdict on one exercise: its name, whether it passed, and the message shown."""

    exercise: str
    passed: bool
    message: str

    def _repr_pretty_(self, printer, cycle) -> None:  # the notebook shows the verdict; the message is printed
        printer.text(f"<{self.exercise}: {'passed' if self.passed else 'failed'}>")

    def __str__(self) -> str:
        return f"{self.exercise}: {'passed' if self.passed else 'failed'}: {self.message}"


class ExerciseFailed(AssertionError):
    """Raised in a notebook when a check fails; ``.result`` holds the :class:`CheckResult`."""

    def __init__(self, result: CheckResult):
        super().__init__(result.message)
        self.result = result


class _Mistake(Exception):
    """Internal: a recognised mistake, carrying the message for the student."""


def fail(message: str):
    """Stop the check with ``message`` (the mistake and how to fix it)."""
    raise _Mistake(message)


class Probe:
    """Where a check draws its inputs: independent, reproducible generators per use."""

    def __init__(self, exercise: str, seed: int):
        self.exercise, self.seed = exercise, seed

    def generator(self, stream: int = 0) -> torch.Generator:
        """A torch generator for probe stream ``stream`` (same seed and stream, same numbers)."""
        key = f"{self.exercise}:{self.seed}:{stream}".encode()
        return torch.Generator().manual_seed(int.from_bytes(hashlib.sha256(key).digest()[:7], "big"))

    def uniform(self, low: float, high: float, stream: int = 0) -> float:
        """One number drawn uniformly from [low, high)."""
        return low + (high - low) * float(torch.rand((), generator=self.generator(1000 + stream)))


REFERENCE_MARK = "is the reference for this exercise"  # in the error a removed reference raises


def resolve(name: str):
    """The function a dotted name (``module.function`` or ``module.Class.method``) names."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ValueError(f"no module in the reference name {name!r}")


@contextlib.contextmanager
def watch_references(names):
    """Record, in the list it yields, every reference in ``names`` that is called inside the block."""
    codes = {}
    for name in names:
        fn = resolve(name)
        code = getattr(getattr(fn, "__func__", fn), "__code__", None)
        if code is not None:
            codes[code] = name
    seen: list[str] = []
    if not codes:
        yield seen
        return

    def profile(frame, event, arg):
        if event == "call" and frame.f_code in codes and codes[frame.f_code] not in seen:
            seen.append(codes[frame.f_code])

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        yield seen
    finally:
        sys.setprofile(previous)


def reference_message(what: str, names) -> str:
    """The hint when a student's function ran (or tried to run) one of its exercise's references."""
    names = ", ".join(sorted(set(names)))
    return (f"{what.split()[0]} calls the library's own solution ({names}): this exercise is to write it "
            "yourself, and a grader gives it no points. Use torch operations instead.")


def call_student(what: str, student_fn, *args):
    """Call the student's function; its own exception becomes a failed check naming it, and a reference
    of the exercise running during the call fails it too."""
    stack = getattr(_current, "references", None)
    references = stack[-1] if stack else ()
    try:
        with watch_references(references) as used:
            result = student_fn(*args)
    except NotImplementedError:
        fail(f"{what.split()[0]} is not written yet (it raises NotImplementedError): replace the "
             "'raise NotImplementedError' line with your code.")
    except Exception as err:  # show students their own error, with context
        if REFERENCE_MARK in str(err):
            fail(reference_message(what, [str(err).split()[0]]))
        fail(f"{what} raised {type(err).__name__}: {err}")
    if used:
        fail(reference_message(what, used))
    return result


_current = threading.local()  # .references: the references of the checks running in this thread (a stack)


def close(a, b, tol: float = 1e-5) -> bool:
    """Same values (float64, broadcast, relative and absolute tolerance ``tol``); False if incomparable."""
    try:
        a = torch.as_tensor(a, dtype=torch.float64)
        b = torch.as_tensor(b, dtype=torch.float64)
        return torch.allclose(a, b, rtol=tol, atol=tol)
    except (TypeError, ValueError, RuntimeError):
        return False


def name_the_mistake(got, mistakes, tol: float = 1e-5, prefix: str = "") -> None:
    """Fail with the hint of the first known mistake whose value ``got`` matches (:func:`close`
    within ``tol``): ``mistakes`` is a list of ``(value, hint)``, a value None where a mistake
    does not apply to this probe. Returns when none matches (the check then says what is wrong
    in general)."""
    for value, hint in mistakes:
        if value is not None and close(got, value, tol):
            fail(prefix + hint)


def exercise(name: str, references: tuple = ()):
    """Decorator: turn ``body(student_fn, probe) -> confirmation`` into a public check whose
    exercise is solved by the library functions ``references`` (dotted names)."""

    def wrap(body):
        @functools.wraps(body)
        def check(student_fn, *, seed=None, raise_on_fail: bool = True) -> CheckResult:
            check_callable("student_fn", student_fn,
                           "your function (pass the function itself, without calling it)")
            seed = DEFAULT_SEED if seed is None else check_int("seed", seed, minimum=0)
            check_bool("raise_on_fail", raise_on_fail)
            if not hasattr(_current, "references"):
                _current.references = []
            _current.references.append(tuple(references))
            try:
                result = CheckResult(name, True, body(student_fn, Probe(name, seed)))
            except _Mistake as mistake:
                result = CheckResult(name, False, str(mistake))
            except Exception as err:  # the student's function broke the probe somewhere we did not guard
                result = CheckResult(name, False, f"{name} failed with {type(err).__name__}: {err}")
            finally:
                _current.references.pop()
            if result.passed:
                if raise_on_fail:
                    print(result.message)
                return result
            if raise_on_fail:
                raise ExerciseFailed(result)
            return result

        check.exercise = name
        check.references = tuple(references)
        return check

    return wrap
