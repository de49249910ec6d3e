"""The package's layout: small modules, and a stated reason where one is not."""
from __future__ import annotations

import ast
from pathlib import Path

import proseg_pyro

LONGEST = 320  # lines of a module without a reason at its top
REASON = "on purpose"  # the phrase of a module docstring that says why the module is longer


def _modules() -> list[Path]:
    package = Path(proseg_pyro.__file__).parent
    return sorted(path for folder in (package, package.parent / "cli") for path in folder.rglob("*.py"))


def test_every_long_module_says_at_its_top_why_it_is_long():
    unexplained = []
    for path in _modules():
        lines = path.read_text().count("\n")
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        if lines > LONGEST and REASON not in docstring:
            unexplained.append(f"{path.name} ({lines} lines)")
    assert not unexplained, f"modules over {LONGEST} lines without a reason at the top: {unexplained}"


def test_the_layout_check_sees_the_package():
    names = {path.name for path in _modules()}
    assert {"model.py", "guide.py", "metrics.py", "main.py"} <= names
