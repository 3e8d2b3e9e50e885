"""``cs231n-gen gradescope``: the same grader as a Gradescope programming-assignment autograder.

:func:`export` writes a zip in the layout Gradescope takes (its root is unpacked into
``/autograder/source``)::

    setup.sh            installs the pinned Python, PyTorch (CPU unless asked), the bundled wheel
    run_autograder      runs ``python3 -m cs231n_gen.grading.gradescope run``
    requirements.txt    the library's dependencies, pinned to the versions the release was made with
    wheels/             the built wheel of this library (the version the release was made with)
    release/            the released notebooks and release.json (no solutions)
    gradescope.json     the grading settings (lectures, per-cell timeout, memory limit)

:func:`run` (what ``run_autograder`` calls) finds the student's notebook under
``/autograder/submission/`` whatever it is called, grades it with
:func:`cs231n_gen.grading.grade.grade_submission` (the rebuild from the release, the sandbox
when bubblewrap can run in the container, otherwise the container is the sandbox and the
output says so, the per-cell timeout and memory limit, a fresh seed per run) and writes
``/autograder/results/results.json`` in Gradescope's format: one test per exercise (name,
score, max_score, status, the check's message as output, visibility) plus an
instructors-only test (``visibility: hidden``) with the flags and the screen's findings.

The root ``/autograder`` can be moved with the environment variable
``CS231N_GEN_AUTOGRADER_ROOT`` (Gradescope never sets it): the dry run :func:`try_zip`
(``cs231n-gen gradescope --try``) and the tests use it.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from .. import __version__
from .._io import write_text
from .._validate import check_bool, check_file_path, check_int, check_real
from .release import load_release

ROOT_ENV = "CS231N_GEN_AUTOGRADER_ROOT"
SETTINGS = "gradescope.json"
_PYTORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


# ------------------------------------------------------------------ building the zip
def _project_root() -> Path | None:
    import cs231n_gen

    root = Path(cs231n_gen.__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() else None


def build_wheel(folder: Path) -> Path:
    """Build this library's wheel from its source tree into ``folder`` (offline: no build isolation).

    The wheel leaves out the course's shipped trained models (``cs231n_gen/pretrained/models``,
    about 50 MB): the autograder runs a notebook's setup and exercise cells, which need no
    trained model, and Gradescope's container is built from this zip for every assignment.
    """
    root = _project_root()
    if root is None:
        raise ValueError("cs231n_gen is not installed from its source tree, so its wheel cannot be built here: "
                         "build it yourself (pip wheel --no-deps .) and pass --wheel PATH")
    source = folder / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(root / name, source / name)
    models = (root / "cs231n_gen" / "pretrained" / "models").resolve()

    def leave_out(where, names):
        if Path(where).resolve() == models.parent:
            return {"models", "__pycache__"} & set(names)
        return {n for n in names if n == "__pycache__" or n.endswith(".pyc")}

    shutil.copytree(root / "cs231n_gen", source / "cs231n_gen", ignore=leave_out)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                          str(folder), str(source)], capture_output=True, text=True)
    wheels = sorted(folder.glob("cs231n_gen-*.whl"))
    if out.returncode != 0 or not wheels:
        raise ValueError(f"building the wheel failed: {(out.stderr or out.stdout)[-800:]}")
    return wheels[-1]


def pinned_requirements() -> list[str]:
    """The library's own dependencies and its ``grade`` extra's (the autograder runs the
    grader), each pinned to the version installed here."""
    pins = []
    for req in importlib.metadata.requires("cs231n-gen") or []:
        if "extra ==" in req and not re.search(r"""extra == ["']grade["']""", req):
            continue
        name = re.split(r"[ <>=!~;\[]", req, maxsplit=1)[0]
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pins.append(req)
            continue
        if name.lower() == "torch":
            version = version.split("+")[0]  # the local build tag (+cpu) is the index's business
        pins.append(f"{name}=={version}")
    return pins


def _setup_sh(wheel: str, torch_pin: str, cpu_torch: bool) -> str:
    py = f"python{sys.version_info.major}.{sys.version_info.minor}"
    index = f" --index-url {_PYTORCH_CPU_INDEX}" if cpu_torch else ""
    return f"""#!/usr/bin/env bash
# Gradescope runs this once, as root, on its Ubuntu base image, when the autograder is built.
# It installs exactly what the release was made with: {py}, {torch_pin}{' (CPU build)' if cpu_torch else ''},
# the pinned dependencies and the bundled cs231n-gen wheel ({wheel}), and bubblewrap for the sandbox.
set -euo pipefail
cd /autograder/source
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq bubblewrap ca-certificates
if ! apt-get install -y -qq {py} {py}-venv; then
    apt-get install -y -qq software-properties-common
    add-apt-repository -y ppa:deadsnakes/ppa
    apt-get update -qq
    apt-get install -y -qq {py} {py}-venv
fi
{py} -m venv /autograder/venv
/autograder/venv/bin/python -m pip install -q --upgrade pip
/autograder/venv/bin/python -m pip install -q {torch_pin}{index}
/autograder/venv/bin/python -m pip install -q -r requirements.txt
/autograder/venv/bin/python -m pip install -q --no-deps wheels/{wheel}
# run_autograder uses the python3 first on PATH: make it this environment's (a wrapper, not a
# symlink: Python finds its virtual environment from the path it is started by).
printf '#!/bin/sh\\nexec /autograder/venv/bin/python "$@"\\n' > /usr/local/bin/python3
chmod 755 /usr/local/bin/python3
/autograder/venv/bin/python -c "import cs231n_gen, torch; \\
print('cs231n-gen', cs231n_gen.__version__, 'torch', torch.__version__)"
"""


_RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for every submission; results land in /autograder/results/results.json.
set -uo pipefail
root="${CS231N_GEN_AUTOGRADER_ROOT:-/autograder}"
cd "$root/source"
python3 -m cs231n_gen.grading.gradescope run
"""


def export(release_dir, out, *, per_lecture: bool = False, cpu_torch: bool = True, wheel=None,
           timeout: float = 60.0, memory_mb: int = 3000) -> list[Path]:
    """Write the autograder zip (or one per lecture with ``per_lecture``); return the paths written."""
    manifest = load_release(release_dir)
    release_dir = Path(release_dir)
    out = check_file_path("out", out)
    if out.suffix != ".zip":
        raise ValueError(f"out must be a .zip file, got {str(out)!r}")
    if not out.parent.is_dir():
        raise ValueError(f"out's folder {str(out.parent)!r} does not exist")
    timeout = check_real("timeout", timeout, minimum=1.0)
    memory_mb = check_int("memory_mb", memory_mb, minimum=300)
    per_lecture = check_bool("per_lecture", per_lecture)
    cpu_torch = check_bool("cpu_torch", cpu_torch)
    if manifest.get("library_version") != __version__:
        raise ValueError(f"the release was made with cs231n-gen {manifest.get('library_version')} and this is "
                         f"{__version__}: export it with the version that made it (or release again)")
    import torch

    torch_pin = f"torch=={torch.__version__.split('+')[0]}"
    with tempfile.TemporaryDirectory(prefix="cs231n-gen-wheel-") as tmp:
        if wheel is None:
            wheel_path = build_wheel(Path(tmp))
        else:
            wheel_path = check_file_path("wheel", wheel)
            if not (wheel_path.is_file() and wheel_path.name.startswith("cs231n_gen-") and wheel_path.suffix == ".whl"):
                raise ValueError(f"wheel must be a built cs231n_gen-*.whl file, got {str(wheel_path)!r}")
        groups = [[s] for s in manifest["lectures"]] if per_lecture else [list(manifest["lectures"])]
        written = []
        for stems in groups:
            target = out.with_name(f"{out.stem}-{stems[0]}.zip") if per_lecture else out
            sub = {"format": manifest["format"], "library_version": manifest["library_version"],
                   "lectures": {s: manifest["lectures"][s] for s in stems}}
            settings = {"lectures": stems, "timeout": timeout, "memory_mb": memory_mb,
                        "library_version": __version__, "torch": torch_pin}
            _write_zip(target, release_dir, sub, wheel_path, settings,
                       _setup_sh(wheel_path.name, torch_pin, cpu_torch))
            written.append(target)
    return written


def _write_zip(target: Path, release_dir: Path, manifest: dict, wheel: Path, settings: dict, setup: str) -> None:
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
            def add_text(name, text, mode=0o644):
                info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
                info.external_attr = (0o100000 | mode) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(info, text)

            add_text("setup.sh", setup, 0o755)
            add_text("run_autograder", _RUN_AUTOGRADER, 0o755)
            add_text("requirements.txt", "\n".join(pinned_requirements()) + "\n")
            add_text(SETTINGS, json.dumps(settings, indent=1) + "\n")
            add_text("release/release.json", json.dumps(manifest, indent=1) + "\n")
            for entry in manifest["lectures"].values():
                add_text(f"release/{entry['notebook']}", (release_dir / entry["notebook"]).read_text())
            z.write(wheel, f"wheels/{wheel.name}")
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


# ------------------------------------------------------------------ inside Gradescope
def autograder_root() -> Path:
    return Path(os.environ.get(ROOT_ENV) or "/autograder")


def sandbox_here() -> str:
    """``"bwrap"`` when bubblewrap can make its namespaces in this container, else ``"none"``."""
    from .sandbox import bwrap_problem

    return "none" if bwrap_problem() else "bwrap"


def _notebooks(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.ipynb")
                  if ".ipynb_checkpoints" not in p.parts and not any(part.startswith(".") for part in
                                                                       p.relative_to(folder).parts))


def _result(score: float, output: str, tests: list, start: float) -> dict:
    return {"score": score, "execution_time": round(time.monotonic() - start, 1), "output": output,
            "output_format": "text", "visibility": "visible", "stdout_visibility": "hidden", "tests": tests}


def grade_folder(root: Path) -> dict:
    """Grade the one notebook under ``root/submission`` with the release in ``root/source``; the results dict."""
    from .grade import Limits, Submission, _lecture_of, grade_submission

    start = time.monotonic()
    source = root / "source"
    settings = json.loads((source / SETTINGS).read_text())
    manifest = load_release(source / "release")
    names = ", ".join(manifest["lectures"])
    found = _notebooks(root / "submission")
    lectures = [(p, _lecture_of(p, manifest, folder_form=False) if p.stem not in manifest["lectures"] else p.stem)
                for p in found]
    known = [(p, lec) for p, lec in lectures if lec is not None]
    if not found:
        return _result(0, f"No notebook (.ipynb) was found in your submission. Upload your lecture notebook "
                          f"(one of: {names}).", [], start)
    if not known:
        return _result(0, f"The notebook you submitted ({', '.join(p.name for p in found)}) is not one of this "
                          f"assignment's lectures ({names}), or is not a readable notebook.", [], start)
    if len(known) > 1:
        return _result(0, f"Your submission holds {len(known)} lecture notebooks "
                          f"({', '.join(p.name for p, _ in known)}): submit exactly one.", [], start)
    path, lecture = known[0]
    kind = sandbox_here()
    if kind == "bwrap":
        from .sandbox import sweep_stale

        sweep_stale()
    limits = Limits(timeout=float(settings["timeout"]), memory_mb=int(settings["memory_mb"]), sandbox=kind)
    record = grade_submission(Submission("submission", lecture, path), source / "release", manifest,
                              seed=secrets.randbelow(2**40), limits=limits)
    tests, notes = [], []
    for row in record["rows"]:
        tests.append({"name": f"{lecture}: {row['exercise']}", "score": row["points"],
                      "max_score": row["max_points"], "status": "passed" if row["status"] == "passed" else "failed",
                      "output": f"{row['status']}: {row['message']}", "visibility": "visible"})
        flags = [f for f in record["flags"] + row["flags"] if f != "unsandboxed"]
        if flags:
            notes.append(f"{row['exercise']} ({row['status']}): " + "; ".join(flags))
    where = ("each submission ran in a bubblewrap sandbox inside Gradescope's container" if kind == "bwrap" else
             "bubblewrap could not run in this container, so the container is the sandbox")
    tests.append({"name": "Grader notes (instructors only)", "score": 0, "max_score": 0,
                  "output": "\n".join([where] + (notes or ["no flags"])), "visibility": "hidden"})
    score = sum(row["points"] for row in record["rows"])
    total = sum(row["max_points"] for row in record["rows"])
    output = (f"{lecture}: {score}/{total} points. Each exercise was checked with probes drawn for this run, "
              "so a memorised answer does not pass.")
    return _result(score, output, tests, start)


def run(root=None) -> dict:
    """What ``run_autograder`` calls: grade, then write ``results/results.json`` (always, even on error)."""
    root = Path(root) if root is not None else autograder_root()
    start = time.monotonic()
    try:
        results = grade_folder(root)
    except Exception as err:  # the student still gets a results file that says what went wrong
        results = _result(0, f"The autograder could not grade this submission: {type(err).__name__}: {err}", [],
                          start)
    (root / "results").mkdir(parents=True, exist_ok=True)
    write_text(root / "results" / "results.json", json.dumps(results, indent=1) + "\n")
    return results


# ------------------------------------------------------------------ the dry run
def try_zip(zip_path, notebook) -> dict:
    """Unpack ``zip_path`` into a local copy of Gradescope's folders, submit ``notebook``, run
    ``run_autograder`` with this Python as ``python3``; return the results."""
    zip_path = check_file_path("zip_path", zip_path)
    notebook = check_file_path("notebook", notebook)
    for name, path in (("zip_path", zip_path), ("notebook", notebook)):
        if not path.is_file():
            raise ValueError(f"{name} {str(path)!r} does not exist")
    with tempfile.TemporaryDirectory(prefix="cs231n-gen-gradescope-") as tmp:
        root = Path(tmp)
        with zipfile.ZipFile(zip_path) as z:
            for member in z.namelist():  # only the layout export writes: no absolute paths, no '..'
                if member.startswith("/") or ".." in Path(member).parts:
                    raise ValueError(f"zip_path: {member!r} is not a path inside the autograder")
            z.extractall(root / "source")
        (root / "submission").mkdir()
        shutil.copy(notebook, root / "submission" / notebook.name)
        env = dict(os.environ, **{ROOT_ENV: str(root)})
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        proc = subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env, capture_output=True,
                              text=True)
        results_file = root / "results" / "results.json"
        if not results_file.exists():
            raise ValueError(f"run_autograder wrote no results (exit {proc.returncode}): {proc.stderr[-800:]}")
        return json.loads(results_file.read_text())


def results_table(results: dict) -> str:
    """The results as a student and an instructor would read them on Gradescope."""
    lines = [f"score: {results['score']}   ({results.get('execution_time', '?')} s)", results.get("output", ""), ""]
    for test in results.get("tests", []):
        who = "instructors only" if test.get("visibility") == "hidden" else "visible"
        lines.append(f"{test['name']:44} {test['score']:>3}/{test['max_score']:<3} [{who}]")
        lines += [f"    {line}" for line in str(test.get("output", "")).splitlines()]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["run"]:
        print("usage: python -m cs231n_gen.grading.gradescope run", file=sys.stderr)
        return 2
    results = run()
    print(results_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
