"""The reconstructions a user tries first: linear interpolation and the population mean (an atlas).

Both work on pose-ordered slice stacks [N, H, W] on the 0..255 scale, like the HDF5 table.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["interpolate_along_pose", "linear_interpolation", "population_mean"]


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
    where = np.interp(np.arange(len(images)), known, np.arange(len(known)))  # fractional index into ``known``, clamped
    return interpolate_along_pose(np.asarray(images, np.float64)[known], where)


def interpolate_along_pose(stack: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """A stack [..., M, H, W] at fractional poses ``positions`` [Q] in [0, M − 1], linear between neighbours: [..., Q, H, W]."""
    positions = np.asarray(positions, np.float64)
    below = np.floor(positions).astype(int)
    above = np.minimum(below + 1, stack.shape[-3] - 1)
    weight = (positions - below)[:, None, None]
    return (1.0 - weight) * stack[..., below, :, :] + weight * stack[..., above, :, :]


def population_mean(volumes: np.ndarray) -> np.ndarray:
    """The mean slice of every pose over volumes [V, N, H, W] (the train split's: an atlas): float64 [N, H, W]."""
    return np.asarray(volumes).sum(axis=0, dtype=np.float64) / max(len(volumes), 1)
