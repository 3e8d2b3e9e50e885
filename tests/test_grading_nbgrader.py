"""A released lecture taken as it is by nbgrader: the same per-exercise verdicts as ``cs231n-gen grade``.

nbgrader autogrades by running the whole notebook (lecture 02 in quick mode, about a
minute per submission here), so this test grades one submission that passes one
exercise and fails the other.
"""
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import grading_corpus  # noqa: E402

pytest.importorskip("nbgrader", reason="nbgrader is not installed (pip install nbgrader)")

LECTURE = "02_rectified_flow"
SUBMISSIONS = {  # student -> the source of each exercise
    "alice": {"rf_loss": grading_corpus.RF_LOSS["right"], "euler_sample": grading_corpus.EULER["forward"]},
}


def _nbgrader(course: Path, *args, env=None):
    out = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, capture_output=True, text=True,
                         timeout=900, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]


def test_nbgrader_autograde_agrees_with_the_grader(tmp_path):
    from nbgrader.api import Gradebook

    from cs231n_gen.grading.grade import grade
    from cs231n_gen.grading.release import release

    manifest = release([grading_corpus.LECTURES[LECTURE]], tmp_path / "release")
    released = nbformat.read(tmp_path / "release" / f"{LECTURE}.ipynb", as_version=4)
    course = tmp_path / "course"
    (course / "source" / "lec").mkdir(parents=True)
    (course / "source" / "lec" / f"{LECTURE}.ipynb").write_bytes((tmp_path / "release" / f"{LECTURE}.ipynb")
                                                                 .read_bytes())
    (course / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.CourseDirectory.root = {str(course)!r}\nc.CourseDirectory.course_id = 'cs231n-gen'\n"
        f"c.Exchange.root = {str(tmp_path / 'exchange')!r}\nc.ExecutePreprocessor.timeout = 600\n")
    for student, sources in SUBMISSIONS.items():
        nb = grading_corpus._apply(released, manifest["lectures"][LECTURE], sources)
        for folder in (course / "submitted" / student / "lec", tmp_path / "subs" / student):
            folder.mkdir(parents=True)
            nbformat.write(nb, folder / f"{LECTURE}.ipynb")
    env = {**os.environ, "CS231N_GEN_QUICK": "1", "CS231N_GEN_CACHE_RUNS": "0"}
    _nbgrader(course, "db", "assignment", "add", "lec")
    for student in SUBMISSIONS:
        _nbgrader(course, "db", "student", "add", student)
    _nbgrader(course, "generate_assignment", "lec", "--force")
    _nbgrader(course, "autograde", "lec", "--force", env=env)
    theirs = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for student in SUBMISSIONS:
            nb = gb.find_submission_notebook(LECTURE, "lec", student)
            theirs[student] = {g.name.removesuffix("_check"): g.score == g.max_score for g in nb.grades}

    records = grade(tmp_path / "subs", tmp_path / "release", tmp_path / "book.csv", jobs=2, progress=None)
    ours = {rec["student"]: {r["exercise"]: r["status"] == "passed" for r in rec["rows"]} for rec in records}
    assert ours == theirs == {"alice": {"rf_loss": True, "euler_sample": False}}
