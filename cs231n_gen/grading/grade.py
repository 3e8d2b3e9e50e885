"""``cs231n-gen grade``: run every submission's exercises against the released lecture.

For each submission (one notebook per student and lecture) the grader builds the
notebook to run from the *released* one: the setup cell, a sealing cell
(:mod:`cs231n_gen.grading.kernel`), then for each exercise the student's exercise cell
and a grader cell that hands the student's function to the grader. Edited or deleted
check and lecture cells are thereby restored, and reported. ``full=True`` runs the whole
released lecture (in quick mode) instead.

The notebook runs under pytest + nbval (``--nbval-lax``) in a sandbox
(:mod:`cs231n_gen.grading.sandbox`: no network, no files but the release's notebook and its
own scratch folder, nothing outliving it, kernel-enforced limits), with a per-cell timeout,
a wall-clock limit and a memory limit watched from here; a kernel that dies is noticed at
once. The verdict is not computed in the sandbox: each check runs in this process and
calls the student's function through the channel of :mod:`cs231n_gen.grading.remote`,
getting plain data back.

Each finished submission is written at once to ``<gradebook>.records/`` (one JSON file,
atomically) and the CSV is rebuilt from the records (atomically), so an interrupted run
loses nothing and a rerun grades only what is missing or has changed.
"""
from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import hashlib
import io
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import nbformat

from .._io import write_text
from .._validate import check_bool, check_file_path, check_int, check_real
from ..threads import usable_cpus
from ..exercises import CHECKS
from . import remote
from . import sandbox as _sandbox
from .notebooks import cell_digest, cell_kind, defined_functions, read_notebook, source_of, write_notebook
from .release import load_release
from .screen import screen

STATUSES = ("passed", "failed", "tampered", "timeout", "crashed", "memory")
COLUMNS = ("student", "lecture", "exercise", "points", "max_points", "status", "message", "flags")
SUMMARY_COLUMNS = ("student", "points", "max_points", "exercises", "passed", "flagged")
RECORD_FORMAT = 2


@dataclasses.dataclass(frozen=True)
class Submission:
    student: str
    lecture: str | None  # None: could not tell which released lecture this is
    path: Path


@dataclasses.dataclass
class Limits:
    timeout: float = 60.0  # seconds per cell
    memory_mb: int = 3000  # resident memory of the kernel and pytest together
    full: bool = False
    sandbox: str = "bwrap"  # "bwrap", or "none" (every row flagged "unsandboxed")


# ------------------------------------------------------------------ finding submissions
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,99}")


def _lecture_of(path: Path, manifest: dict, folder_form: bool) -> str | None:
    if folder_form and path.stem in manifest["lectures"]:
        return path.stem
    if len(manifest["lectures"]) == 1:
        return next(iter(manifest["lectures"]))
    try:
        cells = read_notebook(path).cells
    except ValueError:
        return None
    ids = {c.get("id") for c in cells}
    overlap = {stem: len(ids & {c["id"] for c in entry["cells"]}) for stem, entry in manifest["lectures"].items()}
    best = max(overlap, key=overlap.get)
    return best if overlap[best] > 0 else None


def find_submissions(submissions_dir, manifest: dict) -> list[Submission]:
    """``NAME.ipynb`` (student NAME) and ``NAME/LECTURE.ipynb`` under ``submissions_dir``, sorted."""
    root = check_file_path("submissions_dir", submissions_dir)
    if not root.is_dir():
        raise ValueError(f"submissions_dir must be a folder of notebooks, got {str(root)!r} (not a folder)")
    found = []
    for path in sorted(root.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_file() and path.suffix == ".ipynb":
            found.append((path.stem, path, False))
        elif path.is_dir() and not path.is_symlink():
            found += [(path.name, p, True) for p in sorted(path.glob("*.ipynb")) if not p.name.startswith(".")]
    subs, seen = [], set()
    for student, path, folder_form in found:
        if not _NAME.fullmatch(student):
            raise ValueError(f"submissions_dir: {str(path)!r}: a student name must be letters, digits and _.@+- "
                             f"(at most 100), got {student!r}")
        sub = Submission(student, _lecture_of(path, manifest, folder_form), path)
        key = (sub.student, sub.lecture or path.name)
        if key in seen:
            raise ValueError(f"submissions_dir: student {student!r} has two submissions for lecture {sub.lecture!r} "
                             f"(the second is {str(path)!r}): keep one")
        seen.add(key)
        subs.append(sub)
    return subs


# ------------------------------------------------------------------ the notebook to run
def _code(source: str, **meta) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(source, metadata=meta)


def build_graded(released, entry: dict, student, *, seed: int, scratch_inside: str, channel_inside: str,
                 full: bool):
    """The notebook to run, the probe seed per exercise, the done token and file, the flags for the whole
    submission and per exercise, and the number of added cells."""
    by_id = {c.get("id"): c for c in student.cells if isinstance(c.get("id"), str)}
    released_ids = {c["id"] for c in entry["cells"]}
    exercises = entry["exercises"]
    protected = {e["check"] for e in exercises} | {"run_check", "seal", "_cs231n_gen_grader"}
    flags, per_exercise = [], {e["name"]: [] for e in exercises}

    # What the student changed outside the exercise cells: restored, and reported.
    edited, deleted = {"check": [], "other": []}, {"check": [], "other": []}
    exercise_cell = {e["exercise_cell"]: e for e in exercises}
    check_cell = {e["check_cell"]: e for e in exercises}
    for recorded in entry["cells"]:
        if recorded["kind"] == "exercise":
            continue
        kind = "check" if recorded["kind"] == "check" else "other"
        mine = by_id.get(recorded["id"])
        what = check_cell[recorded["id"]]["name"] if kind == "check" else recorded["id"]
        if mine is None:
            deleted[kind].append(what)
        elif cell_digest(mine) != recorded["digest"]:
            edited[kind].append(what)
    for name in edited["check"]:
        per_exercise[name].append("check cell edited (restored)")
    for name in deleted["check"]:
        per_exercise[name].append("check cell deleted (restored)")
    if edited["other"]:
        flags.append(f"{len(edited['other'])} lecture cells edited (restored)")
    if deleted["other"]:
        flags.append(f"{len(deleted['other'])} lecture cells deleted (restored)")
    added = [c for c in student.cells if c.get("id") not in released_ids]

    # The student's exercise cells: by id, else by nbgrader grade id, else by the function defined.
    sources, used = {}, set()
    for e in exercises:
        cell = by_id.get(e["exercise_cell"])
        if cell is None:
            cell = next((c for c in student.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id")
                         == e["name"] and c.get("cell_type") == "code"), None)
        if cell is None:
            cell = next((c for c in reversed(student.cells) if c.get("cell_type") == "code"
                         and e["function"] in defined_functions(source_of(c))), None)
        if cell is None:
            per_exercise[e["name"]].append("exercise cell missing (the released one was run)")
            sources[e["name"]] = None
        else:
            used.add(cell.get("id"))
            sources[e["name"]] = source_of(cell)
            per_exercise[e["name"]] += [f"tamper: {f}" for f in screen(source_of(cell), protected)]
    added = [c for c in added if c.get("id") not in used]
    if added:
        flags.append(f"{len(added)} added cells (not run)")

    seeds = {e["name"]: seed + exercises.index(e) for e in exercises}
    done_token = secrets.token_hex(16)
    done_file = f"{scratch_inside}/done"
    nb = nbformat.v4.new_notebook()
    nb.metadata = released.metadata
    seal = _code("import cs231n_gen.grading.kernel as _cs231n_gen_grader\n_cs231n_gen_grader.seal()",
                 grader="seal")
    cells, sealed = [], False
    for cell in released.cells:
        kind = cell_kind(cell)
        if kind == "setup":
            cells += [_code(source_of(cell), grader="setup"), seal]
            sealed = True
        elif kind == "exercise":
            e = exercise_cell[cell["id"]]
            src = sources[e["name"]]
            cells.append(_code(source_of(cell) if src is None else src, grader="exercise", exercise=e["name"]))
        elif kind == "check":
            e = check_cell[cell["id"]]
            cells.append(_code(
                "import cs231n_gen.grading.kernel as _cs231n_gen_grader\n"
                f"_cs231n_gen_grader.serve({e['name']!r}, {e['function']!r}, {channel_inside!r})",
                grader="check", exercise=e["name"]))
        elif full and sealed:
            cells.append(cell if cell.get("cell_type") != "code" else _code(source_of(cell)))
    cells.append(_code(f"with open({done_file!r}, 'a') as _f:\n    _f.write({done_token!r} + '\\n')",
                       grader="done"))
    nb.cells = cells
    return nb, seeds, done_token, done_file, flags, per_exercise, len(added)


# ------------------------------------------------------------------ running it, contained
@dataclasses.dataclass
class RunOutcome:
    stopped: str | None  # None, "timeout", "memory" or "crashed" (the kernel died)
    seconds: float
    cells: dict  # code-cell index -> (outcome, message) from the JUnit report
    log: str


def _die_with_parent():  # runs in the child before exec: pytest dies when the grader does
    os.setsid()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _tree(proc):
    import psutil

    try:
        root = psutil.Process(proc.pid)
        return [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _kill(procs):
    import psutil

    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass


def _junit(path: Path) -> dict:
    cells = {}
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return cells
    for case in root.iter("testcase"):
        m = re.fullmatch(r"Cell (\d+)", case.get("name", ""))
        if not m:
            continue
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                outcome, message = "failed", (child.get("message") or "") + "\n" + (child.text or "")
            elif child.tag == "skipped":
                outcome, message = "skipped", child.get("message") or ""
        cells[int(m.group(1))] = (outcome, message)
    return cells


def _child_setup(limits: Limits, deadline: float, group) -> None:  # in the child, before it runs the sandbox
    _die_with_parent()
    _sandbox.apply_limits(cpu_seconds=int(deadline) + 5, memory_mb=int(limits.memory_mb * 1.25) + 256)
    if group is not None:
        group.join()


def run_graded(nb, work: Path, limits: Limits, done_token: str, threads: int, *, entry: dict, seeds: dict,
               redacted: list) -> tuple[RunOutcome, dict]:
    """Execute the graded notebook with pytest + nbval in the sandbox, within the limits, while the
    listener judges each exercise; return how the run ended and the verdicts."""
    import psutil

    scratch, channel = work / "scratch", work / "channel"
    notebook = scratch / "graded.ipynb"
    write_notebook(nb, notebook)
    (scratch / "pytest.ini").write_text("[pytest]\n")
    code_cells = sum(c.cell_type == "code" for c in nb.cells)
    deadline = 60 + code_cells * limits.timeout + 30
    boxed = limits.sandbox == "bwrap"
    inside = _sandbox.INSIDE_SCRATCH if boxed else str(scratch)
    settings = dict(CS231N_GEN_QUICK="1", CS231N_GEN_CACHE_RUNS="0", CS231N_GEN_CACHE=f"{inside}/cache",
                    MPLBACKEND="Agg", MPLCONFIGDIR=f"{inside}/matplotlib", IPYTHONDIR=f"{inside}/ipython",
                    JUPYTER_RUNTIME_DIR=f"{inside}/runtime", PYTHONDONTWRITEBYTECODE="1",
                    OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "pytest", notebook.name, "--nbval-lax", "--nbval-current-env",
           f"--nbval-cell-timeout={limits.timeout:g}", "-p", "no:cacheprovider", "-q", "--junitxml=junit.xml",
           "-o", "addopts=", "--rootdir", inside]
    if boxed:
        env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": inside, "TMPDIR": "/tmp",
               "LANG": "C.UTF-8", **settings}
        cmd = _sandbox.bwrap_command(cmd, scratch=scratch, channel=channel, env=env, redacted=redacted)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    else:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "JPY_"))}
        env.update(settings)
    group = None
    if boxed:
        group = _sandbox.ControlGroup(_sandbox.group_name(), pids=512,
                                      memory_bytes=int(limits.memory_mb * 1.5) * 2**20)
    listener = remote.Listener(channel / "channel.sock", entry["exercises"], seeds, limits.timeout)
    done_file = scratch / "done"
    start = time.monotonic()
    stopped, kernel = None, None
    try:
        with open(work / "pytest.log", "wb") as log:
            proc = subprocess.Popen(cmd, cwd=scratch, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL,
                                    preexec_fn=lambda: _child_setup(limits, deadline, group))
            try:
                while proc.poll() is None:
                    time.sleep(0.1)
                    tree = _tree(proc)
                    try:
                        rss = sum(p.memory_info().rss for p in tree)
                    except psutil.Error:
                        rss = 0
                    if kernel is None:
                        kernel = next((p for p in tree[1:] if "ipykernel" in " ".join(_cmdline(p))), None)
                    if time.monotonic() - start > deadline:
                        stopped = "timeout"
                    elif rss > limits.memory_mb * 2**20:
                        stopped = "memory"
                    elif kernel is not None and not _alive(kernel) and not _finished(done_file, done_token):
                        time.sleep(0.5)  # nbval notices too; give it a moment to write its report
                        if not _finished(done_file, done_token):
                            stopped = "crashed"
                    if stopped:
                        _kill(_tree(proc))
                        proc.wait()
                        break
            finally:
                if proc.poll() is None:
                    _kill(_tree(proc))
                    proc.wait()
                if kernel is not None:
                    _kill([kernel])
    finally:
        if group is not None:
            group.close()
        listener.close()
    text = (work / "pytest.log").read_text(errors="replace")
    return RunOutcome(stopped, time.monotonic() - start, _junit(scratch / "junit.xml"), text[-4000:]), listener.verdicts


def _alive(p) -> bool:
    import psutil

    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _cmdline(p):
    try:
        return p.cmdline()
    except Exception:  # gone, or not ours to read
        return []


def _finished(results: Path, done_token: str) -> bool:
    try:
        return done_token in results.read_text(errors="replace").split("\n")
    except OSError:
        return False


# ------------------------------------------------------------------ verdicts
def _first_line(text: str, limit: int = 300) -> str:
    line = next((ln.strip() for ln in str(text).splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _cell_error(cells: dict, index: int) -> tuple[str, str]:
    outcome, message = cells.get(index, ("missing", ""))
    return outcome, message


_OUT_OF_MEMORY = ("can't allocate memory", "MemoryError", "out of memory")


def judge(nb, outcome: RunOutcome, verdicts: dict, entry: dict, flags: dict, unsandboxed: bool = False) -> list[dict]:
    """One row per exercise from the grader's own verdicts, the JUnit outcomes and how the run ended.

    Only the verdicts (decided in this process) can pass an exercise; what came from the sandbox
    (JUnit outcomes, the kernel's reports) only explains a failure or flags it."""
    code_index, i = {}, 0
    for cell in nb.cells:
        if cell.cell_type == "code":
            meta = cell.metadata
            code_index[(meta.get("grader"), meta.get("exercise"))] = i
            i += 1
    setup_outcome, setup_message = _cell_error(outcome.cells, code_index[("setup", None)])
    rows = []
    for e in entry["exercises"]:
        name = e["name"]
        its_flags = list(flags[name]) + (["unsandboxed"] if unsandboxed else [])
        tampered = [f for f in its_flags if f.startswith("tamper:")]
        ex_out, ex_msg = _cell_error(outcome.cells, code_index[("exercise", name)])
        ck_out, ck_msg = _cell_error(outcome.cells, code_index[("check", name)])
        found = [v for v in verdicts.get(name, []) if v.done or v.failure]
        if len(found) == 1:
            item = found[0]
            tampered += [f"tamper: {t}" for t in item.tamper]
            message = _first_line(item.message)
            status = "passed" if item.passed else "failed"
            if item.references:
                its_flags += [f"calls the reference {r}" for r in item.references]
                message = _first_line(f"{name} calls the library's own solution ({', '.join(item.references)}): "
                                      "no points. " + message)
            elif item.failure == "timeout" or (ex_out == "failed" and "Timeout" in ex_msg) or (
                    item.failure == "crashed" and ("Timeout" in ck_msg or "timed out" in ck_msg)):
                status = "timeout"
                message = "the exercise ran past the time limit: " + message
            elif item.failure == "crashed" or any(m in item.message for m in _OUT_OF_MEMORY):
                status = {"memory": "memory", "timeout": "timeout"}.get(outcome.stopped, "crashed")
                if any(m in item.message for m in _OUT_OF_MEMORY):
                    status = "memory"
                message = {"memory": "the kernel used more memory than the grader allows; the run was stopped",
                           "timeout": "the notebook ran past the grader's total time limit; the run was stopped"}.get(
                    status, "the kernel died (the submission exited or crashed the Python process) while this "
                            "exercise was checked")
            elif item.failure == "protocol":
                tampered.append("tamper: the kernel's answers were not plain data")
        elif len(found) > 1:
            status, message = "tampered", "more than one verdict was recorded for this exercise"
            tampered.append("tamper: several verdicts (student code connected to the grader's channel)")
        elif outcome.stopped == "memory":
            status, message = "memory", "the kernel used more memory than the grader allows; the run was stopped"
        elif outcome.stopped == "timeout":
            status, message = "timeout", "the notebook ran past the grader's total time limit; the run was stopped"
        elif outcome.stopped == "crashed":
            status, message = "crashed", ("the kernel died (the submission exited or crashed the Python process) "
                                          "before this exercise was checked")
        elif setup_outcome == "failed":
            status, message = "crashed", "the setup cell raised: " + _first_line(_strip_ansi(setup_message))
        elif "Timeout" in ex_msg or "Timeout" in ck_msg or "timed out" in ck_msg:
            status, message = "timeout", "a cell ran past the per-cell time limit and was interrupted"
        else:
            status = "crashed"
            message = "no verdict was recorded: " + _first_line(_strip_ansi(ck_msg or ex_msg or outcome.log[-300:]))
        if tampered:  # whatever happened after, the run cannot be trusted
            status = "tampered"
            message = f"not graded, tampering: {sorted(set(tampered))[0][len('tamper: '):]}. {message}"
        its_flags = [f for f in its_flags if not f.startswith("tamper:")] + sorted(set(tampered))
        rows.append({"exercise": name, "points": e["points"] if status == "passed" else 0,
                     "max_points": e["points"], "status": status, "message": message, "flags": its_flags})
    return rows


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text or "")


# ------------------------------------------------------------------ one submission
def grade_submission(sub: Submission, release_dir: Path, manifest: dict, *, seed: int, limits: Limits,
                     threads: int = 1) -> dict:
    """Grade one submission; return its record (rows, flags, seconds)."""
    start = time.monotonic()
    if sub.lecture is None:
        return _record(sub, None, [{"exercise": "?", "points": 0, "max_points": 0, "status": "crashed",
                                    "message": "cannot tell which released lecture this notebook is", "flags": []}],
                       [], start, limits)
    entry = manifest["lectures"][sub.lecture]
    try:
        student = read_notebook(sub.path)
    except ValueError as err:
        return _record(sub, entry, [{"exercise": e["name"], "points": 0, "max_points": e["points"],
                                     "status": "crashed", "message": _first_line(str(err)), "flags": []}
                                    for e in entry["exercises"]], [], start, limits)
    released = read_notebook(Path(release_dir) / entry["notebook"])
    boxed = limits.sandbox == "bwrap"
    with tempfile.TemporaryDirectory(prefix=_sandbox.work_prefix()) as work:
        work = Path(work)
        for sub_dir in ("scratch", "channel", "redacted"):
            (work / sub_dir).mkdir()
        nb, seeds, done, _, flags, per_ex, _ = build_graded(
            released, entry, student, seed=seed, full=limits.full,
            scratch_inside=_sandbox.INSIDE_SCRATCH if boxed else str(work / "scratch"),
            channel_inside=(_sandbox.INSIDE_CHANNEL if boxed else str(work / "channel")) + "/channel.sock")
        redacted = []
        if boxed and not limits.full:  # in full mode the lecture's own cells need the references
            refs = [r for e in entry["exercises"] for r in getattr(CHECKS.get(e["check"]), "references", ())]
            for i, (original, text) in enumerate(_sandbox.redactions(refs)):
                copy = work / "redacted" / f"{i}-{original.name}"
                copy.write_text(text)
                redacted.append((original, copy))
        outcome, verdicts = run_graded(nb, work, limits, done, threads, entry=entry, seeds=seeds, redacted=redacted)
        rows = judge(nb, outcome, verdicts, entry, per_ex, unsandboxed=not boxed)
    return _record(sub, entry, rows, flags, start, limits)


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def _record(sub, entry, rows, flags, start, limits) -> dict:
    return {"format": RECORD_FORMAT, "student": sub.student, "lecture": sub.lecture or "?",
            "submission": str(sub.path), "submission_digest": _digest(sub.path),
            "release_digest": entry["digest"] if entry else "", "full": limits.full, "sandbox": limits.sandbox,
            "rows": rows, "flags": flags, "seconds": round(time.monotonic() - start, 2)}


# ------------------------------------------------------------------ the gradebook
def _records_dir(out: Path) -> Path:
    return out.with_name(out.name + ".records")


def _salt(records: Path) -> str:
    path = records / "salt"
    if not path.exists():
        write_text(path, secrets.token_hex(16))
    return path.read_text().strip()


def _record_path(records: Path, sub: Submission) -> Path:
    return records / f"{sub.student}--{sub.lecture or sub.path.stem}.json"


def _load_record(path: Path, sub: Submission, entry, limits: Limits) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        return None
    same = (record.get("submission_digest") == _digest(sub.path) and record.get("full") == limits.full
            and record.get("sandbox") == limits.sandbox
            and record.get("release_digest") == (entry["digest"] if entry else ""))
    return record if same else None


def write_gradebook(out: Path, records: list[dict]) -> None:
    """The CSV (one row per student, lecture and exercise) and ``<name>.summary.csv`` (per student)."""
    rows = []
    for rec in sorted(records, key=lambda r: (r["student"], r["lecture"])):
        for row in rec["rows"]:
            rows.append({"student": rec["student"], "lecture": rec["lecture"], **row,
                         "flags": "; ".join(list(rec["flags"]) + list(row["flags"]))})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(out, buf.getvalue())
    per = {}
    for row in rows:
        s = per.setdefault(row["student"], {"student": row["student"], "points": 0, "max_points": 0,
                                             "exercises": 0, "passed": 0, "flagged": 0})
        s["points"] += row["points"]
        s["max_points"] += row["max_points"]
        s["exercises"] += 1
        s["passed"] += row["status"] == "passed"
        s["flagged"] += bool(row["flags"])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(per[k] for k in sorted(per))
    write_text(summary_path(out), buf.getvalue())


def summary_path(out) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".summary.csv")


def grade(submissions_dir, release_dir, out, *, jobs: int = 1, timeout: float = 60.0, memory_mb: int = 3000,
          full: bool = False, sandbox: str = "auto", progress=print) -> list[dict]:
    """Grade every submission into the gradebook ``out``; return the records (see the module docstring).

    ``sandbox``: ``"auto"`` or ``"bwrap"`` (bubblewrap; ``ValueError`` saying how to install it when it
    is missing), or ``"none"``, which runs student code as this user and flags every row ``unsandboxed``."""
    jobs = check_int("jobs", jobs, minimum=1)
    timeout = check_real("timeout", timeout, minimum=1.0)
    memory_mb = check_int("memory_mb", memory_mb, minimum=300)
    full = check_bool("full", full)
    if not isinstance(sandbox, str):
        raise ValueError(f"sandbox must be one of {', '.join(_sandbox.KINDS)}, got {sandbox!r}")
    kind = _sandbox.choose(sandbox)
    if kind == "bwrap":
        _sandbox.sweep_stale()
    if progress is not None and not callable(progress):
        raise ValueError(f"progress must be a function taking a line of text, or None, got {progress!r}")
    out = check_file_path("out", out)
    if out.suffix != ".csv":
        raise ValueError(f"out must be a .csv file, got {str(out)!r}")
    if not out.parent.is_dir():
        raise ValueError(f"out's folder {str(out.parent)!r} does not exist")
    manifest = load_release(release_dir)
    subs = find_submissions(submissions_dir, manifest)
    limits = Limits(timeout=timeout, memory_mb=memory_mb, full=full, sandbox=kind)
    records_dir = _records_dir(out)
    records_dir.mkdir(exist_ok=True)
    salt = _salt(records_dir)
    done, todo = {}, []
    for sub in subs:
        entry = manifest["lectures"].get(sub.lecture) if sub.lecture else None
        rec = _load_record(_record_path(records_dir, sub), sub, entry, limits)
        if rec is None:
            todo.append(sub)
        else:
            done[sub] = rec
    write_gradebook(out, list(done.values()))
    if progress:
        progress(f"grading {len(todo)} submissions ({len(done)} already graded) with {jobs} "
                 f"{'worker' if jobs == 1 else 'workers'}, "
                 + ("each in a bubblewrap sandbox" if kind == "bwrap" else "UNSANDBOXED (--no-sandbox)"))
    threads = max(1, usable_cpus() // jobs)
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(grade_submission, sub, Path(release_dir), manifest, limits=limits, threads=threads,
                               seed=_seed(salt, sub)): sub for sub in todo}
        for future in concurrent.futures.as_completed(futures):
            sub = futures[future]
            rec = future.result()
            write_text(_record_path(records_dir, sub), json.dumps(rec, indent=1))
            done[sub] = rec
            write_gradebook(out, list(done.values()))
            if progress:
                statuses = ", ".join(f"{r['exercise']} {r['status']}" for r in rec["rows"])
                progress(f"[{len(done)}/{len(subs)}] {sub.student} {sub.lecture}: {statuses} ({rec['seconds']:.1f} s)")
    return [done[s] for s in subs]


def _seed(salt: str, sub: Submission) -> int:
    key = f"{salt}:{sub.student}:{sub.lecture}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:6], "big")
