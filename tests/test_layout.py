"""The house rules of the tree: the library never imports the experiments, and inference never
imports the training package."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import REPO

LIBRARY = [p for p in (REPO / "bruno").rglob("*.py") if "experiments" not in p.relative_to(REPO / "bruno").parts]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return names | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}


def test_the_library_never_imports_the_experiments() -> None:
    offenders = {str(p.relative_to(REPO)): sorted(m for m in imported_modules(p) if m.startswith("bruno.experiments"))
                 for p in LIBRARY}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_run_restoring_does_not_import_training() -> None:
    for name in ("runs.py", "model.py", "reconstruction.py"):
        assert not any(m.startswith("bruno.training") for m in imported_modules(REPO / "bruno" / name)), name


def test_no_library_module_is_long_without_saying_why() -> None:
    long = [str(p.relative_to(REPO)) for p in (REPO / "bruno").rglob("*.py")
            if len(p.read_text().splitlines()) > 320
            and not re.search(r"\blines\b", ast.get_docstring(ast.parse(p.read_text())) or "")]  # not "baselines"
    assert long == []
