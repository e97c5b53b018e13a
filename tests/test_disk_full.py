"""A full disk (a file-size limit set with ``resource.setrlimit`` in the script's process, as ``ulimit -f`` does) while
writing a checkpoint, a population state, a table or a reconstruction (issue 37): one ``error:`` line and exit 2, no
temporary file left, nothing that was there before lost, and the run resumes exactly once there is room again."""
from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

from bruno.config import Config, config_to_yaml, override
from tests.conftest import REPO, head_like, losses, write_nifti

pytestmark = pytest.mark.slow


def _script(name: str, *args: str, limit_bytes: int | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """``python scripts/NAME ARGS`` in a new process whose files may grow to ``limit_bytes`` at most."""
    def limit() -> None:
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, str(REPO / "scripts" / name), *args, "--no-progress"], cwd=cwd, capture_output=True,
                          text=True, timeout=600, preexec_fn=limit)


def _one_error_line(result: subprocess.CompletedProcess[str], pattern: str) -> None:
    import re

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and re.search(pattern, errors[0]), result.stderr


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _no_temporary(folder: Path) -> None:
    left = [p.name for p in folder.rglob("*") if ".part" in p.name or p.name.endswith("_temp") or "_temp" in p.parent.name]
    assert left == [], left


def test_a_full_disk_while_preprocessing_keeps_the_table_there(tiny: Config, tmp_path: Path) -> None:
    config = tmp_path / "p.yaml"
    config.write_text(config_to_yaml(override(tiny, "data", output=str(tmp_path / "p.h5"))))
    result = _script("preprocess.py", str(config), limit_bytes=20_000)
    _one_error_line(result, r"p\.h5: no space to write the table \(.* MiB left on the disk or under the file-size limit.*\); "
                            r"nothing was written")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.yaml"]
    assert _script("preprocess.py", str(config)).returncode == 0
    before = _files(tmp_path)
    result = _script("preprocess.py", str(config), "--overwrite", limit_bytes=20_000)
    _one_error_line(result, r"p\.h5: no space to write the table .*; the table there before is kept")
    assert _files(tmp_path) == before


def test_a_full_disk_while_checkpointing_then_resume_is_exact(tiny: Config, tmp_path: Path) -> None:
    config = tmp_path / "exp.yaml"
    config.write_text(config_to_yaml(override(tiny, "train", max_steps=20, checkpoint_every=10, validate_every=10, log_every=1)))
    assert _script("train.py", str(config), "--run-dir", str(tmp_path / "straight")).returncode == 0
    run = tmp_path / "run"
    assert _script("train.py", str(config), "--run-dir", str(run), "--max-steps", "10").returncode == 0
    checkpoints = {name: _files(run / name) for name in ("checkpoints", "best")}
    result = _script("train.py", str(config), "--run-dir", str(run), "--resume", limit_bytes=200_000)  # a checkpoint is ~0.9 MB
    _one_error_line(result, r"run/(best|checkpoints): no space to write the checkpoint of step 20 \(File too large\); free some, "
                            r"then --resume continues from step 10")
    _no_temporary(run)
    for name, files in checkpoints.items():
        assert all(_files(run / name)[f] == data for f, data in files.items() if f.startswith("ckpt-10"))
    assert _script("train.py", str(config), "--run-dir", str(run), "--resume").returncode == 0
    assert losses(run) == losses(tmp_path / "straight")  # every step once, the same numbers
    assert (run / "best" / "ckpt-20.index").exists()


def test_a_full_disk_while_writing_the_population_state_then_resume_remakes_it(tiny: Config, tmp_path: Path) -> None:
    config = tmp_path / "pop.yaml"
    population = override(override(tiny, "model.process", kind="population"), "train", max_steps=4, validate_every=2,
                          checkpoint_every=2)
    config.write_text(config_to_yaml(population))
    run = tmp_path / "run"
    assert _script("train.py", str(config), "--run-dir", str(run)).returncode == 0
    made = (run / "population.npz").read_bytes()
    (run / "population.npz").unlink()
    result = _script("train.py", str(config), "--run-dir", str(run), "--resume", limit_bytes=len(made) // 2)
    _one_error_line(result, r"run/population\.npz: no space to write it \(File too large\); nothing was written")
    _no_temporary(run)
    assert not (run / "population.npz").exists()
    assert _script("train.py", str(config), "--run-dir", str(run), "--resume").returncode == 0
    assert (run / "population.npz").read_bytes() == made


def test_a_full_disk_while_writing_a_reconstruction_writes_none_of_it(tmp_path: Path) -> None:
    from tests.conftest import train_tiny_run

    run = train_tiny_run(tmp_path, max_steps=3)
    write_nifti(tmp_path / "scan.nii.gz", head_like((20, 24, 30)))
    (tmp_path / "mean.nii.gz").write_bytes(b"what the user had")
    args = ("--run", str(run), "--input", str(tmp_path / "scan.nii.gz"), "--num-contexts", "2", "--samples", "3",
            "--output", str(tmp_path / "mean.nii.gz"), "--std", str(tmp_path / "std.nii.gz"), "--overwrite")
    result = _script("reconstruct.py", *args, limit_bytes=2_000)
    _one_error_line(result, r"mean\.nii\.gz: no space to write it \(up to [\d.]+ MiB, over the file-size limit of [\d.]+ MiB\); "
                            r"nothing was written")
    assert (tmp_path / "mean.nii.gz").read_bytes() == b"what the user had" and not (tmp_path / "std.nii.gz").exists()
    _no_temporary(tmp_path)
    assert _script("reconstruct.py", *args).returncode == 0 and (tmp_path / "std.nii.gz").exists()
