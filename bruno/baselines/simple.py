"""Baselines a user would try first (beside the model): linear interpolation and the population mean.

Both work on pose-ordered slice stacks [N, H, W] on the 0..255 scale, like the HDF5 table.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bruno.data.table import SliceTable

__all__ = ["linear_interpolation", "population_mean"]


def linear_interpolation(images: np.ndarray, contexts: Sequence[int]) -> np.ndarray:
    """Fill every pose from the known ones: linear between the two nearest contexts, constant beyond the ends.

    Args:
        images: [N, H, W], of which only the slices at ``contexts`` are read.
        contexts: the known poses (at least one; any order).

    Returns:
        float64 [N, H, W]; with one context every slice is a copy of it.
    """
    known = np.array(sorted(set(int(c) for c in contexts)))
    if known.size == 0:
        raise ValueError("contexts: expected at least one known slice")
    stack = np.asarray(images, np.float64)[known]
    out = np.empty((len(images),) + stack.shape[1:])
    for q in range(len(images)):
        upper = int(np.searchsorted(known, q))
        if upper == 0:
            out[q] = stack[0]
        elif upper == len(known):
            out[q] = stack[-1]
        else:
            lo, hi = known[upper - 1], known[upper]
            weight = (q - lo) / (hi - lo)
            out[q] = (1.0 - weight) * stack[upper - 1] + weight * stack[upper]
    return out


def population_mean(table: SliceTable, split: str = "train") -> np.ndarray:
    """The mean slice of every pose over the volumes of one split: float64 [N, H, W] (an atlas)."""
    volumes = table.volumes_in(split)
    total = np.zeros((table.num_poses, table.image_size, table.image_size))
    with table.reader() as read:
        for v in volumes:
            total += read(table.rows_of(int(v)))
    return total / max(len(volumes), 1)
