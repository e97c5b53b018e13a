"""Which poses a reconstruction conditions on: the evaluation's context rules (SPEC §5.3) and their checks."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np

from bruno.errors import ConfigError

__all__ = ["FAST_SAMPLES", "FETAL_CONTEXTS", "check_contexts", "evenly_spread", "fetal_contexts"]

# Table 4a of the paper (fetal, N = 80): hard-coded context slices per k (SPEC §5.3).
FETAL_CONTEXTS = {1: (40,), 3: (20, 40, 60), 4: (10, 30, 50, 70), 7: (10, 20, 30, 40, 50, 60, 70)}


# The cheapest number of samples whose mean image scores within 0.005 SSIM of the 100-sample mean
# (measured with the sample-count study on IXI validation brains; RESULTS.md).
FAST_SAMPLES = 20


def evenly_spread(k: int, num_poses: int) -> list[int]:
    """k context poses spread over the stack: idx_i = round((i+1)·N/(k+1)), i = 0..k−1 (SPEC §5.3).

    Where that rule would repeat a pose (k close to N), k distinct poses evenly spaced from 0 to N−1.

    Raises:
        ConfigError: k < 0 or k > N.
    """
    if not 0 <= k <= num_poses:
        raise ConfigError(f"k={k}, expected 0 <= k <= N = {num_poses}")
    indices = [min(int(np.floor((i + 1) * num_poses / (k + 1) + 0.5)), num_poses - 1) for i in range(k)]
    if len(set(indices)) < k:  # k close to N: the rule repeats poses, so spread over the whole stack instead
        indices = np.round(np.linspace(0, num_poses - 1, k)).astype(int).tolist()
    return indices


def fetal_contexts(k: int, num_poses: int) -> list[int]:
    """The paper's fetal context table (N = 80, k ∈ {1, 3, 4, 7})."""
    if num_poses != 80 or k not in FETAL_CONTEXTS:
        raise ConfigError(f"the fetal context table needs N = 80 and k in {sorted(FETAL_CONTEXTS)}, got N = {num_poses}, k = {k}")
    return list(FETAL_CONTEXTS[k])


def check_contexts(contexts: Sequence[int], num_poses: int, label: Optional[str] = None) -> list[int]:
    """The context poses as a list of ints, checked: in [0, N), no repeats (empty: the prior).

    Raises:
        ConfigError: starting with ``label`` (default: ``contexts [...]``), naming the bad value.
    """
    values = [int(c) for c in contexts]
    label = label or f"contexts {values}"
    bad = [v for v in values if not 0 <= v < num_poses]
    if bad:
        raise ConfigError(f"{label}: {bad[0]} is out of range, expected indices in [0, {num_poses})")
    if len(set(values)) != len(values):
        raise ConfigError(f"{label}: repeated slice index")
    return values
