"""A run's model, restored: what inference needs from a run directory (:class:`~bruno.runs.run_dir.RunDir`).

This package imports no training code: reconstruction, evaluation and the inference commands restore a model
through :func:`restore_model` without optimisers, loss scaling or the loop.
"""
from __future__ import annotations

import logging
import os
import re
import tempfile
from typing import Optional, Union

import tensorflow as tf
import tf_keras as keras

from bruno.config import Config
from bruno.errors import ConfigError, RunDirError
from bruno.memory import check_fits
from bruno.models import MODEL_KINDS, SequenceModel
from bruno.precision import compute_policy
from bruno.runs.lock import holder
from bruno.runs.population_state import apply_population_state
from bruno.runs.run_dir import RunDir, checkpoint_step
from bruno.runs.spread import apply_blend, apply_spread

__all__ = ["check_training_fits", "make_deterministic", "make_model", "restore_checkpoint", "restore_model"]

logger = logging.getLogger(__name__)


def make_deterministic(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TF kernels deterministic (same seed → same numbers on CPU).

    The Python seed matters: unseeded ``tf_keras`` initializers draw their seeds from ``random``.
    """
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()



def make_model(config: Config, precision: Optional[str] = None) -> SequenceModel:
    """The model ``config.model.kind`` names (BRUNO or one of the paper's baselines), variables not yet built.

    Args:
        config: the experiment.
        precision: None (float32), or ``float16``/``bfloat16`` where the model class ``supports_mixed_precision``
            (:mod:`bruno.precision`).

    Raises:
        ConfigError: mixed precision asked for a model that does not support it; weights that cannot fit in memory.
    """
    model_class = MODEL_KINDS[config.model.kind]
    if precision is not None and not model_class.supports_mixed_precision:
        raise ConfigError(f"train.mixed_precision={precision!r}: only BRUNO models (model.kind: bruno) support it, "
                          f"not {config.model.kind!r}")
    estimate = model_class.memory_estimate(config)
    if estimate is not None:
        check_fits(estimate.bytes, estimate.label, "the flow's weights")
    with compute_policy(precision):
        return model_class.from_config(config)


def check_training_fits(config: Config) -> None:
    """Refuse a model whose training (weights, optimiser state, one batch's feature maps) cannot fit in memory,
    where its class has an estimate (:meth:`~bruno.models.SequenceModel.memory_estimate`).

    Raises:
        ConfigError: naming the model's sizes and the batch.
    """
    images = config.train.batch_size * config.train.seq_len
    estimate = MODEL_KINDS[config.model.kind].memory_estimate(config, images)
    if estimate is not None:
        check_fits(estimate.bytes, estimate.label, f"training on {config.train.batch_size}x{config.train.seq_len} images a step")


def restore_model(run_dir: Union[str, RunDir], which: str = "best", population_state: bool = True,
                  spread: bool = True, blend: bool = True) -> tuple[SequenceModel, Config, int]:
    """The model of a run from its ``best`` or ``latest`` checkpoint, every variable restored. Restored from the best
    checkpoint, a model with a test-time state also gets it: a population process its stored bank and c
    (:mod:`bruno.runs.population_state`), a BRUNO model its blend w(k) with the classical estimate and its predictive's
    temperature τ(k) (:mod:`bruno.runs.spread`).

    A run without a best checkpoint (no validation yet) gives its latest, with a warning.
    ``population_state=False``: the best checkpoint as trained (what makes the test-time state); ``blend=False``:
    w = 1 and τ = 1 (what the blend is chosen for); ``spread=False``: τ = 1 (what the spread is chosen for).

    Returns:
        (model, config, step of the checkpoint).

    Raises:
        RunDirError: no such run or checkpoint; a checkpoint that is unreadable or does not match
            the run's ``config.yaml`` (a variable missing, left over or of another shape).
        DataFileError: a stored blend or spread that is unreadable or was chosen for other weights.
    """
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    config = run.config()
    gpu = bool(tf.config.list_physical_devices("GPU"))
    model = make_model(config, config.train.mixed_precision if gpu else None)  # float32 on CPUs
    model.build()
    step = tf.Variable(-1, dtype=tf.int64)
    from_best = _restore_newest(run, which, tf.train.Checkpoint(model=model, step=step), model)
    if model.conditioned_on_estimate:
        model.attach_estimator(run.estimate())  # type: ignore[attr-defined]
    if type(model).has_test_time_state(config) and from_best and population_state:
        apply_population_state(model.process, run, int(step), model.weights_sha1())  # type: ignore[attr-defined]
    if model.has_process and from_best and population_state and blend:
        apply_blend(model, run, int(step))
        if spread:
            apply_spread(model, run, int(step))
    return model, config, int(step)


def _checkpoint_path(run: RunDir, which: str) -> tuple[str, bool]:
    """The newest complete checkpoint of ``which`` (the latest where there is no best yet, warned), and whether it is
    the best one."""
    latest = run.latest_checkpoint()
    path = run.latest_checkpoint("best") if which == "best" else latest
    if path is not None:
        return path, which == "best"
    if which == "best" and latest is not None:
        logger.warning("%s: no best checkpoint (not validated yet); using the latest, step %d", run.path, checkpoint_step(latest))
        return latest, False
    raise RunDirError(f"{run.path}: no checkpoint found")


def _restore_newest(run: RunDir, which: str, checkpoint: tf.train.Checkpoint, model: SequenceModel, attempts: int = 3) -> bool:
    """Restore the newest complete checkpoint of ``which``; whether it was the best one.

    A training run replaces ``best/`` (and rotates ``checkpoints/``) while others read it: a checkpoint found complete
    can be deleted before its files are read. Then the one that replaced it is restored instead (issue 37).
    """
    for _ in range(attempts):
        path, from_best = _checkpoint_path(run, which)
        try:
            restore_checkpoint(checkpoint, path, model)
            return from_best
        except RunDirError:
            if os.path.exists(f"{path}.index") or _checkpoint_path(run, which)[0] == path:
                raise  # still there: really unreadable
            logger.info("%s: %s was replaced while being read; restoring its successor", run.path, path)
    raise RunDirError(f"{run.path}: its checkpoints keep being replaced while being read (a training run is writing it: "
                      f"{holder(run.path) or 'no live writer now'}); try again")


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
