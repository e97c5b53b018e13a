"""Per-step schedules of training: learning rate, process-gradient scale, number of contexts."""
from __future__ import annotations

import numpy as np

from bruno.config import TrainConfig

__all__ = ["learning_rate_at", "num_context_at", "process_grad_scale"]


def learning_rate_at(step: int, learning_rate: float, decay: float) -> float:
    """lr·decay^(step+1): the upstream decays once per iteration, iteration 0 included."""
    return learning_rate * decay ** (step + 1)


def process_grad_scale(step: int, schedule: dict[int, float]) -> float:
    """The schedule value of the largest step key <= ``step``."""
    return schedule[max(k for k in schedule if k <= step)]


def num_context_at(step: int, train: TrainConfig) -> int:
    """n_c of training step ``step``: ``num_context``, or uniform in [num_context_min, num_context] seeded by (seed, step)."""
    if train.num_context_min is None:
        return train.num_context
    return int(np.random.default_rng([train.seed, step]).integers(train.num_context_min, train.num_context + 1))

