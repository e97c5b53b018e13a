"""Where in the slab an acquisition lies: the poses of acquired slices from their world positions.

The slices sit at known positions z_i (mm along the stack normal, :mod:`bruno.data.acquisition`);
what is unknown is the patient's slab, i.e. the map z → pose q = ⌊(z − lo) / step⌋. Given a score
S[i, q] of slice i at pose q, the estimate maximises Σ_i S[i, q_i] over lo and over the pose spacing
``step`` in the range the training volumes had, on a grid (every slice inside the slab, one slice
per pose). Scores:

* :func:`model_scores`, a trained model's exact log-likelihood log p(x_i | pose q) in nats: the
  flow is conditioned on the pose, and with no contexts the process gives the prior at that pose;
* :func:`atlas_scores`, without a trained model: 1000 × the normalised cross-correlation of slice i
  with the population-mean slice at pose q (a similarity, not a likelihood).

The margin is the best score minus the best score of any placement that moves some slice by more than
``AMBIGUOUS_POSES`` poses: a small margin means the acquisition fits two places almost equally well.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import NamedTuple, Optional

import numpy as np
import tensorflow as tf

from bruno.data.acquisition import Acquisition, place_slab, slab_affine, slab_from_poses
from bruno.errors import VolumeError
from bruno.metrics import pearson
from bruno.models import SequenceModel
from bruno.runs import InferenceRecord

__all__ = ["AMBIGUOUS_POSES", "Placement", "PoseEstimate", "atlas_scores", "estimate_poses", "model_scores",
           "place_acquisition"]

logger = logging.getLogger(__name__)
AMBIGUOUS_MARGIN = 10.0  # score units (nats, or 1000 × NCC) below which an estimate is logged as ambiguous
AMBIGUOUS_POSES = 3  # placements further than this from the best count as rivals for the margin
_LO_STEPS_PER_POSE = 4  # grid resolution of lo, in fractions of a pose
_NUM_SPACINGS = 15


class PoseEstimate(NamedTuple):
    """The estimated placement: ``poses`` (one per slice, increasing), the slab ``(lo, hi)`` in mm,
    ``score`` (Σ_i S[i, q_i]) and ``margin`` (module docstring; inf when nothing else fits)."""

    poses: list[int]
    slab_mm: tuple[float, float]
    score: float
    margin: float


def model_scores(model: SequenceModel, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """S[i, q] = log p(images[i] | pose q) under the model with no contexts (nats; pixels + ½).

    Args:
        images: uint8 or float [k, H, W] on 0..255.
    """
    count, num_poses = len(images), model.num_poses
    x = np.repeat(np.asarray(images, np.float32)[:, None] + 0.5, num_poses, axis=1).reshape(-1, 1, *images.shape[1:], 1)
    poses = np.tile(np.eye(num_poses, dtype=np.float32), (count, 1))[:, None]
    scores = []
    for s in range(0, len(x), batch_size):
        inputs = model.log_prob_inputs(x[s:s + batch_size], poses[s:s + batch_size], 0)  # no contexts: the atlas estimate
        scores.append(model.log_prob(tf.constant(x[s:s + batch_size]), tf.constant(poses[s:s + batch_size]), 0,
                                     **inputs).log_prob.numpy()[:, 0])
    return np.concatenate(scores).reshape(count, num_poses)


def atlas_scores(atlas: np.ndarray, images: np.ndarray) -> np.ndarray:
    """S[i, q] = 1000 · NCC(images[i], atlas[q]) for atlas [N, H, W] and images [k, H, W] (0 where either is constant)."""
    flat_images, flat_atlas = np.reshape(images, (len(images), 1, -1)), np.reshape(atlas, (1, len(atlas), -1))
    return 1000.0 * np.nan_to_num(pearson(flat_images, flat_atlas), nan=0.0)


def estimate_poses(scores: np.ndarray, positions_mm: Sequence[float], mm_per_pose: tuple[float, float]) -> PoseEstimate:
    """The placement of slices at ``positions_mm`` (increasing) that maximises Σ_i scores[i, q_i].

    Args:
        scores: S [k, N].
        positions_mm: z_i, increasing.
        mm_per_pose: (smallest, largest) pose spacing to try (the training range).

    Raises:
        ValueError: no placement puts every slice inside the slab on its own pose.
    """
    scores = np.asarray(scores, np.float64)
    z = np.asarray(positions_mm, np.float64)
    count, num_poses = scores.shape
    low, high = (float(v) for v in mm_per_pose)
    steps = np.unique(np.geomspace(low, high, _NUM_SPACINGS)) if high > low else np.array([low])
    candidates = []  # (score, poses, lo, step)
    rows = np.arange(count)
    for step in steps:
        # lo such that every slice is inside: z_max − N·step < lo <= z_min.
        lo_grid = np.arange(z[-1] - num_poses * step, z[0], step / _LO_STEPS_PER_POSE) + 1e-9
        for lo in lo_grid:
            poses = np.floor((z - lo) / step).astype(int)
            if poses.min() < 0 or poses.max() >= num_poses or np.any(np.diff(poses) <= 0):
                continue
            candidates.append((float(scores[rows, poses].sum()), poses, float(lo), float(step)))
    if not candidates:
        raise ValueError(f"no placement of slices at {', '.join(f'{v:.1f}' for v in z)} mm fits {num_poses} poses of "
                         f"{low:.2f}..{high:.2f} mm with one slice per pose")
    best = max(candidates, key=lambda c: c[0])
    rivals = [c[0] for c in candidates if np.max(np.abs(c[1] - best[1])) > AMBIGUOUS_POSES]
    margin = best[0] - max(rivals) if rivals else math.inf
    return PoseEstimate([int(q) for q in best[1]], (best[2], best[2] + best[3] * num_poses), best[0], margin)


class Placement(NamedTuple):
    """Acquired slices on the model's pose grid: ``images`` [N, H, W] with only ``poses`` filled, the
    ``affine`` of the reconstructed [W, H, N] volume, and the ``estimate`` (None when poses were given)."""

    images: np.ndarray
    poses: list[int]
    affine: np.ndarray
    estimate: Optional[PoseEstimate]


def place_acquisition(acquisition: Acquisition, num_poses: int, training: Optional[InferenceRecord],
                      model: Optional[SequenceModel] = None, slab_mm: Optional[tuple[float, float]] = None,
                      poses: Optional[Sequence[int]] = None, log: bool = False) -> Placement:
    """Put acquired slices on the grid of ``num_poses`` poses: by the slab (``slab_mm``), by given ``poses`` (the slab
    fitted to them; one slice: the training median spacing), or else by estimation (the model's likelihood;
    without a model, NCC with the training atlas) over the training range of pose spacings. ``training``: what the
    training data says (a run's :class:`~bruno.runs.InferenceRecord`); None where it is unknown, which leaves
    only ``slab_mm``. With ``log``, an estimate is logged with its margin (a warning when ambiguous).

    Raises:
        VolumeError: slices outside the slab or sharing a pose, bad poses, no placement fits, or poses to place
            without ``training``.
    """
    estimate = None
    if slab_mm is None and training is None:
        raise VolumeError(f"{acquisition.sources[0]}: the training pose spacing is unknown (a run written before "
                          "inference.npz, without its slice table): give the slab (--slab-mm)")
    if slab_mm is not None:
        placed, affine = place_slab(acquisition, slab_mm, num_poses)
    elif poses is not None:
        assert training is not None
        placed = [int(q) for q in poses]
        median = float(np.median(training.pose_spacing_mm))
        affine = slab_affine(acquisition, slab_from_poses(acquisition, placed, num_poses, median), num_poses)
    else:
        assert training is not None
        scores = model_scores(model, acquisition.images) if model is not None else atlas_scores(training.atlas, acquisition.images)
        try:
            estimate = estimate_poses(scores, acquisition.positions_mm, training.spacing_range)
        except ValueError as err:
            raise VolumeError(f"{acquisition.sources[0]}: cannot estimate the poses: {err}; give the poses or the slab") from None
        placed, affine = estimate.poses, slab_affine(acquisition, estimate.slab_mm, num_poses)
        if log:
            _log_estimate(estimate, "nats" if model is not None else "(1000 × NCC with the atlas)")
    images = np.zeros((num_poses,) + acquisition.images.shape[1:], np.uint8)
    images[placed] = acquisition.images
    return Placement(images, placed, affine, estimate)


def _log_estimate(estimate: PoseEstimate, unit: str) -> None:
    if not math.isfinite(estimate.margin):  # every placement searched is within AMBIGUOUS_POSES of it
        logger.info("estimated poses %s (slab %.1f..%.1f mm; score %.1f; no placement searched moves a slice by more "
                    "than %d poses)", estimate.poses, *estimate.slab_mm, estimate.score, AMBIGUOUS_POSES)
        return
    logger.info("estimated poses %s (slab %.1f..%.1f mm; score %.1f, margin %.1f %s over any placement moving a "
                "slice by more than %d poses)", estimate.poses, *estimate.slab_mm, estimate.score, estimate.margin,
                unit, AMBIGUOUS_POSES)
    if estimate.margin < AMBIGUOUS_MARGIN:
        logger.warning("the pose estimate is ambiguous (margin %.1f < %g): check it, or give the poses or the slab",
                       estimate.margin, AMBIGUOUS_MARGIN)
