"""``cs231n-gen release``: student copies of the lectures and the manifest that grades them.

Every solution region becomes ``# YOUR CODE HERE`` / ``raise NotImplementedError``;
outputs are cleared; every cell but the exercises is read-only and undeletable
(JupyterLab's ``editable`` and ``deletable`` metadata). Cells also carry nbgrader's
metadata (``grade_id``, ``points``, ``locked``, ``solution``), so a course run with
nbgrader can take them as they are. ``release.json`` records, per lecture, the digest
of every released cell and the exercises, so that the grader can restore whatever a
student changed outside the exercise cells and report it.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import time

from .. import __version__
from .._io import write_text
from .._validate import check_file_path
from .notebooks import (cell_digest, cell_kind, ensure_cell_ids, exercises_of, read_notebook, setup_cell,
                        source_of, strip_solutions, write_notebook)

MANIFEST = "release.json"
FORMAT = 1


def _nbgrader(kind: str, cell, exercise=None) -> dict:
    meta = {"schema_version": 3, "task": False, "solution": kind == "exercise", "locked": kind != "exercise",
            "grade": kind == "check"}
    if kind == "exercise":
        meta["grade_id"] = exercise.name
    elif kind == "check":
        meta["grade_id"] = f"{exercise.name}_check"
        meta["points"] = exercise.points
    else:
        meta["grade_id"] = f"cell-{cell['id']}"
    return meta


def student_copy(nb, stem: str, path="notebook"):
    """The released notebook of one lecture and its manifest entry (``nb`` is not changed)."""
    nb = copy.deepcopy(nb)
    ensure_cell_ids(nb, stem)
    setup_cell(nb, path)
    exercises = exercises_of(nb, path)
    if not exercises:
        raise ValueError(f"{path}: no exercise to release (no cell tagged 'check')")
    by_cell = {e.exercise_cell: e for e in exercises} | {e.check_cell: e for e in exercises}
    cells = []
    for cell in nb.cells:
        kind = cell_kind(cell)
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
            if kind == "exercise":
                cell["source"] = strip_solutions(source_of(cell))
        elif "### BEGIN SOLUTION" in source_of(cell):
            raise ValueError(f"{path}: a solution region in a {cell.get('cell_type')} cell is not released")
        meta = cell.setdefault("metadata", {})
        meta.pop("execution", None)
        meta["editable"] = kind == "exercise"
        meta["deletable"] = False
        meta["nbgrader"] = _nbgrader(kind, cell, by_cell.get(cell["id"]))
        cells.append({"id": cell["id"], "kind": kind, "digest": cell_digest(cell)})
    entry = {"cells": cells, "exercises": [e.__dict__ for e in exercises],
             "max_points": sum(e.points for e in exercises)}
    return nb, entry


def release(notebooks, out_dir) -> dict:
    """Write one student notebook per lecture into ``out_dir`` plus ``release.json``; return the manifest."""
    if isinstance(notebooks, (str, os.PathLike)):
        notebooks = [notebooks]
    if not isinstance(notebooks, (list, tuple)):
        raise ValueError(f"notebooks must be a list of notebook paths, got {notebooks!r}")
    notebooks = [check_file_path("notebooks", p) for p in notebooks]
    if not notebooks:
        raise ValueError("notebooks must name at least one lecture notebook (.ipynb), got none")
    for p in notebooks:
        if p.suffix != ".ipynb":
            raise ValueError(f"notebooks must be .ipynb files, got {str(p)!r}")
    stems = [p.stem for p in notebooks]
    if len(set(stems)) != len(stems):
        raise ValueError(f"notebooks must have distinct names, got {stems}")
    out_dir = check_file_path("out_dir", out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out_dir must be a folder, got {str(out_dir)!r} (a file)")
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = {"format": FORMAT, "library_version": __version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "lectures": {}}
    for path in notebooks:
        released, entry = student_copy(read_notebook(path), path.stem, str(path))
        target = out_dir / path.name
        write_notebook(released, target)
        entry["notebook"] = path.name
        entry["digest"] = hashlib.sha256(target.read_bytes()).hexdigest()
        manifest["lectures"][path.stem] = entry
    write_text(out_dir / MANIFEST, json.dumps(manifest, indent=1))
    return manifest


def load_release(release_dir) -> dict:
    """Read ``release.json`` and check every released notebook against its recorded digest."""
    release_dir = check_file_path("release_dir", release_dir)
    path = release_dir / MANIFEST
    if not path.is_file():
        raise ValueError(f"release_dir must be a folder written by 'cs231n-gen release' (with {MANIFEST}); "
                         f"{str(path)!r} does not exist")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"release_dir: {str(path)!r} is not a readable release manifest: {err}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(
            manifest.get("lectures"), dict):
        raise ValueError(f"release_dir: {str(path)!r} is not a release manifest of format {FORMAT}")
    for stem, entry in manifest["lectures"].items():
        nb_path = release_dir / entry["notebook"]
        if not nb_path.is_file() or hashlib.sha256(nb_path.read_bytes()).hexdigest() != entry["digest"]:
            raise ValueError(f"release_dir: the released notebook {str(nb_path)!r} is missing or was changed after the "
                             "release; run 'cs231n-gen release' again")
    return manifest
