"""The built-in default data: a population of synthetic T1-like heads.

Each subject is a 3D volume in RAS+ (x: left→right, y: posterior→anterior, z: inferior→superior)
built from nested ellipsoidal shells (scalp, skull, CSF, grey matter, white matter) with a folded
grey/white boundary, lateral ventricles, deep grey nuclei, cerebellum, brainstem, neck, eyes and
a nose, and sometimes a small lesion. Subjects differ by head size and shape, position, small
rotations, a smooth random deformation, ventricle size (an "atrophy" factor), the folding
pattern, tissue contrast, a bias field and Rician noise. Every property is a 3D property of the
subject, so the slices of one subject are consistent with each other: a few slices tell you about
the rest, which is what the model has to learn.

Subject ``i`` of the population with seed ``s`` depends only on ``(s, i)``, so populations are
reproducible and a subject does not change when the population grows.
"""
from __future__ import annotations

from collections.abc import Iterator

import nibabel as nib
import numpy as np
from numpy.typing import ArrayLike
from skimage.filters import gaussian

from bruno.config import PhantomConfig
from bruno.data.nifti import Volume, to_canonical

__all__ = ["phantom_subject", "phantom_volumes"]

# Mean T1-like intensities (white matter brightest, CSF and bone dark).
_TISSUE = {"scalp": 0.55, "skull": 0.12, "csf": 0.28, "grey": 0.58, "white": 0.88, "deep": 0.68, "eye": 0.22}


def _rotation(rng: np.random.Generator, degrees: float) -> np.ndarray:
    """A random rotation with small angles (standard deviation ``degrees``) about each axis."""
    ax, ay, az = np.deg2rad(rng.normal(0.0, degrees, size=3))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _waves(rng: np.random.Generator, points: np.ndarray, count: int, cycles: tuple[float, float]) -> np.ndarray:
    """A smooth random field: a normalised sum of ``count`` plane waves over ``points`` [..., 3]."""
    directions = rng.normal(size=(count, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    frequencies = rng.uniform(*cycles, size=(count, 1)) * directions
    phases = rng.uniform(0.0, 2.0 * np.pi, size=count)
    return np.cos(2.0 * np.pi * points @ frequencies.T + phases).sum(axis=-1) / np.sqrt(count)


def _inside(points: np.ndarray, centre: ArrayLike, axes: ArrayLike) -> np.ndarray:
    """Boolean mask of the points inside an axis-aligned ellipsoid (all in mm)."""
    return (((points - np.asarray(centre)) / np.asarray(axes)) ** 2).sum(axis=-1) < 1.0


def phantom_subject(index: int, config: PhantomConfig) -> Volume:
    """Generate subject ``index`` of the phantom population described by ``config``.

    Returns:
        A canonical :class:`Volume` with ``data`` float32 [size, size, size] and an affine of
        ``spacing_mm`` voxels centred on the origin.
    """
    rng = np.random.default_rng([config.seed, index])
    size, spacing = config.size, config.spacing_mm
    axis = (np.arange(size) - (size - 1) / 2.0) * spacing
    world = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1)  # [X, Y, Z, 3] in mm

    # Subject-level anatomy: size, shape, pose, smooth deformation.
    half_fov = size * spacing / 2.0
    scale = rng.normal(1.0, 0.05) * rng.normal(1.0, 0.03, size=3)
    semi_axes = np.array([0.68, 0.86, 0.74]) * half_fov * scale
    centre = np.array([0.0, 0.0, 0.1 * half_fov]) + rng.normal(0.0, 0.02 * half_fov, size=3)
    warp = 0.03 * half_fov * np.stack([_waves(rng, world / (2 * half_fov), 3, (0.5, 1.2)) for _ in range(3)], axis=-1)
    local = (world - centre + warp) @ _rotation(rng, 4.0)  # subject coordinates in mm
    unit = local / semi_axes  # unit ellipsoid coordinates
    radius = np.linalg.norm(unit, axis=-1)
    folds = _waves(rng, unit, 12, (2.5, 4.5))
    atrophy = rng.uniform(0.7, 1.6)

    brain_extent = semi_axes * 0.83
    label = np.zeros(world.shape[:3], dtype=np.float32)
    neck = (local[..., 0] / (0.55 * semi_axes[0])) ** 2 + ((local[..., 1] + 0.1 * semi_axes[1]) / (0.55 * semi_axes[1])) ** 2 < 1
    label[neck & (local[..., 2] < -0.4 * semi_axes[2])] = _TISSUE["scalp"]
    label[radius < 1.0] = _TISSUE["scalp"]
    label[_inside(local, (0.0, 1.0 * semi_axes[1], -0.35 * semi_axes[2]), (0.12, 0.16, 0.2) * semi_axes)] = _TISSUE["scalp"]
    label[radius < 0.93] = _TISSUE["skull"]
    label[radius < 0.87] = _TISSUE["csf"]
    label[radius < 0.83 + 0.025 * folds] = _TISSUE["grey"]
    label[radius < 0.58 + 0.07 * folds] = _TISSUE["white"]
    for side in (-1.0, 1.0):
        eye = (side * 0.42 * semi_axes[0], 0.78 * semi_axes[1], -0.3 * semi_axes[2])
        label[_inside(local, eye, (0.15 * semi_axes[0],) * 3)] = _TISSUE["eye"]
        nucleus = (side * 0.2 * brain_extent[0], -0.05 * brain_extent[1], -0.02 * brain_extent[2])
        label[_inside(local, nucleus, (0.12, 0.14, 0.14) * brain_extent)] = _TISSUE["deep"]
        ventricle = (side * 0.1 * brain_extent[0], 0.05 * brain_extent[1], 0.15 * brain_extent[2])
        label[_inside(local, ventricle, (0.07 * atrophy, 0.35, 0.14 * atrophy) * brain_extent)] = _TISSUE["csf"]
    cerebellum = _inside(local, (0.0, -0.6 * brain_extent[1], -0.55 * brain_extent[2]), (0.55, 0.3, 0.28) * brain_extent)
    label[cerebellum] = np.where(folds[cerebellum] > 0.0, _TISSUE["white"], _TISSUE["grey"])
    stem = (local[..., 0] / (0.1 * brain_extent[0])) ** 2 + ((local[..., 1] + 0.2 * brain_extent[1]) / (0.12 * brain_extent[1])) ** 2 < 1
    label[stem & (local[..., 2] < -0.2 * brain_extent[2]) & (radius < 1.0)] = _TISSUE["deep"]
    if rng.uniform() < 0.3:
        spot = rng.uniform(-0.35, 0.35, size=3) * brain_extent
        label[_inside(local, tuple(spot), (rng.uniform(0.04, 0.08),) * 3 * brain_extent)] = _TISSUE["csf"]

    # Acquisition: contrast, gain, bias field, partial volume, Rician noise.
    contrast = label + rng.normal(0.0, 0.02) * (label > _TISSUE["grey"])
    bias = 1.0 + 0.08 * _waves(rng, world / (2 * half_fov), 2, (0.3, 0.6))
    signal = gaussian(contrast * bias * rng.normal(1.0, 0.08), sigma=0.6, preserve_range=True)
    noise = rng.normal(0.0, 0.02, size=(2,) + signal.shape)
    data = np.sqrt((signal + noise[0]) ** 2 + noise[1] ** 2).astype(np.float32) * 1000.0

    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = -(size - 1) / 2.0 * spacing
    image = nib.Nifti1Image(data, affine)
    return to_canonical(image, f"phantom://seed{config.seed}/{index}", f"phantom_{index:04d}")


def phantom_volumes(config: PhantomConfig) -> Iterator[Volume]:
    """Yield the ``config.num_subjects`` subjects of the population in order."""
    for index in range(config.num_subjects):
        yield phantom_subject(index, config)
