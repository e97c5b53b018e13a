"""Motion-corrupted orthogonal stacks and their Gaussian-average initialisation (SPEC §5.4).

A volume is a pose-ordered slice stack ``[N, H, W]`` on the 0..255 scale, as in the slice table,
with voxel size ``spacing`` = (dN, dH, dW) mm (:func:`voxel_spacing` reads it from the slab's
affine). Positions are continuous voxel indices (n, h, w) of that array; a translation is stored in
mm per array axis, in the same order.

Acquisition model (the choices SPEC §5.4 leaves open):

* three orthogonal stacks: ``axial`` slices are the planes n = i, ``coronal`` the planes h = i,
  ``sagittal`` the planes w = i, one slice per voxel plane, so the slice thickness is the voxel
  size along the stack axis;
* every slice is moved by its own rigid translation t (no rotation): the acquired pixel at nominal
  position p is the volume at p + t / spacing, trilinearly interpolated, 0 outside the volume;
* translation law ``uniform``: each of the three components independently U[−m, m] mm (the
  default, m = 10); ``sphere``: a uniformly random direction with magnitude exactly m mm.

The Gaussian-average volume (the usual initialisation of slice-to-volume reconstruction) scatters
every acquired pixel at a position (its nominal one, or a corrected one), and averages with
Gaussian weights: V(x) = Σ_j g(x − q_j) s_j / Σ_j g(x − q_j), with g a Gaussian of σ voxels per axis
(default 1). Pixels are splatted trilinearly onto the grid and both sums are Gaussian-filtered, so
pixels that sit on grid points (nominal positions) are scattered exactly; voxels no pixel reaches
(weight below 1e-6 of the largest) are 0.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from bruno.data.nifti import affine_spacing
from bruno.errors import ConfigError

__all__ = ["LAWS", "STACK_AXES", "Stack", "acquire_stack", "gaussian_average", "plane_points", "random_translations",
           "sample_volume", "simulate_stacks", "voxel_spacing"]

STACK_AXES = {"axial": 0, "coronal": 1, "sagittal": 2}
LAWS = ("uniform", "sphere")


def voxel_spacing(affine: np.ndarray) -> np.ndarray:
    """(dN, dH, dW) mm of the [N, H, W] stack whose [W, H, N] volume has this voxel → world affine."""
    return np.array(affine_spacing(affine)[::-1])


def random_translations(count: int, magnitude_mm: float, rng: np.random.Generator, law: str = "uniform") -> np.ndarray:
    """float64 [count, 3] translations in mm, drawn from ``law`` (see the module docstring).

    Raises:
        ConfigError: a negative magnitude or an unknown law.
    """
    if not magnitude_mm >= 0:
        raise ConfigError(f"translation magnitude {magnitude_mm} mm: expected a number >= 0")
    if law == "uniform":
        return rng.uniform(-magnitude_mm, magnitude_mm, size=(count, 3))
    if law == "sphere":
        direction = rng.standard_normal((count, 3))
        return magnitude_mm * direction / np.linalg.norm(direction, axis=1, keepdims=True)
    raise ConfigError(f"translation law {law!r}: expected one of {', '.join(LAWS)}")


def plane_points(shape: Sequence[int], axis: int, index: int) -> np.ndarray:
    """float64 [3, P]: the voxel positions of plane ``index`` along ``axis``, in row-major order of the plane."""
    grids = [np.arange(n, dtype=np.float64) for n in shape]
    grids[axis] = np.array([float(index)])
    return np.stack([g.ravel() for g in np.meshgrid(*grids, indexing="ij")])


def sample_volume(volume: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The volume at continuous voxel positions [3, ...], trilinear, 0 outside."""
    flat = points.reshape(3, -1)
    values = ndimage.map_coordinates(np.asarray(volume, np.float64), flat, order=1, mode="constant", cval=0.0)
    return values.reshape(points.shape[1:])


class Stack(NamedTuple):
    """One simulated stack.

    Attributes:
        name: ``axial``, ``coronal`` or ``sagittal``.
        axis: the array axis the slices are normal to (0, 1, 2).
        slices: float64 [S, a, b], slice i acquired at plane i moved by ``translations[i]``.
        translations: float64 [S, 3] mm, the true displacement of each slice, (N, H, W) order.
    """

    name: str
    axis: int
    slices: np.ndarray
    translations: np.ndarray

    def points(self, offsets_vox: np.ndarray) -> np.ndarray:
        """float64 [3, S, P]: the positions of every pixel of every slice, nominal + ``offsets_vox`` [S, 3]."""
        shape = list(self.slices.shape[1:])
        shape.insert(self.axis, len(self.slices))
        nominal = np.stack([plane_points(shape, self.axis, i) for i in range(len(self.slices))], axis=1)
        return nominal + np.asarray(offsets_vox, np.float64).T[:, :, None]


def acquire_stack(volume: np.ndarray, name: str, translations_mm: np.ndarray, spacing: Sequence[float] | np.ndarray) -> Stack:
    """The ``name`` stack of ``volume`` [N, H, W] with slice i moved by ``translations_mm[i]`` (mm, (N, H, W) order).

    Raises:
        ConfigError: an unknown stack name or a translation array of the wrong shape.
    """
    if name not in STACK_AXES:
        raise ConfigError(f"stack {name!r}: expected one of {', '.join(STACK_AXES)}")
    volume = np.asarray(volume, np.float64)
    axis = STACK_AXES[name]
    translations = np.asarray(translations_mm, np.float64)
    if translations.shape != (volume.shape[axis], 3):
        raise ConfigError(f"translations {translations.shape}: expected ({volume.shape[axis]}, 3) for the {name} stack")
    empty = Stack(name, axis, np.zeros((volume.shape[axis],) + tuple(np.delete(volume.shape, axis))), translations)
    slices = sample_volume(volume, empty.points(translations / np.asarray(spacing, np.float64)))
    return empty._replace(slices=slices.reshape(empty.slices.shape))


def simulate_stacks(volume: np.ndarray, spacing: Sequence[float] | np.ndarray, magnitude_mm: float, rng: np.random.Generator,
                    law: str = "uniform", names: Sequence[str] = tuple(STACK_AXES)) -> list[Stack]:
    """Acquire orthogonal stacks of ``volume`` [N, H, W], each slice moved by its own random translation.

    Args:
        volume: the true volume.
        spacing: (dN, dH, dW) voxel size in mm.
        magnitude_mm: the law's m (0: motion-free stacks, exactly the volume's own planes).
        rng: draws the translations, stack by stack in ``names`` order.
        law: ``uniform`` or ``sphere``.
        names: which stacks.
    """
    shape = np.shape(volume)
    return [acquire_stack(volume, name, random_translations(shape[STACK_AXES[name]], magnitude_mm, rng, law), spacing)
            for name in names]


def _splat(shape: Sequence[int], points: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Trilinear splat of ``values`` at ``points`` [3, P]: (Σ w·value, Σ w) on the grid; outside corners are dropped."""
    base = np.floor(points).astype(np.int64)
    frac = points - base
    size = int(np.prod(shape))
    numerator = np.zeros(size)
    denominator = np.zeros(size)
    for corner in np.ndindex(2, 2, 2):
        index = base + np.array(corner)[:, None]
        weight = np.prod(np.where(np.array(corner)[:, None] == 1, frac, 1.0 - frac), axis=0)
        inside = np.all((index >= 0) & (index < np.array(shape)[:, None]), axis=0) & (weight > 0)
        flat = np.ravel_multi_index(tuple(index[:, inside]), tuple(shape))
        numerator += np.bincount(flat, weights=weight[inside] * values[inside], minlength=size)
        denominator += np.bincount(flat, weights=weight[inside], minlength=size)
    return numerator.reshape(shape), denominator.reshape(shape)


def gaussian_average(shape: Sequence[int], stacks: Sequence[Stack], sigma_vox: float | Sequence[float] = 1.0,
                     offsets_vox: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """The Gaussian-weighted average of the stacks' pixels scattered into a volume of ``shape``.

    Args:
        shape: (N, H, W) of the volume to fill.
        stacks: the acquired stacks.
        sigma_vox: the Gaussian's σ in voxels (one value, or one per axis); 0 averages the splat only.
        offsets_vox: per stack, [S, 3] corrections (in voxels) added to the nominal slice positions;
            None scatters every slice at its nominal position.

    Returns:
        float64 [N, H, W].
    """
    sigma = np.broadcast_to(np.asarray(sigma_vox, np.float64), (3,))
    if np.any(sigma < 0) or not np.all(np.isfinite(sigma)):
        raise ConfigError(f"Gaussian average sigma {sigma_vox}: expected a width >= 0 (voxels)")
    numerator = np.zeros(tuple(shape))
    denominator = np.zeros(tuple(shape))
    for s, stack in enumerate(stacks):
        offsets = np.zeros((len(stack.slices), 3)) if offsets_vox is None else offsets_vox[s]
        top, bottom = _splat(shape, stack.points(offsets).reshape(3, -1), stack.slices.ravel())
        numerator += top
        denominator += bottom
    if np.any(sigma > 0):
        numerator = ndimage.gaussian_filter(numerator, sigma, mode="constant", truncate=3.0)
        denominator = ndimage.gaussian_filter(denominator, sigma, mode="constant", truncate=3.0)
    reached = denominator > 1e-6 * max(float(denominator.max()), 1e-300)
    return np.where(reached, numerator / np.where(reached, denominator, 1.0), 0.0)
