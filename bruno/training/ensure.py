"""A run trained to its ``max_steps`` whatever state it is in: not started, stopped part-way, or done (``scripts/demo.py``)."""
from __future__ import annotations

import logging
import os
from typing import Optional

from bruno.config import Config
from bruno.data.preprocess import load_slice_table
from bruno.runs import latest_step, load_run_config, make_deterministic
from bruno.training.loop import TrainResult, open_run
from bruno.training.population_final import finalize_population

__all__ = ["train_unless_done"]

logger = logging.getLogger(__name__)


def train_unless_done(config: Config, run_dir: str, seed: int, progress: bool = True) -> Optional[TrainResult]:
    """Train ``run_dir`` to ``config.train.max_steps`` (resuming a run stopped part-way); None when it is already there."""
    reached = latest_step(run_dir)
    if reached is not None and reached >= config.train.max_steps:
        if config.model.process.population:  # a run killed after its last step, before its test-time state
            finalize_population(run_dir, load_slice_table(config, progress), progress)
        return None
    make_deterministic(seed)
    # its own start, killed before a first checkpoint, holds nothing to keep: start it again
    restart = reached is None and os.path.exists(os.path.join(run_dir, "config.yaml")) and load_run_config(run_dir) == config
    result = open_run(config, run_dir, reached is not None, restart, progress=progress).train()
    logger.info("trained %d steps in %.0f s (best val %.3f nats/image)", result.step, result.seconds, result.best_val_loss)
    return result
