"""The kernel's side of grading: it runs the student's function when the grader asks, nothing more.

The graded notebook runs the lecture's setup cell, then :func:`seal`, then each student
exercise cell followed by a grader cell that calls :func:`serve`. This module runs inside
the sandbox, next to student code, so nothing it says is trusted: the *check* runs in the
grader's own process (:mod:`cs231n_gen.grading.remote`), which decides the verdict.

- :func:`seal` (before any student code) keeps references to the library's modules, to
  ``builtins``, to the torch and numerical modules and to the methods of ``torch.Tensor``.
- :func:`serve` connects to the grader's socket and answers its requests: *call* the
  student's function on the probe objects the grader sends (pickled by the grader) and
  return the result as plain data (:mod:`.wire`), with the state the call left in its
  arguments (labels changed in place, a probe model's recorded calls, a generator's state);
  *vjp*, the gradient of that call's outputs for the grader's autograd; and finally the
  *verdict*, which it prints (or raises, so the student's cell fails). With each answer
  it reports what student code changed since :func:`seal` and which of the exercise's
  reference functions ran: both are flags for the instructor, and a student who hides
  them gains nothing, since the verdict is not computed here.
"""
from __future__ import annotations

import math
import socket
import sys
import threading

import torch
import torch.nn.functional

from .. import exercises  # noqa: F401 (loaded before the seal, so the checks' modules are in its snapshot)
from ..exercises._harness import watch_references
from . import wire

_WATCHED_MODULES = ("builtins", "math", "json", "os", "sys", "torch", "torch.nn", "torch.nn.functional",
                    "torch.linalg", "numpy", "functools")
_WATCHED_CLASSES = {"torch.Tensor": torch.Tensor, "torch.nn.Module": torch.nn.Module,
                    "torch.Generator": torch.Generator}
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
    """Keep references to the library (the checks' modules among them) and to what it relies on (call before
    student code)."""
    global _sealed
    if _sealed is not None:
        raise RuntimeError("the grading kernel is already sealed")
    _sealed = {"snapshot": _snapshot(), "threads": {t.ident for t in threading.enumerate()}}


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


def _plain_list(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, (int, float, bool, torch.Tensor)) for v in value)


def _after(args) -> list:
    """What a call left in its arguments, as plain data (the grader copies it back into its own)."""
    out = []
    for arg in args:
        if isinstance(arg, torch.Tensor):
            out.append({"tensor": arg.detach()})
        elif isinstance(arg, torch.nn.Module):
            state = {k: v.detach() for k, v in arg.state_dict().items()}
            calls = getattr(arg, "calls", None)
            out.append({"state": state, "calls": calls if _plain_list(calls) else None})
        elif isinstance(arg, torch.Generator):
            out.append({"generator": arg.get_state()})
        else:
            out.append(None)
    return out


def _result(value) -> dict:
    """The student's return value for the reply; a torch.nn.Linear travels as its sizes and weights
    (anything else that is not plain data is answered as unreadable when the reply is encoded)."""
    if isinstance(value, torch.nn.Linear):
        return {"linear": {"in_features": value.in_features, "out_features": value.out_features,
                           "weight": value.weight.detach(),
                           "bias": None if value.bias is None else value.bias.detach()}}
    return {"result": value}


def _error(err: BaseException, used) -> dict:
    return {"error": type(err).__name__, "message": str(err)[:2000], "references": list(used)}


def _call(student_fn, msg: dict, graphs: dict) -> dict:
    args, kwargs = msg["args"], msg["kwargs"]
    used: list = []
    try:
        with torch.set_grad_enabled(msg["grad_enabled"]), watch_references(msg["references"]) as used:
            value = student_fn(*args, **kwargs)
    except Exception as err:  # the student's own error (or a removed reference), told to the grader
        return {**_error(err, used), "after": _after(args)}
    reply = {**_result(value), "after": _after(args), "references": list(used)}
    outputs = [t for t in wire.tensors_in(value) if t.requires_grad]
    if outputs:
        graphs[msg["id"]] = (outputs, wire.leaves(args))
    return reply


def _vjp(msg: dict, graphs: dict) -> dict:
    outputs, leaves = graphs.get(msg["id"], ([], []))
    pairs = [(o, g) for o, g in zip(outputs, msg["grads"]) if g is not None]
    if not leaves or not pairs:
        return {"grads": [None] * len(leaves)}
    try:
        grads = torch.autograd.grad([o for o, _ in pairs], leaves, [g for _, g in pairs], allow_unused=True,
                                    retain_graph=True)
    except Exception as err:
        return _error(err, [])
    return {"grads": [None if g is None else g.detach() for g in grads]}


def serve(exercise: str, function: str, address: str) -> None:
    """Answer the grader's requests for one exercise (see the module docstring); then show its verdict."""
    if _sealed is None:
        raise RuntimeError("seal() must run before the first exercise")
    student_fn = sys.modules["__main__"].__dict__.get(function)
    defined = "missing" if student_fn is None else ("function" if callable(student_fn)
                                                    else type(student_fn).__name__)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(address)
    graphs: dict = {}
    try:
        wire.send_data(sock, {"exercise": exercise, "function": defined, "tamper": _differences()})
        while True:
            msg = wire.recv_call(sock)
            if msg["op"] == "verdict":
                break
            reply = _call(student_fn, msg, graphs) if msg["op"] == "call" else _vjp(msg, graphs)
            reply["tamper"] = _differences()
            try:
                wire.send_data(sock, reply)
            except TypeError as err:  # a return value that is not plain data all the way down
                wire.send_data(sock, {"unreadable": str(err), "after": [None] * len(msg.get("args", ())),
                                      "tamper": reply["tamper"]})
    finally:
        sock.close()
    if not msg["passed"]:
        raise AssertionError(f"{exercise}: {msg['message']}")
    print(f"{exercise}: passed. {msg['message']}")
