"""Every script shares the command-line basics: --verbose, and --no-progress where the work is long."""
from __future__ import annotations

import pytest

from tests.conftest import REPO
from tests.scripts.test_preprocess_cli import run_script

SCRIPTS = sorted(p for p in (REPO / "scripts").glob("*.py") if not p.name.startswith("_"))
QUICK = {"inspect_h5.py", "benchmark.py", "launch_workers.py"}  # no progress bar of their own (the launcher passes train.py's flags on)


@pytest.mark.parametrize("script", [p.name for p in SCRIPTS])
def test_every_script_builds_its_parser_with_the_shared_flags(script: str) -> None:
    source = (REPO / "scripts" / script).read_text()
    assert "make_parser(__doc__" in source and "argparse.ArgumentParser(" not in source
    assert ("progress=False" in source) == (script in QUICK)
    assert ("args.no_progress" in source) == (script not in QUICK)  # the flag is honoured, not just parsed


@pytest.mark.parametrize("script", ["reconstruct.py", "sample_prior.py", "test_nll.py"])
def test_long_running_scripts_offer_no_progress_and_verbose(script: str) -> None:
    result = run_script(script, "--help")
    assert result.returncode == 0 and result.stderr == ""
    assert "--no-progress" in result.stdout and "--verbose" in result.stdout
