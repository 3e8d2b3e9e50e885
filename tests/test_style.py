"""The tree stays clean under the project's linter configuration (pyproject.toml, [tool.ruff])."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINE_LIMIT = 120  # pyproject.toml: [tool.ruff] line-length


def test_ruff_finds_nothing():
    if importlib.util.find_spec("ruff") is None:
        pytest.fail('ruff is missing: pip install -e ".[dev]" installs it')
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_lecture_code_lines_fit_the_line_length():
    """ruff leaves long lines in lectures alone (their markdown cells hold table rows that cannot
    wrap); their code lines keep to the limit all the same."""
    long = []
    for path in sorted((ROOT / "lectures").glob("[0-9][0-9]_*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if len(line) > LINE_LIMIT and not line.lstrip().startswith("#"):
                long.append(f"{path.name}:{number}: {len(line)} characters")
    assert not long, "\n".join(long)
