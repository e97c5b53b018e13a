"""The house rules of the tree: the library never imports the experiments, inference never imports the training
package, the numpy baselines never load TensorFlow, and no module or script outgrows its bound."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, SCRIPTS

LIBRARY = [p for p in (REPO / "bruno").rglob("*.py") if "experiments" not in p.relative_to(REPO / "bruno").parts]
INFERENCE = [REPO / "bruno/runs.py", *(REPO / "bruno/models").glob("*.py"), *(REPO / "bruno/reconstruction").glob("*.py")]
MODULE_LINES = 340  # any module of bruno/, and scripts/_cli.py
SCRIPT_CODE_LINES = 60  # a script's lines after its docstring (its --help): parse, call the library, report


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return names | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}


def test_the_library_never_imports_the_experiments() -> None:
    offenders = {str(p.relative_to(REPO)): sorted(m for m in imported_modules(p) if m.startswith("bruno.experiments"))
                 for p in LIBRARY}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_run_restoring_and_reconstruction_do_not_import_training() -> None:
    assert len(INFERENCE) > 10
    offenders = {str(p.relative_to(REPO)) for p in INFERENCE if any(m.startswith("bruno.training") for m in imported_modules(p))}
    assert offenders == set()


def test_the_numpy_baselines_do_not_load_tensorflow() -> None:
    code = "import sys, bruno.baselines.gaussian, bruno.baselines; print(sorted(m for m in sys.modules if m.startswith(('tensorflow', 'keras'))))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr


def test_no_module_or_script_outgrows_its_bound() -> None:
    modules = [*(REPO / "bruno").rglob("*.py"), SCRIPTS / "_cli.py"]
    long = {str(p.relative_to(REPO)): n for p in modules if (n := len(p.read_text().splitlines())) > MODULE_LINES}
    assert long == {}
    scripts = {}
    for path in SCRIPTS.glob("[!_]*.py"):  # _cli.py is their shared module: the module bound
        tree = ast.parse(path.read_text())
        docstring_end = tree.body[0].end_lineno if isinstance(tree.body[0], ast.Expr) else 0
        scripts[path.name] = len(path.read_text().splitlines()) - (docstring_end or 0)
    assert {name: n for name, n in scripts.items() if n > SCRIPT_CODE_LINES} == {}
