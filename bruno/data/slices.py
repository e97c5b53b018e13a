"""From a canonical volume to N axial slices: slab, pose resampling, resize, intensity.

Geometry (SPEC §5.2, §7). For a volume of depth Z voxels and slab fraction φ, the slab keeps the
slice indices [⌊Z(1−φ)/2⌉, ⌊Z(1+φ)/2⌉) (⌊·⌉ rounds half up), measured either over the whole field
of view or over the axial extent of the foreground. The slab is then resampled to exactly N poses
(so pose q means the same relative height in every subject): pose q sits at the continuous slice
index start − ½ + (q + ½)·(stop − start)/N. In-plane, each slice is padded to a physically square
field of view and resized to H×W with anti-aliasing. One ``skimage.transform.resize`` call does the
in-plane resize and the pose resampling together, so the pose axis is anti-aliased as well.

Intensities map linearly from [low, high] to [0, 255], are clipped and rounded to uint8 (so the
dequantisation noise of the flow keeps its meaning). ``low``/``high`` are per-volume percentiles
or a fixed window (CT Hounsfield units).

Image layout: ``images[q, h, w]`` shows pose q with the anterior at the top (row 0) and the
subject's left on the left (column index grows towards the right, neurological convention).
:func:`slices_to_volume` turns such a stack back into an array [W, H, N] in RAS+ voxel order,
whose voxel-to-world affine is the ``affine`` returned by :func:`extract_slices`; write it with
``nibabel.Nifti1Image(slices_to_volume(images), affine)``.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from skimage.transform import resize

from bruno.config import DataConfig
from bruno.data.nifti import Volume
from bruno.errors import VolumeError

__all__ = [
    "SlabSlices",
    "extract_slices",
    "foreground_extent",
    "intensity_bounds",
    "resample_to_grid",
    "slab_bounds",
    "slices_to_volume",
    "to_uint8",
    "volume_to_slices",
]

FOREGROUND_LEVEL = 0.1  # foreground: above low + 10 % of (high − low)
FOREGROUND_MIN_AREA = 0.005  # a slice belongs to the foreground extent if ≥ 0.5 % of it is foreground


class SlabSlices(NamedTuple):
    """The slices of one volume, ready for the HDF5 table.

    Attributes:
        images: uint8 [N, H, W], pose-ordered axial slices (layout in the module docstring).
        affine: float64 [4, 4], voxel → world of ``slices_to_volume(images)`` ([W, H, N], RAS+).
        intensity_low: the input intensity mapped to 0.
        intensity_high: the input intensity mapped to 255.
        slab_start: first slice index of the slab in the canonical volume.
        slab_stop: one past the last slice index of the slab.
    """

    images: np.ndarray
    affine: np.ndarray
    intensity_low: float
    intensity_high: float
    slab_start: int
    slab_stop: int


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def slab_bounds(depth: int, fraction: float, offset: int = 0) -> tuple[int, int]:
    """Slice range [start, stop) of the middle ``fraction`` of ``depth`` slices beginning at ``offset``.

    Example: ``slab_bounds(120, 0.75) == (15, 105)``. At least one slice is always kept.
    """
    start = _round_half_up(depth * (1.0 - fraction) / 2.0)
    stop = _round_half_up(depth * (1.0 + fraction) / 2.0)
    stop = max(stop, start + 1)
    return offset + start, offset + stop


def intensity_bounds(data: np.ndarray, mode: str, value_range: tuple[float, float], source: str) -> tuple[float, float]:
    """The input intensities (low, high) that map to 0 and 255.

    Args:
        data: float32 [X, Y, Z].
        mode: ``"percentile"`` (per-volume percentiles) or ``"window"`` (fixed values).
        value_range: the two percentiles, or the two window bounds.
        source: named in errors.

    Raises:
        VolumeError: the two percentiles coincide (an almost constant volume).
    """
    if mode == "window":
        return float(value_range[0]), float(value_range[1])
    low, high = (float(v) for v in np.percentile(data, value_range))
    if not high > low:
        raise VolumeError(
            f"{source}: intensity percentiles {list(value_range)} are both {low}; "
            "expected a volume with contrast (is it almost empty?)"
        )
    return low, high


def to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map [low, high] linearly onto [0, 255], clip, and round to the nearest integer (uint8)."""
    scaled = (np.asarray(values, dtype=np.float64) - low) * (255.0 / (high - low))
    return np.rint(np.clip(scaled, 0.0, 255.0)).astype(np.uint8)


def foreground_extent(data: np.ndarray, low: float, high: float, source: str) -> tuple[int, int]:
    """Axial range [first, last + 1) of the slices that contain foreground.

    Raises:
        VolumeError: no slice contains foreground.
    """
    mask = data > low + FOREGROUND_LEVEL * (high - low)
    area = mask.mean(axis=(0, 1))
    inside = np.flatnonzero(area >= FOREGROUND_MIN_AREA)
    if inside.size == 0:
        raise VolumeError(f"{source}: found no foreground slices for data.slab_reference='foreground'")
    return int(inside[0]), int(inside[-1]) + 1


def _square_padding(shape_xy: tuple[int, int], spacing_xy: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]]:
    """Padded in-plane size and leading pad so the field of view is physically square."""
    extent = max(shape_xy[0] * spacing_xy[0], shape_xy[1] * spacing_xy[1])
    padded = tuple(max(n, _round_half_up(extent / s)) for n, s in zip(shape_xy, spacing_xy))
    before = tuple((p - n) // 2 for p, n in zip(padded, shape_xy))
    return (int(padded[0]), int(padded[1])), (int(before[0]), int(before[1]))


def resample_to_grid(data: np.ndarray, spacing_xy: np.ndarray, fill: float, size: int,
                     depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad a stack [X, Y, Z] to a physically square field of view (with ``fill``) and resize it to
    [size, size, depth] with anti-aliasing, in one ``resize`` call.

    Returns:
        (the resampled float array, M [4, 4]): output voxel (i, j, q) samples the input voxel index
        M @ (i, j, q, 1) (resize's centre alignment).
    """
    (px, py), (bx, by) = _square_padding(data.shape[:2], spacing_xy)
    padded = np.full((px, py, data.shape[2]), fill, dtype=np.float32)
    padded[bx : bx + data.shape[0], by : by + data.shape[1]] = data
    resampled = resize(padded, (size, size, depth), order=1, mode="edge", anti_aliasing=True, preserve_range=True)
    scale = np.array([px / size, py / size, data.shape[2] / depth])
    index_map = np.eye(4)
    index_map[:3, :3] = np.diag(scale)
    index_map[:3, 3] = 0.5 * scale - 0.5 - np.array([bx, by, 0])
    return resampled, index_map


def extract_slices(volume: Volume, config: DataConfig) -> SlabSlices:
    """Slab, pose resampling, square padding, resize and intensity mapping of one volume.

    Args:
        volume: a canonical volume (RAS+, axial along the last axis).
        config: the ``data`` section (slab fraction and reference, N, image size, intensity).

    Returns:
        :class:`SlabSlices` with ``images`` uint8 [N, image_size, image_size].

    Raises:
        VolumeError: no contrast, or no foreground when the slab is taken from the foreground.
    """
    data = volume.data
    size, num_poses = config.image_size, config.num_poses
    low, high = intensity_bounds(data, config.intensity, config.intensity_range, volume.source)
    if config.slab_reference == "foreground":
        first, stop = foreground_extent(data, low, high, volume.source)
        start, stop = slab_bounds(stop - first, config.slab_fraction, offset=first)
    else:
        start, stop = slab_bounds(data.shape[2], config.slab_fraction)

    resampled, index_map = resample_to_grid(data[:, :, start:stop], volume.spacing[:2], low, size, num_poses)
    index_map[2, 3] += start  # indices of the canonical volume, not of its slab
    images = volume_to_slices(to_uint8(resampled, low, high))
    return SlabSlices(images, volume.affine @ index_map, low, high, start, stop)


def volume_to_slices(array: np.ndarray) -> np.ndarray:
    """[W, H, N] RAS+ array → [N, H, W] slice stack (anterior at row 0)."""
    return np.ascontiguousarray(np.flip(np.transpose(array, (2, 1, 0)), axis=1))


def slices_to_volume(images: np.ndarray) -> np.ndarray:
    """[N, H, W] slice stack → [W, H, N] RAS+ array; the inverse of :func:`volume_to_slices`."""
    return np.ascontiguousarray(np.transpose(np.flip(images, axis=1), (2, 1, 0)))
