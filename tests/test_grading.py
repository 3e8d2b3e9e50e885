"""Release and grading: unit checks, a corpus of submissions with known verdicts, kill and resume."""
import json
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest

from cs231n_gen.cli import main
from cs231n_gen.grading.grade import find_submissions, grade
from cs231n_gen.grading.notebooks import (cell_kind, exercises_of, read_notebook, source_of, strip_solutions)
from cs231n_gen.grading.release import load_release, release
from cs231n_gen.grading.screen import screen

sys.path.insert(0, str(Path(__file__).parent))
import grading_corpus  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LECTURES = sorted((ROOT / "lectures").glob("[0-9]*.ipynb"))


# ------------------------------------------------------------------ release
def test_strip_solutions_keeps_the_signature_and_indentation():
    src = "def f(x):\n    \"\"\"Doc.\"\"\"\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION\n"
    assert strip_solutions(src) == ("def f(x):\n    \"\"\"Doc.\"\"\"\n    # YOUR CODE HERE\n"
                                    "    raise NotImplementedError\n")
    for bad in ("### BEGIN SOLUTION\nx\n", "x\n### END SOLUTION\n", "### BEGIN SOLUTION\n### BEGIN SOLUTION\n"):
        with pytest.raises(ValueError, match="SOLUTION"):
            strip_solutions(bad)


def test_release_of_every_lecture(tmp_path):
    manifest = release(LECTURES, tmp_path)
    assert manifest == json.loads((tmp_path / "release.json").read_text())
    assert load_release(tmp_path) == manifest
    for path in LECTURES:
        entry = manifest["lectures"][path.stem]
        nb = nbformat.read(tmp_path / path.name, as_version=4)
        nbformat.validate(nb)
        assert len(entry["exercises"]) >= 2 and entry["max_points"] == len(entry["exercises"])
        for cell in nb.cells:
            kind, meta = cell_kind(cell), cell.metadata
            assert meta["deletable"] is False and meta["editable"] is (kind == "exercise")
            assert meta["nbgrader"]["solution"] is (kind == "exercise")
            assert meta["nbgrader"]["locked"] is (kind != "exercise")
            assert meta["nbgrader"]["grade"] is (kind == "check")
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None
            assert "BEGIN SOLUTION" not in source_of(cell)
            if kind == "exercise":
                assert "# YOUR CODE HERE\n" in source_of(cell) and "raise NotImplementedError" in source_of(cell)
        assert len({c.metadata["nbgrader"]["grade_id"] for c in nb.cells}) == len(nb.cells)
        assert [e.name for e in exercises_of(nb)] == [e["name"] for e in entry["exercises"]]
    # A released notebook changed afterwards is refused.
    first = tmp_path / LECTURES[0].name
    first.write_text(first.read_text().replace("Setup", "Set-up", 1))
    with pytest.raises(ValueError, match="changed after the release"):
        load_release(tmp_path)


def test_bad_inputs_name_the_problem(tmp_path, capsys):
    with pytest.raises(ValueError, match="not a readable notebook"):
        (tmp_path / "x.ipynb").write_text("{")
        read_notebook(tmp_path / "x.ipynb")
    with pytest.raises(ValueError, match="does not exist"):
        read_notebook(tmp_path / "missing.ipynb")
    with pytest.raises(ValueError, match="release.json"):
        load_release(tmp_path)
    assert main(["grade", str(tmp_path), "--release", str(tmp_path), "--out", str(tmp_path / "g.csv")]) == 2
    assert "release.json" in capsys.readouterr().err
    release([LECTURES[0]], tmp_path / "rel")
    with pytest.raises(ValueError, match="jobs must be >= 1"):
        grade(tmp_path, tmp_path / "rel", tmp_path / "g.csv", jobs=0)
    with pytest.raises(ValueError, match="out must be a .csv"):
        grade(tmp_path, tmp_path / "rel", tmp_path / "g.txt")


def test_grading_without_its_extra_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nbval" else real(name, *a))
    assert main(["grade", str(tmp_path), "--release", str(tmp_path), "--out", str(tmp_path / "g.csv")]) == 2
    assert 'grading needs nbval' in (err := capsys.readouterr().err) and 'pip install "cs231n-gen[grade]"' in err


def test_submissions_are_named_by_file_or_folder(tmp_path):
    manifest = release(LECTURES[:2], tmp_path / "rel")
    subs = tmp_path / "subs"
    (subs / "bob").mkdir(parents=True)
    (subs / "alice.ipynb").write_bytes((tmp_path / "rel" / LECTURES[1].name).read_bytes())  # told by its cells
    (subs / "bob" / LECTURES[0].name).write_bytes(LECTURES[0].read_bytes())
    found = {(s.student, s.lecture) for s in find_submissions(subs, manifest)}
    assert found == {("alice", LECTURES[1].stem), ("bob", LECTURES[0].stem)}
    (subs / "bad name.ipynb").write_text("{}")
    with pytest.raises(ValueError, match="student name"):
        find_submissions(subs, manifest)


# ------------------------------------------------------------------ static screen and run-time seal
def test_screen_finds_tampering_and_passes_every_solution():
    protected = {"check_rf_loss"}
    cases = {
        "import cs231n_gen.exercises\ncs231n_gen.exercises.check_rf_loss = None": "assigns into the module",
        "setattr(x, 'y', 1)": "calls setattr",
        "import sys\nsys.modules['a'] = 1": "sys.modules",
        "import builtins\nbuiltins.len = None": "imports builtins",
        "__builtins__['len'] = None": "__builtins__",
        "def check_rf_loss(f):\n    pass": "redefines the check helper",
        "check_rf_loss = print": "rebinds the check helper",
        "from cs231n_gen.exercises import check_shift as check_rf_loss": "imports over the check helper",
        "import gc": "imports gc",
        "f.__code__ = g.__code__": "__code__",
        "exec('1')": "calls exec",
        "import traceback": "imports traceback",
        "x = In[-1]": "uses In",
    }
    for source, finding in cases.items():
        found = screen(source, protected)
        assert any(finding in f for f in found), (source, found)
    for path in LECTURES:  # the course's own solutions must not be flagged
        for cell in read_notebook(path).cells:
            if cell_kind(cell) == "exercise":
                assert screen(source_of(cell), protected | {"check_shift"}) == [], path.name


def test_seal_notices_what_student_code_changes():
    script = textwrap.dedent("""
        import builtins, sys, torch
        import cs231n_gen.grading.kernel as k
        import cs231n_gen.exercises.rectified_flow as rf
        k.seal()
        assert k._differences() == [], k._differences()
        rf.close = lambda *a, **kw: True
        builtins.len = lambda x: 0
        torch.Tensor.__eq__ = lambda a, b: True
        sys.modules["cs231n_gen.paths"] = object()
        found = k._differences()
        print(found)
        assert "cs231n_gen.exercises.rectified_flow.close was changed" in found
        assert "builtins.len was changed" in found
        assert "torch.Tensor.__eq__ was added" in found
        assert "sys.modules['cs231n_gen.paths'] was replaced" in found
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


# ------------------------------------------------------------------ the corpus
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    expected = grading_corpus.build(root)
    start = time.perf_counter()
    records = grade(root / "submissions", root / "release", root / "book.csv", jobs=2, timeout=10,
                    memory_mb=1500, progress=None)
    print(f"graded {len(records)} submissions with -j 2 in {time.perf_counter() - start:.1f} s")
    return root, expected, records


def test_every_verdict_of_the_corpus(corpus):
    root, expected, records = corpus
    assert len(records) == len(expected)
    wrong = []
    for rec in records:
        want = expected[(rec["student"], rec["lecture"])]
        assert [r["exercise"] for r in rec["rows"]] == list(want), rec["student"]
        for row in rec["rows"]:
            status, message, flag = want[row["exercise"]]
            flags = "; ".join(rec["flags"] + row["flags"])
            if (row["status"] != status or message not in row["message"] or (flag and flag not in flags)
                    or (flag is None and status not in ("tampered",) and row["flags"])):
                wrong.append(f"{rec['student']}/{row['exercise']}: got {row['status']} {row['message']!r} "
                             f"[{flags}], expected {status} {message!r} [{flag}]")
            assert row["points"] == (row["max_points"] if row["status"] == "passed" else 0)
    assert not wrong, "\n".join(wrong)


def test_gradebook_files(corpus):
    root, expected, records = corpus
    rows = (root / "book.csv").read_text().splitlines()
    assert rows[0] == "student,lecture,exercise,points,max_points,status,message,flags"
    assert len(rows) == 1 + sum(len(r["rows"]) for r in records)
    summary = (root / "book.summary.csv").read_text().splitlines()
    assert summary[0] == "student,points,max_points,exercises,passed,flagged"
    assert "correct02,2,2,2,2,0" in summary and "empty04,0,2,2,0,0" in summary
    assert not list(root.glob(".*.tmp")) and not list((root / "book.csv.records").glob(".*.tmp"))


def test_killed_grader_resumes_to_the_same_gradebook(corpus, tmp_path):
    root = corpus[0]
    subs = tmp_path / "subs"
    subs.mkdir()
    for name in ("correct04", "empty04", "wrong04_0", "wrong04_1", "wrong04_2"):
        shutil.copytree(root / "submissions" / name, subs / name)
    whole, parts = tmp_path / "whole.csv", tmp_path / "parts.csv"
    for out in (whole, parts):  # the same secret salt, so the same probes
        (tmp_path / f"{out.name}.records").mkdir()
        (tmp_path / f"{out.name}.records" / "salt").write_text("a-fixed-salt")
    grade(subs, root / "release", whole, jobs=2, progress=None)
    cmd = [sys.executable, "-m", "cs231n_gen", "grade", str(subs), "--release", str(root / "release"),
           "--out", str(parts), "-j", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = tmp_path / "parts.csv.records"
    deadline = time.monotonic() + 120
    while len(list(records.glob("*.json"))) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(records.glob("*.json")))
    assert 2 <= done < 5, done
    # The gradebook is rebuilt right after each record is written, so a kill between the two
    # leaves it one record behind; either way it holds whole rows of finished submissions only.
    book = parts.read_text().splitlines()
    assert len(book) in (1 + 2 * done, 1 + 2 * (done - 1)), (len(book), done)
    assert set(book) <= set(whole.read_text().splitlines())
    assert subprocess.run(cmd, capture_output=True, timeout=300).returncode == 0
    assert parts.read_text() == whole.read_text()
    # A third run grades nothing again.
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert "grading 0 submissions (5 already graded)" in out.stdout


def test_student_check_command(corpus, capsys):
    root = corpus[0]
    assert main(["check", str(root / "submissions" / "wrong04_1" / "04_noise_schedules.ipynb"),
                 "--release", str(root / "release")]) == 1
    out = capsys.readouterr().out
    assert "logit_normal" in out and "failed" in out and "0/2 points" in out
    assert main(["check", str(ROOT / "lectures" / "04_noise_schedules.ipynb")]) == 0
    assert "2/2 points" in capsys.readouterr().out


def test_every_lecture_full_marks_for_its_solutions_zero_when_released(tmp_path):
    release(LECTURES, tmp_path / "rel")
    for path in LECTURES:
        (tmp_path / "subs" / "solutions").mkdir(parents=True, exist_ok=True)
        (tmp_path / "subs" / "released").mkdir(exist_ok=True)
        shutil.copy(path, tmp_path / "subs" / "solutions" / path.name)
        shutil.copy(tmp_path / "rel" / path.name, tmp_path / "subs" / "released" / path.name)
    records = grade(tmp_path / "subs", tmp_path / "rel", tmp_path / "book.csv", jobs=2, progress=None)
    assert len(records) == 2 * len(LECTURES)
    for rec in records:
        for row in rec["rows"]:
            want = "passed" if rec["student"] == "solutions" else "failed"
            assert row["status"] == want and not row["flags"], (rec["lecture"], row)
            if want == "failed":
                assert "not written yet" in row["message"], row


def _tiny_lecture(path: Path) -> None:
    """A lecture in miniature: setup, a lecture cell the exercise relies on, one exercise and its check."""
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell
    nb.cells = [nbformat.v4.new_markdown_cell("# A tiny lecture"),
                cell("import cs231n_gen\n\ndevice, QUICK = cs231n_gen.start_lecture(seed=0)",
                     metadata={"tags": ["setup"]}),
                cell("K = 3.0  # the lecture defines the factor"),
                cell("def shift(t, k):\n    ### BEGIN SOLUTION\n    return K * t / (1 + (K - 1) * t) if k == K else "
                     "k * t / (1 + (k - 1) * t)\n    ### END SOLUTION\n", metadata={"tags": ["exercise"]}),
                cell("from cs231n_gen.exercises import check_shift\n\ncheck_shift(shift)",
                     metadata={"tags": ["check"]})]
    nbformat.write(nb, path)


def test_full_mode_runs_the_lecture_cells_too(tmp_path):
    _tiny_lecture(tmp_path / "tiny.ipynb")
    release([tmp_path / "tiny.ipynb"], tmp_path / "rel")
    (tmp_path / "subs").mkdir()
    shutil.copy(tmp_path / "tiny.ipynb", tmp_path / "subs" / "ann.ipynb")
    quick = grade(tmp_path / "subs", tmp_path / "rel", tmp_path / "quick.csv", progress=None)[0]["rows"][0]
    assert quick["status"] == "failed" and "NameError" in quick["message"]  # K lives in a lecture cell
    full = grade(tmp_path / "subs", tmp_path / "rel", tmp_path / "full.csv", full=True, progress=None)[0]["rows"][0]
    assert full["status"] == "passed", full
