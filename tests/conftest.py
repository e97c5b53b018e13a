"""Shared fixtures: tiny configs and NIfTI files generated in tmp_path, and running the scripts.

:func:`run_script` runs a script in this process (its ``main`` through ``runpy``, as ``python
scripts/NAME`` would, with its exit code, stdout and stderr captured): no fresh TensorFlow import per
call. :func:`run_script_process` starts a real process, for tests where the process boundary is the
point (signals, TensorFlow's start-up logging, several workers).
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import runpy
import signal
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np
import pytest

from bruno.config import Config, DataConfig, PhantomConfig, SplitConfig, TrainConfig

if TYPE_CHECKING:
    from bruno.training import Trainer

SMALL_TRAIN = TrainConfig(batch_size=2, seq_len=4, num_context=3)

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
SCRIPTS = REPO / "scripts"


@contextlib.contextmanager
def _working_folder(folder: Path) -> Iterator[None]:
    """``contextlib.chdir`` (Python 3.11+) for the oldest Python the README states, 3.10."""
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def run_script(name: str, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """``python scripts/NAME ARGS`` in this process: exit code (an uncaught exception is 1, with its traceback
    on stderr, as in a real process), stdout, and stderr with the script's log lines."""
    argv = [str(SCRIPTS / name), *args]
    out, err = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root, saved_argv, saved_level = logging.getLogger(), sys.argv, logging.getLogger().level
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    code = 0
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        with _working_folder(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            sys.argv = argv
            try:
                runpy.run_path(argv[0], run_name="__main__")
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            except Exception:  # noqa: BLE001 (what a real process would print before exiting 1)
                traceback.print_exc(file=err)
                code = 1
    finally:
        sys.argv = saved_argv
        for signum, previous in handlers.items():  # a script that exits early may leave its own installed
            signal.signal(signum, previous)
        root.removeHandler(handler)
        root.setLevel(saved_level)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def run_script_process(name: str, *args: str, cwd: Path = REPO, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """``python scripts/NAME ARGS`` in a new process."""
    return subprocess.run([sys.executable, str(SCRIPTS / name), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess[str], pattern: str) -> None:
    """Exit code 2 and one ``error:`` line matching ``pattern``; none of TensorFlow's start-up logging
    (which only a real process, :func:`run_script_process`, can show)."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert re.search(pattern, lines[0]), lines[0]
    noise = [line for line in result.stderr.splitlines() if re.match(r"[IWEF]\d{4} |WARNING: All log messages", line)]
    assert noise == [], result.stderr  # TensorFlow's C++/absl start-up lines


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Save ``data`` as NIfTI at ``path`` (identity-spacing RAS affine by default)."""
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine), str(path))
    return path


def head_like(shape: tuple[int, int, int] = (20, 24, 30), seed: int = 0) -> np.ndarray:
    """A float32 volume with a bright ellipsoid and some noise: contrast everywhere it matters."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"), axis=-1)
    inside = ((grid / 0.8) ** 2).sum(-1) < 1
    return (100.0 * inside + rng.normal(0, 5, size=shape) ** 2).astype(np.float32)


def nifti_config(tmp_path: Path, **data: object) -> Config:
    """A config over NIfTI files in ``tmp_path/in``, writing ``tmp_path/out.h5``; small sizes."""
    values: dict[str, object] = dict(
        source="nifti", input=str(tmp_path / "in"), num_poses=6, image_size=16, slab_fraction=0.8,
        split=SplitConfig(train=0.5, val=0.25, test=0.25, seed=0), output=str(tmp_path / "out.h5"),
    )
    values.update(data)
    return Config(data=DataConfig(**values), train=SMALL_TRAIN)  # type: ignore[arg-type]


def phantom_config(tmp_path: Path, subjects: int = 6, **data: object) -> Config:
    values: dict[str, object] = dict(
        source="phantom", phantom=PhantomConfig(num_subjects=subjects, size=24, spacing_mm=8.0, seed=3),
        num_poses=8, image_size=16, split=SplitConfig(train=0.5, val=0.25, test=0.25, seed=0),
        output=str(tmp_path / "phantom.h5"),
    )
    values.update(data)
    return Config(data=DataConfig(**values), train=SMALL_TRAIN)  # type: ignore[arg-type]


@pytest.fixture
def input_dir(tmp_path: Path) -> Path:
    """Four valid volumes of three subjects (sub-b has two scans)."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i, name in enumerate(["sub-a_t1", "sub-b_t1", "sub-b_t2", "sub-c_t1"]):
        write_nifti(folder / f"{name}.nii.gz", head_like(seed=i), np.diag([2.0, 2.0, 2.0, 1.0]))
    return folder


@pytest.fixture
def shared_ixi() -> Path:
    folder = SHARED_DATA / "ixi_t1_2mm"
    if not folder.is_dir():
        pytest.skip(f"real IXI data not available at {folder} (only present on development machines)")
    return folder


def tiny_config(folder: Path, name: str = "tiny") -> Config:
    """``config_rnn/<name>.yaml`` (the tiny phantom set) with its table at ``folder/tiny.h5`` (made on first use)."""
    from bruno.config import load_config, override

    return override(load_config(REPO / f"config_rnn/{name}.yaml"), "data", output=str(folder / "tiny.h5"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """tiny.yaml with its phantom table built once per test module in a temporary folder."""
    from bruno.data.preprocess import load_slice_table

    config = tiny_config(tmp_path_factory.mktemp("tiny"))
    load_slice_table(config, progress=False)
    return config


def train_tiny_run(folder: Path, max_steps: int) -> Path:
    """``config_rnn/tiny.yaml`` trained for ``max_steps`` steps in ``folder/run`` (its table in ``folder``)."""
    from bruno.runs import RunDir, make_deterministic
    from bruno.training import Trainer

    config = tiny_config(folder)
    run = folder / "run"
    RunDir(str(run)).prepare(config, False, False)
    make_deterministic(0)
    Trainer(config, str(run), progress=False).train(max_steps=max_steps)
    return run


def trainer(config: Config, run_dir: Path, resume: bool = False, **train: object) -> "Trainer":
    """A Trainer of ``config`` (``train`` keys overridden) in a prepared ``run_dir``, seeded; restored with ``resume``."""
    from bruno.config import override
    from bruno.runs import RunDir, make_deterministic
    from bruno.training import Trainer

    config = override(config, "train", **train)
    RunDir(str(run_dir)).prepare(config, resume=resume, overwrite=False)
    make_deterministic(config.train.seed)
    t = Trainer(config, str(run_dir), progress=False)
    if resume:
        t.restore()
    return t


def losses(run_dir: Path) -> list[tuple[int, float]]:
    """(step, loss) of every train record of a run."""
    from bruno.runs import RunDir

    return [(r["step"], r["loss"]) for r in RunDir(str(run_dir)).metrics() if r["split"] == "train"]


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0
