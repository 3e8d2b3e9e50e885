"""Lecture notebooks as the grader sees them: cell kinds, exercises, solutions, digests.

A lecture marks its cells with tags: ``setup`` (the first code cell: imports and
``start_lecture``), ``exercise`` (the student's function, with the solution between
``### BEGIN SOLUTION`` and ``### END SOLUTION``) and ``check`` (right after its
exercise, calling ``check_<name>(function)`` from :mod:`cs231n_gen.exercises`).
Everything else is lecture text and code.
"""
from __future__ import annotations

import ast
import dataclasses
import hashlib
import re

import nbformat

from .._io import write_text
from .._validate import check_file_path, check_text
from ..exercises import CHECKS

SOLUTION_BEGIN = "### BEGIN SOLUTION"
SOLUTION_END = "### END SOLUTION"
PLACEHOLDER = "# YOUR CODE HERE"
MAX_NOTEBOOK_BYTES = 50 * 2**20  # a lecture is well under 1 MB without outputs; submissions keep theirs
KINDS = ("setup", "exercise", "check", "other")


@dataclasses.dataclass(frozen=True)
class Exercise:
    """One graded exercise: the function the student writes and the check that judges it."""

    name: str  # the check's exercise name, e.g. "rf_loss"
    function: str  # the function the exercise cell defines, e.g. "rf_loss_exercise"
    check: str  # the check's name in cs231n_gen.exercises, e.g. "check_rf_loss"
    points: int
    exercise_cell: str  # cell ids in the released notebook
    check_cell: str


def read_notebook(path) -> nbformat.NotebookNode:
    """Read a notebook (nbformat 4), or raise ``ValueError`` naming the file and the problem."""
    path = check_file_path("path", path)
    if not path.is_file():
        raise ValueError(f"path must name a notebook file; {str(path)!r} does not exist or is not a file")
    size = path.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        raise ValueError(f"notebook {str(path)!r} is {size / 2**20:.0f} MB; at most "
                         f"{MAX_NOTEBOOK_BYTES // 2**20} MB is read")
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as err:  # JSON errors, schema errors, bad encodings: all mean "not a notebook"
        raise ValueError(f"{str(path)!r} is not a readable notebook: {type(err).__name__}: {err}") from None
    if not isinstance(nb.get("cells"), list):
        raise ValueError(f"{str(path)!r} is not a notebook: it has no list of cells")
    return nb


def write_notebook(nb, path) -> None:
    """Write a notebook atomically (:func:`cs231n_gen._io.write_text`)."""
    write_text(path, nbformat.writes(nb))


def source_of(cell) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def tags_of(cell) -> list:
    tags = cell.get("metadata", {}).get("tags", [])
    return tags if isinstance(tags, list) else []


def cell_kind(cell) -> str:
    """``setup``, ``exercise``, ``check`` or ``other`` (from the cell's tags)."""
    tags = tags_of(cell)
    for kind in ("setup", "exercise", "check"):
        if kind in tags and cell.get("cell_type") == "code":
            return kind
    return "other"


def cell_digest(cell) -> str:
    """SHA-256 of a cell's type and source (what a student could edit)."""
    return hashlib.sha256(f"{cell.get('cell_type')}\0{source_of(cell)}".encode()).hexdigest()


def strip_solutions(source: str) -> str:
    """Replace every solution region by ``# YOUR CODE HERE`` and ``raise NotImplementedError``.

    The lines around the regions (the ``def`` line, its docstring, imports) are kept; the
    placeholder takes the indentation of the ``### BEGIN SOLUTION`` line.
    """
    source = check_text("source", source)
    out, inside = [], False
    for number, line in enumerate(source.splitlines(keepends=True), 1):
        marker = line.strip()
        if marker == SOLUTION_BEGIN:
            if inside:
                raise ValueError(f"source line {number}: {SOLUTION_BEGIN!r} inside an open solution region")
            indent = line[: len(line) - len(line.lstrip())]
            out += [f"{indent}{PLACEHOLDER}\n", f"{indent}raise NotImplementedError\n"]
            inside = True
        elif marker == SOLUTION_END:
            if not inside:
                raise ValueError(f"source line {number}: {SOLUTION_END!r} without {SOLUTION_BEGIN!r}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"source: a solution region is not closed: {SOLUTION_BEGIN!r} without {SOLUTION_END!r}")
    return "".join(out)


def defined_functions(source: str) -> set:
    """Names of the functions a cell defines at top level (empty when it does not parse)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    return {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def _check_call(source: str) -> tuple[str, str]:
    """The ``check_<name>(function)`` call of a check cell: (check name, function name)."""
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in CHECKS
                and node.args and isinstance(node.args[0], ast.Name)):
            return node.func.id, node.args[0].id
    raise ValueError(f"a check cell must call one of cs231n_gen.exercises' checks on the exercise's function "
                     f"(check_<name>(function)); this one does not: {source.strip()[:120]!r}")


def ensure_cell_ids(nb, stem: str) -> None:
    """Give every cell an id (nbformat 4.5), stable for the same notebook: kind, position, digest."""
    nb.nbformat, nb.nbformat_minor = 4, max(int(nb.get("nbformat_minor", 0)), 5)
    seen = set()
    for i, cell in enumerate(nb.cells):
        cid = cell.get("id")
        if not isinstance(cid, str) or not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", cid) or cid in seen:
            cid = f"{stem[:20]}-{i:03d}-{cell_digest(cell)[:8]}"
            cell["id"] = cid
        seen.add(cid)


def exercises_of(nb, path="notebook") -> list[Exercise]:
    """The exercises of a lecture notebook, in order, with their cells (ids must be set)."""
    found, names = [], set()
    for i, cell in enumerate(nb.cells):
        if cell_kind(cell) != "check":
            continue
        check, function = _check_call(source_of(cell))
        if i == 0 or cell_kind(nb.cells[i - 1]) != "exercise":
            raise ValueError(f"{path}: the check cell calling {check} must follow its exercise cell")
        exercise_cell = nb.cells[i - 1]
        if function not in defined_functions(source_of(exercise_cell)):
            raise ValueError(f"{path}: the exercise cell before {check} does not define {function}()")
        name = CHECKS[check].exercise
        if name in names:
            raise ValueError(f"{path}: exercise {name!r} appears twice")
        names.add(name)
        points = cell.get("metadata", {}).get("points", 1)
        if isinstance(points, bool) or not isinstance(points, int) or points < 0:
            raise ValueError(f"{path}: the check cell of {name!r} has points={points!r}; it needs an integer >= 0")
        found.append(Exercise(name, function, check, points, exercise_cell["id"], cell["id"]))
    return found


def setup_cell(nb, path="notebook"):
    """The lecture's setup cell (tagged ``setup``): exactly one, before every exercise."""
    setups = [i for i, cell in enumerate(nb.cells) if cell_kind(cell) == "setup"]
    if len(setups) != 1:
        raise ValueError(f"{path}: a lecture needs exactly one code cell tagged 'setup', found {len(setups)}")
    first_exercise = next((i for i, c in enumerate(nb.cells) if cell_kind(c) == "exercise"), len(nb.cells))
    if setups[0] > first_exercise:
        raise ValueError(f"{path}: the setup cell must come before the first exercise")
    return nb.cells[setups[0]]
