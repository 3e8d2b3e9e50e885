"""``cs231n-gen grade``: run every submission's exercises against the released lecture.

For each submission (one notebook per student and lecture) the grader builds the
notebook to run from the *released* one: the setup cell, a sealing cell
(:mod:`cs231n_gen.grading.kernel`), then for each exercise the student's exercise cell
and a grader cell that runs the sealed check with a seed the student cannot know.
Edited or deleted check and lecture cells are thereby restored, and reported.
``full=True`` runs the whole released lecture (in quick mode) instead.

The notebook runs under pytest + nbval (``--nbval-lax``) in a process of its own, with a
per-cell timeout, a wall-clock limit and a memory limit watched from here; a kernel
that dies is noticed at once. A verdict counts only when the grader cell's outcome (from
pytest's JUnit report) and the verdict line it wrote (with a one-time token) agree.

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
from .notebooks import cell_digest, cell_kind, defined_functions, read_notebook, source_of, write_notebook
from .release import load_release
from .screen import screen

STATUSES = ("passed", "failed", "tampered", "timeout", "crashed", "memory")
COLUMNS = ("student", "lecture", "exercise", "points", "max_points", "status", "message", "flags")
SUMMARY_COLUMNS = ("student", "points", "max_points", "exercises", "passed", "flagged")
RECORD_FORMAT = 1


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


def build_graded(released, entry: dict, student, *, seed: int, workdir: Path, full: bool):
    """The notebook to run, the tokens per exercise, the flags for the whole submission and per exercise."""
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

    tokens = {e["name"]: secrets.token_hex(16) for e in exercises}
    done_token = secrets.token_hex(16)
    results = workdir / f"results-{secrets.token_hex(8)}.jsonl"
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
                f"_cs231n_gen_grader.run_check({e['name']!r}, {e['check']!r}, {e['function']!r}, "
                f"seed={seed + exercises.index(e)}, token={tokens[e['name']]!r}, results={str(results)!r})",
                grader="check", exercise=e["name"]))
        elif full and sealed:
            cells.append(cell if cell.get("cell_type") != "code" else _code(source_of(cell)))
    cells.append(_code(f"with open({str(results)!r}, 'a') as _f:\n    _f.write({done_token!r} + '\\n')",
                       grader="done"))
    nb.cells = cells
    return nb, tokens, done_token, results, flags, per_exercise, len(added)


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


def run_graded(nb, workdir: Path, limits: Limits, done_token: str, results: Path, threads: int) -> RunOutcome:
    """Execute the graded notebook with pytest + nbval in its own process tree, within the limits."""
    import psutil

    notebook = workdir / "graded.ipynb"
    write_notebook(nb, notebook)
    (workdir / "pytest.ini").write_text("[pytest]\n")
    code_cells = sum(c.cell_type == "code" for c in nb.cells)
    deadline = 60 + code_cells * limits.timeout + 30
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "JPY_"))}
    env.update(CS231N_GEN_QUICK="1", CS231N_GEN_CACHE_RUNS="0", CS231N_GEN_CACHE=str(workdir / "cache"),
               MPLBACKEND="Agg", IPYTHONDIR=str(workdir / "ipython"), JUPYTER_RUNTIME_DIR=str(workdir / "runtime"),
               PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "pytest", notebook.name, "--nbval-lax", "--nbval-current-env",
           f"--nbval-cell-timeout={limits.timeout:g}", "-p", "no:cacheprovider", "-q", "--junitxml=junit.xml",
           "-o", "addopts=", "--rootdir", str(workdir)]
    start = time.monotonic()
    stopped, kernel = None, None
    with open(workdir / "pytest.log", "wb") as log:
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
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
                elif kernel is not None and not _alive(kernel) and not _finished(results, done_token):
                    time.sleep(0.5)  # nbval notices too; give it a moment to write its report
                    if not _finished(results, done_token):
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
    text = (workdir / "pytest.log").read_text(errors="replace")
    return RunOutcome(stopped, time.monotonic() - start, _junit(workdir / "junit.xml"), text[-4000:])


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


def _verdict_lines(results: Path, tokens: dict) -> dict:
    lines = {name: [] for name in tokens}
    try:
        text = results.read_text(errors="replace")
    except OSError:
        return lines
    for raw in text.splitlines():
        try:
            item = json.loads(raw)
        except ValueError:
            continue
        if isinstance(item, dict) and tokens.get(item.get("exercise")) == item.get("token"):
            lines[item["exercise"]].append(item)
    return lines


def _cell_error(cells: dict, index: int) -> tuple[str, str]:
    outcome, message = cells.get(index, ("missing", ""))
    return outcome, message


def judge(nb, outcome: RunOutcome, tokens: dict, results: Path, entry: dict, flags: dict) -> list[dict]:
    """One row per exercise from the verdict lines, the JUnit outcomes and how the run ended."""
    code_index, i = {}, 0
    for cell in nb.cells:
        if cell.cell_type == "code":
            meta = cell.metadata
            code_index[(meta.get("grader"), meta.get("exercise"))] = i
            i += 1
    lines = _verdict_lines(results, tokens)
    setup_outcome, setup_message = _cell_error(outcome.cells, code_index[("setup", None)])
    rows = []
    for e in entry["exercises"]:
        name = e["name"]
        its_flags = list(flags[name])
        tampered = [f for f in its_flags if f.startswith("tamper:")]
        ex_out, ex_msg = _cell_error(outcome.cells, code_index[("exercise", name)])
        ck_out, ck_msg = _cell_error(outcome.cells, code_index[("check", name)])
        found = lines[name]
        if len(found) == 1:
            item = found[0]
            tampered += [f"tamper: {t}" for t in item.get("tamper", [])]
            message = _first_line(item.get("message", ""))
            if item.get("passed") and ck_out != "passed" and not tampered:
                tampered.append("tamper: the verdict line says passed but the check cell did not pass")
            status = "tampered" if tampered else ("passed" if item.get("passed") else "failed")
            if ex_out == "failed" and "Timeout" in ex_msg:
                status = "timeout"
                message = "the exercise cell ran past the time limit: " + message
        elif len(found) > 1:
            status, message = "tampered", "more than one verdict was written for this exercise"
            tampered.append("tamper: several verdict lines")
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
    with tempfile.TemporaryDirectory(prefix="cs231n-gen-grade-") as work:
        work = Path(work)
        nb, tokens, done, results, flags, per_ex, _ = build_graded(released, entry, student, seed=seed,
                                                                   workdir=work, full=limits.full)
        outcome = run_graded(nb, work, limits, done, results, threads)
        rows = judge(nb, outcome, tokens, results, entry, per_ex)
    return _record(sub, entry, rows, flags, start, limits)


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def _record(sub, entry, rows, flags, start, limits) -> dict:
    return {"format": RECORD_FORMAT, "student": sub.student, "lecture": sub.lecture or "?",
            "submission": str(sub.path), "submission_digest": _digest(sub.path),
            "release_digest": entry["digest"] if entry else "", "full": limits.full,
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
          full: bool = False, progress=print) -> list[dict]:
    """Grade every submission into the gradebook ``out``; return the records (see the module docstring)."""
    jobs = check_int("jobs", jobs, minimum=1)
    timeout = check_real("timeout", timeout, minimum=1.0)
    memory_mb = check_int("memory_mb", memory_mb, minimum=300)
    full = check_bool("full", full)
    if progress is not None and not callable(progress):
        raise ValueError(f"progress must be a function taking a line of text, or None, got {progress!r}")
    out = check_file_path("out", out)
    if out.suffix != ".csv":
        raise ValueError(f"out must be a .csv file, got {str(out)!r}")
    if not out.parent.is_dir():
        raise ValueError(f"out's folder {str(out.parent)!r} does not exist")
    manifest = load_release(release_dir)
    subs = find_submissions(submissions_dir, manifest)
    limits = Limits(timeout=timeout, memory_mb=memory_mb, full=full)
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
                 f"{'worker' if jobs == 1 else 'workers'}")
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
