"""The grader's end of the channel: the check runs here, the student's function over there.

Each graded kernel's check cell connects to the grader's Unix socket
(:func:`.kernel.serve`). :class:`Listener` accepts those connections for one submission
and, for each, runs the lecture's check **in the grader's process** with the grader's seed,
passing it a :class:`StudentFunction`: a callable that sends the call's arguments into the
sandbox and returns what the student's function returned, rebuilt as plain data by
:func:`.wire.decode` (plain tensors only, so a tensor subclass that always compares equal
cannot cross). The check therefore compares plain tensors with references computed here,
where student code cannot reach them.

Gradients cross too: when the student's outputs carry a graph, they come back wrapped in
:class:`_RemoteGrad`, an autograd function whose backward asks the kernel for the
vector-Jacobian product of that call (the kernel keeps its graph). State the call left in
its arguments is copied back (labels changed in place, a probe model's recorded calls,
parameters, a generator's state), so checks that look at those see what the student did.

The verdict and what was seen (the kernel's report of changes since the seal, references
that ran, timeouts, a dead kernel) are kept in :class:`Verdict` objects on the grader's side.
"""
from __future__ import annotations

import dataclasses
import os
import re
import socket
import threading

import torch

from .. import exercises
from ..exercises._harness import REFERENCE_MARK
from . import wire


@dataclasses.dataclass
class Verdict:
    """What the grader decided for one exercise, and what it saw on the way."""

    exercise: str
    passed: bool = False
    message: str = ""
    tamper: list = dataclasses.field(default_factory=list)
    references: list = dataclasses.field(default_factory=list)
    failure: str | None = None  # "timeout", "crashed" or "protocol" when the kernel did not answer
    done: bool = False

    def note_tamper(self, items) -> None:
        """Keep what the kernel reported changed since the seal (at most 20 notes of 300 characters)."""
        for item in (items if isinstance(items, list) else [])[:20]:
            if isinstance(item, str) and item[:300] not in self.tamper and len(self.tamper) < 20:
                self.tamper.append(item[:300])


class KernelGone(RuntimeError):
    """The sandboxed kernel did not answer (it died, hung past the time limit, or sent garbage)."""


def _student_error(name: str, message: str) -> Exception:
    """An exception carrying the student's error type name and message (never their object)."""
    if name == "NotImplementedError":
        return NotImplementedError(message)
    name = name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,60}", name or "") else "Exception"
    return type(name, (Exception,), {})(message)


def _map_tensors(value, fn):
    """``value`` with each tensor replaced by ``fn(tensor)`` (same traversal order as the kernel's)."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, tuple):
        return tuple(_map_tensors(v, fn) for v in value)
    if isinstance(value, list):
        return [_map_tensors(v, fn) for v in value]
    if isinstance(value, dict):
        return {k: _map_tensors(v, fn) for k, v in value.items()}
    return value


class _RemoteGrad(torch.autograd.Function):
    """Outputs computed in the sandbox, differentiable here: backward asks the kernel for the VJP."""

    @staticmethod
    def forward(ctx, session, call_id, n_outputs, *tensors):
        ctx.session, ctx.call_id = session, call_id
        return tuple(t.clone() for t in tensors[:n_outputs])

    @staticmethod
    def backward(ctx, *grads):
        leaf_grads = ctx.session.vjp(ctx.call_id, list(grads))
        return (None, None, None) + (None,) * len(grads) + tuple(leaf_grads)


class StudentFunction:
    """The student's function as the check sees it: calls run in the sandbox, results come back plain."""

    def __init__(self, session: "_Session", name: str):
        self._session, self.__name__ = session, name

    def __call__(self, *args, **kwargs):
        return self._session.call(args, kwargs)


class _Session:
    """One check cell's connection: the calls of one exercise."""

    def __init__(self, sock: socket.socket, verdict: Verdict, references, timeout: float):
        self.sock, self.verdict, self.references, self.timeout = sock, verdict, tuple(references), timeout
        self.calls = 0

    # -- the channel
    def _reply(self, grad_flags: list | None = None) -> dict:
        try:
            reply = wire.recv_data(self.sock, grad_flags)
        except socket.timeout:
            self.verdict.failure = "timeout"
            raise KernelGone("the student's function ran past the time limit") from None
        except (wire.ChannelClosed, OSError):
            self.verdict.failure = self.verdict.failure or "crashed"
            raise KernelGone("the kernel stopped answering (it died or was stopped)") from None
        except wire.BadMessage as err:
            self.verdict.failure = "protocol"
            raise KernelGone(f"the kernel sent something that is not plain data: {err}") from None
        if not isinstance(reply, dict):
            self.verdict.failure = "protocol"
            raise KernelGone("the kernel sent something that is not a reply")
        self.verdict.note_tamper(reply.get("tamper"))
        for name in reply.get("references") or []:
            if name in self.references and name not in self.verdict.references:
                self.verdict.references.append(name)
        return reply

    def _send(self, message: dict) -> None:
        try:
            wire.send_call(self.sock, message)
        except OSError:
            self.verdict.failure = self.verdict.failure or "crashed"
            raise KernelGone("the kernel stopped answering (it died or was stopped)") from None

    # -- one call of the student's function
    def call(self, args, kwargs):
        self.calls += 1
        call_id = self.calls
        leaves = wire.leaves(args)
        self._send({"op": "call", "id": call_id, "args": args, "kwargs": kwargs,
                    "grad_enabled": torch.is_grad_enabled(), "references": self.references})
        flags: list = []
        reply = self._reply(flags)
        self._copy_back(args, reply.get("after"))
        if "error" in reply:
            message = str(reply.get("message", ""))
            named = message.split()[0] if message.split() else ""
            if REFERENCE_MARK in message and named in self.references and named not in self.verdict.references:
                self.verdict.references.append(named)
            raise _student_error(str(reply["error"]), message)
        if "linear" in reply:
            return self._linear(reply["linear"])
        if "unreadable" in reply:
            raise TypeError(f"the function returned something the grader cannot read back: {reply['unreadable']}")
        result = reply.get("result")
        # The tensors of the reply come first in ``flags`` only if "result" was encoded first: find them by order.
        outputs = wire.tensors_in(result)
        carried = flags[:len(outputs)] if list(reply)[0] == "result" else [False] * len(outputs)
        if not (leaves and torch.is_grad_enabled() and any(carried)):
            return result
        graph = [t for t, c in zip(outputs, carried) if c and t.is_floating_point()]
        wrapped = dict(zip(map(id, graph), _RemoteGrad.apply(self, call_id, len(graph), *graph, *leaves)))
        return _map_tensors(result, lambda t: wrapped.get(id(t), t))

    def vjp(self, call_id: int, grads: list) -> list:
        self._send({"op": "vjp", "id": call_id, "grads": [None if g is None else g.detach() for g in grads]})
        reply = self._reply()
        if "error" in reply:
            raise _student_error(str(reply["error"]), str(reply.get("message", "")))
        return list(reply.get("grads") or [])

    @staticmethod
    def _linear(spec: dict) -> torch.nn.Linear:
        weight, bias = spec.get("weight"), spec.get("bias")
        if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
            raise TypeError("the returned Linear layer has no weight matrix")
        if (spec.get("in_features"), spec.get("out_features")) != (weight.shape[1], weight.shape[0]) or (
                bias is not None and (not isinstance(bias, torch.Tensor) or bias.shape != weight.shape[:1])):
            raise TypeError("the returned Linear layer's weights do not match its sizes")
        layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)  # as large as what was sent
        with torch.no_grad():
            layer.weight.copy_(weight)
            if bias is not None:
                layer.bias.copy_(bias)
        return layer

    @staticmethod
    def _copy_back(args, after) -> None:
        """Copy what the call changed in its arguments back into the grader's objects."""
        if not isinstance(after, list) or len(after) != len(args):
            return
        with torch.no_grad():
            for arg, state in zip(args, after):
                if not isinstance(state, dict):
                    continue
                if isinstance(arg, torch.Tensor) and isinstance(state.get("tensor"), torch.Tensor):
                    new = state["tensor"]
                    if new.shape == arg.shape and new.dtype == arg.dtype and not torch.equal(new, arg.detach()):
                        if not arg.requires_grad:
                            arg.copy_(new)
                elif isinstance(arg, torch.nn.Module) and isinstance(state.get("state"), dict):
                    mine = arg.state_dict(keep_vars=True)
                    for key, value in state["state"].items():
                        if (key in mine and isinstance(value, torch.Tensor) and value.shape == mine[key].shape
                                and value.dtype == mine[key].dtype):
                            mine[key].data.copy_(value)
                    if isinstance(getattr(arg, "calls", None), list) and isinstance(state.get("calls"), list):
                        arg.calls[:] = state["calls"]
                elif isinstance(arg, torch.Generator) and isinstance(state.get("generator"), torch.Tensor):
                    try:
                        arg.set_state(state["generator"].to(torch.uint8))
                    except RuntimeError:
                        pass

    # -- the whole exercise
    def run(self, hello: dict, check_name: str, function: str, seed: int) -> None:
        status = hello.get("function")
        if status == "missing":
            self.verdict.message = (f"{function}() is not defined: the exercise cell was deleted, renamed, or "
                                    "raised before defining it")
        elif status != "function":
            self.verdict.message = f"{function} is not a function (it is a {str(status)[:40]})"
        else:
            check = exercises.CHECKS[check_name]
            result = check(StudentFunction(self, function), seed=seed, raise_on_fail=False)
            self.verdict.passed, self.verdict.message = bool(result.passed), str(result.message)
        if self.verdict.references:
            self.verdict.passed = False
        self.verdict.done = True
        try:
            self._send({"op": "verdict", "passed": self.verdict.passed, "message": self.verdict.message})
        except KernelGone:
            pass


class Listener:
    """Accepts the check cells' connections for one submission and judges each exercise here.

    ``exercises`` is the release's list for the lecture (name, check, function); ``seeds`` maps
    an exercise to the seed of its probes. Every connection must first say which exercise it
    serves; the verdicts of each exercise are collected in :attr:`verdicts` (more than one for
    an exercise means student code connected too, which the grader reports).
    """

    MAX_CONNECTIONS = 32

    def __init__(self, path: str, exercises_of_lecture: list, seeds: dict, timeout: float):
        self.path, self.timeout, self.seeds = str(path), float(timeout), dict(seeds)
        self.by_name = {e["name"]: e for e in exercises_of_lecture}
        self.verdicts: dict[str, list[Verdict]] = {name: [] for name in self.by_name}
        self.junk = 0  # connections that never named an exercise of this lecture
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(self.path)
        os.chmod(self.path, 0o666)  # the sandbox may run as another user
        self._sock.listen(8)
        self._sock.settimeout(0.2)
        self._accepter = threading.Thread(target=self._accept, name="cs231n-gen-listener", daemon=True)
        self._accepter.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if len(self._threads) >= self.MAX_CONNECTIONS:
                conn.close()
                continue
            thread = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(self.timeout)
        try:
            try:
                hello = wire.recv_data(conn)
            except (OSError, wire.ChannelClosed, wire.BadMessage):
                hello = None
            name = hello.get("exercise") if isinstance(hello, dict) else None
            if name not in self.by_name:
                with self._lock:
                    self.junk += 1
                return
            verdict = Verdict(name)
            verdict.note_tamper(hello.get("tamper"))
            with self._lock:
                self.verdicts[name].append(verdict)
            e = self.by_name[name]
            check = exercises.CHECKS[e["check"]]
            session = _Session(conn, verdict, getattr(check, "references", ()), self.timeout)
            try:
                session.run(hello, e["check"], e["function"], self.seeds[name])
            except KernelGone:
                pass
        finally:
            conn.close()

    def close(self, wait: float = 5.0) -> None:
        """Stop accepting; give running checks ``wait`` seconds to finish (their kernel is gone by now)."""
        self._stop.set()
        self._accepter.join(timeout=2)
        for thread in list(self._threads):
            thread.join(timeout=wait)
        self._sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass
