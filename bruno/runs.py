"""Run directories and what inference needs from them: the config of a run, its model, restored.

A run directory (written by ``scripts/train.py`` through :mod:`bruno.training`) holds
``config.yaml`` (the resolved config), ``versions.json``, ``metrics.jsonl``, ``checkpoints/``
(the latest three: model, optimiser slots, step, data-stream position), ``best/`` (the best by
validation NLL) and ``tensorboard/``. A folder holds a run once it has a checkpoint.

This module imports no training code: reconstruction, evaluation and the inference scripts
restore a model through :func:`restore_model` without optimisers, loss scaling or the loop.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import re
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any, Optional

import h5py
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as keras
import yaml

from bruno.baselines import ConditionalVAE, GenerativeQueryNetwork
from bruno.config import Config, config_to_yaml, parse_config
from bruno.errors import ConfigError, OutputPathError, RunDirError
from bruno.files import atomic_output, check_writable_folder
from bruno.model import ConditionalBruno, SequenceModel
from bruno.precision import compute_policy

__all__ = [
    "check_run_dir",
    "iterate_metrics",
    "latest_step",
    "load_run_config",
    "make_deterministic",
    "make_model",
    "prepare_run_dir",
    "restore_checkpoint",
    "restore_model",
]

logger = logging.getLogger(__name__)

_RUN_FILES = ("config.yaml", "versions.json", "metrics.jsonl", "checkpoints", "best", "tensorboard")


def make_deterministic(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TF kernels deterministic (same seed → same numbers on CPU).

    The Python seed matters: unseeded ``tf_keras`` initializers draw their seeds from ``random``.
    """
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()



def _first_difference(a: Any, b: Any, prefix: str = "") -> Optional[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            found = _first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
            if found:
                return found
        return None
    return None if a == b else f"{prefix.rstrip('.')} ({a!r} there, {b!r} here)"


def _checkpoint_step(path: str) -> int:
    """The step a checkpoint was saved at (its number: ``.../ckpt-<step>``)."""
    return int(path.rsplit("-", 1)[1])


def latest_step(run_dir: str) -> Optional[int]:
    """The step of a run directory's latest checkpoint; None before the first one."""
    latest = tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    return None if latest is None else _checkpoint_step(latest)


def check_run_dir(run_dir: str, config: Config, resume: bool, overwrite: bool) -> None:
    """Everything :func:`prepare_run_dir` checks, writing nothing.

    A folder holds a run once it has a checkpoint; run files without one are what a start that
    failed before its first checkpoint left, and a new start replaces them.

    Raises:
        RunDirError: not writable; holds a run and neither ``resume`` nor ``overwrite``; ``resume``
            without a checkpoint, of a different experiment, or to a step the run has already reached.
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
        if config.train.max_steps <= reached:
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


def load_run_config(run_dir: str) -> Config:
    """The resolved config saved in a run directory."""
    path = os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(path):
        raise RunDirError(f"{run_dir}: no config.yaml, not a run directory of scripts/train.py")
    with open(path, encoding="utf-8") as f:
        return parse_config(yaml.safe_load(f), path)


def make_model(config: Config, precision: Optional[str] = None) -> SequenceModel:
    """The model ``config.model.kind`` names (BRUNO or one of the paper's baselines), variables not yet built.

    Args:
        config: the experiment.
        precision: None (float32), or ``float16``/``bfloat16`` for BRUNO's s/t networks (:mod:`bruno.precision`).

    Raises:
        ConfigError: mixed precision asked for a baseline model.
    """
    kinds: dict[str, type[SequenceModel]] = {"bruno": ConditionalBruno, "gqn": GenerativeQueryNetwork,
                                             "cvae": ConditionalVAE}
    if precision is not None and config.model.kind != "bruno":
        raise ConfigError(f"train.mixed_precision={precision!r}: only BRUNO models (model.kind: bruno) support it, "
                          f"not {config.model.kind!r}")
    with compute_policy(precision):
        return kinds[config.model.kind].from_config(config)


def restore_model(run_dir: str, which: str = "best") -> tuple[SequenceModel, Config, int]:
    """The model of a run from its ``best`` or ``latest`` checkpoint, every variable restored.

    A run without a best checkpoint (no validation yet) gives its latest, with a warning.

    Returns:
        (model, config, step of the checkpoint).

    Raises:
        RunDirError: no such run or checkpoint; a checkpoint that is unreadable or does not match
            the run's ``config.yaml`` (a variable missing, left over or of another shape).
    """
    config = load_run_config(run_dir)
    latest = tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    path = tf.train.latest_checkpoint(os.path.join(run_dir, "best")) if which == "best" else latest
    if path is None and which == "best" and latest is not None:
        logger.warning("%s: no best checkpoint (not validated yet); using the latest, step %d", run_dir, _checkpoint_step(latest))
        path = latest
    if path is None:
        raise RunDirError(f"{run_dir}: no checkpoint found")
    gpu = bool(tf.config.list_physical_devices("GPU"))
    model = make_model(config, config.train.mixed_precision if gpu else None)  # float32 on CPUs
    model.build()
    step = tf.Variable(-1, dtype=tf.int64)
    restore_checkpoint(tf.train.Checkpoint(model=model, step=step), path, model)
    return model, config, int(step)


def restore_checkpoint(checkpoint: tf.train.Checkpoint, path: str, model: SequenceModel) -> None:
    """Restore ``path`` into every object of ``checkpoint``; the checkpoint's model values must be
    exactly ``model``'s variables (none missing, none left over, same shapes).

    Raises:
        RunDirError: the files are unreadable or truncated, or do not match (names the first culprit).
    """
    what = f"{path}: checkpoint"
    try:
        saved = [name for name, _ in tf.train.list_variables(path)
                 if name.startswith("model/") and name.endswith("/.ATTRIBUTES/VARIABLE_VALUE") and ".OPTIMIZER_SLOT" not in name]
        checkpoint.restore(path).expect_partial().assert_existing_objects_matched()
    except AssertionError as err:
        names = re.findall(r"<tf.Variable '([^']+)'", str(err))
        culprit = f"variable {names[0]}" if names else "an object"
        raise RunDirError(f"{what} has no value for {culprit} of the model that config.yaml builds "
                          f"(was config.yaml edited after training?)") from None
    except ValueError as err:  # a shape that differs
        raise RunDirError(f"{what} does not match the model that config.yaml builds: {err}") from None
    except (tf.errors.OpError, IndexError, OSError) as err:
        message = getattr(err, "message", None) or str(err) or type(err).__name__
        raise RunDirError(f"{what} is unreadable or truncated ({message.splitlines()[0]})") from None
    expected = len({id(v) for v in model.variables})
    if len(saved) != expected:  # values the model has no place for: name the first (this costs one write of the model)
        with tempfile.TemporaryDirectory() as folder:
            written = tf.train.Checkpoint(model=model).write(os.path.join(folder, "model"))
            ours = {name for name, _ in tf.train.list_variables(written)}
        extra = sorted(set(saved) - ours)
        left_over = f": {extra[0].removesuffix('/.ATTRIBUTES/VARIABLE_VALUE')} is left over" if extra else ""
        raise RunDirError(f"{what} holds {len(saved)} model variables, but config.yaml builds {expected}{left_over} "
                          f"(was config.yaml edited after training?)")



def iterate_metrics(run_dir: str) -> Iterator[dict[str, Any]]:
    """The records of ``metrics.jsonl``."""
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


def drop_partial_record(run_dir: str) -> None:
    """Cut a last ``metrics.jsonl`` line that a killed run left half-written, so records appended on resume parse."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)
