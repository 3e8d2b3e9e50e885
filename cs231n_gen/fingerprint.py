"""Content fingerprints: what a cached training run is keyed by.

A trained model may be reused only when everything that made it is the same: the
initial weights, the data, the loss function, the settings, the random state and the
code. :func:`fingerprint` hashes a value by its *content*:

- plain values, tensors and arrays by their bytes (dtype and shape included);
- lists, tuples, dicts, dataclasses and ordinary objects by their parts;
- a function by its bytecode, constants, default arguments, closure values, and the
  values of the globals it reads (a notebook's ``lambda m, b, g: loss(m, b, P, g)``
  changes when ``P`` does), recursively;
- a module (``nn.Module``) by its class code and its state;
- code from this library, torch or NumPy by name only: :func:`code_version` covers it.

Anything it cannot read by content (an open file, a socket) raises
:class:`NotFingerprintable`, and the caller trains without the cache.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import sys
import types
from pathlib import Path

import numpy as np
import torch

_MAX_DEPTH = 24
_NAMED_ONLY = ("cs231n_gen", "torch", "numpy", "builtins", "math", "functools", "typing", "collections",
               "sklearn", "scipy", "matplotlib", "ipywidgets", "tqdm")


class NotFingerprintable(ValueError):
    """A value whose content cannot be hashed, so it cannot key a cache."""


def _from_named_package(obj) -> bool:
    module = getattr(obj, "__module__", None) or ""
    return module.split(".")[0] in _NAMED_ONLY


def _globals_read(code) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _globals_read(const)
    return names


def _code(code, h) -> None:
    h.update(code.co_code)
    h.update(repr(code.co_names).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _code(const, h)
        else:
            h.update(repr(const).encode())


class _Hasher:
    def __init__(self):
        self.h = hashlib.sha256()
        self.active: set[int] = set()  # ids on the current path: cycles are hashed as a marker

    def tag(self, text: str) -> None:
        self.h.update(text.encode())
        self.h.update(b";")

    def feed(self, value, depth: int = 0, where: str = "value") -> None:
        if depth > _MAX_DEPTH:
            raise NotFingerprintable(f"{where} nests deeper than {_MAX_DEPTH} levels")
        if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
            self.tag(f"{type(value).__name__}:{value!r}")
            return
        if isinstance(value, (torch.dtype, torch.device, torch.Size, Path)):
            self.tag(f"{type(value).__name__}:{value!r}")
            return
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu()
            self.tag(f"tensor{t.dtype}{tuple(t.shape)}")
            self.h.update(_tensor_bytes(t))
            return
        if isinstance(value, np.ndarray):
            self.tag(f"array{value.dtype}{value.shape}")
            self.h.update(np.ascontiguousarray(value).tobytes())
            return
        if isinstance(value, np.generic):
            self.tag(f"{type(value).__name__}:{value!r}")
            return
        if id(value) in self.active:
            self.tag("cycle")
            return
        self.active.add(id(value))
        try:
            self._compound(value, depth + 1, where)
        finally:
            self.active.discard(id(value))

    def _compound(self, value, depth, where) -> None:
        if isinstance(value, (list, tuple)):
            self.tag(f"{type(value).__name__}{len(value)}")
            for i, item in enumerate(value):
                self.feed(item, depth, f"{where}[{i}]")
        elif isinstance(value, (set, frozenset)):
            self.tag(f"set{len(value)}")
            for item in sorted(value, key=repr):
                self.feed(item, depth, f"{where} item")
        elif isinstance(value, dict):
            self.tag(f"dict{len(value)}")
            for key in sorted(value, key=lambda k: (type(k).__name__, repr(k))):
                self.feed(key, depth, f"{where} key")
                self.feed(value[key], depth, f"{where}[{key!r}]")
        elif isinstance(value, types.ModuleType):
            self.tag(f"module:{value.__name__}")
        elif isinstance(value, functools.partial):
            self.tag("partial")
            self.feed(value.func, depth, f"{where}.func")
            self.feed(value.args, depth, f"{where}.args")
            self.feed(value.keywords, depth, f"{where}.keywords")
        elif isinstance(value, types.MethodType):
            self.tag("method")
            self.feed(value.__func__, depth, f"{where}.__func__")
            self.feed(value.__self__, depth, f"{where}.__self__")
        elif isinstance(value, types.FunctionType):
            self._function(value, depth, where)
        elif isinstance(value, (types.BuiltinFunctionType, types.BuiltinMethodType)):
            self.tag(f"builtin:{getattr(value, '__module__', '')}.{value.__qualname__}")
        elif isinstance(value, type):
            self._class(value, depth, where)
        elif isinstance(value, torch.Generator):
            self.tag("generator")
            self.feed(value.get_state(), depth, f"{where}.get_state()")
        elif isinstance(value, torch.nn.Module):
            self.tag("nn.Module")
            for module in value.modules():
                self._class(type(module), depth, where)
                self.tag(f"training:{module.training}")
                plain = {k: v for k, v in vars(module).items()
                         if not k.startswith("_") and (v is None or isinstance(v, (bool, int, float, str, tuple)))}
                self.feed(plain, depth, f"the settings of {type(module).__name__}")
            self.feed(dict(value.state_dict()), depth, f"{where}.state_dict()")
        elif dataclasses.is_dataclass(value):
            self._class(type(value), depth, where)
            self.feed({f.name: getattr(value, f.name) for f in dataclasses.fields(value)}, depth, where)
        elif hasattr(value, "__dict__") and not callable(getattr(value, "read", None)):
            self._class(type(value), depth, where)
            self.feed(dict(vars(value)), depth, f"vars({where})")
        else:
            raise NotFingerprintable(f"{where} is a {type(value).__name__}, whose content cannot be hashed")

    def _class(self, cls, depth, where) -> None:
        self.tag(f"class:{cls.__module__}.{cls.__qualname__}")
        if _from_named_package(cls):
            return
        for klass in cls.__mro__:  # code defined outside the library (a notebook's own model)
            if _from_named_package(klass):
                continue
            for name, member in sorted(vars(klass).items()):
                if isinstance(member, (types.FunctionType, staticmethod, classmethod, property)):
                    fn = getattr(member, "__func__", None) or getattr(member, "fget", None) or member
                    if isinstance(fn, types.FunctionType):
                        self.tag(f"def {name}")
                        _code(fn.__code__, self.h)

    def _function(self, fn, depth, where) -> None:
        name = f"{fn.__module__}.{fn.__qualname__}"
        self.tag(f"function:{name}")
        if _from_named_package(fn):
            return
        _code(fn.__code__, self.h)
        self.feed(fn.__defaults__, depth, f"the defaults of {name}")
        self.feed(fn.__kwdefaults__, depth, f"the keyword defaults of {name}")
        cells = [c.cell_contents for c in (fn.__closure__ or ()) if _filled(c)]
        self.feed(cells, depth, f"the closure of {name}")
        for global_name in sorted(_globals_read(fn.__code__)):
            if global_name in fn.__globals__:
                self.tag(f"global {global_name}")
                self.feed(fn.__globals__[global_name], depth, f"the global {global_name!r} read by {name}")


def _tensor_bytes(t: torch.Tensor) -> bytes:
    """The values of a CPU tensor in C order, whatever its strides (a size-1 dimension
    may carry stride 0, which a byte view refuses)."""
    if t.dtype == torch.bfloat16:
        t = t.float()  # lossless, and NumPy has no bfloat16
    try:
        return t.numpy().tobytes()
    except TypeError:  # another dtype NumPy lacks (float8...): its float32 values identify it
        return t.float().numpy().tobytes()


def _filled(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def fingerprint(value) -> str:
    """A SHA-256 (hex) of ``value``'s content; raises :class:`NotFingerprintable`."""
    hasher = _Hasher()
    hasher.feed(value)
    return hasher.h.hexdigest()


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """A hash of this library's source files, its version, torch's version and Python's:
    any change to the code that trains a model retires what the old code trained."""
    from . import __version__

    h = hashlib.sha256(f"{__version__}|{torch.__version__}|{sys.version_info[:2]}".encode())
    root = Path(__file__).resolve().parent
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]
