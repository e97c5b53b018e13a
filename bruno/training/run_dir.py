"""Training's side of a run directory: check it before anything is built, prepare it for a new run, and on
resume trim ``metrics.jsonl`` back to the restored step (:mod:`bruno.runs` reads runs back)."""
from __future__ import annotations

import json
import os
import platform
import shutil
from typing import Any, Optional

import h5py
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as keras
import yaml

from bruno.config import Config, config_to_yaml
from bruno.errors import OutputPathError, RunDirError
from bruno.files import atomic_output, check_writable_folder, existing_folder_above
from bruno.runs import latest_step, load_run_config

__all__ = ["check_run_dir", "prepare_run_dir", "trim_metrics"]

_RUN_FILES = ("config.yaml", "versions.json", "metrics.jsonl", "checkpoints", "best", "tensorboard")


def _first_difference(a: Any, b: Any, prefix: str = "") -> Optional[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            found = _first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
            if found:
                return found
        return None
    return None if a == b else f"{prefix.rstrip('.')} ({a!r} there, {b!r} here)"


def check_run_dir(run_dir: str, config: Config, resume: bool, overwrite: bool) -> None:
    """Everything :func:`prepare_run_dir` checks, writing nothing.

    A folder holds a run once it has any run file (``config.yaml``, ``metrics.jsonl``, ...): a run killed before
    its first checkpoint still has its log and config, and only ``overwrite`` replaces them.

    Raises:
        RunDirError: not writable; holds a run and neither ``resume`` nor ``overwrite``; both; ``resume``
            without a checkpoint, of a different experiment, or to a step the run has already passed (resuming at
            the step reached trains nothing but finishes the run: a population run makes its test-time state).
    """
    if resume and overwrite:
        raise RunDirError(f"{run_dir}: --resume and --overwrite together; pass one (continue the run, or delete it and start again)")
    reached = latest_step(run_dir)
    if resume:
        if reached is None:
            raise RunDirError(f"{run_dir}: --resume, but there is no checkpoint to resume from")
        previous = yaml.safe_load(config_to_yaml(load_run_config(run_dir)))
        here = yaml.safe_load(config_to_yaml(config))
        previous.get("train", {}).pop("max_steps", None)
        here["train"].pop("max_steps")
        difference = _first_difference(previous, here)
        if difference:
            raise RunDirError(f"{run_dir}: holds a different experiment, {difference}; use another --run-dir")
        if config.train.max_steps < reached:
            raise RunDirError(f"{run_dir}: --resume to max_steps={config.train.max_steps}, but the run is already at step "
                              f"{reached}; pass a larger --max-steps")
        return
    if not overwrite and reached is not None:
        raise RunDirError(f"{run_dir}: already holds a run (pass --resume to continue it or --overwrite to start again)")
    found = [name for name in _RUN_FILES if os.path.exists(os.path.join(run_dir, name))]
    if not overwrite and found:
        raise RunDirError(f"{run_dir}: holds a run that stopped before its first checkpoint ({found[0]}); "
                          "pass --overwrite to delete it and start again")
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise RunDirError(f"{run_dir}: is a file, expected a run directory")
    try:
        existing = run_dir if os.path.isdir(run_dir) else existing_folder_above(run_dir)
    except OutputPathError as err:
        raise RunDirError(str(err)) from None
    if not os.access(existing, os.W_OK):
        raise RunDirError(f"{run_dir}: run directory is not writable" if existing == run_dir else
                          f"{run_dir}: cannot create the run directory ({existing} is not writable)")
    try:
        check_writable_folder(run_dir, existing)
    except OutputPathError as err:
        raise RunDirError(str(err)) from None


def prepare_run_dir(run_dir: str, config: Config, resume: bool, overwrite: bool) -> None:
    """Check the run directory (:func:`check_run_dir`); for a new run, replace what an earlier run
    wrote there (only its files: anything else stays) and write ``config.yaml`` and ``versions.json``.

    ``scripts/train.py`` calls it once the table, the model and the optimiser have been built, so
    a start that fails leaves no run directory behind.

    Raises:
        RunDirError: as :func:`check_run_dir`.
    """
    check_run_dir(run_dir, config, resume, overwrite)
    if resume:
        return
    for name in _RUN_FILES:
        path = os.path.join(run_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
    try:
        os.makedirs(run_dir, exist_ok=True)
    except OSError as err:
        raise RunDirError(f"{run_dir}: cannot create the run directory ({err.strerror})") from None
    with atomic_output(os.path.join(run_dir, "config.yaml")) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(config_to_yaml(config))
    versions = {"python": platform.python_version(), "tensorflow": tf.__version__, "tensorflow_probability": tfp.__version__,
                "tf_keras": keras.__version__, "numpy": np.__version__, "h5py": h5py.__version__}
    with atomic_output(os.path.join(run_dir, "versions.json")) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(versions, f, indent=1)


def trim_metrics(run_dir: str, step: int) -> None:
    """Keep the ``metrics.jsonl`` records up to ``step`` (those after it, written before a kill, come again as the
    resumed run retrains those steps), and drop a last line that a killed run left half-written."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    kept = []
    for line in lines[:-1]:  # the part after the last newline is empty, or half a record
        try:
            if json.loads(line)["step"] > step:
                break
        except (ValueError, KeyError, TypeError):
            break
        kept.append(line + b"\n")
    if len(kept) < len(lines) - 1 or lines[-1]:
        with atomic_output(path, overwrite=True) as tmp, open(tmp, "wb") as f:
            f.writelines(kept)
