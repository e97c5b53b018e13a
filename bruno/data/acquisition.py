"""What a clinician has: a few acquired axial slices of a new patient, read on their own.

A sparse acquisition is one NIfTI stack holding only the acquired slices (thick, unevenly spaced:
the affine gives each slice's world position), several single-slice files, or chosen slice indices
of a full volume. Nothing else is read: the intensity window comes from the acquired voxels, each
slice is resampled in-plane onto the training grid with its own affine (a physically square field
of view, then resized, as :func:`~bruno.data.slices.extract_slices` does), and its position along
the stack normal is kept in mm.

Poses. The model's pose q of N covers a subject's training slab; here the user places the slab:
``slab_mm = (lo, hi)``, the world positions (mm along the stack normal) of its two ends, puts pose q
at lo + (q + ½)(hi − lo)/N; or the user gives each slice's pose and the slab is fitted to them
(least squares; one slice: the training table's median mm per pose).

Checks (each a one-line :class:`~bruno.errors.VolumeError` naming the file): a 4D file, a stack
tilted more than ``MAX_TILT_DEG`` from axial, files whose slices are not parallel or whose in-plane
grids differ, two slices at the same position, a slice outside the slab, and no slice at all.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple, Optional

import numpy as np

from bruno.config import DataConfig
from bruno.data.nifti import Volume, affine_spacing, load_nifti
from bruno.data.slices import intensity_bounds, resample_to_grid, to_uint8, volume_to_slices
from bruno.errors import VolumeError

__all__ = ["MAX_TILT_DEG", "Acquisition", "acquisition_from", "grid_poses", "grid_slab", "place_slab", "read_acquisition", "slab_affine",
           "slab_from_poses", "sparse_stack", "spread_stack"]

MAX_TILT_DEG = 5.0  # the largest angle between a stack's slice normal and the world's superior axis
_SAME_POSITION_MM = 1e-3


class Acquisition(NamedTuple):
    """The acquired slices on the training grid, sorted from inferior to superior.

    Attributes:
        images: uint8 [k, H, W] (layout of :mod:`bruno.data.slices`).
        positions_mm: float64 [k], each slice's position along ``normal`` (world mm).
        normal: float64 [3], the unit slice normal (superior-pointing).
        inplane_affine: float64 [4, 4], voxel → world of the training grid of the first slice
            ([W, H, ·], RAS+; its third column is set when the slab is placed).
        intensity: (low, high), the input intensities mapped to 0 and 255 (from the acquired voxels).
        sources: where each slice came from (``file`` or ``file[z]``).
    """

    images: np.ndarray
    positions_mm: np.ndarray
    normal: np.ndarray
    inplane_affine: np.ndarray
    intensity: tuple[float, float]
    sources: list[str]


class _Slice(NamedTuple):
    data: np.ndarray  # float32 [X, Y]
    affine: np.ndarray  # voxel → world of the 2D grid, as a 3D affine (third column: the stack axis)
    source: str


def _stack_slices(volume: Volume, indices: Optional[Sequence[int]]) -> list[_Slice]:
    """The chosen (default: every) axial slices of one canonical stack, each with its own affine."""
    depth = volume.data.shape[2]
    chosen = range(depth) if indices is None else indices
    out = []
    for z in chosen:
        if not 0 <= int(z) < depth:
            raise VolumeError(f"{volume.source}: slice index {z} out of range, expected 0..{depth - 1}")
        shift = np.eye(4)
        shift[2, 3] = float(z)
        name = volume.source if depth == 1 else f"{volume.source}[{int(z)}]"
        out.append(_Slice(volume.data[:, :, int(z)], volume.affine @ shift, name))
    return out


def _check_axial(volume: Volume) -> None:
    """Refuse a whole file of acquired slices whose slices are not axial: its acquired axis (the thickest
    spacing, or with equal spacings the fewest voxels) must be the canonical inferior–superior one."""
    spacing, shape = affine_spacing(volume.affine), volume.data.shape
    axis = max(range(3), key=lambda a: (round(spacing[a], 2), -shape[a]))
    if axis != 2 and shape[axis] < shape[2]:
        raise VolumeError(f"{volume.source}: the stack is not axial: its {shape[axis]} slice(s), {spacing[axis]:.3g} mm apart, "
                          f"are {('sagittal', 'coronal')[axis]}; expected axial slices (reslice it, or give axial slices)")


def _normal(affine: np.ndarray, source: str) -> np.ndarray:
    """The unit slice normal of an axial stack (superior-pointing), after the tilt check."""
    normal = np.cross(affine[:3, 0], affine[:3, 1])
    normal /= np.linalg.norm(normal)
    normal *= np.sign(normal[2]) or 1.0
    tilt = math.degrees(math.acos(min(1.0, abs(normal[2]))))
    if tilt > MAX_TILT_DEG:
        raise VolumeError(f"{source}: the slices are tilted {tilt:.1f}° from axial, expected at most {MAX_TILT_DEG}° "
                          "(oblique or non-axial stack)")
    return normal


def read_acquisition(paths: Sequence[str], data: DataConfig, slice_indices: Optional[Sequence[int]] = None,
                     intensity: Optional[tuple[float, float]] = None) -> Acquisition:
    """Read acquired slices (module docstring) and map them onto the training grid.

    Args:
        paths: one stack of acquired slices, or several single-slice files.
        data: the run's ``data`` section (image size, intensity mode and range).
        slice_indices: with one file, read only these axial slices (canonical RAS+ indices, inferior first).
        intensity: (low, high) to use instead of the acquired voxels' own window.

    Raises:
        VolumeError: unreadable input, or one of the module docstring's checks.
    """
    if not paths:
        raise VolumeError("acquired slices: no file given, expected one stack of acquired slices or single-slice files")
    return acquisition_from([load_nifti(path, sparse=True) for path in paths], data, slice_indices, intensity)


def acquisition_from(volumes: Sequence[Volume], data: DataConfig, slice_indices: Optional[Sequence[int]] = None,
                     intensity: Optional[tuple[float, float]] = None) -> Acquisition:
    """:func:`read_acquisition` on stacks already loaded (canonical, ``load_nifti(..., sparse=True)``)."""
    if slice_indices is not None and len(volumes) != 1:
        raise VolumeError(f"{volumes[0].source}: slice indices need exactly one input file, got {len(volumes)}")
    slices: list[_Slice] = []
    for volume in volumes:
        if slice_indices is None:
            _check_axial(volume)
        slices += _stack_slices(volume, slice_indices)
    if not slices:
        raise VolumeError(f"{volumes[0].source}: no slice chosen")
    normals = [_normal(s.affine, s.source) for s in slices]
    reference = slices[0]
    for s, n in zip(slices[1:], normals[1:]):
        angle = math.degrees(math.acos(min(1.0, float(np.dot(n, normals[0])))))
        if angle > 0.5:
            raise VolumeError(f"{s.source}: not parallel to {reference.source} ({angle:.1f}° apart)")
        if s.data.shape != reference.data.shape or not np.allclose(s.affine[:3, :2], reference.affine[:3, :2], atol=1e-3):
            raise VolumeError(f"{s.source}: in-plane grid {s.data.shape} differs from {reference.source}'s "
                              f"{reference.data.shape}, expected slices of one acquisition")
    normal = normals[0]
    positions = np.array([float(np.dot(s.affine[:3, 3], normal)) for s in slices])
    order = np.argsort(positions, kind="stable")
    slices, positions = [slices[i] for i in order], positions[order]
    for a, b, gap in zip(slices, slices[1:], np.diff(positions)):
        if gap < _SAME_POSITION_MM:
            raise VolumeError(f"{b.source}: at the same position as {a.source} ({np.dot(b.affine[:3, 3], normal):.3f} mm), "
                              "expected one slice per position")
    voxels = np.stack([s.data for s in slices], axis=-1)
    if intensity is None:
        low, high = intensity_bounds(voxels, data.intensity, data.intensity_range, slices[0].source)
    else:
        low, high = float(intensity[0]), float(intensity[1])
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise VolumeError(f"intensity window {low:g}..{high:g}: expected two finite intensities LOW < HIGH")
    spacing = np.sqrt((reference.affine[:3, :2] ** 2).sum(axis=0))
    resampled, index_map = resample_to_grid(voxels, spacing, low, data.image_size, len(slices))
    inplane = reference.affine @ index_map
    inplane[:3, 3] -= normal * float(np.dot(inplane[:3, 3], normal))  # the plane through the world origin
    return Acquisition(volume_to_slices(to_uint8(resampled, low, high)), positions, normal, inplane, (low, high),
                       [s.source for s in slices])


def place_slab(acquisition: Acquisition, slab_mm: tuple[float, float], num_poses: int) -> tuple[list[int], np.ndarray]:
    """Poses of the acquired slices for a slab from ``lo`` to ``hi`` mm along the normal, and the
    voxel → world affine of the reconstructed [W, H, N] volume.

    Raises:
        VolumeError: the slab is empty, a slice lies outside it, or two slices fall on one pose.
    """
    lo, hi = (float(v) for v in slab_mm)
    if not hi > lo:
        raise VolumeError(f"slab {lo:g}..{hi:g} mm: expected its inferior end below its superior end (mm along the slice normal)")
    step = (hi - lo) / num_poses
    poses = [int(math.floor((z - lo) / step)) for z in acquisition.positions_mm]
    for source, z, q in zip(acquisition.sources, acquisition.positions_mm, poses):
        if not 0 <= q < num_poses:
            raise VolumeError(f"{source}: at {z:.1f} mm, outside the slab {lo:g}..{hi:g} mm")
    for i in range(1, len(poses)):
        if poses[i] == poses[i - 1]:
            raise VolumeError(f"{acquisition.sources[i]}: falls on pose {poses[i]} with {acquisition.sources[i - 1]} "
                              f"(poses are {step:.2f} mm apart here), expected one slice per pose")
    return poses, slab_affine(acquisition, (lo, hi), num_poses)


def slab_affine(acquisition: Acquisition, slab_mm: tuple[float, float], num_poses: int) -> np.ndarray:
    """Voxel → world of the reconstructed [W, H, N] volume whose pose q lies at lo + (q + ½)(hi − lo)/N mm."""
    lo, hi = (float(v) for v in slab_mm)
    step = (hi - lo) / num_poses
    affine = acquisition.inplane_affine.copy()
    affine[:3, 2] = acquisition.normal * step
    affine[:3, 3] += acquisition.normal * (lo + 0.5 * step)
    return affine


def slab_from_poses(acquisition: Acquisition, poses: Sequence[int], num_poses: int,
                    mm_per_pose: float) -> tuple[float, float]:
    """The slab (lo, hi) in mm that puts each acquired slice at its given pose: a least-squares line
    through (pose + ½, position) with ≥ 2 slices; with one, ``mm_per_pose`` (e.g. the training median).

    Raises:
        VolumeError: a count mismatch, a pose out of range, or poses not increasing with the position.
    """
    poses = [int(q) for q in poses]
    if len(poses) != len(acquisition.positions_mm):
        raise VolumeError(f"poses {poses}: {len(poses)} given for {len(acquisition.positions_mm)} acquired slices, "
                          "expected one per slice (inferior first)")
    if any(not 0 <= q < num_poses for q in poses):
        raise VolumeError(f"poses {poses}: expected integers in 0..{num_poses - 1}")
    if any(b <= a for a, b in zip(poses, poses[1:])):
        raise VolumeError(f"poses {poses}: expected increasing poses, one per slice from inferior to superior")
    centres = np.asarray(poses, np.float64) + 0.5
    if len(poses) == 1:
        step = float(mm_per_pose)
    else:
        step = float(np.polyfit(centres, acquisition.positions_mm, 1)[0])
    lo = float(np.mean(acquisition.positions_mm - step * centres))
    return lo, lo + step * num_poses


def grid_slab(grid_affine: np.ndarray, normal: np.ndarray) -> tuple[float, float]:
    """(lo, mm per pose) along ``normal`` of a pose grid whose voxel → world affine is ``grid_affine``
    (e.g. a slice table volume's): pose q's centre lies at lo + (q + ½) · step."""
    step = float(np.dot(grid_affine[:3, 2], normal))
    return float(np.dot(grid_affine[:3, 3], normal)) - 0.5 * step, step


def grid_poses(grid_affine: np.ndarray, acquisition: Acquisition) -> np.ndarray:
    """The pose of each acquired slice on a pose grid (:func:`grid_slab`), as :func:`place_slab` puts them: int [k]."""
    lo, step = grid_slab(grid_affine, acquisition.normal)
    return np.floor((np.asarray(acquisition.positions_mm) - lo) / step).astype(int)


def sparse_stack(volume: Volume, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The axial slices ``indices`` (evenly spaced, increasing) of ``volume`` as one sparse stack:
    (data [X, Y, k], its voxel → world affine, the slice spacing scaled by the gap)."""
    indices = [int(i) for i in indices]
    gaps = set(np.diff(indices).tolist()) or {1}
    if len(gaps) != 1 or min(gaps) < 1:
        raise ValueError(f"slice indices {indices}: expected evenly spaced increasing indices")
    affine = volume.affine.copy()
    affine[:3, 2] *= gaps.pop()
    affine[:3, 3] = (volume.affine @ [0.0, 0.0, indices[0], 1.0])[:3]
    return volume.data[:, :, indices], affine


def spread_stack(volume: Volume, slab: tuple[int, int], count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` evenly spaced axial slices of the slab [start, stop) of ``volume`` as one sparse stack (:func:`sparse_stack`)."""
    start, stop = slab
    gap = (stop - start) // count
    return sparse_stack(volume, range(start + gap // 2, stop, gap)[:count])
