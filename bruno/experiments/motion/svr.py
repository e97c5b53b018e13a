"""Translation-only slice-to-volume registration (SVR) of motion-corrupted stacks.

Starting from an initial volume (a Gaussian average of the stacks, or a BRUNO reconstruction),
each iteration

1. registers every slice to the current volume: the translation (in voxels of the volume) that
   maximises the normalised cross-correlation (Pearson) between the slice and the volume
   resampled on the slice's plane moved by that translation. The search starts from the previous
   estimate, stays within ``limit_vox`` of the nominal position, and moves by compass steps (one
   step along each axis, both ways) of 2, 1, ½ and ¼ voxel, at most 6 moves per step size (on two
   phantom volumes as accurate as trying all 26 neighbours at every size, in a third of the time),
   then by steps to any of the 26 neighbours at ¼ voxel (a compass alone can stall on a diagonal
   ridge of the NCC);
2. re-scatters every slice at its corrected position and takes the Gaussian-weighted average
   (:func:`bruno.motion.gaussian_average`): that is the new volume.

Slices with (almost) no content (standard deviation below 1 grey level) keep their position. The
initial volume only guides the registration: every later volume is made of the acquired slices alone.
"""
from __future__ import annotations

from collections.abc import Sequence
from itertools import product
from typing import NamedTuple, Optional

import numpy as np
from tqdm import tqdm

from bruno.experiments.motion.simulate import Stack, gaussian_average, sample_volume
from bruno.metrics import pearson

__all__ = ["PATTERN_STEPS", "SVRResult", "normalised_cross_correlation", "register_stack", "slice_to_volume"]

PATTERN_STEPS = (2.0, 1.0, 0.5, 0.25)
_COMPASS = np.concatenate([np.eye(3), -np.eye(3)])  # [6, 3]: one step along each axis, both ways
_NEIGHBOURS = np.array([d for d in product((-1.0, 0.0, 1.0), repeat=3) if any(d)])  # [26, 3]
_MIN_CONTENT = 1.0  # grey levels: flatter slices are not registered


def normalised_cross_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Pearson correlation of [..., P] arrays (:func:`bruno.metrics.pearson`); 0 where either row is constant."""
    return np.nan_to_num(pearson(a, b), nan=0.0)


def register_stack(volume: np.ndarray, stack: Stack, offsets_vox: np.ndarray, limit_vox: Optional[np.ndarray] = None,
                   steps: Sequence[float] = PATTERN_STEPS, max_moves: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Register every slice of ``stack`` to ``volume``.

    Args:
        volume: [N, H, W], the current estimate.
        stack: the acquired slices.
        offsets_vox: [S, 3] starting corrections (voxels).
        limit_vox: [3] the largest correction allowed per axis (None: unbounded).
        steps: pattern sizes in voxels, coarse to fine.
        max_moves: moves per pattern size.

    Returns:
        (offsets [S, 3], NCC of each slice at them [S]).
    """
    slices = stack.slices.reshape(len(stack.slices), -1)
    registered = slices.std(-1) >= _MIN_CONTENT
    nominal = stack.points(np.zeros((len(slices), 3)))  # [3, S, P]
    offsets = np.array(offsets_vox, np.float64)
    limit = np.full(3, np.inf) if limit_vox is None else np.asarray(limit_vox, np.float64)

    def score(candidates: np.ndarray, rows: np.ndarray) -> np.ndarray:  # [C, R, 3] for slices ``rows`` → NCC [C, R]
        values = [sample_volume(volume, nominal[:, rows] + c.T[:, :, None]) for c in candidates]
        return normalised_cross_correlation(np.stack(values), slices[rows][None])

    best = score(offsets[None], np.arange(len(slices)))[0]
    # Compass moves at every step size, then all 26 neighbours at the finest (diagonal ridges trap a compass).
    # Only the slices that moved in the previous round are scored again.
    for step, pattern in [(h, _COMPASS) for h in steps] + [(steps[-1], _NEIGHBOURS)]:
        active = np.flatnonzero(registered)
        for _ in range(max_moves):
            if len(active) == 0:
                break
            candidates = np.clip(offsets[active][None] + step * pattern[:, None, :], -limit, limit)  # [C, R, 3]
            scores = score(candidates, active)
            choice = scores.argmax(0)
            gain = scores[choice, np.arange(len(active))]
            moved = gain > best[active] + 1e-12
            offsets[active[moved]] = candidates[choice[moved], np.flatnonzero(moved)]
            best[active[moved]] = gain[moved]
            active = active[moved]
    return offsets, best


class SVRResult(NamedTuple):
    """Volumes and corrections after each iteration (index 0: the initial volume, no corrections)."""

    volumes: list[np.ndarray]
    offsets: list[list[np.ndarray]]


def slice_to_volume(stacks: Sequence[Stack], initial: np.ndarray, iterations: int = 5, sigma_vox: float = 1.0,
                    limit_vox: Optional[np.ndarray] = None, progress: bool = False) -> SVRResult:
    """Alternate registration of every slice and Gaussian re-scattering, ``iterations`` times.

    Args:
        stacks: the acquired stacks.
        initial: [N, H, W], the volume the first registration aligns to.
        iterations: registration + scattering rounds.
        sigma_vox: the Gaussian average's σ (voxels).
        limit_vox: [3] the largest correction per axis (voxels).
        progress: progress bar over iterations.
    """
    offsets = [np.zeros((len(s.slices), 3)) for s in stacks]
    volumes, history = [np.asarray(initial, np.float64)], [offsets]
    for _ in tqdm(range(iterations), desc="SVR", unit="iteration", disable=not progress, leave=False):
        offsets = [register_stack(volumes[-1], stack, o, limit_vox)[0] for stack, o in zip(stacks, offsets)]
        volumes.append(gaussian_average(initial.shape, stacks, sigma_vox, offsets))
        history.append(offsets)
    return SVRResult(volumes, history)
