"""The grader's channel to a sandboxed kernel: framed messages over a Unix socket.

Two directions, two formats, because only one side is trusted:

- **grader -> kernel** (:func:`send_call`): a pickle of the check's probe objects (tensors,
  generators, the probe modules the check built). The *kernel* unpickles it, with an
  allow-list of those kinds (:class:`_CallUnpickler`); the grader wrote it, and nothing
  the student controls is ever unpickled by the grader.
- **kernel -> grader** (:func:`send_data` / :func:`recv_data`): plain data only. A JSON
  header (None, bool, int, float, str, lists, str-keyed dicts, tuples as ``{"$tuple": [...]}``)
  whose tensors are ``{"$tensor": i, "dtype", "shape", "grad"}`` entries pointing into a
  byte blob. :func:`decode` rebuilds every tensor with ``torch.frombuffer(...).clone()``:
  always a plain ``torch.Tensor`` of an allowed dtype whose byte count matches its shape, so
  a tensor subclass, a pickle or an object with its own ``__eq__`` cannot cross.

A frame is a 4-byte big-endian length and that many bytes; frames above
:data:`MAX_FRAME` are refused.
"""
from __future__ import annotations

import io
import json
import math
import pickle
import socket
import struct

import torch

MAX_FRAME = 64 * 2**20  # the probes' answers are a few MB at most
_DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int8, torch.uint8, torch.int16, torch.int32,
    torch.int64, torch.bool, torch.complex64, torch.complex128)}


class ChannelClosed(ConnectionError):
    """The other side closed the channel (the kernel died, or the grader went away)."""


class BadMessage(ValueError):
    """What came over the channel is not a well-formed message of plain data."""


# ------------------------------------------------------------------ what both ends must order alike
def leaves(args) -> list:
    """The tensors a call's gradient flows to, in the order both ends use: tensor arguments that
    require grad, then the parameters that require grad of module arguments."""
    found = []
    for arg in args:
        if isinstance(arg, torch.Tensor) and arg.requires_grad:
            found.append(arg)
        elif isinstance(arg, torch.nn.Module):
            found += [p for p in arg.parameters() if p.requires_grad]
    return found


def tensors_in(value) -> list:
    """The tensors inside a value, in the order :func:`encode` writes them."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in tensors_in(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in tensors_in(v)]
    return []


# ------------------------------------------------------------------ frames
def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 2**20))
        if not chunk:
            raise ChannelClosed("the channel was closed")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def send_frame(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(struct.pack(">I", len(payload)) + payload)


def recv_frame(sock: socket.socket) -> bytes:
    (n,) = struct.unpack(">I", _recv_exact(sock, 4))
    if n > MAX_FRAME:
        raise BadMessage(f"a frame of {n} bytes is larger than the {MAX_FRAME} allowed")
    return _recv_exact(sock, n)


# ------------------------------------------------------------------ grader -> kernel
def send_call(sock: socket.socket, message: dict) -> None:
    """Send the grader's own objects to the kernel (pickled; the kernel is the one that unpickles)."""
    send_frame(sock, pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


_CALL_GLOBALS = {("collections", "OrderedDict"), ("torch", "device"), ("torch", "Size"), ("torch._C", "Generator"),
                 ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"),
                 ("torch.storage", "_load_from_bytes")}


class _CallUnpickler(pickle.Unpickler):
    """Reads the grader's calls: tensors, generators, dtypes and torch / course modules, nothing else."""

    def find_class(self, module: str, name: str):
        if (module, name) in _CALL_GLOBALS or (module == "torch" and isinstance(getattr(torch, name, None),
                                                                                 torch.dtype)):
            return super().find_class(module, name)
        if module.startswith(("torch.nn.modules.", "cs231n_gen.")):
            found = super().find_class(module, name)
            if isinstance(found, type) and issubclass(found, torch.nn.Module):
                return found
        raise BadMessage(f"a call may not carry {module}.{name}")


def recv_call(sock: socket.socket) -> dict:
    """Kernel side: the grader's message (see :func:`send_call`), read back with an allow-list of the
    classes probes are made of (the grader wrote it; the kernel is the one that reads it)."""
    return _CallUnpickler(io.BytesIO(recv_frame(sock))).load()


# ------------------------------------------------------------------ kernel -> grader: plain data
def encode(value) -> bytes:
    """Plain data (see the module docstring) to bytes; anything else raises ``TypeError``."""
    blobs: list[bytes] = []

    def walk(v, depth=0):
        if depth > 20:
            raise TypeError("nested more than 20 levels deep")
        if v is None or isinstance(v, (bool, int, str)):
            return v
        if isinstance(v, float):
            return v if math.isfinite(v) else {"$float": repr(v)}
        if isinstance(v, torch.Tensor):
            t = v.detach().to("cpu").contiguous()
            if str(t.dtype).removeprefix("torch.") not in _DTYPES:
                raise TypeError(f"a tensor of dtype {t.dtype}")
            blobs.append(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
            return {"$tensor": len(blobs) - 1, "dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape),
                    "grad": bool(v.requires_grad)}
        if isinstance(v, tuple):
            return {"$tuple": [walk(x, depth + 1) for x in v]}
        if isinstance(v, list):
            return [walk(x, depth + 1) for x in v]
        if isinstance(v, dict):
            if not all(isinstance(k, str) and not k.startswith("$") for k in v):
                raise TypeError("a dict whose keys are not plain strings")
            return {k: walk(x, depth + 1) for k, x in v.items()}
        raise TypeError(f"an object of type {type(v).__name__}")

    header = json.dumps(walk(value)).encode()
    sizes = [len(b) for b in blobs]
    head = json.dumps({"sizes": sizes}).encode()
    return struct.pack(">II", len(header), len(head)) + header + head + b"".join(blobs)


def decode(data: bytes, grad_flags: list | None = None):
    """Bytes from the kernel back to plain data; every tensor a fresh plain ``torch.Tensor``.

    ``grad_flags``, when given, receives for each tensor in order whether it required grad."""
    try:
        n_header, n_head = struct.unpack(">II", data[:8])
        header = json.loads(data[8:8 + n_header])
        sizes = json.loads(data[8 + n_header:8 + n_header + n_head])["sizes"]
    except (struct.error, ValueError, KeyError, TypeError, RecursionError) as err:
        raise BadMessage(f"not a message of plain data ({type(err).__name__})") from None
    if not (isinstance(sizes, list) and all(isinstance(s, int) and s >= 0 for s in sizes)):
        raise BadMessage("bad tensor sizes")
    offsets, start = [], 8 + n_header + n_head
    for s in sizes:
        offsets.append((start, start + s))
        start += s
    if start != len(data):
        raise BadMessage("the tensor bytes do not add up")

    def walk(v, depth=0):
        if depth > 22:
            raise BadMessage("nested too deep")
        if v is None or isinstance(v, (bool, int, str, float)):
            return v
        if isinstance(v, list):
            return [walk(x, depth + 1) for x in v]
        if not isinstance(v, dict):
            raise BadMessage(f"unexpected {type(v).__name__}")
        if "$tuple" in v:
            return tuple(walk(x, depth + 1) for x in v["$tuple"])
        if "$float" in v:
            if v["$float"] not in ("nan", "inf", "-inf"):
                raise BadMessage("bad float")
            return float(v["$float"])
        if "$tensor" in v:
            t = _tensor(v, offsets, data)
            if grad_flags is not None:
                grad_flags.append(v["grad"])
            return t
        return {str(k): walk(x, depth + 1) for k, x in v.items()}

    try:
        return walk(header)
    except RecursionError:
        raise BadMessage("nested too deep") from None


def _tensor(spec: dict, offsets, data: bytes) -> torch.Tensor:
    try:
        index, dtype, shape, grad = spec["$tensor"], _DTYPES[spec["dtype"]], spec["shape"], spec["grad"]
    except (KeyError, TypeError):
        raise BadMessage("bad tensor entry") from None
    if not (isinstance(index, int) and 0 <= index < len(offsets) and isinstance(shape, list) and len(shape) <= 16
            and all(isinstance(s, int) and s >= 0 for s in shape) and isinstance(grad, bool)):
        raise BadMessage("bad tensor entry")
    lo, hi = offsets[index]
    numel = math.prod(shape)
    itemsize = torch.empty((), dtype=dtype).element_size()
    if numel * itemsize != hi - lo:
        raise BadMessage(f"a tensor of shape {shape} and dtype {spec['dtype']} needs {numel * itemsize} bytes, "
                         f"got {hi - lo}")
    if numel == 0:
        t = torch.empty(shape, dtype=dtype)
    else:
        t = torch.frombuffer(bytearray(data[lo:hi]), dtype=dtype).reshape(shape).clone()
    assert type(t) is torch.Tensor
    return t


def send_data(sock: socket.socket, value) -> None:
    send_frame(sock, encode(value))


def recv_data(sock: socket.socket, grad_flags: list | None = None):
    return decode(recv_frame(sock), grad_flags)
