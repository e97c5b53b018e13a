"""Every script shares the command-line basics: --help from its docstring, --verbose, and --no-progress where the work is long."""
from __future__ import annotations

import pytest

from tests.conftest import SCRIPTS, run_script

NAMES = sorted(p.name for p in SCRIPTS.glob("*.py") if not p.name.startswith("_"))
QUICK = {"inspect_h5.py", "benchmark.py", "launch_workers.py"}  # no progress bar of their own (the launcher passes train.py's flags on)


@pytest.mark.parametrize("script", NAMES)
def test_every_script_builds_its_parser_with_the_shared_flags(script: str) -> None:
    result = run_script(script, "--help")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    first_line = (SCRIPTS / script).read_text().split('"""')[1].strip().splitlines()[0]
    assert first_line in result.stdout  # the docstring is the help
    assert "--verbose" in result.stdout
    assert ("--no-progress" in result.stdout) == (script not in QUICK)


@pytest.mark.parametrize("script", ["reconstruct.py", "sample_prior.py", "test_nll.py"])
def test_long_running_scripts_offer_no_progress_and_verbose(script: str) -> None:
    result = run_script(script, "--help")
    assert result.returncode == 0 and result.stderr == ""
    assert "--no-progress" in result.stdout and "--verbose" in result.stdout
