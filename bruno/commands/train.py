"""``scripts/train.py`` and the demo's training: train a run, then make its test-time state.

Training (:mod:`bruno.training`) ends at its last checkpoint; a model with a test-time state (a population
process; the mean image's blend with the classical estimate with ``train.choose_blend``; the predictive's spread with
``train.choose_spread``) is completed here, after it, by
:func:`bruno.reconstruction.population_state.fit_population_state`, :func:`bruno.reconstruction.blend.fit_blend` and
:func:`bruno.reconstruction.spread.fit_spread`, so the training package never imports reconstruction.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Optional

import tensorflow as tf

from bruno.config import Config, override
from bruno.data.preprocess import load_slice_table
from bruno.data.table import SliceTable
from bruno.reconstruction.blend import fit_blend
from bruno.reconstruction.classical import estimate_settings
from bruno.reconstruction.population_state import fit_population_state
from bruno.reconstruction.spread import fit_spread
from bruno.runs import RunDir, make_deterministic
from bruno.runs.lock import run_lock
from bruno.training.distribute import worker_role
from bruno.training.loop import Trainer, TrainResult, open_run

__all__ = ["finish_run", "train_run", "train_unless_done", "with_estimate_settings"]

logger = logging.getLogger(__name__)


def train_run(config: Config, run_dir: str, resume: bool, overwrite: bool, strategy: Optional[tf.distribute.Strategy] = None,
              progress: bool = True) -> tuple[Trainer, TrainResult]:
    """Train ``run_dir`` (:func:`~bruno.training.open_run`, then :meth:`~bruno.training.Trainer.train`); then the chief
    makes the test-time state of the best checkpoint where the model has one. Seed first."""
    config = with_estimate_settings(config, progress)
    with run_lock(run_dir) if worker_role(strategy).is_chief else contextlib.nullcontext():  # one writer per run
        trainer = open_run(config, run_dir, resume, overwrite, strategy, progress)
        result = trainer.train()
        if trainer.role.is_chief:
            finish_run(config, run_dir, trainer.table, progress)
    return trainer, result


def with_estimate_settings(config: Config, progress: bool = True) -> Config:
    """``config`` with the settings ``model.estimate`` leaves unset taken from the table's classical search
    (:func:`bruno.reconstruction.classical.estimate_settings`), so the run's ``config.yaml`` holds the numbers."""
    unset = config.model.estimate.unset
    if not config.model.estimate.use or not unset:
        return config
    chosen = estimate_settings(load_slice_table(config, progress), progress)
    logger.info("model.estimate from the classical search on the val split: %s",
                ", ".join(f"{key} = {chosen[key]:g}" for key in unset))
    return override(config, "model.estimate", **{key: chosen[key] for key in unset})


def finish_run(config: Config, run_dir: str, table: SliceTable, progress: bool = True) -> None:
    """Make the best checkpoint's test-time state where it has none: a population process's bank and c, then (with
    ``train.choose_blend``) the blend w(k) of the mean image with the classical estimate, then (with
    ``train.choose_spread``) the predictive's temperature τ(k)."""
    fit_population_state(run_dir, table, progress)
    if config.train.choose_blend:
        fit_blend(run_dir, table, progress)
    if config.train.choose_spread:
        fit_spread(run_dir, table, progress)


def train_unless_done(config: Config, run_dir: str, seed: int, progress: bool = True) -> Optional[TrainResult]:
    """Train ``run_dir`` to ``config.train.max_steps`` (resuming a run stopped part-way); None when it is already there."""
    config = with_estimate_settings(config, progress)
    run = RunDir(run_dir)
    reached = run.latest_step()
    if reached is not None and reached >= config.train.max_steps:  # a run killed after its last step, before its test-time state
        with run_lock(run_dir):
            finish_run(config, run_dir, load_slice_table(config, progress), progress)
        return None
    make_deterministic(seed)
    # its own start, killed before a first checkpoint, holds nothing to keep: start it again
    restart = reached is None and run.has_config() and run.config() == config
    _, result = train_run(config, run_dir, reached is not None, restart, progress=progress)
    logger.info("trained %d steps in %.0f s (best val %.3f nats/image)", result.step, result.seconds, result.best_val_loss)
    return result
