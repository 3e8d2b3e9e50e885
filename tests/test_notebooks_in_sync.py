"""Each lecture's .py (jupytext percent, the source) and .ipynb must say the same thing.

Fix a failure with ``jupytext --sync lectures/*.py`` (or ``--to ipynb``), then commit both.
The .ipynb is committed without outputs.
"""
from pathlib import Path

import jupytext
import nbformat
import pytest

LECTURES = Path(__file__).resolve().parent.parent / "lectures"
SOURCES = sorted(LECTURES.glob("[0-9][0-9]_*.py"))


def _cells(nb):
    return [(c.cell_type, c.source.strip(), sorted(c.metadata.get("tags", []))) for c in nb.cells]


def test_there_are_lectures():
    assert SOURCES, f"no lecture sources found in {LECTURES}"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_pair_is_in_sync_and_clean(source):
    ipynb = source.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} is missing: run jupytext --sync {source}"
    from_py = jupytext.read(source)
    from_nb = nbformat.read(ipynb, as_version=4)
    assert _cells(from_py) == _cells(from_nb), f"{source.name} and {ipynb.name} differ: run jupytext --sync"
    for cell in from_nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{ipynb.name} has outputs: clear them"
    formats = from_nb.metadata.get("jupytext", {}).get("formats", "")
    assert "py:percent" in formats, f"{ipynb.name} is not paired with a percent .py"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_exercise_cells_are_well_formed(source):
    nb = jupytext.read(source)
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    for i, cell in enumerate(nb.cells):
        if "exercise" in tags[i]:
            assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source
            assert i + 1 < len(nb.cells) and "check" in tags[i + 1], "an exercise cell must be followed by a check cell"


def test_every_lecture_starts_with_the_same_setup_cell():
    """One install guard and one call (``cs231n_gen.start_lecture``), word for word the same."""
    firsts = {}
    for source in SOURCES:
        code = [c for c in jupytext.read(source).cells if c.cell_type == "code"]
        firsts[source.name] = code[0].source.strip()
    reference = next(iter(firsts.values()))
    assert "cs231n_gen.start_lecture(seed=0)" in reference and "pip" in reference, reference
    differ = [name for name, cell in firsts.items() if cell != reference]
    assert not differ, f"these lectures' setup cells differ from {SOURCES[0].name}'s: {differ}"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_every_widget_call_is_displayed(source):
    """A ``widgets.*(...)`` explorer shows only as its cell's last expression (or when displayed)."""
    import ast

    for i, cell in enumerate(jupytext.read(source).cells):
        if cell.cell_type != "code" or "widgets." not in cell.source:
            continue
        body = ast.parse(cell.source).body
        for k, stmt in enumerate(body):
            call = stmt.value if isinstance(stmt, ast.Expr) else None
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) \
                    and isinstance(call.func.value, ast.Name) and call.func.value.id == "widgets":
                assert k == len(body) - 1, (
                    f"{source.name}, code cell at position {i}: widgets.{call.func.attr}(...) is not the cell's last "
                    "statement, so Jupyter never displays it; move the code after it into a cell of its own")


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_every_lecture_says_how_long_it_takes(source):
    """The first markdown cell names the full-mode time, the quick-mode time and the rerun."""
    intro = next(c for c in jupytext.read(source).cells if c.cell_type == "markdown").source
    line = next((ln for ln in intro.splitlines() if "How long" in ln), None)
    assert line is not None, f"{source.name}: the introduction has no 'How long' line"
    rest = intro[intro.index(line):]
    for words in ("full mode", "quick mode", "cache"):
        assert words in rest, f"{source.name}: the 'How long' paragraph does not mention {words!r}"
