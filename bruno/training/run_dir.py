"""Training's side of a run directory: check it before anything is built, prepare it for a new run, and
repair a ``metrics.jsonl`` line that a killed run left half-written (:mod:`bruno.runs` reads runs back)."""
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
from bruno.files import atomic_output, check_writable_folder
from bruno.runs import latest_step, load_run_config

__all__ = ["check_run_dir", "drop_partial_record", "prepare_run_dir"]

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

    A folder holds a run once it has a checkpoint; run files without one are what a start that
    failed before its first checkpoint left, and a new start replaces them.

    Raises:
        RunDirError: not writable; holds a run and neither ``resume`` nor ``overwrite``; ``resume``
            without a checkpoint, of a different experiment, or to a step the run has already passed (resuming at
            the step reached trains nothing but finishes the run: a population run makes its test-time state).
    """
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
    if reached is not None and not overwrite:
        raise RunDirError(f"{run_dir}: already holds a run (pass --resume to continue it or --overwrite to start again)")
    existing = run_dir
    while not os.path.isdir(existing):  # the nearest folder that exists must let us create the rest
        parent = os.path.dirname(os.path.abspath(existing))
        if parent == os.path.abspath(existing):
            break
        existing = parent
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise RunDirError(f"{run_dir}: is a file, expected a run directory")
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


def drop_partial_record(run_dir: str) -> None:
    """Cut a last ``metrics.jsonl`` line that a killed run left half-written, so records appended on resume parse."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)
