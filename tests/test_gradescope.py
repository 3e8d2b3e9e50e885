"""The Gradescope autograder: the zip's layout and contents, and its run_autograder in a simulated
/autograder root agreeing with ``cs231n-gen grade`` on the same notebooks."""
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from cs231n_gen.cli import main
from cs231n_gen.grading import gradescope
from cs231n_gen.grading.grade import grade
from cs231n_gen.grading.sandbox import bwrap_path

sys.path.insert(0, str(Path(__file__).parent))
import grading_corpus  # noqa: E402

pytestmark = pytest.mark.skipif(bwrap_path() is None, reason="bubblewrap (bwrap) is not installed")

# Gradescope's documented results.json fields (autograder specifications)
TOP_FIELDS = {"score", "execution_time", "output", "output_format", "test_output_format", "test_name_format",
              "visibility", "stdout_visibility", "extra_data", "tests", "leaderboard"}
TEST_FIELDS = {"score", "max_score", "status", "name", "name_format", "number", "output", "output_format", "tags",
               "visibility", "extra_data"}
VISIBILITY = {"hidden", "after_due_date", "after_published", "visible"}
CASES = {"correct02": "02_rectified_flow", "wrong04_3": "04_noise_schedules",  # right, and partly wrong
         "tamper02_monkeypatch": "02_rectified_flow", "garbage02": "02_rectified_flow"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("gradescope")
    grading_corpus.build(root / "corpus")
    zips = gradescope.export(root / "corpus" / "release", root / "autograder.zip", timeout=20)
    return root, zips[0]


def _scratch_dir(root: Path) -> Path:
    folder = root / "setup-check"
    folder.mkdir(exist_ok=True)
    return folder


def _solution_bodies() -> list[str]:
    """What stands between the solution markers in the corpus lectures, whitespace-normalised."""
    from cs231n_gen.grading.notebooks import cell_kind, read_notebook, source_of

    bodies = []
    for path in grading_corpus.LECTURES.values():
        for cell in read_notebook(path).cells:
            if cell_kind(cell) == "exercise":
                body = source_of(cell).split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0]
                bodies.append(" ".join(body.split()))
    return bodies


def _run(zip_path: Path, notebook: Path, root: Path, name: str) -> dict:
    """Unpack the zip as Gradescope does, submit the notebook under ``name``, run run_autograder."""
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(root / "source")
    (root / "submission" / "nested").mkdir(parents=True)
    shutil.copy(notebook, root / "submission" / "nested" / name)
    env = dict(os.environ, CS231N_GEN_AUTOGRADER_ROOT=str(root),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    out = subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads((root / "results" / "results.json").read_text())


def _check_format(results: dict) -> None:
    assert set(results) <= TOP_FIELDS and isinstance(results["score"], (int, float))
    assert results["visibility"] in VISIBILITY and results["stdout_visibility"] in VISIBILITY
    for test in results["tests"]:
        assert set(test) <= TEST_FIELDS and {"name", "score", "max_score", "output", "visibility"} <= set(test)
        assert test["visibility"] in VISIBILITY and test.get("status", "passed") in {"passed", "failed"}
        assert 0 <= test["score"] <= test["max_score"]
    assert results["score"] == sum(t["score"] for t in results["tests"])


def test_the_zip_holds_what_gradescope_needs_and_no_solution(built):
    root, zip_path = built
    with zipfile.ZipFile(zip_path) as z:
        names = set(z.namelist())
        assert {"setup.sh", "run_autograder", "requirements.txt", "gradescope.json", "release/release.json",
                "release/02_rectified_flow.ipynb", "release/04_noise_schedules.ipynb"} <= names
        wheel = next(n for n in names if n.startswith("wheels/cs231n_gen-") and n.endswith(".whl"))
        for name in ("setup.sh", "run_autograder"):
            assert (z.getinfo(name).external_attr >> 16) & 0o111, f"{name} is not executable"
        texts = {n: z.read(n) for n in names if not n.endswith(".whl")}
        z.extract(wheel, root / "unzipped")
    with zipfile.ZipFile(root / "unzipped" / wheel) as w:  # the bundled library holds no solution either
        texts.update({f"{wheel}:{n}": w.read(n) for n in w.namelist()})
        assert not [n for n in w.namelist() if n.endswith(".ipynb") or n.startswith("lectures/")]
    solutions = _solution_bodies()
    assert len(solutions) == 4
    for name, data in texts.items():
        text = " ".join(data.decode(errors="replace").split())
        assert not [body for body in solutions if body in text], name  # no solution, in any file
        if ".whl:" not in name:  # the library's parser and README name the markers; nothing else may
            assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text, name
    for stem, source in grading_corpus.LECTURES.items():  # the released notebooks, not the sources
        assert texts[f"release/{stem}.ipynb"] == (root / "corpus" / "release" / f"{stem}.ipynb").read_bytes()
        assert texts[f"release/{stem}.ipynb"] != source.read_bytes()
    setup = texts["setup.sh"].decode()
    assert subprocess.run(["bash", "-n"], input=setup, text=True).returncode == 0
    import torch

    assert f"torch=={torch.__version__.split('+')[0]}" in setup and "whl/cpu" in setup and "bubblewrap" in setup
    assert f"--no-deps wheels/{wheel.split('/')[1]}" in setup
    wrapper = _scratch_dir(root) / "python3"  # what setup.sh puts first on PATH runs the venv's Python
    line = next(ln for ln in setup.splitlines() if ln.startswith("printf"))
    subprocess.run(["bash", "-c", line.replace("/usr/local/bin/python3", str(wrapper))], check=True)
    assert wrapper.read_text() == '#!/bin/sh\nexec /autograder/venv/bin/python "$@"\n'
    assert "ln -s" not in setup
    pins = texts["requirements.txt"].decode().split()
    assert pins and all("==" in p for p in pins)
    assert {p.split("==")[0].lower() for p in pins} >= {"torch", "pytest", "nbval"}  # the grade extra too
    assert zip_path.stat().st_size < 5 * 2**20


def test_run_autograder_agrees_with_the_local_grader(built, tmp_path):
    root, zip_path = built
    subs = tmp_path / "subs"
    for student, lecture in CASES.items():
        shutil.copytree(root / "corpus" / "submissions" / student, subs / student)
    local = {r["student"]: r for r in grade(subs, root / "corpus" / "release", tmp_path / "book.csv", jobs=2,
                                            timeout=20, progress=None)}
    for student, lecture in CASES.items():
        results = _run(zip_path, subs / student / f"{lecture}.ipynb", tmp_path / f"ag-{student}",
                       f"{student} homework (final).ipynb")
        _check_format(results)
        rows = local[student]["rows"]
        if student == "garbage02":
            assert results["score"] == 0 and results["tests"] == [] and "not one of" in results["output"]
            continue
        visible = [t for t in results["tests"] if t["visibility"] == "visible"]
        assert [t["name"] for t in visible] == [f"{lecture}: {r['exercise']}" for r in rows]
        assert [t["score"] for t in visible] == [r["points"] for r in rows], (student, visible, rows)
        assert [t["max_score"] for t in visible] == [r["max_points"] for r in rows]
        notes = next(t for t in results["tests"] if t["visibility"] == "hidden")
        assert "bubblewrap sandbox" in notes["output"]
        if student == "tamper02_monkeypatch":
            assert "check_rf_loss was changed" in notes["output"] and visible[0]["output"].startswith("tampered")
        if student == "wrong04_3":
            assert [t["score"] for t in visible] == [0, 1]
    # Two lecture notebooks in one submission: score 0 and a message that says why.
    both = tmp_path / "both"
    both.mkdir()
    for stem in grading_corpus.LECTURES:
        shutil.copy(root / "corpus" / "submissions" / f"correct{stem[:2]}" / f"{stem}.ipynb", both / f"{stem}.ipynb")
    results = gradescope.grade_folder(_layout(zip_path, both, tmp_path / "two"))
    assert results["score"] == 0 and "exactly one" in results["output"]


def _layout(zip_path: Path, submission: Path, root: Path) -> Path:
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(root / "source")
    shutil.copytree(submission, root / "submission")
    return root


def test_per_lecture_zips_and_the_dry_run_command(built, tmp_path, capsys):
    root, _ = built
    assert main(["gradescope", str(root / "corpus" / "release"), "--out", str(tmp_path / "ag.zip"),
                 "--per-lecture", "--timeout", "20"]) == 0
    zips = sorted(tmp_path.glob("ag-*.zip"))
    assert [z.name for z in zips] == ["ag-02_rectified_flow.zip", "ag-04_noise_schedules.zip"]
    with zipfile.ZipFile(zips[1]) as z:
        assert json.loads(z.read("release/release.json"))["lectures"].keys() == {"04_noise_schedules"}
    capsys.readouterr()
    notebook = root / "corpus" / "submissions" / "correct04" / "04_noise_schedules.ipynb"
    assert main(["gradescope", "--try", str(zips[1]), str(notebook)]) == 0
    out = capsys.readouterr().out
    assert "score: 2" in out and "04_noise_schedules: shift" in out and "instructors only" in out
    assert main(["gradescope", "--try", str(zips[0]), str(notebook)]) == 0  # the wrong lecture for that zip
    assert "score: 0" in capsys.readouterr().out
    assert main(["gradescope", str(root / "corpus" / "release"), "--out", str(tmp_path / "x.tar")]) == 2
