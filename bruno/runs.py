"""Run directories and what inference needs from them: the config of a run, its model, restored.

A run directory (written by ``scripts/train.py`` through :mod:`bruno.training`, which checks and
prepares it in :mod:`bruno.training.run_dir`) holds
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
import re
import tempfile
from collections.abc import Iterator
from typing import Any, Optional

import tensorflow as tf
import tf_keras as keras
import yaml

from bruno.config import Config, parse_config
from bruno.errors import ConfigError, RunDirError
from bruno.memory import check_fits, flow_bytes
from bruno.models import MODEL_KINDS, SequenceModel
from bruno.precision import compute_policy
from bruno.processes import PopulationProcess
from bruno.processes.population_state import apply_population_state

__all__ = [
    "check_training_fits",
    "checkpoint_step",
    "iterate_metrics",
    "latest_checkpoint",
    "latest_step",
    "load_run_config",
    "make_deterministic",
    "make_model",
    "restore_checkpoint",
    "restore_model",
]

logger = logging.getLogger(__name__)

_CHECKPOINT_INDEX = re.compile(r"^ckpt-(\d+)\.index$")


def make_deterministic(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TF kernels deterministic (same seed → same numbers on CPU).

    The Python seed matters: unseeded ``tf_keras`` initializers draw their seeds from ``random``.
    """
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()



def checkpoint_step(path: str) -> int:
    """The step a checkpoint was saved at (its number: ``.../ckpt-<step>``)."""
    return int(path.rsplit("-", 1)[1])


def latest_checkpoint(folder: str) -> Optional[str]:
    """The newest complete checkpoint in ``folder`` (``checkpoints`` or ``best`` of a run); None if there is none.

    TensorFlow names the latest in an index file (``checkpoint``) written after the checkpoint's own files, so a
    kill in between leaves a complete ``ckpt-<step>`` that the index does not name yet: the files themselves
    count, a checkpoint being complete once its ``.index`` and data files are there.
    """
    named = tf.train.latest_checkpoint(folder)
    steps = [int(found.group(1)) for found in map(_CHECKPOINT_INDEX.match, os.listdir(folder) if os.path.isdir(folder) else [])
             if found and os.path.exists(os.path.join(folder, f"ckpt-{found.group(1)}.data-00000-of-00001"))]
    if not steps or (named is not None and checkpoint_step(named) >= max(steps)):
        return named
    return os.path.join(folder, f"ckpt-{max(steps)}")


def latest_step(run_dir: str) -> Optional[int]:
    """The step of a run directory's latest checkpoint; None before the first one."""
    latest = latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    return None if latest is None else checkpoint_step(latest)


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
    if precision is not None and config.model.kind != "bruno":
        raise ConfigError(f"train.mixed_precision={precision!r}: only BRUNO models (model.kind: bruno) support it, "
                          f"not {config.model.kind!r}")
    if config.model.kind == "bruno":
        check_fits(flow_bytes(config), _flow_label(config), "the flow's weights")
    with compute_policy(precision):
        return MODEL_KINDS[config.model.kind].from_config(config)


def _flow_label(config: Config) -> str:
    flow = config.model.flow
    return (f"model.flow (num_filters={flow.num_filters}, num_residual_blocks={flow.num_residual_blocks}, "
            f"num_scales={flow.num_scales}, data.image_size={config.data.image_size})")


def check_training_fits(config: Config) -> None:
    """Refuse a BRUNO model whose training (weights, optimiser state, one batch's feature maps) cannot fit in memory.

    Raises:
        ConfigError: naming the flow's sizes and the batch.
    """
    if config.model.kind == "bruno":
        images = config.train.batch_size * config.train.seq_len
        check_fits(flow_bytes(config, images), _flow_label(config),
                   f"training on {config.train.batch_size}x{config.train.seq_len} images a step")


def restore_model(run_dir: str, which: str = "best", population_state: bool = True) -> tuple[SequenceModel, Config, int]:
    """The model of a run from its ``best`` or ``latest`` checkpoint, every variable restored (a population
    process from the best checkpoint also gets its stored test-time bank and c: :mod:`bruno.processes.population_state`).

    A run without a best checkpoint (no validation yet) gives its latest, with a warning.
    ``population_state=False``: the best checkpoint as trained (what makes the test-time state).

    Returns:
        (model, config, step of the checkpoint).

    Raises:
        RunDirError: no such run or checkpoint; a checkpoint that is unreadable or does not match
            the run's ``config.yaml`` (a variable missing, left over or of another shape).
    """
    config = load_run_config(run_dir)
    latest = latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    path = latest_checkpoint(os.path.join(run_dir, "best")) if which == "best" else latest
    from_best = path is not None and which == "best"
    if path is None and which == "best" and latest is not None:
        logger.warning("%s: no best checkpoint (not validated yet); using the latest, step %d", run_dir, checkpoint_step(latest))
        path = latest
    if path is None:
        raise RunDirError(f"{run_dir}: no checkpoint found")
    gpu = bool(tf.config.list_physical_devices("GPU"))
    model = make_model(config, config.train.mixed_precision if gpu else None)  # float32 on CPUs
    model.build()
    step = tf.Variable(-1, dtype=tf.int64)
    restore_checkpoint(tf.train.Checkpoint(model=model, step=step), path, model)
    process = getattr(model, "process", None)
    if isinstance(process, PopulationProcess) and from_best and population_state:
        apply_population_state(process, run_dir, int(step))
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
