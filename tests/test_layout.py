"""The house rules of the tree: the layers and forbidden imports of pyproject.toml's import-linter contracts, the
numpy baselines never load TensorFlow, only registries switch on a kind, and scripts stay thin."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, SCRIPTS

LIBRARY = [p for p in (REPO / "bruno").rglob("*.py") if not {"experiments", "commands"} & set(p.relative_to(REPO / "bruno").parts)]
INFERENCE = [*(REPO / "bruno/runs").glob("*.py"), *(REPO / "bruno/models").glob("*.py"), *(REPO / "bruno/reconstruction").glob("*.py")]
SCRIPT_CODE_LINES = 60  # a script's lines after its docstring (its --help): parse, call the library, report


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return names | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}


def test_the_import_contracts_hold() -> None:
    """pyproject.toml's [tool.importlinter] contracts: the layers (commands → experiments → reconstruction | training →
    runs → models → processes | flows → metrics | baselines | data → config → files → errors) and the forbidden pairs."""
    result = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                             "sys.exit(lint_imports_command())"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Contracts: 6 kept, 0 broken." in result.stdout


def test_the_library_never_imports_the_experiments_or_commands() -> None:
    offenders = {str(p.relative_to(REPO)): sorted(m for m in imported_modules(p) if m.startswith(("bruno.experiments", "bruno.commands")))
                 for p in LIBRARY}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_module_switches_on_a_kind() -> None:
    """Model and process kinds are chosen by looking them up in a registry (``MODEL_KINDS`` in bruno/models,
    ``PROCESSES`` in bruno/processes), never by comparing the kind's name."""
    switching = {str(p.relative_to(REPO)) for p in [*(REPO / "bruno").rglob("*.py"), *SCRIPTS.glob("*.py")]
                 if "kind ==" in p.read_text()}
    assert switching == set()


def test_run_restoring_and_reconstruction_do_not_import_training() -> None:
    assert len(INFERENCE) > 10
    offenders = {str(p.relative_to(REPO)) for p in INFERENCE if any(m.startswith("bruno.training") for m in imported_modules(p))}
    assert offenders == set()


def test_the_numpy_baselines_do_not_load_tensorflow() -> None:
    code = "import sys, bruno.baselines.gaussian, bruno.baselines; print(sorted(m for m in sys.modules if m.startswith(('tensorflow', 'keras'))))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr


def test_no_script_outgrows_its_bound() -> None:
    scripts = {}
    for path in SCRIPTS.glob("[!_]*.py"):  # _cli.py is their shared argparse plumbing
        tree = ast.parse(path.read_text())
        docstring_end = tree.body[0].end_lineno if isinstance(tree.body[0], ast.Expr) else 0
        scripts[path.name] = len(path.read_text().splitlines()) - (docstring_end or 0)
    assert {name: n for name, n in scripts.items() if n > SCRIPT_CODE_LINES} == {}
