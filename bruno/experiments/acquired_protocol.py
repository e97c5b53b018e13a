"""The acquired-slices evaluation protocol: every method sees only what a clinician would have.

For a test volume of the slice table and k: the k evenly spread context poses of its pose grid
give world positions; the raw axial slices of the volume's own file nearest to them are the
acquisition, read on their own by :func:`bruno.data.acquisition.read_acquisition` (the file's
other slices, its foreground extent and its intensity window are never read). Their poses are
estimated (:mod:`bruno.reconstruction.placement`: one placement for every method, from the first BRUNO model's
log-likelihood, or from NCC with the atlas when only classical methods are scored), or taken from
the truth's slab (``known``). Every method reconstructs on that pose grid in the acquisition's own
intensity window; for scoring, its output is mapped back to the scan's intensity units, then onto
the truth's window and, by linear interpolation along the slice normal, onto the truth's poses.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Literal, NamedTuple, Optional

import numpy as np

from bruno.baselines.simple import interpolate_along_pose
from bruno.config import DataConfig
from bruno.data.acquisition import Acquisition, acquisition_from, grid_poses, grid_slab
from bruno.data.nifti import load_nifti
from bruno.data.table import SliceTable, VolumeInfo
from bruno.errors import ConfigError, DataFileError
from bruno.metrics import slice_scores
from bruno.models import SequenceModel
from bruno.reconstruction.placement import place_acquisition
from bruno.runs import InferenceRecord, inference_record

__all__ = ["Acquired", "OnTruth", "acquired_inputs", "compare_on_truth", "find_scan", "onto_truth_grid"]


class Acquired(NamedTuple):
    """What the methods get for one (subject, k): ``images`` [N, H, W] with only ``poses`` filled
    (the acquisition's window), and ``to_truth`` mapping any [..., N, H, W] output onto the truth's
    grid and 0..255 scale; ``slice_errors`` |estimated − true| pose of each acquired slice, and
    ``pose_error`` / ``pose_error_mm`` their mean in poses and mm."""

    images: np.ndarray
    poses: list[int]
    to_truth: Callable[[np.ndarray], np.ndarray]
    slice_errors: list[int]
    pose_error: float
    pose_error_mm: float


def _nearest_raw_slices(info: VolumeInfo, poses: list[int], volume_affine: np.ndarray) -> list[int]:
    """Canonical slice indices of the volume nearest to the truth's poses (world positions)."""
    world = info.affine @ np.stack([np.zeros(len(poses)), np.zeros(len(poses)), np.asarray(poses, float), np.ones(len(poses))])
    return [int(round(v)) for v in (np.linalg.inv(volume_affine) @ world)[2]]


def find_scan(info: VolumeInfo, table_path: str) -> str:
    """The file of a table row's scan: its ``source``; a relative one (tables written before sources were stored
    absolute) from the working folder, then from the table's.

    Raises:
        ConfigError: built-in phantom data (no file: the paper protocol only).
        DataFileError: naming the file, the subject and the table.
    """
    if info.source.startswith("phantom://"):
        raise ConfigError(f"{table_path}: the acquired-slices protocol reads each test volume's own NIfTI file; "
                          f"{info.source} is built-in phantom data (use the paper protocol)")
    for path in (info.source, os.path.join(os.path.dirname(os.path.abspath(table_path)), info.source)):
        if os.path.isfile(path):
            return path
    raise DataFileError(f"{info.source}: no such file (the scan of subject {info.subject} in {table_path}; the acquired-slices "
                        "protocol reads each scan's own file: move it back, or score new files with --input)")


def acquired_inputs(table: SliceTable, data: DataConfig, poses_from: Literal["estimated", "known"],
                    scorer: Optional[SequenceModel], training: Optional[InferenceRecord] = None) -> Callable[[VolumeInfo, list[int]], Acquired]:
    """A function (the volume's table row, or a file's row made alike; true context poses) → :class:`Acquired`
    (module docstring); the scan's file is found by :func:`find_scan`.

    Args:
        scorer: the model whose log-likelihood places the slices (None: NCC with the atlas).
        training: the train split's pose spacings and atlas (by default the table's, computed once here).
    """
    training = inference_record(table) if training is None else training
    num_poses = data.num_poses

    def acquire(info: VolumeInfo, contexts: list[int]) -> Acquired:
        volume = load_nifti(find_scan(info, table.path), sparse=True)
        acquisition = acquisition_from([volume], data, _nearest_raw_slices(info, contexts, volume.affine))
        normal = acquisition.normal
        lo_true, step_true = grid_slab(info.affine, normal)
        if poses_from == "known":
            placement = place_acquisition(acquisition, num_poses, training, slab_mm=(lo_true, lo_true + step_true * num_poses))
        else:
            placement = place_acquisition(acquisition, num_poses, training, scorer)
        poses = placement.poses
        errors = np.abs(np.asarray(poses) - grid_poses(info.affine, acquisition))
        error = float(errors.mean())
        return Acquired(placement.images, list(poses), onto_truth_grid(info, acquisition, placement.affine, num_poses),
                        errors.tolist(), error, error * abs(step_true))

    return acquire


def onto_truth_grid(info: VolumeInfo, acquisition: Acquisition, affine: np.ndarray, num_poses: int) -> Callable[[np.ndarray], np.ndarray]:
    """The map of an output on the acquisition's pose grid (``affine``: its voxel → world affine; 0..255 in the
    acquisition's intensity window) onto the truth's: [..., N, H, W] linear along the slice normal between the
    output's poses, then into the truth's intensity window (``info``: the truth volume's table row)."""
    normal = acquisition.normal
    lo_true, step_true = grid_slab(info.affine, normal)
    low, high = acquisition.intensity
    truth_low, truth_high = info.intensity
    step, first = float(np.dot(affine[:3, 2], normal)), float(np.dot(affine[:3, 3], normal))
    truth_z = lo_true + (np.arange(num_poses) + 0.5) * step_true
    where = np.clip((truth_z - first) / step, 0.0, num_poses - 1.0)  # fractional pose of each truth pose

    def to_truth(stack: np.ndarray) -> np.ndarray:
        resampled = interpolate_along_pose(np.asarray(stack, np.float64), where)
        scan = low + resampled * (high - low) / 255.0
        return np.clip((scan - truth_low) * 255.0 / (truth_high - truth_low), 0.0, 255.0)

    return to_truth


class OnTruth(NamedTuple):
    """A reconstruction from acquired slices compared with the truth it never read, on the truth's grid: the truth
    [N, H, W], the mean and std of the mapped samples, the acquired slices' true and placed poses, and the mean's SSIM
    over the slices not acquired."""

    truth: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    true_poses: list[int]
    placed_poses: list[int]
    ssim: float

    @property
    def placement_error(self) -> str:
        off = sum(p != t for p, t in zip(self.placed_poses, self.true_poses))
        mean = float(np.mean(np.abs(np.subtract(self.placed_poses, self.true_poses))))
        return f"{off} of {len(self.true_poses)} slices off, mean {mean:.1f} poses"


def compare_on_truth(info: VolumeInfo, truth: np.ndarray, acquisition: Acquisition, affine: np.ndarray, placed: list[int],
                     samples: np.ndarray) -> OnTruth:
    """``samples`` [S, N, H, W] of a reconstruction from ``acquisition`` placed at ``placed`` (output voxel → world
    ``affine``) mapped onto the grid of ``truth`` (``info``: its table row) and compared with it."""
    on_truth = onto_truth_grid(info, acquisition, affine, len(truth))(samples)
    true_poses = grid_poses(info.affine, acquisition).tolist()
    others = [q for q in range(len(truth)) if q not in true_poses]
    mean = on_truth.mean(axis=0)
    return OnTruth(np.asarray(truth, np.float64), mean, on_truth.std(axis=0), true_poses, list(placed),
                   float(slice_scores(mean[others], np.asarray(truth, np.float64)[others]).ssim.mean()))
