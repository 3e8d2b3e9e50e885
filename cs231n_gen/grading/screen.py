"""Static screening of a student's exercise cell for code that could fool a check.

The grader restores every check cell and runs each check from references taken before
any student code ran (:mod:`cs231n_gen.grading.kernel`), and compares the library,
``builtins`` and ``sys.modules`` before and after. This screen adds a reading of the
source itself: it names the constructs that change what other code sees (assigning into
a module, ``setattr``, ``sys.modules``, ``builtins``, redefining a check) and the tools
needed to get around the run-time comparison (``gc``, ``inspect``, ``ctypes``, frames,
``exec``), and the reach outside the exercise that the sandbox contains (the network,
starting processes, walking or changing folders, files named by absolute path, a subclass
of ``torch.Tensor``). A finding costs the exercise its points and is shown in the
gradebook's ``flags`` for the instructor to read; ordinary solutions never use these.
"""
from __future__ import annotations

import ast

from .._validate import check_text

_MODULE_ROOTS = {"cs231n_gen", "torch", "F", "nn", "np", "numpy", "math", "sys", "os", "builtins", "json",
                 "functools", "random"}
_FORBIDDEN_IMPORTS = {"builtins", "gc", "ctypes", "inspect", "importlib", "threading", "multiprocessing", "_thread",
                      "signal", "cs231n_gen.grading", "IPython", "traceback", "linecache", "pdb", "faulthandler",
                      # reach outside the exercise: network, processes, raw files
                      "socket", "subprocess", "pty", "urllib", "http", "requests", "ftplib", "smtplib", "asyncio",
                      "select", "selectors", "mmap", "fcntl", "resource", "marshal", "runpy", "zipimport", "shutil"}
_FORBIDDEN_OS = {"system", "popen", "fork", "forkpty", "kill", "killpg", "setsid", "walk", "listdir", "scandir",
                 "remove", "unlink", "rmdir", "removedirs", "rename", "renames", "replace", "mkdir", "makedirs",
                 "chdir", "open", "symlink", "link", "chmod", "chown", "truncate"}
_FORBIDDEN_OS_PREFIXES = ("spawn", "exec", "posix_spawn")
_FORBIDDEN_CALLS = {"setattr", "delattr", "exec", "eval", "compile", "__import__", "globals", "vars", "get_ipython",
                    "breakpoint"}
_FORBIDDEN_NAMES = {"__builtins__", "__dict__", "__code__", "__globals__", "__closure__", "__defaults__",
                    "__kwdefaults__", "_getframe", "f_globals", "f_locals", "f_back", "settrace", "setprofile",
                    "__class__",
                    "__subclasses__", "__mro__", "__bases__", "__import__", "In", "Out", "_ih", "_oh", "_i", "_ii",
                    "_iii", "tb_frame", "gi_frame", "cr_frame"}


def _root(node):
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _iterable(name, value):
    try:
        return list(value)
    except TypeError:
        raise ValueError(f"{name} must be a collection of names (str), got {value!r}") from None


def screen(source: str, protected=()) -> list[str]:
    """Findings for one cell's source; ``protected`` are names the student must not rebind (the checks)."""
    source = check_text("source", source)
    if isinstance(protected, str) or not all(isinstance(n, str) for n in _iterable("protected", protected)):
        raise ValueError(f"protected must be a collection of names (str), got {protected!r}")
    protected = set(protected)
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []  # it cannot run either: the check reports the error
    modules = set(_MODULE_ROOTS)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            modules |= {a.asname or a.name for a in node.names}
    sys_names = {"sys"} | {a.asname for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
                           if a.name == "sys" and a.asname}
    os_names = {"os"} | {a.asname for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
                         if a.name == "os" and a.asname}
    findings = []

    def note(node, what):
        findings.append(f"line {getattr(node, 'lineno', '?')}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                if any(name == bad or name.startswith(bad + ".") for bad in _FORBIDDEN_IMPORTS):
                    note(node, f"imports {name}")
            if isinstance(node, ast.ImportFrom) and node.module == "os":
                for alias in node.names:
                    if alias.name in _FORBIDDEN_OS or alias.name.startswith(_FORBIDDEN_OS_PREFIXES):
                        note(node, f"uses os.{alias.name} (files or processes outside the exercise)")
            for alias in node.names:
                if (alias.asname or alias.name) in protected:
                    note(node, f"imports over the check helper {alias.asname or alias.name}")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in protected:
            note(node, f"redefines the check helper {node.name}")
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            stack = list(targets)
            while stack:
                target = stack.pop()
                if isinstance(target, (ast.Tuple, ast.List)):
                    stack += target.elts
                elif isinstance(target, ast.Starred):
                    stack.append(target.value)
                elif isinstance(target, ast.Name) and target.id in protected:
                    note(node, f"rebinds the check helper {target.id}")
                elif isinstance(target, (ast.Attribute, ast.Subscript)) and _root(target) in modules:
                    note(node, f"assigns into the module {_root(target)} ({ast.unparse(target)})")
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            for name in set(node.names) & protected:
                note(node, f"rebinds the check helper {name}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FORBIDDEN_CALLS:
            note(node, f"calls {node.func.id}()")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and (node.args[0].value.startswith(("/", "~")) or ".." in node.args[0].value)):
            note(node, f"opens a file outside its folder ({node.args[0].value[:60]!r})")
        elif (isinstance(node, ast.Attribute) and _root(node) in os_names
              and (node.attr in _FORBIDDEN_OS or node.attr.startswith(_FORBIDDEN_OS_PREFIXES))):
            note(node, f"uses os.{node.attr} (files or processes outside the exercise)")
        elif isinstance(node, ast.ClassDef) and any(ast.unparse(b).split(".")[-1] == "Tensor" for b in node.bases):
            note(node, f"defines a subclass of torch.Tensor ({node.name})")
        elif isinstance(node, ast.Attribute) and node.attr in _FORBIDDEN_NAMES:
            note(node, f"uses .{node.attr}")
        elif isinstance(node, ast.Attribute) and node.attr == "modules" and _root(node) in sys_names:
            note(node, f"uses {ast.unparse(node)}")
        elif isinstance(node, ast.Name) and node.id in _FORBIDDEN_NAMES:
            note(node, f"uses {node.id}")
    return sorted(set(findings), key=lambda f: (int(f.split()[1].rstrip(":")) if f.split()[1][0].isdigit() else 0, f))
