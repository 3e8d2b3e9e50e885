"""Where a submission runs: a bubblewrap sandbox (or, by explicit choice, none).

Student code (pytest, nbval, the kernel and everything they start) runs under ``bwrap``
(Debian/Ubuntu package ``bubblewrap``, what Flatpak uses; no daemon, no root needed) and sees:

- the Python environment and the system's libraries, **read-only**; the course package's
  own folder, read-only, with the graded exercises' reference functions removed
  (:func:`redacted_source`: their bodies raise, and their compiled caches are hidden), so
  no process in the sandbox can run them, whatever it does to the library in memory;
- its own scratch folder (read-write: the graded notebook, pytest's files), an empty ``/tmp``,
  and the grader's socket (:mod:`.remote`);
- nothing else: no home folder, no other submission, no release folder, no gradebook and its
  records (the secret salt among them), no network (its own network namespace, loopback
  only), a clean environment, its own PID namespace (everything it starts dies with it),
  no capabilities, a new session (no terminal to type into).

Limits enforced by the kernel, inherited by every process in the sandbox
(:func:`apply_limits`): CPU seconds, data segment size (memory), file size and open files
(rlimits), and where this process may create control groups, a pids and a memory cgroup
for the whole submission (:class:`ControlGroup`). A grader killed mid-run leaves its groups
and work folders behind; the next grader removes them, with whatever still runs in them
(:func:`sweep_stale`).
"""
from __future__ import annotations

import ast
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cs231n_gen
from ..exercises._harness import REFERENCE_MARK

KINDS = ("auto", "bwrap", "none")
INSIDE_SCRATCH = "/scratch"
INSIDE_CHANNEL = "/grader"
INSTALL_HINT = ("no sandbox is available: install bubblewrap (Debian/Ubuntu: sudo apt-get install bubblewrap; "
                "Fedora: sudo dnf install bubblewrap), or pass --no-sandbox to grade without one (every row is "
                "then flagged 'unsandboxed')")


def bwrap_path() -> str | None:
    """The ``bwrap`` executable, or None."""
    return shutil.which("bwrap")


def bwrap_problem() -> str | None:
    """None when bubblewrap can make its namespaces here; else what stops it (one short run, ~20 ms)."""
    exe = bwrap_path()
    if exe is None:
        return INSTALL_HINT
    try:
        out = subprocess.run([exe, "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "true"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"bubblewrap could not start: {err}"
    if out.returncode != 0:
        return (f"bubblewrap is installed but cannot make its namespaces here ({out.stderr.strip()[:200]}): "
                "allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, or the "
                "distribution's AppArmor setting for bwrap), grade as root, or pass --no-sandbox")
    return None


def choose(sandbox: str) -> str:
    """``"bwrap"`` or ``"none"`` for a requested sandbox; ``ValueError`` saying how to get one if missing."""
    if not isinstance(sandbox, str) or sandbox not in KINDS:
        raise ValueError(f"sandbox must be one of {', '.join(KINDS)}, got {sandbox!r}")
    if sandbox == "none":
        return "none"
    problem = bwrap_problem()
    if problem is not None:
        raise ValueError(problem)
    return "bwrap"


# ------------------------------------------------------------------ the library, less its answers
def redacted_source(source: str, names: list[str], dotted: dict[str, str]) -> str:
    """``source`` with the bodies of the functions ``names`` (``f`` or ``Class.method``) replaced by a
    ``raise`` naming them (``dotted[name]``, the full name); their docstrings stay."""
    tree = ast.parse(source)
    spans = []
    for name in names:
        node, scope = None, tree.body
        for part in name.split("."):
            node = next((n for n in scope if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                         and n.name == part), None)
            if node is None:
                raise ValueError(f"{dotted[name]} is not defined in its module's source")
            scope = node.body
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            raise ValueError(f"{dotted[name]} is not a function")
        body = node.body
        keep = 1 if (isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                     and isinstance(body[0].value.value, str)) else 0
        first = body[keep] if keep < len(body) else None
        start = (first.lineno if first is not None else body[-1].end_lineno + 1) - 1
        indent = " " * (body[0].col_offset)
        spans.append((start, node.end_lineno, indent, dotted[name]))
    lines = source.splitlines(keepends=True)
    for start, end, indent, full in sorted(spans, reverse=True):
        lines[start:end] = [f"{indent}raise RuntimeError({full + ' ' + REFERENCE_MARK + ': write it yourself'!r})\n"]
    return "".join(lines)


def redactions(references: list[str]) -> list[tuple[Path, str]]:
    """(module file, its source less the references) for each library file that holds one."""
    package = Path(cs231n_gen.__file__).resolve().parent
    by_file: dict[Path, dict[str, str]] = {}
    for full in references:
        parts = full.split(".")
        if parts[0] != "cs231n_gen":
            raise ValueError(f"a reference must be in cs231n_gen, got {full!r}")
        for cut in range(len(parts) - 1, 0, -1):
            path = package.joinpath(*parts[1:cut]).with_suffix(".py") if cut > 1 else package / "__init__.py"
            if path.is_file():
                by_file.setdefault(path, {})[".".join(parts[cut:])] = full
                break
        else:
            raise ValueError(f"no module file for the reference {full!r}")
    return [(path, redacted_source(path.read_text(), list(names), names)) for path, names in by_file.items()]


# ------------------------------------------------------------------ the command
def _python_roots() -> list[Path]:
    """Folders the Python environment lives in (read-only in the sandbox)."""
    roots = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    roots.add(Path(cs231n_gen.__file__).resolve().parent)  # an editable install lives outside the prefix
    exe = Path(sys.executable)
    roots.add(exe.parent)
    roots.add(exe.resolve().parent.parent)
    ordered = sorted(roots, key=lambda p: len(p.parts))
    return [p for i, p in enumerate(ordered) if not any(q in p.parents for q in ordered[:i]) and p.exists()]


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    for name in ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "nsswitch.conf", "passwd", "group", "localtime",
                 "hosts", "alternatives"):
        path = Path("/etc") / name
        if path.exists():
            args += ["--ro-bind", str(path), str(path)]
    return args


def bwrap_command(command: list[str], *, scratch: Path, channel: Path, env: dict,
                  redacted: list[tuple[Path, Path]]) -> list[str]:
    """``command`` wrapped in bwrap: see the module docstring. ``redacted``: (library file, its
    redacted copy) pairs bound over the originals."""
    args = [bwrap_path() or "bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--hostname", "sandbox", "--clearenv",
            # the fresh /tmp first: a Python environment that lives under /tmp is bound on top of it
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/dev/shm"]
    args += _system_binds()
    for root in _python_roots():
        args += ["--ro-bind", str(root), str(root)]
    for original, copy in redacted:
        args += ["--ro-bind", str(copy), str(original)]
        cache = original.parent / "__pycache__"
        for pyc in cache.glob(f"{original.stem}.*.pyc") if cache.is_dir() else []:
            args += ["--ro-bind", "/dev/null", str(pyc)]
    args += ["--bind", str(scratch), INSIDE_SCRATCH, "--ro-bind", str(channel), INSIDE_CHANNEL,
             "--chdir", INSIDE_SCRATCH]
    for key, value in env.items():
        args += ["--setenv", key, value]
    return args + ["--"] + command


# ------------------------------------------------------------------ limits
GROUP_PREFIX = "cs231n-gen-"  # + the grader's pid + a random suffix: cgroups and work folders
WORK_PREFIX = "cs231n-gen-grade-"


def group_name() -> str:
    """A control group's name for a submission graded by this process."""
    return f"{GROUP_PREFIX}{os.getpid()}-{os.urandom(4).hex()}"


def work_prefix() -> str:
    """The prefix of this process's temporary work folders (its pid in it, for :func:`sweep_stale`)."""
    return f"{WORK_PREFIX}{os.getpid()}-"


def _owner_alive(name: str, prefix: str) -> bool:
    match = re.match(re.escape(prefix) + r"(\d+)-", name)
    if match is None:
        return True  # not ours to judge
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _empty_and_remove(folder: Path) -> bool:
    """Kill every process in the control group ``folder``, then remove it (True once it is gone)."""
    import signal

    try:
        for pid in (folder / "cgroup.procs").read_text().split():
            os.kill(int(pid), signal.SIGKILL)
    except (OSError, ValueError):
        pass
    for _ in range(50):  # the group empties as the killed processes are reaped
        try:
            folder.rmdir()
            return True
        except OSError:
            time.sleep(0.02)
    return False


def sweep_stale() -> list[str]:
    """What graders killed mid-run left behind (a kill between bwrap's start and its sandbox being
    set up leaves a process that waits forever): kill the bwrap processes whose command line names a
    dead grader's work folder and the processes in its control groups, then remove the groups and
    the work folders. Returns what was removed."""
    import psutil

    removed = []
    marker = re.compile(re.escape(f"/{WORK_PREFIX}") + r"(\d+)-")
    for proc in psutil.process_iter(["pid", "cmdline"]):  # without cgroups: bwrap's own command line names
        cmdline = proc.info["cmdline"] or []                # the work folder, and so the grader that ran it
        if not (cmdline and Path(cmdline[0]).name == "bwrap"):
            continue
        owners = {m.group(1) for arg in cmdline for m in [marker.search(arg)] if m}
        if owners and not any(_owner_alive(f"{WORK_PREFIX}{pid}-", WORK_PREFIX) for pid in owners):
            try:
                proc.kill()
                removed.append(f"process {proc.info['pid']}")
            except psutil.Error:
                pass
    for base in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup/memory")):
        for folder in base.glob(f"{GROUP_PREFIX}*"):
            if not folder.is_dir() or _owner_alive(folder.name, GROUP_PREFIX):
                continue
            if _empty_and_remove(folder):
                removed.append(str(folder))
    for folder in Path(tempfile.gettempdir()).glob(f"{WORK_PREFIX}*"):
        if folder.is_dir() and not _owner_alive(folder.name, WORK_PREFIX):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(str(folder))
    return removed


class ControlGroup:
    """A pids and a memory cgroup for one submission, where this process may create them (v2 or v1)."""

    def __init__(self, name: str, *, pids: int, memory_bytes: int):
        self.dirs: list[Path] = []
        self.limits: list[str] = []
        for controller, files in (("pids", {"pids.max": str(pids)}),
                                  ("memory", {"memory.max": str(memory_bytes),
                                              "memory.limit_in_bytes": str(memory_bytes)})):
            folder = self._make(controller, name)
            if folder is None:
                continue
            wrote = False
            for fname, value in files.items():
                try:
                    (folder / fname).write_text(value)
                    wrote = True
                except OSError:
                    pass
            if wrote:
                self.dirs.append(folder)
                self.limits.append(controller)
            else:
                self._remove(folder)

    @staticmethod
    def _make(controller: str, name: str) -> Path | None:
        unified = Path("/sys/fs/cgroup")
        candidates = []
        if (unified / "cgroup.controllers").exists() and controller in (unified / "cgroup.controllers").read_text():
            candidates.append(unified)
        candidates.append(unified / controller)  # v1
        for base in candidates:
            folder = base / name
            try:
                folder.mkdir()
                if (folder / "cgroup.procs").exists():
                    return folder
                folder.rmdir()
            except OSError:
                continue
        return None

    def join(self) -> None:
        """Move the calling process into the groups (called in the child before it runs bwrap)."""
        for folder in self.dirs:
            try:
                (folder / "cgroup.procs").write_text(str(os.getpid()))
            except OSError:
                pass

    @staticmethod
    def _remove(folder: Path) -> None:
        try:
            folder.rmdir()
        except OSError:
            pass

    def close(self) -> None:
        """Kill whatever is left in the groups, then remove them."""
        for folder in self.dirs:
            _empty_and_remove(folder)


def apply_limits(*, cpu_seconds: int, memory_mb: int) -> None:
    """Kernel-enforced rlimits for the calling process and its descendants (run in the child)."""
    def cap(which, value):
        try:
            _, hard = resource.getrlimit(which)
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            pass

    cap(resource.RLIMIT_CPU, int(cpu_seconds))
    cap(resource.RLIMIT_DATA, int(memory_mb) * 2**20)
    cap(resource.RLIMIT_FSIZE, 512 * 2**20)
    cap(resource.RLIMIT_NOFILE, 1024)
    cap(resource.RLIMIT_CORE, 0)
    if os.getuid() != 0:  # root is exempt from RLIMIT_NPROC; the pids cgroup covers it there
        cap(resource.RLIMIT_NPROC, 4096)
