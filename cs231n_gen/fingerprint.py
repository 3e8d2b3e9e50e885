"""Content fingerprints: what a cached training run is keyed by.

A trained model may be reused only when everything that made it is the same: the
initial weights, the data, the loss function, the settings, the random state and the
code. :func:`fingerprint` hashes a value by its *content*:

- plain values, tensors and arrays by their bytes (dtype and shape included);
- lists, tuples, dicts, dataclasses and ordinary objects by their parts;
- a function by its code (:func:`code_digest`: a def's syntax tree, a lambda's source
  text, the same under every Python version), default arguments, closure values, and the values of the globals it
  reads (a notebook's ``lambda m, b, g: loss(m, b, P, g)`` changes when ``P`` does),
  recursively;
- a module (``nn.Module``) by its class code and its state;
- code from this library, torch or NumPy by name only: :func:`code_version` covers it.

Anything it cannot read by content (an open file, a socket) raises
:class:`NotFingerprintable`, and the caller trains without the cache.
"""
from __future__ import annotations

import ast
import dataclasses
import dis
import functools
import hashlib
import inspect
import sys
import textwrap
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
    """The global names the code loads (not attribute names: ``x.device`` does not read a
    notebook's global ``device``), its nested functions' and comprehensions' included."""
    names = {i.argval for i in dis.get_instructions(code) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _globals_read(const)
    return names


def _bytecode(code, h) -> None:
    h.update(code.co_code)
    h.update(repr(code.co_names).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _bytecode(const, h)
        else:
            h.update(repr(const).encode())


def _check_function(fn):
    if not isinstance(getattr(fn, "__code__", None), types.CodeType):
        raise ValueError(f"fn must be a Python function or method, got {type(fn).__name__}")
    return fn


def _source(fn) -> tuple[str, int] | None:
    """The lines of ``fn``'s source, dedented, and the indentation taken off; None where Python keeps none."""
    try:
        lines, _ = inspect.getsourcelines(fn)
    except Exception:  # no file, a stale line cache, a tokenizer error: the caller falls back to bytecode
        return None
    raw = "".join(lines)
    text = textwrap.dedent(raw)
    return text, len(raw) - len(raw.lstrip()) - (len(text) - len(text.lstrip()))


def source_text(fn) -> str | None:
    """The source of function ``fn`` as written (for a lambda: the lines from its own to its
    end), without blank lines, comment-only lines, trailing spaces or the block's
    indentation; None where Python keeps no source (code run from a string)."""
    found = _source(_check_function(fn))
    return None if found is None else _without_layout(found[0])


def _without_layout(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))


def _arguments(code) -> tuple[str, ...]:
    return code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]


def _lambda_place(code, found: tuple[str, int]) -> int | None:
    """Which of the lambdas that begin on the first line of its source ``found`` (:func:`_source`)
    with its argument names the lambda of ``code`` is (0, 1, ...), found by where its body
    begins; None when it is the only one (or Python keeps no columns), so the common case
    hashes alike under every Python version."""
    try:
        tree = ast.parse(found[0])
    except SyntaxError:  # a lambda inside a longer expression: its lines alone do not parse
        return None
    same = sorted((node for node in ast.walk(tree) if isinstance(node, ast.Lambda) and node.lineno == 1
                   and tuple(a.arg for a in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs])
                   == _arguments(code)), key=lambda node: node.col_offset)
    positions = getattr(code, "co_positions", None)
    if len(same) < 2 or positions is None:
        return None
    columns = [col for line, _, col, _ in positions() if line == code.co_firstlineno and col]
    body = min(columns, default=None)
    for place, node in enumerate(same):
        if body is not None and node.body.col_offset + found[1] == body:
            return place
    return None


def _syntax(node) -> str:
    """A syntax tree as text that is the same under every Python version since 3.10: node
    names and their non-empty fields (newer versions add fields that are empty in older
    code), no positions, no load/store contexts, no docstrings."""
    if isinstance(node, ast.AST):
        fields = []
        for name, value in ast.iter_fields(node):
            if name in ("ctx", "type_comment") or value is None or value == []:
                continue
            if name == "body" and isinstance(value, list) and _is_docstring(value[0]):
                value = value[1:]
            fields.append(f"{name}={_syntax(value)}")
        return f"{type(node).__name__}({','.join(fields)})"
    if isinstance(node, list):
        return f"[{','.join(_syntax(v) for v in node)}]"
    return repr(node)


def _is_docstring(node) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def code_digest(fn, h) -> None:
    """Feed what function ``fn`` computes into hash ``h``, the same under every Python
    version (Colab's is not the course machine's, and a model trained under one must be
    recognised under the other): a ``def``'s syntax tree (comments, layout and docstring do
    not count), a lambda's source text with its place among lambdas on its line, and the
    bytecode (which differs between versions) only where Python keeps no source."""
    code = _check_function(fn).__code__
    if not callable(getattr(h, "update", None)):
        raise ValueError(f"h must be a hashlib hash (with an update method), got {type(h).__name__}")
    found = _source(fn)
    if found is None:
        h.update(b"bytecode:")
        _bytecode(code, h)
        return
    if fn.__name__ != "<lambda>":
        try:
            h.update(b"syntax:" + _syntax(ast.parse(found[0])).encode())
            return
        except SyntaxError:
            pass
    h.update(b"source:" + _without_layout(found[0]).encode() + repr(_arguments(code)).encode())
    place = _lambda_place(code, found) if fn.__name__ == "<lambda>" else None
    if place is not None:
        h.update(f"lambda {place}".encode())


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
                        code_digest(fn, self.h)

    def _function(self, fn, depth, where) -> None:
        name = f"{fn.__module__}.{fn.__qualname__}"
        self.tag(f"function:{name}")
        if _from_named_package(fn):
            return
        code_digest(fn, self.h)
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
